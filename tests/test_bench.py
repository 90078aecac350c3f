"""The benchmarks' own code without their measurements: the GPU bench's loops on the CPU at the debug size (a session
that is lent a GPU finds a bench that works; the GPU tier itself runs only there) and the attribution bench's table."""

from __future__ import annotations

import json

import pytest

from helpers import ROOT


@pytest.mark.slow
def test_gpu_bench_runs_its_four_loops_on_the_cpu(monkeypatch):
    import torch

    monkeypatch.syspath_prepend(str(ROOT))
    from bench import bench_gpu

    # Compiled through dynamo and AOTAutograd without inductor's C++ code generation: on a GPU inductor writes Triton, so
    # its CPU kernels check nothing the bench needs there (test_train's compiled cell checks them for the product), and
    # compiling them cold took about 40 of this test's 85 CPU seconds.
    compile_, compiled = torch.nn.Module.compile, []

    def aot_eager(self, **kw):
        compiled.append(type(self).__name__)
        return compile_(self, **{**kw, "backend": "aot_eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", aot_eager)

    out = bench_gpu.main(size="debug", device="cpu", batch=4, seq=64, steps=3, warmup=2)
    for key in ("eager_bare", "eager_lightning", "compiled_bare", "compiled_lightning"):
        assert out[key]["tok_s"] > 0 and out[key]["mfu"] is None  # no bf16 peak is known for a CPU
    assert out["flops_per_token"] > 6 * 35_008 and 0 < out["lightning_over_bare"]["compiled"]
    assert len(compiled) == 2, compiled  # the compiled bare loop's model and the compiled cell's; nothing else compiles on a CPU
    # the precision check (bf16-mixed vs fp32 cell) and the 2-size x 3-recipe smoke sweep with its report
    assert out["precision"]["ok"] and out["precision"]["max_abs_diff"] < bench_gpu.PRECISION_TOL
    assert out["sweep"]["cells"] == 6 and out["sweep"]["bottom_line"]


def test_the_selection_table_places_each_method_among_the_random_draws(monkeypatch):
    """bench_attribution's table on records with a known answer (own seeded generator): five random draws whose means
    spread by draw, a selection far below them (outside their prediction interval, lower than every draw, its paired
    difference to the draws' mean about -0.5) and one that is the draws' mean at every seed (z 0, inside, difference 0)."""
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT))
    from bench import bench_attribution as ba

    rng = np.random.default_rng(0)
    seeds, shift = range(6), rng.normal(0, 0.02, 6)  # a seed's initialisation moves every recipe alike
    draws = {d: 4.0 + rng.normal(0, 0.05) + shift + rng.normal(0, 0.01, 6) for d in ba.DRAWS}
    losses = {
        **draws,
        "balanced": 4.0 + shift,
        "dsdm_debug": np.mean(list(draws.values()), axis=0) - 0.5 + rng.normal(0, 0.01, 6),
        "dsdm_tiny": np.mean(list(draws.values()), axis=0),
    }
    recs = [{"status": "completed", "recipe": r, "size": "tiny", "seed": s, "final_loss": {"prose": float(v[s])}} for r, v in losses.items() for s in seeds]
    recs.append({"status": "failed", "recipe": "dsdm_tiny", "size": "tiny", "seed": 9, "final_loss": {"prose": 0.0}})
    t = ba._selection_table(recs, "prose", [*ba.BASELINES, "dsdm_debug", "dsdm_tiny"])
    null, rows = t["random_draws"]["tiny"], t["rows"]
    means = [float(np.mean(v)) for v in draws.values()]
    assert null["draws"] == 5 and abs(null["mean"] - np.mean(means)) < 1e-4 and abs(null["sd"] - np.std(means, ddof=1)) < 1e-4
    lo, hi = null["prediction_interval"]
    assert lo < min(means) and max(means) < hi
    good, same = rows["tiny/dsdm_debug"], rows["tiny/dsdm_tiny"]
    assert good["vs_draws"]["outside"] == "below" and good["vs_draws"]["lower_than"] == 5 and good["vs_draws"]["z"] < -5
    assert abs(good["minus_random"]["mean"] + 0.5) < 0.02 and good["minus_random"]["ci"][1] < 0
    assert same["vs_draws"] == {"z": 0.0, "lower_than": sum(same["mean"] < m for m in means), "outside": None} and abs(same["minus_random"]["mean"]) < 1e-4
    assert same["seeds"] == 6 and "vs_draws" not in rows["tiny/random_groups_draw2"] and "minus_balanced" in rows["tiny/random_groups_draw2"]
    count = ba._count({"prose": t})
    json.dumps({"table": t, "count": count})  # plain numbers: bench/results.json takes them
    assert count["paired_intervals"] == (5 + 2) + (1 + 2) and count["compared_with_draws"] == 3 and count["outside_prediction_interval"] >= 1
