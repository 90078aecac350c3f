"""Calibration of the verdicts and intervals on seeded synthetic data with a known answer: an independent
proxy or a target drowned in its seed noise must rarely "hold", a proxy sharing strong effects must
usually hold, and the 95% intervals must cover their population values 93-97% of the time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from proxyscale.analysis import compare as C
from proxyscale.analysis.verdict import verdict

REPS = 400


def seeded_cells(rng, effects: np.ndarray, sd: float, k: int) -> tuple[np.ndarray, float | None, np.ndarray]:
    """(seed means, pooled seed sd or None for k=1, seeds per recipe) of one size."""
    cells = effects[:, None] + sd * rng.normal(size=(len(effects), k))
    if k == 1:
        return cells[:, 0], None, np.ones(len(effects))
    return cells.mean(1), float(np.sqrt(cells.var(axis=1, ddof=1).mean())), np.full(len(effects), float(k))


def holds_rate(n: int, k: int, make, seed: int, reps: int = REPS) -> float:
    rng = np.random.default_rng(seed)
    names = [f"r{i}" for i in range(n)]
    hits = 0
    for _ in range(reps):
        (px, psd, pk), (ty, tsd, tk) = make(rng, n, k)
        c = C.compare(names, px, ty, n_boot=50, seed=1, proxy_sd=psd, proxy_k=pk, target_sd=tsd, target_k=tk).to_dict()
        hits += verdict(c)[0] == "holds"
    return hits / reps


def independent(rng, n, k):
    return seeded_cells(rng, rng.normal(size=n), 0.3, k), seeded_cells(rng, rng.normal(size=n), 0.3, k)


def drowned_target(rng, n, k):
    """Shared recipe effects, strong at the proxy, 30x below the target's seed noise."""
    e = rng.normal(size=n)
    return seeded_cells(rng, e, 0.1, k), seeded_cells(rng, 0.03 * e, 1.0, k)


def shared_strong(rng, n, k):
    e = rng.normal(size=n)
    return seeded_cells(rng, e + 0.1 * rng.normal(size=n), 0.1, k), seeded_cells(rng, e, 0.1, k)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("n", [3, 4, 5, 8])
def test_independent_proxy_rarely_holds(n, k):
    rate = holds_rate(n, k, independent, seed=100 * n + k)
    assert rate <= 0.05, rate


def test_target_below_its_seed_noise_rarely_holds():
    rate = holds_rate(10, 3, drowned_target, seed=7)
    assert rate <= 0.05, rate


def test_shared_strong_effects_usually_hold():
    """holds needs the interval's lower end at the 0.8 bar: a DA-0.95 proxy gets there from ~15 recipes (10: ~40%)."""
    rate = holds_rate(15, 3, shared_strong, seed=11, reps=200)
    assert rate >= 0.8, rate


def test_small_cases_never_hold():
    """3 recipes, a single untied pair, or a constant target are never evidence."""
    assert verdict(C.compare(["a", "b", "c"], [1.0, 2, 3], [1.0, 2, 3]).to_dict())[0] == "inconclusive"
    one = C.compare(["a", "b", "c", "d"], [1.0, 1, 1, 2], [1.0, 1, 1, 2]).to_dict()
    assert one["n_pairs"] == 3 and one["decision_accuracy_ci"][1] > one["decision_accuracy_ci"][0]
    v, why = verdict(one)
    assert v == "inconclusive" and "untied pair" in why and "assumes" in why
    flat = C.compare(["a", "b", "c", "d", "e"], [1.0, 2, 3, 4, 5], [1.0, 1, 1, 1, 1]).to_dict()
    assert verdict(flat)[0] == "inconclusive"


def test_drowned_target_reason_asks_for_target_seeds():
    rng = np.random.default_rng(3)
    (px, psd, pk), (ty, tsd, tk) = drowned_target(rng, 10, 3)
    c = C.compare([f"r{i}" for i in range(10)], px, ty, proxy_sd=psd, proxy_k=pk, target_sd=tsd, target_k=tk, n_boot=50).to_dict()
    v, why = verdict(c)
    assert v == "inconclusive" and "add seeds at the target" in why and c["target_noise"]["frac_resolvable"] < 0.5


def test_clear_disagreement_fails():
    rng = np.random.default_rng(5)
    e = rng.normal(size=40)
    (px, psd, pk), (ty, tsd, tk) = seeded_cells(rng, -e, 0.05, 3), seeded_cells(rng, e, 0.05, 3)
    c = C.compare([f"r{i}" for i in range(40)], px, ty, proxy_sd=psd, proxy_k=pk, target_sd=tsd, target_k=tk, n_boot=50).to_dict()
    assert verdict(c)[0] == "fails"


@pytest.mark.parametrize("n,rho", [(8, 0.5), (20, 0.8)])
def test_interval_coverage(n, rho):
    """Estimands of a bivariate normal with correlation rho: Pearson rho, Spearman (6/pi) asin(rho/2),
    decision accuracy 1/2 + asin(rho)/pi (the probability that a random pair is ordered alike)."""
    truth = {"pearson": rho, "spearman": 6 / math.pi * math.asin(rho / 2), "decision_accuracy": 0.5 + math.asin(rho) / math.pi}
    rng = np.random.default_rng(n)
    reps = 1500
    hit = dict.fromkeys(truth, 0)
    names = [f"r{i}" for i in range(n)]
    for _ in range(reps):
        x = rng.normal(size=n)
        y = rho * x + math.sqrt(1 - rho * rho) * rng.normal(size=n)
        c = C.compare(names, x, y, n_boot=0, with_test=False)
        for key, t in truth.items():
            lo, hi = getattr(c, key + "_ci")
            hit[key] += lo <= t <= hi
    cover = {k: v / reps for k, v in hit.items()}
    assert all(0.93 <= v <= 0.97 for v in cover.values()), cover
