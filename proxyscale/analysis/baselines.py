"""Null baselines as the honest floor: free unigram/bigram count models (values from results.parquet,
never tokenized here). A trained proxy "beats" the bigram only when the paired interval of its
decision-accuracy difference excludes 0; otherwise it is indistinguishable from a free bigram model.
Pure numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from proxyscale.analysis.compare import compare
from proxyscale.analysis.stats import PAIR_BLOCK, pair_blocks, resample_counts
from proxyscale.analysis.types import doc, typed

BIGRAM_FREE = "indistinguishable from a free bigram model"


@dataclass
class BaselineValue:
    """The count models' loss on one (recipe, eval set)."""

    recipe: str = doc("recipe")
    metric: str = doc("eval set")
    unigram: float | None = doc("add-one unigram model's loss (nats/token) on the eval set, fitted on the recipe's pool")
    bigram: float | None = doc("add-one bigram model's loss")


@dataclass
class BaselineVsProxy:
    """The best trained proxy against the free bigram model, at one target."""

    metric: str = doc("eval set")
    target: str = doc("target size")
    bigram_decision_accuracy: float | None = doc("the bigram model's DA against the target")
    unigram_decision_accuracy: float | None = doc("the unigram model's DA against the target")
    best_proxy: str | None = doc("the trained proxy with the highest DA")
    best_proxy_decision_accuracy: float | None = doc("its DA")
    difference: float | None = doc("DA(best proxy) - DA(bigram)")
    difference_ci: list[float] | None = doc("95% percentile interval over recipe resamples, seed noise redrawn")
    outcome: str | None = doc("beats | indistinguishable | beaten")
    n_boot: int | None = doc("resamples behind the interval")


@dataclass
class Baselines:
    """Null baselines: free unigram/bigram count models as the floor a trained proxy must beat."""

    available: bool = doc("baseline values exist (sweeps whose results carry them)", False)
    reason: str | None = doc("why not available")
    smoothing: str | None = doc("the count models' smoothing")
    units: str | None = doc("units of the values")
    rule: str | None = doc("when a proxy beats the bigram")
    values: list[BaselineValue] = doc("per (recipe, eval set)", factory=list)
    comparisons: list[dict] = doc("count model vs each target: the keys of a comparison, proxy = baseline = 'unigram' | 'bigram'", factory=list)
    vs_proxies: list[BaselineVsProxy] = doc("the best trained proxy against the bigram, per (eval set, target)", factory=list)
    statements: list[str] = doc("one sentence per vs_proxies entry, with its interval", factory=list)
    warnings: list[str] = doc("targets worse than a count model; proxies not distinguishable from one", factory=list)


def paired_da_difference(xp, xb, y, *, n_boot: int, seed: int, sd_p=None, k_p=None, sd_y=None, k_y=None) -> dict:
    """DA(proxy) - DA(bigram) against the same target, with a 95% percentile interval over recipe resamples
    (multiplicity weights) and, when seed sds are given, the proxy and target seed means redrawn within
    their noise in every replicate. Pairs are walked in blocks: memory linear in recipes x replicates."""
    n = len(y)
    rng = np.random.default_rng(seed + 104729)
    w = resample_counts(n, n_boot, rng)
    P = xp + (rng.normal(size=(n_boot, n)) * sd_p / np.sqrt(k_p) if sd_p else 0.0)
    Y = y + (rng.normal(size=(n_boot, n)) * sd_y / np.sqrt(k_y) if sd_y else 0.0)
    P, Y = np.broadcast_to(P, (n_boot, n)), np.broadcast_to(Y, (n_boot, n))
    agree = np.zeros((2, n_boot))
    total = np.zeros((2, n_boot))
    for i, j in pair_blocks(n, max(1, PAIR_BLOCK // n_boot)):
        ww = w[:, i] * w[:, j]
        dy = np.sign(Y[:, i] - Y[:, j])
        for row, dx in enumerate((np.sign(P[:, i] - P[:, j]), np.sign(xb[i] - xb[j])[None, :])):
            p = dx * dy
            agree[row] += (ww * (p > 0)).sum(1)
            total[row] += (ww * (p != 0)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = agree[0] / total[0] - agree[1] / total[1]
    diff = diff[np.isfinite(diff)]
    ci = [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))] if len(diff) >= 10 else None
    return {"ci": ci, "n_boot": n_boot, "n_valid": int(len(diff))}


def section(baselines: dict | None, reason: str | None, cube, primary: list[dict], n_boot: int, seed: int) -> dict:
    """Baseline agreement with each tuned target, the best trained proxy against the bigram with an
    interval, and warnings where a target itself is worse than a count model."""
    if not baselines:
        return asdict(Baselines(available=False, reason=reason or "no baseline values"))
    values = [{"recipe": r, "metric": m, **v} for (r, m), v in sorted(baselines.items())]
    comps, vs, statements, warnings = [], [], [], []
    for mi, metric in enumerate(cube.metrics):
        if cube.higher[mi]:
            continue  # count-model losses only compare with lower-is-better losses
        for ti in range(1, len(cube.sizes)):
            target = cube.sizes[ti]
            y_all = cube.tuned[mi, ti]
            common = [ri for ri, r in enumerate(cube.recipes) if np.isfinite(y_all[ri]) and (r, metric) in baselines]
            if not common:
                continue
            names = [cube.recipes[ri] for ri in common]
            y = y_all[common]
            xb = {kind: np.array([baselines[(r, metric)][kind] for r in names]) for kind in ("unigram", "bigram")}
            worse = [r for r, v, b in zip(names, y, xb["bigram"]) if v > b]
            if worse:
                warnings.append(
                    f"{metric}: the {target} target itself is worse than a free bigram count model for {len(worse)} of "
                    f"{len(names)} recipes ({', '.join(worse[:5])}{', ...' if len(worse) > 5 else ''})"
                )
            per = {}
            for kind in ("unigram", "bigram"):
                c = compare(names, xb[kind], y, n_boot=0, with_test=False, abstain_reason="a count model has no seed noise").to_dict()
                c.update(
                    metric=metric,
                    proxy=kind,
                    target=target,
                    baseline=kind,
                    proxy_lr=None,
                    target_mode="tuned",
                    proxy_values=dict(zip(names, xb[kind].tolist())),
                    target_values=dict(zip(names, y.tolist())),
                )
                comps.append(c)
                per[kind] = c
            prox = [c for c in primary if c["metric"] == metric and c["target"] == target and c["decision_accuracy"] is not None]
            best = max(prox, key=lambda c: c["decision_accuracy"]) if prox else None
            bda = per["bigram"]["decision_accuracy"]
            entry = {
                "metric": metric,
                "target": target,
                "bigram_decision_accuracy": bda,
                "unigram_decision_accuracy": per["unigram"]["decision_accuracy"],
                "best_proxy": best["proxy"] if best else None,
                "best_proxy_decision_accuracy": best["decision_accuracy"] if best else None,
                "difference": None,
                "difference_ci": None,
                "outcome": None,
            }
            if best is None or bda is None or len(names) < 3:
                statements.append(f"{metric} -> {target}: proxy-vs-bigram comparison undefined ({per['bigram']['reason'] or 'no defined proxy comparison'}).")
                vs.append(entry)
                continue
            pi = cube.sizes.index(best["proxy"])
            xp = np.array([best["proxy_values"].get(r, np.nan) for r in names])
            ok = np.isfinite(xp)
            sd_p, sd_y = cube.sd_at(mi, pi, cube.tuned_lr_idx[mi, pi]), cube.sd_at(mi, ti, cube.tuned_lr_idx[mi, ti])  # at the tuned LRs compared
            d = paired_da_difference(
                xp[ok],
                xb["bigram"][ok],
                y[ok],
                n_boot=n_boot,
                seed=seed,
                sd_p=sd_p if np.isfinite(sd_p) else None,
                k_p=cube.tuned_k[mi, pi][common][ok],
                sd_y=sd_y if np.isfinite(sd_y) else None,
                k_y=cube.tuned_k[mi, ti][common][ok],
            )
            diff = best["decision_accuracy"] - bda
            ci = d["ci"]
            outcome = "beats" if ci and ci[0] > 0 else "beaten" if ci and ci[1] < 0 else "indistinguishable"
            entry.update(difference=diff, difference_ci=ci, outcome=outcome, n_boot=d["n_boot"])
            vs.append(entry)
            civ = f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "(no interval)"
            head = f"{metric} -> {target}: the best trained proxy ({best['proxy']}, decision accuracy {best['decision_accuracy']:.2f})"
            if outcome == "beats":
                statements.append(f"{head} beats the free bigram model ({bda:.2f}): difference {diff:+.2f} {civ}.")
            elif outcome == "beaten":
                statements.append(f"{head} is worse than the free bigram model ({bda:.2f}): difference {diff:+.2f} {civ}.")
                warnings.append(statements[-1])
            else:
                statements.append(f"{head} is {BIGRAM_FREE} ({bda:.2f}): difference {diff:+.2f} {civ} includes 0.")
                warnings.append(statements[-1])
    out = Baselines(
        available=True,
        reason=None,
        smoothing="add-one",
        units="nats/token",
        values=[typed(BaselineValue, v) for v in values],
        comparisons=comps,
        vs_proxies=[typed(BaselineVsProxy, v) for v in vs],
        statements=statements,
        warnings=warnings,
        rule="beats: the 95% interval of DA(proxy) - DA(bigram) (recipe resamples, seed noise redrawn) lies above 0",
    )
    return asdict(out)


def undertrained(cells: np.ndarray, bigram: np.ndarray, recipes: list[str], seeds, has_seed: bool) -> list[dict]:
    """Cells (seeds x recipes) of one proxy LR that are worse than the free bigram model of their recipe."""
    with np.errstate(invalid="ignore"):
        bad = np.argwhere(cells > bigram[None, :])
    return [{"recipe": recipes[r], "seed": float(seeds[k]) if has_seed else None, "loss": float(cells[k, r]), "bigram": float(bigram[r])} for k, r in bad]
