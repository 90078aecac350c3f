"""The GPU benchmark's code path, run on the CPU at the debug size: a session that is lent a GPU
finds a bench that works (the GPU tier itself runs only there)."""

from __future__ import annotations

import pytest

from helpers import ROOT


@pytest.mark.slow
def test_gpu_bench_runs_its_four_loops_on_the_cpu(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from bench import bench_gpu

    out = bench_gpu.main(size="debug", device="cpu", batch=4, seq=64, steps=3, warmup=2)
    for key in ("eager_bare", "eager_lightning", "compiled_bare", "compiled_lightning"):
        assert out[key]["tok_s"] > 0 and out[key]["mfu"] is None  # no bf16 peak is known for a CPU
    assert out["flops_per_token"] > 6 * 35_008 and 0 < out["lightning_over_bare"]["compiled"]
    # the precision check (bf16-mixed vs fp32 cell) and the 2-size x 3-recipe smoke sweep with its report
    assert out["precision"]["ok"] and out["precision"]["max_abs_diff"] < bench_gpu.PRECISION_TOL
    assert out["sweep"]["cells"] == 6 and out["sweep"]["bottom_line"]
