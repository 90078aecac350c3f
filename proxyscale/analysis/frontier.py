"""The compute-decision frontier (issue 15; after DataDecide, Magnusson et al. 2025): what each way of
choosing a recipe costs and how often it picks the target's winner of a pair.

Points: every (proxy size, step) at which all recipes were evaluated (rows with a step column; final values
otherwise), ranking the target by its own values, and every multi-size extrapolation method of a
`scaling.predict` section (fitted on the proxies, scored at the target). Each point has its training
FLOPs (6 N D per recipe, D the tokens seen by that step: a tokens column, else the size's tokens x
step / last step), compute_fraction = those FLOPs / training every recipe at the target, and decision
accuracy with the interval `compare` reports (never zero-width: a perfect ranking of a few recipes is
not evidence by itself).

The Pareto frontier keeps the points no cheaper point matches or beats in DA. The planner picks the
cheapest point whose DA interval lower bound reaches `decision_level` (default 0.8), or says in a sentence
that none does and what would help. A step whose DA moves by less than one recipe pair (1 / n_pairs) from
the previous step of the same size is marked ``noise``: the change is below what the design resolves.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from proxyscale.analysis import scaling, stats
from proxyscale.analysis.types import doc


@dataclass
class FrontierPoint:
    """One way to choose a recipe: a proxy (size, step) or an extrapolation method."""

    metric: str = doc("eval set")
    size: str | None = doc("proxy size (null for a method)")
    step: float | None = doc("eval step (null: final values)")
    method: str | None = doc("extrapolation method (null for a size)")
    fit_sizes: list[str] | None = doc("a method's fit sizes")
    flops: float = doc("training FLOPs of this choice", 0.0)
    compute_fraction: float = doc("flops / training every recipe at the target", 0.0)
    decision_accuracy: float | None = doc("against the target's final values")
    decision_accuracy_ci: list[float] | None = doc("its 95% rank interval over recipes (stats.da_interval)")
    n_recipes: int = doc("recipes scored", 0)
    on_frontier: bool = doc("Pareto: no cheaper point matches its DA", False)
    noise: bool = doc("its DA moved by less than one recipe pair from the previous step of the same size", False)


@dataclass
class Plan:
    """The planner's answer on one eval set."""

    metric: str = doc("eval set")
    choice: str | None = doc("the cheapest point whose DA lower bound reaches the decision level | null")
    point: FrontierPoint | None = doc("that point")
    sentence: str = doc("the answer in words, with its interval", "")


@dataclass
class Frontier:
    """The compute-decision frontier and the planner."""

    available: bool = doc("points exist", False)
    reason: str | None = doc("why not available")
    decision_level: float = doc("--decision-level", 0.8)
    target: str | None = doc("the largest size")
    points: list[FrontierPoint] = doc("every proxy (size, step) with all recipes evaluated and every extrapolation method", factory=list)
    plans: list[Plan] = doc("one per eval set", factory=list)
    interval: str | None = doc("how decision_accuracy_ci is computed")
    notes: list[str] = doc("caveats", factory=list)
    compute_basis: str | None = doc("measured (tokens/flops column) or the assumption behind compute")


# Okabe-Ito: distinguishable with the common colour-vision deficiencies
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def _point(metric, pred, y, *, flops, target_flops, **label) -> dict:
    da = stats.decision_accuracy(pred, y)
    return {
        "metric": metric,
        **label,
        "flops": float(flops),
        "compute_fraction": float(flops / target_flops),
        "decision_accuracy": da,
        "decision_accuracy_ci": stats.da_interval(pred, y) if da is not None else None,
        "n_recipes": int(len(y)),
    }


def _mark(points: list[dict], n_pairs: int) -> None:
    """on_frontier (Pareto: max DA for min compute) and noise (step-to-step change below one pair)."""
    scored = sorted((p for p in points if p["decision_accuracy"] is not None), key=lambda p: (p["flops"], -p["decision_accuracy"]))
    best = -1.0
    for p in points:
        p["on_frontier"] = False
    for p in scored:
        if p["decision_accuracy"] > best + 1e-12:
            p["on_frontier"] = True
            best = p["decision_accuracy"]
    by_size: dict[str, list[dict]] = {}
    for p in points:
        p["noise"] = False
        if p.get("size") is not None and p.get("step") is not None:
            by_size.setdefault(p["size"], []).append(p)
    for seq in by_size.values():
        seq.sort(key=lambda p: p["step"])
        for prev, cur in zip(seq, seq[1:]):
            if prev["decision_accuracy"] is not None and cur["decision_accuracy"] is not None and n_pairs:
                cur["noise"] = bool(abs(cur["decision_accuracy"] - prev["decision_accuracy"]) < 1.0 / n_pairs)


def point_label(p: dict) -> str:
    if p.get("method"):
        return f"{p['method']} ({'+'.join(p['fit_sizes'])})"
    return f"{p['size']}" + (f" at step {p['step']:g}" if p.get("step") is not None else "")


def _plan(metric: str, points: list[dict], level: float, target: str, assumed: str = "") -> dict:
    ok = [p for p in points if p["decision_accuracy_ci"] is not None and p["decision_accuracy_ci"][0] >= level]
    if ok:
        p = min(ok, key=lambda p: (p["flops"], -p["decision_accuracy"]))
        lo, hi = p["decision_accuracy_ci"]
        return {
            "metric": metric,
            "choice": point_label(p),
            "point": p,
            "sentence": f"{metric}: the cheapest choice whose decision accuracy clears {level:.2f} at the 95% lower bound is {point_label(p)} "
            f"(DA {p['decision_accuracy']:.3f} [{lo:.3f}, {hi:.3f}], {p['compute_fraction']:.3g} of the target's compute{assumed}).",
        }
    scored = [p for p in points if p["decision_accuracy"] is not None]
    if not scored:
        return {"metric": metric, "choice": None, "point": None, "sentence": f"{metric}: no point has a decision accuracy (too few recipes)."}
    b = max(scored, key=lambda p: (p["decision_accuracy_ci"][0] if p["decision_accuracy_ci"] else -1, p["decision_accuracy"]))
    ci = b["decision_accuracy_ci"]
    why = f"the best, {point_label(b)}, has DA {b['decision_accuracy']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    more = (
        "a larger proxy (closer to " + target + ") would raise DA"
        if b["decision_accuracy"] < level
        else "more recipes would narrow the interval (it covers recipe sampling only, so seeds cannot)"
    )
    return {
        "metric": metric,
        "choice": None,
        "point": None,
        "sentence": f"{metric}: no point's decision accuracy clears {level:.2f} at the 95% lower bound; {why}; {more}.",
    }


def frontier(
    df: pd.DataFrame, sizes: list[str], *, target: str | None = None, prediction: dict | None = None, higher_is_better=False, decision_level: float = 0.8
) -> dict[str, Any]:
    """The frontier section: {"decision_level", "target", "points": [...], "plans": [...], "notes": [...]}.

    df: the long table; sizes: smallest first; target: default the largest size (must have been run).
    prediction: a `scaling.predict` section whose non-backtest methods become points."""
    sizes = [str(s) for s in sizes]
    target = str(target) if target is not None else sizes[-1]
    notes: list[str] = []
    params = scaling.size_params(df, sizes)
    tokens = scaling.size_tokens(df, sizes, params, notes)
    compute = scaling.size_compute(df, sizes, params, tokens)
    proxies = [s for s in sizes if params[s] < params[target]]
    measured = any(c in df.columns and df[c].notna().any() for c in ("tokens", "flops"))
    finals = scaling.final_tables(df, sizes, higher_is_better)
    higher = scaling._directions(finals, higher_is_better)
    has_step = "step" in df.columns and df["step"].notna().any()
    steps = scaling._tuned(df, higher, step_keep="all") if has_step else None
    last_step = df.groupby("size")["step"].max().to_dict() if has_step else {}
    step_tokens = df[df["tokens"].notna()].groupby(["size", "step"])["tokens"].mean().to_dict() if has_step and "tokens" in df.columns else {}
    points_all, plans = [], []
    for metric, tab in finals.items():
        if target not in tab.columns or tab[target].notna().sum() < 3:
            notes.append(f"{metric}: fewer than 3 recipes at the target {target}; no frontier.")
            continue
        y_all = tab[target].dropna()
        recipes = list(y_all.index)
        y = y_all.to_numpy(float)
        n_pairs = len(y) * (len(y) - 1) // 2
        pts: list[dict] = []
        k = 0
        for s in proxies:
            if has_step:
                g = steps[(steps["metric"] == metric) & (steps["size"] == s)]
                for st, gg in g.groupby("step", sort=True):
                    v = gg.set_index("recipe")["value"].reindex(recipes)
                    if v.isna().any():
                        continue  # not every recipe was evaluated at this step
                    d = step_tokens.get((s, st), tokens[s] * float(st) / float(last_step[s]) if last_step.get(s) else tokens[s])
                    pts.append(
                        _point(
                            metric, v.to_numpy(float), y, flops=compute[s] * d / tokens[s], target_flops=compute[target], size=s, method=None, step=float(st)
                        )
                    )
                    k += 1
            else:
                v = tab[s].reindex(recipes)
                if v.isna().any():
                    notes.append(f"{metric}: {int(v.isna().sum())} recipe(s) have no value at {s}; that size is left off the frontier.")
                    continue
                pts.append(_point(metric, v.to_numpy(float), y, flops=compute[s], target_flops=compute[target], size=s, method=None, step=None))
                k += 1
        for m in (prediction or {}).get("methods", []):
            if m["metric"] != metric or m.get("backtest") or m["target"] != target or m.get("decision_accuracy") is None:
                continue
            common = [r for r in recipes if m["predicted"].get(r) is not None]
            if len(common) < 3:
                continue
            pv = np.array([m["predicted"][r] for r in common])
            yv = y_all.reindex(common).to_numpy(float)
            pts.append(
                _point(
                    metric,
                    pv,
                    yv,
                    flops=m["compute_fraction"] * compute[target],
                    target_flops=compute[target],
                    size=None,
                    method=m["method"],
                    fit_sizes=list(m["fit_sizes"]),
                    step=None,
                )
            )
            k += 1
        _mark(pts, n_pairs)
        points_all.extend(pts)
        plans.append(_plan(metric, pts, decision_level, target, "" if measured else f", assuming {scaling.TOKENS_PER_PARAM:g} tokens/param"))
    return {
        "decision_level": decision_level,
        "target": target,
        "points": points_all,
        "plans": plans,
        "interval": "the rank interval of every comparison (stats.da_interval: Kendall test inversion, Gaussian copula), recipe sampling only",
        "notes": list(dict.fromkeys(notes)),
        "compute_basis": "measured (tokens/flops column)" if measured else f"assumed: {scaling.TOKENS_PER_PARAM:g} tokens per parameter, 6 N D FLOPs",
    }


def _draw(ax, front: dict, metric: str, pts: list[dict], fs: int = 9) -> None:
    sizes = list(dict.fromkeys(p["size"] for p in pts if p.get("size") is not None))
    for i, s in enumerate(sizes):
        seq = sorted((p for p in pts if p.get("size") == s), key=lambda p: p["flops"])
        x = np.array([p["compute_fraction"] for p in seq])
        da = np.array([p["decision_accuracy"] for p in seq])
        c = PALETTE[i % len(PALETTE)]
        ax.plot(x, da, "o-", color=c, ms=5, lw=1.2, label=s)
        ci = [p["decision_accuracy_ci"] for p in seq]
        if all(ci):
            lo, hi = np.array([v[0] for v in ci]), np.array([v[1] for v in ci])
            if len(seq) > 1:
                ax.fill_between(x, lo, hi, color=c, alpha=0.18, lw=0)
            else:  # the interval as drawn (a perfect ranking's interval ends below 1: it is not centred on the estimate)
                ax.vlines(x, lo, hi, color=c, lw=1.2)
    for j, p in enumerate(p for p in pts if p.get("method")):
        c = PALETTE[(len(sizes) + j) % len(PALETTE)]
        ci = p["decision_accuracy_ci"]
        ax.plot([p["compute_fraction"]], [p["decision_accuracy"]], "D", color=c, ms=6, label=point_label(p))
        if ci:
            ax.vlines([p["compute_fraction"]], ci[0], ci[1], color=c, lw=1.2)
    fr = sorted((p for p in pts if p["on_frontier"]), key=lambda p: p["flops"])
    if fr:
        ax.step(
            [p["compute_fraction"] for p in fr],
            [p["decision_accuracy"] for p in fr],
            where="post",
            color="#444444",
            lw=1.6,
            ls="-",
            alpha=0.8,
            label="Pareto frontier",
        )
    ax.axhline(front["decision_level"], color="#D55E00", ls="--", lw=1.2, label=f"decision level {front['decision_level']:.2f}")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # plain text: 0.001, not mathtext (slow to lay out)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"compute / training every recipe at {front['target']} (log)", fontsize=fs + 1)
    ax.set_ylabel("decision accuracy vs target (95% CI)", fontsize=fs + 1)
    ax.set_title(f"{metric}: compute-decision frontier", fontsize=fs + 2)
    ax.tick_params(labelsize=fs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=fs, loc="lower right")


def frontier_figure(front: dict, metric: str | None = None, metrics: list[str] | None = None) -> bytes | None:
    """PNG: compute fraction (log x) vs decision accuracy with 95% bands per size, methods as diamonds,
    the Pareto frontier as a step line and the decision level as a dashed line; one panel for `metric`
    (default the first), or one panel per name in `metrics` (two columns). None without points."""
    pts = [p for p in front["points"] if p["decision_accuracy"] is not None]
    if metrics is None:
        metrics = [metric or (pts[0]["metric"] if pts else None)]
    panels = [(m, [p for p in pts if p["metric"] == m]) for m in metrics]
    panels = [(m, q) for m, q in panels if q]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    w, h, fs = (7.0, 4.6, 9) if len(panels) == 1 else (5.2, 3.8, 7)  # several panels: smaller ones (the PNG's pixels are its cost)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    for ax, (m, q) in zip(axes.ravel(), panels):
        _draw(ax, front, m, q, fs)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
