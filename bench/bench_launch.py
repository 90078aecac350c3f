"""Benchmark of the launch paths: what a cell costs besides its training.

    .venv/bin/python bench/bench_launch.py [--cells 4] [--cells-per-task 4] [--no-slurm]

The same grid of tiny cells (debug size, 1 training step, small eval sets; seeds 0..N-1, so N
distinct cells) is run, each time into a fresh sweep folder with one shared, pre-built cache, by
  local       `proxyscale -m ...`: in-process, one Python process for the whole grid (default launcher)
  process     `proxyscale <cell>` once per cell: a fresh interpreter (torch/lightning import) per cell
  submitit    `proxyscale -m hydra/launcher=submitit_local ...`, array_parallelism=1 (one process per cell via submitit)
  slurm       `proxyscale submit --cells-per-task K ...` on the launchers/slurm cluster, timed from submit
              to the last record (polling every 0.5 s); and with --cells-per-task 1 for comparison.
              Skipped with a note when there is no cluster (no sbatch or SLURM_CONF).
Then a grid of short cells (12 steps) in-process and as one packed array, for sweep efficiency.
For each: wall seconds, overhead per cell = (wall - sum of the records' train_seconds) / cells, and
sweep efficiency = sum of train_seconds / wall. Prints a table with each path's overhead relative to
local, and merges the numbers into bench/results.json under "launch".
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
CELL = ["model=debug", "trainer.max_tokens=4096", "eval.tokens_per_set=2048", "eval.every_n_steps=1", "data.pool_tokens=200000", "trainer.threads=1"]
# the "short cell" of the efficiency grid: debug=fast's 12 steps (a few seconds of training)
SHORT = ["model=debug", "trainer.max_tokens=49152", "eval.tokens_per_set=2048", "eval.every_n_steps=4", "data.pool_tokens=200000", "trainer.threads=1"]


def _run(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    r = subprocess.run([PROXYSCALE, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"proxyscale {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r


def _train_seconds(sweep: Path, n: int) -> float:
    from proxyscale import record

    recs = [record.read(p.parent) for p in sweep.glob("*/result.json")]
    assert len(recs) == n and all(r.status == "completed" for r in recs), [(r.run_id, r.status) for r in recs]
    return sum(r.train_seconds for r in recs)


def _result(name: str, wall: float, train: float, n: int, note: str = "") -> dict:
    return {"path": name, "cells": n, "wall_s": round(wall, 2), "train_s": round(train, 3),
            "overhead_per_cell_s": round((wall - train) / n, 2), "efficiency": round(train / wall, 4), "note": note}


def bench_local(base: list[str], out: Path, n: int, tag: str = "") -> dict:
    t0 = time.perf_counter()
    _run(["-m", *base, f"paths.output_dir={out}", f"sweep=local{tag}", "seed=" + ",".join(map(str, range(n)))])
    wall = time.perf_counter() - t0
    return _result("local (in-process)", wall, _train_seconds(out / f"local{tag}", n), n)


def bench_process(base: list[str], out: Path, n: int) -> dict:
    t0 = time.perf_counter()
    for s in range(n):
        _run([*base, f"paths.output_dir={out}", "sweep=process", f"seed={s}"])
    wall = time.perf_counter() - t0
    return _result("process per cell", wall, _train_seconds(out / "process", n), n)


def bench_submitit(base: list[str], out: Path, n: int) -> dict:
    t0 = time.perf_counter()
    _run(["-m", "hydra/launcher=submitit_local", "hydra.launcher.array_parallelism=1", *base, f"paths.output_dir={out}",
          "sweep=submitit", "seed=" + ",".join(map(str, range(n)))])
    wall = time.perf_counter() - t0
    return _result("submitit_local (1 at a time)", wall, _train_seconds(out / "submitit", n), n)


def bench_slurm(base: list[str], out: Path, n: int, per_task: int, timeout_s: float = 900, tag: str = "") -> dict:
    from proxyscale import launch

    sweep = out / f"slurm{per_task}{tag}"
    t0 = time.perf_counter()
    _run(["submit", "--cells-per-task", str(per_task), "--max-parallel", "1", *base, f"paths.output_dir={out}",
          f"sweep=slurm{per_task}{tag}", "seed=" + ",".join(map(str, range(n)))])
    submitted = time.perf_counter() - t0
    deadline = time.monotonic() + timeout_s
    while len(list(sweep.glob("*/result.json"))) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"slurm cells not done after {timeout_s}s: {launch.counts(launch.cell_states(sweep)[0])}")
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    return _result(f"slurm array, {per_task} cell(s)/task", wall, _train_seconds(sweep, n), n,
                   f"submit returned in {submitted:.1f}s; 1 task at a time")


def have_slurm() -> str | None:
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH"
    if not os.environ.get("SLURM_CONF") and not Path("/etc/slurm/slurm.conf").exists():
        return "SLURM_CONF not set (start launchers/slurm/cluster-up.sh and export SLURM_CONF)"
    r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    return None if r.returncode == 0 and r.stdout.strip() else f"cluster not reachable: {r.stderr.strip()[:200]}"


def table(rows: list[dict]) -> str:
    ref = rows[0]["overhead_per_cell_s"] or 1e-9
    head = ("path", "cells", "wall s", "train s", "overhead/cell s", "x local", "efficiency")
    body = [(r["path"], str(r["cells"]), f"{r['wall_s']:.1f}", f"{r['train_s']:.2f}", f"{r['overhead_per_cell_s']:.2f}",
             f"{r['overhead_per_cell_s'] / ref:.1f}", f"{100 * r['efficiency']:.1f}%") for r in rows]
    w = [max(len(x[i]) for x in body + [head]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{n}}}" for n in w)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * n for n in w))] + [fmt.format(*b) for b in body])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=4)
    p.add_argument("--cells-per-task", type=int, default=4)
    p.add_argument("--no-slurm", action="store_true")
    p.add_argument("--out", default=None, help="keep the sweeps here (default: a temp folder, removed)")
    a = p.parse_args(argv if argv is not None or __name__ == "__main__" else [])  # (python -m bench: defaults)
    tmp = Path(a.out or tempfile.mkdtemp(prefix="bench-launch-"))
    cache = tmp / "cache"
    base = [*CELL, f"paths.cache_dir={cache}"]
    _run([*base, f"paths.output_dir={tmp / 'warm'}", "sweep=warm", "seed=999"])  # build the caches once
    rows = [bench_local(base, tmp, a.cells), bench_process(base, tmp, a.cells), bench_submitit(base, tmp, a.cells)]
    why = "--no-slurm" if a.no_slurm else have_slurm()
    if why is None:
        rows.append(bench_slurm(base, tmp, a.cells, a.cells_per_task))
        if a.cells_per_task != 1:
            rows.append(bench_slurm(base, tmp, a.cells, 1))
    print(f"per-cell overhead, {a.cells} cells of 1 step:")
    print(table(rows))
    # sweep efficiency on short (12-step) cells: in-process vs packed SLURM array
    eff = [bench_local([*SHORT, f"paths.cache_dir={cache}"], tmp, a.cells, tag="-short")]
    if why is None:
        eff.append(bench_slurm([*SHORT, f"paths.cache_dir={cache}"], tmp, a.cells, a.cells_per_task, tag="-short"))
    print(f"\nsweep efficiency, {a.cells} short cells (12 steps):")
    print(table(eff))
    if why:
        print(f"slurm: skipped ({why})")
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cell": " ".join(CELL) + " (1 step)", "cores": os.cpu_count(),
              "rows": rows,
              "short_cell": " ".join(SHORT) + " (12 steps)", "efficiency_rows": eff, "slurm_skipped": why}
    from bench.common import RESULTS, save

    save("launch", result)
    print(f"wrote {RESULTS} [launch]")
    if not a.out:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
