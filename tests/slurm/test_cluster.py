"""submitit against the real SLURM cluster (launchers/slurm/cluster-up.sh).

What the sweep launcher relies on: a job returns its result, an array runs under a concurrency
limit, a cancelled job ends (and submitit sees it end, via sacct), and a job that hits its time
limit is checkpointed, requeued and finishes. Every wait is bounded; the module takes ~1-2 min.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit

pytestmark = pytest.mark.slurm

# The jobs unpickle the callables below in a fresh interpreter that cannot import this test
# module (pytest put its folder on sys.path, the job does not): ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def add(a: int, b: int) -> int:
    return a + b


def square_and_host(x: int) -> tuple[int, str, str]:
    time.sleep(2)
    return x * x, os.environ.get("SLURM_ARRAY_JOB_ID", ""), os.environ.get("SLURM_ARRAY_TASK_ID", "")


def sleep_forever(marker: str) -> None:
    Path(marker).write_text("started")
    while True:
        time.sleep(1)


class CountingSleeper(submitit.helpers.Checkpointable):
    """Sleeps in a loop, counting progress in a file. The first attempt never finishes by itself:
    only the time-limit signal (USR2 -> checkpoint -> requeue) gets it to a second attempt, which
    does a few more steps and returns (attempts, progress)."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir

    def _bump(self, name: str) -> int:
        path = Path(self.workdir) / name
        n = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(n))
        return n

    def __call__(self) -> tuple[int, int]:
        attempt = self._bump("attempts")
        steps = 0
        while attempt == 1 or steps < 3:
            time.sleep(1)
            steps += 1
            progress = self._bump("progress")
        return attempt, progress


def wait_done(jobs, timeout_s: float, cluster, poll_s: float = 1.0) -> None:
    """Poll with a fresh sacct each time (submitit's own interval grows up to minutes)."""
    jobs = list(jobs)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(j.done(force_check=True) for j in jobs):
            return
        time.sleep(poll_s)
    states = {j.job_id: j.state for j in jobs}
    pytest.fail(f"jobs not done after {timeout_s:.0f}s: {states}\n--- slurmctld.log\n{cluster.log_tail()}")


def wait_state(job, prefix: str, timeout_s: float, cluster) -> str:
    """The accounting state as submitit reads it (sacct), polled: sacct can lag a job's end."""
    deadline = time.monotonic() + timeout_s
    while True:
        job.watcher.update()  # one fresh sacct for the registered jobs
        state = job.state
        if state.startswith(prefix) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert state.startswith(prefix), f"{job.job_id}: {state!r}, expected {prefix}*\n{cluster.log_tail()}"
    return state


def executor(folder: Path, **params) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    assert ex.cluster == "slurm"
    ex.update_parameters(**{"timeout_min": 5, "cpus_per_task": 1, "slurm_partition": "debug", **params})
    return ex


def test_job_returns_result(slurm_cluster, submitit_folder):
    job = executor(submitit_folder, name="ps-add").submit(add, 2, 3)
    wait_done([job], 60, slurm_cluster)
    assert job.result() == 5
    wait_state(job, "COMPLETED", 20, slurm_cluster)


def test_array_with_concurrency_limit(slurm_cluster, submitit_folder):
    ex = executor(submitit_folder, name="ps-array", slurm_array_parallelism=2)
    jobs = ex.map_array(square_and_host, range(4))
    assert len(jobs) == 4
    wait_done(jobs, 90, slurm_cluster)
    results = [j.result() for j in jobs]
    assert [r[0] for r in results] == [0, 1, 4, 9]
    assert len({r[1] for r in results}) == 1 and results[0][1]  # one array job
    assert sorted(r[2] for r in results) == ["0", "1", "2", "3"]
    # the limit reached SLURM (--array=0-3%2) and held: never more than 2 tasks at once
    sbatch = next(submitit_folder.glob("*submission_file*.sh"), None)
    assert sbatch is not None and "--array=0-3%2" in sbatch.read_text()
    spans = _task_spans(results[0][1])
    assert len(spans) == 4, spans
    assert max(sum(s <= t < e for s, e in spans) for t, _ in spans) <= 2, spans


def _task_spans(array_job_id: str, timeout_s: float = 20) -> list[tuple[str, str]]:
    """[start, end) of each task of an array, from sacct (second resolution, ISO strings)."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", array_job_id, "-o", "JobID,Start,End"], capture_output=True, text=True, timeout=10).stdout
        spans = [tuple(line.split("|")[1:3]) for line in out.splitlines() if line.strip()]
        if len(spans) == 4 and all(e[:2] == "20" for _, e in spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)


def test_cancel_ends_sleeping_job(slurm_cluster, submitit_folder, tmp_path):
    marker = tmp_path / "started"
    job = executor(submitit_folder, name="ps-cancel").submit(sleep_forever, str(marker))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, f"job never started: {job.state}\n{slurm_cluster.log_tail()}"
        time.sleep(0.5)
    job.cancel(check=True)
    wait_done([job], 60, slurm_cluster)
    wait_state(job, "CANCELLED", 20, slurm_cluster)  # e.g. "CANCELLED by 0"
    # (job.result() would raise UncompletedJobError, after submitit's 15 s grace for the file)
    assert not job.paths.result_pickle.exists()


def test_timeout_requeues_checkpointable(slurm_cluster, submitit_folder, tmp_path):
    # 1 min limit, USR2 20 s before it: submitit checkpoints, requeues, and the job's second
    # attempt finishes. slurmctld checks every ~30 s and sends the signal up to one check early,
    # so it comes 10-40 s in; the requeued job restarts ~15 s later (cred_expire=10).
    ex = executor(submitit_folder, name="ps-timeout", timeout_min=1, slurm_signal_delay_s=20)
    job = ex.submit(CountingSleeper(str(tmp_path)))
    wait_done([job], 150, slurm_cluster, poll_s=2)
    attempt, progress = job.result()
    assert attempt >= 2, "job finished without being requeued"
    assert int((tmp_path / "attempts").read_text()) == attempt
    assert progress >= attempt + 3  # the first attempt made progress before the signal
    log = job.paths.stderr.read_text() + job.paths.stdout.read_text()
    assert "Requeued job" in log, log[-2000:]
    wait_state(job, "COMPLETED", 20, slurm_cluster)


def test_cell_sbatch_template(slurm_cluster, tmp_path):
    """launchers/slurm/cell.sbatch: arguments for one cell, an override file for an array."""
    script = Path(__file__).resolve().parents[2] / "launchers" / "slurm" / "cell.sbatch"
    cells = tmp_path / "cells.txt"
    cells.write_text("# a comment\nmodel=tiny data=balanced\n\nmodel=tiny data=noisy seed=1\n")
    env = {**os.environ, "PROXYSCALE_CMD": "echo CELL"}
    common = ["sbatch", "--parsable", "--wait", "--time=2", f"--chdir={tmp_path}"]
    runs = [
        (common + ["--array=1-2", "--output=arr-%a.out", str(script), str(cells)], "arr"),
        (common + ["--output=one.out", str(script), "model=small", "optim.lr=3e-3"], "one"),
    ]
    for cmd, what in runs:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, f"{what}: {r.stdout}{r.stderr}\n{slurm_cluster.log_tail()}"
    last = lambda name: (tmp_path / name).read_text().strip().splitlines()[-1]  # noqa: E731
    assert last("arr-1.out") == "CELL model=tiny data=balanced"
    assert last("arr-2.out") == "CELL model=tiny data=noisy seed=1"
    assert last("one.out") == "CELL model=small optim.lr=3e-3"
