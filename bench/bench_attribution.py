"""Attribution and selection across scale, measured end to end through the CLI (`python -m bench attribution`;
docs/attribution.md): a subset sweep of debug and tiny on the same 64 subsets of balanced's 16 document groups,
then `proxyscale datamodels` on it (the LDS of debug -> debug, debug -> tiny and tiny -> tiny with bootstrap
intervals and subset-permutation p-values, the weight agreement across sizes, TRAK from one debug checkpoint)
and the selections it writes (4 groups each: DsDm at debug and at tiny and TRAK at debug for the prose eval set,
DsDm at debug and at tiny for the README eval set), then the reduced selection experiment
(conf/experiment/dsdm_selection_cpu.yaml): debug and tiny trained on each selection beside random groups,
DSIR-style, classifier and the unselected pool, 6 seeds; per eval set selected for, its loss per method with a t
interval over seeds and the differences to the unselected pool and to random groups paired by seed.

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
SWEEP = ["-m", f"data.subset=range(0,{SUBSETS})", "model=debug,tiny", f"data.subset_groups={GROUPS}", "sweep=subsets", "trainer.keep_checkpoints=true"]
BASELINES = ("balanced", "random_groups", "selected", "classified")
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
    return [round(v, 4) for v in stats.t.interval(0.95, len(x) - 1, loc=m, scale=se)]


def _selection_table(recs: list[dict], metric: str, recipes: list[str]) -> dict:
    """Per size and recipe: the metric's mean over seeds with its t interval, and its difference to the unselected
    pool and to random groups paired by seed (a seed is the same initialisation for every recipe)."""
    by: dict[tuple[str, str], dict[int, float]] = {}
    for rec in recs:
        if rec["status"] == "completed" and rec["recipe"] in recipes:
            by.setdefault((rec["size"], rec["recipe"]), {})[rec["seed"]] = rec["final_loss"][metric]
    out = {}
    for (size, recipe), v in sorted(by.items()):
        row = {"mean": round(float(np.mean(list(v.values()))), 4), "ci": _interval(list(v.values())), "seeds": len(v)}
        for base in ("balanced", "random_groups"):
            ref = by.get((size, base), {})
            if recipe != base and (common := sorted(v.keys() & ref.keys())):
                diff = [v[s] - ref[s] for s in common]
                row[f"minus_{base}"] = {"mean": round(float(np.mean(diff)), 4), "ci": _interval(diff)}
        out[f"{size}/{recipe}"] = row
    return out


def _fmt(v: float, ci: list[float] | None) -> str:
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"


def _diff(row: dict, base: str) -> str:
    d = row.get(f"minus_{base}")
    return _fmt(d["mean"], d["ci"]) if d else ""


def _print(out: dict) -> None:
    lds = [(e["metric"], f"{e['fit_size']} -> {e['eval_size']}", _fmt(e["lds"], e["lds_ci"]), f"{e['perm_p']:.2f}", str(e["n_examples"])) for e in out["lds"]]
    print(table(("eval set", "fit -> eval", "LDS [95% bootstrap over examples]", "subset-permutation p", "examples"), lds))
    agree = [(a["metric"], f"{a['size_a']} ~ {a['size_b']}", _fmt(a["weight_spearman"], a["weight_spearman_ci"])) for a in out["weight_agreement"]]
    print(table(("eval set", "sizes", "weight Spearman [95%]"), agree))
    trak = [(e["metric"], e["checkpoint_size"], e["eval_size"], _fmt(e["lds"], e["lds_ci"]), f"{e['perm_p']:.2f}") for e in out["trak"]]
    print(table(("eval set", "TRAK from", "on", "LDS [95% bootstrap]", "subset-permutation p"), trak))
    for metric, rows in out["selection"].items():
        sel = [(k, _fmt(v["mean"], v["ci"]), _diff(v, "balanced"), _diff(v, "random_groups"), str(v["seeds"])) for k, v in rows.items()]
        print(table(("size/recipe", f"{metric} loss, mean over seeds [95% t]", "minus balanced (paired by seed)", "minus random_groups", "seeds"), sel))
    print("groups kept:", out["selected_groups"])
    print("cost:", out["cost"], "TRAK seconds:", out["trak_seconds"], "datamodel fit seconds:", out["fit_seconds"], "train FLOPs:", out["train_flops_by_size"])


def main() -> dict:
    written = [RECIPES / f"{name}.yaml" for name in SELECTIONS]
    if stale := [str(p.relative_to(ROOT)) for p in written if p.exists()]:
        raise RuntimeError(f"remove {', '.join(stale)} first: the bench writes its selections from its own sweep")
    cost = {"subset_sweep": _cli(*SWEEP, *CELL, *PATHS)}
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
    chosen["random_groups"] = sorted({str(g) for r in grid if r["recipe"] == "random_groups" for g in subset_members(r["config"]["data"])}, key=int)
    metrics = sorted({sel["metric"] for name, sel in chosen.items() if name in SELECTIONS})
    selection = {m: _selection_table(grid, m, [*BASELINES, *(n for n in SELECTIONS if chosen[n]["metric"] == m)]) for m in metrics}
    chosen = {name: sel["groups"] if isinstance(sel, dict) else sel for name, sel in chosen.items()}

    out = {"lds": lds, "weight_agreement": agree, "trak": trak, "selection": selection, "selected_groups": chosen, "cost": cost}
    out["train_flops_by_size"], out["trak_seconds"], out["fit_seconds"] = main_fit["cost"]["train_flops_by_size"], trak_seconds, main_fit["cost"]["fit_seconds"]
    _print(out)
    save("attribution", out)
    return out


if __name__ == "__main__":
    main()
