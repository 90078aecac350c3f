"""report.json -> report.md (text and tables) and a self-contained report.html (figures embedded as
base64 PNG data URIs, so it opens offline). matplotlib runs on the Agg backend."""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

MAX_LABELS = 25  # recipes labelled by name in scatter / bump charts
MAX_FLIP_ROWS = 15  # flips listed per comparison in the tables
MAX_PANELS = 6  # per-metric panels of the scatter and bump figures: the eval sets with the lowest decision accuracy
MAX_FRONTIER_PANELS = 3  # eval sets drawn in the frontier figure: those whose best choice is least sure
FRONTIER_PNG = "fig_frontier.png"  # written beside report.md and linked from it


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
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


def _grid(n: int, ncols: int = 3, w: float = 4.6, h: float = 3.8, **kw):
    plt = _plt()
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, **kw)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


# ---------------------------------------------------------------------------------------------
# figures


def fig_scatter(rep: dict) -> bytes | None:
    target = rep["sizes"][-1]
    comps = [c for c in _primary(rep) if c["target"] == target and c["n_recipes"] >= 2]
    if not comps:
        return None
    comps = sorted(comps, key=lambda c: (c["decision_accuracy"] is not None, c["decision_accuracy"] or 0.0))[:MAX_PANELS]
    fig, axes = _grid(len(comps))
    units = _units(rep)
    for ax, c in zip(axes, comps):
        recs = c["recipes"]
        x = [c["proxy_values"][r] for r in recs]
        y = [c["target_values"][r] for r in recs]
        ax.scatter(x, y, s=22, color="tab:blue", label="recipe (seed mean, best LR)" if c.get("proxy_lr") == "tuned" else "recipe", zorder=3)
        if c.get("fit"):
            lo, hi = min(x), max(x)
            ax.plot([lo, hi], [c["fit"]["intercept"] + c["fit"]["slope"] * v for v in (lo, hi)], color="tab:red", lw=1.2,
                    label=f"linear fit (R² {_f(c['r2'])})")
        if len(recs) <= MAX_LABELS:
            for r, xv, yv in zip(recs, x, y):
                ax.annotate(_short(r, 24), (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"{c['metric']}: {c['proxy']} vs {c['target']}\nSpearman {_f(c['spearman'])}, DA {_f(c['decision_accuracy'])}", fontsize=9)
        ax.set_xlabel(f"proxy {c['proxy']} ({units})", fontsize=8)
        ax.set_ylabel(f"target {c['target']} ({units})", fontsize=8)
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


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


def fig_bump(rep: dict) -> bytes | None:
    vals = size_values(rep)
    if not vals:
        return None
    vals = {m: vals[m] for m in _worst_metrics(rep)[:MAX_PANELS] if m in vals} or vals
    fig, axes = _grid(len(vals), ncols=2, w=6.0, h=4.2)
    plt = _plt()
    for ax, (metric, per) in zip(axes, sorted(vals.items())):
        higher = (rep.get("directions") or {}).get(metric, rep["direction"]) == "higher"
        sizes = [s for s in rep["sizes"] if s in per]
        recipes = sorted(set.intersection(*[set(per[s]) for s in sizes])) if sizes else []
        ranks = {}
        for s in sizes:
            order = sorted(recipes, key=lambda r: -per[s][r] if higher else per[s][r])
            for i, r in enumerate(order):
                ranks.setdefault(r, []).append(i + 1)
        cmap = plt.get_cmap("tab20")
        if len(recipes) <= MAX_LABELS:
            for j, r in enumerate(recipes):
                ax.plot(range(len(sizes)), ranks[r], marker="o", lw=1.2, ms=4, color=cmap(j % 20), alpha=0.85, label=_short(r))
        elif recipes:  # many recipes: one LineCollection instead of a Line2D per recipe (seconds per panel otherwise)
            from matplotlib.collections import LineCollection

            ax.add_collection(LineCollection([list(zip(range(len(sizes)), ranks[r])) for r in recipes], lw=0.6, alpha=0.5,
                                             colors=[cmap(j % 20) for j in range(len(recipes))]))
            ax.set_xlim(-0.2, len(sizes) - 0.8)
            ax.set_ylim(0.5, len(recipes) + 0.5)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels(sizes)
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.invert_yaxis()
        ax.set_xlabel("model size (smallest to largest)", fontsize=8)
        ax.set_ylabel("recipe rank (1 = best)", fontsize=8)
        ax.set_title(f"{metric}: rank of each recipe across sizes ({len(recipes)} recipes)", fontsize=9)
        if len(recipes) <= MAX_LABELS:
            ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def fig_heatmap(rep: dict) -> bytes | None:
    """One panel: eval sets x (proxy -> target) pairs, so its cost does not grow with panels per metric."""
    comps = [c for c in _primary(rep) if c["decision_accuracy"] is not None]
    metrics = sorted({c["metric"] for c in comps})
    pairs = [(p, t) for i, p in enumerate(rep["sizes"]) for t in rep["sizes"][i + 1:] if any(c["proxy"] == p and c["target"] == t for c in comps)]
    if not metrics or not pairs:
        return None
    import numpy as np

    mat = np.full((len(metrics), len(pairs)), np.nan)
    for c in comps:
        if (c["proxy"], c["target"]) in pairs:
            mat[metrics.index(c["metric"]), pairs.index((c["proxy"], c["target"]))] = c["decision_accuracy"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(pairs), 1.2 + 0.35 * len(metrics)))
    im = ax.imshow(mat, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto")
    if mat.size <= 400:
        for i, j in zip(*np.nonzero(np.isfinite(mat))):
            ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(pairs)))
    ax.set_xticklabels([f"{p}→{t}" for p, t in pairs], fontsize=8, rotation=30, ha="right")
    ax.set_yticks(range(len(metrics)))
    ax.set_yticklabels([_short(m, 30) for m in metrics], fontsize=8)
    ax.set_title("decision accuracy", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8, label="decision accuracy (fraction of pairs)")
    return _png(fig)


def fig_reduced_lr(rep: dict) -> bytes | None:
    red = rep.get("reduced_lr") or {}
    entries = red.get("entries") or []
    if not entries:
        return None
    metrics = sorted({e["metric"] for e in entries})
    plt = _plt()
    fig, axes = plt.subplots(len(metrics), 2, figsize=(11, 3.6 * len(metrics)), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for row, metric in zip(axes, metrics):
        for j, e in enumerate([e for e in entries if e["metric"] == metric]):
            for mode, style, marker in (("tuned", "-", "o"), ("fixed", "--", "s")):
                pts = [p for p in e["curve"] if p["target_mode"] == mode]
                for ax, key in zip(row, ("spearman", "decision_accuracy")):
                    xs = [p["proxy_lr"] for p in pts if p[key] is not None]
                    ys = [p[key] for p in pts if p[key] is not None]
                    if xs:
                        ax.plot(xs, ys, style, marker=marker, ms=4 if mode == "tuned" else 7, mfc="none" if mode == "fixed" else None,
                                color=cmap(j % 10),
                                label=f"{e['proxy']}→{e['target']} ({mode} target)")
                        bad = [(p["proxy_lr"], p[key]) for p in pts if p[key] is not None and p["n_undertrained"]]
                        if bad:
                            ax.scatter(*zip(*bad), marker="x", s=50, color="black", zorder=4,
                                       label="undertrained (worse than the bigram)" if j == 0 and mode == "tuned" else None)
        if red.get("standard_lr"):
            for ax in row:
                ax.axvline(red["standard_lr"], color="grey", lw=0.8, ls=":", label="standard LR")
        row[0].set_ylim(-1.05, 1.05)
        row[1].set_ylim(-0.02, 1.02)
        for ax, key in zip(row, ("Spearman rho", "decision accuracy")):
            ax.set_xscale("log")
            ax.set_xlabel("proxy peak learning rate (log scale)", fontsize=8)
            ax.set_ylabel(key, fontsize=8)
            ax.set_title(f"{metric}: {key} vs proxy LR", fontsize=9)
            ax.grid(alpha=0.3)
        row[1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return _png(fig)


def fig_early(rep: dict) -> bytes | None:
    es = rep.get("early_signal") or {}
    pts = es.get("points") or []
    if not pts:
        return None
    metrics = sorted({p["metric"] for p in pts})
    plt = _plt()
    fig, axes = plt.subplots(len(metrics), 2, figsize=(11, 3.4 * len(metrics)), squeeze=False)
    for row, metric in zip(axes, metrics):
        mp = [p for p in pts if p["metric"] == metric]
        for proxy in [s for s in rep["sizes"] if any(p["proxy"] == s for p in mp)]:
            q = sorted((p for p in mp if p["proxy"] == proxy), key=lambda p: p["fraction"])
            for ax, key in zip(row, ("spearman", "decision_accuracy")):
                xs = [p["fraction"] for p in q if p[key] is not None]
                ys = [p[key] for p in q if p[key] is not None]
                if xs:
                    ax.plot(xs, ys, marker="o", ms=3, label=f"{proxy}" + (" (target itself)" if proxy == es["target"] else ""))
        for ax, key in zip(row, ("Spearman rho", "decision accuracy")):
            ax.set_xlabel("fraction of the proxy's training", fontsize=8)
            ax.set_ylabel(key, fontsize=8)
            ax.set_title(f"{metric}: {key} with the final {es['target']} ranking", fontsize=9)
            ax.set_xlim(0, 1.05)
            ax.grid(alpha=0.3)
        row[0].set_ylim(-1.05, 1.05)
        row[1].set_ylim(-0.02, 1.02)
        row[1].legend(fontsize=7, title="proxy", title_fontsize=7)
    fig.tight_layout()
    return _png(fig)


FIGURES = [("scatter", f"Proxy vs target (at most {MAX_PANELS} eval sets, lowest decision accuracy first)", fig_scatter),
           ("bump", f"Recipe ranks across sizes (at most {MAX_PANELS} eval sets, lowest decision accuracy first)", fig_bump),
           ("heatmap", "Decision accuracy: eval set x (proxy → target)", fig_heatmap),
           ("reduced_lr", "Reduced-LR protocol: agreement vs proxy learning rate", fig_reduced_lr),
           ("early", "Early signal: agreement during training", fig_early)]


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
            s = (f"{e['metric']}, {e['proxy']}→{e['target']}{own}: best proxy LR {bt['proxy_lr']:g} (decision accuracy "
                 f"{_f(bt['decision_accuracy'])}, Spearman {_f(bt['spearman'])} vs the tuned target)")
            if st:
                s += f"; at the standard LR {red['standard_lr']:g}: {_f(st['decision_accuracy'])} / {_f(st['spearman'])}"
        else:
            s = f"{e['metric']}, {e['proxy']}→{e['target']}{own}: no best proxy LR ({e.get('reason_tuned')})"
        bf = e.get("best_fixed")
        s += (f"; against the fixed-LR target the best proxy LR is {bf['proxy_lr']:g} ({_f(bf['decision_accuracy'])})" if bf
              else f"; fixed-LR target: {e['reason_fixed']}" if e.get("reason_fixed") else "")
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
            rows.append([c["metric"], f"{c['proxy']}→{c['target']}", fl["a"], fl["b"], f"{fl['proxy_a']:.4g} vs {fl['proxy_b']:.4g}",
                         f"{fl['target_a']:.4g} vs {fl['target_b']:.4g}", fl["proxy_prefers"], fl["target_prefers"]])
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
    return [[c["metric"], c["baseline"], c["target"], f"{_f(c['spearman'])} {_ci(c['spearman_ci'])}",
             f"{_f(c['decision_accuracy'])} {_ci(c['decision_accuracy_ci'])}", c.get("reason") or ""] for c in b.get("comparisons", [])]


def noise_rows(rep: dict) -> list[list[str]]:
    return [[n["metric"], n["size"], _f(n.get("floor")), str(n["n_seed_pairs"]), n.get("reason", "")] for n in rep.get("seed_noise", [])]


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


def fig_frontier(rep: dict) -> bytes | None:
    front = rep.get("frontier") or {}
    if not front.get("available"):
        return None
    from proxyscale.analysis.frontier import frontier_figure

    return frontier_figure(front, metrics=frontier_metrics(rep))


PRED_HEAD = ["fit sizes → target", "method", "decision acc. [95%]", "Spearman", "mean abs error", "compute fraction",
             "DA − best single size [95%]"]


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
                rows.append([f"{'+'.join(e['fit_sizes'])} → {e['target']}" + (" (backtest)" if bt else ""), name,
                             f"{_f(e.get('decision_accuracy'), 3)} {_ci(e.get('decision_accuracy_ci'))}".strip(), _f(e.get("spearman"), 3),
                             _f(e.get("mean_abs_error"), 4), f"{e['compute_fraction']:.3g}", diff])
            for e in ss:
                rows.append([f"{e['size']} → {e['target']}" + (" (backtest)" if bt else ""), "single size (raw values)",
                             f"{_f(e.get('decision_accuracy'), 3)} {_ci(e.get('decision_accuracy_ci'))}".strip(), _f(e.get("spearman"), 3),
                             _f(e.get("mean_abs_error"), 4), f"{e['compute_fraction']:.3g}", "(baseline)"])
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
        elif ci is None or best is None:
            s = f"{head}: decision accuracy {_f(e['decision_accuracy'], 3)}"
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
    return (f"Methods run: {', '.join(pred.get('methods_run') or []) or 'none'}." + (f" Not run: {skipped}." if skipped else "")
            + " Backtests leave out the largest proxy and predict it from the smaller ones.")


FRONTIER_HEAD = ["metric", "choice", "compute fraction", "decision acc. [95%]", "step noise"]


def frontier_rows(rep: dict) -> list[list[str]]:
    """The Pareto points (no cheaper point matches their decision accuracy), per metric."""
    from proxyscale.analysis.frontier import _label

    rows = []
    for p in (rep.get("frontier") or {}).get("points") or []:
        if p.get("on_frontier"):
            rows.append([p["metric"], _label(p), f"{p['compute_fraction']:.3g}",
                         f"{_f(p['decision_accuracy'], 3)} {_ci(p.get('decision_accuracy_ci'))}".strip(), "yes" if p.get("noise") else ""])
    return rows


def frontier_lines(rep: dict) -> list[str]:
    front = rep.get("frontier") or {}
    if not front.get("available"):
        return [f"Not available: {front.get('reason')}."] if front else ["Not computed (a report built before the frontier existed)."]
    return [pl["sentence"] for pl in front.get("plans") or []]


def _frontier_intro(rep: dict) -> str:
    front = rep.get("frontier") or {}
    return (f"Each point is a way to choose a recipe: a proxy size (at each eval step where every recipe was evaluated) or an "
            f"extrapolation method, at its training compute as a fraction of training every recipe at {front.get('target')}, with "
            f"its decision accuracy against {front.get('target')} and a 95% bootstrap interval over recipes ({front.get('n_boot')} "
            f"resamples). The planner picks the cheapest point whose lower bound reaches the decision level "
            f"{front.get('decision_level', 0.8):.2f} (--decision-level).")


# ---------------------------------------------------------------------------------------------
# writers


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_none_\n"
    esc = lambda s: str(s).replace("|", "\\|")
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]) + "\n"


def _directions(rep: dict) -> str:
    if rep["direction"] != "mixed":
        return f"Direction: {rep['direction']} is better for every metric."
    return "Direction per metric: " + ", ".join(f"{m} {d}" for m, d in rep["directions"].items()) + " is better."


def _intervals(rep: dict) -> str:
    return (f"95% intervals: Fisher z over recipes, widened by {rep['n_boot']} seed-noise replicates where seeds exist (seed {rep['bootstrap_seed']}). "
            f"Ties: {rep['tie_rule']}.")


def markdown_predictions(rep: dict, figure_file: str | None = None) -> list[str]:
    out = ["## Predictions\n"]
    out += [f"- {s}" for s in prediction_lines(rep)] + [""]
    run = prediction_run_line(rep)
    if run:
        out.append(run + "\n")
    for metric, rows in prediction_tables(rep):
        out.append(f"### {metric}\n")
        out.append(_md_table(PRED_HEAD, rows))
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
    out += [f"- {s}" for s in frontier_lines(rep)] + [""]
    if front.get("available"):
        out.append("Points on the frontier (no cheaper point matches their decision accuracy; step noise: the change from the "
                   "previous step is below one recipe pair):\n")
        out.append(_md_table(FRONTIER_HEAD, frontier_rows(rep)))
        out += [f"- {n}" for n in front.get("notes") or []] + [""]
    return out


def markdown(rep: dict, figure_file: str | None = None) -> str:
    out = [f"# {_title(rep)}\n"] + [f"- **{ln}**" if i == 0 else f"- {ln}" for i, ln in enumerate(rep["summary"]["bottom_line"])] + [""]
    out += [f"{_directions(rep)} Sizes (smallest first): {', '.join(rep['sizes'])}. {len(rep['recipes'])} recipes, {len(rep['metrics'])} metric(s). "
            f"{_intervals(rep)}\n"]
    out += [f"- {n}" for n in rep.get("notes", [])] + [""]
    out.append("## Verdict per eval set\n")
    for metric, lines in verdict_lines(rep):
        out.append(f"### {metric}\n")
        out += [f"- {ln}" for ln in lines] + [""]
    out.append(f"_{rep['summary']['verdict_rule']}_\n")
    out.append("## All proxy→target comparisons (tuned LRs)\n")
    out.append(_md_table(comp_head(), comparison_rows(rep)))
    out.append("## Null baselines (unigram / bigram count models)\n")
    b = rep.get("baselines") or {}
    if b.get("available"):
        out += [f"- {s}" for s in b.get("statements", [])] + [""]
        out.append(_md_table(["metric", "baseline", "target", "Spearman", "decision acc.", "undefined"], baseline_rows(rep)))
    else:
        out.append(f"Not computed: {b.get('reason')}.\n")
    out.append("## Reduced-LR protocol\n")
    out += [f"- {s}" for s in reduced_lines(rep)] + [""]
    out.append("## Seed-noise floor\n")
    out.append(_md_table(["metric", "size", "floor", "seed pairs", "note"], noise_rows(rep)) if rep.get("seed_noise") else "Single seed: no seed-noise estimate.\n")
    out.append("## Early signal\n")
    es = rep.get("early_signal") or {}
    out.append(f"{len(es.get('points', []))} points against the final {es.get('target')} ranking (see report.html).\n" if es.get("available") else f"Not available: {es.get('reason')}.\n")
    out += markdown_predictions(rep, figure_file)
    out.append("## Flipped pairs\n")
    out.append(_md_table(FLIP_HEAD, flip_rows(rep)))
    if rep.get("status_counts"):
        out.append("## Cell status\n")
        out.append(_md_table(["size", "completed", "diverged", "failed"], status_rows(rep)))
        out.append("Diverged and failed cells are excluded from every figure.\n")
    out.append("Figures: report.html. Every number: report.json.\n")
    return "\n".join(out)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1150px;color:#222;line-height:1.45}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:1.6em}h3{margin-bottom:.3em}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f0f0f0}
img{max-width:100%;border:1px solid #eee}.holds{color:#1a7f37;font-weight:bold}.inconclusive{color:#9a6700;font-weight:bold}
.fails{color:#cf222e;font-weight:bold}.note{color:#555;font-size:.92em}.bottom{background:#f6f8fa;border:1px solid #ccc;padding:6px 20px}"""


def _html_table(head, rows) -> str:
    if not rows:
        return "<p class=note>none</p>"
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def html_predictions(rep: dict, png: bytes | None) -> list[str]:
    e = html.escape
    parts = ["<h2>Predictions</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in prediction_lines(rep)) + "</ul>"]
    run = prediction_run_line(rep)
    if run:
        parts.append(f"<p class=note>{e(run)}</p>")
    for metric, rows in prediction_tables(rep):
        parts.append(f"<h3>{e(metric)}</h3>" + _html_table(PRED_HEAD, rows))
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
    parts.append("<ul>" + "".join(f"<li>{e(s)}</li>" for s in frontier_lines(rep)) + "</ul>")
    if front.get("available"):
        parts.append(_html_table(FRONTIER_HEAD, frontier_rows(rep)))
        parts += [f"<p class=note>{e(n)}</p>" for n in front.get("notes") or []]
    return parts


def html_page(rep: dict, figures: dict[str, bytes]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(_title(rep))}</title><style>{CSS}</style></head><body>",
             f"<h1>{e(_title(rep))}</h1>",
             "<ul class=bottom>" + "".join(f"<li>{e(ln)}</li>" for ln in rep["summary"]["bottom_line"]) + "</ul>",
             f"<p>{e(_directions(rep))} Sizes (smallest first): {e(', '.join(rep['sizes']))}. {len(rep['recipes'])} recipes, "
             f"{len(rep['metrics'])} metric(s). {e(_intervals(rep))}</p>"]
    parts += [f"<p class=note>{e(n)}</p>" for n in rep.get("notes", [])]
    parts.append("<h2>Verdict per eval set</h2>")
    for pm in rep["summary"]["per_metric"]:
        parts.append(f"<h3>{e(pm['metric'])}</h3><ul>")
        for ln in pm["lines"]:
            parts.append(f"<li><span class='{ln['verdict']}'>{e(ln['verdict'])}</span> ({e(ln['reason'])}). "
                         f"{e(ln['sentence'][0].upper() + ln['sentence'][1:])}</li>")
        parts.append("</ul>")
    parts.append(f"<p class=note>{e(rep['summary']['verdict_rule'])}</p>")
    b = rep.get("baselines") or {}
    if b.get("statements"):
        parts.append("<ul>" + "".join(f"<li>{e(s)}</li>" for s in b["statements"]) + "</ul>")
    for key, title, _ in FIGURES:
        if figures.get(key):
            data = base64.b64encode(figures[key]).decode("ascii")
            parts.append(f"<h2>{e(title)}</h2><img alt='{e(title)}' src='data:image/png;base64,{data}'>")
    parts.append("<h2>All proxy→target comparisons (tuned LRs)</h2>" + _html_table(comp_head(), comparison_rows(rep)))
    parts.append("<h2>Null baselines</h2>")
    parts.append(_html_table(["metric", "baseline", "target", "Spearman", "decision acc.", "undefined"], baseline_rows(rep)) if b.get("available")
                 else f"<p>Not computed: {e(str(b.get('reason')))}.</p>")
    parts.append("<h2>Reduced-LR protocol</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in reduced_lines(rep)) + "</ul>")
    parts.append("<h2>Seed-noise floor</h2>" + (_html_table(["metric", "size", "floor", "seed pairs", "note"], noise_rows(rep)) if rep.get("seed_noise")
                                                else "<p>Single seed: no seed-noise estimate.</p>"))
    es = rep.get("early_signal") or {}
    if not es.get("available"):
        parts.append(f"<h2>Early signal</h2><p>Not available: {e(str(es.get('reason')))}.</p>")
    parts += html_predictions(rep, figures.get("frontier"))
    parts.append("<h2>Flipped pairs</h2>" + _html_table(FLIP_HEAD, flip_rows(rep)))
    if rep.get("status_counts"):
        parts.append("<h2>Cell status</h2>" + _html_table(["size", "completed", "diverged", "failed"], status_rows(rep)))
        parts.append("<p class=note>Diverged and failed cells are excluded from every figure.</p>")
    parts.append("<p class=note>Every number is in report.json.</p></body></html>")
    return "\n".join(parts)


def write(rep: dict, folder: Path) -> list[Path]:
    import warnings

    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tight_layout's "not applied" and friends: the figure is still written
        for key, _, fn in FIGURES:
            figures[key] = fn(rep)
        figures["frontier"] = fig_frontier(rep)
    written = []
    png = folder / FRONTIER_PNG
    if figures["frontier"]:
        png.write_bytes(figures["frontier"])
        written.append(png)
    elif png.exists():
        png.unlink()  # a stale figure from an earlier report would be linked from nothing and mislead
    md = folder / "report.md"
    md.write_text(markdown(rep, FRONTIER_PNG if figures["frontier"] else None))
    page = folder / "report.html"
    page.write_text(html_page(rep, figures))
    from proxyscale.report import examples as per_example  # issue 16: appends its own section and figure
    return [md, page] + written + per_example.write(rep, folder, md, page)
