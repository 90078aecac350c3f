"""GPU tier, one timed script for the first lent GPU (`python -m bench gpu`, under 8 minutes on one H100):

1. throughput: tokens/s and MFU of a ~125M proxyscale cell (the `125m` rung with a 50k BPE-sized
   vocabulary) in bf16, eager and with torch.compile (trainer.compile), each measured as the real
   Lightning cell and as a bare PyTorch loop over the same model, batches and optimizer, side by side.
   MFU = tokens/s x training FLOPs per token (6N + attention, proxyscale.budget.flops_per_token, the
   PaLM convention) / the device's peak dense bf16 FLOP/s. Goal >= 40% on an H100 (published anchors at
   this scale: ~41-45% on A100/H100).
2. precision: the same cell (20m, built-in data) trained as trainer=gpu does (bf16-mixed, compiled) and in
   fp32, not compiled: their final eval losses agree within PRECISION_TOL nats on every eval set.
3. sweep: a 2-size x 3-recipe smoke sweep through the CLI (`proxyscale -m ... trainer=gpu`) and its report.

Without CUDA it prints one line and records nothing; `device="cpu"` runs the same code path on the CPU
(a test does, at the debug size, so a lent GPU finds a working bench).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.bench_train import bare, cell_cfg, lightning
from bench.common import save, table
from proxyscale.budget import flops_per_token, ladder, n_params
from proxyscale.job import quiet_lightning

VOCAB, SEQ, BATCH, STEPS, WARMUP = 50_304, 1024, 16, 30, 10
BUDGET_S = 480  # the whole script on one H100
PRECISION_TOL = 0.05  # nats: bf16-mixed + compiled vs fp32, final eval loss of each eval set (short runs; bf16 rounding, not a bug)
ROOT = Path(__file__).resolve().parents[1]
GPU_CELLS = {"precision": "20m", "sweep": ("20m", "60m"), "tokens": 2_097_152}  # per cell: 32 steps of trainer=gpu's 64 x 1024
CPU_CELLS = {"precision": "debug", "sweep": ("debug", "tiny"), "tokens": 16_384}  # the CPU stand-in (4 steps of 32 x 128): seconds
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


def _cell_overrides(device: str, tokens: int) -> list[str]:
    gpu = device == "cuda"
    return [
        "trainer=gpu" if gpu else "trainer=cpu",
        f"trainer.max_tokens={tokens}",
        *([] if gpu else ["trainer.seq_len=128", "trainer.batch_size=32", "trainer.threads=1"]),
        "eval.every_n_steps=16",
        "eval.tokens_per_set=65536" if gpu else "eval.tokens_per_set=2048",
        "data.pool_tokens=4000000" if gpu else "data.pool_tokens=200000",
    ]


def precision(device: str, work: Path) -> dict:
    """The trainer=gpu cell (bf16-mixed, compiled on CUDA) vs the same cell in fp32, not compiled: final eval losses."""
    from proxyscale.job import run_cell

    cells = GPU_CELLS if device == "cuda" else CPU_CELLS
    base = [f"paths.output_dir={work}", f"paths.cache_dir={work / 'cache'}", "sweep=precision", *_cell_overrides(device, cells["tokens"])]
    recs = {}
    variants = {"bf16": ["trainer.precision=bf16-mixed", f"trainer.compile={device == 'cuda'}"], "fp32": ["trainer.precision=32-true", "trainer.compile=false"]}
    for name, extra in variants.items():
        cfg = cell_cfg(cells["precision"], *base, *extra)
        t0 = time.perf_counter()
        rec = run_cell(cfg)
        assert rec is not None and rec.status == "completed", f"{name} cell: {rec.status if rec else 'busy'} {rec.error if rec else ''}"
        recs[name] = {"final_loss": rec.final_loss, "tokens_per_second": rec.tokens_per_second, "seconds": time.perf_counter() - t0}
    diff = {k: abs(recs["bf16"]["final_loss"][k] - recs["fp32"]["final_loss"][k]) for k in recs["fp32"]["final_loss"]}
    return {**recs, "size": cells["precision"], "max_abs_diff": max(diff.values()), "tolerance": PRECISION_TOL, "ok": max(diff.values()) <= PRECISION_TOL}


def sweep(device: str, work: Path) -> dict:
    """2 sizes x 3 recipes through the CLI, then the report; what each step took and what the report says."""
    cells = GPU_CELLS if device == "cuda" else CPU_CELLS
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    args = ["-m", f"model={','.join(cells['sweep'])}", "data=balanced,noisy,code_heavy", *_cell_overrides(device, cells["tokens"])]
    # (not compiled: compiling each short cell would cost more than it trains; the precision check covers compile)
    args += ["trainer.compile=false", "sweep=smoke", f"paths.output_dir={work}", f"paths.cache_dir={work / 'cache'}"]
    out = {}
    for step, cmd in (("sweep", args), ("report", ["report", str(work / "smoke")])):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "proxyscale", *cmd], cwd=ROOT, env=env, capture_output=True, text=True)
        out[f"{step}_seconds"] = time.perf_counter() - t0
        if r.returncode:
            raise RuntimeError(f"smoke {step} exited {r.returncode}: {r.stderr.strip().splitlines()[-1:] or r.stdout[-500:]}")
    rep = json.loads((work / "smoke" / "report.json").read_text())
    out["bottom_line"] = rep["summary"]["bottom_line"]
    out["cells"] = len(list((work / "smoke").glob("*/result.json")))
    return out


def main(
    size: str = "125m", device: str | None = None, batch: int = BATCH, seq: int = SEQ, steps: int = STEPS, warmup: int = WARMUP, cells: bool = True
) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        print("skipped: no CUDA device (the GPU tier runs only where a GPU is lent)")
        return {}
    quiet_lightning()
    t_start = time.perf_counter()
    out = measure(size, device, batch, seq, steps, warmup)
    out["throughput_seconds"] = time.perf_counter() - t_start
    rows = []
    for key in ("eager_bare", "eager_lightning", "compiled_bare", "compiled_lightning"):
        r = out[key]
        rows.append((key.replace("_", " "), f"{r['tok_s'] / 1e3:.1f}k", f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a (unknown peak)"))
    print(f"{out['device']}: {size} ({out['params'] / 1e6:.0f}M params), batch {batch} x {seq}, bf16-mixed, {steps} timed steps")
    print(table(("run", "tokens/s", "MFU"), rows))
    ratio = {m: out[f"{m}_lightning"]["tok_s"] / out[f"{m}_bare"]["tok_s"] for m in ("eager", "compiled")}
    speedup = out["compiled_lightning"]["tok_s"] / out["eager_lightning"]["tok_s"]
    out["lightning_over_bare"], out["compile_speedup"] = ratio, speedup
    print(f"lightning/bare: eager {ratio['eager']:.2f}, compiled {ratio['compiled']:.2f}; compiled/eager cell {speedup:.2f}x; goal MFU >= 40% (anchors 41-45%)")
    if cells:
        with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
            t0 = time.perf_counter()
            p = out["precision"] = precision(device, Path(tmp))
            p["seconds"] = time.perf_counter() - t0
            print(
                f"precision ({p['size']}): bf16-mixed{'+compiled' if device == 'cuda' else ''} vs fp32 final eval loss max |diff| "
                f"{p['max_abs_diff']:.4f} nats (tolerance {PRECISION_TOL}): {'ok' if p['ok'] else 'FAILED'}; {p['seconds']:.0f} s"
            )
            sw = out["sweep"] = sweep(device, Path(tmp))
            print(f"smoke sweep: {sw['cells']} cells in {sw['sweep_seconds']:.0f} s, report in {sw['report_seconds']:.1f} s")
            for line in sw["bottom_line"]:
                print(f"  {line}")
    out["total_seconds"] = time.perf_counter() - t_start
    print(f"total {out['total_seconds']:.0f} s (budget {BUDGET_S} s on one H100){'' if out['total_seconds'] <= BUDGET_S else ': OVER BUDGET'}")
    if device == "cuda":
        save("gpu", out)
    return out


if __name__ == "__main__":
    main()
