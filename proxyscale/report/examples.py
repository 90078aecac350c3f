"""The per-example section of report.md / report.html and its figure (issue 16), from report.json's
`per_example` (proxyscale.analysis.examples). Self-contained: render.write calls `write` once, after
it has written report.md and report.html, and this module appends its section to both."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from proxyscale.report.markup import html_table, md_table

PNG = "fig_per_example.png"  # written beside report.md and linked from it
MAX_FLIP_ROWS = 10  # flipped examples listed per eval set (against the largest size)
HEAD = ["eval set", "proxy → target", "recipes", "examples", "mean ρ [95%]", "median", "q05–q95", "share > 0", "residual ρ [95%]"]
FLIP_HEAD = ["eval set", "proxy → target", "example", "ρ", "proxy best / worst", "target best / worst", "flips", "text"]


def _f(v, nd: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def _entries(rep: dict) -> list[dict]:
    return [e for e in (rep.get("per_example") or {}).get("entries", []) if e.get("mean") is not None]


def rows(rep: dict) -> list[list[str]]:
    out = []
    for e in _entries(rep):
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
    for e in _entries(rep):
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
    for e in _entries(rep):
        if e["target"] == target:
            out.append(
                f"{e['metric']}, {e['proxy']} → {e['target']}: mean predictive correlation {_f(e['mean'])} {_ci(e.get('mean_ci'))} over "
                f"{e['n_examples']} examples and {e['n_recipes']} recipes."
            )
    return out + list(pe.get("notes") or [])


def figure(rep: dict) -> bytes | None:
    """Mean predictive correlation against the largest size vs proxy size (parameters, log x), per eval set, with intervals."""
    pe = rep.get("per_example") or {}
    pts = [e for e in _entries(rep) if e["target"] == pe.get("target")]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    sizes = rep.get("sizes") or []
    use_params = all(e.get("proxy_params") for e in pts)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    metrics = sorted({e["metric"] for e in pts})
    for k, m in enumerate(metrics):
        es = sorted((e for e in pts if e["metric"] == m), key=lambda e: e.get("proxy_params") or sizes.index(e["proxy"]))
        x = [float(e["proxy_params"]) * (1 + 0.04 * (k - (len(metrics) - 1) / 2)) if use_params else sizes.index(e["proxy"]) + 0.05 * k for e in es]
        y = [e["mean"] for e in es]
        lo = [e["mean"] - (e.get("mean_ci") or [e["mean"]] * 2)[0] for e in es]
        hi = [(e.get("mean_ci") or [e["mean"]] * 2)[1] - e["mean"] for e in es]
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=m)
    if use_params:
        ax.set_xscale("log")
        xs = [float(e["proxy_params"]) for e in pts]
        ax.set_xlim(min(xs) / 3, max(xs) * 3)  # a decade at least: one proxy size still gets readable ticks
        ax.set_xlabel("proxy parameters")
    else:
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_xlabel("proxy size")
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel(f"mean predictive correlation vs {pe.get('target')}")
    ax.set_title("Per-example recipe effects: proxy vs target (95% CI over examples)", fontsize=9)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def markdown(rep: dict, figure_file: str | None) -> str:
    out = ["", "## Per-example view (predictive correlation across scale)", ""] + [f"- {s}" for s in lines(rep)] + [""]
    if (rep.get("per_example") or {}).get("available"):
        if figure_file:
            out.append(f"![Mean per-example predictive correlation vs proxy size]({figure_file})\n")
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
        parts.append(html_table(HEAD, rows(rep)))
        parts.append("<p class=note>Examples whose recipe effects agree least across scale (lowest ρ):</p>" + html_table(FLIP_HEAD, flip_rows(rep)))
    return "\n".join(parts)


def write(rep: dict, folder: Path, md: Path, page: Path) -> list[Path]:
    """Append the section to report.md and report.html (before </body>) and write (or remove a stale) PNG."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        png = figure(rep)
    path = Path(folder) / PNG
    written = []
    if png:
        path.write_bytes(png)
        written.append(path)
    elif path.exists():
        path.unlink()
    md.write_text(md.read_text() + markdown(rep, PNG if png else None))
    text = page.read_text()
    cut = text.rfind("</body>")
    section = html_section(rep, png)
    page.write_text(text[:cut] + section + "\n" + text[cut:] if cut >= 0 else text + section)
    return written
