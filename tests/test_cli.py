"""The real `proxyscale` CLI in a subprocess: bad input is one line and exit 2 before anything
trains or is written; a tiny grid runs end to end to a report; reruns skip final cells."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from helpers import FAST, PROXYSCALE, ROOT, conf_options, run_cli, run_main, snapshot
from proxyscale.cli import SUBCOMMANDS


@pytest.fixture
def seeded_outputs(out_dir):
    """An outputs folder with an existing file, to check that failed commands leave it alone."""
    (out_dir / "old").mkdir(parents=True)
    (out_dir / "old" / "result.json").write_text('{"keep": true}')
    return out_dir


NO_SLURM = {"PATH": str(Path(PROXYSCALE).parent)}  # the venv's bin only: no sbatch


class Csv(str):
    """An external results CSV with this text; the test writes it to the file {csv} names."""


def available(group: str) -> str:
    return ", ".join(conf_options(group))


REPORT = ["report", "--from-csv", "{csv}", "--out", "{out}/report"]
# The bad-input table: each entry's exact one-line error ({out}: the seeded outputs folder, {csv}:
# the entry's CSV file). Every one must exit 2, before anything trains, and leave {out} unchanged.
# Hydra entries get paths.output_dir={out}; cluster-specific cases (unknown partition, GPUs on a
# CPU cluster) are in tests/slurm/.
BAD = [
    # sizes, recipes and other config groups
    (["model=nonexistent"], f"In 'config': Could not find 'model/nonexistent' (available: {available('model')})", None),
    (["-m", "data=balanced,nosuchrecipe"], f"In 'config': Could not find 'data/nosuchrecipe' (available: {available('data')})", None),
    (["logger=nosuch"], f"In 'config': Could not find 'logger/nosuch' (available: {available('logger')})", None),
    # values
    (["optim.lr=0"], "optim.lr must be a finite number > 0, got 0.0 (cell: optim.lr=0 paths.output_dir={out})", None),
    (["-m", "optim.lr=1e-3,-1e-3"], "optim.lr must be a finite number > 0, got -0.001 (cell: optim.lr=-0.001 paths.output_dir={out})", None),
    (["optim.lr=fast"], "Error merging override optim.lr=fast: Value 'fast' of type 'str' could not be converted to Float", None),
    (["optim.schedule=linear"], "optim.schedule must be cosine, wsd or constant, got 'linear' (cell: optim.schedule=linear paths.output_dir={out})", None),
    (["trainer.nonsense=1"], "Could not override 'trainer.nonsense': Key 'nonsense' not in 'TrainerConfig'", None),
    (["trainer.compile=maybe"], "Error merging override trainer.compile=maybe: Value 'maybe' is not a valid bool (type str)", None),
    (
        ["trainer.strategy=deepspeed"],
        "trainer.strategy must be auto, ddp or fsdp, got 'deepspeed' (cell: trainer.strategy=deepspeed paths.output_dir={out})",
        None,
    ),
    (
        ["trainer.batch_size=33", "trainer.devices=2"],
        "trainer.batch_size=33 must divide evenly over devices x num_nodes = 2 processes (cell: trainer.batch_size=33 trainer.devices=2 paths.output_dir={out})",
        None,
    ),
    (["eval.tokens_per_set=10"], "eval.tokens_per_set must hold one sequence (129 tokens) (cell: eval.tokens_per_set=10 paths.output_dir={out})", None),
    # issue 14: names that would write outside outputs/ or into the cache, values that failed inside every cell
    (
        ["sweep=../../escape"],
        "sweep name '../../escape' holds a '/' or '\\' (names are one folder, never a path) (cell: sweep=../../escape paths.output_dir={out})",
        None,
    ),
    (["sweep=/tmp/abs"], "sweep name '/tmp/abs' holds a '/' or '\\' (names are one folder, never a path) (cell: sweep=/tmp/abs paths.output_dir={out})", None),
    (
        ["sweep=.cache"],
        "sweep name '.cache' starts with '.' (hidden and reserved names such as .cache are not allowed) (cell: sweep=.cache paths.output_dir={out})",
        None,
    ),
    (
        ["data.name=org/name"],
        "recipe name 'org/name' holds a '/' or '\\' (names are one folder, never a path) (cell: data.name=org/name paths.output_dir={out})",
        None,
    ),
    (
        ["sweep=" + "x" * 250],
        "sweep name '" + "x" * 37 + "...' is 250 characters long (at most 100) (cell: sweep=" + "x" * 250 + " paths.output_dir={out})",
        None,
    ),
    (["seed=-1"], "seed must be in [0, 2**32 - 1], got -1 (cell: seed=-1 paths.output_dir={out})", None),
    (["seed=4294967296"], "seed must be in [0, 2**32 - 1], got 4294967296 (cell: seed=4294967296 paths.output_dir={out})", None),
    (
        ["data.tokenizer=gpt2"],
        "data.tokenizer must be 'byte' or a local tokenizer folder (never downloaded), got 'gpt2' (cell: data.tokenizer=gpt2 paths.output_dir={out})",
        None,
    ),
    (
        ["eval.sets.0={name: e, kind: files, path: '{csv}'}", Csv("")],
        "source 'e': {csv} is empty (cell: eval.sets.0={name:e,kind:files,path:'{csv}'} paths.output_dir={out})",
        None,
    ),
    (["eval.batch_size=0"], "eval.batch_size must be > 0, got 0 (cell: eval.batch_size=0 paths.output_dir={out})", None),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps must be > 0, got 0 (cell: trainer.log_every_n_steps=0 paths.output_dir={out})", None),
    (["model.n_kv_head=3"], "model tiny: n_kv_head 3 does not divide n_head 2 (cell: model.n_kv_head=3 paths.output_dir={out})", None),
    (["optim.grad_clip=-1"], "optim.grad_clip must be >= 0 (0 disables), got -1.0 (cell: optim.grad_clip=-1 paths.output_dir={out})", None),
    (["trainer.diverge_delta=-1"], "trainer.diverge_delta must be > 0, got -1.0 (cell: trainer.diverge_delta=-1 paths.output_dir={out})", None),
    (["optim.min_lr_frac=-3"], "optim.min_lr_frac must be in [0, 1], got -3.0 (cell: optim.min_lr_frac=-3 paths.output_dir={out})", None),
    (["-m", "sweep=ok,../up"], "sweep name '../up' holds a '/' or '\\' (names are one folder, never a path) (cell: sweep=../up paths.output_dir={out})", None),
    # benchmark task sets (issue 16.4): items that cannot be scored, unknown tasks
    (
        ["eval.sets.0={name: e, kind: files, path: '{csv}', format: jsonl, task: mc}", Csv('{"context": "a", "label": 0}\n')],
        "eval set 'e': {csv} item 1 (line 1) has no choices field 'choices' (fields: context, label) (cell: eval.sets.0={name:e,kind:files,path:'{csv}',format:jsonl,task:mc} paths.output_dir={out})",
        None,
    ),
    (
        [
            "eval.sets.0={name: e, kind: files, path: '{csv}', format: jsonl, task: mc}",
            Csv('{"context": "a", "choices": ["x", "y"], "label": 0}\n{"context": "b", "choices": ["x", "y"], "label": 5}\n'),
        ],
        "eval set 'e': {csv} item 2 (line 2): label 5 is out of range for 2 choices (cell: eval.sets.0={name:e,kind:files,path:'{csv}',format:jsonl,task:mc} paths.output_dir={out})",
        None,
    ),
    (
        ["eval.sets.0={name: e, kind: files, path: '{csv}', format: jsonl, task: mc}", Csv("\n\n")],
        "eval set 'e': no mc items in {csv} (cell: eval.sets.0={name:e,kind:files,path:'{csv}',format:jsonl,task:mc} paths.output_dir={out})",
        None,
    ),
    (
        ["eval.sets.0={name: e, kind: files, path: '{csv}', format: jsonl, task: cloze}", Csv('{"context": "a"}\n')],
        "eval set 'e': {csv} item 1 (line 1) has no target field 'target' (fields: context) (cell: eval.sets.0={name:e,kind:files,path:'{csv}',format:jsonl,task:cloze} paths.output_dir={out})",
        None,
    ),
    (["eval.sets.0.task=qa"], "eval set 'prose': task must be lm, mc or cloze, got 'qa' (cell: eval.sets.0.task=qa paths.output_dir={out})", None),
    (
        ["data.sources.0.task=mc"],
        "recipe balanced: source 'prose' has task 'mc'; recipes train on text (task lm), benchmark tasks are eval sets "
        "(cell: data.sources.0.task=mc paths.output_dir={out})",
        None,
    ),
    # recipes: mixtures, sources, curation steps
    (
        ["data.sources.0.weight=-0.5"],
        "recipe balanced: negative mixture weight in [-0.5, 0.4, 0.2] (cell: data.sources.0.weight=-0.5 paths.output_dir={out})",
        None,
    ),
    (
        ["data.sources.0.weight=0", "data.sources.1.weight=0", "data.sources.2.weight=0"],
        "recipe balanced: mixture weights sum to zero (cell: data.sources.0.weight=0 data.sources.1.weight=0 data.sources.2.weight=0 paths.output_dir={out})",
        None,
    ),
    (
        ["data.sources.2={name: mine, kind: files, path: /no/such/file.jsonl}"],
        "source 'mine': no local dataset file matches '/no/such/file.jsonl' (cell: data.sources.2={name:mine,kind:files,path:/no/such/file.jsonl} paths.output_dir={out})",
        None,
    ),
    (
        ["data.sources.0.path=nope"],
        "source 'prose': unknown built-in corpus 'nope' (choose from: python_docs, python_code, package_readmes, licenses) (cell: data.sources.0.path=nope paths.output_dir={out})",
        None,
    ),
    (["data.sources.0.kind=ftp"], "source 'prose': kind must be builtin, hf or files, got 'ftp' (cell: data.sources.0.kind=ftp paths.output_dir={out})", None),
    (
        ["data.steps=[{op: frobnicate}]"],
        "recipe balanced: step 0 has unknown op 'frobnicate' (choose from: exact_dedup, near_dedup, select_like, quality_filter, "
        "duplicate, corrupt, shuffle_words, select_by_proxy, classifier_filter) (cell: data.steps=[{op:frobnicate}] paths.output_dir={out})",
        None,
    ),
    (
        ["data.steps=[{op: quality_filter, bogus: 1}]"],
        "recipe balanced: step quality_filter has unknown parameter(s) ['bogus'] (allowed: ['max_dup_line_frac', "
        "'max_mean_word_len', 'max_symbol_frac', 'min_alpha_frac', 'min_chars', 'min_mean_word_len']) (cell: data.steps=[{op:quality_filter,bogus:1}] paths.output_dir={out})",
        None,
    ),
    (
        ["data.steps=[{op: exact_dedup, sources: [nosuch]}]"],
        "recipe balanced: step exact_dedup names missing source(s) ['nosuch'] (cell: data.steps=[{op:exact_dedup,sources:[nosuch]}] paths.output_dir={out})",
        None,
    ),
    (
        ["data.steps=[{op: select_like, keep_frac: 0}]"],
        "recipe balanced: select_like keep_frac must be in (0, 1] (cell: data.steps=[{op:select_like,keep_frac:0}] paths.output_dir={out})",
        None,
    ),
    (
        ["data.steps=[{op: duplicate, factor: 0}]"],
        "recipe balanced: duplicate factor must be >= 1 (cell: data.steps=[{op:duplicate,factor:0}] paths.output_dir={out})",
        None,
    ),
    (["recipes", "--only", "zz*"], "no recipe matches 'zz*' (proxyscale recipes lists them all)", None),
    (["mixtures", "--base", "nosuch", "--n", "2"], f"unknown recipe 'nosuch': no {ROOT}/conf/data/nosuch.yaml", None),
    (["mixtures", "--base", "balanced", "--n", "0"], "mixtures need n >= 1, at least 2 sources and alpha > 0 (got n=0, k=3, alpha=1.0)", None),
    # grids and launchers
    (["-m", "optim.lr=range(1,1)"], "the grid has zero cells", None),
    (["-m", "data=glob(nomatch*)"], "the grid has zero cells", None),
    (["model=debug,tiny"], "a sweep (a,b values) needs -m/--multirun", None),
    (
        ["hydra/launcher=nosuch"],
        "In 'hydra/config': Could not find 'hydra/launcher/nosuch' (available: basic, joblib, local, submitit_local, submitit_slurm)",
        None,
    ),
    (["-m", "model=debug", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs must be >= 1, got 0", None),
    (
        ["submit", "model=debug"],
        "'sbatch' not found on PATH: `proxyscale submit` needs a SLURM cluster (run the grid here with `proxyscale -m ...`, or hydra/launcher=submitit_local)",
        NO_SLURM,
    ),
    (["submit", "--cells-per-task", "0", "model=debug"], "--cells-per-task must be >= 1, got 0", None),
    # issue 17: typos, list syntax and repeated values on a sweep axis
    (["reprot"], "unknown subcommand 'reprot' (did you mean report?); overrides are key=value, see proxyscale --help", None),
    (["hlep"], "unknown subcommand 'hlep' (did you mean help?); overrides are key=value, see proxyscale --help", None),
    (["lr=1e-3"], "Could not override 'lr': Key 'lr' not in 'Config' (did you mean optim.lr?)", None),
    (["-m", "lr=1e-3,3e-3"], "Could not override 'lr': Key 'lr' not in 'Config' (did you mean optim.lr?)", None),
    (
        ["trainer.max_steps=20"],
        "Could not override 'trainer.max_steps': Key 'max_steps' not in 'TrainerConfig' (did you mean trainer.max_tokens or data.steps?)",
        None,
    ),
    (
        ["-m", "data=[balanced,noisy]"],
        "data=[balanced,noisy]: [..] would merge 2 data options into one config; to sweep them write -m data=balanced,noisy",
        None,
    ),
    (["-m", "optim.lr=[1e-3,3e-3]"], "optim.lr=[1e-3,3e-3]: [..] is one list value, not a sweep; to sweep optim.lr write optim.lr=0.001,0.003", None),
    (["-m", "model=debug,debug"], "model=debug,debug: debug appears more than once on the model axis (name each value once)", None),
    (["-m", "optim.lr=1e-3,0.001"], "optim.lr=1e-3,0.001: 0.001 appears more than once on the optim.lr axis (name each value once)", None),
    # records, reports and external CSVs
    (["collect", "{out}/nosuch"], "no sweep folder at {out}/nosuch", None),
    (["report", "{out}/nosuch"], "no sweep folder at {out}/nosuch", None),
    (["report", "--from-csv", "{out}/nosuch.csv", "--out", "{out}/report"], "{out}/nosuch.csv: no such file", None),
    ([*REPORT, Csv("")], "{csv}: empty file", None),
    (
        [*REPORT, Csv("recipe,size,value\na,1M,1\nb,60M,2\n")],
        "{csv}: missing column(s) metric (need recipe,size,metric,value[,lr,seed,step,params,tokens,flops])",
        None,
    ),
    ([*REPORT, Csv("recipe,size,metric,value\na,1M,loss,1\nb,1M,loss,abc\n")], "{csv}: non-numeric value 'abc' (row 3)", None),
    ([*REPORT, Csv("recipe,size,metric,value,lr\na,1M,loss,1,1e-3\nb,60M,loss,2,x\n")], "{csv}: non-numeric lr 'x' (row 3)", None),
    ([*REPORT, Csv("recipe,size,metric,value\na,1M,loss,1\na,60M,loss,2\n")], "{csv}: only one recipe ('a'); a ranking needs at least 2", None),
    ([*REPORT, Csv("recipe,size,metric,value\na,1M,loss,1\nb,1M,loss,2\n")], "{csv}: only one size ('1M'); a proxy and a target are needed", None),
    (
        [*REPORT, Csv("recipe,size,metric,value\na,tiny,loss,1\nb,huge,loss,2\n")],
        "cannot order sizes 'tiny', 'huge': give a params column or names like 60M, 1.3B, 350k",
        None,
    ),
    # issue 24.5: what a new user does by mistake is refused before anything runs, never silently changed
    (
        ["-m", "optim.lr=range(1e-3,1e-2)"],
        "optim.lr=range(1e-3,1e-2): range() steps by 1 from 0.001, so over floats it is not a grid of values; list them instead, e.g. optim.lr=1e-3,3e-3,1e-2",
        None,
    ),
    (
        ["-m", "model=debug,tiny", "model.name=x", "model.n_layer=2", "model.d_model=32", "model.n_head=2", "model.d_ff=96"],
        "the grid's 2 combinations are only 1 distinct cells: model=tiny composes the same cell as model=debug (a preset or a fixed value sets "
        "that axis's key); drop the axis or what overrides it",
        None,
    ),
    (["optim.lr=inf"], "optim.lr must be a finite number > 0, got inf (cell: optim.lr=inf paths.output_dir={out})", None),
    (["standard_lr=inf"], "standard_lr must be a finite number > 0, got inf (cell: standard_lr=inf paths.output_dir={out})", None),
    (["report", "{out}/old", "--standard-lr", "inf"], "--standard-lr must be a finite number > 0, got inf", None),
    (
        ["data.pool_tokens=100"],
        "recipe balanced: data.pool_tokens=100 is less than one training window (trainer.seq_len + 2 = 130 tokens) (cell: data.pool_tokens=100 paths.output_dir={out})",
        None,
    ),
    (
        ["eval.sets.0={name: e, kind: files, path: '{csv}', format: jsonl, task: mc}", Csv('{"context": "a\\ud800", "choices": ["x", "y"], "label": 0}\n')],
        "eval set 'e': {csv} item 1 (line 1): holds a lone surrogate \\ud800 (half of a UTF-16 pair), not text; fix or drop the item "
        "(cell: eval.sets.0={name:e,kind:files,path:'{csv}',format:jsonl,task:mc} paths.output_dir={out})",
        None,
    ),
    (
        [*REPORT, Csv("recipe,size,metric,value,seed\na,1M,loss,1,0\na,1M,loss,1.5,0\nb,1M,loss,2,0\na,60M,loss,1,0\nb,60M,loss,2,0\n")],
        "{csv}: 1 run(s) have rows with different values, e.g. recipe=a, size=1M, metric=loss, seed=0: 1, 1.5; keep one row per (recipe, size, metric, lr, seed)",
        None,
    ),
]


def test_the_bad_input_table_is_large():
    assert len(BAD) >= 20


def _refused(seeded_outputs, args, expected, env, run):
    csv_path = seeded_outputs.parent / "in.csv"
    fill = lambda text: text.replace("{out}", str(seeded_outputs)).replace("{csv}", str(csv_path))  # noqa: E731
    for text in (a for a in args if isinstance(a, Csv)):
        csv_path.write_text(text)
    args = [fill(a) for a in args if not isinstance(a, Csv)]
    if args[0] not in SUBCOMMANDS or args[0] == "submit":
        args.append(f"paths.output_dir={seeded_outputs}")
    before = snapshot(seeded_outputs)
    r = run(*args, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [f"proxyscale: error: {fill(expected)}"]
    assert snapshot(seeded_outputs) == before


@pytest.mark.parametrize("args,expected,env", BAD, ids=[" ".join(b[0])[:60] or "empty" for b in BAD])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(seeded_outputs, args, expected, env, capsys):
    """In this process (proxyscale.cli.main): the same code path as the command, without ~3 s of start-up per entry."""
    _refused(seeded_outputs, args, expected, env, lambda *a, env: run_main(capsys, *a, env=env))


# The installed entry point in a subprocess, for a few kinds of refusal: a config group (Hydra's composition),
# a cell's value refused by the sweeper inside Hydra, a typo'd subcommand, no sbatch on PATH, a subcommand's own check.
ENTRY_POINT = [
    b for b in BAD if b[0][:2] in (["model=nonexistent"], ["-m", "optim.lr=1e-3,-1e-3"], ["reprot"], ["submit", "model=debug"], ["report", "{out}/nosuch"])
]


@pytest.mark.parametrize("args,expected,env", ENTRY_POINT, ids=[" ".join(b[0])[:60] for b in ENTRY_POINT])
def test_bad_input_through_the_installed_command_is_one_line_exit_2(seeded_outputs, args, expected, env):
    _refused(seeded_outputs, args, expected, env, lambda *a, env: run_cli(*a, env=env, timeout=120))


def test_dry_run_prints_the_cost_table_and_trains_nothing(out_dir, capsys):
    r = run_main(capsys, "-m", "grid=demo", "dry_run=true", f"paths.output_dir={out_dir}")
    assert r.returncode == 0, r.stderr
    assert "64 cells (0 already final, 64 to run)" in r.stdout and "tiny-readme_80-lr0.002" in r.stdout and "est. CPU time" in r.stdout
    assert not out_dir.exists()


def test_ladder_lists_every_size(capsys):
    """(and fits 100 columns; one run serves both checks: composing every size takes seconds)"""
    r = run_main(capsys, "ladder")
    assert r.returncode == 0, r.stderr
    sizes = [ln.split()[0] for ln in r.stdout.splitlines()[2:]]
    for name in ("debug", "tiny", "mini", "small", "150m", "760m", "1b"):
        assert name in sizes
    assert "1.07B" in r.stdout
    assert max(map(len, r.stdout.splitlines())) <= 100, r.stdout
    assert r.stdout.splitlines()[0].split() == ["size", "layers", "d_model", "heads", "params", "tokens", "FLOPs", "est.", "CPU", "time"]
    assert "cell" not in r.stdout and "recipe" not in r.stdout


@pytest.mark.slow
def test_tiny_grid_end_to_end_with_a_diverging_cell(out_dir, cache_dir, capsys):
    common = [f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", "sweep=e2e", "model=debug", *FAST, "optim.warmup_frac=0", "optim.grad_clip=0"]
    r = run_main(capsys, "-m", "data=balanced,noisy,code_heavy", "optim.lr=3e-3,1e3", *common)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[6/6]" in r.stderr + r.stdout
    sweep = out_dir / "e2e"
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in sweep.glob("*/result.json")}
    assert len(statuses) == 6
    assert {s for k, s in statuses.items() if "lr1000" in k} == {"diverged"}
    assert {s for k, s in statuses.items() if "lr0.003" in k} == {"completed"}
    assert set(json.loads((sweep / "grid.json").read_text())["cells"]) == set(statuses)

    again = run_main(capsys, "-m", "data=balanced,noisy,code_heavy", "optim.lr=3e-3,1e3", *common)
    assert "6 already final, 0 to run" in again.stderr + again.stdout

    r = run_main(capsys, "collect", str(sweep))
    assert r.returncode == 0 and "3 completed, 3 diverged" in r.stdout
    assert (sweep / "results.parquet").exists()


def test_recipes_lists_the_catalogue(corpora, cache_dir, capsys):
    """(and fits 100 columns; one run serves both checks: composing every recipe takes seconds)"""
    r = run_main(capsys, "recipes", f"paths.cache_dir={cache_dir}")
    assert r.returncode == 0, r.stderr
    names = [ln.split()[0] for ln in r.stdout.splitlines()[2:]]
    assert len(names) >= 8 and {"balanced", "duplicated", "noisy", "hub_fineweb_edu", "ladder/readme_05"} <= set(names)  # sub-folders too
    assert max(map(len, r.stdout[: r.stdout.index("\nkept:")].splitlines())) <= 100, r.stdout  # the table (the cache folder's line holds a path)
    assert " 1.5M " in r.stdout and "M " in r.stdout and "0.65536M" not in r.stdout


def test_mixtures_of_an_unknown_recipe_is_one_line(capsys):
    r = run_main(capsys, "mixtures", "--base", "nosuch", "--n", "2")
    assert r.returncode == 2 and r.stderr.strip().startswith("proxyscale: error: unknown recipe 'nosuch'")


def test_config_dir_folds_into_one_hydra_searchpath(tmp_path):
    """--config-dir (any spelling) and hydra.searchpath end as one searchpath override, so the planner, the
    sweeper and `recipes` all see the user's folder (and dry_run=true is honoured with --config-dir)."""
    from proxyscale.cli import fold_config_dirs

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    got = fold_config_dirs(["-m", "--config-dir", str(a), "data=x", f"--config-dir={b}", "hydra.searchpath=[pkg://other]", "seed=1"])
    assert got == ["-m", "data=x", "seed=1", f"hydra.searchpath=[pkg://other,file://{a},file://{b}]"]
    assert fold_config_dirs(["-m", "data=x"]) == ["-m", "data=x"]
    with pytest.raises(SystemExit) as exc:
        fold_config_dirs(["-cd", str(tmp_path / "missing")])
    assert exc.value.code == 2


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_lists_every_subcommand_in_100_columns(flag, capsys):
    r = run_main(capsys, flag)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for name in SUBCOMMANDS:
        assert any(ln.startswith(f"  {name} ") for ln in lines), name
    assert "--hydra-help" in r.stdout and "PROXYSCALE_VERBOSE=1" in r.stdout and "PROXYSCALE_OK_EXIT=1" in r.stdout
    assert max(map(len, lines)) <= 100
    assert "Hydra" not in lines[0]


def test_version_is_proxyscales():
    r = run_cli("--version", timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"proxyscale {importlib.metadata.version('proxyscale')}"


def test_hydra_help_stays_reachable(capsys):
    r = run_main(capsys, "--hydra-help")
    assert r.returncode == 0 and "Hydra" in r.stdout


def test_gpu_cells_are_refused_without_a_gpu(out_dir, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out_dir.mkdir(parents=True)
    for args in (["trainer=gpu"], ["-m", "trainer=cpu,gpu", "model=debug"]):
        r = run_main(capsys, *args, f"paths.output_dir={out_dir}")
        assert r.returncode == 2, r.stderr
        (line,) = r.stderr.splitlines()
        assert line.startswith("proxyscale: error: trainer.accelerator=gpu but this machine has no CUDA GPU (use trainer=cpu here"), line
        assert snapshot(out_dir) == {}


def test_recipes_finds_caches_built_at_another_pool_size(corpora, cache_dir, tmp_path, capsys):
    """A cell's pool built at data.pool_tokens=200000 (what job/run.py builds before it trains, built here without
    the training) is listed for the recipe at its own 1.5M. --only keeps the recipes it matches, sub-folders by
    their names; a --config-dir recipe is listed with its folder, a shipped one with proxyscale's."""
    from hydra import compose, initialize_config_dir

    from proxyscale.config import CONF_DIR
    from proxyscale.data.cache import recipe_tokens

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["model=debug", "data=noisy", *FAST, f"paths.cache_dir={cache_dir}"])
    assert cfg.data.pool_tokens == 200000
    recipe_tokens(cfg.data, cfg.paths.cache_dir)
    mine = tmp_path / "myconf"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "my_mix.yaml").write_text("defaults:\n  - /data/balanced@_here_\n  - _self_\nname: my_mix\n")
    only = ["--only", "no*", "--only", "ladder/readme_0[27]", "--only", "my_*"]
    listing = run_main(capsys, "recipes", "--config-dir", str(mine), *only, f"paths.cache_dir={cache_dir}").stdout
    rows = {ln.split()[0]: ln for ln in listing.splitlines()[2:] if ln.strip() and not ln.startswith(("kept:", "(--build"))}
    assert sorted(rows) == ["ladder/readme_02", "ladder/readme_07", "my_mix", "no_code", "no_prose", "no_readme", "noisy"], sorted(rows)
    assert str(mine) in rows["my_mix"] and rows["noisy"].split()[-1] == "proxyscale", listing
    assert rows["noisy"].split()[-2] == "docs", rows["noisy"]  # built with data.pool_tokens=200000, listed at the recipe's own 1.5M (then its folder)


def test_config_dir_keeps_dry_run(tmp_path, out_dir, capsys):
    extra = tmp_path / "extra"
    extra.mkdir()
    for args in (["-m", "model=debug", "optim.lr=1e-3,3e-3"], ["model=debug"]):
        r = run_main(capsys, "--config-dir", str(extra), *args, "dry_run=true", f"paths.output_dir={out_dir}", "sweep=cd")
        assert r.returncode == 0, r.stderr[-2000:]
        assert "est. CPU time" in r.stdout, r.stdout
        assert not list((out_dir / "cd").rglob("result.json")) and not (out_dir / "cd" / "grid.json").exists(), "a dry run trained or wrote"
