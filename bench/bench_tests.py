"""Benchmark of the test tiers: wall and CPU time of a pytest run, against the tiers' time targets.

    .venv/bin/python bench/bench_tests.py [--tier unit|slow|all] [-- PYTEST ARGS]

unit: `make test-unit`'s run (-m "not slow and not slurm and not gpu" on 2 xdist workers, a file per worker), target < 2 min
wall on 2 idle cores; all: `make test`'s pytest runs (tests/tiers.sh: the slurm tier, and beside it the slow and gpu
tiers at nice 5 and the unit tier at nice 19, each on 2 workers), target < 12 min. `make bench` runs the unit tier only.
CPU time (user + system of pytest and every process it starts; not the slurm jobs, which the cluster starts) is
printed beside wall time: a loaded machine inflates wall time, hardly CPU time; on 2 idle cores two workers' wall
time is about half their CPU time. The slowest tests come from pytest's own --durations (set in pyproject.toml).
Merges the numbers into bench/results.json under "tests".
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ["-n", "2"]  # the Makefile's TEST_WORKERS default
PYTEST = [sys.executable, "-m", "pytest", "-q"]
ALL = ["bash", str(ROOT / "tests" / "tiers.sh"), str(Path(sys.executable).with_name("pytest")), WORKERS[1], "-q"]
# Each tier is the Makefile's commands, one after another: (commands, wall target in seconds).
TIERS = {
    "unit": ([[*PYTEST, *WORKERS, "--dist", "loadfile", "-m", "not slow and not slurm and not gpu", "-p", "no:cacheprovider"]], 120.0),
    "slow": ([[*PYTEST, *WORKERS, "--dist", "loadfile", "-m", "slow", "-p", "no:cacheprovider"]], None),
    "all": ([ALL], 12 * 60.0),
}


def run_tier(tier: str, extra: list[str]) -> dict:
    runs, target = TIERS[tier]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    rs = [subprocess.run([*cmd, *extra], cwd=ROOT, capture_output=True, text=True) for cmd in runs]
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = [r.stdout for r in rs]
    ends = [[ln.strip("= ") for ln in o.splitlines() if re.match(r"^=*\s*\d+ (passed|failed)[^=]* in [\d.]+s", ln)] or [o[-300:]] for o in out]
    summary = "; ".join(e for es in ends for e in es)  # (the all tier's command prints three runs)
    timed = [ln.strip() for o in out for ln in o.splitlines() if re.match(r"^\d+\.\d+s (call|setup|teardown) ", ln)]
    slowest = sorted(timed, key=lambda ln: -float(ln.split("s")[0]))[:10]
    r = max(rs, key=lambda r: r.returncode)
    return {
        "tier": tier,
        "pytest": " && ".join(" ".join([*cmd[2 if cmd[:1] == [sys.executable] else 0 :], *extra]) for cmd in runs),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "target_wall_s": target,
        "summary": summary,
        "exit": r.returncode,
        "slowest": slowest,
    }


def main(argv: list[str] | None = None) -> dict:
    from bench.common import RESULTS, save, table

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tier", choices=sorted(TIERS), default="unit")
    p.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    a = p.parse_args(argv if argv is not None or __name__ == "__main__" else [])  # (python -m bench: defaults)
    row = run_tier(a.tier, a.pytest_args)
    target = row["target_wall_s"]
    if target is None or a.pytest_args:  # a target is for the whole tier, not a selection of it
        verdict = "-"
    else:
        verdict = f"< {target:.0f} s: " + ("met" if row["wall_s"] < target else "not met" + (" (loaded machine)" if row["load_before"] > 2.5 else ""))
    cells = (row["tier"], f"{row['wall_s']:.0f}", f"{row['cpu_s']:.0f}", f"{row['load_before']:.1f}", verdict, row["summary"])
    print(table(("tier", "wall s", "CPU s", "load", "wall target", "pytest"), [cells]))
    print("slowest:\n  " + "\n  ".join(row["slowest"]))
    save(f"tests_{a.tier}", row)
    print(f"wrote {RESULTS} [tests_{a.tier}]")
    return row


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
