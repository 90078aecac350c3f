"""`proxyscale submit`: a grid as one job array, non-blocking.

submit
  compose + validate every cell (grid.compose_grid) -> drop final cells (and failed ones unless
  --retry-failed, and cells whose job is still queued/running) -> pack the rest, N cells per array
  task -> ONE submitit job array per resource shape (usually exactly one) with `%max_parallel`
  -> append one manifest line per cell to <sweep>/manifest.jsonl -> print the job id and return.

  Each array task is a `CellTask`: it runs its cells one after another in one process (torch is
  imported once) through job.run_cell with trainer.checkpoint=true. On the time-limit or
  preemption signal submitit calls CellTask.checkpoint, which returns the same task (with the set
  of cells it already finished) for requeueing; on restart final cells are skipped and the
  interrupted cell resumes from <run_dir>/checkpoints/last.ckpt.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from proxyscale import config as C
from proxyscale import grid, record
from proxyscale.data import identity
from proxyscale.launch import BACKENDS, LaunchError
from proxyscale.launch.manifest import (
    MANIFEST,
    append_manifest,
    check_same_grid,
    fingerprint,
    grid_settings,
    latest_entries,
    locked,
    read_manifest,
    save_grid_settings,
)

SUBMITIT_DIR = ".submitit"


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

        from proxyscale.job import Resources, run_cell

        logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
        rank = int(os.environ.get("SLURM_PROCID", "0") or 0)  # a multi-process cell runs one task per rank under srun
        ntasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)  # (its ranks: started by srun, not by the job)
        statuses: dict[str, str] = {}
        for i, cell in enumerate(cells):
            rid = cell["run_id"]
            if rid in self.finished:
                statuses[rid] = "done in an earlier attempt"
                continue
            cfg = OmegaConf.create(cell["config"])
            if identity.run_id(cfg) != rid:
                raise RuntimeError(f"cell config does not give its run id {rid} (got {identity.run_id(cfg)})")
            res = Resources(
                threads=cfg.trainer.threads or cpus, rank=rank, ranks_started=ntasks > 1, scheduler_requeues=True, position=f"[{i + 1}/{len(cells)}] "
            )
            rec = run_cell(cfg, res)
            statuses[rid] = rec.status if rec is not None else "held by another process"
            self.finished.append(rid)
        return statuses

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def submit(argv: list[str], cells_per_task: int = 4, max_parallel: int | None = None, retry_failed: bool = False, out=print) -> dict:
    """Submit a grid as a SLURM job array and return at once. Raises LaunchError on bad input."""
    from omegaconf import OmegaConf

    if cells_per_task < 1:
        raise LaunchError(f"--cells-per-task must be >= 1, got {cells_per_task}")
    if max_parallel is not None and max_parallel < 1:
        raise LaunchError(f"--max-parallel must be >= 1, got {max_parallel}")
    backend = importlib.import_module(BACKENDS["slurm"])
    if shutil.which("sbatch") is None:  # before composing: the cheapest refusal first
        backend.check({}, [])
    args = list(argv)
    if not any(a.startswith(("hydra/launcher=", "override hydra/launcher=")) for a in args):
        args.insert(0, "hydra/launcher=submitit_slurm")
    args = ["-m", *args, "trainer.checkpoint=true"]
    with warnings.catch_warnings():  # Hydra's note on schema matching of the submitit_slurm preset
        warnings.simplefilter("ignore", UserWarning)
        cells, base = grid.compose_grid(args)
    hl = base.hydra.launcher
    launcher = {k: (OmegaConf.to_container(hl[k], resolve=True) if OmegaConf.is_config(hl[k]) else hl[k]) for k in hl if k not in ("submitit_folder", "name")}
    if "partition" not in launcher:
        raise LaunchError("submit needs the submitit_slurm launcher preset (drop the hydra/launcher override)")
    sweeps = {str(grid.sweep_dir(c.cfg)) for c in cells}
    if len(sweeps) != 1:
        raise LaunchError(f"one submit goes to one sweep folder, this grid spans {len(sweeps)} (sweep is swept?)")
    sweep = Path(sweeps.pop())
    backend.check(launcher, cells)
    grid.check_resumable(cells)
    fixed, swept = grid_settings([c.cfg for c in cells])
    check_same_grid(sweep, fixed, swept)

    with locked(sweep):
        latest = latest_entries(read_manifest(sweep))
        live = backend.states([e["job_id"] for e in latest.values()]) or {}
        todo, n_final, n_failed, n_active = [], 0, 0, 0
        for c in cells:
            d = sweep / c.run_id
            if record.is_completed(d):
                n_final += 1
                continue
            e = latest.get(c.run_id)
            if e and live.get(e["job_id"], {}).get("state") in backend.ACTIVE:
                n_active += 1
                continue
            if not retry_failed and _record_status(d) == "failed":
                n_failed += 1
                continue
            todo.append(c)
        grid.write_grid(cells, base)
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
            groups.setdefault(backend.shape(c.cfg), []).append(c)
        parallel = int(max_parallel or launcher.get("array_parallelism") or 256)
        folder = sweep / SUBMITIT_DIR / "%A"
        rows, job_ids, now = [], [], _dt.datetime.now().isoformat(timespec="seconds")
        for shape, members in groups.items():
            tasks = [members[i : i + cells_per_task] for i in range(0, len(members), cells_per_task)]
            specs = [[{"run_id": c.run_id, "overrides": list(c.overrides), "config": C.plain(c.cfg)} for c in t] for t in tasks]
            jobs = backend.submit_array(folder, launcher, shape, parallel, f"ps-{base.sweep}", CellTask(), specs)
            for job, t in zip(jobs, tasks):
                for c in t:
                    rows.append(
                        {
                            "run_id": c.run_id,
                            "job_id": job.job_id,
                            "array_job_id": job.job_id.split("_")[0],
                            "array_index": int(job.job_id.split("_")[1]) if "_" in job.job_id else 0,
                            "submitted": now,
                            "overrides": _user_overrides(c.overrides),
                            "grid": fingerprint(fixed),
                            "stdout": str(job.paths.stdout),
                            "stderr": str(job.paths.stderr),
                        }
                    )
            job_ids.append(jobs[0].job_id.split("_")[0])
        append_manifest(sweep, rows)
    n_tasks = sum(-(-len(m) // cells_per_task) for m in groups.values())
    out(
        f"submitted {len(todo)} of {len(cells)} cells as SLURM array job {', '.join(job_ids)} "
        f"({n_tasks} task{'s' * (n_tasks != 1)}, up to {cells_per_task} cells each, at most {parallel} at once); "
        f"{', '.join(notes)}"
    )
    out(f"manifest: {sweep / MANIFEST}")
    out(f"status:   proxyscale status {sweep}")
    return {"sweep": str(sweep), "job_ids": job_ids, "submitted": len(todo)}


def _user_overrides(overrides) -> list[str]:
    """A cell's overrides without the two that submit adds itself."""
    return [o for o in overrides if not o.startswith(("hydra/launcher=", "trainer.checkpoint="))]


def _record_status(run_dir: Path) -> str | None:
    try:
        return record.read(run_dir).status
    except record.RecordError:
        return None
