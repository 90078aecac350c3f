"""Does the demo reach a verdict, and what does it cost? `make demo`'s grid (conf/grid/demo.yaml) measured two ways.

    .venv/bin/python -m bench bench_demo                       # --cpu-only, then seeds 0,1 / 2,3 / 4,5 / 6,7
    .venv/bin/python bench/bench_demo.py --cpu-only             # the cost projection only (3 cells)
    .venv/bin/python bench/bench_demo.py --seed-sets 0,1 2,3 4,5 6,7 [--out DIR]

cost      CPU time (user + system) of one process per measured cell, which a loaded machine inflates far
          less than wall time: a recipe's first cell (cache build included), a second cell of the same
          recipe (training, eval and the process's imports only), and a target cell; plus a bare import of
          torch + Lightning + transformers. Projected to 2 idle cores with two workers: per-process imports
          twice, one cache build per recipe, and every cell's CPU time, split over 2 cores.
verdicts  the demo grid swept with each seed set (`seed=a,b` replaces the grid's seeds; each set is its own
          sweep and report, sharing one token cache), and each report's verdict per eval set: the demo's
          promise is `holds` or `fails` on at least one eval set for every seed set.
Merges the numbers into bench/results.json under "demo".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
PROXYSCALE = str(Path(sys.executable).with_name("proxyscale"))
INSTALL_S = 120  # `make install` from a clean clone on the 2-core machine (README's figure; not measured here)
BUDGET_S = 15 * 60


def _cli(args: list[str], timeout: float = 7200) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run proxyscale; (result, CPU seconds of the child, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([PROXYSCALE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        raise RuntimeError(f"proxyscale {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r, cpu, wall


def _grid() -> dict:
    import yaml

    doc = yaml.safe_load((ROOT / "conf" / "grid" / "demo.yaml").read_text())
    params = doc["hydra"]["sweeper"]["params"]
    return {k: str(v).split(",") for k, v in params.items()}


def cost(out: Path) -> dict:
    grid = _grid()
    sizes, recipes, seeds = grid["model"], grid["data"], grid["seed"]
    common = ["grid=demo", "trainer.threads=1", f"paths.output_dir={out}", f"paths.cache_dir={out / 'cache'}", "sweep=cost"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "import torch, lightning, transformers, proxyscale.job.run"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    imports = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    _, first, _ = _cli([*common, f"model={sizes[0]}", f"data={recipes[0]}", "seed=0"])
    per_size = {}
    for size in sizes:
        _, cpu, wall = _cli([*common, f"model={size}", f"data={recipes[0]}", "seed=1"])
        per_size[size] = {"cpu_s": round(cpu - imports, 1), "wall_s": round(wall, 1)}
    cache_s = first - imports - per_size[sizes[0]]["cpu_s"]
    cells = {s: len(recipes) * len(seeds) for s in sizes}
    total = 2 * imports + cache_s * len(recipes) + sum(per_size[s]["cpu_s"] * n for s, n in cells.items())
    projected = total / 2
    return {
        "imports_cpu_s": round(imports, 1),
        "cache_build_cpu_s": round(cache_s, 1),
        "cell_cpu_s": per_size,
        "cells": sum(cells.values()),
        "projected_sweep_s_2_idle_cores": round(projected),
        "projected_make_demo_s": round(projected + INSTALL_S),
        "budget_s": BUDGET_S,
        "fits": projected + INSTALL_S <= BUDGET_S,
        "loadavg_1min": round(os.getloadavg()[0], 1),
    }


def verdicts(out: Path, seed_sets: list[str]) -> list[dict]:
    rows = []
    for seeds in seed_sets:
        sweep = f"demo-s{seeds.replace(',', '_')}"
        args = ["-m", "grid=demo", f"seed={seeds}", f"sweep={sweep}", "hydra.launcher.n_jobs=2", f"paths.output_dir={out}", f"paths.cache_dir={out / 'cache'}"]
        _, _, wall = _cli(args)
        _cli(["report", str(out / sweep)])
        rep = json.loads((out / sweep / "report.json").read_text())
        per = {pm["metric"]: [ln["verdict"] for ln in pm["lines"]] for pm in rep["summary"]["per_metric"]}
        decided = sorted(m for m, vs in per.items() if any(v in ("holds", "fails") for v in vs))
        rows.append({"seeds": seeds, "verdicts": per, "decided_on": decided, "ok": bool(decided), "sweep_wall_s": round(wall)})
    return rows


def main(argv: list[str] | None = None) -> dict:
    from bench.common import save, table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-only", action="store_true", help="only the cost projection (3 cells)")
    p.add_argument("--seed-sets", nargs="*", default=["0,1", "2,3", "4,5", "6,7"], help="seed sets, each swept as its own demo")
    p.add_argument("--out", default=None, help="keep the sweeps here (default: a temp folder, removed)")
    a = p.parse_args(argv if argv is not None else sys.argv[2:] if sys.argv[1:2] == ["bench_demo"] else sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.out or tmp)
        res = {"cost": cost(out)}
        c = res["cost"]
        print(table(("size", "CPU s per cell", "wall s (this load)"), [(s, str(v["cpu_s"]), str(v["wall_s"])) for s, v in c["cell_cpu_s"].items()]))
        print(
            f"imports {c['imports_cpu_s']} s CPU per process, cache build {c['cache_build_cpu_s']} s CPU per recipe; {c['cells']} cells -> "
            f"about {c['projected_sweep_s_2_idle_cores'] / 60:.1f} min on 2 idle cores, {c['projected_make_demo_s'] / 60:.1f} min with the install "
            f"(budget {BUDGET_S / 60:.0f} min: {'fits' if c['fits'] else 'does NOT fit'}); load average now {c['loadavg_1min']}"
        )
        if not a.cpu_only:
            res["verdicts"] = verdicts(out, a.seed_sets)
            rows = [(r["seeds"], ", ".join(f"{m}: {'/'.join(v)}" for m, v in r["verdicts"].items()), "yes" if r["ok"] else "NO") for r in res["verdicts"]]
            print(table(("seeds", "verdict per eval set (each proxy)", "holds/fails somewhere"), rows))
    save("demo", res)
    return res


if __name__ == "__main__":
    main()
