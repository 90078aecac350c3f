"""Two SLURM nodes on one machine (launchers/slurm: each slurmd in its own network namespace, with
its own hostname and address): a ddp cell across both nodes against the same cell on one process,
an array spread over both nodes, and a node lost mid-cell whose cell is requeued onto the other
node and resumed from its checkpoint.

The 2-node cell and the array are submitted together (module fixture) so that they overlap; the
node is taken away only when they have ended, so that it kills nothing but the cell under test.
Every wait is bounded.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from test_launch import FAST, PROXYSCALE, ROOT, cli, final, states, wait_for

pytestmark = pytest.mark.slurm

NODE_DOWN = ROOT / "launchers" / "slurm" / "node-down.sh"
CELL = ["model=debug", *FAST]  # 12 steps, an eval every 4
# The cell that loses its node: 80 steps, a checkpoint at every eval (10 steps), so that the node goes
# down after the first checkpoint and long before the end.
LOST = ["model=debug", "trainer.max_tokens=327680", "eval.tokens_per_set=2048", "eval.every_n_steps=10", "data.pool_tokens=200000", "trainer.threads=1"]
LOST_STEPS = 327680 // (32 * 128)
TOL = 1e-5  # float reduction order only (nats/token)


def record_of(sweep: Path) -> dict:
    (path,) = sweep.glob("*/result.json")
    return json.loads(path.read_text())


def reference(overrides: list[str], out: Path, cache_dir: Path) -> subprocess.Popen:
    """The same cell on one process, here and now (no SLURM): started in the background."""
    cmd = [PROXYSCALE, *overrides, f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}", "sweep=ref"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(proc: subprocess.Popen, out: Path, timeout: float = 300) -> dict:
    text, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, text[-3000:]
    return record_of(out / "ref")


def hostnames(nodelist: str) -> list[str]:
    """psn[1-2] -> [psn1, psn2]"""
    if not nodelist or nodelist == "None assigned":
        return []
    r = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=20, check=True)
    return r.stdout.split()


def runs(job: str, timeout_s: float = 30) -> list[tuple[str, list[str]]]:
    """Each run of a job or array task, oldest first: (state, its nodes), from `sacct -D`; polled
    until the last run has ended (sacct can lag a job's end)."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-j", job, "-o", "JobID,State,NodeList"], capture_output=True, text=True, timeout=20).stdout
        rows = [line.split("|") for line in out.splitlines() if line.strip() and line.split("|")[0] == job]
        got = [(state.split()[0], hostnames(nodes)) for _, state, nodes in rows]
        if (got and got[-1][0] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED")) or time.monotonic() > deadline:
            return got
        time.sleep(1)


def assert_same_curves(got: dict, want: dict) -> None:
    """The cell's record against the one-process record: steps, tokens, every eval point, every train point."""
    assert (got["steps"], got["tokens"]) == (want["steps"], want["tokens"])
    assert [p["step"] for p in got["eval_curve"]] == [p["step"] for p in want["eval_curve"]]
    for g, w in zip(got["eval_curve"], want["eval_curve"]):
        assert g["loss"].keys() == w["loss"].keys()
        for name in w["loss"]:
            assert g["loss"][name] == pytest.approx(w["loss"][name], abs=TOL), (g["step"], name)
    assert [p["step"] for p in got["train_curve"]] == [p["step"] for p in want["train_curve"]]
    for g, w in zip(got["train_curve"], want["train_curve"]):
        assert g["loss"] == pytest.approx(w["loss"], abs=TOL), g["step"]
    assert got["final_loss"] == pytest.approx(want["final_loss"], abs=TOL)


@pytest.fixture(scope="module")
def submitted(multinode_cluster, cache_dir, tmp_path_factory):
    """The 2-node ddp cell, an array of 2 one-process cells and the 1-process reference, all at once."""
    out = tmp_path_factory.mktemp("multinode")
    common = [f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}", "hydra.launcher.cpus_per_task=1"]
    ddp = cli("submit", *CELL, "trainer.strategy=ddp", "trainer.num_nodes=2", *common, "sweep=nodes")
    assert ddp.returncode == 0, ddp.stderr
    array = cli("submit", "--cells-per-task", "1", "model=debug", "data=balanced,noisy", *FAST, *common, "sweep=spread")
    assert array.returncode == 0, array.stderr
    ref = reference(CELL, out / "one", cache_dir)
    jobs = [r.stdout.split("array job ")[1].split()[0] for r in (ddp, array)]
    yield {"nodes": out / "nodes", "spread": out / "spread", "ref": ref, "ref_out": out / "one"}
    subprocess.run(["scancel", *jobs], timeout=20)
    if ref.poll() is None:
        ref.kill()


def test_two_node_ddp_cell(multinode_cluster, submitted):
    """trainer.num_nodes=2 trainer.strategy=ddp: one task on each node (--nodes=2 --ntasks-per-node=1),
    wired by Lightning's SLURM environment into one gloo process group over the nodes' network; only
    rank 0 writes the record."""
    sweep = submitted["nodes"]
    sub = next(sweep.glob(".submitit/*/*_submission.sh")).read_text()
    assert "--nodes=2" in sub and "--ntasks-per-node=1" in sub, sub
    rows = wait_for(sweep, final, 300, multinode_cluster)
    ((rid, row),) = rows.items()
    rec = record_of(sweep)
    assert row["state"] == "completed", (row, rec.get("error"))
    assert rec["steps"] == 12 and rec["config"]["trainer"]["num_nodes"] == 2
    ((state, nodes),) = runs(row["job"])
    assert state == "COMPLETED" and sorted(nodes) == sorted(multinode_cluster.nodes[:2]), nodes
    # one rank on each node, each on its own host (submitit logs the host each task started on)
    logs = sorted(sweep.glob(".submitit/*/*_log.err"))
    assert len(logs) == 2 and all(f"{rid} start" in p.read_text() for p in logs)
    outs = sorted(sweep.glob(".submitit/*/*_log.out"))
    hosts = {line.split("hostname=")[1].split(",")[0] for p in outs for line in p.read_text().splitlines() if "JobEnvironment(" in line}
    assert hosts == set(nodes), hosts


def test_two_node_ddp_cell_equals_one_process(multinode_cluster, submitted):
    """The 2-node record equals the same cell on one process (same global batch and seed)."""
    wait_for(submitted["nodes"], final, 300, multinode_cluster)
    assert_same_curves(record_of(submitted["nodes"]), finished(submitted["ref"], submitted["ref_out"]))


def test_array_spreads_over_both_nodes(multinode_cluster, submitted):
    """Two one-process cells as two array tasks: the partition places each on the least loaded node
    (LLN), so they run on different nodes, as sacct records."""
    sweep = submitted["spread"]
    rows = wait_for(sweep, final, 300, multinode_cluster)
    assert sorted(r["state"] for r in rows.values()) == ["completed", "completed"], rows
    placed = {job: runs(job) for job in {r["job"] for r in rows.values()}}
    assert len(placed) == 2, placed
    nodes = sorted(n for attempts in placed.values() for _, ns in attempts for n in ns)
    assert nodes == sorted(multinode_cluster.nodes[:2]), placed


def test_node_lost_mid_cell_requeued_and_resumed(multinode_cluster, cache_dir, tmp_path):
    """A node goes away mid-cell (node-down.sh: every process of that node killed at once, as in a power
    failure). slurmctld marks it down, the task is requeued (NODE_FAIL) onto the other node, the cell
    resumes from its last checkpoint and its record equals an uninterrupted run's; status says so."""
    deadline = time.monotonic() + 300  # the cluster is idle (this module's other cells are over): the node kills nothing else
    while subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=20).stdout.strip():
        assert time.monotonic() < deadline, "the cluster did not become idle in 300 s"
        time.sleep(1)
    out = tmp_path / "outputs"
    r = cli("submit", *LOST, f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}", "hydra.launcher.cpus_per_task=1", "sweep=lost")
    assert r.returncode == 0, r.stderr
    sweep = out / "lost"
    (job,) = {json.loads(line)["job_id"] for line in (sweep / "manifest.jsonl").read_text().splitlines()}
    ref = reference(LOST, tmp_path / "ref", cache_dir)
    try:
        deadline = time.monotonic() + 240
        while not list(sweep.glob("*/checkpoints/last.ckpt")):
            assert time.monotonic() < deadline, f"no checkpoint after 240 s: {states(sweep)}\n{multinode_cluster.log_tail()}"
            time.sleep(0.2)
        node = subprocess.run(["squeue", "-h", "-j", job, "-o", "%N"], capture_output=True, text=True, timeout=20).stdout.strip()
        assert node in multinode_cluster.nodes, node
        down = subprocess.run(["bash", str(NODE_DOWN), node], capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not list(sweep.glob("*/result.json")), "the cell ended before its node went down"

        seen = set()
        deadline = time.monotonic() + 300
        while True:
            rows = states(sweep)
            seen |= {v["state"] for v in rows.values()}
            if final(rows) or time.monotonic() > deadline:
                break
            time.sleep(1)
        ((rid, row),) = rows.items()
        rec = record_of(sweep)
        assert row["state"] == "completed", (row, rec.get("error"), multinode_cluster.log_tail())
        assert "requeued" in seen, seen  # status showed the cell requeued while its task waited for a node

        attempts = runs(job)
        assert [a[0] for a in attempts] == ["NODE_FAIL", "COMPLETED"], attempts
        assert attempts[0][1] == [node] and attempts[1][1] and attempts[1][1] != [node], attempts
        assert rec["requeues"] >= 1, rec["requeues"]
        err = next(sweep.glob(".submitit/*/*_log.err")).read_text()
        assert "resuming from step" in err, err[-2000:]
        # nothing lost: every step, token and eval point of an uninterrupted run, with its losses
        assert rec["steps"] == LOST_STEPS
        assert_same_curves(rec, finished(ref, tmp_path / "ref"))
        table = cli("status", str(sweep)).stdout
        assert f"runs: NODE_FAIL on {node} -> COMPLETED on {attempts[1][1][0]}, resumed from its checkpoint" in table, table
        assert table.strip().splitlines()[-1] == "1 cells: 1 completed", table
    finally:
        if ref.poll() is None:
            ref.kill()
        multinode_cluster.up()  # the node comes back (ReturnToService=2) for whatever runs next
