"""GPU tier: tokens/s and MFU of a ~150M cell (the `150m` rung, a 50k BPE-sized vocabulary) in
bf16 with torch.compile, eager vs compiled side by side. MFU = tokens/s x training FLOPs per token
(6N + attention, proxyscale.model.flops_per_token) / the device's peak dense bf16 FLOP/s. Published
anchors at this scale: ~41-45% on A100/H100. Skipped, never failed, without CUDA."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from proxyscale.model import build, flops_per_token, registry

from bench.common import save, table

VOCAB, SEQ, BATCH, STEPS, WARMUP = 50_304, 1024, 16, 30, 10
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, SXM


def _peak(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def _tok_s(net, compiled: bool) -> float:
    model = torch.compile(net) if compiled else net
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4, fused=True)
    x = torch.randint(0, VOCAB, (BATCH, SEQ + 1), device="cuda")
    for i in range(WARMUP + STEPS):
        if i == WARMUP:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x[:, :-1]).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), x[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return STEPS * BATCH * SEQ / (time.perf_counter() - t0)


def main(size: str = "150m") -> dict:
    if not torch.cuda.is_available():
        print("skipped: no CUDA device (the GPU tier runs only where a GPU is lent)")
        save("gpu", {"skipped": "no CUDA device"})
        return {}
    name = torch.cuda.get_device_name()
    m = registry()[size]
    net = build(m, VOCAB, SEQ).cuda()
    fpt = flops_per_token(m, VOCAB, SEQ)
    peak = _peak(name)
    out, rows = {"device": name, "size": size, "flops_per_token": fpt}, []
    for compiled in (False, True):
        tps = _tok_s(net, compiled)
        mfu = tps * fpt / peak if peak else None
        key = "compiled" if compiled else "eager"
        out[key] = {"tok_s": tps, "mfu": mfu}
        rows.append((key, f"{tps / 1e3:.0f}k", f"{mfu:.1%}" if mfu else "n/a (unknown peak)"))
    print(f"{name}: {size}, batch {BATCH} x {SEQ}, bf16 autocast, fused AdamW")
    print(table(("mode", "tokens/s", "MFU"), rows))
    print(f"compiled / eager: {out['compiled']['tok_s'] / out['eager']['tok_s']:.2f}x; anchor MFU at this scale: 41-45%")
    save("gpu", out)
    return out


if __name__ == "__main__":
    main()
