"""One comparison of a proxy ranking with a target ranking: correlations with intervals, decision
accuracy, a rank test, flips, regret, abstentions and the target's own resolution.

Memory is linear in the recipe count: pair counts come from sorting (a vectorised merge count, tie groups
via np.unique) and every per-pair pass (flips, noise) walks the pairs in blocks of PAIR_BLOCK.

Ties, decision accuracy and the intervals are those of `proxyscale.analysis.stats` (one home for all of
them). Intervals (95%): Fisher z for Pearson; Kendall, decision accuracy and Spearman by inverting
Kendall's test under a Gaussian copula (never zero-width, always containing the estimate). With seed
replicates the variance of each statistic under the seed noise of both sizes (seed means redrawn as
mean + N(0, pooled sd^2 / k), n_boot replicates) is added to the recipe-sampling variance: a two-level
(recipes, then seeds) model. Seed noise also pulls every agreement figure toward chance (attenuation):
`attenuation` gives each size's reliability and the DA of noise-free means under the copula.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from proxyscale.analysis.stats import (
    PAIR_BLOCK,
    TIE_RULE,
    da_interval_counts,
    disattenuated_da,
    kendall,
    kendall_sd,
    n_from_pairs,
    pair_blocks,
    pair_counts,
    reliability,
    snap,
    spearman,
    spearman_interval,
    tau_interval,
    tie_tolerance,
    z_interval,
)
from proxyscale.analysis.types import STATISTICS, Comparison

MAX_FLIPS = 100
FIGS = ("pearson", "r2", "spearman", "kendall", "decision_accuracy")
MC_PERMUTATIONS = 5000
MC_FLOOR = 1.0 / (1 + MC_PERMUTATIONS)  # the smallest p the Monte Carlo permutation test can give


def _kendall_normal_p(xs: np.ndarray, ys: np.ndarray, s: int) -> float:
    """One-sided p of S under independence, normal approximation with the tie-corrected variance of S."""
    n = len(xs)
    tx, ty = (np.unique(v, return_counts=True)[1].astype(float) for v in (xs, ys))
    v0 = n * (n - 1) * (2 * n + 5)
    vt, vu = (tx * (tx - 1) * (2 * tx + 5)).sum(), (ty * (ty - 1) * (2 * ty + 5)).sum()
    v1 = (tx * (tx - 1)).sum() * (ty * (ty - 1)).sum() / (2 * n * (n - 1))
    v2 = (tx * (tx - 1) * (tx - 2)).sum() * (ty * (ty - 1) * (ty - 2)).sum() / (9 * n * (n - 1) * (n - 2))
    var = (v0 - vt - vu) / 18 + v1 + v2
    return 0.5 * math.erfc(s / math.sqrt(2 * var)) if var > 0 else 1.0


def rank_test(xs: np.ndarray, ys: np.ndarray, s: int, seed: int = 0) -> tuple[float | None, str | None]:
    """One-sided p of Kendall's S >= observed under random pairing of proxy and target values.
    Exact distribution without ties (n <= 60); with ties every permutation up to 8 recipes, 5,000 seeded
    random permutations up to 60; the tie-corrected normal approximation beyond."""
    n = len(xs)
    if n < 3:
        return None, None
    ties = len(np.unique(xs)) < n or len(np.unique(ys)) < n
    if not ties and n <= 60:
        from scipy import stats

        return float(stats.kendalltau(xs, ys, method="exact", alternative="greater").pvalue), "exact Kendall distribution"
    if n <= 60:
        iu = np.triu_indices(n, 1)
        sx = np.sign(xs[iu[0]] - xs[iu[1]])
        if n <= 8:
            perms = np.array(list(itertools.permutations(range(n))))
            how = "all permutations"
        else:
            perms = np.argsort(np.random.default_rng(seed).random((MC_PERMUTATIONS, n)), axis=1)
            how = f"{MC_PERMUTATIONS:,} random permutations"
        yp = ys[perms]
        sp = np.sign(yp[:, iu[0]] - yp[:, iu[1]]) @ sx
        if n <= 8:
            return float((sp >= s - 0.5).mean()), how
        return float((1 + (sp >= s - 0.5).sum()) / (1 + len(sp))), how
    return _kendall_normal_p(xs, ys, s), "normal approximation (tie-corrected)"


def _rows_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ac, bc = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ac * bc).sum(1) / np.sqrt((ac * ac).sum(1) * (bc * bc).sum(1))


def _rows_kendall(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: Kendall tau-b and gamma, pair blocks sized so rows x pairs stays near PAIR_BLOCK."""
    R, n = a.shape
    s = np.zeros(R)
    nx = np.zeros(R)
    ny = np.zeros(R)
    both = np.zeros(R)
    for i, j in pair_blocks(n, max(1, PAIR_BLOCK // R)):
        dx, dy = np.sign(a[:, i] - a[:, j]), np.sign(b[:, i] - b[:, j])
        p = dx * dy
        s += p.sum(1)
        nx += (dx != 0).sum(1)
        ny += (dy != 0).sum(1)
        both += (p != 0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / np.sqrt(nx * ny), s / both


def seed_variance(x, y, sdx, kx, sdy, ky, reps: int, seed: int) -> dict[str, float]:
    """Variance of each statistic when the seed means of both sizes are redrawn within their noise:
    Pearson on the Fisher-z scale, Kendall's tau-b and gamma on their own scale (the rank intervals add it there)."""
    n = len(x)
    rng = np.random.default_rng(seed + 7919)
    if n > 400:
        reps = min(reps, 50)  # pair passes are O(n^2) per replicate
    X = x + (rng.normal(size=(reps, n)) * (sdx / np.sqrt(kx)) if sdx else 0.0)
    Y = y + (rng.normal(size=(reps, n)) * (sdy / np.sqrt(ky)) if sdy else 0.0)
    X, Y = np.broadcast_to(X, (reps, n)), np.broadcast_to(Y, (reps, n))
    tau, gamma = _rows_kendall(X, Y)
    shrink = (n * (n - 1) / 2) / (n * (n - 1) / 2 + 1)  # a perfect replicate sits at P/(P+1), like a perfect estimate
    stats = {"pearson": np.arctanh(shrink * _rows_pearson(X, Y)), "kendall": tau, "gamma": gamma}
    out = {}
    for k, v in stats.items():
        v = v[np.isfinite(v)]
        out[k] = float(v.var(ddof=1)) if len(v) > 1 else 0.0
    return out


def _seed_share(cnt: dict, var_gamma: float) -> float | None:
    """Share of gamma's variance due to seed noise (the rest: which recipes were sampled) at the estimate."""
    if not cnt["C"] + cnt["D"]:
        return None
    g = (cnt["C"] - cnt["D"]) / (cnt["C"] + cnt["D"])
    rec = float(kendall_sd(min(abs(g), 1 - 1e-6), n_from_pairs(cnt["C"] + cnt["D"])) ** 2)
    rec = max(rec, 1.0 / (cnt["C"] + cnt["D"]) ** 2)  # a perfect ranking still varies by a pair
    return var_gamma / (var_gamma + rec)


def intervals(n: int, r: float | None, rho: float | None, tau: float | None, counts: dict, var: dict) -> dict[str, list | None]:
    """95% intervals of every figure (see stats): Fisher z for Pearson, the rank intervals for the rest."""
    out: dict[str, list | None] = {k + "_ci": None for k in FIGS}
    if r is not None and n >= 4:
        out["pearson_ci"] = z_interval(r, math.sqrt(1 / (n - 3) + var.get("pearson", 0.0)))
        lo, hi = out["pearson_ci"]
        out["r2_ci"] = [0.0 if lo < 0 < hi else min(lo * lo, hi * hi), max(lo * lo, hi * hi)]
    if tau is not None and n >= 3:
        out["kendall_ci"] = tau_interval(tau, n, var.get("kendall", 0.0))
        if rho is not None:
            out["spearman_ci"] = spearman_interval(rho, out["kendall_ci"])
    if counts["C"] + counts["D"] and n >= 3:
        out["decision_accuracy_ci"] = da_interval_counts(counts["C"], counts["D"], var.get("gamma", 0.0))
    return out


def _flips(recipes, x, y, xs, ys, higher_is_better: bool, max_flips: int) -> list[dict]:
    """The max_flips discordant pairs with the largest target gap, walking the pairs in blocks."""
    keep_i, keep_j, keep_g = np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    for i, j in pair_blocks(len(x)):
        f = np.sign(xs[i] - xs[j]) * np.sign(ys[i] - ys[j]) < 0
        if f.any():
            keep_i, keep_j = np.r_[keep_i, i[f]], np.r_[keep_j, j[f]]
            keep_g = np.r_[keep_g, np.abs(y[i[f]] - y[j[f]])]
            if len(keep_g) > max_flips:
                top = np.lexsort((keep_j, keep_i, -keep_g))[:max_flips]
                keep_i, keep_j, keep_g = keep_i[top], keep_j[top], keep_g[top]
    order = np.lexsort((keep_j, keep_i, -keep_g))[:max_flips]
    better = (lambda u, v: u > v) if higher_is_better else (lambda u, v: u < v)
    return [
        {
            "a": recipes[a],
            "b": recipes[b],
            "proxy_a": float(x[a]),
            "proxy_b": float(x[b]),
            "target_a": float(y[a]),
            "target_b": float(y[b]),
            "proxy_prefers": recipes[a] if better(xs[a], xs[b]) else recipes[b],
            "target_prefers": recipes[a] if better(ys[a], ys[b]) else recipes[b],
        }
        for a, b in zip(keep_i[order], keep_j[order])
    ]


def regret(recipes, x, y, higher_is_better: bool = False) -> dict[str, Any]:
    """Pick by proxy; how much worse (target units, >= 0) than the best target recipe. Proxy ties are
    not broken: top1 is the worst regret over the tied picks (top1_mean their mean); top-k takes the
    worst choice among recipes tied at the k-th place."""
    recipes = list(recipes)
    s = -1.0 if higher_is_better else 1.0
    tol = tie_tolerance(x, y)
    sx, sy = s * snap(np.asarray(x, float), tol), s * snap(np.asarray(y, float), tol)
    best = sy.min()
    picks = np.flatnonzero(sx == sx.min())
    reg = sy[picks] - best
    out = {
        "best_targets": [recipes[i] for i in np.flatnonzero(sy == best)],
        "top1_picks": [recipes[i] for i in picks],
        "top1": float(reg.max()),
        "top1_mean": float(reg.mean()),
        "top1_target_rank": int((sy < sy[picks].max()).sum()) + 1,
        "k": None,
        "topk": None,
        "topk_picks": None,
    }
    if len(recipes) >= 4:
        k = 3
        edge = np.sort(sx)[k - 1]
        strict = np.flatnonzero(sx < edge)
        tied = np.flatnonzero(sx == edge)
        worst = tied[np.argsort(-sy[tied], kind="stable")][: k - len(strict)]
        chosen = np.r_[strict, worst]
        out.update(k=k, topk=float(sy[chosen].min() - best), topk_picks=[recipes[i] for i in np.r_[strict, tied]])
    return out


def _noise_pass(xs, ys, y, proxy_sd, proxy_k, target_sd, target_k):
    """Per-pair noise figures in one blocked pass: proxy abstentions and target resolvability."""
    acc = {"within": 0, "keep": 0, "keep_flip": 0, "resolvable": 0, "untied": 0}
    gaps = []
    n = len(xs)
    for i, j in pair_blocks(n):
        px, py = np.sign(xs[i] - xs[j]), np.sign(ys[i] - ys[j])
        untied = (px != 0) & (py != 0)
        acc["untied"] += int(untied.sum())
        if proxy_sd is not None:
            within = np.abs(xs[i] - xs[j]) < 2.0 * proxy_sd * np.sqrt(1.0 / proxy_k[i] + 1.0 / proxy_k[j])
            keep = untied & ~within
            acc["within"] += int((within & untied).sum())
            acc["keep"] += int(keep.sum())
            acc["keep_flip"] += int((keep & (px * py < 0)).sum())
        if target_sd is not None:
            gap = np.abs(y[i] - y[j])
            acc["resolvable"] += int((untied & (gap > 2.0 * target_sd * np.sqrt(1.0 / target_k[i] + 1.0 / target_k[j]))).sum())
            if n <= 3000:
                gaps.append(gap[untied])
    acc["median_gap"] = float(np.median(np.concatenate(gaps))) if gaps and sum(map(len, gaps)) else None
    return acc


def compare(
    recipes: list[str],
    x,
    y,
    *,
    higher_is_better: bool = False,
    n_boot: int = 200,
    seed: int = 0,
    proxy_sd: float | None = None,
    proxy_k=None,
    target_sd: float | None = None,
    target_k=None,
    abstain_reason: str | None = None,
    max_flips: int = MAX_FLIPS,
    with_test: bool = True,
) -> Comparison:
    """Every agreement figure of proxy values x with target values y (one per recipe, same order).

    proxy_sd/target_sd: pooled seed sd at each size (None: no seed replicates) and proxy_k/target_k:
    seeds per recipe; n_boot: seed-noise replicates for the intervals; with_test: run the rank test."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(recipes)
    c = Comparison(n_recipes=n, recipes=list(recipes), direction="higher" if higher_is_better else "lower")
    undefined: dict[str, str] = {}
    if n < 3:
        reason = f"only {n} recipe(s) at both sizes (need >= 3)"
        c.undefined = {k: reason for k in FIGS + ("regret", "abstain")}
        c.reason = reason
        return c
    tol = tie_tolerance(x, y)
    xs, ys = snap(x, tol), snap(y, tol)
    cnt = pair_counts(xs, ys)
    c.n_pairs, c.n_ties, c.n_flips = cnt["untied"], cnt["n0"] - cnt["untied"], cnt["D"]
    const_x, const_y = np.ptp(xs) == 0, np.ptp(ys) == 0
    if const_x or const_y:
        reason = f"{'proxy' if const_x else 'target'} values are constant across recipes"
        undefined.update({k: reason for k in ("pearson", "r2", "spearman", "kendall")})
    else:
        xc, yc = x - x.mean(), y - y.mean()
        r = float(np.clip((xc @ yc) / math.sqrt((xc @ xc) * (yc @ yc)), -1, 1))
        slope = float((xc @ yc) / (xc @ xc))
        c.pearson, c.r2, c.fit = r, r * r, {"slope": slope, "intercept": float(y.mean() - slope * x.mean())}
        c.spearman, c.kendall = spearman(xs, ys), kendall(xs, ys)
    if cnt["untied"] == 0:
        undefined["decision_accuracy"] = f"all {cnt['n0']} recipe pairs are tied at the proxy or the target"
    else:
        c.decision_accuracy = 1.0 - cnt["D"] / cnt["untied"]
    psd = float(proxy_sd) if proxy_sd is not None and np.isfinite(proxy_sd) else None
    tsd = float(target_sd) if target_sd is not None and np.isfinite(target_sd) else None
    pk = np.asarray(proxy_k, float) if proxy_k is not None else np.ones(n)
    tk = np.asarray(target_k, float) if target_k is not None else np.ones(n)
    sources = ["recipes"] + (["proxy seeds"] if psd else []) + (["target seeds"] if tsd else [])
    var = seed_variance(x, y, psd, pk, tsd, tk, n_boot, seed) if (psd or tsd) and n_boot >= 2 and not (const_x or const_y) else {}
    if not (const_x or const_y):
        for k, v in intervals(n, c.pearson, c.spearman, c.kendall, cnt, var).items():
            setattr(c, k, v)
    c.ci_method = {
        "sources": sources if var else ["recipes"],
        "seed_replicates": n_boot if var else 0,
        "tie_rule": TIE_RULE,
        "tie_tolerance": tol,
        "seed_var_gamma": var.get("gamma", 0.0),
        "seed_share": _seed_share(cnt, var["gamma"]) if "gamma" in var else None,  # None: seed noise not measured
    }
    if psd is not None or tsd is not None:
        rx, ry = reliability(x, psd, pk), reliability(y, tsd, tk)
        c.attenuation = {
            "reliability_proxy": rx,
            "reliability_target": ry,
            "decision_accuracy_noise_free": disattenuated_da(c.decision_accuracy, rx, ry),
            "rule": "reliability = 1 - mean(seed sd^2 / k) / variance of the seed means across recipes; noise-free DA: "
            "the copula correlation divided by sqrt(reliability_proxy x reliability_target)",
        }
    if with_test and cnt["untied"]:
        c.p_value, c.test = rank_test(xs, ys, cnt["S"], seed)
        c.p_floor = MC_FLOOR if c.test and "random permutations" in c.test else None
    if c.n_flips:
        c.flips = _flips(recipes, x, y, xs, ys, higher_is_better, max_flips)
        c.flips_truncated = c.n_flips > len(c.flips)
    c.regret = regret(recipes, x, y, higher_is_better)
    if psd is not None or tsd is not None:
        acc = _noise_pass(xs, ys, y, psd, pk, tsd, tk)
        if psd is not None:
            c.abstain = {
                "n_abstain": acc["within"],
                "n_pairs_confident": acc["keep"],
                "proxy_seed_sd": psd,
                "decision_accuracy_confident": 1.0 - acc["keep_flip"] / acc["keep"] if acc["keep"] else None,
                "decision_accuracy_all": c.decision_accuracy,
                "rule": "|proxy diff| < 2 * pooled seed sd * sqrt(1/k_a + 1/k_b)",
            }
            if not acc["keep"]:
                c.abstain["reason"] = "every untied pair is within seed noise"
        if tsd is not None:
            c.target_noise = {
                "target_seed_sd": tsd,
                "n_resolvable": acc["resolvable"],
                "median_gap": acc["median_gap"],
                "frac_resolvable": acc["resolvable"] / acc["untied"] if acc["untied"] else None,
                "target_k": float(np.median(tk)),
                "rule": "|target diff| > 2 * pooled seed sd * sqrt(1/k_a + 1/k_b)",
            }
    if psd is None:
        undefined["abstain"] = abstain_reason or "no seed replicates at the proxy size"
    for name, stat in STATISTICS.items():
        c.stats[name] = stat.fn(x, y)
    c.undefined = undefined
    c.reason = "; ".join(sorted(set(undefined.values()))) or None
    return c
