"""Run one cell of a grid: skip it if its record is final, else train it and write its record.

This is the function every launcher calls (Hydra's in-process and joblib launchers, submitit). It
never raises for a cell's own failure: a crash or a divergence becomes that cell's record and the
sweep goes on.
"""
from __future__ import annotations

import functools
import logging
import os
import platform
import time
import traceback
import warnings
from pathlib import Path

from filelock import FileLock, Timeout
import yaml
from omegaconf import DictConfig

from proxyscale import config as C
from proxyscale import record, tracking

log = logging.getLogger("proxyscale")


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir) / cfg.sweep / C.run_id(cfg)


@functools.cache  # the same for every cell of a process
def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("proxyscale", "torch", "lightning", "transformers", "numpy", "hydra-core"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _workers() -> int:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return int(HydraConfig.get().launcher.get("n_jobs", 1) or 1)
    return 1


def quiet_lightning() -> None:
    """Silence Lightning's hints that do not apply to a proxyscale cell (the benches share this)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*but have no logger configured.*")
    warnings.filterwarnings("ignore", message=".*LightningModule.*has parameters that were not used.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    warnings.filterwarnings("ignore", message=".*The `srun` command is available on your system but is not used.*")  # local cells on a SLURM host


def threads_per_worker(cfg: DictConfig, workers: int) -> int:
    """trainer.threads, or (when 0) the machine's cores shared evenly among the workers."""
    return cfg.trainer.threads or max(1, (os.cpu_count() or 1) // workers)


def plan_steps(cfg: DictConfig, vocab_size: int) -> tuple[int, int]:
    """(steps, tokens_per_step) from the token budget: max_tokens, else params x tokens_per_param."""
    from proxyscale.model import n_params

    t = cfg.trainer
    per_step = t.batch_size * t.seq_len
    budget = t.max_tokens if t.max_tokens is not None else int(n_params(cfg.model, vocab_size) * t.tokens_per_param)
    return max(1, budget // per_step), per_step


def train(cfg: DictConfig, out: Path, label: str) -> record.Record:
    """Train one cell and return its record (status completed or diverged)."""
    import lightning as L
    import torch

    from proxyscale.data.cache import Tokenizer, eval_tokens, recipe_tokens
    from proxyscale.model import flops_per_token, n_params
    from proxyscale.train import CausalLM, Monitor, eval_loaders, train_loader

    quiet_lightning()
    torch.set_num_threads(threads_per_worker(cfg, _workers()))
    torch.set_flush_denormal(True)  # denormals slowed high-LR CPU runs ~1.7x
    t_start = time.perf_counter()

    tok = Tokenizer(cfg.data.tokenizer)
    pool, _ = recipe_tokens(cfg.data, cfg.paths.cache_dir)
    evals = {s.name: eval_tokens(s, cfg.data.tokenizer, cfg.eval.tokens_per_set, cfg.paths.cache_dir)[0] for s in cfg.eval.sets}
    steps, per_step = plan_steps(cfg, tok.vocab_size)

    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    resume_from = str(last) if last.exists() else None
    start = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"]) if resume_from else 0
    if resume_from:
        log.info(f"{label} resuming from step {start} ({last})")

    L.seed_everything(cfg.seed, verbose=False)
    module = CausalLM(cfg, tok.vocab_size, steps, list(evals))
    params = sum(p.numel() for p in module.parameters())

    def on_eval(point):
        losses = " ".join(f"{k}={v:.3f}" for k, v in point["loss"].items())
        log.info(f"{label} step {point['step']}/{steps} eval {losses}")

    monitor = Monitor(per_step, cfg.trainer.log_every_n_steps, cfg.trainer.diverge_delta, int(cfg.optim.warmup_frac * steps), on_eval)
    callbacks = [monitor]
    if cfg.trainer.checkpoint:  # after each periodic eval, so a resumed curve loses no point
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=str(ckpt_dir), filename="last", save_top_k=1, enable_version_counter=False))
    plugins = []
    if "SLURM_JOB_ID" in os.environ:  # submitit owns requeueing; Lightning's own handler stays off
        from lightning.pytorch.plugins.environments import SLURMEnvironment  # (not an attribute of L.pytorch.plugins)

        plugins.append(SLURMEnvironment(auto_requeue=False))
    active = tracking.loggers(cfg, out)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy,
        precision=cfg.trainer.precision,
        max_steps=steps,
        val_check_interval=min(cfg.eval.every_n_steps, steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=cfg.optim.grad_clip or None,
        logger=active or False,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_checkpointing=cfg.trainer.checkpoint,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        plugins=plugins or None,
        default_root_dir=str(out),
    )
    val = eval_loaders(evals, cfg.trainer.seq_len, cfg.eval.batch_size)
    try:
        trainer.fit(module, train_dataloaders=train_loader(pool, cfg, steps, start), val_dataloaders=val, ckpt_path=resume_from)
        if not monitor.diverged and (not monitor.eval_curve or monitor.eval_curve[-1]["step"] != trainer.global_step):
            trainer.validate(module, dataloaders=val, verbose=False)
    except BaseException:
        tracking.finish(active, "failed", monitor)
        raise
    tracking.finish(active, "diverged" if monitor.diverged else "completed", monitor)

    done = trainer.global_step
    wall = time.perf_counter() - t_start
    fpt = flops_per_token(cfg.model, tok.vocab_size, cfg.trainer.seq_len)
    assert params == n_params(cfg.model, tok.vocab_size), "closed-form parameter count disagrees with the model"
    return record.Record(
        run_id=out.name,
        sweep=cfg.sweep,
        status="diverged" if monitor.diverged else "completed",
        size=cfg.model.name,
        params=params,
        recipe=cfg.data.name,
        lr=float(cfg.optim.lr),
        seed=int(cfg.seed),
        tokens=done * per_step,
        steps=done,
        final_loss=monitor.eval_curve[-1]["loss"] if monitor.eval_curve and not monitor.diverged else {},
        eval_curve=monitor.eval_curve,
        train_curve=monitor.train_curve,
        wall_seconds=wall,
        train_seconds=monitor.train_seconds,
        tokens_per_second=done * per_step / max(monitor.train_seconds, 1e-9),
        flops_per_token=fpt,
        tokenizer=cfg.data.tokenizer,
        config=C.plain(cfg),
        versions=_versions(),
        error=monitor.diverged,
        requeues=monitor.resumes,
        eval_seconds=monitor.eval_seconds,
    )


def _global_rank() -> int:
    """This process's rank in a multi-process cell: torch.distributed if up, else the launcher's env."""
    import sys

    dist = getattr(sys.modules.get("torch"), "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0)


def run_cell(cfg: DictConfig, position: str = "") -> record.Record | None:
    """Skip-or-train one cell and write its record; returns the record, or None when another
    process holds the cell (two sweeps over one folder never train a cell twice)."""
    out = run_dir(cfg)
    label = f"{position}{out.name}".strip()
    if record.is_completed(out):
        rec = record.read(out)
        log.info(f"{label} skip: already {rec.status}")
        return rec
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / ".lock"))  # an flock: released by the OS if this process dies
    if _global_rank() == 0:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info(f"{label} skip: running in another process")
            return None
    try:
        return _run_locked(cfg, out, label)
    finally:
        if lock.is_locked:
            lock.release()


def _run_locked(cfg: DictConfig, out: Path, label: str) -> record.Record:
    if record.is_completed(out):  # finished by another process while we waited for the lock
        return record.read(out)
    record.atomic_write_text(out / "config.yaml", yaml.safe_dump(C.plain(cfg), sort_keys=False))
    log.info(f"{label} start")
    t0 = time.perf_counter()
    try:
        C.validate(cfg)
        rec = train(cfg, out, label)
    except Exception as exc:  # the cell failed; the sweep goes on
        rec = _failed(cfg, out, traceback.format_exc(), time.perf_counter() - t0)
        log.error(f"{label} FAILED: {type(exc).__name__}: {exc} (see {out / record.RESULT})")
    if _global_rank() == 0:  # a multi-process cell (ddp/fsdp under srun): one record, from rank 0
        record.write(out, rec)
    if rec.status == "completed":
        losses = " ".join(f"{k}={v:.3f}" for k, v in rec.final_loss.items())
        log.info(f"{label} completed in {rec.wall_seconds:.1f}s ({rec.tokens_per_second / 1e3:.0f}k tok/s) {losses}")
    elif rec.status == "diverged":
        log.warning(f"{label} DIVERGED: {rec.error}")
    return rec


def _failed(cfg: DictConfig, out: Path, tb: str, wall: float) -> record.Record:
    return record.Record(
        run_id=out.name, sweep=cfg.sweep, status="failed", size=cfg.model.name, params=0,
        recipe=cfg.data.name, lr=float(cfg.optim.lr), seed=int(cfg.seed), tokens=0, steps=0,
        final_loss={}, eval_curve=[], train_curve=[], wall_seconds=wall, train_seconds=0.0,
        tokens_per_second=0.0, flops_per_token=0.0, tokenizer=cfg.data.tokenizer, config=C.plain(cfg),
        versions=_versions(), error=tb,
    )
