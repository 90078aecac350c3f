"""All W&B policy in one place: the per-cell run (id, group, tags, config, summary), offline folders
and `wandb sync`. Imported only when logger=wandb is selected or a W&B command runs.

One W&B run per cell (Lightning's WandbLogger):
  - id = the cell's run id + "-" + a short hash of the sweep name (`run_key`), resume="allow": a
    requeued/resumed cell continues the same run (offline: one more offline-run-* folder with the
    same id; `wandb sync` uploads them in start order), while the same cell in another sweep is
    another run even when both are synced into one project;
  - group = sweep name, job_type = "train-<size>", tags size:/recipe:/lr:/seed:, name = the run id
    without its hash; config = the resolved cell config flattened to dotted keys (optim.lr, ...);
  - train/loss (every trainer.log_every_n_steps) and eval/<set>/loss (every eval) against
    trainer/global_step = optimizer steps done (the record's steps; tracking.step, shared with
    TensorBoard and csv), plus perf/tokens_per_second between train-loss points (eval time
    excluded); a cell shorter than the logging interval still logs its last step's train loss;
  - summary from the cell's record: status (completed|diverged|failed), final/eval/<set>/loss, steps,
    tokens, tokens_per_second, requeues, error; wandb.finish(exit_code=1 unless completed) at the end
    of every cell, also when it raises, so the cells of an in-process multirun never collapse into one run.
Offline by default: run files under <output_dir>/<sweep>/wandb/offline-run-* (logger.dir moves them);
`proxyscale wandb-sync outputs/<sweep>` uploads them. logger.mode=online logs live and needs
WANDB_API_KEY in the environment (or `wandb login`); proxyscale never reads the key into a config or
an output.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from proxyscale.errors import UserError

MODES = ("offline", "online", "disabled")


def _has_wandb_login() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text() or bool(os.environ.get("WANDB_BASE_URL"))
    except OSError:
        return False


def check(cfg: DictConfig) -> str | None:
    """The one-line problem with a wandb logger config, or None."""
    mode = cfg.logger.get("mode", "offline")
    if mode not in MODES:
        return f"logger.mode must be one of {', '.join(MODES)}, got {mode!r}"
    if mode == "online" and os.environ.get("WANDB_MODE") != "disabled" and not _has_wandb_login():
        return "logger.mode=online needs WANDB_API_KEY in the environment (or `wandb login`); logger.mode=offline logs without it"
    if cfg.logger.get("dir") and mode != "disabled":
        from proxyscale.config import unwritable

        why = unwritable(cfg.logger.dir)
        if why:  # wandb would fall back to a temp folder the record does not name
            return f"logger.dir: {why} (W&B would log to a temp folder instead); choose a writable logger.dir"
    return None


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


def sweep_hash(sweep: str, n: int = 8) -> str:
    """A short stable hash of a sweep's name: the same on every requeue, machine and Python process."""
    import hashlib

    return hashlib.sha1(str(sweep).encode()).hexdigest()[:n]


def run_key(sweep: str, run_id: str) -> str:
    """The W&B run id of a cell: its run id (readable: size-recipe-lr-seed-hash) plus the sweep's hash.
    A cell's run id does not name its sweep, so the same cell in two sweeps would otherwise be one W&B
    run once both are synced into a project. (W&B ids may not contain :;,#?/' ; run ids never do.)"""
    return f"{run_id}-{sweep_hash(sweep)}"


def settings(cfg: DictConfig, run_id: str) -> dict[str, Any]:
    """What the record keeps of the W&B set-up, so publishing and syncing never re-read a config."""
    lg = cfg.logger
    return {
        "project": lg.get("project") or "proxyscale",
        "entity": lg.get("entity"),
        "group": lg.get("group") or cfg.sweep,
        "mode": _wandb_mode(cfg),
        "dir": str(wandb_dir(cfg)),
        "id": run_key(cfg.sweep, run_id),
    }


def logger(cfg: DictConfig, out: Path):
    """The cell's WandbLogger."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    class CellWandbLogger(WandbLogger):
        """WandbLogger + tokens/s between train-loss points (eval time excluded)."""

        def __init__(self, tokens_per_step: int, **kw):
            super().__init__(**kw)
            self._wandb_init.pop("anonymous", None)  # deprecated in wandb; Lightning still passes None
            self._tps, self._mark = tokens_per_step, None

        def log_metrics(self, metrics, step=None):
            # Lightning passes the step index before the optimizer step is counted; tracking.step makes
            # trainer/global_step the number of optimizer steps done, as in the record's curves (and in
            # TensorBoard and csv). Lightning's constant `epoch` is dropped.
            from proxyscale.tracking.conventions import tracker_metrics, tracker_step

            step = tracker_step(step)
            now = time.perf_counter()
            metrics = tracker_metrics(metrics)
            if step is not None and "train/loss" in metrics:
                if self._mark is not None and step > self._mark[0]:
                    metrics["perf/tokens_per_second"] = (step - self._mark[0]) * self._tps / max(now - self._mark[1], 1e-9)
                self._mark = (step, now)
            super().log_metrics(metrics, step)
            if step is not None and any(k.startswith("eval/") for k in metrics):
                self._mark = (step, time.perf_counter())  # the next rate starts after the eval

    from proxyscale import config as C
    from proxyscale.tracking.conventions import run_numbers

    finish_stale_run()
    where = settings(cfg, out.name)
    Path(where["dir"]).mkdir(parents=True, exist_ok=True)
    flat = C.flatten(C.plain(cfg))
    flat.update({"run_id": out.name, "sweep": cfg.sweep, **run_numbers(cfg)})
    return CellWandbLogger(
        tokens_per_step=int(cfg.trainer.batch_size * cfg.trainer.seq_len),
        name=out.name.rsplit("-", 1)[0],
        save_dir=where["dir"],
        id=where["id"],
        project=where["project"],
        entity=where["entity"],
        group=where["group"],
        job_type=f"train-{cfg.model.name}",
        tags=_tags(cfg),
        config=flat,
        mode=where["mode"],
        settings=wandb.Settings(quiet=True),
    )


def summary(rec) -> dict[str, Any]:
    """Run-summary values from the cell's record."""
    out: dict[str, Any] = {"status": rec.status, "steps": rec.steps, "tokens": rec.tokens, "requeues": rec.requeues}
    if rec.train_seconds > 0:
        out["tokens_per_second"] = rec.tokens_per_second
    if rec.status == "completed":
        out.update({f"final/eval/{k}/loss": v for k, v in rec.final_loss.items() if math.isfinite(v)})
    if rec.error:
        lines = [ln for ln in str(rec.error).strip().splitlines() if ln.strip()]
        out["error"] = (lines[-1] if lines else str(rec.error))[:500]
    return out


def finish(lg, rec) -> None:
    """Close the cell's W&B run with the record's summary and status."""
    import wandb
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank != 0:
        return
    status = rec.status
    run = lg._experiment
    if run is None:  # the cell failed before its first log: start the run so the failure shows
        if status != "failed":
            return
        try:
            run = lg.experiment
        except Exception:  # W&B itself could not start: the cell's own error is what matters
            return
    try:
        for k, v in summary(rec).items():
            run.summary[k] = v
    finally:
        run.finish(exit_code=0 if status == "completed" else 1)
        lg._experiment = None
        if wandb.run is run:  # belt and braces: nothing of this cell stays global
            wandb.finish(exit_code=0 if status == "completed" else 1)


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


class SyncError(UserError):
    """`wandb-sync` could not do its job; the message is the one line the CLI prints."""


def sync(path: str | Path, project: str | None = None, entity: str | None = None, dry_run: bool = False, timeout: float = 900) -> tuple[list[str], str]:
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
