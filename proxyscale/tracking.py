"""Experiment trackers for per-step metrics (conf/logger/). The record is written regardless;
a tracker is a view of the same numbers. Each tracker is imported only when selected."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def loggers(cfg: DictConfig, out: Path) -> list:
    """Lightning loggers for one cell, writing inside its run folder."""
    from lightning.pytorch import loggers as pl_loggers

    if cfg.logger.kind == "csv":
        return [pl_loggers.CSVLogger(str(out), name="csv", version="")]
    return []


def finish(active: list, status: str) -> None:
    """Close every tracker with the cell's final status, also when the cell failed."""
    for lg in active:
        lg.finalize(status if status != "completed" else "success")
