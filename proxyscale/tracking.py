"""Experiment trackers for per-step metrics (conf/logger/). The record is written regardless;
a tracker is a view of the same numbers. Each tracker is imported only when selected.

  logger=csv          Lightning's CSVLogger: <run folder>/csv/metrics.csv
  logger=tensorboard  Lightning's TensorBoardLogger: <run folder>/tensorboard/ (needs tensorboardX
                      or tensorboard installed)
  logger=wandb        one W&B run per cell (Lightning's WandbLogger):
                      - id = the cell's run id, resume="allow": a requeued/resumed cell continues the
                        same run (offline: one more offline-run-* folder with the same id; `wandb
                        sync` uploads them in start order into that one run);
                      - group = sweep name, job_type = "train-<size>", tags size:/recipe:/lr:,
                        name = the run id without its hash;
                      - config = the resolved cell config flattened to dotted keys (optim.lr, ...);
                      - train/loss (every trainer.log_every_n_steps) and eval/<set>/loss (every
                        eval) against trainer/global_step = optimizer steps done (the record's steps), plus
                        perf/tokens_per_second between train-loss points (eval time excluded);
                      - summary: status (completed|diverged|failed), final/eval/<set>/loss, steps,
                        tokens, tokens_per_second, error; wandb.finish(exit_code=1 unless completed)
                        at the end of every cell, also when it raises, so the cells of an in-process
                        multirun never collapse into one run.
                      Offline by default: run files under <output_dir>/<sweep>/wandb/offline-run-*
                      (logger.dir moves them); `proxyscale wandb-sync outputs/<sweep>` uploads them.
                      logger.mode=online logs live and needs WANDB_API_KEY in the environment (or
                      `wandb login`); proxyscale never reads the key into a config or an output.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

KINDS = ("none", "csv", "tensorboard", "wandb")
WANDB_MODES = ("offline", "online", "disabled")
TENSORBOARD_PIN = "tensorboardX==2.6.5"


# ---------------------------------------------------------------------------------------- checks


def _has_wandb_login() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text() or bool(os.environ.get("WANDB_BASE_URL"))
    except OSError:
        return False


def check(cfg: DictConfig) -> str | None:
    """The one-line problem with cfg.logger, or None. Called by config.validate (no tracker import)."""
    lg = cfg.logger
    if lg.kind not in KINDS:
        return f"logger.kind must be one of {', '.join(KINDS)}, got {lg.kind!r}"
    if lg.kind == "tensorboard":
        import importlib.util

        if not (importlib.util.find_spec("tensorboardX") or importlib.util.find_spec("tensorboard")):
            return f"logger=tensorboard needs tensorboardX or tensorboard installed (pip install {TENSORBOARD_PIN})"
    if lg.kind == "wandb":
        mode = lg.get("mode", "offline")
        if mode not in WANDB_MODES:
            return f"logger.mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}"
        if mode == "online" and os.environ.get("WANDB_MODE") != "disabled" and not _has_wandb_login():
            return "logger.mode=online needs WANDB_API_KEY in the environment (or `wandb login`); logger.mode=offline logs without it"
    return None


# ---------------------------------------------------------------------------------------- config


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists -> {dotted.key: scalar}; lists of scalars stay lists, list items of
    dicts are indexed (data.sources.0.weight)."""
    if OmegaConf.is_config(obj):
        obj = OmegaConf.to_container(obj, resolve=True)
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        if not obj and prefix:
            out[prefix] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in obj):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}"))
    else:
        out[prefix] = list(obj) if isinstance(obj, tuple) else obj
    return out


def wandb_dir(cfg: DictConfig) -> Path:
    """The folder wandb.init(dir=...) gets; wandb puts its runs in <this>/wandb/."""
    d = cfg.logger.get("dir")
    return Path(d) if d else Path(cfg.paths.output_dir) / cfg.sweep


def _wandb_mode(cfg: DictConfig) -> str:
    # WANDB_MODE=disabled in the environment may switch tracking off; nothing switches it online.
    return "disabled" if os.environ.get("WANDB_MODE") == "disabled" else cfg.logger.get("mode", "offline")


def _tags(cfg: DictConfig) -> list[str]:
    base = [f"size:{cfg.model.name}", f"recipe:{cfg.data.name}", f"lr:{cfg.optim.lr:g}", f"seed:{cfg.seed}"]
    return base + [str(t) for t in (cfg.logger.get("tags") or []) if str(t) not in base]


def finish_stale_run() -> None:
    """A run left open by an earlier cell of this process (it crashed before `finish`) is closed,
    so the next cell's logger starts its own run instead of reusing it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.run.finish(exit_code=1)


# ---------------------------------------------------------------------------------------- loggers


def loggers(cfg: DictConfig, out: Path) -> list:
    """Lightning loggers for one cell, writing inside its run folder (W&B: the sweep's wandb/)."""
    from lightning.pytorch import loggers as pl_loggers

    kind = cfg.logger.kind
    if kind == "csv":
        return [pl_loggers.CSVLogger(str(out), name="csv", version="")]
    if kind == "tensorboard":
        return [pl_loggers.TensorBoardLogger(str(out), name="tensorboard", version="", default_hp_metric=False)]
    if kind == "wandb":
        return [_wandb_logger(cfg, out)]
    return []


def _wandb_logger(cfg: DictConfig, out: Path):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    class CellWandbLogger(WandbLogger):
        """WandbLogger + tokens/s between train-loss points (eval time excluded)."""

        def __init__(self, tokens_per_step: int, **kw):
            super().__init__(**kw)
            self._wandb_init.pop("anonymous", None)  # deprecated in wandb; Lightning still passes None
            self._tps, self._mark = tokens_per_step, None

        def log_metrics(self, metrics, step=None):
            # Lightning passes the step index before the optimizer step is counted; +1 makes
            # trainer/global_step the number of optimizer steps done, as in the record's curves.
            step = None if step is None else step + 1
            now = time.perf_counter()
            metrics = dict(metrics)
            if step is not None and "train/loss" in metrics:
                if self._mark is not None and step > self._mark[0]:
                    metrics["perf/tokens_per_second"] = (step - self._mark[0]) * self._tps / max(now - self._mark[1], 1e-9)
                self._mark = (step, now)
            super().log_metrics(metrics, step)
            if step is not None and any(k.startswith("eval/") for k in metrics):
                self._mark = (step, time.perf_counter())  # the next rate starts after the eval

    from proxyscale import config as C

    finish_stale_run()
    rid = out.name
    root = wandb_dir(cfg)
    root.mkdir(parents=True, exist_ok=True)
    flat = flatten(C.plain(cfg))
    flat.update({"run_id": rid, "sweep": cfg.sweep})
    lg = cfg.logger
    return CellWandbLogger(
        tokens_per_step=int(cfg.trainer.batch_size * cfg.trainer.seq_len),
        name=rid.rsplit("-", 1)[0],
        save_dir=str(root),
        id=rid,
        project=lg.get("project") or "proxyscale",
        entity=lg.get("entity"),
        group=lg.get("group") or cfg.sweep,
        job_type=f"train-{cfg.model.name}",
        tags=_tags(cfg),
        config=flat,
        mode=_wandb_mode(cfg),
        settings=wandb.Settings(quiet=True),
    )


# ---------------------------------------------------------------------------------------- finish


def summary(monitor, status: str) -> dict[str, Any]:
    """Run-summary values from the cell's Monitor (proxyscale.train.Monitor), as in its record."""
    if monitor is None:
        return {}
    last = monitor.eval_curve[-1] if monitor.eval_curve else None
    steps = 0
    if last is not None:
        steps = last["step"]
    if monitor.train_curve:
        steps = max(steps, monitor.train_curve[-1]["step"])
    out: dict[str, Any] = {"steps": steps, "tokens": steps * monitor.tokens_per_step, "requeues": monitor.resumes}
    if monitor.train_seconds > 0:
        out["tokens_per_second"] = steps * monitor.tokens_per_step / monitor.train_seconds
    if status == "completed" and last is not None:
        out.update({f"final/eval/{k}/loss": v for k, v in last["loss"].items() if math.isfinite(v)})
    if monitor.diverged:
        out["error"] = monitor.diverged
    return out


def finish(active: list, status: str, monitor=None) -> None:
    """Close every tracker with the cell's final status, also when the cell failed. Called inside
    the cell's `except` block for failures, so the exception is in sys.exc_info()."""
    for lg in active:
        if type(lg).__name__ == "CellWandbLogger":
            _finish_wandb(lg, status, monitor)
        else:
            lg.finalize(status if status != "completed" else "success")


def _finish_wandb(lg, status: str, monitor) -> None:
    import wandb

    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank != 0:
        return
    run = lg._experiment
    if run is None:  # the cell failed before its first log: start the run so the failure shows
        if status != "failed":
            return
        try:
            run = lg.experiment
        except Exception:  # W&B itself could not start: the cell's own error is what matters
            return
    values = {"status": status, **summary(monitor, status)}
    exc = sys.exc_info()[1]
    if status == "failed" and exc is not None:
        values["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    try:
        for k, v in values.items():
            run.summary[k] = v
    finally:
        run.finish(exit_code=0 if status == "completed" else 1)
        lg._experiment = None
        if wandb.run is run:  # belt and braces: nothing of this cell stays global
            wandb.finish(exit_code=0 if status == "completed" else 1)


# ---------------------------------------------------------------------------------------- sync


def offline_runs(path: str | Path) -> list[Path]:
    """Offline W&B run folders of a sweep: <sweep>/wandb/offline-run-*, or under a wandb folder
    given directly (logger.dir), oldest first (a resumed run's folders in order)."""
    root = Path(path)
    found: set[Path] = set()
    for pattern in ("offline-run-*", "wandb/offline-run-*", "*/wandb/offline-run-*"):
        found.update(p for p in root.glob(pattern) if p.is_dir() and any(p.glob("*.wandb")))
    return sorted(found, key=lambda p: p.name)


def sync_command(runs: list[Path], project: str | None = None, entity: str | None = None, dry_run: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "wandb", "sync"]
    if project:
        cmd += ["--project", project]
    if entity:
        cmd += ["--entity", entity]
    if dry_run:
        cmd.append("--dry-run")
    return cmd + [str(p) for p in runs]


class SyncError(RuntimeError):
    """`wandb-sync` could not do its job; the message is the one line the CLI prints."""


def sync(path: str | Path, project: str | None = None, entity: str | None = None, dry_run: bool = False,
         timeout: float = 900) -> tuple[list[str], str]:
    """Run `wandb sync` (with --dry-run: wandb's own dry run, no key needed) on a sweep's offline
    runs; returns (command, wandb's output). Raises SyncError with one line."""
    import subprocess

    if not Path(path).is_dir():
        raise SyncError(f"{path}: no such sweep folder")
    runs = offline_runs(path)
    if not runs:
        raise SyncError(f"{path}: nothing to sync: no offline W&B runs (was the sweep run with logger=wandb?)")
    if not dry_run and not _has_wandb_login():
        raise SyncError(f"{len(runs)} offline run(s) not synced: set WANDB_API_KEY in the environment (or run `wandb login`) first")
    cmd = sync_command(runs, project, entity, dry_run)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SyncError(f"`wandb sync` of {len(runs)} run(s) gave no result within {timeout:g}s (no network to the W&B server?)") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        errs = [ln for ln in lines if "error" in ln.lower()] or lines or [f"exit status {done.returncode}"]
        raise SyncError(f"`wandb sync` of {len(runs)} run(s) failed (exit {done.returncode}): {errs[-1][:300]}")
    return cmd, output
