"""Optional features and the extra that installs each: a config or command that asks for one that is not
installed stops before anything runs, in one line naming the `pip install` that fixes it (exit 2)."""

from __future__ import annotations

import importlib
import importlib.util

from proxyscale.config import ConfigError

# module -> (extra, what needs it)
FEATURES = {
    "wandb": ("wandb", "Weights & Biases (logger=wandb, report --wandb, wandb-sync)"),
    "tensorboardX": ("tensorboard", "logger=tensorboard"),
    "datasets": ("hub", "hub datasets (kind: hf)"),
    "lightgbm": ("mixfit", "mixfit --models lightgbm"),
    "datasketch": ("dedup", "the near_dedup curation step"),
}


def missing(module: str) -> str | None:
    """The one-line problem when `module` (a key of FEATURES) is not installed, else None; imports nothing."""
    if importlib.util.find_spec(module) is not None:
        return None
    extra, what = FEATURES[module]
    return f"{what} needs {module}: pip install 'proxyscale[{extra}]'"


def need(module: str):
    """The imported module, or ConfigError with the pip install line."""
    problem = missing(module)
    if problem:
        raise ConfigError(problem)
    return importlib.import_module(module)
