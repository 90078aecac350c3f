"""Benchmark of the report path on a large synthetic sweep table.

    .venv/bin/python bench/bench_report.py [--recipes 40 --sizes 5 --lrs 10 --seeds 5 --evals 3]

Builds results.parquet (default 40 recipes x 5 sizes x 10 LRs x 5 seeds = 10,000 cells x 3 eval
sets = 30,000 rows) in a temp sweep folder, then times
  collect   read results.parquet + prepare the long table (what `report` does before analysing)
  analysis  every comparison (bootstrap 1000 per size pair, 100 per proxy LR: the defaults), reduced-LR, seed noise
  render    report.json + report.md + report.html with its figures
  import    `python -c "import proxyscale.report.build"` in a fresh interpreter (min of 5), and
            whether it imported torch
Targets: collect + analysis <= 1 s; import <= 0.3 s with no torch. Writes bench/results.json["report"].
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from proxyscale.report import analysis, build, render  # noqa: E402  (first: sets the BLAS threads as the CLI does)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def synthetic(recipes: int, sizes: int, lrs: int, seeds: int, evals: int, rng_seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    names = [f"recipe{i:03d}" for i in range(recipes)]
    size_names = [f"s{i}" for i in range(sizes)]
    params = {s: int(1e5 * 2 ** i) for i, s in enumerate(size_names)}
    lr_grid = np.geomspace(1e-4, 3e-2, lrs)
    quality = rng.normal(scale=0.1, size=recipes)
    grid = np.array(np.meshgrid(np.arange(recipes), np.arange(sizes), np.arange(lrs), np.arange(seeds), np.arange(evals), indexing="ij")).reshape(5, -1)
    r, s, l, sd, e = grid
    best_lr = np.log10(3e-3) - 0.2 * s  # larger models prefer smaller LRs
    loss = (4.0 - 0.3 * s + quality[r] * (1 + 0.1 * s) + 0.15 * (np.log10(lr_grid[l]) - best_lr) ** 2
            + 0.05 * e + rng.normal(scale=0.01, size=len(r)))
    status = np.where(rng.random(len(r)) < 0.01, "diverged", "completed")
    cell = r * 10**6 + s * 10**4 + l * 10**2 + sd
    return pd.DataFrame({"run_id": [f"c{c}" for c in cell], "sweep": "bench", "status": status,
                         "size": np.array(size_names)[s], "params": np.array([params[x] for x in size_names])[s],
                         "recipe": np.array(names)[r], "lr": lr_grid[l], "seed": sd, "tokens": 1000, "steps": 10,
                         "wall_seconds": 1.0, "tokens_per_second": 1000.0, "flops_per_token": 1e5,
                         "eval_set": np.array([f"eval{i}" for i in range(evals)])[e],
                         "loss": np.where(status == "completed", loss, np.nan)})


def time_import(repeats: int = 5) -> tuple[float, float, bool]:
    code = "import time,sys; t=time.perf_counter(); import proxyscale.report.build; print(time.perf_counter()-t, 'torch' in sys.modules)"
    best, wall_best, torch = 1e9, 1e9, False
    for _ in range(repeats):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HERE.parent, check=True).stdout.split()
        wall_best = min(wall_best, time.perf_counter() - t)
        best = min(best, float(out[0]))
        torch = torch or out[1] == "True"
    return best, wall_best, torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", type=int, default=40)
    p.add_argument("--sizes", type=int, default=5)
    p.add_argument("--lrs", type=int, default=10)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--evals", type=int, default=3)
    p.add_argument("--no-render", action="store_true", help="skip timing the figures")
    a = p.parse_args()
    df = synthetic(a.recipes, a.sizes, a.lrs, a.seeds, a.evals)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        root.mkdir()
        df.to_parquet(root / "results.parquet", index=False)
        t0 = time.perf_counter()
        results, _ = build._load_sweep(root)
        long, sizes, counts = analysis.prepare_sweep(results)
        t1 = time.perf_counter()
        rep = analysis.analyze(long, sizes)  # the defaults `proxyscale report` uses
        t2 = time.perf_counter()
        report = build._clean({"schema_version": 1, "source": {"kind": "sweep", "path": str(root)}, "status_counts": counts, "notes": [], **rep})
        build.write_json(report, root / "report.json")
        t3 = time.perf_counter()
        if not a.no_render:
            render.write(report, root)
        t4 = time.perf_counter()
    imp, imp_wall, torch = time_import()
    nums = {"cells": int(df["run_id"].nunique()), "rows": int(len(df)), "recipes": a.recipes, "sizes": a.sizes, "lrs": a.lrs,
            "seeds": a.seeds, "eval_sets": a.evals, "comparisons": len(rep["comparisons"]),
            "collect_s": round(t1 - t0, 4), "analysis_s": round(t2 - t1, 4), "collect_plus_analysis_s": round(t2 - t0, 4),
            "json_s": round(t3 - t2, 4), "render_s": None if a.no_render else round(t4 - t3, 4),
            "import_s": round(imp, 4), "import_process_wall_s": round(imp_wall, 4), "import_pulls_torch": torch,
            "target_collect_plus_analysis_s": 1.0, "target_import_s": 0.3,
            "ratio_collect_plus_analysis": round((t2 - t0) / 1.0, 3), "ratio_import": round(imp / 0.3, 3),
            "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2), "python": sys.version.split()[0]}
    rows = [("collect (read + prepare)", nums["collect_s"], None), ("analysis", nums["analysis_s"], None),
            ("collect + analysis", nums["collect_plus_analysis_s"], 1.0), ("report.json", nums["json_s"], None),
            ("render md + html", nums["render_s"], None), ("import proxyscale.report.build", nums["import_s"], 0.3)]
    print(f"{nums['cells']} cells, {nums['rows']} rows, {nums['comparisons']} comparisons")
    print(f"{'step':34s} {'seconds':>9s} {'target':>8s} {'ratio':>7s}")
    for name, v, target in rows:
        vs = "-" if v is None else f"{v:9.3f}"
        print(f"{name:34s} {vs:>9s} {('-' if target is None else f'{target:.1f}'):>8s} {('' if target is None or v is None else f'{v / target:7.2f}'):>7s}")
    print(f"import pulls torch: {torch}; import process wall (incl. interpreter start): {imp_wall:.3f} s")
    print(f"{os.cpu_count()} CPUs, 1-minute load average {os.getloadavg()[0]:.2f} (timings inflate on a busy machine)")
    out = HERE / "results.json"
    data = json.loads(out.read_text()) if out.exists() else {}
    data["report"] = nums
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out} [report]")


if __name__ == "__main__":
    main()
