"""The per-example section of report.md / report.html (issue 16), from report.json's `per_example`
(proxyscale.analysis.examples). render.write draws its figure with the others (fig_per_example.png and
.svg), then calls `write` once, after report.md and report.html exist, to append the section to both."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from proxyscale.report.markup import html_table, md_table

MAX_FLIP_ROWS = 10  # flipped examples listed per eval set (against the largest size)
HEAD = ["eval set", "proxy → target", "recipes", "examples", "mean ρ [95%]", "median", "q05–q95", "share > 0", "residual ρ [95%]"]
FLIP_HEAD = ["eval set", "proxy → target", "example", "ρ", "proxy best / worst", "target best / worst", "flips", "text"]


def _f(v, nd: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def entries(rep: dict) -> list[dict]:
    return [e for e in (rep.get("per_example") or {}).get("entries", []) if e.get("mean") is not None]


def rows(rep: dict) -> list[list[str]]:
    out = []
    for e in entries(rep):
        q = e.get("quantiles") or {}
        n = str(e["n_examples"]) + (f" (+{e['n_undefined']} undefined)" if e.get("n_undefined") else "")
        out.append(
            [
                e["metric"],
                f"{e['proxy']} → {e['target']}",
                str(e["n_recipes"]),
                n,
                f"{_f(e['mean'])} {_ci(e.get('mean_ci'))}",
                _f(q.get("q50")),
                f"{_f(q.get('q05'))} – {_f(q.get('q95'))}",
                _f(e.get("frac_positive")),
                f"{_f(e.get('residual_mean'))} {_ci(e.get('residual_ci'))}",
            ]
        )
    return out


def flip_rows(rep: dict) -> list[list[str]]:
    target = (rep.get("per_example") or {}).get("target")
    out = []
    for e in entries(rep):
        if e["target"] != target:
            continue
        for f in e.get("flips", [])[:MAX_FLIP_ROWS]:
            out.append(
                [
                    e["metric"],
                    f"{e['proxy']} → {e['target']}",
                    str(f["example"]),
                    _f(f["rho"]),
                    f"{f['proxy_best']} / {f['proxy_worst']}",
                    f"{f['target_best']} / {f['target_worst']}",
                    "yes" if f["sign_flip"] else "no",
                    repr(f["snippet"]) if f.get("snippet") else "",
                ]
            )
    return out


def lines(rep: dict) -> list[str]:
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
    for e in entries(rep):
        if e["target"] == target:
            out.append(
                f"{e['metric']}, {e['proxy']} → {e['target']}: mean predictive correlation {_f(e['mean'])} {_ci(e.get('mean_ci'))} over "
                f"{e['n_examples']} examples and {e['n_recipes']} recipes."
            )
    return out + list(pe.get("notes") or [])


def markdown(rep: dict, figure_file: str | None) -> str:
    out = ["", "## Per-example view (predictive correlation across scale)", ""] + [f"- {s}" for s in lines(rep)] + [""]
    if (rep.get("per_example") or {}).get("available"):
        if figure_file:
            out.append(f"![Mean per-example predictive correlation vs proxy size]({figure_file})\n")
            out.append(f"[SVG]({Path(figure_file).with_suffix('.svg').name})\n")
        out.append(md_table(HEAD, rows(rep)))
        out.append(
            "Examples whose recipe effects agree least across scale (lowest ρ; flips: the target orders the proxy's best and worst "
            "recipe on that example the other way):\n"
        )
        out.append(md_table(FLIP_HEAD, flip_rows(rep)))
    return "\n".join(out)


def html_section(rep: dict, png: bytes | None) -> str:
    e = html.escape
    parts = ["<h2>Per-example view (predictive correlation across scale)</h2><ul>" + "".join(f"<li>{e(s)}</li>" for s in lines(rep)) + "</ul>"]
    if (rep.get("per_example") or {}).get("available"):
        if png:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<img alt='Mean per-example predictive correlation vs proxy size' src='data:image/png;base64,{data}'>")
            files = ", ".join(f"<a href='fig_per_example.{x}'>fig_per_example.{x}</a>" for x in ("png", "svg"))
            parts.append(f"<p class=note>Files: {files}</p>")
        parts.append(html_table(HEAD, rows(rep)))
        parts.append("<p class=note>Examples whose recipe effects agree least across scale (lowest ρ):</p>" + html_table(FLIP_HEAD, flip_rows(rep)))
    return "\n".join(parts)


def write(rep: dict, md: Path, page: Path, figure_file: str | None, png: bytes | None) -> None:
    """Append the section to report.md and report.html (before </body>); render.write draws and saves the figure."""
    md.write_text(md.read_text() + markdown(rep, figure_file))
    text = page.read_text()
    cut = text.rfind("</body>")
    section = html_section(rep, png)
    page.write_text(text[:cut] + section + "\n" + text[cut:] if cut >= 0 else text + section)
