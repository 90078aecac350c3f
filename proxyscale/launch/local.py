"""The task function Hydra's launchers call once per cell (in this process, or in a joblib worker):
it turns what Hydra knows about the launch into the job's `Resources` and runs the cell."""
from __future__ import annotations

import os

from omegaconf import DictConfig

GRID_SIZE_ENV = "PROXYSCALE_GRID_SIZE"  # set by the proxyscale sweeper: cells to run, for "[k/N]" labels


def resources() -> "Resources":  # noqa: F821
    from hydra.core.hydra_config import HydraConfig

    from proxyscale.job import Resources

    workers, position = 1, ""
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        workers = int(hc.launcher.get("n_jobs", 1) or 1)
        total, num = os.environ.get(GRID_SIZE_ENV), hc.job.get("num")
        if total and num is not None:
            position = f"[{num + 1}/{total}] "
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0)
    return Resources(workers=workers, rank=rank, scheduler_requeues="SLURM_JOB_ID" in os.environ, position=position)


def task(cfg: DictConfig) -> str:
    from proxyscale.job import run_cell

    rec = run_cell(cfg, resources())
    return rec.status if rec else "busy"
