"""The task function Hydra's launchers call once per cell (in this process, or in a joblib worker):
it turns what Hydra knows about the launch into the job's `Resources` and runs the cell.

It also owns what makes a sweep's exit status tell the truth: every cell's outcome comes back as a
string (`completed`, `diverged`, `failed`, `busy`, or `error: ...` when its record or config could
not be written), `summarise` turns the outcomes into the one line of a non-zero exit, SIGTERM and
SIGINT become `Interrupted` (exit 128 + signal), and a joblib worker dies with its parent.
"""
from __future__ import annotations

import logging
import os
import signal
import threading

from omegaconf import DictConfig

from proxyscale.data import identity  # noqa: F401  (registers the run-id resolver Hydra names cell folders with, also in workers)

GRID_SIZE_ENV = "PROXYSCALE_GRID_SIZE"  # set by the proxyscale sweeper: cells to run, for "[k/N]" labels
SWEEP_PID_ENV = "PROXYSCALE_SWEEP_PID"  # the sweep's own process: a task elsewhere (a joblib worker) watches it
OK_EXIT_ENV = "PROXYSCALE_OK_EXIT"  # =1: failed cells still exit 0 (the old behaviour); interrupts never do
OUTCOMES: list[str] = []  # outcomes of the cells this process ran (a single run reads them after Hydra returns)

log = logging.getLogger("proxyscale")


class Interrupted(BaseException):
    """SIGTERM or SIGINT in a sweep process. A BaseException, so neither a cell's `except Exception`,
    Hydra's run_job nor Lightning's KeyboardInterrupt branch (which exits 0/1) swallows it."""

    def __init__(self, signum: int, detail: str = ""):
        super().__init__(signum)
        self.signum, self.detail = signum, detail

    @property
    def code(self) -> int:
        return 128 + self.signum

    def line(self) -> str:
        name = signal.Signals(self.signum).name
        return f"interrupted by {name}" + (f": {self.detail}" if self.detail else "") + " (rerun the same command to resume)"


def install_signal_handlers() -> None:
    """SIGTERM and SIGINT raise Interrupted in the main thread (Lightning chains its own SIGTERM
    handler before ours while a cell fits, and restores ours after)."""

    def handler(signum, frame):
        raise Interrupted(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


_watching = False


def die_with_parent(poll_s: float = 0.5) -> None:
    """In a worker process: SIGKILL this process once its parent is gone (the cell's flock is released
    by the OS and its last checkpoint stays, so a rerun resumes it)."""
    global _watching
    if _watching:
        return
    _watching = True
    parent = os.getppid()

    def watch():
        import time

        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="proxyscale-parent-watchdog", daemon=True).start()


def summarise(outcomes: list[str], where: str) -> str | None:
    """The one line a sweep exits 1 with, or None when every cell ended final (or was busy elsewhere)."""
    failed = sum(o == "failed" for o in outcomes)
    errors = [o for o in outcomes if o.startswith("error:")]
    if (not failed and not errors) or os.environ.get(OK_EXIT_ENV) == "1":
        return None
    parts = []
    if failed:
        parts.append(f"{failed} of {len(outcomes)} cells failed")
    if errors:
        parts.append(f"{len(errors)} of {len(outcomes)} cells could not write their record ({errors[0][len('error: '):]})")
    return "; ".join(parts) + f" (see proxyscale status {where})"


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
    """Run one cell; its outcome as a string. A cell whose record or config cannot be written (full
    disk, read-only folder, a directory in the way) is `error: <one line>`, never an exception that
    Hydra would keep in a JobReturn nobody reads."""
    from proxyscale.job import run_cell, run_dir

    sweep_pid = os.environ.get(SWEEP_PID_ENV)
    if sweep_pid and int(sweep_pid) != os.getpid():
        die_with_parent()
    try:
        rec = run_cell(cfg, resources())
        outcome = rec.status if rec else "busy"
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        outcome = f"error: {type(exc).__name__}: {first}"
        log.error(f"{run_dir(cfg)} record not written: {type(exc).__name__}: {first}")
    OUTCOMES.append(outcome)
    return outcome
