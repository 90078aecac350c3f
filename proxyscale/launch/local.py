"""The task function Hydra's launchers call once per cell (in this process, or in a joblib worker):
it turns what Hydra knows about the launch into the job's `Resources` and runs the cell.

It also owns what makes a sweep's exit status tell the truth: every cell's outcome comes back as a
string (`completed`, `diverged`, `failed`, `busy`, or `error: ...` when its record or config could
not be written), `summarise` turns the outcomes into the one line of a non-zero exit, SIGTERM and
SIGINT become `Interrupted` (exit 128 + signal), and a joblib worker dies with its parent.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time

from omegaconf import DictConfig

from proxyscale.data import identity  # noqa: F401  (registers the run-id resolver Hydra names cell folders with, also in workers)

GRID_SIZE_ENV = "PROXYSCALE_GRID_SIZE"  # set by the proxyscale sweeper: cells to run, for "[k/N]" labels
SWEEP_PID_ENV = "PROXYSCALE_SWEEP_PID"  # the sweep's own process: a task elsewhere (a joblib worker) watches it
OK_EXIT_ENV = "PROXYSCALE_OK_EXIT"  # =1: failed cells still exit 0 (the old behaviour); interrupts never do
PROGRESS_ENV = "PROXYSCALE_PROGRESS"  # set by the proxyscale sweeper: the sweep's progress file (see Progress)
OUTCOMES: list[str] = []  # outcomes of the cells this command ran (a single run reads them after Hydra returns)

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


PENDING_SIGNAL = 0  # a signal whose Interrupted was swallowed (raised inside a __del__): honoured after the cell


def begin_command() -> None:
    """A command starts in this process: no outcome or pending signal of an earlier one counts (main() may run again
    in one process: a notebook, the tests), and SIGTERM/SIGINT raise Interrupted."""
    global PENDING_SIGNAL
    OUTCOMES.clear()
    PENDING_SIGNAL = 0
    install_signal_handlers()


def install_signal_handlers() -> None:
    """SIGTERM and SIGINT raise Interrupted in the main thread (Lightning chains its own SIGTERM
    handler before ours while a cell fits, and restores ours after)."""

    def handler(signum, frame):
        global PENDING_SIGNAL
        PENDING_SIGNAL = signum
        raise Interrupted(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


_watching = False


def die_with_parent() -> None:
    """In a worker process: SIGKILL this process once its parent is gone (the cell's flock is released
    by the OS and its last checkpoint stays, so a rerun resumes it)."""
    global _watching
    if not _watching:
        from proxyscale.job.ranks import die_with_parent as watch

        _watching = True
        watch()


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
        parts.append(f"{len(errors)} of {len(outcomes)} cells could not write their record ({errors[0][len('error: ') :]})")
    return "; ".join(parts) + f" (see proxyscale status {where})"


def duration(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min" if s < 3600 else f"{s / 3600:.1f} h"


class Progress:
    """A sweep's progress, shared by every process that runs its cells (this one, joblib workers,
    submitit processes) through one append-only file: a header line the sweeper writes (start time,
    cells to run, their estimated seconds from budget.cost, workers), then one line per ended cell
    (outcome, measured and estimated seconds), each a single O_APPEND write. A process reads the
    lines added since it last looked, so the count is right whichever worker ends a cell.

    ETA = estimated seconds of the cells not yet ended x (measured / estimated so far, over the cells
    that completed; before the first, the ratio measured on this machine by earlier sweeps, see
    `measured_ratio`) / workers."""

    def __init__(self, path: str):
        self.path, self.offset = path, 0
        self.head: dict = {}
        self.ended: list[dict] = []

    @staticmethod
    def start(path: str, total: int, est_seconds: float, workers: int, ratio: float = 1.0) -> "Progress":
        head = {"t0": time.time(), "total": total, "est": est_seconds, "workers": max(1, workers), "ratio": ratio}
        with open(path, "w") as f:
            f.write(json.dumps(head) + "\n")
        return Progress(path)

    def add(self, run_id: str, outcome: str, seconds: float, est: float) -> None:
        line = json.dumps({"run_id": run_id, "outcome": outcome.split(":")[0], "s": round(seconds, 3), "est": est}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def read(self) -> "Progress":
        with open(self.path) as f:
            f.seek(self.offset)
            chunk = f.read()
        whole = chunk[: chunk.rfind("\n") + 1]  # a line being written by another process waits for the next read
        self.offset += len(whole.encode())
        for line in whole.splitlines():
            row = json.loads(line)
            if "t0" in row:
                self.head = row
            else:
                self.ended.append(row)
        return self

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.ended:
            out[r["outcome"]] = out.get(r["outcome"], 0) + 1
        return out

    def eta(self) -> float:
        done = [r for r in self.ended if r["outcome"] == "completed" and r["est"] > 0]
        ratio = sum(r["s"] for r in done) / sum(r["est"] for r in done) if done else self.head.get("ratio", 1.0)
        left = max(0.0, self.head.get("est", 0.0) - sum(r["est"] for r in self.ended))
        return left * ratio / self.head.get("workers", 1)

    def line(self) -> str:
        c = self.counts()
        parts = [f"{c.get(k, 0)} {k}" for k in ("completed", "diverged", "failed")]
        parts += [f"{c[k]} {k}" for k in sorted(c) if k not in ("completed", "diverged", "failed")]
        elapsed = time.time() - self.head.get("t0", time.time())
        return f"progress {len(self.ended)}/{self.head.get('total', '?')} cells ({', '.join(parts)}), elapsed {duration(elapsed)}, ETA {duration(self.eta())}"


_progress: dict[str, Progress] = {}
TIMINGS = "cell_timings.jsonl"  # in paths.cache_dir: measured vs estimated seconds of completed cells on this machine
TIMINGS_KEPT = 50  # the most recent cells the ratio is taken over


def measured_ratio(cache_dir: str) -> tuple[float, int]:
    """(measured / estimated seconds, cells) over the last completed cells that sweeps on this machine
    recorded in <cache_dir>/cell_timings.jsonl; (1.0, 0) when none has yet. The cost model (budget.cost)
    counts training and eval FLOPs; the ratio adds what it leaves out here: per-cell set-up, token
    caches, checkpoints, and the machine's own speed and load."""
    try:
        with open(os.path.join(cache_dir, TIMINGS)) as f:
            rows = [json.loads(line) for line in f.readlines()[-TIMINGS_KEPT:] if line.strip()]
        rows = [r for r in rows if r.get("est", 0) > 0 and r.get("s", 0) > 0]
    except (OSError, ValueError):
        return 1.0, 0
    return (sum(r["s"] for r in rows) / sum(r["est"] for r in rows), len(rows)) if rows else (1.0, 0)


def _add_timing(cache_dir: str, seconds: float, est: float) -> None:
    os.makedirs(cache_dir, exist_ok=True)
    fd = os.open(os.path.join(cache_dir, TIMINGS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps({"s": round(seconds, 3), "est": est, "t": int(time.time())}) + "\n").encode())
    finally:
        os.close(fd)


def report_progress(cfg: DictConfig, run_id: str, outcome: str, seconds: float, workers: int) -> None:
    """After a cell ends: add it to the sweep's progress file and log the progress line."""
    path = os.environ.get(PROGRESS_ENV)
    if not path or not os.path.exists(path):
        return
    try:
        from proxyscale import budget

        p = _progress.setdefault(path, Progress(path))
        est = float(budget.cost(cfg, workers)["est_seconds"])
        p.add(run_id, outcome, seconds, est)
        if outcome == "completed":
            _add_timing(str(cfg.paths.cache_dir), seconds, est)
        log.info(p.read().line())
    except (OSError, ValueError, KeyError) as exc:  # progress is a courtesy: never fail a cell over it
        log.warning(f"progress file {path}: {type(exc).__name__}: {exc}")


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
    # A multi-process cell's ranks > 0 never come through here when this machine runs them all (job.ranks starts
    # them); under srun (Hydra's submitit_slurm launcher with several tasks) each task is a rank.
    rank = int(os.environ.get("SLURM_PROCID", "0") or 0)
    ntasks = int(os.environ.get("SLURM_NTASKS", "1") or 1)
    return Resources(workers=workers, rank=rank, ranks_started=ntasks > 1, scheduler_requeues="SLURM_JOB_ID" in os.environ, position=position)


def task(cfg: DictConfig) -> str:
    """Run one cell; its outcome as a string. A cell whose record or config cannot be written (full
    disk, read-only folder, a directory in the way) is `error: <one line>`, never an exception that
    Hydra would keep in a JobReturn nobody reads."""
    from proxyscale.job import run_cell, run_dir

    if cfg.get("dry_run"):  # one cell reached here past the CLI's own dry run (--config-dir and other Hydra flags)
        from proxyscale import grid, record

        cell = grid.Cell([], cfg, identity.run_id(cfg))
        print(grid.cost_table([cell], 1, {cell.run_id} if record.is_completed(run_dir(cfg)) else set()))
        return "dry run"
    sweep_pid = os.environ.get(SWEEP_PID_ENV)
    if sweep_pid and int(sweep_pid) != os.getpid():
        die_with_parent()
    res = resources()
    t0 = time.perf_counter()
    try:
        rec = run_cell(cfg, res)
        outcome = rec.status if rec else "busy"
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        outcome = f"error: {type(exc).__name__}: {first}"
        log.error(f"{run_dir(cfg)} record not written: {type(exc).__name__}: {first}")
    OUTCOMES.append(outcome)
    report_progress(cfg, run_dir(cfg).name, outcome, time.perf_counter() - t0, res.workers)
    if PENDING_SIGNAL:  # the handler's exception landed where Python ignores it (a finalizer): stop now
        raise Interrupted(PENDING_SIGNAL)
    return outcome
