"""Hydra sweeper `proxyscale`: composes and validates every cell of the grid once (bad input: one
line on stderr, exit 2, nothing launched or written), skips cells whose record is final, records
the grid in <sweep>/grid.json, and hands the rest to the launcher, with their configs when the
launcher runs them in this process. It owns what a sweep says: the plan with its estimated time,
a progress line after every cell (launch.local.Progress: done/total, elapsed, ETA), the summary at
the end with the next command, and what an interrupt kept. Hydra's per-cell job listing is off
unless PROXYSCALE_VERBOSE=1."""

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig

log = logging.getLogger("proxyscale")


@dataclass
class ProxyscaleSweeperConf:
    _target_: str = "hydra_plugins.proxyscale_sweeper.ProxyscaleSweeper"
    params: Optional[Dict[str, str]] = None  # grid axes: key -> "v1,v2,..." (set by conf/grid/*.yaml)


ConfigStore.instance().store(group="hydra/sweeper", name="proxyscale", node=ProxyscaleSweeperConf, provider="proxyscale")


class ProxyscaleSweeper(Sweeper):
    def __init__(self, params: Optional[Dict[str, str]] = None):
        self.params = dict(params or {})
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from proxyscale import budget, grid, record
        from proxyscale.launch.local import GRID_SIZE_ENV, PROGRESS_ENV, SWEEP_PID_ENV, Interrupted, Progress, duration, measured_ratio, summarise

        loader = self.hydra_context.config_loader
        t0 = time.time()
        try:
            cells = grid.plan(arguments, self.params, lambda o: loader.load_sweep_config(self.config, list(o)), loader, progress=True)
            if "Slurm" not in str(self.config.hydra.launcher.get("_target_", "")):  # cells that run on this machine
                grid.check_devices(cells)
            todo = grid.pending(cells)
            grid.check_resumable(todo)
            if self.config.get("dry_run"):  # reached with --config-dir and other Hydra flags the CLI passes through
                grid.check_grid(cells, self.config)
                final = {c.run_id for c in cells} - {c.run_id for c in todo}
                print(grid.cost_table(cells, int(self.config.hydra.launcher.get("n_jobs", 1) or 1), final))
                return []
            grid.write_grid(cells, self.config)  # refuses a command that would change the sweep's stated settings
        except grid.GridError as exc:  # SystemExit passes Hydra's multi-line error report
            print(f"proxyscale: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except OSError as exc:  # grid.json cannot be written: a read-only or full output folder
            where = exc.filename or "the sweep folder"
            print(f"proxyscale: error: cannot write {where}: {exc.strerror} (paths.output_dir must be writable)", file=sys.stderr)
            raise SystemExit(2) from None
        where = grid.sweep_dir(cells[0].cfg)
        name = cells[0].cfg.sweep
        launcher = self.config.hydra.launcher
        workers = int(launcher.get("n_jobs", 1) or 1)  # as launch.local.resources() counts them
        parallel = int(launcher.get("n_jobs") or launcher.get("array_parallelism") or 1)
        est = sum(budget.cost(c.view if c.view is not None else c.cfg, workers)["est_seconds"] for c in todo)
        ratio, measured = measured_ratio(str(cells[0].cfg.paths.cache_dir))
        basis = f"the cost model x {ratio:.2f} measured on {measured} earlier cell(s) here" if measured else "the cost model; not yet measured here"
        skipped = len(cells) - len(todo)
        log.info(
            f"sweep {name}: {len(cells)} cells, {skipped} already final, {len(todo)} to run -> {where}"
            + (f" (estimated {duration(est * ratio / parallel)} with {parallel} worker(s): {basis})" if todo else "")
        )
        if not todo:
            log.info(f"nothing to run: every cell is final; next: proxyscale report {where}")
            return []
        _quiet_launchers()
        os.environ[GRID_SIZE_ENV] = str(len(todo))  # read by launch.local.task, in this process or a joblib worker
        os.environ[SWEEP_PID_ENV] = str(os.getpid())  # a worker elsewhere dies with this process
        progress = where / f".progress-{os.getpid()}.jsonl"
        Progress.start(str(progress), len(todo), est, parallel, ratio)
        os.environ[PROGRESS_ENV] = str(progress)
        if hasattr(self.launcher, "composed"):  # the same load_sweep_config call the launcher would make
            self.launcher.composed = {tuple(c.overrides): c.full_config for c in todo}  # with Hydra's node, made when the cell launches
        try:
            returns = self.launcher.launch([c.overrides for c in todo], initial_job_idx=0)
        except Interrupted as exc:
            left = sum(not record.is_completed(where / c.run_id) for c in todo)
            resume = "; unfinished cells resume from their last checkpoint" if cells[0].view.trainer.checkpoint else ""
            print(f"proxyscale: {len(cells) - left} final record(s) kept in {where}{resume}", file=sys.stderr, flush=True)
            exc.detail = f"{left} of {len(cells)} cells not finished"  # the last line: `interrupted by SIG...: ... (rerun ... to resume)`
            raise
        finally:
            os.environ.pop(PROGRESS_ENV, None)
            progress.unlink(missing_ok=True)
        outcomes = [_outcome(r) for r in returns]
        counts = {k: sum(o.split(":")[0] == k for o in outcomes) for k in ("completed", "diverged", "failed", "busy", "error")}
        extra = "".join(f", {counts[k]} {label}" for k, label in (("busy", "running elsewhere"), ("error", "without a record")) if counts[k])
        log.info(
            f"sweep {name} done in {duration(time.time() - t0)}: {counts['completed']} completed, {counts['diverged']} diverged, "
            f"{counts['failed']} failed{extra} ({skipped} already final); records in {where}"
        )
        if counts["failed"] or counts["error"]:
            log.info(f"failed cells: proxyscale status {where} (a rerun retries them)")
        log.info(f"next: proxyscale report {where}")
        _wandb_lines(cells[0].cfg, where)
        problem = summarise(outcomes, str(where))
        if problem:  # read every JobReturn: a cell that failed or lost its record is a non-zero exit
            print(f"proxyscale: error: {problem}", file=sys.stderr)
            raise SystemExit(1)
        return [returns]


def _wandb_lines(cfg: DictConfig, where) -> None:
    """After a logger=wandb sweep: where its offline runs are and the command that uploads them."""
    if cfg.logger.kind != "wandb":
        return
    from proxyscale.tracking import wandb

    s = wandb.settings(cfg, "x")
    if s["mode"] != "offline":
        return
    runs = wandb.offline_runs(s["dir"])
    log.info(f"W&B: {len(runs)} offline run folder(s) in {Path(s['dir']) / 'wandb'}; upload with: proxyscale wandb-sync {s['dir']} (needs WANDB_API_KEY)")


def _quiet_launchers() -> None:
    """Hydra launchers list every cell ("Launching jobs, sweep output dir ..." and "#i : overrides");
    the sweep's own lines say the same per cell. Back with PROXYSCALE_VERBOSE=1."""
    if os.environ.get("PROXYSCALE_VERBOSE") == "1":
        return
    for name in ("hydra_plugins.hydra_joblib_launcher", "hydra_plugins.hydra_submitit_launcher"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _outcome(ret) -> str:
    """A JobReturn as the task's outcome string (an exception Hydra kept is an `error:`)."""
    from hydra.core.utils import JobStatus

    if ret.status == JobStatus.FAILED:
        exc = ret._return_value
        return f"error: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
    value = ret._return_value
    return value if isinstance(value, str) else "completed"
