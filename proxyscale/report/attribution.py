"""The "Attribution across scale" section and `proxyscale datamodels`' files (issue 23).

Self-contained: the section's data is a dataclass made from proxyscale.analysis.datamodels' result; it renders its
own Markdown, HTML and figure, writes datamodels.json/.md/.html/_lds.png/_top_groups.csv, and appends itself to a
sweep report (the one hook in report/build.py) when the sweep has subset cells.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from proxyscale.analysis import datamodels as dm
from proxyscale.record import atomic_write_bytes, atomic_write_text
from proxyscale.report.markup import html_table, md_table

JSON, MD, HTML, FIGURE, TOP = "datamodels.json", "datamodels.md", "datamodels.html", "datamodels_lds.png", "datamodels_top_groups.csv"
TITLE = "Attribution across scale"


@dataclass
class AttributionSection:
    """What the section shows: LDS entries, weight agreement, the selection (DsDm), TRAK's entries, costs, notes."""

    definition: str
    sizes: list[str]
    groups: int
    subsets: int
    entries: list[dict]
    weight_agreement: list[dict] = field(default_factory=list)
    selection: dict | None = None
    trak: list[dict] = field(default_factory=list)
    cost: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_result(cls, result: dict) -> "AttributionSection":
        keys = cls.__dataclass_fields__
        return cls(**{k: v for k, v in result.items() if k in keys})

    def headline(self) -> list[str]:
        """One line per metric: the smallest size's datamodels on the largest size's subsets (and the largest's own)."""
        lines = []
        for e in self.entries:
            if e["fit_size"] == self.sizes[0] and e["eval_size"] == self.sizes[-1] or (len(self.sizes) == 1):
                lo, hi = e["lds_ci"]
                lines.append(
                    f"{e['metric']}: datamodels fitted on the {e['fit_size']} models predict the {e['eval_size']} models' values on unseen subsets "
                    f"with LDS {_f(e['lds'])} [{_f(lo)}, {_f(hi)}] ({e['n_examples']} examples, {e['n_subsets']} subsets"
                    + (f"; subset-permutation p {_f(e['perm_p'])})" if "perm_p" in e else ")")
                )
        return lines

    def _rows(self):
        return [
            [e["metric"], e["fit_size"], e["eval_size"], _f(e["lds"]), _ci(e["lds_ci"]), _f(e.get("perm_p")), e["n_examples"], e["n_subsets"]]
            for e in self.entries
        ]

    def _agree_rows(self):
        return [[a["metric"], a["size_a"], a["size_b"], _f(a["weight_spearman"]), a["n_examples"]] for a in self.weight_agreement]

    def _trak_rows(self):
        return [[t["metric"], t["checkpoint_size"], t["eval_size"], _f(t["lds"]), _ci(t["lds_ci"]), _f(t.get("perm_p")), t["seconds"]] for t in self.trak]

    HEAD = ["metric", "fit size", "eval size", "LDS", "95% CI", "subset-permutation p", "examples", "subsets"]
    AGREE = ["metric", "size a", "size b", "weight Spearman (mean over examples)", "examples"]
    TRAK = ["metric", "checkpoint size", "eval size", "LDS", "95% CI", "subset-permutation p", "seconds"]

    def markdown(self, figure_file: str | None = None, level: str = "##") -> str:
        out = [f"{level} {TITLE}\n", f"{self.groups} groups, {self.subsets} subsets, sizes {', '.join(self.sizes)}. {self.definition}.\n"]
        out += [f"- {line}" for line in self.headline()] + [""]
        out.append(md_table(self.HEAD, self._rows()))
        if figure_file:
            out.append(f"\n![LDS vs proxy size]({figure_file})\n")
        if self.weight_agreement:
            out += ["\nAgreement of the datamodel weights across sizes:\n", md_table(self.AGREE, self._agree_rows())]
        if self.trak:
            out += ["\nTRAK from a proxy checkpoint, scored by the same LDS:\n", md_table(self.TRAK, self._trak_rows())]
        out.append(self._cost_line() + "\n")
        if self.selection:
            s = self.selection
            out.append(f"\nSelection (DsDm) for {s['metric']} at {s['fit_size']}: the {s['k']} groups {', '.join(map(str, s['groups']))}.\n")
        out += [f"- note: {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def _cost_line(self) -> str:
        flops = self.cost.get("train_flops_by_size") or {}
        parts = [f"{s}: {v:.3g} FLOPs" for s, v in flops.items()]
        line = "Cost: training the subsets " + (", ".join(parts) if parts else "(not known for CSV input)")
        line += f"; fitting the datamodels {self.cost.get('fit_seconds', 0):.2f} s"
        if self.trak:
            seconds = {t["checkpoint_size"]: t["seconds"] for t in self.trak}  # one TRAK run per checkpoint size scores every metric
            line += "; TRAK " + ", ".join(f"{size}: {v:.2f} s" for size, v in seconds.items())
        return line + "."

    def html(self, png: bytes | None = None) -> str:
        parts = [f"<section id=attribution><h2>{TITLE}</h2>", f"<p>{html.escape(self.definition)}.</p><ul>"]
        parts += [f"<li>{html.escape(line)}</li>" for line in self.headline()] + ["</ul>", html_table(self.HEAD, self._rows())]
        if png:
            parts.append(f"<img alt='LDS vs proxy size' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
        if self.weight_agreement:
            parts += ["<p>Agreement of the datamodel weights across sizes:</p>", html_table(self.AGREE, self._agree_rows())]
        if self.trak:
            parts += ["<p>TRAK from a proxy checkpoint:</p>", html_table(self.TRAK, self._trak_rows())]
        parts.append(f"<p>{html.escape(self._cost_line())}</p>")
        if self.selection:
            s = self.selection
            groups = html.escape(", ".join(map(str, s["groups"])))
            parts.append(f"<p>Selection (DsDm) for {html.escape(s['metric'])} at {html.escape(s['fit_size'])}: {groups}</p>")
        parts += [f"<p class=note>{html.escape(n)}</p>" for n in self.notes]
        return "\n".join(parts) + "</section>"

    def figure(self) -> bytes | None:
        """LDS on the largest size's subsets against the fit size, one line per metric (and TRAK's points)."""
        target = self.sizes[-1] if self.sizes else None
        lines = {}
        for e in self.entries:
            if e["eval_size"] == target:
                lines.setdefault(e["metric"], []).append((self.sizes.index(e["fit_size"]), e["lds"], e["lds_ci"]))
        if not lines:
            return None
        import io

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.6))
        for metric, pts in lines.items():
            x, y, ci = zip(*sorted(pts))
            lo = [v - c[0] if math.isfinite(c[0]) else 0 for v, c in zip(y, ci)]
            hi = [c[1] - v if math.isfinite(c[1]) else 0 for v, c in zip(y, ci)]
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=metric)
        for t in self.trak:
            if t["eval_size"] == target:
                ax.plot([self.sizes.index(t["checkpoint_size"])], [t["lds"]], marker="x", color="k", linestyle="none")
        ax.set_xticks(range(len(self.sizes)), self.sizes)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("size the datamodels were fitted at (x: TRAK from that size's checkpoint)")
        ax.set_ylabel(f"LDS on {target}'s subsets")
        ax.legend(fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        return buf.getvalue()


def _ci(ci) -> str:
    return f"[{_f(ci[0])}, {_f(ci[1])}]"


def _f(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def _clean(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write(result: dict, out: Path) -> list[Path]:
    """datamodels.json (the result without its per-example top groups, which go to the CSV), .md, .html, the figure."""
    out.mkdir(parents=True, exist_ok=True)
    dm.write_top_groups(result.get("top_groups") or [], out / TOP)
    doc = {k: v for k, v in result.items() if k != "top_groups"}
    atomic_write_text(out / JSON, json.dumps(_clean(doc), indent=1, allow_nan=False))
    section = AttributionSection.from_result(result)
    png = section.figure()
    paths = [out / JSON, out / TOP]
    if png:
        atomic_write_bytes(out / FIGURE, png)
        paths.append(out / FIGURE)
    elif (out / FIGURE).exists():
        (out / FIGURE).unlink()
    atomic_write_text(out / MD, "# Datamodels\n\n" + section.markdown(FIGURE if png else None))
    body = section.html(png)
    atomic_write_text(out / HTML, f"<!doctype html><html><head><meta charset=utf-8><title>{TITLE}</title></head><body>{body}</body></html>")
    return paths + [out / MD, out / HTML]


def sweep_subsets(sweep_dir: str | Path, out: str | Path | None = None) -> dm.Subsets:
    """A sweep's subset cells (collected again when stale) as datamodel inputs."""
    import pandas as pd

    from proxyscale import collect

    root, where = Path(sweep_dir), Path(out or sweep_dir)
    if not root.is_dir():
        raise dm.DatamodelError(f"no sweep folder at {root}")
    if collect.is_stale(root, where):
        try:
            collect.write(collect.collect(root), root, where)
        except collect.CollectError as exc:
            raise dm.DatamodelError(str(exc)) from None
    results = pd.read_parquet(where / collect.RESULTS)
    if not (where / collect.EXAMPLES).exists():
        collect.gather_examples(root, results, where)
    path = where / collect.EXAMPLES
    examples = pd.read_parquet(path) if path.exists() else None
    sizes = list(results.drop_duplicates("size").sort_values("params")["size"])
    return dm.read_sweep(results, examples, sizes)


def write_selection_recipe(data: dm.Subsets, name: str, selection: dict) -> Path:
    """conf/data/selected/NAME.yaml: the sweep's recipe keeping only the selected groups (data.keep_groups). Refuses a
    name that is a built-in recipe or an existing file: a written recipe is never silently replaced."""
    from omegaconf import OmegaConf

    from proxyscale.config import CONF_DIR, ConfigError, check_name

    try:
        check_name("recipe", name)
    except ConfigError as exc:
        raise dm.DatamodelError(f"--write-recipe: {exc}") from None
    if data.recipe is None or data.n_groups is None:
        raise dm.DatamodelError("--write-recipe needs a sweep's subset cells (their recipe and group count)")
    conf = Path(CONF_DIR) / "data"
    if (conf / f"{name}.yaml").exists():
        raise dm.DatamodelError(f"--write-recipe {name}: a built-in recipe has that name (conf/data/{name}.yaml); choose another")
    path = conf / "selected" / f"{name}.yaml"
    if path.exists():
        raise dm.DatamodelError(f"--write-recipe {name}: {path} exists; remove it or choose another name")
    body = {
        "defaults": [f"/data/{data.recipe}@_here_", "_self_"],
        "name": name,
        "description": f"{data.recipe}: the {selection['k']} groups (of {data.n_groups}) DsDm selected for {selection['metric']} at {selection['fit_size']}",
        "subset_groups": data.n_groups,
        "keep_groups": sorted(int(g) for g in selection["groups"]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "# Written by `proxyscale datamodels --select ... --write-recipe`.\n" + OmegaConf.to_yaml(OmegaConf.create(body)))
    return path


def has_subsets(results) -> bool:
    return "subset" in results.columns and bool((results["subset"] >= 0).any())


def append_to_report(sweep_dir: str | Path, folder: Path, stage: Path, report: dict) -> list[Path]:
    """The report hook: when the sweep has subset cells (results.parquet in the report's `folder`), fit the datamodels,
    write their files into the report's staging folder and append the section to its report.md and report.html; a
    problem becomes a note in the section."""
    import pandas as pd

    from proxyscale import collect

    results = pd.read_parquet(folder / collect.RESULTS)
    if not has_subsets(results):
        return []
    md, page = stage / "report.md", stage / "report.html"
    try:
        result = dm.fit(sweep_subsets(sweep_dir, folder))
    except dm.DatamodelError as exc:
        text = f"## {TITLE}\n\n- note: no datamodels: {exc}\n"
        md.write_text(md.read_text() + "\n" + text)
        _append_html(page, f"<section id=attribution><h2>{TITLE}</h2><p class=note>no datamodels: {html.escape(str(exc))}</p></section>")
        return []
    paths = write(result, stage)
    section = AttributionSection.from_result(result)
    png = (stage / FIGURE).read_bytes() if (stage / FIGURE).exists() else None
    md.write_text(md.read_text() + "\n" + section.markdown(FIGURE if png else None))
    _append_html(page, section.html(png))
    report["attribution"] = _clean({k: v for k, v in asdict(section).items() if k != "notes"} | {"notes": section.notes})
    return paths


def _append_html(page: Path, section: str) -> None:
    text = page.read_text()
    cut = text.rfind("</body>")
    page.write_text(text[:cut] + section + "\n" + text[cut:] if cut >= 0 else text + section)
