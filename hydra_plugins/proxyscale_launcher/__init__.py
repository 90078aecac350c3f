"""Hydra launcher `hydra/launcher=submitit_local` (conf/hydra/launcher/submitit_local.yaml):
hydra-submitit-launcher's local launcher with a parallelism limit.

Hydra instantiates only plugin classes defined in the hydra_plugins package, so the class lives
here. Its schema replaces hydra-submitit-launcher's `submitit_local` entry in the ConfigStore
(same group and name), because Hydra validates conf/hydra/launcher/submitit_local.yaml against the
ConfigStore entry of that name and the stock one has no `array_parallelism`."""
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf  # registers the stock entries first
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher


@dataclass
class SubmititLocalConf(LocalQueueConf):
    _target_: str = "hydra_plugins.proxyscale_launcher.SubmititLocalLauncher"
    array_parallelism: int = 2  # cells running at once


ConfigStore.instance().store(group="hydra/launcher", name="submitit_local", node=SubmititLocalConf, provider="proxyscale")


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
            out.extend(super().launch(job_overrides[i:i + n], initial_job_idx + i))
        return out
