"""Benchmark of the launch paths: what a cell costs besides its own work (training + eval).

    .venv/bin/python bench/bench_launch.py [--cells 4] [--short-cells 12] [--cells-per-task 4] [--no-slurm]

Every sweep goes into a fresh folder with one shared, pre-built cache. A cell's useful time is
its record's train_seconds + eval_seconds; everything else on the wall clock is overhead.

Per-cell overhead, on 1-step cells (seeds 0..N-1):
  in-process  `proxyscale -m ...` (the default launcher), with N and then 4N cells: the difference
              is the marginal cost of a cell in a warm worker (composing and validating its config
              included); the rest is the sweep's fixed cost (interpreter, torch/lightning import,
              Hydra, exit), paid once per process
  process     `proxyscale <cell>` once per cell: a fresh interpreter per cell
  submitit    `proxyscale -m hydra/launcher=submitit_local`, one cell at a time
  slurm       `proxyscale submit --cells-per-task K` on the launchers/slurm cluster, from submit to
              the last record (polled every 0.5 s), and with 1 cell per task. Skipped with a note
              when there is no cluster (no sbatch or SLURM_CONF).
Sweep efficiency (useful / wall) of a grid of short cells: a debug cell of 160 steps and 4 evals
(SHORT) x --short-cells seeds, in-process and as a packed SLURM array; plus, from the
measured fixed and per-cell costs, the shortest cell that reaches 90% for grids of 10 to 1000 cells.
Merges the numbers into bench/results.json under "launch".
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
PROXYSCALE = str(Path(sys.executable).with_name("proxyscale"))
TINY = ["model=debug", "trainer.max_tokens=4096", "eval.tokens_per_set=2048", "eval.every_n_steps=1", "data.pool_tokens=200000", "trainer.threads=1"]
# a short cell, its own overrides (not grid=demo's, which is sized for a verdict): the debug size, 160 steps of
# 32 x 128 tokens, eval every 40 steps on 3 x 16k tokens (~10 s here)
SHORT = ["model=debug", "data=balanced", "optim.lr=1e-3", "trainer.max_tokens=655360", "eval.tokens_per_set=16384", "eval.every_n_steps=40"]
SHORT += ["trainer.threads=1"]
TARGET = 0.90


def _run(args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess:
    r = subprocess.run([PROXYSCALE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"proxyscale {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r


def _useful_seconds(sweep: Path, n: int) -> float:
    from proxyscale import record

    recs = [record.read(p.parent) for p in sweep.glob("*/result.json")]
    assert len(recs) == n and all(r.status == "completed" for r in recs), [(r.run_id, r.status) for r in recs]
    return sum(r.train_seconds + r.eval_seconds for r in recs)


def _seeds(first: int, n: int) -> str:
    return "seed=" + ",".join(str(s) for s in range(first, first + n))


def _row(name: str, wall: float, useful: float, n: int, overhead: float | None = None, note: str = "") -> dict:
    return {
        "path": name,
        "cells": n,
        "wall_s": round(wall, 2),
        "useful_s": round(useful, 2),
        "overhead_per_cell_s": round((wall - useful) / n if overhead is None else overhead, 3),
        "efficiency": round(useful / wall, 4),
        "note": note,
    }


def sweep_local(base: list[str], out: Path, name: str, seeds: str, n: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    _run(["-m", *base, f"paths.output_dir={out}", f"sweep={name}", seeds])
    return time.perf_counter() - t0, _useful_seconds(out / name, n)


def bench_in_process(base: list[str], out: Path, n: int) -> tuple[dict, float]:
    """Returns the row (marginal overhead per cell) and the sweep's fixed overhead."""
    w1, u1 = sweep_local(base, out, "local-n", _seeds(0, n), n)
    w2, u2 = sweep_local(base, out, "local-4n", _seeds(100, 4 * n), 4 * n)
    per_cell = max(0.0, ((w2 - u2) - (w1 - u1)) / (3 * n))
    fixed = (w1 - u1) - n * per_cell
    note = f"marginal cost of a cell in a warm worker ({n} vs {4 * n} cells); fixed cost per sweep process {fixed:.1f} s"
    return _row("in-process (default)", w2, u2, 4 * n, per_cell, note), fixed


def bench_process(base: list[str], out: Path, n: int) -> dict:
    t0 = time.perf_counter()
    for s in range(n):
        _run([*base, f"paths.output_dir={out}", "sweep=process", f"seed={s}"])
    wall = time.perf_counter() - t0
    return _row("fresh process per cell", wall, _useful_seconds(out / "process", n), n)


def bench_submitit(base: list[str], out: Path, n: int) -> dict:
    t0 = time.perf_counter()
    _run(["-m", "hydra/launcher=submitit_local", "hydra.launcher.array_parallelism=1", *base, f"paths.output_dir={out}", "sweep=submitit", _seeds(0, n)])
    wall = time.perf_counter() - t0
    return _row("submitit_local, 1 at a time", wall, _useful_seconds(out / "submitit", n), n)


def bench_slurm(base: list[str], out: Path, n: int, per_task: int, name: str, timeout_s: float = 1800) -> dict:
    from proxyscale.launch.status import cell_states, counts

    sweep = out / name
    t0 = time.perf_counter()
    _run(["submit", "--cells-per-task", str(per_task), "--max-parallel", "1", *base, f"paths.output_dir={out}", f"sweep={name}", _seeds(0, n)])
    submitted = time.perf_counter() - t0
    deadline = time.monotonic() + timeout_s
    while len(list(sweep.glob("*/result.json"))) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"slurm cells not done after {timeout_s}s: {counts(cell_states(sweep)[0])}")
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    return _row(f"slurm array, {per_task} cell(s)/task", wall, _useful_seconds(sweep, n), n, note=f"submit returned in {submitted:.1f}s; one task at a time")


def have_slurm() -> str | None:
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH"
    if not os.environ.get("SLURM_CONF") and not Path("/etc/slurm/slurm.conf").exists():
        return "SLURM_CONF not set (start launchers/slurm/cluster-up.sh and export SLURM_CONF)"
    r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    return None if r.returncode == 0 and r.stdout.strip() else f"cluster not reachable: {r.stderr.strip()[:200]}"


def shortest_cell(fixed: float, per_cell: float, cells: int, target: float = TARGET) -> float:
    """Useful seconds a cell needs for a sweep of `cells` to reach `target` efficiency:
    efficiency = n t / (n t + fixed + n per_cell)."""
    return target / (1 - target) * (fixed / cells + per_cell)


def main(argv: list[str] | None = None) -> dict:
    from bench.common import RESULTS, save, table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=4, help="1-step cells per path (in-process also runs twice as many)")
    p.add_argument("--short-cells", type=int, default=12, help="cells of the efficiency grid")
    p.add_argument("--cells-per-task", type=int, default=4, help="packing of the 1-step SLURM array")
    p.add_argument("--short-per-task", type=int, default=12, help="packing of the short-cell SLURM array")
    p.add_argument("--no-slurm", action="store_true")
    p.add_argument("--out", default=None, help="keep the sweeps here (default: a temp folder, removed)")
    a = p.parse_args(argv if argv is not None or __name__ == "__main__" else [])  # (python -m bench: defaults)
    tmp = Path(a.out or tempfile.mkdtemp(prefix="bench-launch-"))
    cache = [f"paths.cache_dir={tmp / 'cache'}"]
    _run([*TINY, *cache, f"paths.output_dir={tmp / 'warm'}", "sweep=warm", "seed=999"])  # build the caches once
    _run([*SHORT, *cache, f"paths.output_dir={tmp / 'warm'}", "sweep=warm", "seed=999"])
    why = "--no-slurm" if a.no_slurm else have_slurm()

    local, fixed = bench_in_process([*TINY, *cache], tmp, a.cells)
    rows = [local, bench_process([*TINY, *cache], tmp, a.cells), bench_submitit([*TINY, *cache], tmp, a.cells)]
    if why is None:
        rows.append(bench_slurm([*TINY, *cache], tmp, a.cells, a.cells_per_task, "slurm-packed"))
        rows.append(bench_slurm([*TINY, *cache], tmp, a.cells, 1, "slurm-1"))
    ref = max(rows[0]["overhead_per_cell_s"], 0.01)
    print(f"overhead per cell, 1-step cells (in-process: a warm worker's marginal cell; plus {fixed:.1f} s once per sweep)")
    print(
        table(
            ("path", "cells", "wall s", "useful s", "overhead/cell s", "x in-process"),
            [
                (
                    r["path"],
                    r["cells"],
                    f"{r['wall_s']:.1f}",
                    f"{r['useful_s']:.2f}",
                    f"{r['overhead_per_cell_s']:.2f}",
                    f"{r['overhead_per_cell_s'] / ref:.1f}",
                )
                for r in rows
            ],
        )
    )

    n = a.short_cells
    w, u = sweep_local([*SHORT, *cache], tmp, "short-local", _seeds(0, n), n)
    eff = [_row("in-process (default)", w, u, n)]
    if why is None:
        eff.append(bench_slurm([*SHORT, *cache], tmp, n, a.short_per_task, "short-slurm"))
    print(f"\nsweep efficiency, {n} short cells (a debug cell: 160 steps, 4 evals; target >= {TARGET:.0%})")
    print(
        table(
            ("path", "cells", "wall s", "useful s", "useful/cell s", "overhead/cell s", "efficiency", "target"),
            [
                (
                    r["path"],
                    r["cells"],
                    f"{r['wall_s']:.1f}",
                    f"{r['useful_s']:.1f}",
                    f"{r['useful_s'] / r['cells']:.1f}",
                    f"{r['overhead_per_cell_s']:.2f}",
                    f"{100 * r['efficiency']:.1f}%",
                    "met" if r["efficiency"] >= TARGET else "missed",
                )
                for r in eff
            ],
        )
    )
    need = {str(k): round(shortest_cell(fixed, local["overhead_per_cell_s"], k), 2) for k in (10, 100, 1000)}
    print(f"in-process, shortest cell for {TARGET:.0%} efficiency: " + ", ".join(f"{v:.1f} s with {k} cells" for k, v in need.items()))
    if why:
        print(f"slurm: skipped ({why})")
    result = {
        "cell": " ".join(TINY) + " (1 step)",
        "cores": os.cpu_count(),
        "rows": rows,
        "fixed_per_sweep_s": round(fixed, 2),
        "short_cell": " ".join(SHORT) + " (160 steps)",
        "efficiency_rows": eff,
        "shortest_cell_for_90pct_s": need,
        "slurm_skipped": why,
    }
    save("launch", result)
    print(f"wrote {RESULTS} [launch]")
    if not a.out:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
