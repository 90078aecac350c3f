"""Training-step throughput: proxyscale's Lightning cell vs a bare PyTorch loop, side by side.

Same model, same batches (StepBatches), same optimizer and schedule; the bare loop is the floor
Lightning's bookkeeping is measured against. Runs interleaved (bare, lightning, bare, ...) so a
noisy machine hits both alike; reports the median of the repeats.
"""

from __future__ import annotations

import statistics
import time

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from bench.common import save, table
from proxyscale.config import CONF_DIR
from proxyscale.job import optim, quiet_lightning
from proxyscale.job.module import CausalLM, train_loader

STEPS = 40
WARMUP = 5


def cell_cfg(size: str, *overrides: str):
    """A cell's config at this size, one torch thread (the benches' common setting)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=[f"model={size}", "trainer.threads=1", *overrides])


def _sync(cfg) -> float:
    """A clock reading after the device has finished its queued work."""
    if cfg.trainer.accelerator == "gpu":
        torch.cuda.synchronize()
    return time.perf_counter()


def bare(cfg, tokens, vocab: int = 257, steps: int = STEPS, warmup: int = WARMUP) -> float:
    """Tokens/s of a plain loop over the cell's own model (compiled in place when
    trainer.compile), batches, optimizer and schedule, in the cell's precision."""
    torch.manual_seed(0)
    gpu = cfg.trainer.accelerator == "gpu"
    device = "cuda" if gpu else "cpu"
    module = CausalLM(cfg, vocab, steps + warmup, []).to(device)
    o = optim.configure(module.parameters(), cfg.optim, steps + warmup)
    opt, sched = o["optimizer"], o["lr_scheduler"]["scheduler"]
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=cfg.trainer.precision.startswith("bf16"))
    t0 = None
    for i, batch in enumerate(train_loader(tokens, cfg, steps + warmup)):
        if i == warmup:
            t0 = _sync(cfg)
        batch = batch.to(device, non_blocking=True)
        x, y = batch[:, :-1], batch[:, 1:]
        with autocast:
            logits = module.net(input_ids=x).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.optim.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return steps * cfg.trainer.batch_size * cfg.trainer.seq_len / (_sync(cfg) - t0)


class _Clock(L.Callback):
    def __init__(self, cfg, warmup: int):
        self.cfg, self.warmup = cfg, warmup

    def on_train_batch_start(self, trainer, *a):
        if trainer.global_step == self.warmup:
            self.t0 = _sync(self.cfg)

    def on_train_end(self, trainer, *a):
        self.seconds = _sync(self.cfg) - self.t0


def lightning(cfg, tokens, vocab: int = 257, steps: int = STEPS, warmup: int = WARMUP) -> float:
    """Tokens/s of the proxyscale cell: its LightningModule under a Trainer set as job.py sets it."""
    torch.manual_seed(0)
    module = CausalLM(cfg, vocab, steps + warmup, [])
    clock = _Clock(cfg, warmup)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=cfg.trainer.precision,
        max_steps=steps + warmup,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=cfg.optim.grad_clip,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[clock],
    )
    trainer.fit(module, train_dataloaders=train_loader(tokens, cfg, steps + warmup))
    return steps * cfg.trainer.batch_size * cfg.trainer.seq_len / clock.seconds


def main(sizes=("debug", "tiny", "mini", "small", "base"), repeats: int = 3) -> dict:
    quiet_lightning()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    tokens = np.random.default_rng(0).integers(0, 256, 400_000).astype(np.uint16)
    rows, out = [], {}
    for size in sizes:
        cfg = cell_cfg(size)
        b, lt = [], []
        for _ in range(repeats):
            b.append(bare(cfg, tokens))
            lt.append(lightning(cfg, tokens))
        mb, ml = statistics.median(b), statistics.median(lt)
        params = sum(p.numel() for p in CausalLM(cfg, 257, 1, []).parameters())
        out[size] = {"params": params, "bare_tok_s": mb, "lightning_tok_s": ml, "ratio": ml / mb}
        rows.append((size, f"{params:,}", f"{mb / 1e3:.1f}k", f"{ml / 1e3:.1f}k", f"{ml / mb:.2f}"))
    print(table(("size", "params", "bare tok/s", "lightning tok/s", "lightning/bare"), rows))
    print("target: lightning/bare >= 0.95 at >= 1M parameters (1 thread, fp32, batch 32 x 128)")
    save("train_step", out)
    return out


if __name__ == "__main__":
    main()
