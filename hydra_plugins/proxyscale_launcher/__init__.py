"""proxyscale's Hydra launchers (Hydra instantiates plugin classes only from the hydra_plugins package):

- `hydra/launcher=local` (conf/hydra/launcher/local.yaml): hydra-joblib-launcher, except that with
  n_jobs: 1 it runs the cells in this process with the configs the proxyscale sweeper already
  composed, instead of composing each one again (~0.2 s a cell).
- `hydra/launcher=submitit_local`: hydra-submitit-launcher's local launcher with a parallelism
  limit. Its schema replaces the stock `submitit_local` entry in the ConfigStore (same group and
  name), because Hydra validates conf/hydra/launcher/submitit_local.yaml against the ConfigStore
  entry of that name and the stock one has no `array_parallelism`. Hydra's plugin scan executes
  every plugin module again, in sys.path order, so the stock entry can come back after ours (the
  repo root first on sys.path, as with `python -m` from it): `LauncherSchemas`, which Hydra runs
  after the scan and before composing, stores ours again."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import configure_log, run_job, setup_globals
from hydra.plugins.search_path_plugin import SearchPathPlugin

from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf  # registers the stock entries first
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher


@dataclass
class SubmititLocalConf(LocalQueueConf):
    _target_: str = "hydra_plugins.proxyscale_launcher.SubmititLocalLauncher"
    array_parallelism: int = 2  # cells running at once


def _store_schema() -> None:
    ConfigStore.instance().store(group="hydra/launcher", name="submitit_local", node=SubmititLocalConf, provider="proxyscale")


_store_schema()


class LauncherSchemas(SearchPathPlugin):
    """Not a search path: the hook Hydra calls after its plugin scan, before every composition."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        _store_schema()


class SubmititLocalLauncher(LocalLauncher):
    """submitit's LocalExecutor starts every job of an array at once, which oversubscribes a small
    machine; this launches the cells in waves of `array_parallelism` and, like the stock launcher,
    blocks until every cell has ended."""

    def __init__(self, array_parallelism: int = 2, **params: Any) -> None:
        super().__init__(**params)
        self.array_parallelism = max(1, int(array_parallelism))

    def launch(self, job_overrides, initial_job_idx: int):
        out, n = [], self.array_parallelism
        for i in range(0, len(job_overrides), n):
            out.extend(super().launch(job_overrides[i : i + n], initial_job_idx + i))
        return out


class ProxyscaleLocalLauncher(JoblibLauncher):
    """n_jobs: 1 -> one cell after another in this process, each with the config the sweeper
    composed (set in `composed`, keyed by the cell's overrides; composed here if absent);
    n_jobs > 1 -> hydra-joblib-launcher's long-lived worker processes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.composed: dict = {}

    def launch(self, job_overrides, initial_job_idx: int):
        if int(self.joblib.get("n_jobs") or 1) != 1:
            return super().launch(job_overrides, initial_job_idx)
        from omegaconf import open_dict

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        runs = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            cfg = self.composed.pop(tuple(overrides), None)
            if callable(cfg):  # the sweeper's cell, given Hydra's node only now
                cfg = cfg()
            if cfg is None:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id = f"{cfg.hydra.job.name}_{idx}"
                cfg.hydra.job.num = idx
            HydraConfig.instance().set_config(cfg)
            runs.append(
                run_job(
                    hydra_context=self.hydra_context,
                    task_function=self.task_function,
                    config=cfg,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
            )
        return runs
