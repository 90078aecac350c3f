"""The SLURM array backend: refuse what the cluster cannot run (sinfo), submit one job array through
submitit, read task states (sacct). SLURM settings live in one place, the `submitit_slurm` launcher
preset (conf/hydra/launcher/submitit_slurm.yaml), changed with ordinary overrides on the submit
command line, e.g. `hydra.launcher.partition=gpu hydra.launcher.timeout_min=240
+hydra.launcher.additional_parameters.reservation=r1`. Per cell, trainer.devices/num_nodes/
strategy/accelerator set nodes, tasks_per_node and gpus_per_node (cells of different shapes go to
different arrays).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from proxyscale.launch import LaunchError

ACTIVE = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "RESV_DEL_HOLD",
    "STOPPED",
}


def _run(cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check(launcher: dict, cells) -> None:
    """Refuse, before submitting anything: no sbatch, unknown partition, GPUs on a CPU-only cluster."""
    for tool in ("sbatch", "sinfo", "sacct"):
        if shutil.which(tool) is None:
            raise LaunchError(
                f"'{tool}' not found on PATH: `proxyscale submit` needs a SLURM cluster "
                "(run the grid here with `proxyscale -m ...`, or hydra/launcher=submitit_local)"
            )
    part = launcher.get("partition")
    if part:
        r = _run(["sinfo", "-h", "-p", str(part), "-o", "%P"])
        if r.returncode != 0:
            raise LaunchError(f"sinfo failed: {(r.stderr or r.stdout).strip().splitlines()[:1]}")
        if not r.stdout.strip():
            known = _run(["sinfo", "-h", "-o", "%P"]).stdout.split()
            raise LaunchError(f"unknown SLURM partition {part!r} (available: {', '.join(sorted(set(known))) or 'none'})")
    wants_gpu = any(c.cfg.trainer.accelerator == "gpu" for c in cells) or any(
        launcher.get(k) for k in ("gpus_per_node", "gpus_per_task", "gres", "cpus_per_gpu", "mem_per_gpu")
    )
    if wants_gpu:
        cmd = ["sinfo", "-h", "-o", "%G"] + (["-p", str(part)] if part else [])
        gres = [g for g in _run(cmd).stdout.split() if g and g != "(null)"]
        if not any("gpu" in g for g in gres):
            raise LaunchError(
                f"GPUs requested but the cluster{' partition ' + repr(part) if part else ''} has none "
                f"(sinfo -o %G shows no gpu gres); use trainer=cpu / drop hydra.launcher.gpus_*"
            )


def states(job_ids: list[str]) -> dict[str, dict] | None:
    """job id ("123_4") -> {"state": current state, "requeued": bool, "attempts": [(state, nodes), ...]}
    (attempts: every run of the task so far, oldest first, as `sacct -D` lists them); None when sacct
    is unavailable."""
    if not job_ids:
        return {}
    if shutil.which("sacct") is None:
        return None
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        r = _run(["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(arrays), "-o", "JobID,State,NodeList"], timeout=30)
    except (subprocess.TimeoutExpired, OSError):
        return None
    if r.returncode != 0:
        return None
    out: dict[str, dict] = {}
    ranged: dict[str, dict] = {}  # "123_[2-5%2]": the tasks not started yet; an explicit line wins
    for line in r.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2:
            continue
        jid, state = parts[0], parts[1].split()[0] if parts[1].split() else ""
        nodes = parts[2] if len(parts) > 2 and parts[2] != "None assigned" else ""
        if "[" in jid:  # a pending range "123_[2-5%2]": expand it
            base, rng = jid.split("_[", 1)
            rng = rng.rstrip("]").split("%")[0]
            ids = []
            for piece in rng.split(","):
                a, _, b = piece.partition("-")
                ids += range(int(a), int(b or a) + 1)
            for i in ids:
                ranged[f"{base}_{i}"] = {"state": state, "requeued": False, "attempts": []}
            continue
        prev = out.get(jid)
        out[jid] = {
            "state": state,
            "requeued": bool(prev and (prev["requeued"] or prev["state"] in ("REQUEUED", "PREEMPTED", "TIMEOUT", "NODE_FAIL"))) or state == "REQUEUED",
            "attempts": [*(prev["attempts"] if prev else []), (state, nodes)],
        }
    _requeue_pending(out)
    return {**ranged, **out}


def _requeue_pending(tasks: dict[str, dict]) -> None:
    """A task whose node failed (or that was preempted) is requeued by slurmctld at once, but sacct shows
    its next run only some seconds later: meanwhile the controller (squeue) is asked, so that such a task
    reads requeued, not ended."""
    lost = [j for j, t in tasks.items() if t["state"] in ("NODE_FAIL", "PREEMPTED")]
    if not lost or shutil.which("squeue") is None:
        return
    try:
        r = _run(["squeue", "-h", "-j", ",".join(lost), "-o", "%i|%T"])
    except (subprocess.TimeoutExpired, OSError):
        return
    for line in r.stdout.splitlines() if r.returncode == 0 else []:
        jid, _, state = line.strip().partition("|")
        if jid in tasks and state:
            tasks[jid].update(state=state, requeued=True)


def shape(cfg) -> tuple[int, int, int]:
    """(nodes, tasks_per_node, gpus_per_node) for one cell, from its trainer settings."""
    t = cfg.trainer
    nodes = int(t.num_nodes or 1)
    procs = int(t.devices or 1) if (t.strategy in ("ddp", "fsdp") or int(t.devices or 1) > 1 or nodes > 1) else 1
    gpus = int(t.devices or 1) if t.accelerator == "gpu" else 0
    return nodes, procs, gpus


def _executor_params(launcher: dict, shape: tuple[int, int, int], max_parallel: int, name: str) -> dict:
    nodes, procs, gpus = shape
    generic = {"timeout_min", "cpus_per_task", "mem_gb", "stderr_to_stdout", "gpus_per_node", "tasks_per_node", "nodes", "name"}
    skip = {"_target_", "submitit_folder", "max_num_timeout", "array_parallelism", "signal_delay_s", "additional_parameters", "setup"}
    params: dict[str, Any] = {}
    for k, v in launcher.items():
        if k in skip or v is None:
            continue
        params[k if k in generic else f"slurm_{k}"] = v
    params.update(
        nodes=nodes, tasks_per_node=procs, name=name, slurm_array_parallelism=max_parallel, slurm_signal_delay_s=int(launcher.get("signal_delay_s", 120))
    )
    if gpus:
        params["gpus_per_node"] = gpus
    if launcher.get("additional_parameters"):
        params["slurm_additional_parameters"] = dict(launcher["additional_parameters"])
    if launcher.get("setup"):
        params["slurm_setup"] = list(launcher["setup"])
    return params


def submit_array(folder: Path, launcher: dict, shape: tuple[int, int, int], max_parallel: int, name: str, task, specs: list) -> list:
    """One job array of `task` over `specs` (one element per array task); returns submitit's jobs."""
    import submitit

    ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=int(launcher.get("max_num_timeout") or 0))
    ex.update_parameters(**_executor_params(launcher, shape, max_parallel, name))
    try:
        return ex.map_array(task, specs)
    except Exception as exc:  # sbatch refused it
        raise LaunchError(f"sbatch refused the array: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}") from None
