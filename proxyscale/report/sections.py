"""Report sections rendered from one Jinja2 template each, to Markdown and to HTML: a template writes its
section once with the format's macros (`h`, `p`, `table`), and `render(name, data, fmt)` picks the macro set.
Adding a section: a dataclass built by the analysis (report.json carries it) and a template here."""

from __future__ import annotations

import base64
import html

import jinja2

from proxyscale.report.markup import html_table, md_table

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1150px;color:#222;line-height:1.45}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:1.6em}h3{margin-bottom:.3em}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f0f0f0}
img{max-width:100%;border:1px solid #eee}.holds{color:#1a7f37;font-weight:bold}.inconclusive{color:#9a6700;font-weight:bold}
.fails{color:#cf222e;font-weight:bold}.note{color:#555;font-size:.92em}.bottom{background:#f6f8fa;border:1px solid #ccc;padding:6px 20px}"""


def head(title: str) -> str:
    """The page shell every HTML page opens with (report.html, mixfit.html): one CSS, one <head>."""
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>"


def page(title: str, body: str) -> str:
    return head(title) + body + "</body></html>"


def _img_md(alt: str, file: str, png: bytes | None) -> str:
    return f"![{alt}]({file})\n"


def _img_html(alt: str, file: str, png: bytes | None) -> str:
    if png is None:
        return ""
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"


MACROS = {
    "md": {
        "h": lambda level, text: "#" * level + " " + text + "\n",
        "p": lambda text: text + "\n",
        "table": lambda head, rows: md_table(head, rows),
        "em": lambda text: f"\n_{text}_\n",
        "ul": lambda items: "".join(f"- {i}\n" for i in items),
        "img": _img_md,
    },
    "html": {
        "h": lambda level, text: f"<h{level}>{html.escape(text)}</h{level}>",
        "p": lambda text: f"<p>{html.escape(text)}</p>",
        "table": lambda head, rows: html_table(head, rows),
        "em": lambda text: f"<p class=note>{html.escape(text)}</p>",
        "ul": lambda items: "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>",
        "img": _img_html,
    },
}

TEMPLATES = {
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
}

TEMPLATES["mixfit"] = """\
{{ h(1, "Mixture regression at " ~ r.size) }}
{{ p(r.n_mixtures ~ " mixtures over " ~ r.domains|length ~ " domains; held-out splits: " ~ (r.holdout_splits|join(", ") or "none") ~ ".") }}
{{ table(head_row, rows) }}
{{ h(2, "Proposal") }}
{{ ul(proposal) }}
{{ h(2, "Figures") }}
{{ p("Out-of-fold predicted vs observed per model, one figure per metric (mixfit_<metric>.png).") }}
{% for f in figures %}{{ h(3, f.metric) }}
{{ img(f.metric ~ " out-of-fold", f.file, f.png) }}
{% endfor %}"""

_ENV = jinja2.Environment(autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


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


SHAPE = {"decision": _decision, "losses": _losses, "mixfit": lambda d: d}


def render(name: str, data: dict | None, fmt: str) -> str:
    """Section `name` of report.json (`data`, its dict) as Markdown ('md') or HTML ('html'); '' without data."""
    if not data:
        return ""
    return _ENV.from_string(TEMPLATES[name]).render(**MACROS[fmt], **SHAPE[name](data))
