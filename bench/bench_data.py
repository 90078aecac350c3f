"""Data path: tokenized-cache build throughput, and batch-loader throughput against what the
training step consumes (headroom = loader tokens/s / training tokens/s; target >= 5x)."""

from __future__ import annotations

import tempfile
import time

import torch
from hydra import compose, initialize_config_dir

from bench.common import save, table
from proxyscale.config import CONF_DIR
from proxyscale.data.cache import recipe_tokens
from proxyscale.job.module import CausalLM, train_loader


def main(size: str = "small") -> dict:
    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"model={size}", "data=balanced", "trainer.threads=1"])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        tokens, meta = recipe_tokens(cfg.data, tmp)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        recipe_tokens(cfg.data, tmp)
        hit_s = time.perf_counter() - t0

        steps = 200
        t0 = time.perf_counter()
        for _ in train_loader(tokens, cfg, steps):
            pass
        per_step = cfg.trainer.batch_size * cfg.trainer.seq_len
        loader_tok_s = steps * per_step / (time.perf_counter() - t0)

        module = CausalLM(cfg, 257, 20, [])
        opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
        batches = list(train_loader(tokens, cfg, 12))
        for i, b in enumerate(batches):
            if i == 2:
                t0 = time.perf_counter()
            loss = module._loss(b)
            loss.backward()
            opt.step()
            opt.zero_grad()
        train_tok_s = 10 * per_step / (time.perf_counter() - t0)

    out = {
        "cache_build_seconds": build_s,
        "cache_tokens": int(len(tokens)),
        "cache_build_tok_s": len(tokens) / build_s,
        "cache_hit_seconds": hit_s,
        "loader_tok_s": loader_tok_s,
        "train_tok_s": train_tok_s,
        "headroom": loader_tok_s / train_tok_s,
    }
    print(
        table(
            ("what", "value"),
            [
                ("cache build (balanced, 1.5M tokens, cold)", f"{build_s:.1f} s ({len(tokens) / build_s / 1e3:.0f}k tok/s)"),
                ("cache hit (memory map)", f"{hit_s * 1e3:.1f} ms"),
                ("loader", f"{loader_tok_s / 1e6:.2f}M tok/s"),
                (f"training step ({size}, 1 thread)", f"{train_tok_s / 1e3:.1f}k tok/s"),
                ("headroom (loader / training)", f"{loader_tok_s / train_tok_s:.0f}x  (target >= 5x)"),
            ],
        )
    )
    save("data", out)
    return out


if __name__ == "__main__":
    main()
