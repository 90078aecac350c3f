"""The decision-first page and the typed spine: the Decision and Losses sections, the bottom line's honesty
(winners only where the target separates them, direction warnings on the terminal), and `report --schema`."""

from __future__ import annotations

import numpy as np
import pandas as pd

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
