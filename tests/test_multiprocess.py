"""Multi-process cells on CPU (gloo): two processes give the one-process record, whatever stops them.

The reference is the same cell on one process (same global batch and seed). The tolerance is float
reduction order only: DDP averages two half-batch gradients where one process averages one batch (FSDP
reduce-scatters them, each rank keeping its shard's average), and the train loss is the mean of two
half-batch means; the eval is scored in the same batches on both, so its per-example losses differ only
through the weights. Measured max abs difference on these cells: about 5e-7 nats (eval losses,
per-example losses, train losses; DDP and FSDP alike); helpers.RECORD_TOL (1e-5) leaves a margin of 20x.
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
from faults import alive, descendants, survivors

from helpers import FAST, PROXYSCALE, ROOT, assert_same_record, records_by_devices, run_cli, run_main, snapshot

TWO = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.pg_timeout_s=60"]
FSDP = ["trainer.devices=2", "trainer.strategy=fsdp", "trainer.pg_timeout_s=60"]
POINTS = ["trainer.log_every_n_steps=2"]  # a train-loss point every other step (not part of the cell's identity)


def _by_recipe(sweep: Path) -> list[dict]:
    return [{**json.loads(p.read_text()), "_dir": p.parent} for p in sweep.glob("*/result.json")]


TASKS = ["model=debug", "eval=tasks_local", *FAST, *POINTS]


@pytest.fixture(scope="module")
def tasks_reference(tmp_path_factory, cache_dir) -> dict:
    """The one-process record of the FAST debug cell with eval=tasks_local (lm and benchmark task sets), under
    trainer.strategy=ddp (Lightning's DDP path on one process: the threads check reads its placement)."""
    out = tmp_path_factory.mktemp("tasks")
    r = run_cli(*TASKS, "trainer.strategy=ddp", "sweep=tasks1", f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    return records_by_devices(out / "tasks1")[1]


def assert_items_once(rec: dict) -> None:
    """Per-item metrics of the benchmark set from both ranks, each item once and in order (the sampler pads the ranks
    even; under FSDP every forward gathers the sharded weights, so each rank scores as many batches)."""
    assert set(rec["final_metrics"]) == {"pyquiz", "pycloze"}, rec["final_metrics"]
    items = pd.read_parquet(rec["_dir"] / "examples.parquet")
    per_item = items[items["eval_set"].astype(str) == "pyquiz"]
    assert per_item.groupby("metric", observed=True)["example"].apply(lambda s: list(s) == list(range(len(s)))).all()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir) -> dict:
    """The one-process record of the FAST debug cell (train points every other step), trained in this process."""
    out = tmp_path_factory.mktemp("ref")
    r = run_main(None, "model=debug", *FAST, *POINTS, "sweep=ref", f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}")
    assert r.returncode == 0, r.stderr[-3000:]
    return records_by_devices(out / "ref")[1]


@pytest.mark.slow  # spawns the CLI to train
def test_a_two_process_ddp_cell_finishes_and_gives_the_one_process_record(tasks_reference, out_dir, cache_dir):
    """The command that used to hang (rank 1 met rank 0's cell lock and left): one record, from rank 0, equal to one process's,
    its lm and benchmark task sets gathered item by item."""
    reference = tasks_reference
    r = run_cli(*TASKS, *TWO, "sweep=two", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    said = r.stdout + r.stderr
    assert said.count(" start\n") == 1 and "running in another process" not in said and not r.stderr, said[-3000:]  # one cell log, no lock contest
    rec = records_by_devices(out_dir / "two")[2]
    assert not list(rec["_dir"].glob(".rank-*")) and rec["extra"]["identity_env"]
    assert rec["placements"] == [{"step": 0, "devices": 2, "num_nodes": 1, "world_size": 2, "strategy": "ddp", "threads": 1}]
    assert rec["_dir"].name == reference["run_id"]  # one cell, whatever runs it
    assert_same_record(reference, rec)
    assert_items_once(rec)
    again = run_cli(*TASKS, "sweep=two", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", timeout=300)
    assert again.returncode == 0 and "skip: already completed" in again.stdout + again.stderr, again.stderr[-3000:]  # not rerun on 1 process
    assert records_by_devices(out_dir / "two")[2]["wall_seconds"] == rec["wall_seconds"]


@pytest.mark.slow  # (two more 2-process cells)
@pytest.mark.parametrize("launcher", [["hydra.launcher.n_jobs=2"], ["hydra/launcher=submitit_local"]], ids=["joblib", "submitit_local"])
def test_a_worker_process_runs_a_two_process_cell_to_the_one_process_record(reference, out_dir, cache_dir, launcher):
    """A cell in a joblib or submitit worker: its rank 0 starts rank 1 the same way (a re-run of the worker's own
    command line would not be the cell at all)."""
    r = run_cli("-m", "model=debug", *FAST, *POINTS, *TWO, *launcher, "sweep=w", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_record(reference, records_by_devices(out_dir / "w")[2])


SHARDS = """
import json, os
import proxyscale.job.module as m

make = m.CausalLM.configure_optimizers


def recording(self):  # what each rank's optimizer is given: its own shard of every parameter (DTensor.to_local)
    held = sum(getattr(p, "to_local", lambda: p)().numel() for p in self.parameters())
    with open(os.path.join(os.environ["SHARDS_OUT"], f"rank{self.global_rank}.json"), "w") as f:
        json.dump([held, sum(p.numel() for p in self.parameters())], f)
    return make(self)


m.CausalLM.configure_optimizers = recording
"""


@pytest.mark.slow  # (a 2-process cell)
def test_a_two_process_fsdp_cell_on_cpu_gives_the_one_process_record(tasks_reference, tmp_path, out_dir, cache_dir):
    """trainer.strategy=fsdp is torch's FSDP2 (each rank holds half of every parameter and its optimizer state) under
    gloo: its gradients are reduce-scattered where DDP all-reduces them, to the same numbers up to reduction order;
    its task sets are gathered item by item like DDP's."""
    reference = tasks_reference
    hook, shards = tmp_path / "hook", tmp_path / "shards"
    hook.mkdir(), shards.mkdir()
    (hook / "sitecustomize.py").write_text(SHARDS)
    env = {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]), "SHARDS_OUT": str(shards)}
    args = [*TASKS, *FSDP, "sweep=fsdp", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    r = run_cli(*args, env=env, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not r.stderr, r.stderr[-3000:]
    held = [json.loads((shards / f"rank{k}.json").read_text()) for k in (0, 1)]  # (parameters the optimizer holds, of the whole model's)
    assert held[0][1] == held[1][1] == reference["params"] and held[0][0] + held[1][0] == reference["params"] and max(h[0] for h in held) < reference["params"]
    rec = records_by_devices(out_dir / "fsdp")[2]
    assert rec["placements"] == [{"step": 0, "devices": 2, "num_nodes": 1, "world_size": 2, "strategy": "fsdp", "threads": 1}]
    assert rec["_dir"].name == reference["run_id"]
    assert_same_record(reference, rec)
    assert_items_once(rec)


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


@pytest.mark.slow  # (reads the 1-process ddp cell of tasks_reference)
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="Lightning's thread count and trainer.threads=1 agree on one core")
def test_the_ranks_train_with_trainer_threads_not_lightnings_cores_per_device(tasks_reference):
    """Lightning's DDP launcher sets torch's threads to cores / devices unless OMP_NUM_THREADS is set: one rank per
    node got every core (a 2-node cell ran ~20x slower per step than on one node). The cell keeps trainer.threads."""
    assert [(p["strategy"], p["threads"]) for p in tasks_reference["placements"]] == [("ddp", 1)], tasks_reference["placements"]


def test_the_process_count_is_not_an_axis_of_a_grid():
    """Where a cell runs is not part of it (config.PLACEMENT): a sweep over trainer.devices names one cell twice."""
    from proxyscale import grid

    with pytest.raises(grid.GridError, match=r"trainer.devices=1 and trainer.devices=2 are the same cell: where a cell runs"):
        grid.compose_grid(["-m", "model=debug", "trainer.devices=1,2"])


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


def _interrupt(args: list[str], at: int, sig: signal.Signals, sweep: Path) -> tuple[str, list[int], list[int]]:
    """Start the cell, send `sig` once its step-`at` checkpoint is written; (output after the signal, every process
    it had, its ranks > 0 when signalled)."""

    def stamp() -> int | None:  # the cell's last checkpoint's mtime (None: not written yet)
        ckpt = next(sweep.glob("*/checkpoints/last.ckpt"), None)
        return ckpt.stat().st_mtime_ns if ckpt else None

    before = stamp()
    proc = _start(args)
    _watch(proc, f"step {at}/12")
    while stamp() in (None, before) and proc.poll() is None:  # (written right after that eval)
        time.sleep(0.02)
    procs, ranks = descendants(proc.pid), _ranks(proc.pid)
    proc.send_signal(sig)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + sig, rest[-3000:]
    return rest, procs, ranks


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


def _placed(n: int, strategy: str = "ddp") -> list[str]:
    return [f"trainer.devices={n}", f"trainer.strategy={strategy}", "trainer.pg_timeout_s=60"] if n > 1 else []


def _stopped(rest: str, procs: list[int], sig: signal.Signals) -> None:
    """A stopped cell says so in one last line and leaves none of its processes (ranks included) behind."""
    assert rest.strip().splitlines()[-1] == f"proxyscale: error: interrupted by {sig.name}: 1 of 1 cells not finished (rerun the same command to resume)"
    assert not survivors(procs, within_s=10), f"orphaned processes after {sig.name}"


@pytest.mark.slow  # (a cell interrupted twice and resumed, on 2 processes in between)
@pytest.mark.parametrize(
    "counts,strategy,signals",
    [((1, 2, 1), "ddp", (signal.SIGTERM, signal.SIGINT)), ((2, 2, 2), "fsdp", (signal.SIGTERM, signal.SIGTERM))],
    ids=["1-then-2-then-1", "fsdp-2-then-2"],
)
def test_a_stopped_cell_resumes_on_another_process_count_to_the_uninterrupted_record(reference, out_dir, cache_dir, counts, strategy, signals):
    """A signal (SIGTERM: a scheduler's stop; SIGINT: Ctrl-C) stops every rank, exits 128 + signal with one line and
    leaves no process behind. Batches are a function of (seed, step) and a checkpoint holds the whole model and
    optimizer (rank 0's; under FSDP gathered from the shards into one file): the cell resumes from it on any process
    count (FSDP: with FSDP on as many, which shards it again), to the record of the uninterrupted one-process run
    (float reduction order). The ddp chain moves 1 -> 2 -> 1 processes (SIGTERM at step 4, SIGINT at step 8 on 2
    processes); the fsdp one stays on 2 (SIGTERM at both)."""
    common = ["model=debug", *FAST, *POINTS, "sweep=move", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    for n, at, sig in zip(counts, (4, 8), signals):
        rest, procs, ranks = _interrupt([*common, *_placed(n, strategy)], at, sig, out_dir / "move")
        assert len(ranks) == n - 1, (n, ranks)  # (rank 1 was running when signalled)
        _stopped(rest, procs, sig)
    r = run_cli(*common, *_placed(counts[-1], strategy), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from step 8" in r.stdout + r.stderr
    (rec,) = records_by_devices(out_dir / "move").values()
    runs = [(p["step"], p["world_size"], p["strategy"]) for p in rec["placements"]]
    assert rec["requeues"] == 2 and runs == [(s, n, strategy if n > 1 else "single") for s, n in zip((0, 4, 8), counts)], rec["placements"]
    assert_same_record(reference, rec)


@pytest.mark.parametrize("multirun", [False, True], ids=["one-cell", "sweep"])
def test_an_fsdp_checkpoint_on_another_placement_is_refused_in_one_line_before_anything_runs(out_dir, multirun):
    """An FSDP checkpoint resumes only with FSDP on as many processes (other combinations are not verified)."""
    import torch

    from proxyscale import grid, record

    args = ["model=debug", *_placed(2), "sweep=f", f"paths.output_dir={out_dir}"]
    (cell,), _ = grid.compose_grid(args)
    ckpt = out_dir / "f" / cell.run_id / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    fsdp = {"devices": 2, "num_nodes": 1, "world_size": 2, "strategy": "fsdp"}
    torch.save({"global_step": 4, record.CKPT_RUN_ID: cell.run_id, record.CKPT_PLACEMENT: fsdp}, ckpt)
    before = snapshot(out_dir)
    r = run_cli(*(["-m"] if multirun else []), *args, timeout=120)
    assert r.returncode == 2, r.stderr[-3000:]
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"proxyscale: error: {ckpt}: its checkpoint was written by fsdp on 2 process(es), this run is ddp on 2: "), line
    assert snapshot(out_dir) == before


def test_which_checkpoints_resume_where():
    from proxyscale.job.run import resume_problem

    def at(strategy, world):
        return {"devices": world, "num_nodes": 1, "world_size": world, "strategy": strategy}

    ok = [(at("single", 1), at("ddp", 2)), (at("ddp", 4), at("single", 1)), (at("ddp", 2), at("ddp", 8)), (at("fsdp", 2), at("fsdp", 2)), (None, at("ddp", 2))]
    assert [resume_problem(a, b) for a, b in ok] == [None] * len(ok)
    refused = [(at("fsdp", 2), at("fsdp", 4)), (at("fsdp", 2), at("ddp", 2)), (at("ddp", 2), at("fsdp", 2)), (None, at("fsdp", 1))]
    assert all("an FSDP checkpoint resumes only with FSDP on the same number of processes" in resume_problem(a, b) for a, b in refused)


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
def test_the_per_example_view_with_a_two_process_target(out_dir, cache_dir, capsys):
    """Proxies on one process (this one), the target on two: the report's per-example view reads the target's gathered losses."""
    common = ["data=balanced,noisy,code_heavy", *FAST, "sweep=pe", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    r = run_main(capsys, "-m", "model=debug", *common)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_cli("-m", "model=tiny", *TWO, *common, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = run_main(capsys, "report", str(out_dir / "pe"))
    assert rep.returncode == 0, rep.stderr[-3000:]
    pe = json.loads((out_dir / "pe" / "report.json").read_text())["per_example"]
    assert pe["available"] and pe["target"] == "tiny", pe
    n_win = 2048 // 129
    assert {(e["proxy"], e["n_recipes"], e["n_examples"] + e["n_undefined"]) for e in pe["entries"]} == {("debug", 3, n_win)}
