"""GPU tier: tokens/s and MFU of a ~125M proxyscale cell (the `125m` rung with a 50k BPE-sized
vocabulary) in bf16, eager and with torch.compile (trainer.compile), each measured as the real
Lightning cell and as a bare PyTorch loop over the same model, batches and optimizer, side by side.

MFU = tokens/s x training FLOPs per token (6N + attention, proxyscale.budget.flops_per_token, the
PaLM convention) / the device's peak dense bf16 FLOP/s. Published anchors at this scale: ~41-45%
on A100/H100. Without CUDA it prints that it skipped and records nothing; `device="cpu"` runs the
same code path on the CPU (a test does, at the debug size, so a lent GPU finds a working bench).
"""

from __future__ import annotations

import numpy as np
import torch

from bench.bench_train import bare, cell_cfg, lightning
from bench.common import save, table
from proxyscale.budget import flops_per_token, ladder, n_params
from proxyscale.job import quiet_lightning

VOCAB, SEQ, BATCH, STEPS, WARMUP = 50_304, 1024, 16, 30, 10
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense, SXM where both exist


def peak_bf16(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in device_name), None)


def measure(size: str, device: str, batch: int, seq: int, steps: int, warmup: int) -> dict:
    """{eager, compiled} x {lightning, bare} tokens/s and MFU of one size on one device."""
    accel = {"cuda": "gpu", "cpu": "cpu"}[device]
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = peak_bf16(name)
    tokens = np.random.default_rng(0).integers(0, VOCAB, max(2_000_000, 4 * batch * (seq + 1))).astype(np.uint16)
    m = ladder()[size]
    fpt = flops_per_token(m, VOCAB, seq)
    out: dict = {"device": name, "size": size, "params": n_params(m, VOCAB), "flops_per_token": fpt, "batch": batch, "seq_len": seq, "peak_bf16": peak}
    for mode in ("eager", "compiled"):
        cfg = cell_cfg(
            size,
            "trainer=gpu",
            f"trainer.accelerator={accel}",
            f"trainer.batch_size={batch}",
            f"trainer.seq_len={seq}",
            f"trainer.compile={mode == 'compiled'}",
        )
        for loop in (lightning, bare):
            tps = loop(cfg, tokens, VOCAB, steps, warmup)
            out[f"{mode}_{loop.__name__}"] = {"tok_s": tps, "mfu": tps * fpt / peak if peak else None}
    return out


def main(size: str = "125m", device: str | None = None, batch: int = BATCH, seq: int = SEQ, steps: int = STEPS, warmup: int = WARMUP) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        print("skipped: no CUDA device (the GPU tier runs only where a GPU is lent)")
        return {}
    quiet_lightning()
    out = measure(size, device, batch, seq, steps, warmup)
    rows = []
    for key in ("eager_bare", "eager_lightning", "compiled_bare", "compiled_lightning"):
        r = out[key]
        rows.append((key.replace("_", " "), f"{r['tok_s'] / 1e3:.1f}k", f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a (unknown peak)"))
    print(f"{out['device']}: {size} ({out['params'] / 1e6:.0f}M params), batch {batch} x {seq}, bf16-mixed, {steps} timed steps")
    print(table(("run", "tokens/s", "MFU"), rows))
    ratio = {m: out[f"{m}_lightning"]["tok_s"] / out[f"{m}_bare"]["tok_s"] for m in ("eager", "compiled")}
    speedup = out["compiled_lightning"]["tok_s"] / out["eager_lightning"]["tok_s"]
    out["lightning_over_bare"], out["compile_speedup"] = ratio, speedup
    print(f"lightning/bare: eager {ratio['eager']:.2f}, compiled {ratio['compiled']:.2f}; compiled/eager cell {speedup:.2f}x; anchor MFU at this scale: 41-45%")
    if device == "cuda":
        save("gpu", out)
    return out


if __name__ == "__main__":
    main()
