"""report.json -> report.md (text, tables, and links to the figures) and a self-contained report.html
(the same figures embedded as base64 PNG data URIs, so it opens offline). Every figure is also written
beside report.md as fig_<name>.png and fig_<name>.svg. matplotlib runs on the Agg backend.

Figure builders (fig_<name>) return a matplotlib Figure, or a string saying why there is nothing to
draw (the md and html print it as a note in the figure's place); `figures(rep)` runs them all, so tests
can inspect the Figure objects (font sizes, clipping) before anything is saved."""

from __future__ import annotations

import base64
import html
import io
import math
import textwrap
from contextlib import contextmanager
from pathlib import Path

from proxyscale.report import sections
from proxyscale.report.markup import html_table, md_table

MAX_LABELS = 25  # recipes drawn as individual, directly labelled lines in the bump chart
MAX_POINT_LABELS = 8  # scatter points labelled by name: all up to this many, else the extremes
MAX_LINE_LABELS = 12  # lines labelled at their end (loss vs parameters): more are left unlabelled
MAX_FLIP_ROWS = 15  # flips listed per comparison in the tables
MAX_PANELS = 6  # per-metric panels of the scatter and bump figures: the eval sets with the lowest decision accuracy
MAX_FRONTIER_PANELS = 3  # eval sets drawn in the frontier figure: those whose best choice is least sure
DPI = 110  # PNG resolution: a figure is shown at its size in inches x DPI pixels (100% zoom)
FONT = 9  # the smallest font size (pt) of any text on a figure
# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies; the yellow last (weak on white).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"]
LINESTYLES = ["-", "--", "-.", ":"]  # with more lines than colours, colour x line style tells them apart
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
FRONTIER_PNG = "fig_frontier.png"  # written beside report.md and linked from it (with its .svg)
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


def _primary(rep: dict) -> list[dict]:
    return [c for c in rep["comparisons"] if c.get("proxy_lr") in (None, "tuned") and c.get("target_mode") in (None, "tuned")]


def _f(v, nd: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


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
    comps = [c for c in _primary(rep) if c["target"] == target and c["n_recipes"] >= 2]
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
    for c in _primary(rep):
        if c["target"] == rep["sizes"][-1]:
            low[c["metric"]] = min(low.get(c["metric"], 2.0), -1.0 if c["decision_accuracy"] is None else c["decision_accuracy"])
    return sorted(low, key=lambda m: (low[m], m))


def size_values(rep: dict) -> dict:
    """metric -> size -> recipe -> tuned seed-mean value, from the primary comparisons."""
    out: dict = {}
    for c in _primary(rep):
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
    comps = [c for c in _primary(rep) if c["decision_accuracy"] is not None]
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
    from proxyscale.report.examples import entries

    pe = rep.get("per_example") or {}
    pts = [e for e in entries(rep) if e["target"] == pe.get("target")]
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


# ---------------------------------------------------------------------------------------------
# text blocks shared by markdown and html


def _title(rep: dict) -> str:
    src = rep["source"]
    return f"proxyscale report: {Path(src['path']).name} ({src['kind']})"


def verdict_lines(rep: dict) -> list[tuple[str, list[str]]]:
    out = []
    for pm in rep["summary"]["per_metric"]:
        out.append((pm["metric"], [f"**{ln['verdict']}** ({ln['reason']}). {ln['sentence'][0].upper() + ln['sentence'][1:]}" for ln in pm["lines"]]))
    return out


def reduced_lines(rep: dict) -> list[str]:
    red = rep.get("reduced_lr") or {}
    if not red.get("available"):
        return [f"Not available: {red.get('reason')}."]
    lines = [red["assumption"] + " Tuned target = each recipe's best seed-mean over the target's LR grid."]
    for e in red["entries"]:
        won = ", ".join(f"{r}: {lr:g}" for r, lr in e["target_best_lr"].items())
        own = f" (own best LR: {e['proxy']} {_lr(e['proxy_best_lr'])}, {e['target']} {_lr(e['target_own_best_lr'])})"
        bt, st = e.get("best_tuned"), e.get("standard_tuned")
        if bt:
            s = (
                f"{e['metric']}, {e['proxy']}→{e['target']}{own}: best proxy LR {bt['proxy_lr']:g} (decision accuracy "
                f"{_f(bt['decision_accuracy'])}, Spearman {_f(bt['spearman'])} vs the tuned target)"
            )
            if st:
                s += f"; at the standard LR {red['standard_lr']:g}: {_f(st['decision_accuracy'])} / {_f(st['spearman'])}"
        else:
            s = f"{e['metric']}, {e['proxy']}→{e['target']}{own}: no best proxy LR ({e.get('reason_tuned')})"
        bf = e.get("best_fixed")
        s += (
            f"; against the fixed-LR target the best proxy LR is {bf['proxy_lr']:g} ({_f(bf['decision_accuracy'])})"
            if bf
            else f"; fixed-LR target: {e['reason_fixed']}"
            if e.get("reason_fixed")
            else ""
        )
        und = sum(p["n_undertrained"] for p in e["curve"] if p["target_mode"] == "tuned")
        if und:
            s += f"; {und} undertrained proxy cell(s) (worse than the bigram) excluded from the pick"
        s += "".join(f"; {n}" for n in e.get("notes") or [])
        lines.append(s + f". Target LR that won per recipe: {won}.")
    return lines


def _lr(v) -> str:
    return "n/a" if v is None else f"{v:g}"


def comp_head() -> list[str]:
    from proxyscale.analysis.types import table_columns

    return [label for label, _ in table_columns()]


def comparison_rows(rep: dict) -> list[list[str]]:
    """One row per primary comparison; the columns are the typed Comparison's (analysis.types)."""
    from proxyscale.analysis.types import table_columns

    cols = table_columns()
    return [[fmt(c) for _, fmt in cols] for c in _primary(rep)]


def flip_rows(rep: dict) -> list[list[str]]:
    rows = []
    for c in _primary(rep):
        for fl in c["flips"][:MAX_FLIP_ROWS]:
            rows.append(
                [
                    c["metric"],
                    f"{c['proxy']}→{c['target']}",
                    fl["a"],
                    fl["b"],
                    f"{fl['proxy_a']:.4g} vs {fl['proxy_b']:.4g}",
                    f"{fl['target_a']:.4g} vs {fl['target_b']:.4g}",
                    fl["proxy_prefers"],
                    fl["target_prefers"],
                ]
            )
    return rows


FLIP_HEAD = ["metric", "proxy→target", "recipe a", "recipe b", "proxy (a vs b)", "target (a vs b)", "proxy prefers", "target prefers"]


def status_rows(rep: dict) -> list[list[str]]:
    rows = []
    for size in rep["sizes"]:
        c = (rep.get("status_counts") or {}).get(size, {})
        if c:
            rows.append([size, str(c.get("completed", 0)), str(c.get("diverged", 0)), str(c.get("failed", 0))])
    for size, c in (rep.get("status_counts") or {}).items():
        if size not in rep["sizes"]:
            rows.append([size, str(c.get("completed", 0)), str(c.get("diverged", 0)), str(c.get("failed", 0))])
    return rows


def baseline_rows(rep: dict) -> list[list[str]]:
    b = rep.get("baselines") or {}
    return [
        [
            c["metric"],
            c["baseline"],
            c["target"],
            f"{_f(c['spearman'])} {_ci(c['spearman_ci'])}",
            f"{_f(c['decision_accuracy'])} {_ci(c['decision_accuracy_ci'])}",
            c.get("reason") or "",
        ]
        for c in b.get("comparisons", [])
    ]


def noise_rows(rep: dict) -> list[list[str]]:
    return [[n["metric"], n["size"], _f(n.get("floor")), str(n["n_seed_pairs"]), n.get("reason") or ""] for n in rep.get("seed_noise", [])]


# ---------------------------------------------------------------------------------------------
# predictions and the compute-decision frontier (issue 15)


def frontier_metrics(rep: dict) -> list[str]:
    """The eval sets the frontier figure draws: no choice clearing the level first, then the lowest best lower bound."""
    front = rep.get("frontier") or {}
    best: dict[str, float] = {}
    for p in front.get("points") or []:
        lo = (p.get("decision_accuracy_ci") or [p.get("decision_accuracy") or 0.0])[0]
        best[p["metric"]] = max(best.get(p["metric"], -1.0), lo if lo is not None else -1.0)
    chosen = {pl["metric"]: pl["choice"] is not None for pl in front.get("plans") or []}
    return sorted(best, key=lambda m: (chosen.get(m, False), best[m], m))[:MAX_FRONTIER_PANELS]


PRED_HEAD = ["fit sizes → target", "method", "decision acc. [95%]", "Spearman", "mean abs error", "compute fraction", "DA − best single size [95%]"]


def prediction_tables(rep: dict) -> list[tuple[str, list[list[str]]]]:
    """Per metric: each extrapolation method (backtests marked) and each single size, scored at the same target."""
    pred = rep.get("prediction") or {}
    out = []
    for metric in rep["metrics"]:
        rows = []
        for bt in (False, True):
            ms = [e for e in pred.get("methods") or [] if e["metric"] == metric and bool(e.get("backtest")) == bt]
            ss = [e for e in pred.get("single_scale") or [] if e["metric"] == metric and bool(e.get("backtest")) == bt]
            for e in ms:
                name = e["method"] + (" (exact fit)" if e.get("exact_fit") else "") + (" (experimental)" if e.get("experimental") else "")
                diff = f"{e['da_diff']:+.3f} {_ci(e.get('da_diff_ci'))}" if e.get("da_diff") is not None else "n/a"
                rows.append(
                    [
                        f"{'+'.join(e['fit_sizes'])} → {e['target']}" + (" (backtest)" if bt else ""),
                        name,
                        f"{_f(e.get('decision_accuracy'), 3)} {_ci(e.get('decision_accuracy_ci'))}".strip(),
                        _f(e.get("spearman"), 3),
                        _f(e.get("mean_abs_error"), 4),
                        _compute(rep, e["compute_fraction"]),
                        diff,
                    ]
                )
            for e in ss:
                rows.append(
                    [
                        f"{e['size']} → {e['target']}" + (" (backtest)" if bt else ""),
                        "single size (raw values)",
                        f"{_f(e.get('decision_accuracy'), 3)} {_ci(e.get('decision_accuracy_ci'))}".strip(),
                        _f(e.get("spearman"), 3),
                        _f(e.get("mean_abs_error"), 4),
                        _compute(rep, e["compute_fraction"]),
                        "(baseline)",
                    ]
                )
        if rows:
            out.append((metric, rows))
    return out


def prediction_lines(rep: dict) -> list[str]:
    """Plain words per metric and method (not backtests): does extrapolating rank better than the best single size,
    and does fitting it cost more than training the target."""
    pred = rep.get("prediction") or {}
    if not pred.get("available"):
        return [f"Not available: {pred.get('reason')}."] if pred else ["Not computed (a report built before predictions existed)."]
    lines = []
    for e in pred.get("methods") or []:
        if e.get("backtest"):
            continue
        head = f"{e['metric']}, {e['method']} ({'+'.join(e['fit_sizes'])} → {e['target']})"
        ci, best = e.get("da_diff_ci"), e.get("best_single_size")
        if e.get("decision_accuracy") is None:
            s = f"{head}: not scored ({e.get('reason') or 'the target was not run'})"
        elif best is None:
            s = f"{head}: decision accuracy {_f(e['decision_accuracy'], 3)}"
        elif ci is None:  # the recipe resamples never disagree: no interval, so no claim either way
            s = f"{head}: DA difference {e['da_diff']:+.3f} against {best} alone, with no interval (too few recipes to tell)"
        elif ci[0] > 0:
            s = f"{head} ranks better than {best} alone: DA difference {e['da_diff']:+.3f} {_ci(ci)} excludes 0"
        elif ci[1] < 0:
            s = f"{head} ranks worse than {best} alone: DA difference {e['da_diff']:+.3f} {_ci(ci)}"
        else:
            s = f"{head} does not rank better than {best} alone: DA difference {e['da_diff']:+.3f} {_ci(ci)} includes 0"
        if e.get("mean_abs_error") is not None:
            s += f"; mean abs error {e['mean_abs_error']:.4f}"
        if e["compute_fraction"] > 1:
            s += f"; fitting it costs {e['compute_fraction']:.2f}x training every recipe at {e['target']}: training the target directly is cheaper"
        lines.append(s + ".")
    return lines


def prediction_run_line(rep: dict) -> str | None:
    pred = rep.get("prediction") or {}
    if not pred.get("available"):
        return None
    skipped = "; ".join(f"{s['method']}: {s['reason']}" for s in pred.get("methods_skipped") or [])
    return (
        f"Methods run: {', '.join(pred.get('methods_run') or []) or 'none'}."
        + (f" Not run: {skipped}." if skipped else "")
        + " Backtests leave out the largest proxy and predict it from the smaller ones."
    )


FRONTIER_HEAD = ["metric", "choice", "compute fraction", "decision acc. [95%]", "step noise"]


def _compute(rep: dict, fraction: float) -> str:
    """A compute fraction, with the 20 tokens/param assumption beside it when no tokens/flops column measured it."""
    basis = (rep.get("frontier") or {}).get("compute_basis") or ""
    return f"{fraction:.3g}" + (" (assumes 20 tokens/param)" if basis.startswith("assumed") else "")


def frontier_rows(rep: dict) -> list[list[str]]:
    """The Pareto points (no cheaper point matches their decision accuracy), per metric."""
    from proxyscale.analysis.frontier import _label

    rows = []
    for p in (rep.get("frontier") or {}).get("points") or []:
        if p.get("on_frontier"):
            rows.append(
                [
                    p["metric"],
                    _label(p),
                    _compute(rep, p["compute_fraction"]),
                    f"{_f(p['decision_accuracy'], 3)} {_ci(p.get('decision_accuracy_ci'))}".strip(),
                    "yes" if p.get("noise") else "",
                ]
            )
    return rows


def frontier_lines(rep: dict) -> list[str]:
    front = rep.get("frontier") or {}
    if not front.get("available"):
        return [f"Not available: {front.get('reason')}."] if front else ["Not computed (a report built before the frontier existed)."]
    return [pl["sentence"] for pl in front.get("plans") or []]


def _frontier_intro(rep: dict) -> str:
    front = rep.get("frontier") or {}
    return (
        f"Each point is a way to choose a recipe: a proxy size (at each eval step where every recipe was evaluated) or an "
        f"extrapolation method, at its training compute as a fraction of training every recipe at {front.get('target')}, with "
        f"its decision accuracy against {front.get('target')} and its 95% rank interval over recipes (docs/statistics.md). "
        f"Compute: {front.get('compute_basis', 'see notes')}. The planner picks the cheapest point whose lower bound reaches the decision level "
        f"{front.get('decision_level', 0.8):.2f} (--decision-level)."
    )


# ---------------------------------------------------------------------------------------------
# writers


FLOOR_DEF = (
    "Floor: the share of recipe pairs that two seeds of the same recipe, size and LR order differently; no proxy can "
    "agree with the target better than its own seeds agree with each other."
)
TABLE_TERMS = (
    "Terms: decision acc. = share of untied recipe pairs ordered alike at both sizes (0.5 = chance); flips/pairs = pairs ordered "
    "oppositely / untied pairs; regret = how much worse at the target the proxy's pick is than the target's best (target units); "
    "DA w/o abstain = decision accuracy over the pairs whose proxy gap exceeds 2 x its seed noise (abstain = the others)."
)


def _directions(rep: dict) -> str:
    if rep["direction"] != "mixed":
        return f"Direction: {rep['direction']} is better for every metric."
    return "Direction per metric: " + ", ".join(f"{m} {d}" for m, d in rep["directions"].items()) + " is better."


def _intervals(rep: dict) -> str:
    return (
        f"95% intervals: Pearson by Fisher z; decision accuracy, Kendall and Spearman by inverting Kendall's test (docs/statistics.md), "
        f"widened by {rep['n_boot']} seed-noise replicates where seeds exist (random-number seed {rep['bootstrap_seed']} of the resampling, "
        "for reproducibility); verdicts use simultaneous intervals. "
        f"Ties: {rep['tie_rule']}."
    )


def markdown_predictions(rep: dict, figure_file: str | None = None, not_drawn: str | None = None) -> list[str]:
    out = ["## Predictions\n"]
    out += [f"- {s}" for s in prediction_lines(rep)] + [""]
    run = prediction_run_line(rep)
    if run:
        out.append(run + "\n")
    for metric, rows in prediction_tables(rep):
        out.append(f"### {metric}\n")
        out.append(md_table(PRED_HEAD, rows))
    notes = (rep.get("prediction") or {}).get("notes") or []
    if notes and (rep.get("prediction") or {}).get("available"):
        out.append("Notes:\n")
        out += [f"- {n}" for n in notes] + [""]
    out.append("## Compute-decision frontier\n")
    front = rep.get("frontier") or {}
    if front.get("available"):
        out.append(_frontier_intro(rep) + "\n")
        if figure_file:
            out.append(f"![Compute-decision frontier: {', '.join(frontier_metrics(rep))}]({figure_file})\n")
            out.append(f"[SVG]({Path(figure_file).with_suffix('.svg').name})\n")
        elif not_drawn:
            out.append(f"_Figure not drawn: {not_drawn}._\n")
    out += [f"- {s}" for s in frontier_lines(rep)] + [""]
    if front.get("available"):
        out.append(
            "Points on the frontier (no cheaper point matches their decision accuracy; step noise: the change from the "
            "previous step is below one recipe pair):\n"
        )
        out.append(md_table(FRONTIER_HEAD, frontier_rows(rep)))
        out += [f"- {n}" for n in front.get("notes") or []] + [""]
    return out


def markdown_figures(files: dict[str, str], skipped: dict[str, str]) -> list[str]:
    """Each figure as an image link (PNG, with its SVG beside it), or the note saying why it was skipped."""
    out = ["## Figures\n"]
    for key, title, _ in FIGURES:
        if files.get(key):
            out.append(f"### {title}\n")
            out.append(f"![{title}]({files[key]})\n")
            out.append(f"[SVG]({Path(files[key]).with_suffix('.svg').name})\n")
        elif skipped.get(key):
            out.append(f"### {title}\n")
            out.append(f"_Not drawn: {skipped[key]}._\n")
    return out


def markdown(rep: dict, figure_file: str | None = None, files: dict[str, str] | None = None, skipped: dict[str, str] | None = None) -> str:
    """report.md; `files` maps a figure's key to its PNG beside report.md, `skipped` to why it was not drawn."""
    out = [f"# {_title(rep)}\n"] + [f"- **{ln}**" if i == 0 else f"- {ln}" for i, ln in enumerate(rep["summary"]["bottom_line"])] + [""]
    out += [sections.render("decision", rep.get("decision"), "md"), sections.render("losses", rep.get("losses"), "md")]
    out += [
        f"{_directions(rep)} Sizes (smallest first): {', '.join(rep['sizes'])}. {len(rep['recipes'])} recipes, {len(rep['metrics'])} metric(s). "
        f"{_intervals(rep)}\n"
    ]
    out += [f"- {n}" for n in rep.get("notes", [])] + [""]
    out.append("## Verdict per eval set\n")
    for metric, lines in verdict_lines(rep):
        out.append(f"### {metric}\n")
        out += [f"- {ln}" for ln in lines] + [""]
    out.append(f"_{rep['summary']['verdict_rule']}_\n")
    if files or skipped:
        out += markdown_figures(files or {}, skipped or {})
    out.append("## All proxy→target comparisons (tuned LRs)\n")
    out.append(TABLE_TERMS + "\n")
    out.append(md_table(comp_head(), comparison_rows(rep)))
    out.append("## Null baselines (unigram / bigram count models)\n")
    b = rep.get("baselines") or {}
    if b.get("available"):
        out += [f"- {s}" for s in b.get("statements", [])] + [""]
        out.append(md_table(["metric", "baseline", "target", "Spearman", "decision acc.", "undefined"], baseline_rows(rep)))
    else:
        out.append(f"Not computed: {b.get('reason')}.\n")
    out.append("## Reduced-LR protocol\n")
    out += [f"- {s}" for s in reduced_lines(rep)] + [""]
    out.append("## Seed-noise floor\n")
    out.append(FLOOR_DEF + "\n")
    out.append(
        md_table(["metric", "size", "floor", "seed pairs", "note"], noise_rows(rep)) if rep.get("seed_noise") else "Single seed: no seed-noise estimate.\n"
    )
    out.append("## Early signal\n")
    es = rep.get("early_signal") or {}
    out.append(
        f"{len(es.get('points', []))} points against the final {es.get('target')} ranking (see the early-signal figure).\n"
        if es.get("available")
        else f"Not available: {es.get('reason')}.\n"
    )
    out += markdown_predictions(rep, figure_file, (skipped or {}).get("frontier"))
    out.append("## Flipped pairs\n")
    out.append(md_table(FLIP_HEAD, flip_rows(rep)))
    if rep.get("status_counts"):
        out.append("## Cell status\n")
        out.append(md_table(["size", "completed", "diverged", "failed"], status_rows(rep)))
        out.append("Diverged and failed cells are excluded from every figure.\n")
    out.append("Figures: the fig_*.png / fig_*.svg files beside this file (and embedded in report.html). Every number: report.json.\n")
    return "\n".join(out)


def html_predictions(rep: dict, png: bytes | None, not_drawn: str | None = None) -> list[str]:
    e = html.escape
    parts = ["<h2>Predictions</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in prediction_lines(rep)) + "</ul>"]
    run = prediction_run_line(rep)
    if run:
        parts.append(f"<p class=note>{e(run)}</p>")
    for metric, rows in prediction_tables(rep):
        parts.append(f"<h3>{e(metric)}</h3>" + html_table(PRED_HEAD, rows))
    pred = rep.get("prediction") or {}
    if pred.get("available") and pred.get("notes"):
        parts.append("<ul class=note>" + "".join(f"<li>{e(n)}</li>" for n in pred["notes"]) + "</ul>")
    parts.append("<h2>Compute-decision frontier</h2>")
    front = rep.get("frontier") or {}
    if front.get("available"):
        parts.append(f"<p>{e(_frontier_intro(rep))}</p>")
        if png:
            title = f"Compute-decision frontier: {', '.join(frontier_metrics(rep))}"
            parts.append(f"<img alt='{e(title)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>")
            svg = Path(FRONTIER_PNG).with_suffix(".svg").name
            parts.append(f"<p class=note>Files: <a href='{FRONTIER_PNG}'>{FRONTIER_PNG}</a>, <a href='{svg}'>{svg}</a></p>")
        elif not_drawn:
            parts.append(f"<p class=note>Figure not drawn: {e(not_drawn)}.</p>")
    parts.append("<ul>" + "".join(f"<li>{e(s)}</li>" for s in frontier_lines(rep)) + "</ul>")
    if front.get("available"):
        parts.append(html_table(FRONTIER_HEAD, frontier_rows(rep)))
        parts += [f"<p class=note>{e(n)}</p>" for n in front.get("notes") or []]
    return parts


def html_page(rep: dict, figures: dict[str, bytes], skipped: dict[str, str] | None = None) -> str:
    """report.html: self-contained (figures as base64 PNG), each figure linked to its PNG and SVG files beside it."""
    skipped = skipped or {}
    e = html.escape
    parts = [
        sections.head(_title(rep)),
        f"<h1>{e(_title(rep))}</h1>",
        "<ul class=bottom>" + "".join(f"<li>{e(ln)}</li>" for ln in rep["summary"]["bottom_line"]) + "</ul>",
        sections.render("decision", rep.get("decision"), "html"),
        sections.render("losses", rep.get("losses"), "html"),
        f"<p>{e(_directions(rep))} Sizes (smallest first): {e(', '.join(rep['sizes']))}. {len(rep['recipes'])} recipes, "
        f"{len(rep['metrics'])} metric(s). {e(_intervals(rep))}</p>",
    ]
    parts += [f"<p class=note>{e(n)}</p>" for n in rep.get("notes", [])]
    parts.append("<h2>Verdict per eval set</h2>")
    for pm in rep["summary"]["per_metric"]:
        parts.append(f"<h3>{e(pm['metric'])}</h3><ul>")
        for ln in pm["lines"]:
            parts.append(
                f"<li><span class='{ln['verdict']}'>{e(ln['verdict'])}</span> ({e(ln['reason'])}). {e(ln['sentence'][0].upper() + ln['sentence'][1:])}</li>"
            )
        parts.append("</ul>")
    parts.append(f"<p class=note>{e(rep['summary']['verdict_rule'])}</p>")
    b = rep.get("baselines") or {}
    if b.get("statements"):
        parts.append("<ul>" + "".join(f"<li>{e(s)}</li>" for s in b["statements"]) + "</ul>")
    for key, title, _ in FIGURES:
        if figures.get(key):
            data = base64.b64encode(figures[key]).decode("ascii")
            png = fig_file(key)
            svg = Path(png).with_suffix(".svg").name
            parts.append(
                f"<h2>{e(title)}</h2><img alt='{e(title)}' src='data:image/png;base64,{data}'>"
                f"<p class=note>Files: <a href='{png}'>{png}</a>, <a href='{svg}'>{svg}</a></p>"
            )
        elif skipped.get(key):
            parts.append(f"<h2>{e(title)}</h2><p class=note>Not drawn: {e(skipped[key])}.</p>")
    parts.append(f"<h2>All proxy→target comparisons (tuned LRs)</h2><p class=note>{e(TABLE_TERMS)}</p>" + html_table(comp_head(), comparison_rows(rep)))
    parts.append("<h2>Null baselines</h2>")
    parts.append(
        html_table(["metric", "baseline", "target", "Spearman", "decision acc.", "undefined"], baseline_rows(rep))
        if b.get("available")
        else f"<p>Not computed: {e(str(b.get('reason')))}.</p>"
    )
    parts.append("<h2>Reduced-LR protocol</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in reduced_lines(rep)) + "</ul>")
    parts.append(
        "<h2>Seed-noise floor</h2>"
        + f"<p class=note>{e(FLOOR_DEF)}</p>"
        + (
            html_table(["metric", "size", "floor", "seed pairs", "note"], noise_rows(rep))
            if rep.get("seed_noise")
            else "<p>Single seed: no seed-noise estimate.</p>"
        )
    )
    es = rep.get("early_signal") or {}
    if not es.get("available"):
        parts.append(f"<h2>Early signal</h2><p>Not available: {e(str(es.get('reason')))}.</p>")
    parts += html_predictions(rep, figures.get("frontier"), skipped.get("frontier"))
    parts.append("<h2>Flipped pairs</h2>" + html_table(FLIP_HEAD, flip_rows(rep)))
    if rep.get("status_counts"):
        parts.append("<h2>Cell status</h2>" + html_table(["size", "completed", "diverged", "failed"], status_rows(rep)))
        parts.append("<p class=note>Diverged and failed cells are excluded from every figure.</p>")
    parts.append("<p class=note>Every number is in report.json.</p></body></html>")
    return "\n".join(parts)


def write(rep: dict, folder: Path, pool=None) -> list[Path]:
    """report.md, report.html and every figure as fig_<name>.png and fig_<name>.svg beside them (drawn on `pool`, from
    painters(), if given); a figure not drawn this time loses its files from an earlier report (they would be linked
    from nothing and mislead)."""
    pngs: dict[str, bytes] = {}
    skipped: dict[str, str] = {}
    written: list[Path] = []
    drawn_all = draw_all(rep, pool)
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
    own = ("frontier", "per_example")  # drawn in their own sections
    md = folder / "report.md"
    md.write_text(markdown(rep, FRONTIER_PNG if "frontier" in pngs else None, {k: fig_file(k) for k in pngs if k not in own}, skipped))
    page = folder / "report.html"
    page.write_text(html_page(rep, pngs, skipped))
    from proxyscale.report import examples as per_example  # issue 16: appends its own section

    per_example.write(rep, md, page, fig_file("per_example") if "per_example" in pngs else None, pngs.get("per_example"))
    return [md, page] + written
