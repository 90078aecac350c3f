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
        from proxyscale.launch.local import GRID_SIZE_ENV

        loader = self.hydra_context.config_loader

        try:
            cells = grid.plan(arguments, self.params, lambda o: loader.load_sweep_config(self.config, list(o)), loader)
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
        if hasattr(self.launcher, "composed"):  # the same load_sweep_config call the launcher would make
            self.launcher.composed = {tuple(c.overrides): c.cfg for c in todo}
        return [self.launcher.launch([c.overrides for c in todo], initial_job_idx=0)]
