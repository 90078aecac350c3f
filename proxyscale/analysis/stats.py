"""The statistics every part of the analysis shares, so that one dataset gives one decision accuracy
everywhere (comparisons, predictions, the frontier, mixture fits, per-example correlations).

- Ties: two values tie when they differ by at most TIE_REL x the largest |value| of the comparison
  (float seed means such as 2.0999999999999996 and 2.1 are the same number to any reader); `snap` makes
  them exactly equal before any pair is counted.
- Decision accuracy (DA): the fraction of recipe pairs untied at both sizes that both sizes order alike,
  from sorted pair counts (linear memory, O(n log^2 n)).
- The tuned value: a recipe's seed mean at its best LR (per size, metric and, optionally, step).
- Rank correlations: scipy.stats (spearmanr, kendalltau) on tie-snapped values.
- Bootstrap: one resampling helper (multinomial counts over units, seeded) and percentile intervals.
- Intervals of Kendall's tau, DA and Spearman's rho: inverting the test |t - tau| <= z sd(tau; n) over
  tau, with sd(tau; n) the exact finite-n standard deviation of Kendall's statistic when the recipes'
  (proxy, target) values follow a Gaussian copula (Kendall 1949; Hoeffding's U-statistic variance:
  2 / (n (n-1)) [1 - tau^2 + 2 (n-2) (1/9 - (2/pi asin(rho/2))^2)], rho = sin(pi tau / 2)), plus the
  variance the seed noise adds, and a continuity correction of a quarter of the statistic's lattice step.
  Because sd(tau) shrinks to 0 only at tau = 1, a perfect ranking gets an interval with width (never
  [1, 1]) that contains its estimate; near 1 the interval narrows with the number of pairs, as it
  should. DA = (1 + gamma) / 2, gamma = Kendall's statistic over untied pairs (ties: n replaced by the
  recipe count whose pair count equals the untied pairs). Spearman's interval maps Kendall's through
  the same copula (rho_S = 6/pi asin(sin(pi tau/2) / 2)) and is widened to contain the estimate.
  Calibration (tests/test_stats.py, docs/statistics.md): 95% intervals cover 94-97% at 5-30 recipes.
- Simultaneous intervals: Bonferroni over the m claims a bottom line makes (z for 1 - alpha / (2 m)).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Iterator

import numpy as np
import pandas as pd

TIE_REL = 1e-9
TIE_RULE = f"values within {TIE_REL:g} x the largest |value| of the comparison are tied"
PAIR_BLOCK = 1 << 20  # pairs handled at once by the per-pair passes
Z95 = 1.959963984540054
ALPHA = 0.05
CONTINUITY = 0.5  # x 1/(pairs): a quarter of the lattice step 2/(pairs) of Kendall's statistic

# ---------------------------------------------------------------------------------------------
# ties, ranks, pair counts


def tie_tolerance(*arrays) -> float:
    vals = np.concatenate([np.abs(np.asarray(a, dtype=float)).ravel() for a in arrays])
    vals = vals[np.isfinite(vals)]
    return TIE_REL * float(vals.max()) if len(vals) else 0.0


def snap(v: np.ndarray, tol: float) -> np.ndarray:
    """Values within tol of their sorted neighbour replaced by the smallest of their run: exact ties."""
    v = np.asarray(v, dtype=float)
    order = np.argsort(v, kind="stable")
    s = v[order]
    new = np.r_[True, np.diff(s) > tol]
    out = np.empty_like(v)
    out[order] = s[new][np.cumsum(new) - 1]
    return out


def snapped(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Both vectors with the tie rule applied (one tolerance for the pair)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    tol = tie_tolerance(x, y)
    return snap(x, tol), snap(y, tol)


def pair_blocks(n: int, block: int = PAIR_BLOCK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(i, j) index arrays of the pairs i < j, a block of about `block` pairs at a time."""
    rows = max(1, block // max(n, 1))
    for start in range(0, n - 1, rows):
        a = np.arange(start, min(n - 1, start + rows))
        lens = n - 1 - a
        i = np.repeat(a, lens)
        j = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(a + 1, lens)
        yield i, j


def _tied_pairs(*cols: np.ndarray) -> int:
    _, cnt = np.unique(np.stack(cols, axis=1), axis=0, return_counts=True)
    return int((cnt * (cnt - 1) // 2).sum())


def discordant(xs: np.ndarray, ys: np.ndarray) -> int:
    """Pairs ordered oppositely (strictly at both sizes): inversions of y in (x, y) order, counted by a
    bottom-up merge sort whose levels are vectorised with np.searchsorted; O(n log^2 n), linear memory."""
    n = len(xs)
    a = np.unique(ys, return_inverse=True)[1][np.lexsort((ys, xs))].astype(np.int64)
    pos = np.arange(n)
    inv, w = 0, 1
    while w < n:
        blk = pos // (2 * w)
        key = a + blk * (n + 1)  # blocks stay apart after one global sort
        right = (pos % (2 * w)) >= w
        left = key[~right]
        end = np.searchsorted(left, (blk[right] + 1) * (n + 1), side="left")
        inv += int((end - np.searchsorted(left, key[right], side="right")).sum())
        a = np.sort(key) - blk * (n + 1)
        w *= 2
    return inv


def pair_counts(xs: np.ndarray, ys: np.ndarray) -> dict[str, int]:
    """Concordant/discordant/tied pair counts of tie-snapped values in O(n log^2 n) time, linear memory."""
    n = len(xs)
    n0 = n * (n - 1) // 2
    n1, n2, n3 = _tied_pairs(xs), _tied_pairs(ys), _tied_pairs(xs, ys)
    untied = n0 - n1 - n2 + n3
    d = discordant(xs, ys) if untied else 0
    return {"n0": n0, "tx": n1, "ty": n2, "txy": n3, "untied": untied, "C": untied - d, "D": d, "S": untied - 2 * d}


def decision_accuracy(x, y) -> float | None:
    """Fraction of recipe pairs untied (by the tie rule) at both x and y that x and y order alike; None without one."""
    cnt = pair_counts(*snapped(x, y))
    return 1.0 - cnt["D"] / cnt["untied"] if cnt["untied"] else None


def spearman(x, y) -> float | None:
    """Spearman's rho of tie-snapped values (scipy.stats.spearmanr); None when either side is constant."""
    xs, ys = snapped(x, y)
    if len(xs) < 2 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return None
    from scipy import stats

    return float(np.clip(stats.spearmanr(xs, ys)[0], -1, 1))


def kendall(x, y) -> float | None:
    """Kendall's tau-b of tie-snapped values (scipy.stats.kendalltau); None when either side is constant."""
    xs, ys = snapped(x, y)
    if len(xs) < 2 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return None
    from scipy import stats

    return float(np.clip(stats.kendalltau(xs, ys)[0], -1, 1))


# ---------------------------------------------------------------------------------------------
# the tuned value


def tuned(df: pd.DataFrame, higher: dict[str, bool] | bool, keys: tuple[str, ...] = ("metric", "size", "recipe"), step_keep: str = "final") -> pd.DataFrame:
    """Seed means, then each group's best LR -> one row per `keys` (+ step with step_keep="all") with its value
    and the LR it came from (column lr; -1 when no LR was given). Each run's last step is its final value."""
    d = df.copy()
    if "lr" not in d.columns:
        d["lr"] = -1.0
    d["lr"] = d["lr"].astype(float).fillna(-1.0)
    by = list(keys)
    if "step" in d.columns and d["step"].notna().any():
        d["step"] = d["step"].astype(float)
        if step_keep == "final":
            run = by + ["lr"] + (["seed"] if "seed" in d.columns else [])
            d = d[d["step"] == d.groupby(run, dropna=False)["step"].transform("max")]
        else:
            by = by + ["step"]
    mean = d.groupby(by + ["lr"], dropna=False)["value"].mean().reset_index()
    hib = mean["metric"].map(higher).astype(bool) if isinstance(higher, dict) else pd.Series(bool(higher), index=mean.index)
    score = np.where(hib, -mean["value"], mean["value"])
    best = mean.loc[pd.Series(score, index=mean.index).groupby([mean[k] for k in by], dropna=False).idxmin()]
    return best.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# bootstrap


def resample_counts(n: int, n_boot: int, rng: np.random.Generator | int) -> np.ndarray:
    """(n_boot, n) multinomial counts: how often each of n units is drawn in each bootstrap resample."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def percentile_interval(boot: np.ndarray, level: float = 0.95) -> list[float] | None:
    """Percentile interval of the finite replicates; None when it has no width (every resample agrees)."""
    b = np.asarray(boot, float)
    b = b[np.isfinite(b)]
    if not len(b):
        return None
    lo, hi = (float(v) for v in np.percentile(b, [50 * (1 - level), 50 * (1 + level)]))
    return [lo, hi] if hi > lo else None


def bootstrap_mean(x: np.ndarray, n_boot: int, rng: np.random.Generator, chunk: int = 200) -> list[float] | None:
    """95% percentile interval of the mean of x, resampling its entries with replacement."""
    x = np.asarray(x, float)
    if len(x) < 2 or not n_boot:
        return None
    means = [resample_counts(len(x), min(chunk, n_boot - k), rng) @ x / len(x) for k in range(0, n_boot, chunk)]
    return percentile_interval(np.concatenate(means))


# ---------------------------------------------------------------------------------------------
# rank intervals (module doc)

_TAU = np.unique(np.r_[np.linspace(-1.0, 1.0, 4001), 1.0 - np.geomspace(1e-7, 5e-4, 120), -1.0 + np.geomspace(1e-7, 5e-4, 120)])
_Z1 = 1.0 / 9.0 - (2.0 / np.pi * np.arcsin(np.sin(np.pi * _TAU / 2) / 2)) ** 2


def z_value(level: float = 0.95, m: int = 1) -> float:
    """Two-sided normal quantile of a `level` interval, Bonferroni-adjusted for m simultaneous intervals."""
    return Z95 if level == 0.95 and m <= 1 else NormalDist().inv_cdf(1 - (1 - level) / (2 * max(m, 1)))


def kendall_sd(tau, n: float) -> np.ndarray:
    """Finite-n sd of Kendall's statistic under a Gaussian copula with population tau (module doc)."""
    tau = np.asarray(tau, float)
    z1 = 1.0 / 9.0 - (2.0 / np.pi * np.arcsin(np.sin(np.pi * tau / 2) / 2)) ** 2
    return np.sqrt(np.maximum(2.0 / (n * (n - 1)) * (1 - tau**2 + 2 * (n - 2) * z1), 0.0))


def tau_intervals(t, n: float, extra_var: float = 0.0, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised `tau_interval` over estimates t (same n): (lo, hi) arrays."""
    t = np.atleast_1d(np.asarray(t, float))
    v = 2.0 / (n * (n - 1)) * (1 - _TAU**2 + 2 * (n - 2) * _Z1)
    sd = np.sqrt(np.maximum(v, 0.0) + max(extra_var, 0.0))
    ok = np.abs(t[:, None] - _TAU[None, :]) - CONTINUITY * 2.0 / (n * (n - 1)) <= z * sd[None, :] + 1e-12
    ok[np.arange(len(t)), np.abs(t[:, None] - _TAU[None, :]).argmin(axis=1)] = True  # the grid point at the estimate
    lo = np.where(ok, _TAU[None, :], np.inf).min(axis=1)
    hi = np.where(ok, _TAU[None, :], -np.inf).max(axis=1)
    return np.minimum(lo, t), np.maximum(hi, t)


def tau_interval(t: float, n: float, extra_var: float = 0.0, z: float = Z95) -> list[float]:
    """[lo, hi] of Kendall's tau: every tau the test |t - tau| <= z sd(tau; n) (+ seed variance) does not
    reject, with the continuity correction; contains t, has width unless n is huge and t = +-1."""
    lo, hi = tau_intervals(t, n, extra_var, z)
    return [float(lo[0]), float(hi[0])]


def n_from_pairs(pairs: int) -> float:
    """The recipe count whose pair count is `pairs` (ties leave fewer informative pairs)."""
    return (1.0 + math.sqrt(1.0 + 8.0 * pairs)) / 2.0


def da_interval_counts(C: int, D: int, seed_var_gamma: float = 0.0, z: float = Z95) -> list[float] | None:
    """DA interval from concordant/discordant counts: the tau interval of gamma = (C-D)/(C+D), mapped to (1+.)/2."""
    if C + D < 1:
        return None
    lo, hi = tau_interval((C - D) / (C + D), n_from_pairs(C + D), seed_var_gamma, z)
    return [(1 + lo) / 2, (1 + hi) / 2]


def spearman_from_tau(tau):
    """Population Spearman rho of a Gaussian copula with Kendall tau."""
    return 6.0 / np.pi * np.arcsin(np.sin(np.pi * np.asarray(tau, float) / 2) / 2)


def tau_from_spearman(rho_s):
    return 2.0 / np.pi * np.arcsin(2 * np.sin(np.pi * np.asarray(rho_s, float) / 6))


def spearman_interval(rho_s: float, tau_ci: list[float]) -> list[float]:
    """Spearman's interval: Kendall's mapped through the copula, widened to contain the estimate."""
    lo, hi = (float(v) for v in spearman_from_tau(tau_ci))
    return [min(lo, rho_s), max(hi, rho_s)]


def z_interval(est: float, se: float, z: float = Z95) -> list[float]:
    """Fisher-z interval (Pearson's r)."""
    c = math.atanh(min(max(est, -1 + 1e-12), 1 - 1e-12))
    return [math.tanh(c - z * se), math.tanh(c + z * se)]


def da_interval(x, y, z: float = Z95) -> list[float] | None:
    """The DA interval of two value vectors (recipe sampling only, no seed noise), as every comparison reports it."""
    cnt = pair_counts(*snapped(x, y))
    return da_interval_counts(cnt["C"], cnt["D"], 0.0, z)


# ---------------------------------------------------------------------------------------------
# seed noise: attenuation


def reliability(values, sd: float | None, k) -> float | None:
    """Share of the between-recipe variance of seed means that is not seed noise (1 - noise / observed)."""
    v = np.asarray(values, float)
    if sd is None or not np.isfinite(sd) or len(v) < 3:
        return None
    obs = float(v.var(ddof=1))
    noise = float(np.mean(sd**2 / np.asarray(k, float)))
    return max(0.0, 1.0 - noise / obs) if obs > 0 else None


def disattenuated_da(da: float | None, rel_x: float | None, rel_y: float | None) -> float | None:
    """DA of the noise-free recipe means under a Gaussian copula: correlation divided by sqrt(rel_x rel_y)
    (Spearman's correction), mapped back to DA; None without a reliability."""
    if da is None or rel_x is None and rel_y is None:
        return None
    r = (rel_x if rel_x is not None else 1.0) * (rel_y if rel_y is not None else 1.0)
    if r <= 0:
        return None
    rho = math.sin(math.pi * (2 * da - 1) / 2) / math.sqrt(r)
    return (1 + 2 / math.pi * math.asin(max(-1.0, min(1.0, rho)))) / 2


# ---------------------------------------------------------------------------------------------
# p-values


def format_p(p: float | None, floor: float | None = None) -> str:
    """'p 0.013', or 'p < 0.0002' when p sits at its Monte Carlo floor (the smallest value the test can give)."""
    if p is None:
        return "p n/a"
    if floor is not None and p <= floor * (1 + 1e-9):
        return f"p < {floor:.2g}" if floor > 0 else "p n/a"
    return f"p {p:.2g}"
