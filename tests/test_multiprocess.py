"""Multi-process cells on CPU (gloo): two processes give the one-process record, whatever stops them.

The reference is the same cell on one process (same global batch and seed). The tolerance is float
reduction order only: DDP averages two half-batch gradients where one process averages one batch, and
the train loss is the mean of two half-batch means; the eval is scored in the same batches on both, so
its per-example losses differ only through the weights. Measured max abs difference on these cells:
about 5e-7 nats (eval losses, per-example losses, train losses); helpers.RECORD_TOL (1e-5) leaves a margin of 20x.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from faults import alive, descendants

from helpers import FAST, PROXYSCALE, ROOT, assert_same_record, records_by_devices, run_cli, run_main

TWO = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.pg_timeout_s=60"]
POINTS = ["trainer.log_every_n_steps=2"]  # a train-loss point every other step (not part of the cell's identity)


def _by_recipe(sweep: Path) -> list[dict]:
    return [{**json.loads(p.read_text()), "_dir": p.parent} for p in sweep.glob("*/result.json")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir) -> dict:
    """The one-process record of the FAST debug cell (train points every other step)."""
    out = tmp_path_factory.mktemp("ref")
    r = run_cli("model=debug", *FAST, *POINTS, "sweep=ref", f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}")
    assert r.returncode == 0, r.stderr[-3000:]
    return records_by_devices(out / "ref")[1]


@pytest.mark.slow  # spawns the CLI to train
def test_a_two_process_ddp_cell_finishes_and_gives_the_one_process_record(reference, out_dir, cache_dir):
    """The command that used to hang (rank 1 met rank 0's cell lock and left): one record, from rank 0, equal to one process's."""
    r = run_cli("model=debug", *FAST, *POINTS, *TWO, "sweep=two", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    said = r.stdout + r.stderr
    assert said.count(" start\n") == 1 and "running in another process" not in said and not r.stderr, said[-3000:]  # one cell log, no lock contest
    rec = records_by_devices(out_dir / "two")[2]
    assert not list(rec["_dir"].glob(".rank-*")) and rec["extra"]["identity_env"]
    assert_same_record(reference, rec)


@pytest.mark.slow  # spawns the CLI to train
def test_task_eval_sets_are_gathered_item_by_item_in_a_sweep_over_the_process_count(out_dir, cache_dir):
    """eval=tasks_local (lm and benchmark task sets): per-item metrics from both ranks, each item once; a sweep
    whose cells differ in their process count runs each with its own process group, one after another."""
    r = run_cli(
        "-m", "model=debug", "eval=tasks_local", *FAST, *POINTS, "trainer.devices=1,2", "sweep=tasks",
        f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", timeout=400,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    recs = records_by_devices(out_dir / "tasks")
    assert set(recs) == {1, 2} and set(recs[2]["final_metrics"]) == {"pyquiz", "pycloze"}
    assert_same_record(recs[1], recs[2])
    items = pd.read_parquet(recs[2]["_dir"] / "examples.parquet")
    per_item = items[items["eval_set"].astype(str) == "pyquiz"]
    assert per_item.groupby("metric", observed=True)["example"].apply(lambda s: list(s) == list(range(len(s)))).all()  # every item once, in order


@pytest.mark.slow  # (two more 2-process cells)
@pytest.mark.parametrize("launcher", [["hydra.launcher.n_jobs=2"], ["hydra/launcher=submitit_local"]], ids=["joblib", "submitit_local"])
def test_a_worker_process_runs_a_two_process_cell_to_the_one_process_record(reference, out_dir, cache_dir, launcher):
    """A cell in a joblib or submitit worker: its rank 0 starts rank 1 the same way (a re-run of the worker's own
    command line would not be the cell at all)."""
    r = run_cli("-m", "model=debug", *FAST, *POINTS, *TWO, *launcher, "sweep=w", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_record(reference, records_by_devices(out_dir / "w")[2])


def test_fsdp_on_cpu_is_refused_in_one_line_before_anything_runs(out_dir, capsys):
    r = run_main(capsys, "model=debug", "trainer.devices=2", "trainer.strategy=fsdp", f"paths.output_dir={out_dir}")
    assert r.returncode == 2 and not out_dir.exists()
    (line,) = r.stderr.splitlines()
    assert line.startswith("proxyscale: error: trainer.strategy=fsdp needs trainer.accelerator=gpu (Lightning's FSDP runs on CUDA only)"), line


@pytest.mark.parametrize(
    "args,says",
    [
        (["trainer.devices=64", "trainer.batch_size=64"], "trainer.devices=64 CPU processes but this machine has"),
        (["trainer.num_nodes=2"], "trainer.num_nodes=2 needs a cluster: run it with proxyscale submit"),
    ],
)
def test_a_cell_this_machine_cannot_run_is_refused_in_one_line(out_dir, args, says, capsys):
    r = run_main(capsys, "-m", "model=debug", *args, f"paths.output_dir={out_dir}")
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.splitlines()
    assert says in line, line


def test_another_process_count_is_another_cell():
    """A checkpoint never crosses process counts: trainer.devices is part of the cell's identity (a rerun with
    another count trains its own cell from the start)."""
    from proxyscale import grid

    cells, _ = grid.compose_grid(["-m", "model=debug", "trainer.devices=1,2"])
    assert len({c.run_id for c in cells}) == 2


# ---------------------------------------------------------------------------------------------
# faults


def _ranks(pid: int) -> list[int]:
    """The rank > 0 processes under `pid`."""
    return [p for p in descendants(pid) if b"proxyscale.job\0" in Path(f"/proc/{p}/cmdline").read_bytes()] if alive(pid) else []


def _start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([PROXYSCALE, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})


def _watch(proc: subprocess.Popen, needle: str) -> str:
    seen = ""
    for line in proc.stdout:
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never appeared:\n{seen[-3000:]}")


@pytest.mark.slow  # spawns the CLI to train
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_every_rank_and_the_rerun_resumes_to_the_uninterrupted_record(reference, out_dir, cache_dir, sig, code):
    args = ["model=debug", *FAST, *POINTS, *TWO, "sweep=sig", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    proc = _start(args)
    _watch(proc, "step 4/12")
    ckpt = next((out_dir / "sig").glob("*/config.yaml")).parent / "checkpoints" / "last.ckpt"
    while not ckpt.exists() and proc.poll() is None:  # (written right after that eval)
        time.sleep(0.02)
    procs = descendants(proc.pid)
    assert _ranks(proc.pid), "rank 1 is not running"
    proc.send_signal(sig)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == code, rest[-3000:]
    assert (
        rest.strip().splitlines()[-1]
        == f"proxyscale: error: interrupted by {signal.Signals(sig).name}: 1 of 1 cells not finished (rerun the same command to resume)"
    )
    deadline = time.monotonic() + 10
    while any(alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in procs if alive(p)], "orphaned ranks"
    r = run_cli(*args, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = records_by_devices(out_dir / "sig")[2]
    assert rec["requeues"] == 1 and "resuming from step" in r.stdout + r.stderr
    assert_same_record(reference, rec)


@pytest.mark.slow  # spawns the CLI to train
def test_a_rank_killed_fails_its_cell_in_bounded_time_the_sweep_goes_on_and_a_rerun_resumes(reference, out_dir, cache_dir):
    # (the rank's closed connection fails rank 0's next collective at once; trainer.pg_timeout_s bounds a hung rank. It also
    # bounds the rendezvous, so it stays at TWO's 60 s: a second rank can take 20 s to start on a loaded 2-core machine)
    args = ["-m", "model=debug", "data=balanced,noisy", *FAST, *POINTS, *TWO, "sweep=kill"]
    args += [f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    proc = _start(args)
    _watch(proc, "step 8/12")
    (rank1,) = _ranks(proc.pid)
    os.kill(rank1, signal.SIGKILL)
    rest = proc.communicate(timeout=240)[0]  # (without the process-group timeout or a closed connection: forever)
    assert proc.returncode == 1, rest[-3000:]
    assert rest.strip().splitlines()[-1].startswith("proxyscale: error: 1 of 2 cells failed"), rest[-2000:]
    recs = {r["recipe"]: r for r in _by_recipe(out_dir / "kill")}
    assert recs["balanced"]["status"] == "failed" and recs["noisy"]["status"] == "completed"
    assert "rank 1 ended with signal SIGKILL" in recs["balanced"]["error"], recs["balanced"]["error"][-2000:]
    r = run_cli(*args, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    done = {r["recipe"]: r for r in _by_recipe(out_dir / "kill")}
    assert done["balanced"]["status"] == "completed" and done["balanced"]["requeues"] == 1, done["balanced"]
    assert_same_record(reference, done["balanced"])


FAULT = """
import os
if os.environ.get("LOCAL_RANK") == "1":  # rank 1 of a multi-process cell only
    import proxyscale.job.module as m

    step = m.CausalLM.training_step

    def failing(self, batch, batch_idx):
        if self.trainer.global_step == 6:
            raise RuntimeError("fault injected in rank 1")
        return step(self, batch, batch_idx)

    m.CausalLM.training_step = failing
"""


@pytest.mark.slow  # spawns the CLI to train
def test_a_rank_that_raises_fails_the_cell_with_its_traceback(tmp_path, out_dir, cache_dir):
    (tmp_path / "fault").mkdir()
    (tmp_path / "fault" / "sitecustomize.py").write_text(FAULT)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "fault"), os.environ.get("PYTHONPATH", "")])}
    r = run_cli("model=debug", *FAST, *TWO, "sweep=raise", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", env=env, timeout=300)
    assert r.returncode == 1, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == "proxyscale: error: 1 of 1 cells failed", r.stderr[-2000:]
    (rec,) = records_by_devices(out_dir / "raise").values()
    assert rec["status"] == "failed"
    assert "rank 1:\nTraceback" in rec["error"] and "RuntimeError: fault injected in rank 1" in rec["error"], rec["error"][-3000:]


@pytest.mark.slow  # (six cells, three of them on 2 processes)
def test_the_per_example_view_with_a_two_process_target(out_dir, cache_dir):
    """Proxies on one process, the target on two: the report's per-example view reads the target's gathered losses."""
    common = ["data=balanced,noisy,code_heavy", *FAST, "sweep=pe", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    for args in (["model=debug"], ["model=tiny", *TWO]):
        r = run_cli("-m", *args, *common, timeout=400)
        assert r.returncode == 0, r.stderr[-3000:]
    rep = run_cli("report", str(out_dir / "pe"))
    assert rep.returncode == 0, rep.stderr[-3000:]
    pe = json.loads((out_dir / "pe" / "report.json").read_text())["per_example"]
    assert pe["available"] and pe["target"] == "tiny", pe
    n_win = 2048 // 129
    assert {(e["proxy"], e["n_recipes"], e["n_examples"] + e["n_undefined"]) for e in pe["entries"]} == {("debug", 3, n_win)}
