"""The decision-first page and the typed spine: the Decision and Losses sections, the bottom line's honesty
(winners only where the target separates them, direction warnings on the terminal), and `report --schema`."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest

from proxyscale.report import build, render
from proxyscale.report.schema import report_schema


def _csv(tmp_path, metric="loss", seeds=1, gap=0.5, name="r.csv"):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        for s, scale in (("10M", 1.2), ("100M", 1.0)):
            for seed in range(seeds):
                v = 3.0 + gap * i * scale + 0.01 * rng.normal()
                rows.append({"recipe": f"r{i}", "size": s, "metric": metric, "value": v, "seed": seed})
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_decision_section_comes_first_in_both_formats(tmp_path):
    rep = build.build_csv(_csv(tmp_path), n_boot=20)
    (row,) = rep["decision"]["rows"]
    assert row["metric"] == "loss" and row["target_top"][0] == "r0" and row["separable"] == "untested"
    assert row["verdict"] in ("holds", "inconclusive") and row["interval"][0] < row["decision_accuracy"] <= row["interval"][1]
    md = render.markdown(rep)
    assert md.index("## Decision") < md.index("## Losses by recipe and size") < md.index("## Verdict per eval set")
    assert "| r0 | 3.0" in md and "Decision accuracy (DA): the share of recipe pairs" in md
    page = render.html_page(rep, {})
    assert page.index("<h2>Decision") < page.index("<h2>Losses by recipe and size") < page.index("<h2>Verdict per eval set")


def test_winner_named_only_where_the_target_separates(tmp_path):
    one = build.build_csv(_csv(tmp_path, seeds=1, name="one.csv"), n_boot=20)
    assert "r0 leads on loss (one seed at the target: lead untested" in one["summary"]["bottom_line"][0]
    close = build.build_csv(_csv(tmp_path, seeds=3, gap=0.001, name="close.csv"), n_boot=20)
    first = close["summary"]["bottom_line"][0]
    assert "cannot separate the top recipes on loss" in first and "wins" not in first and "leads" not in first
    clear = build.build_csv(_csv(tmp_path, seeds=3, gap=0.5, name="clear.csv"), n_boot=20)
    assert "r0 wins on loss" in clear["summary"]["bottom_line"][0] and clear["decision"]["rows"][0]["separable"] == "yes"


def test_direction_doubt_reaches_the_bottom_line(tmp_path):
    rep = build.build_csv(_csv(tmp_path, metric="hellaswag_acc"), n_boot=20)
    assert any("reads like an accuracy but is analysed as lower-is-better" in ln for ln in rep["summary"]["bottom_line"])


def test_schema_is_generated_from_the_dataclasses(tmp_path):
    s = report_schema()
    rows = s["properties"]["decision"]["properties"]["rows"]["items"]["properties"]
    assert set(rows) >= {"metric", "verdict", "decision_accuracy", "interval", "target_top", "separable", "action"}
    lines = s["properties"]["summary"]["properties"]["per_metric"]["items"]["properties"]["lines"]["items"]["properties"]
    assert {"verdict", "reason", "decision_accuracy_sci"} <= set(lines)
    comp = s["properties"]["comparisons"]["items"]["properties"]
    assert comp["attenuation"]["anyOf"][1] == {"type": "null"} and "floor" in comp["p_floor"]["description"]
    rep = build.build_csv(_csv(tmp_path), n_boot=20)
    assert rep["schema_version"] == s["properties"]["schema_version"]["const"]
    missing = {"metrics", "sizes", "recipes", "size_params", "n_boot", "n_boot_lr", "bootstrap_seed"}  # documented on one shared line
    assert set(rep) - set(s["properties"]) <= missing, set(rep) - set(s["properties"]) - missing
    assert set(rep["comparisons"][0]) <= set(comp)
    assert set(rep["summary"]) == set(s["properties"]["summary"]["properties"])


# ---------------------------------------------------------------------------------------------
# the typed spine: every section is its dataclass, rendered once per format from one template


def _conforms(obj, schema: dict, path: str) -> None:
    """obj has exactly the properties its schema declares, recursively (report.json = the dataclasses' serialisation)."""
    if isinstance(obj, dict) and "properties" in schema:
        assert set(obj) == set(schema["properties"]), (path, set(obj) ^ set(schema["properties"]))
        for k, v in obj.items():
            _conforms(v, schema["properties"][k], f"{path}.{k}")
    elif isinstance(obj, list) and schema.get("type") == "array":
        for x in obj:
            _conforms(x, schema.get("items", {}), f"{path}[]")
    elif obj is not None and "anyOf" in schema:
        want = "object" if isinstance(obj, dict) else "array" if isinstance(obj, list) else None
        for branch in schema["anyOf"]:
            if want and (branch.get("type") == want or (want == "object" and "properties" in branch)):
                _conforms(obj, branch, path)


def _documented(schema: dict, path: str) -> None:
    for k, p in schema.get("properties", {}).items():
        assert p.get("description"), f"{path}.{k} has no doc"
        for sub in [p, p.get("items") or {}] + list(p.get("anyOf") or []):
            if "properties" in sub:
                _documented(sub, f"{path}.{k}")


def _sweep_with_baselines(root):
    from test_report import synthetic_sweep

    df = synthetic_sweep(root)
    rng = np.random.default_rng(7)
    df["unigram"] = 6.0 + df["recipe"].map({f"rec{i}": 0.1 * rng.normal() for i in range(5)})
    df["bigram"] = 2.9 - df["recipe"].map({f"rec{i}": 0.1 * i for i in range(5)})
    df.to_parquet(root / "results.parquet")


def test_every_section_is_its_dataclass_and_the_schema_lists_it(tmp_path):
    from test_examples import _csv as examples_csv

    from proxyscale.analysis.types import typed
    from proxyscale.report.schema import SECTIONS

    s = report_schema()
    typed_keys = ("reduced_lr", "baselines", "early_signal", "prediction", "frontier", "per_example", "attribution")
    assert set(typed_keys) <= set(SECTIONS) and all(s["properties"][k]["properties"] for k in typed_keys)
    for key in [*SECTIONS, "seed_noise"]:
        _documented(s["properties"][key].get("items", s["properties"][key]), key)
    _sweep_with_baselines(tmp_path / "syn")
    sweep = build.build_sweep(str(tmp_path / "syn"), n_boot=20)
    ex = build.build_csv(str(examples_csv(tmp_path / "ex.csv")), n_boot=20)
    assert sweep["reduced_lr"]["available"] and sweep["baselines"]["available"] and sweep["early_signal"]["available"]
    assert sweep["prediction"]["available"] and sweep["frontier"]["available"] and ex["per_example"]["available"]
    for rep in (sweep, ex):
        for key in SECTIONS:
            if key in rep:
                _conforms(rep[key], s["properties"][key], key)
    with pytest.raises(TypeError, match="no field"):
        typed(SECTIONS["reduced_lr"], {"available": True, "entries": [], "undeclared": 1})


def _headings(md: str, page: str) -> tuple[list[str], list[str]]:
    return re.findall(r"^##+ (.+)$", md, flags=re.M), [html.unescape(h) for h in re.findall(r"<h[23]>([^<]+)</h[23]>", page)]


def test_markdown_and_html_come_from_the_same_templates_in_one_order(tmp_path):
    """Both formats show the same sections in the same order (no section spliced in or appended afterwards), the
    per-example view among them, and the page is one well-formed document."""
    from test_examples import _csv as examples_csv

    paths, rep = build.run(csv=str(examples_csv(tmp_path / "ex.csv")), out=str(tmp_path / "rep"), n_boot=50)
    md, page = (tmp_path / "rep" / "report.md").read_text(), (tmp_path / "rep" / "report.html").read_text()
    md_heads, html_heads = _headings(md, page)
    assert md_heads == html_heads
    order = ["Decision", "Losses by", "Verdict per eval set", "Figures", "All proxy", "Null baselines", "Reduced-LR", "Seed-noise", "Early signal"]
    order += ["Predictions", "Compute-decision frontier", "Per-example view", "Flipped pairs"]
    h2 = re.findall(r"^## (.+)$", md, flags=re.M)
    assert h2 == [html.unescape(h) for h in re.findall(r"<h2>([^<]+)</h2>", page)]
    at = [next(i for i, h in enumerate(h2) if h.startswith(o)) for o in order]
    assert at == sorted(at), list(zip(order, at))
    assert page.count("<body>") == 1 and page.endswith("</body></html>") and md.rstrip().endswith("Every number: report.json.")
    assert "mean predictive correlation" in md and "mean predictive correlation" in page


def test_attribution_renders_in_order_from_its_dataclass(tmp_path):
    """The attribution section (a sweep with subset cells) renders between the per-example view and the flips, its LDS
    with the interval in both formats; a sweep whose datamodels cannot be fitted says why in the same place."""
    from dataclasses import asdict

    from proxyscale.analysis import datamodels as dm

    rng = np.random.default_rng(5)
    x = rng.random((40, 6)) < 0.5
    w = rng.normal(size=(20, 6))
    rows = [(f"s{j}", size, f"e{e}", float(x[j] @ w[e] + rng.normal(0, 0.3))) for size in ("1M", "10M") for j in range(40) for e in range(20)]
    pd.DataFrame(rows, columns=["subset", "size", "example", "value"]).to_csv(tmp_path / "l.csv", index=False)
    pd.DataFrame([(f"s{j}", g) for j in range(40) for g in range(6) if x[j, g]], columns=["subset", "group"]).to_csv(tmp_path / "s.csv", index=False)
    result = dm.fit(dm.read_csv(str(tmp_path / "l.csv"), str(tmp_path / "s.csv")), n_boot=50)
    rep = build.build_csv(_csv(tmp_path), n_boot=20)
    rep["attribution"] = build._clean(asdict(dm.Attribution.from_result(result)))
    (line,) = dm.Attribution.from_result(result).headline()
    assert re.search(r"LDS -?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]", line)
    md, page = render.markdown(rep), render.html_page(rep, {}, extra={"attribution": b"\x89PNG"})
    for text in (md, html.unescape(page)):
        assert text.index("Per-example view") < text.index("Attribution across scale") < text.index("Flipped pairs")
        assert line in text
    assert "](datamodels_lds.png)" not in md and "data:image/png;base64," in page  # linked where the file exists, embedded in the page
    rep["attribution"] = asdict(dm.Attribution(reason="results.parquet has no subset cells with losses"))
    for text in (render.markdown(rep), render.html_page(rep, {})):
        assert "note: no datamodels: results.parquet has no subset cells with losses" in text


def test_the_reduced_lr_claim_in_the_bottom_line_carries_its_intervals(tmp_path):
    _sweep_with_baselines(tmp_path / "syn")
    rep = build.build_sweep(str(tmp_path / "syn"), n_boot=20)
    (line,) = [ln for ln in rep["summary"]["bottom_line"] if ln.startswith("Reduced LR:")]
    assert re.search(r"DA \d\.\d\d \[\d\.\d\d, \d\.\d\d\] vs \d\.\d\d \[\d\.\d\d, \d\.\d\d\] at the standard LR", line), line
