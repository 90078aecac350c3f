"""report.json -> the figures, report.md and a self-contained report.html (the same figures embedded as base64 PNG
data URIs, so it opens offline); the text of both comes from the section templates (`proxyscale.report.sections`),
rendered once per format. Every figure is also written beside report.md as fig_<name>.png and fig_<name>.svg.
matplotlib runs on the Agg backend.

Figure builders (fig_<name>) return a matplotlib Figure, or a string saying why there is nothing to
draw (the md and html print it as a note in the figure's place); `figures(rep)` runs them all, so tests
can inspect the Figure objects (font sizes, clipping) before anything is saved."""

from __future__ import annotations

import io
import math
import textwrap
from contextlib import contextmanager
from pathlib import Path

from proxyscale.report import sections
from proxyscale.report.sections import comp_head as comp_head  # the comparison table's head (re-exported for its readers)
from proxyscale.report.sections import example_entries, frontier_metrics, primary
from proxyscale.report.sections import fmt_ci as _ci
from proxyscale.report.sections import fmt_num as _f

MAX_LABELS = 25  # recipes drawn as individual, directly labelled lines in the bump chart
MAX_POINT_LABELS = 8  # scatter points labelled by name: all up to this many, else the extremes
MAX_LINE_LABELS = 12  # lines labelled at their end (loss vs parameters): more are left unlabelled
MAX_PANELS = 6  # per-metric panels of the scatter and bump figures: the eval sets with the lowest decision accuracy
DPI = 110  # PNG resolution: a figure is shown at its size in inches x DPI pixels (100% zoom)
FONT = 9  # the smallest font size (pt) of any text on a figure
# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies; the yellow last (weak on white).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"]
LINESTYLES = ["-", "--", "-.", ":"]  # with more lines than colours, colour x line style tells them apart
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
STYLE = {
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": FONT,
    "ytick.labelsize": FONT,
    "legend.fontsize": FONT,
    "legend.title_fontsize": FONT,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "svg.fonttype": "none",
    "axes.prop_cycle": None,
}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def _style():
    plt = _plt()
    from cycler import cycler

    with plt.rc_context({**STYLE, "axes.prop_cycle": cycler(color=PALETTE)}):
        yield plt


def _freeze(fig):
    """Settle the layout (unless a builder already fixed it), then fix it and the tight bounding box, so the PNG
    and the SVG save draw once each (bbox_inches="tight" draws twice per save and re-runs the layout each time)."""
    _layout(fig)
    fig.set_layout_engine("none")
    return fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.08)


def _png(fig, bbox) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches=bbox)
    return buf.getvalue()


def _svg(fig, bbox) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches=bbox)
    return buf.getvalue()


def _units(rep: dict) -> str:
    if rep["source"]["kind"] == "sweep":
        return "eval loss, nats/token"
    return {"higher": "value, higher is better", "lower": "value, lower is better"}.get(rep["direction"], "value")


def _short(name: str, n: int = 40) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _wrap(text: str, width_in: float, size: float = 10.5) -> str:
    """Wrap a title to its panel's width (a character is about 0.55 em wide)."""
    return "\n".join(textwrap.wrap(text, max(20, int(width_in * 72 / (0.55 * size))))) or text


def _grid(plt, n: int, ncols: int = 3, w: float = 4.8, h: float = 4.0):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.remove()
    return fig, list(axes.ravel()[:n])


def _style_of(j: int) -> dict:
    """Line j's colour and line style: colours first, then the next line style."""
    return {"color": PALETTE[j % len(PALETTE)], "ls": LINESTYLES[(j // len(PALETTE)) % len(LINESTYLES)]}


def _chance(ax, y: float = 0.5, text: str = "chance (0.5)") -> None:
    ax.axhline(y, color="#666666", lw=1.0, ls=(0, (4, 3)), zorder=1)
    ax.annotate(
        text, (0.01, y), xycoords=("axes fraction", "data"), xytext=(2, 2), textcoords="offset points", fontsize=FONT, color="#444444", va="bottom", ha="left"
    )


def _baseline_line(ax, y: float, text: str, right: bool = True) -> None:
    """A free count model's level: a dotted line labelled at the right (or left) edge of the axes."""
    ax.axhline(y, color="#8c564b", lw=1.0, ls=":")
    ax.annotate(
        text,
        (0.99 if right else 0.01, y),
        xycoords=("axes fraction", "data"),
        xytext=(0 if right else 2, 2),
        textcoords="offset points",
        fontsize=FONT,
        ha="right" if right else "left",
        va="bottom",
        color="#8c564b",
    )


def _bigram_da(rep: dict, metric: str, target: str) -> float | None:
    """The bigram count model's decision accuracy against `target` on `metric`, where the report has it."""
    for c in (rep.get("baselines") or {}).get("comparisons") or []:
        if c.get("metric") == metric and c.get("baseline") == "bigram" and c.get("target") == target:
            return c.get("decision_accuracy")
    return None


def _layout(fig, final: bool = False) -> None:
    """Run the constrained layout (text extents only, no drawing), so label placement sees the final axes; the
    label helpers below expect it done. `final`: nothing will be added outside the axes, so keep this layout."""
    eng = fig.get_layout_engine()
    if eng is not None:
        eng.execute(fig)
        if final:
            fig.set_layout_engine("none")


def _end_labels(ax, items: list[tuple[float, float, str, str]], min_gap_pt: float = FONT * 1.35) -> None:
    """Label lines at their right end (x, y, text, colour), labels spread vertically so none overlaps:
    placed in points right of the axes, outside the data, never clipped (the layout makes room)."""
    if not items:
        return
    fig = ax.figure
    to_px = ax.transData
    px = sorted(((to_px.transform((x, y))[1], t, c) for x, y, t, c in items), key=lambda p: p[0])
    gap = min_gap_pt * fig.dpi / 72
    ys = [p[0] for p in px]
    for i in range(1, len(ys)):  # push up what is too close to the label below
        ys[i] = max(ys[i], ys[i - 1] + gap)
    box = ax.get_window_extent()
    over = ys[-1] - box.y1
    if over > 0:  # shift the whole stack down into the axes' height, keeping the gaps
        ys = [y - over for y in ys]
        for i in range(len(ys) - 2, -1, -1):
            ys[i] = min(ys[i], ys[i + 1] - gap)
    inv = ax.transAxes.inverted()
    for y, (_, t, c) in zip(ys, px):
        ya = inv.transform((box.x1, y))[1]
        ax.annotate(
            t,
            (1.0, ya),
            xycoords="axes fraction",
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=FONT,
            color=c,
            va="center",
            ha="left",
            annotation_clip=False,
        )


def _point_labels(ax, xs: list[float], ys: list[float], labels: list[str], which: list[int]) -> int:
    """Label the points `which` with offset annotations, trying 8 positions around each and keeping only
    those that fit inside the axes without overlapping another label or point; returns how many were left off."""
    r = ax.figure.canvas.get_renderer()
    box = ax.get_window_extent()
    pts = [ax.transData.transform((x, y)) for x, y in zip(xs, ys)]
    taken = []
    offsets = [
        (6, 5, "left", "bottom"),
        (6, -5, "left", "top"),
        (-6, 5, "right", "bottom"),
        (-6, -5, "right", "top"),
        (0, 8, "center", "bottom"),
        (0, -8, "center", "top"),
        (9, 0, "left", "center"),
        (-9, 0, "right", "center"),
    ]
    left = 0
    for i in which:
        for dx, dy, ha, va in offsets:
            a = ax.annotate(_short(labels[i], 24), (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", fontsize=FONT, ha=ha, va=va, color="#222222")
            bb = a.get_window_extent(r).expanded(1.04, 1.1)
            inside = box.x0 <= bb.x0 and bb.x1 <= box.x1 and box.y0 <= bb.y0 and bb.y1 <= box.y1
            hits_point = any(bb.contains(px, py) for k, (px, py) in enumerate(pts) if k != i)
            if inside and not hits_point and not any(bb.overlaps(t) for t in taken):
                taken.append(bb)
                break
            a.remove()
        else:
            left += 1
    return left


# ---------------------------------------------------------------------------------------------
# figures: each returns a matplotlib Figure, or the reason there is nothing to draw


def fig_scatter(rep: dict):
    target = rep["sizes"][-1]
    comps = [c for c in primary(rep) if c["target"] == target and c["n_recipes"] >= 2]
    if not comps:
        return f"no proxy size shares at least 2 recipes with the target {target}"
    comps = sorted(comps, key=lambda c: (c["decision_accuracy"] is not None, c["decision_accuracy"] or 0.0))[:MAX_PANELS]
    units = _units(rep)
    with _style() as plt:
        fig, axes = _grid(plt, len(comps))
        for ax, c in zip(axes, comps):
            recs = c["recipes"]
            x = [c["proxy_values"][r] for r in recs]
            y = [c["target_values"][r] for r in recs]
            ax.scatter(x, y, s=26, color=PALETTE[0], zorder=3)
            if c.get("fit"):
                lo, hi = min(x), max(x)
                ax.plot(
                    [lo, hi],
                    [c["fit"]["intercept"] + c["fit"]["slope"] * v for v in (lo, hi)],
                    color=PALETTE[5],
                    lw=1.4,
                )
            ax.set_title(
                _wrap(f"{c['metric']}: {c['proxy']} vs {c['target']}", 4.6)
                + f"\nSpearman {_f(c['spearman'])} {_ci(c.get('spearman_ci'))}".rstrip()
                + f"\nDA {_f(c['decision_accuracy'])} {_ci(c.get('decision_accuracy_ci'))}".rstrip()
                + (f", linear fit R² {_f(c['r2'])}" if c.get("fit") else "")
            )
            ax.set_xlabel(f"proxy {c['proxy']} ({units})")
            ax.set_ylabel(f"target {c['target']} ({units})")
            ax.grid(alpha=0.3)
            ax.margins(0.12)
        point = "recipe (seed mean, best LR)" if any(c.get("proxy_lr") == "tuned" for c in comps) else "recipe"
        fig.legend(
            handles=[
                plt.Line2D([], [], ls="", marker="o", ms=5, color=PALETTE[0], label=point),
                plt.Line2D([], [], color=PALETTE[5], lw=1.4, label="least-squares line (R² in each title)"),
            ],
            loc="outside lower center",
            ncols=2,
            frameon=False,
        )
        _layout(fig, final=True)  # the point labels below stay inside their axes
        for ax, c in zip(axes, comps):
            recs = c["recipes"]
            x = [c["proxy_values"][r] for r in recs]
            y = [c["target_values"][r] for r in recs]
            order = sorted(range(len(recs)), key=lambda i: y[i])
            which = order if len(recs) <= MAX_POINT_LABELS else list(dict.fromkeys(order[:3] + order[-3:]))
            _point_labels(ax, x, y, recs, which)
    return fig


def _worst_metrics(rep: dict) -> list[str]:
    """Metrics by their lowest decision accuracy against the largest size (undefined first)."""
    low: dict[str, float] = {}
    for c in primary(rep):
        if c["target"] == rep["sizes"][-1]:
            low[c["metric"]] = min(low.get(c["metric"], 2.0), -1.0 if c["decision_accuracy"] is None else c["decision_accuracy"])
    return sorted(low, key=lambda m: (low[m], m))


def size_values(rep: dict) -> dict:
    """metric -> size -> recipe -> tuned seed-mean value, from the primary comparisons."""
    out: dict = {}
    for c in primary(rep):
        m = out.setdefault(c["metric"], {})
        m.setdefault(c["proxy"], {}).update(c.get("proxy_values") or {})
        m.setdefault(c["target"], {}).update(c.get("target_values") or {})
    return out


def _panel_metrics(rep: dict, vals: dict) -> list[str]:
    return sorted([m for m in _worst_metrics(rep)[:MAX_PANELS] if m in vals] or list(vals)[:MAX_PANELS])


def fig_bump(rep: dict):
    vals = size_values(rep)
    if not vals:
        return "no comparisons between sizes"
    metrics = _panel_metrics(rep, vals)
    common = [len(set.intersection(*[set(vals[m][s]) for s in vals[m]])) for m in metrics]  # recipes ranked at every size
    n_rec = max(common)
    if n_rec < 3:
        return f"{n_rec} recipe(s) in common across sizes: their ranks are the comparison table's flips"
    labelled = min(common) <= MAX_LABELS  # some panel names its lines at their right end (outside the axes)
    if max(len(vals[m]) for m in metrics) == 2 and not labelled:
        return (
            f"2 sizes and more than {MAX_LABELS} recipes per eval set: one unlabelled line per recipe between two ranks would show "
            "only what the proxy-vs-target scatter and its Spearman rho show; the flips table names the recipes that swap"
        )
    h = n_rec * 0.21 + 1.6 if n_rec <= MAX_LABELS else 4.4  # labelled: a rank step at least one label high
    h = max(4.0, h)
    from matplotlib.ticker import MaxNLocator

    with _style() as plt:
        fig, axes = _grid(plt, len(metrics), ncols=2, w=6.4, h=h)
        for ax, metric in zip(axes, metrics):
            per = vals[metric]
            higher = (rep.get("directions") or {}).get(metric, rep["direction"]) == "higher"
            sizes = [s for s in rep["sizes"] if s in per]
            recipes = sorted(set.intersection(*[set(per[s]) for s in sizes])) if sizes else []
            ranks: dict[str, list[int]] = {}
            for s in sizes:
                order = sorted(recipes, key=lambda r: -per[s][r] if higher else per[s][r])
                for i, r in enumerate(order):
                    ranks.setdefault(r, []).append(i + 1)
            if len(recipes) <= MAX_LABELS:
                for j, r in enumerate(recipes):
                    st = _style_of(j)
                    ax.plot(range(len(sizes)), ranks[r], marker=MARKERS[j % len(MARKERS)], lw=1.6, ms=5, alpha=0.9, **st)
            elif recipes:  # many recipes: one LineCollection instead of a Line2D per recipe (seconds per panel otherwise)
                from matplotlib.collections import LineCollection

                ax.add_collection(
                    LineCollection(
                        [list(zip(range(len(sizes)), ranks[r])) for r in recipes],
                        lw=0.6,
                        alpha=0.5,
                        colors=PALETTE[0],  # unlabelled: a colour per line would identify nothing
                    )
                )
            ax.set_xlim(-0.15, len(sizes) - 0.85)
            ax.set_ylim(len(recipes) + 0.5, 0.5)  # rank 1 on top
            ax.set_xticks(range(len(sizes)))
            ax.set_xticklabels(sizes)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("model size (smallest to largest)")
            ax.set_ylabel("recipe rank (1 = best)")
            ax.set_title(
                _wrap(f"{metric}: rank of each recipe across sizes ({len(recipes)} recipes" + (", unlabelled" if len(recipes) > MAX_LABELS else "") + ")", 6.0)
            )
            ax.grid(alpha=0.3)
        _layout(fig, final=not labelled)  # unlabelled lines: nothing is added outside the axes
        for ax, metric in zip(axes, metrics):
            per = vals[metric]
            higher = (rep.get("directions") or {}).get(metric, rep["direction"]) == "higher"
            sizes = [s for s in rep["sizes"] if s in per]
            recipes = sorted(set.intersection(*[set(per[s]) for s in sizes])) if sizes else []
            if len(recipes) <= MAX_LABELS:
                last = sizes[-1]
                order = sorted(recipes, key=lambda r: -per[last][r] if higher else per[last][r])
                _end_labels(ax, [(len(sizes) - 1, order.index(r) + 1, _short(r, 24), _style_of(recipes.index(r))["color"]) for r in recipes])
    return fig


def _ink(rgba) -> str:
    """Black or white text, whichever reads better on a cell of this colour (WCAG relative luminance)."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    lum = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "black" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "white"


def fig_heatmap(rep: dict):
    """One panel: eval sets x (proxy -> target) pairs, so its cost does not grow with panels per metric."""
    comps = [c for c in primary(rep) if c["decision_accuracy"] is not None]
    metrics = sorted({c["metric"] for c in comps})
    pairs = [(p, t) for i, p in enumerate(rep["sizes"]) for t in rep["sizes"][i + 1 :] if any(c["proxy"] == p and c["target"] == t for c in comps)]
    if not metrics or not pairs:
        return "no comparison has a decision accuracy"
    if len(rep["recipes"]) < 3:
        return f"{len(rep['recipes'])} recipes: each decision accuracy is one pair (0 or 1), listed in the comparison table"
    if len(metrics) * len(pairs) < 2:
        return "a single comparison: its decision accuracy is in the verdict and the table"
    import numpy as np

    mat = np.full((len(metrics), len(pairs)), np.nan)
    cis = {}
    for c in comps:
        if (c["proxy"], c["target"]) in pairs:
            i, j = metrics.index(c["metric"]), pairs.index((c["proxy"], c["target"]))
            mat[i, j] = c["decision_accuracy"]
            cis[i, j] = c.get("decision_accuracy_ci")
    with _style() as plt:
        cmap = plt.get_cmap("cividis")
        show_ci = mat.size <= 60
        fig, ax = plt.subplots(figsize=(2.6 + 1.5 * len(pairs), max(3.4, 1.4 + (0.55 if show_ci else 0.32) * len(metrics))), layout="constrained")
        im = ax.imshow(mat, vmin=0.0, vmax=1.0, cmap=cmap, aspect="auto")
        if mat.size <= 400:
            for i, j in zip(*np.nonzero(np.isfinite(mat))):
                ci = cis.get((i, j))
                text = f"{mat[i, j]:.2f}" + (f"\n{_ci(ci)}" if show_ci and ci else "")
                ax.text(j, i, text, ha="center", va="center", fontsize=FONT, color=_ink(cmap(mat[i, j])))
        ax.set_xticks(range(len(pairs)))
        ax.set_xticklabels([f"{p}\n→ {t}" for p, t in pairs])
        ax.set_yticks(range(len(metrics)))
        ax.set_yticklabels([_short(m, 30) for m in metrics])
        ax.set_xlabel("proxy → target")
        ax.set_title("decision accuracy" + (" [95% interval]" if show_ci else "") + " per eval set")
        cb = fig.colorbar(im, ax=ax, shrink=0.9, ticks=[0, 0.25, 0.5, 0.75, 1.0])
        cb.set_label("decision accuracy\n(0.5 = chance)")
        cb.ax.axhline(0.5, color="white", lw=1.2)
    return fig


def _agreement_axis(ax, key: str, bigram: float | None) -> None:
    """The y axis of an agreement curve: Spearman rho with its zero line, or decision accuracy with chance and,
    where known, the bigram count model's level."""
    if key == "spearman":
        ax.set_ylim(-1.08, 1.08)
        _chance(ax, 0.0, "no correlation (0)")
        return
    ax.set_ylim(-0.03, 1.05)
    _chance(ax)
    if bigram is not None:
        _baseline_line(ax, bigram, f"bigram baseline ({bigram:.2f})")


def _lr_ticks(ax, lrs: list[float], standard: float | None) -> None:
    """Ticks at the grid's learning rates; limits a little beyond them and the standard LR, so its line is inside."""
    from matplotlib.ticker import FixedLocator, NullLocator

    allx = sorted(set(lrs) | ({standard} if standard else set()))
    ax.set_xscale("log")
    ax.set_xlim(allx[0] / 1.35, allx[-1] * 1.35)
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(lrs))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{v:g}" for v in sorted(set(lrs))], rotation=30 if len(set(lrs)) > 4 else 0, ha="right" if len(set(lrs)) > 4 else "center")


def fig_reduced_lr(rep: dict):
    red = rep.get("reduced_lr") or {}
    entries = red.get("entries") or []
    if not entries:
        return f"reduced-LR protocol not available ({red.get('reason') or 'no learning-rate grid'})"
    lrs = sorted({p["proxy_lr"] for e in entries for p in e["curve"] if p.get("proxy_lr") is not None})
    if len(lrs) < 2:
        return "a single proxy learning rate: no curve over learning rates"
    drawable = [e for e in entries if sum(p["decision_accuracy"] is not None for p in e["curve"]) >= 2]
    if not drawable:
        return "no proxy→target pair has an agreement value at two or more learning rates (too few recipes)"
    metrics = sorted({e["metric"] for e in drawable})[:MAX_PANELS]
    std = red.get("standard_lr")
    with _style() as plt:
        fig, axes = plt.subplots(len(metrics), 2, figsize=(12.5, 4.0 * len(metrics)), squeeze=False, layout="constrained")
        labels = {}
        for row, metric in zip(axes, metrics):
            es = [e for e in drawable if e["metric"] == metric]
            for j, e in enumerate(es):
                for mode, ls, marker in (("tuned", "-", "o"), ("fixed", "--", "s")):
                    pts = sorted((p for p in e["curve"] if p["target_mode"] == mode), key=lambda p: p["proxy_lr"])
                    for k, (ax, key) in enumerate(zip(row, ("spearman", "decision_accuracy"))):
                        q = [p for p in pts if p[key] is not None]
                        if not q:
                            continue
                        xs, ys = [p["proxy_lr"] for p in q], [p[key] for p in q]
                        color = PALETTE[j % len(PALETTE)]
                        ax.plot(xs, ys, ls=ls, marker=marker, ms=5, mfc="white" if mode == "fixed" else color, color=color, lw=1.5)
                        ci = [p.get(f"{key}_ci") for p in q]
                        if all(ci) and len(q) > 1:
                            ax.fill_between(xs, [c[0] for c in ci], [c[1] for c in ci], color=color, alpha=0.13 if mode == "tuned" else 0.06, lw=0)
                        bad = [(p["proxy_lr"], p[key]) for p in q if p["n_undertrained"]]
                        if bad:
                            ax.scatter(*zip(*bad), marker="x", s=55, color="black", zorder=4)
                        labels.setdefault(k, []).append((xs[-1], ys[-1], f"{e['proxy']}→{e['target']} ({mode})", color))
            for ax, key, name in zip(row, ("spearman", "decision_accuracy"), ("Spearman rho", "decision accuracy")):
                _lr_ticks(ax, lrs, std)
                bg = [v for v in (_bigram_da(rep, metric, e["target"]) for e in es) if v is not None]
                _agreement_axis(ax, key, bg[0] if bg else None)
                if std:
                    ax.axvline(std, color="#444444", lw=1.2, ls=":")
                    ax.annotate(
                        f"standard LR {std:g}",
                        (std, 0.02),
                        xycoords=("data", "axes fraction"),
                        xytext=(3, 0),
                        textcoords="offset points",
                        fontsize=FONT,
                        rotation=90,
                        va="bottom",
                        ha="left",
                        color="#444444",
                    )
                ax.set_xlabel("proxy peak learning rate (log scale; ticks: the grid)")
                ax.set_ylabel(name)
                ax.set_title(_wrap(f"{metric}: {name} vs proxy LR (solid: tuned target, dashed: fixed; band: 95% CI; x: undertrained)", 5.6))
                ax.grid(alpha=0.3)
            _layout(fig)
            for k, ax in enumerate(row):
                _end_labels(ax, labels.pop(k, []))
    return fig


def fig_early(rep: dict):
    es = rep.get("early_signal") or {}
    pts = es.get("points") or []
    if not pts:
        return f"early signal not available ({es.get('reason') or 'no intermediate evals'})"
    if len({p["fraction"] for p in pts}) < 2:
        return "a single eval point per proxy: no curve over training"
    metrics = sorted({p["metric"] for p in pts})[:MAX_PANELS]
    with _style() as plt:
        fig, axes = plt.subplots(len(metrics), 2, figsize=(12.5, 3.8 * len(metrics)), squeeze=False, layout="constrained")
        for row, metric in zip(axes, metrics):
            mp = [p for p in pts if p["metric"] == metric]
            labels: dict[int, list] = {}
            for j, proxy in enumerate(s for s in rep["sizes"] if any(p["proxy"] == s for p in mp)):
                q = sorted((p for p in mp if p["proxy"] == proxy), key=lambda p: p["fraction"])
                for k, (ax, key) in enumerate(zip(row, ("spearman", "decision_accuracy"))):
                    qq = [p for p in q if p[key] is not None]
                    if not qq:
                        continue
                    xs, ys, color = [p["fraction"] for p in qq], [p[key] for p in qq], PALETTE[j % len(PALETTE)]
                    ax.plot(xs, ys, marker=MARKERS[j % len(MARKERS)], ms=4, lw=1.5, color=color)
                    ci = [p.get(f"{key}_ci") for p in qq]
                    if all(ci) and len(qq) > 1:
                        ax.fill_between(xs, [c[0] for c in ci], [c[1] for c in ci], color=color, alpha=0.13, lw=0)
                    labels.setdefault(k, []).append((xs[-1], ys[-1], proxy + (" (target)" if proxy == es["target"] else ""), color))
            for ax, key, name in zip(row, ("spearman", "decision_accuracy"), ("Spearman rho", "decision accuracy")):
                ax.set_xlabel("fraction of the proxy's training")
                ax.set_ylabel(name)
                ax.set_title(_wrap(f"{metric}: {name} with the final {es['target']} ranking", 5.6))
                ax.set_xlim(0, 1.03)
                ax.grid(alpha=0.3)
                _agreement_axis(ax, key, _bigram_da(rep, metric, es["target"]))
            _layout(fig)
            for k, ax in enumerate(row):
                _end_labels(ax, labels.get(k, []))
    return fig


def fig_scaling(rep: dict):
    """Final tuned value per size against parameters (log x), one line per recipe; error bars: the pooled
    seed standard deviation at that size where seeds exist; the recipes' mean bigram loss where known."""
    params = rep.get("size_params") or {}
    vals = size_values(rep)
    if not vals:
        return "no comparisons between sizes"
    sizes = [s for s in rep["sizes"] if params.get(s)]
    if len(sizes) < 2:
        return "parameter counts are known for fewer than 2 sizes (a --from-csv report needs a params column)"
    metrics = _panel_metrics(rep, vals)
    sd = {(n["metric"], n["size"]): n.get("pooled_sd") for n in rep.get("seed_noise") or []}
    bigram: dict[str, list[float]] = {}
    for v in (rep.get("baselines") or {}).get("values") or []:
        if v.get("bigram") is not None:
            bigram.setdefault(v["metric"], []).append(v["bigram"])
    units = _units(rep)
    panel_ends: dict[str, list] = {}
    with _style() as plt:
        fig, axes = _grid(plt, len(metrics), ncols=2, w=6.4, h=4.4)
        for ax, metric in zip(axes, metrics):
            per = vals[metric]
            recipes = sorted({r for s in sizes for r in per.get(s, {})})
            ends = panel_ends.setdefault(metric, [])
            if len(recipes) > MAX_LINE_LABELS:  # many recipes: one thin LineCollection, unlabelled (a Line2D each costs seconds)
                from matplotlib.collections import LineCollection

                ax.add_collection(
                    LineCollection(
                        [[(params[s], per[s][r]) for s in sizes if r in per.get(s, {})] for r in recipes],
                        lw=0.6,
                        alpha=0.5,
                        colors=PALETTE[0],  # unlabelled: a colour per line would identify nothing
                    )
                )
                ax.autoscale_view()
                recipes = []
            for j, r in enumerate(recipes):
                pts = [(params[s], per[s][r], sd.get((metric, s))) for s in sizes if r in per.get(s, {})]
                if not pts:
                    continue
                st = _style_of(j)
                xs, ys, err = zip(*pts)
                yerr = [e or 0.0 for e in err] if any(err) else None
                ax.errorbar(xs, ys, yerr=yerr, marker=MARKERS[j % len(MARKERS)], ms=4, lw=1.4, capsize=3, elinewidth=0.9, **st)
                ends.append((xs[-1], ys[-1], _short(r, 24), st["color"]))
            if metric in bigram:
                b = sum(bigram[metric]) / len(bigram[metric])
                _baseline_line(ax, b, f"bigram baseline (mean over recipes, {b:.2f})", right=False)
            ax.set_xscale("log")
            from matplotlib.ticker import FixedLocator, NullLocator

            ax.xaxis.set_major_locator(FixedLocator([params[s] for s in sizes]))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([s if s == _count(params[s]) else f"{s}\n{_count(params[s])}" for s in sizes])
            ax.set_xlim(params[sizes[0]] / 1.3, params[sizes[-1]] * 1.3)
            ax.set_xlabel("parameters (log scale)")
            ax.set_ylabel(f"final tuned {units}")
            note = "; error bars: pooled seed SD" if any(sd.get((metric, s)) for s in sizes) else ""
            ax.set_title(_wrap(f"{metric}: best-LR seed-mean value vs model size{note}", 6.0))
            ax.grid(alpha=0.3)
        _layout(fig, final=not any(panel_ends.values()))  # unlabelled lines: nothing is added outside the axes
        for ax, metric in zip(axes, metrics):
            _end_labels(ax, panel_ends.get(metric, []))
    return fig


def _count(n: float) -> str:
    """A parameter count the way papers write it: 35k, 1.3M, 7B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


def fig_frontier(rep: dict):
    front = rep.get("frontier") or {}
    if not front.get("available"):
        return f"frontier not available ({front.get('reason')})"
    from proxyscale.analysis.frontier import _draw

    pts = [p for p in front["points"] if p["decision_accuracy"] is not None]
    panels = [(m, [p for p in pts if p["metric"] == m]) for m in frontier_metrics(rep)]
    panels = [(m, q) for m, q in panels if q]
    if not panels:
        return "no frontier point has a decision accuracy"
    if all(len(q) == 1 for _, q in panels):
        return "one point per eval set (a single proxy size, final values only): the table below lists it with its interval"
    with _style() as plt:
        fig, axes = _grid(plt, len(panels), ncols=2 if len(panels) > 1 else 1, w=6.4, h=4.6)
        for ax, (m, q) in zip(axes, panels):
            _draw(ax, front, m, q, FONT)
            ax.set_title(_wrap(ax.get_title(), 6.0), fontsize=10.5)
    return fig


def fig_per_example(rep: dict):
    """Mean predictive correlation against the largest size vs proxy size (parameters, log x), per eval set, with intervals."""
    pe = rep.get("per_example") or {}
    pts = [e for e in example_entries(rep) if e["target"] == pe.get("target")]
    if not pts:
        return f"per-example view not available ({pe.get('reason') or 'no per-example losses'})"
    sizes = rep.get("sizes") or []
    use_params = all(e.get("proxy_params") for e in pts)
    metrics = sorted({e["metric"] for e in pts})
    with _style() as plt:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
        for k, m in enumerate(metrics):
            es = sorted((e for e in pts if e["metric"] == m), key=lambda e: e.get("proxy_params") or sizes.index(e["proxy"]))
            shift = k - (len(metrics) - 1) / 2  # side by side, so the intervals do not hide each other
            x = [float(e["proxy_params"]) * (1 + 0.04 * shift) if use_params else sizes.index(e["proxy"]) + 0.05 * shift for e in es]
            y = [e["mean"] for e in es]
            ci = [e.get("mean_ci") or [e["mean"]] * 2 for e in es]
            err = [[v - c[0] for v, c in zip(y, ci)], [c[1] - v for v, c in zip(y, ci)]]
            ax.errorbar(x, y, yerr=err, marker=MARKERS[k % len(MARKERS)], capsize=3, label=m, **_style_of(k))
        if use_params:
            from matplotlib.ticker import FixedLocator, NullLocator

            at = {e["proxy"]: float(e["proxy_params"]) for e in pts}
            ax.set_xscale("log")
            ax.set_xlim(min(at.values()) / 2, max(at.values()) * 2)
            ax.xaxis.set_major_locator(FixedLocator(list(at.values())))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([f"{k}\n{_count(v)}" for k, v in at.items()])
            ax.set_xlabel("proxy size (parameters, log scale)")
        else:
            ax.set_xticks(range(len(sizes)), sizes)
            ax.set_xlabel("proxy size")
        _chance(ax, 0.0, "no correlation (0)")
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(f"mean predictive correlation vs {pe.get('target')}")
        ax.set_title(_wrap("Per-example recipe effects: proxy vs target (95% CI over examples)", 6.0))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", title="eval set")
    return fig


FIGURES = [
    ("scatter", f"Proxy vs target (at most {MAX_PANELS} eval sets, lowest decision accuracy first)", fig_scatter),
    ("bump", f"Recipe ranks across sizes (at most {MAX_PANELS} eval sets, lowest decision accuracy first)", fig_bump),
    ("scaling", f"Loss vs parameters per recipe (at most {MAX_PANELS} eval sets)", fig_scaling),
    ("heatmap", "Decision accuracy: eval set x (proxy → target)", fig_heatmap),
    ("reduced_lr", "Reduced-LR protocol: agreement vs proxy learning rate", fig_reduced_lr),
    ("early", "Early signal: agreement during training", fig_early),
]
# the frontier and the per-example figure sit in their own sections, not under "Figures"
ALL_FIGURES = FIGURES + [("frontier", "Compute-decision frontier", fig_frontier), ("per_example", "Per-example view", fig_per_example)]


BUILDERS = {key: fn for key, _, fn in ALL_FIGURES}
COSTLIEST = ("scatter", "bump", "scaling", "reduced_lr", "early", "frontier")  # drawn first, so the workers finish together


def _build(key: str, rep: dict):
    """Figure `key` of `rep`: a matplotlib Figure, or the one-line reason it was skipped."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constrained layout's "not applied" and friends: the figure is still drawn
        return BUILDERS[key](rep)


def figures(rep: dict) -> dict:
    """key -> matplotlib Figure, or the one-line reason it was skipped; for every figure of the report."""
    return {key: _build(key, rep) for key in BUILDERS}


def _draw_one(job: tuple[str, dict]) -> tuple[str, str | tuple[bytes, bytes]]:
    """One figure as (PNG bytes, SVG bytes), or the reason it was not drawn."""
    key, rep = job
    fig = _build(key, rep)
    if isinstance(fig, str) or fig is None:
        return key, fig or "nothing to draw"
    try:
        bbox = _freeze(fig)
        return key, (_png(fig, bbox), _svg(fig, bbox))
    finally:
        _plt().close(fig)


@contextmanager
def painters():
    """Worker processes for draw_all, one per usable core, forked at once so they import matplotlib while the caller
    builds the report: importing and drawing are most of a --from-csv report's time (seconds per figure with hundreds
    of recipes). None (draw in this process) on one core, without fork, or while other Python threads run."""
    import multiprocessing
    import os
    import threading

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < 2 or "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        yield None
        return
    with multiprocessing.get_context("fork").Pool(min(cores, len(BUILDERS)), initializer=_plt) as pool:
        yield pool


def draw_all(rep: dict, pool=None) -> dict[str, str | tuple[bytes, bytes]]:
    """key -> (PNG, SVG) bytes, or the reason the figure was skipped, for every figure; on `pool` (painters()) if given."""
    order = sorted(BUILDERS, key=lambda k: COSTLIEST.index(k) if k in COSTLIEST else len(COSTLIEST))
    jobs = [(key, rep) for key in order]
    if pool is None:
        return dict(map(_draw_one, jobs))
    return dict(pool.imap_unordered(_draw_one, jobs))


def fig_file(key: str) -> str:
    return f"fig_{key}.png"


def markdown(rep: dict, drawn=(), skipped: dict[str, str] | None = None, extra: dict[str, bytes] | None = None) -> str:
    """report.md: `drawn` names the figures written beside it (fig_<key>.png, linked), `skipped` says why the others were not."""
    return sections.report(rep, "md", sections.Figures({k: None for k in drawn}, skipped or {}, extra), _titles())


def html_page(rep: dict, figures: dict[str, bytes], skipped: dict[str, str] | None = None, extra: dict[str, bytes] | None = None) -> str:
    """report.html: self-contained (figures as base64 PNG), each figure linked to its PNG and SVG files beside it."""
    return sections.page(sections.title(rep), sections.report(rep, "html", sections.Figures(figures, skipped or {}, extra), _titles()))


def _titles() -> list[tuple[str, str]]:
    return [(key, title) for key, title, _ in FIGURES]


NOT_DRAWN = "the report was written with --no-figures"


def write(rep: dict, folder: Path, pool=None, extra: dict[str, bytes] | None = None, draw: bool = True) -> list[Path]:
    """report.md, report.html and every figure as fig_<name>.png and fig_<name>.svg beside them (drawn on `pool`, from
    painters(), if given); a figure not drawn this time loses its files from an earlier report (they would be linked
    from nothing and mislead). `extra`: figures a section writes itself ({"attribution": PNG}), embedded in the page."""
    pngs: dict[str, bytes] = {}
    skipped: dict[str, str] = {}
    written: list[Path] = []
    drawn_all = draw_all(rep, pool) if draw else dict.fromkeys(BUILDERS, NOT_DRAWN)
    for key in BUILDERS:  # the report's order, whatever order the workers finished in
        drawn = drawn_all[key]
        png_path = folder / fig_file(key)
        svg_path = png_path.with_suffix(".svg")
        if isinstance(drawn, str):
            skipped[key] = drawn
            for old in (png_path, svg_path):
                if old.exists():
                    old.unlink()
            continue
        pngs[key] = drawn[0]
        png_path.write_bytes(drawn[0])
        svg_path.write_bytes(drawn[1])
        written += [png_path, svg_path]
    md = folder / "report.md"
    md.write_text(markdown(rep, pngs, skipped, extra))
    page = folder / "report.html"
    page.write_text(html_page(rep, pngs, skipped, extra))
    return [md, page] + written
