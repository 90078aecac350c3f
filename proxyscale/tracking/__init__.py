"""Experiment trackers for per-step metrics (conf/logger/): a side branch of the job. The record is
written regardless; a tracker is a view of the same numbers. Each tracker is imported only when selected.

  logger=csv          Lightning's CSVLogger: <run folder>/csv/metrics.csv
  logger=tensorboard  Lightning's TensorBoardLogger: <run folder>/tensorboard/ (needs tensorboardX
                      or tensorboard installed)
  logger=wandb        one W&B run per cell: see proxyscale/tracking/wandb.py
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

KINDS = ("none", "csv", "tensorboard", "wandb")
TENSORBOARD_PIN = "tensorboardX==2.6.5"


def check(cfg: DictConfig) -> str | None:
    """The one-line problem with cfg.logger, or None (called by the planner; imports no tracker)."""
    lg = cfg.logger
    if lg.kind not in KINDS:
        return f"logger.kind must be one of {', '.join(KINDS)}, got {lg.kind!r}"
    if lg.kind == "tensorboard":
        import importlib.util

        if not (importlib.util.find_spec("tensorboardX") or importlib.util.find_spec("tensorboard")):
            return f"logger=tensorboard needs tensorboardX or tensorboard installed (pip install {TENSORBOARD_PIN})"
    if lg.kind == "wandb":
        from proxyscale.tracking import wandb

        return wandb.check(cfg)
    return None


def settings(cfg: DictConfig, run_id: str) -> dict[str, Any]:
    """The tracker settings a record keeps: {kind} plus, for W&B, where its run is."""
    if cfg.logger.kind != "wandb":
        return {"kind": cfg.logger.kind}
    from proxyscale.tracking import wandb

    return {"kind": "wandb", **wandb.settings(cfg, run_id)}


def loggers(cfg: DictConfig, out: Path) -> list:
    """Lightning loggers for one cell, writing inside its run folder (W&B: the sweep's wandb/)."""
    from lightning.pytorch import loggers as pl_loggers

    kind = cfg.logger.kind
    if kind == "csv":
        return [pl_loggers.CSVLogger(str(out), name="csv", version="")]
    if kind == "tensorboard":
        return [pl_loggers.TensorBoardLogger(str(out), name="tensorboard", version="", default_hp_metric=False)]
    if kind == "wandb":
        from proxyscale.tracking import wandb

        return [wandb.logger(cfg, out)]
    return []


def finish(active: list, rec) -> None:
    """Close every tracker with the cell's record (its final status), also when the cell failed."""
    for lg in active:
        if type(lg).__name__ == "CellWandbLogger":
            from proxyscale.tracking import wandb

            wandb.finish(lg, rec)
        else:
            lg.finalize(rec.status if rec.status != "completed" else "success")
