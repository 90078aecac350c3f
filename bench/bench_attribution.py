"""Attribution and selection across scale, measured end to end through the CLI (`python -m bench attribution`;
docs/attribution.md), in the stages of conf/experiment/dsdm_selection_cpu.yaml: the perplexity scorers (one debug
and one tiny cell on balanced at the preset's budget, checkpoints kept), a subset sweep of debug and tiny on the
same 64 subsets of balanced's 16 document groups, then `proxyscale datamodels` on it (the LDS of debug -> debug,
debug -> tiny and tiny -> tiny with bootstrap intervals and subset-permutation p-values, the weight agreement across
sizes, TRAK from one debug checkpoint) and the selections it writes (4 groups each: DsDm at debug and at tiny and
TRAK at debug for the prose eval set, DsDm at debug and at tiny for the README eval set), then the reduced selection
experiment: debug and tiny trained on each selection beside five random 4-group draws, DSIR-style, perplexity (debug
and tiny scorer), classifier and the unselected pool, 6 seeds. Per eval set selected for, its loss per method with
a t interval over seeds, the differences to the unselected pool and to the random draws' mean paired by seed, and
where each method falls in the random draws' distribution (their mean, spread and 95% prediction interval).

The sweeps land in outputs/bench-attribution (a rerun skips the cells already final, so the cells' own recorded
wall seconds are summed too); the selected recipes are written to conf/data/selected/ for the grid and removed
afterwards. CPU seconds are the children's user + system time (a loaded machine inflates wall time, not these).
Merges the numbers into bench/results.json under "attribution".
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from bench.common import save, table
from proxyscale.config import subset_members

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "bench-attribution"
SUBSETS, GROUPS, K, PERMUTATIONS = 64, 16, 4, 99
CELL = ["trainer.max_tokens=98304", "eval.tokens_per_set=4096", "eval.every_n_steps=8", "data.pool_tokens=200000", "trainer.threads=1"]
PATHS = [f"paths.output_dir={OUT}", f"paths.cache_dir={OUT / 'cache'}"]
SCORERS = ["-m", "model=debug,tiny", "data=balanced", "sweep=scorers", "trainer.keep_checkpoints=true"]  # select_by_proxy's, in OUT/scorers
SWEEP = ["-m", f"data.subset=range(0,{SUBSETS})", "model=debug,tiny", f"data.subset_groups={GROUPS}", "sweep=subsets", "trainer.keep_checkpoints=true"]
DRAWS = ("random_groups", *(f"random_groups_draw{d}" for d in range(1, 5)))  # conf/data/random_groups.yaml and random_groups/draw<d>.yaml
BASELINES = ("balanced", *DRAWS, "selected", "classified", "selected_by_proxy_debug", "selected_by_proxy_tiny")
# name -> the datamodels arguments that write its recipe (the first also measures TRAK; each writes its own datamodels.json)
SELECTIONS = {
    "trak_debug": ["--trak", "debug", "--permutations", str(PERMUTATIONS), "--select", "prose", "--fit-size", "debug", "--select-with", "trak"],
    "dsdm_debug": ["--select", "prose", "--fit-size", "debug", "--out", str(OUT / "dm_debug")],
    "dsdm_tiny": ["--select", "prose", "--fit-size", "tiny", "--out", str(OUT / "dm_tiny")],
    "dsdm_readme_debug": ["--select", "readme", "--fit-size", "debug", "--out", str(OUT / "dm_readme_debug")],
    "dsdm_readme_tiny": ["--select", "readme", "--fit-size", "tiny", "--out", str(OUT / "dm_readme_tiny")],
}
RECIPES = Path(ROOT, "conf", "data", "selected")


def _cli(*args: str) -> dict:
    """One proxyscale command; its wall and CPU seconds (the child's user + system)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "proxyscale", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise RuntimeError(f"proxyscale {' '.join(args[:3])} ... exited {r.returncode}: {r.stderr[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(cpu, 1)}


def _records(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))]


def _interval(x: list[float]) -> list[float]:
    """95% t interval of the mean over seeds."""
    m, se = float(np.mean(x)), float(stats.sem(x))
    return [round(float(v), 4) for v in stats.t.interval(0.95, len(x) - 1, loc=m, scale=se)]


def _paired(v: dict[int, float], ref: dict[int, float]) -> dict | None:
    """The mean difference over the seeds both have, with its t interval (a seed is one initialisation shared by every recipe)."""
    if len(common := sorted(v.keys() & ref.keys())) < 2:
        return None
    diff = [v[s] - ref[s] for s in common]
    return {"mean": round(float(np.mean(diff)), 4), "ci": _interval(diff)}


def _null(by: dict[tuple[str, str], dict[int, float]], size: str) -> dict | None:
    """The random draws at one size as a null distribution of a selection's mean loss: each draw's mean over seeds;
    their mean, sd (ddof 1), range and the 95% t prediction interval of one more draw's mean,
    mean +- t(0.975, n-1) * sd * sqrt(1 + 1/n). Also each seed's mean over the draws (the paired reference)."""
    draws = [by[(size, d)] for d in DRAWS if (size, d) in by]
    if len(draws) < 2:
        return None
    means = [float(np.mean(list(d.values()))) for d in draws]
    n, m, sd = len(means), float(np.mean(means)), float(np.std(means, ddof=1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd * (1 + 1 / n) ** 0.5
    seeds = set.intersection(*(set(d) for d in draws))
    return {
        "draws": n,
        "draw_means": [round(x, 4) for x in means],
        "mean": round(m, 4),
        "sd": round(sd, 4),
        "prediction_interval": [round(m - half, 4), round(m + half, 4)],
        "per_seed": {s: float(np.mean([d[s] for d in draws])) for s in sorted(seeds)},
    }


def _selection_table(recs: list[dict], metric: str, recipes: list[str]) -> dict:
    """Per size: the random draws' distribution (`_null`), and per recipe the metric's mean over seeds with its t
    interval, its difference to the unselected pool and to the draws' mean paired by seed, and where its mean falls
    among the draws' means: z = (mean - draws' mean) / draws' sd, how many draws it is lower than, and whether it
    lies below or above their prediction interval. The draws' own rows get only the difference to the pool."""
    by: dict[tuple[str, str], dict[int, float]] = {}
    for rec in recs:
        if rec["status"] == "completed" and rec["recipe"] in recipes:
            by.setdefault((rec["size"], rec["recipe"]), {})[rec["seed"]] = rec["final_loss"][metric]
    nulls = {size: _null(by, size) for size in sorted({size for size, _ in by})}
    rows = {}
    for (size, recipe), v in sorted(by.items()):
        row: dict = {"mean": round(float(np.mean(list(v.values()))), 4), "ci": _interval(list(v.values())), "seeds": len(v)}
        if recipe != "balanced" and (d := _paired(v, by.get((size, "balanced"), {}))):
            row["minus_balanced"] = d
        null = nulls[size]
        if null and recipe not in DRAWS:
            if d := _paired(v, null["per_seed"]):
                row["minus_random"] = d
            lo, hi = null["prediction_interval"]
            row["vs_draws"] = {
                "z": round((row["mean"] - null["mean"]) / null["sd"], 2) if null["sd"] > 0 else None,
                "lower_than": sum(row["mean"] < x for x in null["draw_means"]),
                "outside": "below" if row["mean"] < lo else "above" if row["mean"] > hi else None,
            }
        rows[f"{size}/{recipe}"] = row
    return {"rows": rows, "random_draws": {size: {k: v for k, v in n.items() if k != "per_seed"} for size, n in nulls.items() if n}}


def _count(tables: dict) -> dict:
    """The selection tables' paired intervals, how many exclude 0 and how many would by chance at 95% (5% of them),
    and how many means fall outside the random draws' prediction interval (also 5% by chance for a random draw)."""
    paired = [r[k]["ci"] for t in tables.values() for r in t["rows"].values() for k in ("minus_balanced", "minus_random") if k in r]
    vs = [r["vs_draws"] for t in tables.values() for r in t["rows"].values() if "vs_draws" in r]
    return {
        "paired_intervals": len(paired),
        "paired_excluding_0": sum(lo > 0 or hi < 0 for lo, hi in paired),
        "expected_by_chance": round(0.05 * len(paired), 1),
        "compared_with_draws": len(vs),
        "outside_prediction_interval": sum(v["outside"] is not None for v in vs),
    }


def _fmt(v: float, ci: list[float] | None) -> str:
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"


def _diff(row: dict, base: str) -> str:
    d = row.get(f"minus_{base}")
    return _fmt(d["mean"], d["ci"]) if d else ""


def _vs(row: dict, draws: int) -> str:
    v = row.get("vs_draws")
    if not v:
        return ""
    z = "" if v["z"] is None else f"z {v['z']:+.1f}, "
    return f"{z}lower than {v['lower_than']} of {draws}" + (f", {v['outside']} the PI" if v["outside"] else "")


def _print(out: dict) -> None:
    lds = [(e["metric"], f"{e['fit_size']} -> {e['eval_size']}", _fmt(e["lds"], e["lds_ci"]), f"{e['perm_p']:.2f}", str(e["n_examples"])) for e in out["lds"]]
    print(table(("eval set", "fit -> eval", "LDS [95% bootstrap over examples]", "subset-permutation p", "examples"), lds))
    agree = [(a["metric"], f"{a['size_a']} ~ {a['size_b']}", _fmt(a["weight_spearman"], a["weight_spearman_ci"])) for a in out["weight_agreement"]]
    print(table(("eval set", "sizes", "weight Spearman [95%]"), agree))
    trak = [(e["metric"], e["checkpoint_size"], e["eval_size"], _fmt(e["lds"], e["lds_ci"]), f"{e['perm_p']:.2f}") for e in out["trak"]]
    print(table(("eval set", "TRAK from", "on", "LDS [95% bootstrap]", "subset-permutation p"), trak))
    for metric, t in out["selection"].items():
        for size, n in t["random_draws"].items():
            print(f"{metric} at {size}: {n['draws']} random draws, mean {n['mean']:.3f} sd {n['sd']:.3f}, 95% prediction interval {n['prediction_interval']}")
        draws = max((n["draws"] for n in t["random_draws"].values()), default=0)
        sel = [(k, _fmt(v["mean"], v["ci"]), _diff(v, "balanced"), _diff(v, "random"), _vs(v, draws), str(v["seeds"])) for k, v in t["rows"].items()]
        head = ("size/recipe", f"{metric} loss [95% t]", "minus balanced (paired by seed)", "minus random draws' mean (paired)", "among the draws", "seeds")
        print(table(head, sel))
    print("intervals:", out["intervals"])
    print("groups kept:", out["selected_groups"])
    print("cost:", out["cost"], "TRAK seconds:", out["trak_seconds"], "datamodel fit seconds:", out["fit_seconds"], "train FLOPs:", out["train_flops_by_size"])


def main() -> dict:
    written = [RECIPES / f"{name}.yaml" for name in SELECTIONS]
    if stale := [str(p.relative_to(ROOT)) for p in written if p.exists()]:
        raise RuntimeError(f"remove {', '.join(stale)} first: the bench writes its selections from its own sweep")
    cost = {"scorers": _cli(*SCORERS, *CELL, *PATHS), "subset_sweep": _cli(*SWEEP, *CELL, *PATHS)}
    dm, chosen = {}, {}
    try:
        for name, args in SELECTIONS.items():
            cost[f"datamodels_{name}"] = _cli("datamodels", str(OUT / "subsets"), *args, "--k", str(K), "--write-recipe", name)
            folder = Path(args[args.index("--out") + 1]) if "--out" in args else OUT / "subsets"
            dm[name] = json.loads((folder / "datamodels.json").read_text())
            chosen[name] = dm[name]["selection"]
        cost["selection_grid"] = _cli("-m", "experiment=dsdm_selection_cpu", *PATHS)
    finally:
        for p in written:
            p.unlink(missing_ok=True)
    main_fit = dm["trak_debug"]
    lds = [{k: e[k] for k in ("metric", "fit_size", "eval_size", "lds", "lds_ci", "perm_p", "n_examples", "n_subsets")} for e in main_fit["entries"]]
    agree = [{k: a[k] for k in ("metric", "size_a", "size_b", "weight_spearman", "weight_spearman_ci")} for a in main_fit["weight_agreement"]]
    trak = [{k: e[k] for k in ("metric", "checkpoint_size", "eval_size", "lds", "lds_ci", "perm_p")} for e in main_fit.get("trak", [])]
    trak_seconds = {e["checkpoint_size"]: e.get("seconds") for e in main_fit.get("trak", [])}
    cells = {}
    for r in _records(OUT / "subsets"):
        cells[r["size"]] = round(cells.get(r["size"], 0.0) + r["wall_seconds"], 1)
    cost["subset_cells_wall_s"] = cells
    grid = _records(OUT / "dsdm_selection_cpu")
    for draw in DRAWS:
        chosen[draw] = next((subset_members(r["config"]["data"]) for r in grid if r["recipe"] == draw), None)
    metrics = sorted({sel["metric"] for name, sel in chosen.items() if name in SELECTIONS})
    selection = {m: _selection_table(grid, m, [*BASELINES, *(n for n in SELECTIONS if chosen[n]["metric"] == m)]) for m in metrics}
    chosen = {name: sel["groups"] if isinstance(sel, dict) else sel for name, sel in chosen.items()}

    out = {"lds": lds, "weight_agreement": agree, "trak": trak, "selection": selection, "intervals": _count(selection), "selected_groups": chosen, "cost": cost}
    out["train_flops_by_size"], out["trak_seconds"], out["fit_seconds"] = main_fit["cost"]["train_flops_by_size"], trak_seconds, main_fit["cost"]["fit_seconds"]
    _print(out)
    save("attribution", out)
    return out


if __name__ == "__main__":
    main()
