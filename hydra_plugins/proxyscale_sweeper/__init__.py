"""Hydra sweeper `proxyscale`: composes and validates every cell of the grid once (bad input: one
line on stderr, exit 2, nothing launched or written), skips cells whose record is final, records
the grid in <sweep>/grid.json, and hands the rest to the launcher, with their configs when the
launcher runs them in this process."""

import logging
import os
import sys
from dataclasses import dataclass
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
        from proxyscale import grid
        from proxyscale import record
        from proxyscale.launch.local import GRID_SIZE_ENV, SWEEP_PID_ENV, Interrupted, summarise

        loader = self.hydra_context.config_loader

        try:
            cells = grid.plan(arguments, self.params, lambda o: loader.load_sweep_config(self.config, list(o)), loader, progress=True)
        except grid.GridError as exc:  # SystemExit passes Hydra's multi-line error report
            print(f"proxyscale: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        todo = grid.pending(cells)
        grid.write_grid(cells, self.config)
        where = grid.sweep_dir(cells[0].cfg)
        log.info(f"sweep {cells[0].cfg.sweep}: {len(cells)} cells, {len(cells) - len(todo)} already final, {len(todo)} to run -> {where}")
        if not todo:
            return []
        os.environ[GRID_SIZE_ENV] = str(len(todo))  # read by launch.local.task, in this process or a joblib worker
        os.environ[SWEEP_PID_ENV] = str(os.getpid())  # a worker elsewhere dies with this process
        if hasattr(self.launcher, "composed"):  # the same load_sweep_config call the launcher would make
            self.launcher.composed = {tuple(c.overrides): c.full_config for c in todo}  # with Hydra's node, made when the cell launches
        try:
            returns = self.launcher.launch([c.overrides for c in todo], initial_job_idx=0)
        except Interrupted as exc:
            left = sum(not record.is_completed(where / c.run_id) for c in todo)
            exc.detail = f"{left} of {len(cells)} cells not finished"
            raise
        problem = summarise([_outcome(r) for r in returns], str(where))
        if problem:  # read every JobReturn: a cell that failed or lost its record is a non-zero exit
            print(f"proxyscale: error: {problem}", file=sys.stderr)
            raise SystemExit(1)
        return [returns]


def _outcome(ret) -> str:
    """A JobReturn as the task's outcome string (an exception Hydra kept is an `error:`)."""
    from hydra.core.utils import JobStatus

    if ret.status == JobStatus.FAILED:
        exc = ret._return_value
        return f"error: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
    value = ret._return_value
    return value if isinstance(value, str) else "completed"
