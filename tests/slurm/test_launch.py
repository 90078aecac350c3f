"""`proxyscale submit` / `proxyscale status` against the real SLURM cluster.

Every command runs the real CLI in a subprocess, writes under tmp_path and shares one tokenized
cache per session. The requeue cell is submitted first (module fixture) and checked last, so its
minutes of time-limit/requeue overlap the other tests. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

PROXYSCALE = str(Path(sys.executable).with_name("proxyscale"))
ROOT = Path(__file__).resolve().parents[2]
FAST = ["trainer.max_tokens=49152", "eval.tokens_per_set=2048", "eval.every_n_steps=4", "data.pool_tokens=200000", "trainer.threads=1"]
# The requeue cell: submitted with a 10-minute limit (USR2 30 s before it); once it has written its
# first checkpoint its limit is cut to 1 minute (scontrol update), so the time-limit signal comes
# within ~30 s: submitit checkpoints and requeues the task, then the limit goes back to 10 minutes
# and the requeued task resumes from last.ckpt and finishes. (A fixed 1-2 minute limit gives a
# load-dependent number of requeues on a shared 2-core machine: cut-when-checkpointed gives one.)
LONG = ["model=mini", "trainer.max_tokens=819200", "eval.tokens_per_set=2048", "eval.every_n_steps=20", "data.pool_tokens=200000", "trainer.threads=1"]
LONG_STEPS = 819200 // (32 * 128)


def cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PROXYSCALE, *args], cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def states(sweep: Path) -> dict[str, dict]:
    r = cli("status", "--json", str(sweep), timeout=60)
    assert r.returncode == 0, r.stderr
    return {row["run_id"]: row for row in map(json.loads, r.stdout.splitlines())}


def wait_for(sweep: Path, ok, timeout_s: float, cluster, poll_s: float = 2.0) -> dict[str, dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = states(sweep)
        if rows and ok(rows):
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"{sweep}: not there after {timeout_s:.0f}s: { {k: v['state'] for k, v in rows.items()} }\n{cluster.log_tail()}")
        time.sleep(poll_s)


def final(rows) -> bool:
    return all(r["state"] in ("completed", "diverged", "failed", "cancelled") for r in rows.values())


def _cut_time_limit(sweep: Path, job: str, log: list[str], timeout_s: float = 240) -> None:
    """Background: when the cell has a checkpoint, cut its job's limit to 1 min; when the job has
    been requeued, give the 10 minutes back."""
    deadline = time.monotonic() + timeout_s
    while not list(sweep.glob("*/checkpoints/last.ckpt")):
        if time.monotonic() > deadline:
            log.append("no checkpoint")
            return
        time.sleep(0.5)
    subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=1"], check=True, timeout=20)
    log.append("cut")
    while time.monotonic() < deadline:
        out = subprocess.run(["sacct", "-n", "-D", "-X", "-j", job, "-o", "State"], capture_output=True, text=True, timeout=20).stdout
        if "REQUEUED" in out:
            subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=10"], check=True, timeout=20)
            log.append("requeued")
            return
        time.sleep(0.5)
    log.append("never requeued")


@pytest.fixture(scope="module")
def requeue_sweep(slurm_cluster, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("requeue")
    r = cli(
        "submit",
        *LONG,
        f"paths.output_dir={out}",
        f"paths.cache_dir={cache_dir}",
        "sweep=req",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.signal_delay_s=30",
    )
    assert r.returncode == 0, r.stderr
    job = r.stdout.split("array job ")[1].split()[0]
    log: list[str] = []
    watcher = threading.Thread(target=_cut_time_limit, args=(out / "req", job, log), daemon=True)
    watcher.start()
    yield out / "req", watcher, log
    subprocess.run(["scancel", job], timeout=20)


def test_array_returns_at_once_then_completes(slurm_cluster, requeue_sweep, cache_dir, tmp_path):
    """(requeue_sweep: submitted first so that its requeue overlaps this module's other tests)"""
    out = tmp_path / "outputs"
    args = [
        "submit",
        "--cells-per-task",
        "2",
        "--max-parallel",
        "2",
        "model=debug,tiny",
        "data=balanced,noisy",
        *FAST,
        f"paths.output_dir={out}",
        f"paths.cache_dir={cache_dir}",
        "sweep=g",
    ]
    t0 = time.monotonic()
    r = cli(*args)
    took = time.monotonic() - t0
    sweep = out / "g"
    assert r.returncode == 0, r.stderr
    # returned before any cell could finish (a task imports torch before its first step)
    assert not list(sweep.glob("*/result.json")), f"submit waited for cells ({took:.1f}s)"
    assert "proxyscale status" in r.stdout and "array job" in r.stdout, r.stdout
    lines = [json.loads(x) for x in (sweep / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and len({x["array_job_id"] for x in lines}) == 1
    assert sorted(x["array_index"] for x in lines) == [0, 0, 1, 1]  # 2 cells per task
    assert (sweep / ".submitit").is_dir()
    sub = next(sweep.glob(".submitit/*/*_submission.sh")).read_text()
    assert "--array=0-1%2" in sub, sub

    rows = states(sweep)
    assert set(r_["state"] for r_ in rows.values()) <= {"pending", "running", "completed"}
    rows = wait_for(sweep, final, 240, slurm_cluster)
    assert {r_["state"] for r_ in rows.values()} == {"completed"}, rows
    table = cli("status", str(sweep)).stdout
    assert table.strip().splitlines()[-1] == "4 cells: 4 completed", table
    for rid in rows:
        rec = json.loads((sweep / rid / "result.json").read_text())
        assert rec["steps"] == 12 and rec["config"]["trainer"]["checkpoint"] is True

    # resubmitting the same grid: nothing to do, nothing rewritten
    mtimes = {p: p.stat().st_mtime for p in sweep.glob("*/result.json")}
    again = cli(*args)
    assert again.returncode == 0 and "nothing to submit" in again.stdout and "4 final" in again.stdout, again.stdout + again.stderr
    assert {p: p.stat().st_mtime for p in sweep.glob("*/result.json")} == mtimes
    assert len((sweep / "manifest.jsonl").read_text().splitlines()) == 4

    # the same folder with another non-swept setting is another grid: refused before submitting
    other = cli(*[a.replace("trainer.max_tokens=49152", "trainer.max_tokens=98304") for a in args])
    assert other.returncode == 2 and "different grid" in other.stderr and "trainer.max_tokens" in other.stderr, other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


def test_failed_cell_reported_others_complete(slurm_cluster, cache_dir, tmp_path):
    out = tmp_path / "outputs"
    fast = [a for a in FAST if not a.startswith("data.pool_tokens")]
    args = [
        "submit",
        "--cells-per-task",
        "2",
        "model=debug",
        "data.repeat=false",
        "data.steps=[],[{op: select_like, keep_frac: 1e-9}]",  # the second cell fails when it builds its pool (too few tokens left)
        *fast,
        f"paths.output_dir={out}",
        f"paths.cache_dir={cache_dir}",
        "sweep=f",
    ]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    sweep = out / "f"
    rows = wait_for(sweep, final, 180, slurm_cluster)
    by_state = {v["state"]: v for v in rows.values()}
    assert sorted(v["state"] for v in rows.values()) == ["completed", "failed"], rows
    failed = by_state["failed"]
    assert "result.json" in failed["error"] and "_log.out" in failed["log"] and "_log.err" in failed["log"], failed
    err_path = Path(failed["error"].rsplit(" (", 1)[1].rstrip(")"))  # "<cause> (<record path>)"
    assert "Traceback" in json.loads(err_path.read_text())["error"]
    table = cli("status", str(sweep)).stdout
    assert "1 completed" in table and "1 failed" in table and str(err_path) in table, table

    deadline = time.time() + 90  # the records are final; let the array task itself end too
    while True:
        skip = cli(*args)  # failed cells are not rerun by default, and the output says how
        if "still queued/running" not in skip.stdout or time.time() > deadline:
            break
        time.sleep(2)
    assert skip.returncode == 0 and "nothing to submit" in skip.stdout and "--retry-failed" in skip.stdout, skip.stdout
    retry = cli(*args, "--retry-failed")
    assert retry.returncode == 0 and "submitted 1 of 2" in retry.stdout, retry.stdout + retry.stderr
    rows = states(sweep)
    assert by_state["completed"]["run_id"] in rows and rows[by_state["completed"]["run_id"]]["state"] == "completed"
    job = retry.stdout.split("array job ")[1].split()[0]
    subprocess.run(["scancel", job], timeout=20)


def test_cancel_shows_cancelled(slurm_cluster, cache_dir, tmp_path):
    out = tmp_path / "outputs"
    long = [a.replace("1600000", "4000000") for a in LONG]
    r = cli("submit", "--cells-per-task", "1", "--max-parallel", "1", *long, "seed=0,1", f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}", "sweep=c")
    assert r.returncode == 0, r.stderr
    sweep = out / "c"
    job = r.stdout.split("array job ")[1].split()[0]
    wait_for(sweep, lambda rows: any(v["state"] == "running" for v in rows.values()), 120, slurm_cluster, poll_s=1)
    subprocess.run(["scancel", job], check=True, timeout=20)
    wait_for(sweep, lambda rows: all(v["state"] == "cancelled" for v in rows.values()), 90, slurm_cluster)
    table = cli("status", str(sweep)).stdout
    assert table.strip().splitlines()[-1] == "2 cells: 2 cancelled", table
    assert not list(sweep.glob("*/result.json"))


def test_bad_input_one_line_exit_2(slurm_cluster, cache_dir, tmp_path):
    out = tmp_path / "outputs"
    base = ["submit", "model=debug", *FAST, f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}", "sweep=bad"]
    cases = {
        "unknown SLURM partition": [*base, "hydra.launcher.partition=nope"],
        "GPUs requested": [*base, "trainer.accelerator=gpu"],
        "GPUs requested ": [*base, "hydra.launcher.gpus_per_task=1"],
        "not found on PATH": base,
    }
    for what, args in cases.items():
        env = {"PATH": "/nonexistent"} if what == "not found on PATH" else None
        r = cli(*args, env=env)
        assert r.returncode == 2, (what, r.stdout, r.stderr)
        assert what.strip() in r.stderr and len(r.stderr.strip().splitlines()) == 1, (what, r.stderr)
    assert not out.exists() or not list(out.rglob("manifest.jsonl"))


def test_timeout_requeues_and_resumes(slurm_cluster, requeue_sweep):
    sweep, watcher, log = requeue_sweep
    watcher.join(timeout=240)
    assert log[-1:] == ["requeued"], log
    rows = wait_for(sweep, final, 240, slurm_cluster, poll_s=2)
    ((rid, row),) = rows.items()
    rec = json.loads((sweep / rid / "result.json").read_text())
    assert row["state"] == "completed", (row, rec.get("error"))
    assert rec["requeues"] >= 1, rec["requeues"]
    # the same step and token count as an uninterrupted run of this cell, and a whole eval curve
    assert rec["steps"] == LONG_STEPS and rec["tokens"] == LONG_STEPS * 32 * 128
    steps = [p["step"] for p in rec["eval_curve"]]
    assert steps[-1] == LONG_STEPS and steps == sorted(set(steps)), steps  # resumed: no point lost or repeated
    out = next(sweep.glob(".submitit/*/*_log.out")).read_text()
    assert "Requeued job" in out, out[-2000:]
    err = next(sweep.glob(".submitit/*/*_log.err")).read_text()
    assert "resuming from step" in err, err[-2000:]


def test_two_process_ddp_cell_one_record(slurm_cluster, cache_dir, tmp_path):
    """trainer.strategy=ddp trainer.devices=2 on CPU: the array task gets 2 SLURM tasks (srun), which
    Lightning's SLURM environment wires into one gloo process group; only rank 0 writes the record."""
    out = tmp_path / "outputs"
    r = cli(
        "submit",
        "model=debug",
        "trainer.strategy=ddp",
        "trainer.devices=2",
        *FAST,
        "hydra.launcher.cpus_per_task=1",
        f"paths.output_dir={out}",
        f"paths.cache_dir={cache_dir}",
        "sweep=ddp",
    )
    assert r.returncode == 0, r.stderr
    sweep = out / "ddp"
    sub = next(sweep.glob(".submitit/*/*_submission.sh")).read_text()
    assert "--ntasks-per-node=2" in sub and "--nodes=1" in sub, sub
    rows = wait_for(sweep, final, 180, slurm_cluster)
    ((rid, row),) = rows.items()
    assert row["state"] == "completed", row
    rec = json.loads((sweep / rid / "result.json").read_text())
    assert rec["steps"] == 12 and rec["config"]["trainer"]["devices"] == 2
    logs = sorted(sweep.glob(".submitit/*/*_log.err"))
    assert len(logs) == 2 and all(f"{rid} start" in p.read_text() for p in logs)  # both ranks trained the cell


def test_hydra_submitit_slurm_launcher_blocks_and_runs(slurm_cluster, cache_dir, tmp_path):
    """The same preset through Hydra's own submitit launcher: one job per cell, the command blocks
    until both have ended, and the records are there when it returns."""
    out = tmp_path / "outputs"
    r = cli(
        "-m",
        "hydra/launcher=submitit_slurm",
        "model=debug",
        "data=balanced,noisy",
        *FAST,
        f"paths.output_dir={out}",
        f"paths.cache_dir={cache_dir}",
        "sweep=h",
        timeout=240,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = states(out / "h")
    assert sorted(v["state"] for v in rows.values()) == ["completed", "completed"], rows
