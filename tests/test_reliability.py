"""Fault injection on real sweeps: SIGKILL midway, two processes on one sweep folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from helpers import FAST, PROXYSCALE, ROOT, run_cli

GRID = ["-m", "model=debug", "data=balanced,noisy", "optim.lr=3e-3,1e-2", "sweep=rel", *FAST]


def _records(sweep):
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}


@pytest.mark.slow
def test_sigkill_midway_then_rerun_completes_without_rerunning_finished_cells(out_dir, cache_dir):
    args = [PROXYSCALE, *GRID, f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sweep = out_dir / "rel"
    deadline = time.time() + 300
    while time.time() < deadline and len(_records(sweep)) < 1:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {k: v for k, v in _records(sweep).items() if v["status"] == "completed"}
    assert 1 <= len(done_before) < 4, "kill the sweep midway"
    stamps = {k: (sweep / k / "result.json").stat().st_mtime_ns for k in done_before}
    assert not list(sweep.glob("*/.result.json.*.tmp")), "a partial record is left"

    r = run_cli(*GRID, f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}")
    assert r.returncode == 0, r.stderr[-2000:]
    after = _records(sweep)
    assert len(after) == 4 and {v["status"] for v in after.values()} == {"completed"}
    assert {k: (sweep / k / "result.json").stat().st_mtime_ns for k in done_before} == stamps
    assert f"{len(done_before)} already final, {4 - len(done_before)} to run" in r.stderr + r.stdout


@pytest.mark.slow
def test_two_processes_on_one_sweep_train_each_cell_once(out_dir, cache_dir):
    args = [PROXYSCALE, *GRID, f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    starts = sum(o.count(" start\n") for o in outs)
    assert starts == 4, outs  # each cell trained by exactly one of the two processes
    recs = _records(out_dir / "rel")
    assert len(recs) == 4 and {v["status"] for v in recs.values()} == {"completed"}
