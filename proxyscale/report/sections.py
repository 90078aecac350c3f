"""The report page and its sections, each rendered from one Jinja2 template to Markdown and to HTML: a template
writes its section once with the format's macros (`h`, `p`, `table`, `figure`, ...), and the format picks the macro
set. Every section reads report.json (the serialisation of the typed sections the analysis builds), so the page is
built once, in order (`REPORT`), from that spine. Adding a section: a dataclass built by the analysis (report.json
carries it), a template and a shape function here, and its name in `REPORT`."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import jinja2

from proxyscale.analysis.datamodels import Attribution, fmt3
from proxyscale.analysis.frontier import point_label as frontier_label
from proxyscale.report.markup import html_table, md_table

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1150px;color:#222;line-height:1.45}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:1.6em}h3{margin-bottom:.3em}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f0f0f0}
img{max-width:100%;border:1px solid #eee}.holds{color:#1a7f37;font-weight:bold}.inconclusive{color:#9a6700;font-weight:bold}
.fails{color:#cf222e;font-weight:bold}.note{color:#555;font-size:.92em}.bottom{background:#f6f8fa;border:1px solid #ccc;padding:6px 20px}"""

MAX_FLIP_ROWS = 15  # flips listed per comparison in the tables
MAX_EXAMPLE_FLIP_ROWS = 10  # flipped examples listed per eval set (against the largest size)
MAX_FRONTIER_PANELS = 3  # eval sets drawn in the frontier figure: those whose best choice is least sure
ATTRIBUTION_TITLE = "Attribution across scale"
ATTRIBUTION_FIGURE = "datamodels_lds.png"  # written by report.attribution beside report.md / datamodels.md


def head(title: str) -> str:
    """The page shell every HTML page opens with (report.html, mixfit.html, datamodels.html): one CSS, one <head>."""
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>"


def page(title: str, body: str) -> str:
    return head(title) + body + "</body></html>"


# ---------------------------------------------------------------------------------------------
# the two macro sets


def _img_md(alt: str, file: str, png: bytes | None) -> str:
    return f"![{alt}]({file})\n"


def _img_html(alt: str, file: str, png: bytes | None) -> str:
    if png is None:
        return ""
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"


def _figure_md(alt: str, file: str, png: bytes | None) -> str:
    """A figure file linked as an image, with its SVG beside it."""
    return f"![{alt}]({file})\n\n[SVG]({Path(file).with_suffix('.svg').name})\n"


def _figure_html(alt: str, file: str, png: bytes | None) -> str:
    """The figure embedded (self-contained page), with links to its PNG and SVG files."""
    svg = Path(file).with_suffix(".svg").name
    return _img_html(alt, file, png) + f"<p class=note>Files: <a href='{file}'>{file}</a>, <a href='{svg}'>{svg}</a></p>"


def _verdicts_html(items) -> str:
    return "<ul>" + "".join(f"<li><span class='{html.escape(v)}'>{html.escape(v)}</span> {html.escape(t)}</li>" for v, t in items) + "</ul>"


MACROS = {
    "md": {
        "h": lambda level, text: "#" * level + " " + text + "\n",
        "p": lambda text: text + "\n",
        "table": lambda head, rows: md_table(head, rows),
        "em": lambda text: f"\n_{text}_\n",
        "ul": lambda items: "".join(f"- {i}\n" for i in items),
        "img": _img_md,
        "figure": _figure_md,
        "verdicts": lambda items: "".join(f"- **{v}** {t}\n" for v, t in items),
        "bottom": lambda lines: "".join(f"- **{ln}**\n" if i == 0 else f"- {ln}\n" for i, ln in enumerate(lines)),
    },
    "html": {
        "h": lambda level, text: f"<h{level}>{html.escape(text)}</h{level}>",
        "p": lambda text: f"<p>{html.escape(text)}</p>",
        "table": lambda head, rows: html_table(head, rows),
        "em": lambda text: f"<p class=note>{html.escape(text)}</p>",
        "ul": lambda items: "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else "",
        "img": _img_html,
        "figure": _figure_html,
        "verdicts": _verdicts_html,
        "bottom": lambda lines: "<ul class=bottom>" + "".join(f"<li>{html.escape(ln)}</li>" for ln in lines) + "</ul>",
    },
}

# ---------------------------------------------------------------------------------------------
# templates: one per section, both formats

TEMPLATES = {
    "title": """\
{{ h(1, title) }}
{{ bottom(lines) }}
""",
    "decision": """\
{{ h(2, "Decision: which recipe, how sure, what would make it surer") }}
{{ p("Decision accuracy (DA): the share of recipe pairs (untied at both sizes) that the proxy orders as the target " ~ d.target ~
     " does; 0.5 is chance. Verdicts judge DA against the bar " ~ d.bar ~ " on simultaneous 95% intervals over the report's " ~
     d.family_size ~ " eval set x proxy claims, so the chance that any holds/fails here is wrong is at most 5%: holds = the interval's lower end "
     ~ "reaches the bar, fails = its upper end is below it, inconclusive = neither. Separable: the target's top two recipes differ by more "
     ~ "than 2 x the target's seed noise of a difference (untested with one seed).") }}
{{ table(["eval set", "verdict (proxy)", "DA [simultaneous 95%]", "target's top recipes", "separable", "action"], rows) }}
""",
    "losses": """\
{{ h(2, "Losses by recipe and size") }}
{{ p("Each cell: the seed mean ± its seed sd at the recipe's tuned LR (the best seed mean over its LR grid), with the seed count. "
     ~ "Rows: the target's best recipes, then each proxy's pick.") }}
{% for t in tables %}{{ h(3, t.metric ~ " (" ~ t.direction ~ " is better)") }}
{{ table(["recipe"] + t.sizes, t.rows) }}{% if t.n_more > 0 %}{{ em(t.n_more ~ " more recipe(s) in report.json.") }}{% endif %}
{% endfor %}""",
    "overview": """\
{{ p(text) }}
{{ ul(notes) }}
""",
    "verdicts": """\
{{ h(2, "Verdict per eval set") }}
{% for m in metrics %}{{ h(3, m.metric) }}
{{ verdicts(m.lines) }}
{% endfor %}{{ em(rule) }}
""",
    "figures": """\
{% if items %}{{ h(2, "Figures") }}
{% for f in items %}{{ h(3, f.title) }}
{% if f.reason %}{{ em("Not drawn: " ~ f.reason ~ ".") }}{% else %}{{ figure(f.title, f.file, f.png) }}{% endif %}
{% endfor %}{% endif %}""",
    "comparisons": """\
{{ h(2, "All proxy→target comparisons (tuned LRs)") }}
{{ p(terms) }}
{{ table(head, rows) }}
""",
    "baselines": """\
{{ h(2, "Null baselines (unigram / bigram count models)") }}
{% if b.available %}{{ ul(b.statements) }}
{{ table(["metric", "baseline", "target", "Spearman", "decision acc.", "undefined"], rows) }}{% else %}{{ p("Not computed: " ~ b.reason ~ ".") }}{% endif %}
""",
    "reduced_lr": """\
{{ h(2, "Reduced-LR protocol") }}
{{ ul(lines) }}
""",
    "seed_noise": """\
{{ h(2, "Seed-noise floor") }}
{{ p(floor_def) }}
{% if rows %}{{ table(["metric", "size", "floor", "seed pairs", "note"], rows) }}{% else %}{{ p("Single seed: no seed-noise estimate.") }}{% endif %}
""",
    "early_signal": """\
{{ h(2, "Early signal") }}
{% if es.available %}{{ p(es.points|length ~ " points against the final " ~ es.target ~ " ranking (see the early-signal figure).") }}\
{% else %}{{ p("Not available: " ~ es.reason ~ ".") }}{% endif %}
""",
    "prediction": """\
{{ h(2, "Predictions") }}
{{ ul(lines) }}
{% if run %}{{ p(run) }}{% endif %}
{% for metric, rows in tables %}{{ h(3, metric) }}
{{ table(head, rows) }}
{% endfor %}{% if notes %}{{ p("Notes:") }}
{{ ul(notes) }}{% endif %}
""",
    "frontier": """\
{{ h(2, "Compute-decision frontier") }}
{% if f.available %}{{ p(intro) }}
{% if png_file %}{{ figure(title, png_file, png) }}{% elif not_drawn %}{{ em("Figure not drawn: " ~ not_drawn ~ ".") }}{% endif %}
{% endif %}{{ ul(lines) }}
{% if f.available %}{{ p("Points on the frontier (no cheaper point matches their decision accuracy; step noise: the change from the "
     ~ "previous step is below one recipe pair):") }}
{{ table(head, rows) }}
{{ ul(f.notes) }}{% endif %}
""",
    "per_example": """\
{{ h(2, "Per-example view (predictive correlation across scale)") }}
{{ ul(lines) }}
{% if available %}{% if png_file %}{{ figure("Mean per-example predictive correlation vs proxy size", png_file, png) }}{% endif %}
{{ table(head, rows) }}
{{ p("Examples whose recipe effects agree least across scale (lowest ρ; flips: the target orders the proxy's best and worst "
     ~ "recipe on that example the other way):") }}
{{ table(flip_head, flip_rows) }}{% endif %}
""",
    "attribution": """\
{{ h(2, title) }}
{% if a.reason %}{{ ul(["note: no datamodels: " ~ a.reason]) }}{% else %}\
{{ p(a.groups ~ " groups, " ~ a.subsets ~ " subsets, sizes " ~ a.sizes|join(", ") ~ ". " ~ a.definition ~ ".") }}
{{ ul(headline) }}
{{ table(["metric", "fit size", "eval size", "LDS", "95% CI", "subset-permutation p", "examples", "subsets"], rows) }}
{% if png_file %}{{ img("LDS vs proxy size", png_file, png) }}{% endif %}
{% if agree_rows %}{{ p("Agreement of the datamodel weights across sizes:") }}
{{ table(["metric", "size a", "size b", "weight Spearman (mean over examples)", "examples"], agree_rows) }}{% endif %}
{% if trak_rows %}{{ p("TRAK from a proxy checkpoint, scored by the same LDS:") }}
{{ table(["metric", "checkpoint size", "eval size", "LDS", "95% CI", "subset-permutation p", "seconds"], trak_rows) }}{% endif %}
{{ p(cost) }}
{% if selection %}{{ p(selection) }}{% endif %}
{{ ul(notes) }}{% endif %}
""",
    "flips": """\
{{ h(2, "Flipped pairs") }}
{{ table(head, rows) }}
""",
    "status": """\
{% if rows %}{{ h(2, "Cell status") }}
{{ table(["size", "completed", "diverged", "failed"], rows) }}
{{ p("Diverged and failed cells are excluded from every figure.") }}{% endif %}
""",
    "foot": """\
{% if drawn %}{{ p("Figures: the fig_*.png / fig_*.svg files beside this file (and embedded in report.html). Every number: report.json.") }}
{% else %}{{ p("No figures: every figure was skipped (each place above says why). Every number: report.json.") }}{% endif %}
""",
    "mixfit": """\
{{ h(1, "Mixture regression at " ~ r.size) }}
{{ p(r.n_mixtures ~ " mixtures over " ~ r.domains|length ~ " domains; held-out splits: " ~ (r.holdout_splits|join(", ") or "none") ~ ".") }}
{{ table(head_row, rows) }}
{{ h(2, "Proposal") }}
{{ ul(proposal) }}
{{ h(2, "Figures") }}
{{ p("Out-of-fold predicted vs observed per model, one figure per metric (mixfit_<metric>.png).") }}
{% for f in figures %}{{ h(3, f.metric) }}
{{ img(f.metric ~ " out-of-fold", f.file, f.png) }}
{% endfor %}""",
}

_ENV = jinja2.Environment(autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)

# ---------------------------------------------------------------------------------------------
# formatting shared by the sections and the figures


def fmt_num(v, nd: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def fmt_ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def _lr(v) -> str:
    return "n/a" if v is None else f"{v:g}"


def primary(rep: dict) -> list[dict]:
    """The comparisons of tuned (or LR-less) values: the ones every table, figure and verdict reads."""
    return [c for c in rep["comparisons"] if c.get("proxy_lr") in (None, "tuned") and c.get("target_mode") in (None, "tuned")]


def title(rep: dict) -> str:
    src = rep["source"]
    return f"proxyscale report: {Path(src['path']).name} ({src['kind']})"


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


def reduced_lines(rep: dict) -> list[str]:
    """The reduced-LR protocol in sentences: per (eval set, proxy, target), the best proxy LR with its DA and interval."""
    red = rep.get("reduced_lr") or {}
    if not red.get("available"):
        return [f"Not available: {red.get('reason')}."]
    lines = [red["assumption"] + " Tuned target = each recipe's best seed-mean over the target's LR grid."]
    da = lambda p: f"{fmt_num(p['decision_accuracy'])} {fmt_ci(p.get('decision_accuracy_ci'))}".rstrip()
    for e in red["entries"]:
        won = ", ".join(f"{r}: {lr:g}" for r, lr in e["target_best_lr"].items())
        own = f" (own best LR: {e['proxy']} {_lr(e['proxy_best_lr'])}, {e['target']} {_lr(e['target_own_best_lr'])})"
        bt, st = e.get("best_tuned"), e.get("standard_tuned")
        if bt:
            s = (
                f"{e['metric']}, {e['proxy']}→{e['target']}{own}: best proxy LR {bt['proxy_lr']:g} (decision accuracy {da(bt)}, "
                f"Spearman {fmt_num(bt['spearman'])} vs the tuned target)"
            )
            if st:
                s += f"; at the standard LR {red['standard_lr']:g}: {da(st)} / {fmt_num(st['spearman'])}"
        else:
            s = f"{e['metric']}, {e['proxy']}→{e['target']}{own}: no best proxy LR ({e.get('reason_tuned')})"
        bf = e.get("best_fixed")
        s += (
            f"; against the fixed-LR target the best proxy LR is {bf['proxy_lr']:g} ({da(bf)})"
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


def comp_head() -> list[str]:
    from proxyscale.analysis.types import table_columns

    return [label for label, _ in table_columns()]


def comparison_rows(rep: dict) -> list[list[str]]:
    """One row per primary comparison; the columns are the typed Comparison's (analysis.types)."""
    from proxyscale.analysis.types import table_columns

    cols = table_columns()
    return [[fmt(c) for _, fmt in cols] for c in primary(rep)]


def flip_rows(rep: dict) -> list[list[str]]:
    rows = []
    for c in primary(rep):
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
            f"{fmt_num(c['spearman'])} {fmt_ci(c['spearman_ci'])}",
            f"{fmt_num(c['decision_accuracy'])} {fmt_ci(c['decision_accuracy_ci'])}",
            c.get("reason") or "",
        ]
        for c in b.get("comparisons", [])
    ]


def noise_rows(rep: dict) -> list[list[str]]:
    return [[n["metric"], n["size"], fmt_num(n.get("floor")), str(n["n_seed_pairs"]), n.get("reason") or ""] for n in rep.get("seed_noise", [])]


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
                diff = f"{e['da_diff']:+.3f} {fmt_ci(e.get('da_diff_ci'))}" if e.get("da_diff") is not None else "n/a"
                rows.append(
                    [
                        f"{'+'.join(e['fit_sizes'])} → {e['target']}" + (" (backtest)" if bt else ""),
                        name,
                        f"{fmt_num(e.get('decision_accuracy'), 3)} {fmt_ci(e.get('decision_accuracy_ci'))}".strip(),
                        fmt_num(e.get("spearman"), 3),
                        fmt_num(e.get("mean_abs_error"), 4),
                        _compute(rep, e["compute_fraction"]),
                        diff,
                    ]
                )
            for e in ss:
                rows.append(
                    [
                        f"{e['size']} → {e['target']}" + (" (backtest)" if bt else ""),
                        "single size (raw values)",
                        f"{fmt_num(e.get('decision_accuracy'), 3)} {fmt_ci(e.get('decision_accuracy_ci'))}".strip(),
                        fmt_num(e.get("spearman"), 3),
                        fmt_num(e.get("mean_abs_error"), 4),
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
            s = f"{head}: decision accuracy {fmt_num(e['decision_accuracy'], 3)}"
        elif ci is None:  # the recipe resamples never disagree: no interval, so no claim either way
            s = f"{head}: DA difference {e['da_diff']:+.3f} against {best} alone, with no interval (too few recipes to tell)"
        elif ci[0] > 0:
            s = f"{head} ranks better than {best} alone: DA difference {e['da_diff']:+.3f} {fmt_ci(ci)} excludes 0"
        elif ci[1] < 0:
            s = f"{head} ranks worse than {best} alone: DA difference {e['da_diff']:+.3f} {fmt_ci(ci)}"
        else:
            s = f"{head} does not rank better than {best} alone: DA difference {e['da_diff']:+.3f} {fmt_ci(ci)} includes 0"
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
    rows = []
    for p in (rep.get("frontier") or {}).get("points") or []:
        if p.get("on_frontier"):
            rows.append(
                [
                    p["metric"],
                    frontier_label(p),
                    _compute(rep, p["compute_fraction"]),
                    f"{fmt_num(p['decision_accuracy'], 3)} {fmt_ci(p.get('decision_accuracy_ci'))}".strip(),
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
# per-example view (issue 16) and attribution (issue 23)

EXAMPLE_HEAD = ["eval set", "proxy → target", "recipes", "examples", "mean ρ [95%]", "median", "q05–q95", "share > 0", "residual ρ [95%]"]
EXAMPLE_FLIP_HEAD = ["eval set", "proxy → target", "example", "ρ", "proxy best / worst", "target best / worst", "flips", "text"]


def example_entries(rep: dict) -> list[dict]:
    """The per-example entries with a correlation."""
    return [e for e in (rep.get("per_example") or {}).get("entries", []) if e.get("mean") is not None]


def example_rows(rep: dict) -> list[list[str]]:
    out = []
    for e in example_entries(rep):
        q = e.get("quantiles") or {}
        n = str(e["n_examples"]) + (f" (+{e['n_undefined']} undefined)" if e.get("n_undefined") else "")
        out.append(
            [
                e["metric"],
                f"{e['proxy']} → {e['target']}",
                str(e["n_recipes"]),
                n,
                f"{fmt_num(e['mean'])} {fmt_ci(e.get('mean_ci'))}",
                fmt_num(q.get("q50")),
                f"{fmt_num(q.get('q05'))} – {fmt_num(q.get('q95'))}",
                fmt_num(e.get("frac_positive")),
                f"{fmt_num(e.get('residual_mean'))} {fmt_ci(e.get('residual_ci'))}",
            ]
        )
    return out


def example_flip_rows(rep: dict) -> list[list[str]]:
    target = (rep.get("per_example") or {}).get("target")
    out = []
    for e in example_entries(rep):
        if e["target"] != target:
            continue
        for f in e.get("flips", [])[:MAX_EXAMPLE_FLIP_ROWS]:
            out.append(
                [
                    e["metric"],
                    f"{e['proxy']} → {e['target']}",
                    str(f["example"]),
                    fmt_num(f["rho"]),
                    f"{f['proxy_best']} / {f['proxy_worst']}",
                    f"{f['target_best']} / {f['target_worst']}",
                    "yes" if f["sign_flip"] else "no",
                    repr(f["snippet"]) if f.get("snippet") else "",
                ]
            )
    return out


def example_lines(rep: dict) -> list[str]:
    pe = rep.get("per_example") or {}
    if not pe.get("available"):
        return [f"Not available: {pe.get('reason') or 'no per-example section in this report'}."]
    out = [
        f"Definition: {pe['definition']}. LR: {pe.get('lr_rule')}. Bootstrap: {pe['n_boot']} resamples of the examples "
        f"(seed {pe['bootstrap_seed']}); recipes fixed.",
        "How to read it: ρ near 1 means the recipes that help (or hurt) an example at the proxy size do the same at the target, example "
        "by example; near 0, the proxy says nothing about which examples a recipe helps. Residual ρ also removes each recipe's overall "
        "effect (an addition, not the paper's definition).",
    ]
    target = pe.get("target")
    for e in example_entries(rep):
        if e["target"] == target:
            out.append(
                f"{e['metric']}, {e['proxy']} → {e['target']}: mean predictive correlation {fmt_num(e['mean'])} {fmt_ci(e.get('mean_ci'))} over "
                f"{e['n_examples']} examples and {e['n_recipes']} recipes."
            )
    return out + list(pe.get("notes") or [])


def _cost_line(a: dict) -> str:
    flops = (a.get("cost") or {}).get("train_flops_by_size") or {}
    parts = [f"{s}: {v:.3g} FLOPs" for s, v in flops.items()]
    line = "Cost: training the subsets " + (", ".join(parts) if parts else "(not known for CSV input)")
    line += f"; fitting the datamodels {(a.get('cost') or {}).get('fit_seconds', 0):.2f} s"
    if a.get("trak"):
        seconds = {t["checkpoint_size"]: t["seconds"] for t in a["trak"]}  # one TRAK run per checkpoint size scores every metric
        line += "; TRAK " + ", ".join(f"{size}: {v:.2f} s" for size, v in seconds.items())
    return line + "."


# ---------------------------------------------------------------------------------------------
# shapes: report.json (and the drawn figures) -> each template's context


def _decision(d: dict) -> dict:
    rows = []
    for r in d["rows"]:
        ci = r["interval"]
        da = "n/a" if r["decision_accuracy"] is None else f"{r['decision_accuracy']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        rows.append([r["metric"], f"{r['verdict']} ({r['proxy']})", da, ", ".join(r["target_top"]), r["separable"], r["action"]])
    return {"d": d, "rows": rows}


def _losses(sec: dict) -> dict:
    tables = [dict(t, rows=[[row["recipe"], *row["cells"]] for row in t["rows"]]) for t in sec["tables"]]
    return {"tables": tables}


def _attribution(a: dict, png: bytes | None = None) -> dict:
    """The attribution section's context from its report.json object (an `Attribution`)."""
    ci = lambda c: f"[{fmt3(c[0])}, {fmt3(c[1])}]"
    sel = a.get("selection")
    return {
        "title": ATTRIBUTION_TITLE,
        "a": a,
        "headline": Attribution(**a).headline() if not a.get("reason") else [],
        "rows": [
            [e["metric"], e["fit_size"], e["eval_size"], fmt3(e["lds"]), ci(e["lds_ci"]), fmt3(e.get("perm_p")), e["n_examples"], e["n_subsets"]]
            for e in a["entries"]
        ],
        "png_file": ATTRIBUTION_FIGURE if png else None,
        "png": png,
        "agree_rows": [[w["metric"], w["size_a"], w["size_b"], fmt3(w["weight_spearman"]), w["n_examples"]] for w in a.get("weight_agreement") or []],
        "trak_rows": [
            [t["metric"], t["checkpoint_size"], t["eval_size"], fmt3(t["lds"]), ci(t["lds_ci"]), fmt3(t.get("perm_p")), t["seconds"]]
            for t in a.get("trak") or []
        ],
        "cost": _cost_line(a),
        "selection": f"Selection (DsDm) for {sel['metric']} at {sel['fit_size']}: the {sel['k']} groups {', '.join(map(str, sel['groups']))}." if sel else None,
        "notes": [f"note: {n}" for n in a.get("notes") or []],
    }


SHAPE = {"decision": _decision, "losses": _losses, "mixfit": lambda d: d, "attribution": _attribution}


def render(name: str, data: dict | None, fmt: str, **extra) -> str:
    """Section `name` from its report.json object (`data`) as Markdown ('md') or HTML ('html'); '' without data."""
    if not data:
        return ""
    return _ENV.from_string(TEMPLATES[name]).render(**MACROS[fmt], **SHAPE[name](data, **extra))


class Figures:
    """The figures one rendering of the report shows: key -> PNG bytes (None when only the file is linked, as in
    Markdown), and key -> why a figure was not drawn."""

    def __init__(self, drawn: dict[str, bytes | None], skipped: dict[str, str], extra: dict[str, bytes] | None = None):
        self.drawn, self.skipped, self.extra = drawn, skipped, extra or {}

    def file(self, key: str) -> str | None:
        return f"fig_{key}.png" if key in self.drawn else None

    def png(self, key: str) -> bytes | None:
        return self.drawn.get(key)


def _report_context(name: str, rep: dict, figs: Figures, figure_titles: list[tuple[str, str]]) -> dict | None:
    """The context of report section `name`, or None when the report has nothing for it."""
    if name == "title":
        return {"title": title(rep), "lines": rep["summary"]["bottom_line"]}
    if name in ("decision", "losses"):
        return SHAPE[name](rep[name]) if rep.get(name) else None
    if name == "overview":
        text = (
            f"{_directions(rep)} Sizes (smallest first): {', '.join(rep['sizes'])}. {len(rep['recipes'])} recipes, {len(rep['metrics'])} metric(s). "
            f"{_intervals(rep)}"
        )
        return {"text": text, "notes": rep.get("notes", [])}
    if name == "verdicts":
        metrics = [
            {"metric": pm["metric"], "lines": [(ln["verdict"], f"({ln['reason']}). {ln['sentence'][0].upper() + ln['sentence'][1:]}") for ln in pm["lines"]]}
            for pm in rep["summary"]["per_metric"]
        ]
        return {"metrics": metrics, "rule": rep["summary"]["verdict_rule"]}
    if name == "figures":
        items = [
            {"title": t, "file": figs.file(k), "png": figs.png(k), "reason": figs.skipped.get(k)}
            for k, t in figure_titles
            if k in figs.drawn or k in figs.skipped
        ]
        return {"items": items}
    if name == "comparisons":
        return {"terms": TABLE_TERMS, "head": comp_head(), "rows": comparison_rows(rep)}
    if name == "baselines":
        return {"b": rep["baselines"], "rows": baseline_rows(rep)}
    if name == "reduced_lr":
        return {"lines": reduced_lines(rep)}
    if name == "seed_noise":
        return {"floor_def": FLOOR_DEF, "rows": noise_rows(rep)}
    if name == "early_signal":
        return {"es": rep["early_signal"]}
    if name == "prediction":
        pred = rep.get("prediction") or {}
        return {
            "lines": prediction_lines(rep),
            "run": prediction_run_line(rep),
            "tables": prediction_tables(rep),
            "head": PRED_HEAD,
            "notes": pred.get("notes") or [] if pred.get("available") else [],
        }
    if name == "frontier":
        front = rep.get("frontier") or {}
        return {
            "f": {"available": bool(front.get("available")), "notes": front.get("notes") or []},
            "intro": _frontier_intro(rep) if front.get("available") else "",
            "title": f"Compute-decision frontier: {', '.join(frontier_metrics(rep))}",
            "png_file": figs.file("frontier"),
            "png": figs.png("frontier"),
            "not_drawn": figs.skipped.get("frontier"),
            "lines": frontier_lines(rep),
            "head": FRONTIER_HEAD,
            "rows": frontier_rows(rep),
        }
    if name == "per_example":
        return {
            "lines": example_lines(rep),
            "available": bool((rep.get("per_example") or {}).get("available")),
            "png_file": figs.file("per_example"),
            "png": figs.png("per_example"),
            "head": EXAMPLE_HEAD,
            "rows": example_rows(rep),
            "flip_head": EXAMPLE_FLIP_HEAD,
            "flip_rows": example_flip_rows(rep),
        }
    if name == "attribution":
        return _attribution(rep["attribution"], figs.extra.get("attribution")) if rep.get("attribution") else None
    if name == "flips":
        return {"head": FLIP_HEAD, "rows": flip_rows(rep)}
    if name == "status":
        return {"rows": status_rows(rep)}
    if name == "foot":
        return {"drawn": bool(figs.drawn)}
    raise KeyError(name)


REPORT = (
    "title",
    "decision",
    "losses",
    "overview",
    "verdicts",
    "figures",
    "comparisons",
    "baselines",
    "reduced_lr",
    "seed_noise",
    "early_signal",
    "prediction",
    "frontier",
    "per_example",
    "attribution",
    "flips",
    "status",
    "foot",
)


def report(rep: dict, fmt: str, figs: Figures, figure_titles: list[tuple[str, str]]) -> str:
    """The whole report in one format: every section of REPORT, in order, from report.json and the drawn figures.
    `figure_titles`: (key, title) of the figures shown under "Figures" (the others sit in their own sections)."""
    out = []
    for name in REPORT:
        ctx = _report_context(name, rep, figs, figure_titles)
        if ctx is not None:
            out.append(_ENV.from_string(TEMPLATES[name]).render(**MACROS[fmt], **ctx))
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text) if fmt == "md" else text
