"""`proxyscale datamodels`' files and the report's attribution (issue 23): datamodels.json/.md/.html/_lds.png/
_top_groups.csv from proxyscale.analysis.datamodels' result, whose section (`Attribution`) renders from the same
template (proxyscale.report.sections) in datamodels.md/.html and, when a sweep has subset cells, in its report.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from proxyscale.analysis import datamodels as dm
from proxyscale.analysis.datamodels import Attribution
from proxyscale.record import atomic_write_bytes, atomic_write_text
from proxyscale.report import sections

JSON, MD, HTML, FIGURE, TOP = "datamodels.json", "datamodels.md", "datamodels.html", sections.ATTRIBUTION_FIGURE, "datamodels_top_groups.csv"


def figure(a: Attribution) -> bytes | None:
    """LDS on the largest size's subsets against the fit size, one line per metric (and TRAK's points)."""
    target = a.sizes[-1] if a.sizes else None
    lines = {}
    for e in a.entries:
        if e["eval_size"] == target:
            lines.setdefault(e["metric"], []).append((a.sizes.index(e["fit_size"]), e["lds"], e["lds_ci"]))
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
    for t in a.trak:
        if t["eval_size"] == target:
            ax.plot([a.sizes.index(t["checkpoint_size"])], [t["lds"]], marker="x", color="k", linestyle="none")
    ax.set_xticks(range(len(a.sizes)), a.sizes)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("size the datamodels were fitted at (x: TRAK from that size's checkpoint)")
    ax.set_ylabel(f"LDS on {target}'s subsets")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


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
    section = Attribution.from_result(result)
    png = figure(section)
    paths = [out / JSON, out / TOP]
    if png:
        atomic_write_bytes(out / FIGURE, png)
        paths.append(out / FIGURE)
    elif (out / FIGURE).exists():
        (out / FIGURE).unlink()
    data = _clean(asdict(section))
    atomic_write_text(out / MD, "# Datamodels\n\n" + sections.render("attribution", data, "md", png=png))
    atomic_write_text(out / HTML, sections.page(sections.ATTRIBUTION_TITLE, sections.render("attribution", data, "html", png=png)))
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


def for_report(sweep_dir: str | Path, folder: Path) -> tuple[dict | None, dict] | None:
    """The report's attribution when the sweep has subset cells (results.parquet in the report's `folder`): (the datamodels
    result, whose files `write` puts beside the report, and the section as report.json's `attribution`); a problem
    fitting them becomes the section's reason. None without subset cells."""
    import pandas as pd

    from proxyscale import collect

    if not has_subsets(pd.read_parquet(folder / collect.RESULTS)):
        return None
    try:
        result = dm.fit(sweep_subsets(sweep_dir, folder))
    except dm.DatamodelError as exc:
        return None, _clean(asdict(Attribution(reason=str(exc))))
    return result, _clean(asdict(Attribution.from_result(result)))
