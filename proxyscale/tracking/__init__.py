"""Experiment trackers for per-step metrics (conf/logger/): a side branch of the job. The record is
written regardless; a tracker is a view of the same numbers. Each tracker is imported only when selected.

  logger=csv          Lightning's CSVLogger: <run folder>/csv/metrics.csv
  logger=tensorboard  Lightning's TensorBoardLogger: <run folder>/tensorboard/ (needs tensorboardX
                      or tensorboard installed), the flattened config as hparams (hparams.yaml and the
                      HParams dashboard)
  logger=wandb        one W&B run per cell: see proxyscale/tracking/wandb.py

Every tracker logs against the same step: the number of optimizer steps done (the record's steps,
what the console prints). Lightning hands loggers the index of the batch being finished, one less;
`tracker_step()` adds the one. Lightning's constant `epoch` scalar (one epoch per cell) is dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from proxyscale.extras import missing
from proxyscale.tracking.conventions import run_numbers, tracker_metrics, tracker_step

KINDS = ("none", "csv", "tensorboard", "wandb")


def check(cfg: DictConfig) -> str | None:
    """The one-line problem with cfg.logger, or None (called by the planner; imports no tracker)."""
    lg = cfg.logger
    if lg.kind not in KINDS:
        return f"logger.kind must be one of {', '.join(KINDS)}, got {lg.kind!r}"
    if lg.kind == "tensorboard":
        import importlib.util

        if not importlib.util.find_spec("tensorboard"):  # Lightning writes events with either
            return missing("tensorboardX")
    if lg.kind == "wandb":
        from proxyscale.tracking import wandb

        if missing("wandb"):
            return missing("wandb")

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
    kind = cfg.logger.kind
    if kind == "csv":
        return [_csv_logger(out)]
    if kind == "tensorboard":
        return [tensorboard_logger(cfg, out)]
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


def _csv_logger(out: Path):
    from lightning.pytorch.loggers import CSVLogger

    class CellCSVLogger(CSVLogger):
        def log_metrics(self, metrics, step=None):
            super().log_metrics(tracker_metrics(metrics), tracker_step(step))

    return CellCSVLogger(str(out), name="csv", version="")


def tensorboard_logger(cfg: DictConfig, out: Path):
    """Lightning's TensorBoardLogger in <run folder>/tensorboard/ with the cell's steps, without
    `epoch`, and the resolved config flattened to dotted keys as its hparams (hparams.yaml and the
    HParams dashboard, whose metrics are train/loss and eval/<set>/loss)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from proxyscale import config as C

    class CellTensorBoardLogger(TensorBoardLogger):
        def log_metrics(self, metrics, step=None):
            super().log_metrics(tracker_metrics(metrics), tracker_step(step))

        def log_config(self, params: dict, metric_names: list[str]) -> None:
            """hparams.yaml plus the HParams plugin's summaries, naming the metrics without logging a value
            (Lightning's log_hyperparams writes the plugin's summaries only together with metric values)."""
            from lightning.pytorch.utilities.rank_zero import rank_zero_only

            if rank_zero_only.rank != 0:
                return
            self.log_hyperparams(params)
            try:
                from torch.utils.tensorboard.summary import hparams
            except ImportError:  # tensorboardX only
                from tensorboardX.summary import hparams
            clean = {k: v for k, v in self._sanitize_params(params).items() if v is not None}
            writer = self.experiment._get_file_writer()
            for summary in hparams(clean, {m: 0.0 for m in metric_names}):
                writer.add_summary(summary)
            self.save()  # hparams.yaml now, not only when the cell completes

    lg = CellTensorBoardLogger(str(out), name="tensorboard", version="", default_hp_metric=False)
    flat = C.flatten(C.plain(cfg))
    flat.update({"run_id": out.name, "sweep": cfg.sweep, **run_numbers(cfg)})
    lg.log_config(flat, ["train/loss"] + [f"eval/{s.name}/loss" for s in cfg.eval.sets])
    return lg
