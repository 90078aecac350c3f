"""proxyscale: will the small-scale ranking of data recipes hold at scale?

usage:
  proxyscale -m [OVERRIDES]             sweep a grid, e.g. -m grid=demo, or -m model=tiny,small
                                        optim.lr=1e-3,3e-3 (a,b: a sweep axis; [a,b]: one list)
  proxyscale -m grid=demo dry_run=true  the grid's cost table (final cells not counted), no training
  proxyscale [OVERRIDES]                train one cell, e.g. model=small data=noisy

subcommands:
  report outputs/SWEEP       proxy-vs-target agreement -> report.md/.json/.html (or --from-csv F)
  collect outputs/SWEEP      records -> outputs/SWEEP/results.parquet
  status outputs/SWEEP       cells by state: records merged with the SLURM scheduler
  submit [OVERRIDES]         a grid as one SLURM job array (non-blocking)
  ladder                     the size registry: layers, width, params, tokens, FLOPs, est. time
  recipes [--only GLOB]      the recipe catalogue: pool sizes and what curation kept (--build)
  mixtures --base R --n 16   Dirichlet-sampled mixtures of recipe R as new recipes
  mixfit outputs/SWEEP       mixture regression on a sweep's losses + a proposed mixture
  datamodels outputs/SWEEP   datamodels of a subset sweep: LDS across sizes, DsDm (or --from-csv F)
  wandb-sync outputs/SWEEP   upload a sweep's offline W&B runs
  help                       this text (`proxyscale SUBCOMMAND --help`: a subcommand's options)

flags:
  -h, --help   this text              --hydra-help   Hydra's own help (config groups, flags)
  --version    proxyscale's version   --cfg job      the composed config, nothing runs

environment:
  PROXYSCALE_VERBOSE=1   also Hydra's per-cell job listing, third-party warnings, W&B's lines
  PROXYSCALE_OK_EXIT=1   a sweep with failed cells exits 0 (default 1; interrupts: 128+signal)

Every grid is composed and validated before anything trains: bad input is one line, exit 2.
A stopped sweep resumes when the same command is run again (final cells are skipped).
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import logging
import os
import sys
import textwrap

SUBCOMMANDS = ("ladder", "recipes", "mixtures", "collect", "report", "submit", "status", "wandb-sync", "mixfit", "datamodels")
PASSTHROUGH_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--version",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--resolve",
    "--package",
    "-p",
    "--shell-completion",
    "-sc",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--experimental-rerun",
}


VERBOSE_ENV = "PROXYSCALE_VERBOSE"  # =1: Hydra's job listing, third-party warnings and W&B's lines come back


def version() -> str:
    import importlib.metadata as md

    try:
        return md.version("proxyscale")
    except md.PackageNotFoundError:
        return "unknown"


def check_subcommand(argv: list[str]) -> None:
    """A first argument that is neither a subcommand, a flag nor an override (no `=`) is a typo:
    say so with the closest subcommand, instead of Hydra's 'missing EQUAL'."""
    import difflib

    first = argv[0] if argv else ""
    if not first or first.startswith(("-", "~", "+")) or "=" in first or first in SUBCOMMANDS:
        return
    close = difflib.get_close_matches(first, (*SUBCOMMANDS, "help"), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}?" if close else f"subcommands: {', '.join(SUBCOMMANDS)}"
    fail(f"unknown subcommand {first!r} ({hint}); overrides are key=value, see proxyscale --help")


def fold_config_dirs(argv: list[str]) -> list[str]:
    """`--config-dir DIR` (`-cd DIR`, `--config-dir=DIR`) as a `hydra.searchpath` entry, merged with any
    `hydra.searchpath=[...]` given: one form the planner, the sweeper and `recipes` all read, so a
    sweep with --config-dir is planned and checked (and `dry_run=true` honoured) like any other."""
    dirs, paths, out, i = [], [], [], 0
    while i < len(argv):
        a = argv[i]
        if a in ("--config-dir", "-cd"):
            if i + 1 >= len(argv):
                fail(f"{a} needs a folder")
            dirs.append(argv[i + 1])
            i += 2
            continue
        if a.startswith("--config-dir="):
            dirs.append(a.split("=", 1)[1])
        elif a.startswith("hydra.searchpath="):
            value = a.split("=", 1)[1].strip()
            if not (value.startswith("[") and value.endswith("]")):
                fail(f"hydra.searchpath must be a list such as hydra.searchpath=[file:///abs/folder], got {value!r}")
            paths += [x.strip().strip("'\"") for x in value[1:-1].split(",") if x.strip()]
        else:
            out.append(a)
        i += 1
    for d in dirs:
        if not os.path.isdir(d):
            fail(f"--config-dir {d}: no such folder")
        paths.append("file://" + os.path.abspath(d))
    return out + ([f"hydra.searchpath=[{','.join(paths)}]"] if paths else [])


def fail(msg: str, code: int = 2) -> "NoReturn":  # noqa: F821
    print(f"proxyscale: error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def train_main(argv: list[str]) -> None:
    if not any(a in PASSTHROUGH_FLAGS or a.split("=")[0] in PASSTHROUGH_FLAGS for a in argv):
        from proxyscale import grid

        multirun = "-m" in argv or "--multirun" in argv
        # A sweep's cells are composed and validated once, by the proxyscale sweeper (which exits 2
        # with one line on bad input); here only the fixed overrides, which Hydra would report badly.
        cells, base = grid.compose_grid(argv, base_only=multirun)
        n_jobs = base.hydra.launcher.get("n_jobs")
        if n_jobs is not None and n_jobs < 1:
            fail(f"hydra.launcher.n_jobs must be >= 1, got {n_jobs}")
        if base.dry_run:
            cells = cells or grid.compose_grid(argv, progress=True)[0]
            grid.check_grid(cells, base)  # what the sweep would refuse, refused here too (nothing is written)
            final = {c.run_id for c in cells} - {c.run_id for c in grid.pending(cells)}
            print(grid.cost_table(cells, int(base.hydra.launcher.get("n_jobs", 1) or 1), final))
            return
        if len(cells) > 1 and not multirun:
            fail("more than one cell needs -m/--multirun")
        grid.check_output(base)
        grid.check_devices(cells)  # a sweep's cells: checked by the proxyscale sweeper
        grid.check_resumable(cells)
    _hydra_main(argv)


def _hydra_main(argv: list[str]) -> None:
    import hydra

    import hydra_plugins.proxyscale_sweeper  # noqa: F401  (registers the sweeper's config)
    from proxyscale.config import CONF_DIR
    from proxyscale.launch import local
    from proxyscale.launch.local import task

    sys.argv = [sys.argv[0]] + argv
    local.begin_command()
    try:
        hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(task)()
    except local.Interrupted as exc:
        if not exc.detail and not ("-m" in argv or "--multirun" in argv):
            exc.detail = "1 of 1 cells not finished"
        fail(exc.line(), exc.code)
    if not ("-m" in argv or "--multirun" in argv):  # a single run: its cell's outcome is the exit status
        problem = local.summarise(local.OUTCOMES, "its run folder")
        if problem:
            fail(problem.replace(" (see proxyscale status its run folder)", ""), 1)


def ladder_main(argv: list[str]) -> None:
    from proxyscale import budget, grid

    p = argparse.ArgumentParser(prog="proxyscale ladder", description="The size registry with a cost estimate per size.")
    p.add_argument("overrides", nargs="*", help="Hydra overrides applied to every size, e.g. trainer.tokens_per_param=20 data=balanced")
    a = p.parse_args(argv)
    cells, base = grid.compose_grid(["-m", "model=" + ",".join(budget.ladder())] + a.overrides)
    print(grid.ladder_table(sorted(cells, key=lambda c: budget.cost(c.view)["params"])))


STEP_ABBREV = {
    "exact_dedup": "dedup",
    "near_dedup": "neardedup",
    "quality_filter": "quality",
    "select_by_proxy": "proxysel",
    "select_like": "select",
    "duplicate": "dup",
    "corrupt": "corrupt",
    "shuffle_words": "shuffle",
    "classifier_filter": "clf",
}


def built_recipes(cache_dir: str) -> dict[str, dict]:
    """Metas of the recipe caches under cache_dir, keyed by what determines curation (the recipe
    without its pool size, the corpora and step versions): a sweep that changed data.pool_tokens
    (grid=demo does) built the same curation under another cache key."""
    import glob
    import json

    out: dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(cache_dir, "recipes", "*.json")), key=os.path.getmtime):
        try:
            with open(path) as f:
                meta = json.load(f)
            out[_curation_key(meta["payload"])] = meta
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _curation_key(payload: dict) -> str:
    import json

    recipe = {k: v for k, v in payload["recipe"].items() if k != "pool_tokens"}
    return json.dumps([recipe, payload.get("corpora"), payload.get("step_versions"), payload.get("files")], sort_keys=True, default=str)


def _recipe_home(name: str, searchpath: list[str]) -> str:
    """Where a recipe's YAML comes from: `proxyscale` (conf/data/, which wins on a name clash, as in Hydra's
    search order) or the user's config folder that holds it."""
    from proxyscale.config import CONF_DIR

    if os.path.exists(os.path.join(CONF_DIR, "data", f"{name}.yaml")):
        return "proxyscale"
    for entry in (x for o in searchpath for x in o.split("=", 1)[1].strip("[]").split(",")):
        folder = entry.strip().removeprefix("file://")
        if os.path.exists(os.path.join(folder, "data", f"{name}.yaml")):
            return folder
    return "search path"


def recipes_main(argv: list[str]) -> None:
    from hydra import compose, initialize_config_dir

    from proxyscale.config import CONF_DIR
    from proxyscale.data.cache import _recipe_payload, cached_recipe_meta, recipe_tokens
    from proxyscale.errors import UserError
    from proxyscale.grid import _si, group_options, text_table

    p = argparse.ArgumentParser(
        prog="proxyscale recipes",
        description="The recipe catalogue (conf/data/ and the data/ folder of every --config-dir DIR or hydra.searchpath=[file:///DIR]) "
        "with pool sizes and what curation kept.",
    )
    p.add_argument("--build", action="store_true", help="build missing recipe caches (built-in and local-file sources) to show their kept counts")
    p.add_argument(
        "--only", action="append", default=[], metavar="GLOB", help="only the recipes whose names match (repeatable), e.g. --only 'my_*' --only 'ladder/*'"
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides applied to every recipe, e.g. paths.cache_dir=...")
    a = p.parse_args(argv)
    searchpath = [o for o in a.overrides if o.startswith("hydra.searchpath=")]
    rows, notes, cache_dir = [], [], None
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        from hydra.core.global_hydra import GlobalHydra

        try:  # the data group over the whole search path: conf/data/ plus every --config-dir / hydra.searchpath folder
            names = sorted(group_options(GlobalHydra.instance().config_loader(), "data", config_name="config", overrides=searchpath))
        except Exception as exc:
            raise UserError(f"cannot read the recipe catalogue: {(str(exc).splitlines() or [''])[0]}") from None
        if a.only:
            names = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in a.only)]
            if not names:
                raise UserError(f"no recipe matches {' or '.join(map(repr, a.only))} (proxyscale recipes lists them all)")
        for name in names:
            cfg = compose("config", overrides=[f"data={name}", *a.overrides])
            d, cache_dir = cfg.data, cfg.paths.cache_dir
            hub = any(s.kind == "hf" for s in d.sources)
            try:  # a recipe whose inputs are missing (select_by_proxy before its scorer is trained) is listed, not fatal
                meta = cached_recipe_meta(d, cache_dir)
                if meta is None and not hub:
                    meta = built_recipes(cache_dir).get(_curation_key(_recipe_payload(d, cache_dir)))
                if meta is None and a.build and not hub:
                    meta = recipe_tokens(d, cache_dir)[1]
                waiting = None
            except UserError as exc:
                meta, waiting = None, "needs input" if "select_by_proxy" in str(exc) else "error"
                notes.append(f"{name}: {exc}")
            total = sum(s.weight for s in d.sources) or 1
            mix = " ".join(f"{s.name}{100 * s.weight / total:.0f}" for s in d.sources)
            steps = "+".join(STEP_ABBREV.get(st["op"], st["op"]) for st in d.steps) or "-"
            kept = f"{sum(s['docs'] for s in meta['sources'])} docs" if meta else (waiting or ("streamed" if hub else "not built"))
            rows.append((name, _si(d.pool_tokens), mix, steps, kept) + ((_recipe_home(name, searchpath),) if searchpath else ()))
    print(text_table(("recipe", "pool", "mixture (%)", "curation steps", "kept") + (("from",) if searchpath else ()), rows))
    print(f"kept: documents after curation, read from the caches in {cache_dir}")
    where = "<from>/data/<recipe>.yaml (proxyscale: conf/)" if searchpath else "conf/data/<recipe>.yaml"
    print(f"(--build builds the missing ones); each recipe's description: {where}")
    for line in notes:
        print(textwrap.shorten(line, 100, placeholder=" ..."))


def mixtures_main(argv: list[str]) -> None:
    from proxyscale.data.mixtures import write_recipes

    p = argparse.ArgumentParser(
        prog="proxyscale mixtures", description="Write N recipes with Dirichlet-sampled mixture weights (RegMix-style) to conf/data/mix/."
    )
    p.add_argument("--base", default="balanced", help="recipe whose sources and steps the mixtures share")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration (small = extreme mixtures)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    paths = write_recipes(a.base, a.n, a.alpha, a.seed)
    print(f"wrote {len(paths)} recipes to {paths[0].parent}; sweep them with: proxyscale -m 'data=glob(mix/{a.base}_mix*)' ...")


def collect_main(argv: list[str]) -> None:
    from proxyscale import collect

    p = argparse.ArgumentParser(prog="proxyscale collect", description="Turn a sweep's records into one tidy results.parquet.")
    p.add_argument("sweep_dir")
    p.add_argument("--out", help="write the tables here instead of into the sweep folder (e.g. for a read-only sweep)")
    p.add_argument("--all-records", action="store_true", help="also use records whose run id is not in the sweep's current grid.json")
    a = p.parse_args(argv)
    collected = collect.collect(a.sweep_dir, all_records=a.all_records)
    path = collect.write(collected, a.sweep_dir, a.out)
    print(f"{collected.summary}\nwrote {path} ({len(collected.results)} rows)")


def report_main(argv: list[str]) -> None:
    from proxyscale.report import build

    p = argparse.ArgumentParser(prog="proxyscale report", description="Proxy-vs-target agreement per eval set: correlations, decision accuracy, flips.")
    p.add_argument("sweep_dir", nargs="?", help="a sweep folder (collected first if needed)")
    p.add_argument("--from-csv", help="long CSV of external results: recipe,size,metric,value[,lr,seed,step,params,tokens,flops,direction,example]")
    p.add_argument("--out", help="output folder (default: the sweep folder)")
    p.add_argument(
        "--higher-is-better",
        nargs="*",
        metavar="METRIC",
        help="these metrics are higher-is-better (no names: every metric); default: lower, like losses, or the CSV's direction column",
    )
    p.add_argument("--allow-short-runs", action="store_true", help="leave out (and name) CSV runs that stop before the others' last step instead of refusing")
    p.add_argument(
        "--standard-lr", type=float, help="the standard LR of the fixed-LR target (overrides the sweep's grid.json); without either, that mode is unavailable"
    )
    p.add_argument(
        "--wandb",
        action="store_true",
        help="also log the report as a W&B run (job_type report) in the sweep's group; offline unless the sweep used logger.mode=online",
    )
    p.add_argument(
        "--decision-level",
        type=float,
        default=build.DECISION_LEVEL,
        help="the planner's decision level in (0.5, 1]: the cheapest proxy choice whose decision accuracy reaches it at the 95%% lower bound (default 0.8)",
    )
    p.add_argument(
        "--no-figures",
        action="store_true",
        help="write report.json, .md and .html without drawing the figures (seconds less per report; each figure's place says it was not drawn)",
    )
    p.add_argument("--schema", action="store_true", help="print the JSON Schema of report.json (generated from the analysis' dataclasses) and exit")
    a = p.parse_args(argv)
    if a.schema:
        import json

        from proxyscale.report.schema import report_schema

        print(json.dumps(report_schema(), indent=1))
        return
    if a.wandb:
        from proxyscale.extras import missing

        if missing("wandb"):
            fail(missing("wandb"))
    try:
        build.check_decision_level(a.decision_level)
    except build.ReportError as exc:
        fail(str(exc))
    hib = a.higher_is_better
    if hib is not None and not a.sweep_dir and not a.from_csv and hib and os.path.isdir(hib[-1]):
        a.sweep_dir = hib.pop()  # `report --higher-is-better acc outputs/x`: the folder is not a metric
    if bool(a.sweep_dir) == bool(a.from_csv):
        fail("give either a sweep folder or --from-csv PATH")
    if a.from_csv and not a.out:
        fail("--from-csv needs --out DIR")
    try:
        paths, report = build.run(
            sweep_dir=a.sweep_dir,
            csv=a.from_csv,
            out=a.out,
            higher_is_better=(hib or True) if hib is not None else None,
            standard_lr=a.standard_lr,
            allow_short_runs=a.allow_short_runs,
            decision_level=a.decision_level,
            figures=not a.no_figures,
        )
    except build.ReportError as exc:
        fail(str(exc))
    for line in report["summary"]["bottom_line"]:
        print(line)
    for p_ in paths:
        print(f"wrote {p_}")
    if a.wandb:
        from pathlib import Path

        from proxyscale.report import wandb_publish

        out_dir = a.out or a.sweep_dir
        try:
            where = wandb_publish.publish(a.sweep_dir, Path(out_dir) / "report.json", out_dir)
        except wandb_publish.PublishError as exc:
            fail(str(exc))
        print(f"W&B report run: {where}")


def submit_main(argv: list[str]) -> None:
    """proxyscale submit [--cells-per-task N] [--max-parallel P] [--retry-failed] OVERRIDES: one SLURM job array, returns at once."""
    from proxyscale.launch.submit import submit

    p = argparse.ArgumentParser(
        prog="proxyscale submit",
        description="Submit a grid to SLURM as one job array and return at once. SLURM settings are "
        "hydra.launcher.* overrides of conf/hydra/launcher/submitit_slurm.yaml. Final cells are "
        "skipped; failed cells too unless --retry-failed.",
    )
    p.add_argument("--cells-per-task", type=int, default=4, help="cells run one after another in each array task (default 4)")
    p.add_argument("--max-parallel", type=int, default=None, help="array tasks running at once (%%N; default hydra.launcher.array_parallelism)")
    p.add_argument("--retry-failed", action="store_true", help="also rerun cells whose record is failed")
    p.add_argument("overrides", nargs="*", help="grid overrides, as for proxyscale -m (e.g. model=debug,tiny data=balanced,noisy)")
    a, rest = p.parse_known_args(argv)
    overrides = [x for x in list(a.overrides) + rest if x not in ("-m", "--multirun")]
    submit(overrides, a.cells_per_task, a.max_parallel, a.retry_failed)


def status_main(argv: list[str]) -> None:
    """proxyscale status outputs/SWEEP: cells by state (records + scheduler), failed cells' error and log paths."""
    import json
    from pathlib import Path

    from proxyscale.launch.status import cell_states, status_table

    p = argparse.ArgumentParser(prog="proxyscale status", description="Cells of a sweep by state: records merged with the SLURM scheduler (sacct).")
    p.add_argument("sweep_dir")
    p.add_argument("--json", action="store_true", help="one JSON object per cell instead of the table")
    p.add_argument("--no-scheduler", action="store_true", help="records only, do not ask sacct")
    a = p.parse_args(argv)
    sweep = Path(a.sweep_dir)
    if not sweep.is_dir():
        fail(f"no sweep folder {sweep}")
    rows, note = cell_states(sweep, scheduler=not a.no_scheduler)
    if not rows:
        fail(f"{sweep} has no cells (no grid.json, manifest.jsonl or records)")
    if a.json:
        for r in rows:
            print(json.dumps(r, sort_keys=True))
    else:
        print(status_table(rows, note))


def wandb_sync_main(argv: list[str]) -> None:
    from proxyscale.extras import missing
    from proxyscale.tracking import wandb

    if missing("wandb") and not any(x in ("-h", "--help") for x in argv):
        fail(missing("wandb"))

    p = argparse.ArgumentParser(
        prog="proxyscale wandb-sync", description="Upload a sweep's offline W&B runs (logger=wandb) with `wandb sync`; needs WANDB_API_KEY."
    )
    p.add_argument("sweep_dir", help="a sweep folder (its wandb/offline-run-* are synced) or a wandb folder (logger.dir)")
    p.add_argument("--project", help="override the W&B project of every synced run")
    p.add_argument("--entity", help="override the W&B entity of every synced run")
    p.add_argument("--dry-run", action="store_true", help="print the runs and the wandb command, upload nothing")
    p.add_argument("--timeout", type=float, default=900, help="seconds before giving up on `wandb sync` (default 900)")
    a = p.parse_args(argv)
    try:
        cmd, output = wandb.sync(a.sweep_dir, a.project, a.entity, dry_run=a.dry_run, timeout=a.timeout)
    except wandb.SyncError as exc:  # wandb's own failure, not the user's input: exit 1
        fail(str(exc), code=1)
    runs = [c for c in cmd if "offline-run-" in c]
    print(f"{output}\n{'dry run, nothing uploaded' if a.dry_run else 'synced'}: {len(runs)} offline run(s) via: {' '.join(cmd)}".strip())


def mixfit_main(argv: list[str]) -> None:
    from proxyscale import mixfit

    p = argparse.ArgumentParser(
        prog="proxyscale mixfit",
        description="Regress a validation loss on mixture weights (linear, Data Mixing Laws, "
        "LightGBM with RegMix's settings), validate out of fold and on held-out mixtures, propose a mixture.",
    )
    p.add_argument("sweep_dir", nargs="?", help="a sweep folder: losses and weights from its records (instead of --from-csv/--mixtures)")
    p.add_argument("--from-csv", action="append", default=[], help="long losses recipe,size,metric,value[,lr,seed] (repeatable)")
    p.add_argument("--mixtures", help="CSV: recipe + one weight column per domain (+ optional split column)")
    p.add_argument("--holdout-split", action="append", default=[], help="a split value whose mixtures are held out (repeatable)")
    p.add_argument("--metric", action="append", default=[], help="metric(s) to fit (default: all)")
    p.add_argument("--target-metric", help="metric the proposal minimises (default: the first --metric)")
    p.add_argument("--size", help="size the models are fitted at (default: the smallest with training mixtures)")
    p.add_argument("--models", default=None, help="comma-separated: linear,dml,lightgbm (default: all three; lightgbm where installed)")
    p.add_argument("--samples", type=int, default=100_000, help="Dirichlet samples searched (default 100000)")
    p.add_argument("--top-k", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default: the sweep folder, else .)")
    p.add_argument("--write-recipe", metavar="NAME", help="write the proposal as conf/data/mix/NAME.yaml (domains must be the base's sources)")
    p.add_argument("--base", default="balanced", help="recipe whose sources the written recipe copies")
    p.add_argument("--force", action="store_true", help="--write-recipe may overwrite an existing conf/data/mix/NAME.yaml (never another recipe's name)")
    a = p.parse_args(argv)
    from proxyscale.extras import missing

    models = [m.strip() for m in (a.models or ",".join(mixfit.MODELS)).split(",") if m.strip()]
    if "lightgbm" in models and missing("lightgbm"):
        if a.models:
            fail(missing("lightgbm"))
        models.remove("lightgbm")
        print(f"note: {missing('lightgbm')}; fitting {', '.join(models)}")
    if a.sweep_dir and (a.from_csv or a.mixtures):
        fail("give a sweep folder or --from-csv/--mixtures, not both")
    if a.sweep_dir:
        losses, weights = mixfit.read_sweep(a.sweep_dir)
        tol = mixfit.WEIGHT_TOL
    else:
        if not a.from_csv or not a.mixtures:
            fail("give --from-csv FILE and --mixtures FILE (or a sweep folder)")
        weights, tol = mixfit.read_mixtures(a.mixtures)
        losses = mixfit.read_losses(a.from_csv)
    result = mixfit.fit_mixtures(
        losses,
        weights,
        weight_tol=tol,
        metrics=a.metric or None,
        size=a.size,
        holdout_splits=a.holdout_split,
        models=models,
        target_metric=a.target_metric,
        n_samples=a.samples,
        top_k=a.top_k,
        seed=a.seed,
    )
    if a.write_recipe:
        print(f"wrote {mixfit.write_recipe(result, a.write_recipe, a.base, force=a.force)}")
    for line in mixfit.summary(result):
        print(line)
    for path in mixfit.write(result, a.out or a.sweep_dir or "."):
        print(f"wrote {path}")
    for w in result["proposal"].get("warnings") or []:  # also in mixfit.md/.html
        print(f"proxyscale: warning: {w}", file=sys.stderr)


def datamodels_main(argv: list[str]) -> None:
    from pathlib import Path

    from proxyscale.analysis import datamodels as dm
    from proxyscale.report import attribution

    p = argparse.ArgumentParser(
        prog="proxyscale datamodels",
        description="Datamodels of a subset sweep (data.subset=...): per example and size a ridge model of the loss on group indicators, "
        "the LDS of every (fit size -> eval size) pair by K-fold cross-fitting over subsets, weight agreement across sizes, DsDm selection.",
    )
    p.add_argument("sweep_dir", nargs="?", help="a sweep folder with subset cells (collected first if needed)")
    p.add_argument("--from-csv", metavar="LOSSES", help="CSV subset,size,example,value[,metric,seed] (lower is better unless --higher-is-better)")
    p.add_argument("--subsets", help="with --from-csv: CSV subset,group, one row per group a subset includes")
    p.add_argument("--out", help="output folder (default: the sweep folder)")
    p.add_argument("--higher-is-better", nargs="*", metavar="METRIC", help="with --from-csv: these metrics are higher-is-better (no names: all)")
    p.add_argument("--folds", type=int, default=dm.FOLDS, help=f"K of the cross-fitting over subsets (default {dm.FOLDS})")
    p.add_argument("--n-boot", type=int, default=dm.N_BOOT, help=f"bootstrap resamples over examples (default {dm.N_BOOT})")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds, the bootstrap and the permutations")
    p.add_argument("--permutations", type=int, default=0, metavar="N", help="also a subset-level p-value of each LDS > 0 from N shuffles (default 0: off)")
    p.add_argument("--select", metavar="METRIC", help="DsDm: select the groups whose weights most improve this metric")
    p.add_argument("--k", type=int, help="with --select: how many groups")
    p.add_argument("--fit-size", help="with --select: the size whose datamodels select (default: the smallest)")
    p.add_argument("--write-recipe", metavar="NAME", help="with --select on a sweep: write conf/data/selected/NAME.yaml, the recipe training on the selection")
    p.add_argument("--trak", action="append", default=[], metavar="SIZE", help="also TRAK from kept checkpoints of this size's subset cells (repeatable)")
    p.add_argument("--trak-checkpoints", type=int, default=1, help="checkpoints TRAK ensembles per size (default 1)")
    p.add_argument("--trak-per-group", type=int, default=32, help="train windows TRAK samples per group (default 32)")
    p.add_argument("--trak-proj-dim", type=int, default=256, help="TRAK's projection dimension (default 256; at most half the train windows)")
    p.add_argument("--select-with", choices=("datamodels", "trak"), default="datamodels", help="whose weights --select uses (trak: needs --trak FIT_SIZE)")
    a = p.parse_args(argv)
    if bool(a.sweep_dir) == bool(a.from_csv):
        fail("give either a sweep folder or --from-csv LOSSES --subsets SUBSETS --out DIR")
    if a.trak and a.from_csv:
        fail("--trak needs a sweep (its kept checkpoints and documents)")
    if a.from_csv and not (a.subsets and a.out):
        fail("--from-csv needs --subsets SUBSETS and --out DIR")
    if a.permutations < 0:
        fail(f"--permutations must be >= 0, got {a.permutations}")
    if a.select and a.k is None:
        fail("--select needs --k K")
    if (a.k is not None or a.fit_size or a.write_recipe) and not a.select:
        fail("--k, --fit-size and --write-recipe go with --select METRIC")
    if a.write_recipe and a.from_csv:
        fail("--write-recipe needs a sweep (a CSV's groups are not proxyscale's document groups)")
    if a.from_csv:
        data = dm.read_csv(a.from_csv, a.subsets, (a.higher_is_better or True) if a.higher_is_better is not None else None)
    else:
        if a.higher_is_better is not None:
            fail("--higher-is-better is for --from-csv input (a sweep's task metrics know their direction)")
        data = attribution.sweep_subsets(a.sweep_dir, a.out)
    result = dm.fit(data, folds=a.folds, n_boot=a.n_boot, seed=a.seed, permutations=a.permutations)
    trak_weights = {}
    for size in a.trak:
        from proxyscale.job import trak

        weights, cost = trak.trak_weights(a.sweep_dir, size, a.trak_checkpoints, a.trak_per_group, a.trak_proj_dim, seed=a.seed)
        for metric, w in weights.items():
            trak_weights[(metric, size)] = w
            for entry in dm.score_weights(data, metric, w, a.n_boot, a.seed, a.permutations):
                result.setdefault("trak", []).append({**entry, "checkpoint_size": size, **cost})
    recipe = None
    if a.select:
        fit_size = a.fit_size or data.sizes[0]
        if a.select_with == "trak" and (a.select, fit_size) not in trak_weights:
            fail(f"--select-with trak needs --trak {fit_size} (TRAK weights of {a.select} at the fit size)")
        chosen = _trak_columns(data, trak_weights[(a.select, fit_size)]) if a.select_with == "trak" else None
        result["selection"] = dm.select(data, a.select, a.k, fit_size, chosen)
        result["selection"]["by"] = a.select_with
        if a.write_recipe:
            recipe = attribution.write_selection_recipe(data, a.write_recipe, result["selection"])
    out = Path(a.out or a.sweep_dir)
    for line in dm.Attribution.from_result(result).headline():
        print(line)
    for path in attribution.write(result, out):
        print(f"wrote {path}")
    if recipe:
        print(f"wrote {recipe}; train on it with data=selected/{a.write_recipe}")


def _trak_columns(data, weights):
    """TRAK weights (a column per group index) in the datamodels' group order."""
    return weights[:, [int(g) for g in data.groups]]


def quiet_third_parties() -> None:
    """Off unless PROXYSCALE_VERBOSE=1: W&B's per-run lines (WANDB_SILENT, read by wandb in this
    process and inherited by workers) and hydra-submitit-launcher's schema-matching UserWarning,
    which Hydra prints once per composition."""
    import warnings

    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema with the same name", category=UserWarning)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from proxyscale.errors import UserError

    if argv[:1] == ["help"] or (argv and argv[0] not in SUBCOMMANDS and any(a in ("-h", "--help") for a in argv)):
        print(__doc__.strip())
        return
    if argv[:1] == ["--version"]:
        print(f"proxyscale {version()}")
        return
    check_subcommand(argv)
    if argv[:1] in (["report"], ["mixfit"], ["collect"], ["datamodels"]):  # before numpy loads: these run many small fits and matrix products,
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # where OpenBLAS worker threads only contend (~4x slower on 2 busy cores)
    if os.environ.get(VERBOSE_ENV) != "1":
        quiet_third_parties()
    try:
        if not argv or argv[0] not in SUBCOMMANDS:
            argv = fold_config_dirs(argv)
        elif argv[0] in ("submit", "recipes", "ladder"):
            argv = argv[:1] + fold_config_dirs(argv[1:])
        if argv and argv[0] in SUBCOMMANDS:
            {
                "ladder": ladder_main,
                "recipes": recipes_main,
                "mixtures": mixtures_main,
                "collect": collect_main,
                "report": report_main,
                "submit": submit_main,
                "status": status_main,
                "wandb-sync": wandb_sync_main,
                "mixfit": mixfit_main,
                "datamodels": datamodels_main,
            }[argv[0]](argv[1:])
        else:
            train_main(argv)
    except UserError as exc:  # every stage's bad-input error: one line, exit 2
        fail(str(exc), exc.code)
    gc.freeze()  # exit without a final collection over torch's objects (1.5 s -> 0.2 s here)


if __name__ == "__main__":
    main()
