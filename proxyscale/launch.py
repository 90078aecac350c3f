"""Launching grids beyond this process: `proxyscale submit` (one SLURM job array, non-blocking) and
`proxyscale status` (records merged with the scheduler). Hydra's submitit_local launcher with a
parallelism limit is hydra_plugins/proxyscale_launcher (Hydra loads plugin classes only from there).

submit
  compose + validate every cell (cli.compose_grid) -> drop final cells (and failed ones unless
  --retry-failed, and cells whose job is still queued/running) -> pack the rest, N cells per array
  task -> ONE submitit job array per resource shape (usually exactly one) with `%max_parallel`
  -> append one manifest line per cell to <sweep>/manifest.jsonl -> print the job id and return.

  Each array task is a `CellTask`: it runs its cells one after another in one process (torch is
  imported once) through job.run_cell with trainer.checkpoint=true. On the time-limit or
  preemption signal submitit calls CellTask.checkpoint, which returns the same task (with the set
  of cells it already finished) for requeueing; on restart final cells are skipped and the
  interrupted cell resumes from <run_dir>/checkpoints/last.ckpt.

SLURM settings
  One place: the `submitit_slurm` launcher preset (conf/hydra/launcher/submitit_slurm.yaml), changed
  with ordinary overrides on the submit command line, e.g. `hydra.launcher.partition=gpu
  hydra.launcher.timeout_min=240 +hydra.launcher.additional_parameters.reservation=r1`. The same
  preset serves Hydra's own (blocking) `-m hydra/launcher=submitit_slurm` path. submit's own flags
  only shape the array: --cells-per-task, --max-parallel (overrides hydra.launcher.array_parallelism),
  --retry-failed. Per cell, trainer.devices/num_nodes/strategy/accelerator set nodes,
  tasks_per_node and gpus_per_node (cells of different shapes go to different arrays).

Same grid?
  <sweep>/submit.json keeps the grid's fixed settings: every identity key (what determines a
  cell's result, see config.identity) whose value is the same for every cell of the submission,
  and the keys that varied (swept). A later submit to the same sweep folder is refused when a key
  fixed in both submissions has a different value (e.g. trainer.max_tokens): that is a different
  experiment and belongs in another `sweep=NAME`. Adding values to a swept axis, or sweeping a key
  that used to be fixed, is allowed.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

MANIFEST = "manifest.jsonl"
SUBMIT_INFO = "submit.json"
SUBMITIT_DIR = ".submitit"
STATES = ("pending", "running", "requeued", "completed", "diverged", "failed", "cancelled")
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
          "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "STOPPED"}



class LaunchError(ValueError):
    """Bad input for submit/status: the one line the CLI prints (exit 2)."""


# --------------------------------------------------------------------------------------------------
# the array task
# --------------------------------------------------------------------------------------------------
class CellTask:
    """One SLURM array task: several cells, run one after another in this process.

    Called with `cells`, a list of {"run_id", "overrides", "config"} (config = the resolved cell
    config, so exactly what submit validated is what trains). Checkpointable the submitit way:
    `checkpoint` returns a DelayedSubmission of this task, carrying the run ids already finished
    here, so a requeued task does not redo a cell that failed in an earlier attempt."""

    def __init__(self) -> None:
        self.finished: list[str] = []

    def __call__(self, cells: list[dict]) -> dict[str, str]:
        import logging

        from omegaconf import OmegaConf

        from proxyscale import config as C
        from proxyscale.job import run_cell

        logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
        statuses: dict[str, str] = {}
        for i, cell in enumerate(cells):
            rid = cell["run_id"]
            if rid in self.finished:
                statuses[rid] = "done in an earlier attempt"
                continue
            cfg = OmegaConf.create(cell["config"])
            if cpus and not cfg.trainer.threads:
                cfg.trainer.threads = cpus
            if C.run_id(cfg) != rid:
                raise RuntimeError(f"cell config does not give its run id {rid} (got {C.run_id(cfg)})")
            rec = run_cell(cfg, f"[{i + 1}/{len(cells)}] ")
            statuses[rid] = rec.status if rec is not None else "held by another process"
            self.finished.append(rid)
        return statuses

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


# --------------------------------------------------------------------------------------------------
# manifest, grid fingerprint
# --------------------------------------------------------------------------------------------------
def read_manifest(sweep: Path) -> list[dict]:
    path = Path(sweep) / MANIFEST
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            if line.strip():
                rows.append(json.loads(line))
    return rows


def latest_entries(rows: list[dict]) -> dict[str, dict]:
    """run_id -> its most recent manifest line."""
    out: dict[str, dict] = {}
    for r in rows:
        out[r["run_id"]] = r
    return out


@contextlib.contextmanager
def _locked(sweep: Path):
    import fcntl

    sweep.mkdir(parents=True, exist_ok=True)
    with open(sweep / ".manifest.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def append_manifest(sweep: Path, rows: list[dict]) -> None:
    """Add one submission's lines: the whole file is rewritten through a rename (atomic)."""
    from proxyscale import record

    path = Path(sweep) / MANIFEST
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    record.atomic_write_text(path, old + "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def grid_settings(cfgs) -> tuple[dict[str, Any], list[str]]:
    """(fixed, swept): identity keys with one value across the cells, and the keys that vary."""
    from proxyscale import config as C

    flat = [_flatten(C.identity(c)) for c in cfgs]
    keys = sorted(set().union(*flat))
    fixed, swept = {}, []
    for k in keys:
        vals = {json.dumps(f.get(k), sort_keys=True) for f in flat}
        if len(vals) == 1:
            fixed[k] = flat[0].get(k)
        else:
            swept.append(k)
    return fixed, swept


def fingerprint(fixed: dict) -> str:
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:12]


def check_same_grid(sweep: Path, fixed: dict, swept: list[str]) -> None:
    """Raise LaunchError when the sweep folder holds a grid with other fixed settings."""
    path = Path(sweep) / SUBMIT_INFO
    if not path.exists():
        return
    old = json.loads(path.read_text())
    for k in sorted(set(old["fixed"]) & set(fixed)):
        if k in swept or k in old.get("swept", []):
            continue
        if json.dumps(old["fixed"][k], sort_keys=True) != json.dumps(fixed[k], sort_keys=True):
            raise LaunchError(f"{sweep} holds a different grid: {k} was {old['fixed'][k]!r} there, now {fixed[k]!r} "
                              f"(submit it as another sweep=NAME)")


def save_grid_settings(sweep: Path, fixed: dict, swept: list[str]) -> None:
    from proxyscale import record

    path = Path(sweep) / SUBMIT_INFO
    if path.exists():
        old = json.loads(path.read_text())
        fixed = {k: v for k, v in old["fixed"].items() if k not in swept} | {k: v for k, v in fixed.items() if k not in old.get("swept", [])}
        swept = sorted(set(swept) | set(old.get("swept", [])))
    record.atomic_write_text(path, json.dumps({"fixed": fixed, "swept": swept, "fingerprint": fingerprint(fixed)}, indent=1, sort_keys=True))


# --------------------------------------------------------------------------------------------------
# scheduler
# --------------------------------------------------------------------------------------------------
def _run(cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_slurm(launcher: dict, cells) -> None:
    """Refuse, before submitting anything: no sbatch, unknown partition, GPUs on a CPU-only cluster."""
    for tool in ("sbatch", "sinfo", "sacct"):
        if shutil.which(tool) is None:
            raise LaunchError(f"'{tool}' not found on PATH: `proxyscale submit` needs a SLURM cluster "
                              "(run the grid here with `proxyscale -m ...`, or hydra/launcher=submitit_local)")
    part = launcher.get("partition")
    if part:
        r = _run(["sinfo", "-h", "-p", str(part), "-o", "%P"])
        if r.returncode != 0:
            raise LaunchError(f"sinfo failed: {(r.stderr or r.stdout).strip().splitlines()[:1]}")
        if not r.stdout.strip():
            known = _run(["sinfo", "-h", "-o", "%P"]).stdout.split()
            raise LaunchError(f"unknown SLURM partition {part!r} (available: {', '.join(sorted(set(known))) or 'none'})")
    wants_gpu = any(c.cfg.trainer.accelerator == "gpu" for c in cells) or any(
        launcher.get(k) for k in ("gpus_per_node", "gpus_per_task", "gres", "cpus_per_gpu", "mem_per_gpu"))
    if wants_gpu:
        cmd = ["sinfo", "-h", "-o", "%G"] + (["-p", str(part)] if part else [])
        gres = [g for g in _run(cmd).stdout.split() if g and g != "(null)"]
        if not any("gpu" in g for g in gres):
            raise LaunchError(f"GPUs requested but the cluster{' partition ' + repr(part) if part else ''} has none "
                              f"(sinfo -o %G shows no gpu gres); use trainer=cpu / drop hydra.launcher.gpus_*")


def sacct_states(job_ids: list[str]) -> dict[str, dict] | None:
    """job id ("123_4") -> {"state": current state, "requeued": bool}; None when sacct is unavailable."""
    if not job_ids:
        return {}
    if shutil.which("sacct") is None:
        return None
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        r = _run(["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(arrays), "-o", "JobID,State"], timeout=30)
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
        if "[" in jid:  # a pending range "123_[2-5%2]": expand it
            base, rng = jid.split("_[", 1)
            rng = rng.rstrip("]").split("%")[0]
            ids = []
            for piece in rng.split(","):
                a, _, b = piece.partition("-")
                ids += range(int(a), int(b or a) + 1)
            for i in ids:
                ranged[f"{base}_{i}"] = {"state": state, "requeued": False}
            continue
        prev = out.get(jid)
        out[jid] = {"state": state, "requeued": bool(prev and (prev["requeued"] or prev["state"] in ("REQUEUED", "PREEMPTED", "TIMEOUT", "NODE_FAIL")))
                    or state == "REQUEUED"}
    return {**ranged, **out}


# --------------------------------------------------------------------------------------------------
# submit
# --------------------------------------------------------------------------------------------------
def _resources(cfg) -> tuple[int, int, int]:
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
    params.update(nodes=nodes, tasks_per_node=procs, name=name, slurm_array_parallelism=max_parallel,
                  slurm_signal_delay_s=int(launcher.get("signal_delay_s", 120)))
    if gpus:
        params["gpus_per_node"] = gpus
    if launcher.get("additional_parameters"):
        params["slurm_additional_parameters"] = dict(launcher["additional_parameters"])
    if launcher.get("setup"):
        params["slurm_setup"] = list(launcher["setup"])
    return params


def submit(argv: list[str], cells_per_task: int = 4, max_parallel: int | None = None, retry_failed: bool = False,
           out=print) -> dict:
    """Submit a grid as a SLURM job array and return at once. Raises LaunchError on bad input."""
    import submitit
    from omegaconf import OmegaConf

    from proxyscale import cli, grid, record
    from proxyscale import config as C

    if cells_per_task < 1:
        raise LaunchError(f"--cells-per-task must be >= 1, got {cells_per_task}")
    if max_parallel is not None and max_parallel < 1:
        raise LaunchError(f"--max-parallel must be >= 1, got {max_parallel}")
    if shutil.which("sbatch") is None:  # before composing: the cheapest refusal first
        check_slurm({}, [])
    args = list(argv)
    if not any(a.startswith(("hydra/launcher=", "override hydra/launcher=")) for a in args):
        args.insert(0, "hydra/launcher=submitit_slurm")
    args = ["-m", *args, "trainer.checkpoint=true"]
    with warnings.catch_warnings():  # Hydra's note on schema matching of the submitit_slurm preset
        warnings.simplefilter("ignore", UserWarning)
        cells, base = cli.compose_grid(args)
    hl = base.hydra.launcher
    launcher = {k: (OmegaConf.to_container(hl[k], resolve=True) if OmegaConf.is_config(hl[k]) else hl[k])
                for k in hl if k not in ("submitit_folder", "name")}
    if "partition" not in launcher:
        raise LaunchError("submit needs the submitit_slurm launcher preset (drop the hydra/launcher override)")
    sweeps = {str(grid.sweep_dir(c.cfg)) for c in cells}
    if len(sweeps) != 1:
        raise LaunchError(f"one submit goes to one sweep folder, this grid spans {len(sweeps)} (sweep is swept?)")
    sweep = Path(sweeps.pop())
    check_slurm(launcher, cells)
    fixed, swept = grid_settings([c.cfg for c in cells])
    check_same_grid(sweep, fixed, swept)

    with _locked(sweep):
        latest = latest_entries(read_manifest(sweep))
        live = sacct_states([e["job_id"] for e in latest.values()]) or {}
        todo, n_final, n_failed, n_active = [], 0, 0, 0
        for c in cells:
            d = sweep / c.run_id
            if record.is_completed(d):
                n_final += 1
                continue
            e = latest.get(c.run_id)
            if e and live.get(e["job_id"], {}).get("state") in ACTIVE:
                n_active += 1
                continue
            if not retry_failed and _record_status(d) == "failed":
                n_failed += 1
                continue
            todo.append(c)
        grid.write_grid(cells)
        save_grid_settings(sweep, fixed, swept)
        notes = [f"{n_final} final (skipped)"]
        if n_failed:
            notes.append(f"{n_failed} failed (skipped; rerun them with --retry-failed)")
        if n_active:
            notes.append(f"{n_active} still queued/running (skipped)")
        if not todo:
            out(f"sweep {sweep}: {len(cells)} cells, nothing to submit: {', '.join(notes)}")
            return {"sweep": str(sweep), "job_ids": [], "submitted": 0}

        groups: dict[tuple, list] = {}
        for c in todo:
            groups.setdefault(_resources(c.cfg), []).append(c)
        parallel = int(max_parallel or launcher.get("array_parallelism") or 256)
        folder = sweep / SUBMITIT_DIR / "%A"
        rows, job_ids, now = [], [], _dt.datetime.now().isoformat(timespec="seconds")
        for shape, members in groups.items():
            tasks = [members[i:i + cells_per_task] for i in range(0, len(members), cells_per_task)]
            ex = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=int(launcher.get("max_num_timeout") or 0))
            ex.update_parameters(**_executor_params(launcher, shape, parallel, f"ps-{base.sweep}"))
            specs = [[{"run_id": c.run_id, "overrides": list(c.overrides), "config": C.plain(c.cfg)} for c in t] for t in tasks]
            try:
                jobs = ex.map_array(CellTask(), specs)
            except Exception as exc:  # sbatch refused it
                raise LaunchError(f"sbatch refused the array: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}") from None
            for idx, (job, t) in enumerate(zip(jobs, tasks)):
                for c in t:
                    rows.append({"run_id": c.run_id, "job_id": job.job_id, "array_job_id": job.job_id.split("_")[0],
                                 "array_index": int(job.job_id.split("_")[1]) if "_" in job.job_id else 0,
                                 "submitted": now, "overrides": _user_overrides(c.overrides), "grid": fingerprint(fixed),
                                 "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)})
            job_ids.append(jobs[0].job_id.split("_")[0])
        append_manifest(sweep, rows)
    n_tasks = sum(-(-len(m) // cells_per_task) for m in groups.values())
    out(f"submitted {len(todo)} of {len(cells)} cells as SLURM array job {', '.join(job_ids)} "
        f"({n_tasks} task{'s' * (n_tasks != 1)}, up to {cells_per_task} cells each, at most {parallel} at once); "
        f"{', '.join(notes)}")
    out(f"manifest: {sweep / MANIFEST}")
    out(f"status:   proxyscale status {sweep}")
    return {"sweep": str(sweep), "job_ids": job_ids, "submitted": len(todo)}


def _user_overrides(overrides) -> list[str]:
    """A cell's overrides without the two that submit adds itself."""
    return [o for o in overrides if not o.startswith(("hydra/launcher=", "trainer.checkpoint="))]


def _record_status(run_dir: Path) -> str | None:
    from proxyscale import record

    try:
        return record.read(run_dir).status
    except record.RecordError:
        return None


# --------------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------------
def cell_states(sweep: Path, scheduler: bool = True) -> tuple[list[dict], str | None]:
    """One row per cell of the sweep: run_id, state, job, error (path), log. Plus a note."""
    from proxyscale import grid, record

    sweep = Path(sweep)
    known: dict[str, Any] = {}
    gpath = sweep / grid.GRID_FILE
    if gpath.exists():
        known.update(json.loads(gpath.read_text()).get("cells", {}))
    entries = latest_entries(read_manifest(sweep))
    for rid, e in entries.items():
        known.setdefault(rid, e.get("overrides", []))
    for d in sweep.iterdir() if sweep.exists() else []:
        if (d / record.RESULT).exists():
            known.setdefault(d.name, [])
    live, note = None, None
    if scheduler and entries:
        live = sacct_states([e["job_id"] for e in entries.values()])
        if live is None:
            note = "scheduler not reachable (no sacct): states of unfinished cells come from records only"
    rows = []
    for rid in sorted(known):
        d = sweep / rid
        e = entries.get(rid)
        row = {"run_id": rid, "job": e["job_id"] if e else "", "error": "", "log": ""}
        try:
            rec = record.read(d)
        except record.RecordError:
            rec = None
        sub_t = _parse_time(e["submitted"]) if e else None
        rec_t = (d / record.RESULT).stat().st_mtime if rec else None
        sched = live.get(e["job_id"]) if (live is not None and e) else None
        state_s = sched["state"] if sched else ""
        resubmitted_after_fail = rec is not None and rec.status == "failed" and sub_t is not None and rec_t is not None and sub_t > rec_t - 1
        if rec is not None and rec.status in ("completed", "diverged"):
            state = rec.status
        elif rec is not None and rec.status == "failed" and not (resubmitted_after_fail and ((live is not None and sched is None) or state_s in ACTIVE)):
            state = "failed"
            row["error"] = f"{d / record.RESULT} (error: {_last_line(rec.error)})"
        elif sched is None:  # not submitted, sacct lagging a fresh submission, or no sacct here
            started = (d / "config.yaml").exists()
            state = "pending" if not (e and live is None and started) else "running"
        elif state_s.startswith("CANCELLED"):
            state = "cancelled"
        elif state_s in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"):
            state = "requeued" if sched["requeued"] or state_s.startswith("REQUEUE") else "pending"
        elif state_s in ACTIVE:
            cfg_path = d / "config.yaml"
            started = cfg_path.exists() and (sub_t is None or cfg_path.stat().st_mtime >= sub_t - 1)
            state = ("requeued" if sched["requeued"] else "running") if started else "pending"
        else:  # the task ended (COMPLETED/FAILED/TIMEOUT/OUT_OF_MEMORY/NODE_FAIL) without a final record
            state = "failed"
            row["error"] = f"job {e['job_id']} ended {state_s} without a record for this cell"
        if e and state in ("failed", "cancelled", "requeued", "running"):
            row["log"] = f"{e.get('stdout', '')} {e.get('stderr', '')}".strip()
        row["state"] = state
        row["scheduler"] = state_s
        rows.append(row)
    return rows, note


def _parse_time(s: str) -> float | None:
    try:
        return _dt.datetime.fromisoformat(s).timestamp()
    except (TypeError, ValueError):
        return None


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:120] if lines else "?"


def status_table(rows: list[dict], note: str | None = None) -> str:
    order = {s: i for i, s in enumerate(("failed", "cancelled", "running", "requeued", "pending", "diverged", "completed"))}
    rows = sorted(rows, key=lambda r: (order.get(r["state"], 99), r["run_id"]))
    head = ("cell", "state", "job")
    w = [max([len(head[0])] + [len(r["run_id"]) for r in rows]), max(len(s) for s in STATES), max([3] + [len(r["job"]) for r in rows])]
    lines = [f"{head[0]:<{w[0]}}  {head[1]:<{w[1]}}  {head[2]:<{w[2]}}  details"]
    for r in rows:
        detail = "  ".join(x for x in (r["error"] and f"error: {r['error']}", r["log"] and f"log: {r['log']}") if x)
        lines.append(f"{r['run_id']:<{w[0]}}  {r['state']:<{w[1]}}  {r['job'] or '-':<{w[2]}}  {detail}".rstrip())
    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    if note:
        lines.append(f"note: {note}")
    lines.append(f"{len(rows)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


def counts(rows: list[dict]) -> dict[str, int]:
    return {s: sum(r["state"] == s for r in rows) for s in STATES}


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def submit_cli(argv: list[str]) -> None:
    from proxyscale.cli import fail

    p = argparse.ArgumentParser(
        prog="proxyscale submit",
        description="Submit a grid to SLURM as one job array and return at once. SLURM settings are "
                    "hydra.launcher.* overrides of conf/hydra/launcher/submitit_slurm.yaml. Final cells are "
                    "skipped; failed cells too unless --retry-failed.")
    p.add_argument("--cells-per-task", type=int, default=4, help="cells run one after another in each array task (default 4)")
    p.add_argument("--max-parallel", type=int, default=None, help="array tasks running at once (%%N; default hydra.launcher.array_parallelism)")
    p.add_argument("--retry-failed", action="store_true", help="also rerun cells whose record is failed")
    p.add_argument("overrides", nargs="*", help="grid overrides, as for proxyscale -m (e.g. model=debug,tiny data=balanced,noisy)")
    a, rest = p.parse_known_args(argv)
    overrides = [x for x in list(a.overrides) + rest if x not in ("-m", "--multirun")]
    try:
        submit(overrides, a.cells_per_task, a.max_parallel, a.retry_failed)
    except LaunchError as exc:
        fail(str(exc))


def status_cli(argv: list[str]) -> None:
    from proxyscale.cli import fail

    p = argparse.ArgumentParser(prog="proxyscale status", description="Cells of a sweep by state: records merged with the SLURM scheduler (sacct).")
    p.add_argument("sweep_dir")
    p.add_argument("--json", action="store_true", help="one JSON object per cell instead of the table")
    p.add_argument("--no-scheduler", action="store_true", help="records only, do not ask sacct")
    a = p.parse_args(argv)
    sweep = Path(a.sweep_dir)
    if not sweep.is_dir():
        fail(f"no sweep folder {sweep}")
    rows, note = cell_states(sweep, scheduler=not a.no_scheduler)
    if not rows:
        fail(f"{sweep} has no cells (no grid.json, manifest.jsonl or records)")
    if a.json:
        for r in rows:
            print(json.dumps(r, sort_keys=True))
    else:
        print(status_table(rows, note))
