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


# ---- issue 14: the exit status tells the truth ------------------------------------------------


def _run_ids(*overrides):
    from proxyscale import grid

    return [c.run_id for c in grid.compose_grid(["-m", *overrides])[0]]


@pytest.mark.slow  # shells out to the CLI and trains
def test_a_record_that_cannot_be_written_is_a_non_zero_exit_with_one_line(out_dir, cache_dir):
    args = ["-m", "model=debug", "optim.lr=2e-2,3e-2", "sweep=unwritable", *FAST, f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    blocked = _run_ids(*args[1:])[0]
    (out_dir / "unwritable" / blocked / "result.json").mkdir(parents=True)  # a directory in the way
    r = run_cli(*args)
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("proxyscale: error: 1 of 2 cells could not write their record (IsADirectoryError: "), last
    assert last.endswith(f"(see proxyscale status {out_dir / 'unwritable'})")
    assert len(list((out_dir / "unwritable").glob("*/result.json"))) == 2  # the other cell's record is there (and the dir)


@pytest.mark.slow  # shells out to the CLI and trains
def test_a_failed_cell_is_a_non_zero_exit_unless_asked(out_dir, cache_dir):
    args = [
        "-m",
        "model=debug",
        "sweep=crash",
        *FAST,
        f"paths.output_dir={out_dir}",
        f"paths.cache_dir={cache_dir}",
        "data.repeat=false",
        "data.steps=[{op: select_like, keep_frac: 1e-9}]",
    ]
    r = run_cli(*args)  # the pool asks for more tokens than curation leaves: the cell fails when it builds
    assert r.returncode == 1, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == f"proxyscale: error: 1 of 1 cells failed (see proxyscale status {out_dir / 'crash'})"


def _watch(proc, needle: str, timeout: float = 240) -> str:
    """Read the process's merged output until `needle` appears."""
    seen, deadline = "", time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never appeared:\n{seen[-3000:]}")


@pytest.mark.slow  # shells out to the CLI and trains
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_training_exits_128_plus_signal_and_the_rerun_resumes(out_dir, cache_dir, sig, code):
    args = ["-m", "model=debug", "sweep=sig", *FAST, "trainer.max_tokens=120000", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    proc = subprocess.Popen([PROXYSCALE, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _watch(proc, "step 8/")  # two checkpoints written
    proc.send_signal(sig)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == code, rest[-2000:]
    name = signal.Signals(sig).name
    assert rest.strip().splitlines()[-1] == f"proxyscale: error: interrupted by {name}: 1 of 1 cells not finished (rerun the same command to resume)"
    if sig == signal.SIGTERM:
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr[-2000:]
        (rec,) = _records(out_dir / "sig").values()
        assert rec["status"] == "completed" and rec["requeues"] == 1


def _descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in os.listdir(f"/proc/{p}/task") if os.path.exists(f"/proc/{p}/task") else []:
            try:
                kids = [int(k) for k in open(f"/proc/{p}/task/{task}/children").read().split()]
            except OSError:
                continue
            out.update(kids)
            todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow  # shells out to the CLI and trains
def test_killing_only_the_parent_of_a_two_worker_sweep_stops_its_workers(out_dir, cache_dir):
    args = [
        "-m",
        "model=debug",
        "optim.lr=2e-2,3e-2",
        "sweep=orphans",
        "hydra.launcher.n_jobs=2",
        *FAST,
        "trainer.max_tokens=2000000",
        f"paths.output_dir={out_dir}",
        f"paths.cache_dir={cache_dir}",
    ]
    proc = subprocess.Popen([PROXYSCALE, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _watch(proc, "step 4/")
    workers = _descendants(proc.pid)
    assert workers
    proc.kill()  # the parent only, not its process group
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not [p for p in workers if _alive(p)], "workers outlived their parent"
