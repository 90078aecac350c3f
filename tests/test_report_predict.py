"""Issue 15 in the report: report.json's prediction and frontier sections, the Predictions and
Compute-decision frontier sections of report.md/html (with fig_frontier.png beside report.md), the
planner's --decision-level, and what happens with two sizes or sizes without parameter counts."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small fits: OpenBLAS worker threads only add contention

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from proxyscale import cli  # noqa: E402
from proxyscale.report import build  # noqa: E402

SIZES, N = ["10M", "30M", "100M", "1B"], [1e7, 3e7, 1e8, 1e9]


def ladder_csv(path: Path, sizes=SIZES, params=N, n_recipes=6, seed=0, steps=(50, 100), acc=False) -> Path:
    """L_r(N, step) = E_r + A_r (N/1e9)^-0.35 + (an extra 0.2 at half the training) + noise; seeded.
    With acc=True also a higher-is-better metric "acc" = 10 - loss (same ranking, reversed direction)."""
    rng = np.random.default_rng(seed)
    E, A = rng.uniform(2.0, 2.5, n_recipes), rng.uniform(1.0, 2.0, n_recipes)
    rows = []
    for r in range(n_recipes):
        for s, n in zip(sizes, params):
            for st in steps:
                v = E[r] + A[r] * (n / 1e9) ** -0.35 + (0.2 if st < max(steps) else 0.0) + rng.normal(0, 1e-3)
                rows.append(dict(recipe=f"r{r}", size=s, metric="loss", value=v, step=st))
                if acc:
                    rows.append(dict(recipe=f"r{r}", size=s, metric="acc", value=10 - v, step=st))
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def cheap(monkeypatch):
    """Only the vectorised and per-recipe power laws fit within this budget (the compute laws take ~0.03-0.07 s per recipe fit)."""
    monkeypatch.setattr(build, "PREDICT_BUDGET_S", 0.2)


def test_four_size_ladder_report_has_predictions_frontier_and_figure(tmp_path, cheap):
    csv = ladder_csv(tmp_path / "ladder.csv")
    paths, rep = build.run(csv=str(csv), out=str(tmp_path / "out"), n_boot=200)
    pred, front = rep["prediction"], rep["frontier"]
    assert pred["available"] and pred["reason"] is None and pred["target"] == "1B"
    assert pred["methods_run"] == ["shared_power", "log_linear", "power_per_recipe"]
    over = [s for s in pred["methods_skipped"] if "budget" in s["reason"]]
    assert {s["method"] for s in over} == {"compute_3p", "compute_2p"} and any("not run" in n for n in pred["notes"])
    assert {m["method"] for m in pred["methods"] if not m.get("backtest")} == set(pred["methods_run"])
    bt = [m for m in pred["methods"] if m.get("backtest")]
    assert bt and all(m["fit_sizes"] == ["10M", "30M"] and m["target"] == "100M" for m in bt)
    sp = next(m for m in pred["methods"] if m["method"] == "shared_power" and not m.get("backtest"))
    assert sp["mean_abs_error"] < 0.01 and len(sp["decision_accuracy_ci"]) == 2 and sp["da_diff_ci"] is not None
    assert all({"method": s["method"], "reason": s["reason"]} == s for s in pred["methods_skipped"])
    assert any(s["method"] == "nd_law" for s in pred["methods_skipped"])  # no tokens column: no checkpoints to fit
    # the frontier: every proxy size at both steps, and the extrapolation methods
    assert front["available"] and front["decision_level"] == 0.8 and front["target"] == "1B"
    steps = {(p["size"], p["step"]) for p in front["points"] if p.get("size")}
    assert steps == {(s, st) for s in SIZES[:-1] for st in (50.0, 100.0)}
    assert any(p["on_frontier"] for p in front["points"]) and {p.get("method") for p in front["points"]} >= {"shared_power"}
    (plan,) = front["plans"]
    assert plan["metric"] == "loss" and plan["sentence"]
    bl = rep["summary"]["bottom_line"]  # winner, 3 proxies, LR, warning: 6 lines, no room for the planner's
    assert len(bl) == 6 and not any(ln.startswith("Planner:") for ln in bl)
    # report.json on disk, report.md's sections and its linked PNG, the html self-contained
    saved = json.loads(paths[0].read_text())
    assert saved["prediction"]["methods"] and saved["frontier"]["points"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Predictions" in md and "## Compute-decision frontier" in md and "(backtest)" in md
    assert "does not rank better than" in md or "ranks better than" in md or "ranks worse than" in md
    assert "](fig_frontier.png)" in md  # every figure is linked; the frontier's among them
    png = tmp_path / "out" / "fig_frontier.png"
    assert png in paths and png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Compute-decision frontier" in page and page.count("data:image/png;base64,") >= 2  # self-contained: the figures embedded


def test_two_sizes_prediction_unavailable_frontier_present(tmp_path):
    csv = ladder_csv(tmp_path / "two.csv", sizes=["60M", "1B"], params=[6e7, 1e9], steps=(100,))
    _, rep = build.run(csv=str(csv), out=str(tmp_path / "out"), n_boot=100)
    pred, front = rep["prediction"], rep["frontier"]
    assert pred["available"] is False and "\n" not in pred["reason"] and "2 proxy sizes" in pred["reason"]
    assert pred["methods"] == [] and any("frontier" in n for n in pred["notes"])
    assert front["available"] and [p["size"] for p in front["points"]] == ["60M"] and front["plans"][0]["sentence"]
    bl = rep["summary"]["bottom_line"]  # winner, one proxy, planner, LR, warning
    assert len(bl) == 5 and bl[2] == "Planner: " + front["plans"][0]["sentence"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"Not available: {pred['reason']}." in md and "(fig_frontier.png)" not in md  # one point: the table, not a figure
    assert "_Figure not drawn: one point per eval set" in md and not (tmp_path / "out" / "fig_frontier.png").exists()


def test_sizes_without_parameter_counts_say_why_in_one_line():
    df = pd.DataFrame([dict(recipe=f"r{r}", size=s, metric="loss", value=float(r + i)) for r in range(4) for i, s in enumerate(["xs", "s", "m"])])
    pred, front = build.predictions(df, ["xs", "s", "m"], {"loss": False}, n_boot=10)
    assert pred["available"] is False and front["available"] is False
    assert "\n" not in pred["reason"] and "params" in pred["reason"] and front["reason"] == pred["reason"]


def test_directions_reach_the_scores(tmp_path, cheap):
    """acc = 10 - loss: the same ranking, higher is better; the best single size picks the true winner on both."""
    csv = ladder_csv(tmp_path / "mixed.csv", sizes=SIZES[1:], params=N[1:], acc=True, steps=(100,))
    _, rep = build.run(csv=str(csv), out=str(tmp_path / "out"), higher_is_better=["acc"], n_boot=50, figures=False)
    assert rep["directions"] == {"acc": "higher", "loss": "lower"}
    big = {s["metric"]: s for s in rep["prediction"]["single_scale"] if s["size"] == "100M" and not s.get("backtest")}
    assert big["acc"]["top1_regret"] == pytest.approx(0.0) and big["loss"]["top1_regret"] == pytest.approx(0.0)
    assert any("higher-is-better" in n for n in rep["prediction"]["notes"])


def test_decision_level_flag(tmp_path, capsys):
    csv = ladder_csv(tmp_path / "x.csv", sizes=["60M", "1B"], params=[6e7, 1e9], steps=(100,))
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "--from-csv", str(csv), "--out", str(tmp_path / "o"), "--decision-level", "0.3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--decision-level" in err and "(0.5, 1]" in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(build.ReportError):
        build.run(csv=str(csv), out=str(tmp_path / "o"), decision_level=1.01)
    _, rep = build.run(csv=str(csv), out=str(tmp_path / "o"), decision_level=0.95, n_boot=50, figures=False)
    assert rep["frontier"]["decision_level"] == 0.95 and "0.95" in rep["frontier"]["plans"][0]["sentence"]


def test_sweep_frontier_uses_eval_curves(tmp_path):
    """A sweep's results.parquet + curves.parquet: final losses at the run's last step, earlier eval points as
    (size, step) frontier points; sizes named without a number take their params column."""
    rng = np.random.default_rng(5)
    q = {f"rec{i}": rng.normal(scale=0.2) for i in range(5)}
    res, cur = [], []
    for size, params in (("tiny", 1e6), ("small", 4e6), ("base", 1.6e7)):
        for r, v in q.items():
            for seed in (0, 1):
                rid = f"{size}-{r}-{seed}"
                loss = 5.0 - np.log10(params) / 3 + v + 0.01 * rng.normal()
                res.append(
                    {
                        "run_id": rid,
                        "status": "completed",
                        "size": size,
                        "params": int(params),
                        "recipe": r,
                        "lr": 1e-3,
                        "seed": seed,
                        "tokens": int(20 * params),
                        "steps": 100,
                        "eval_set": "prose",
                        "loss": loss,
                    }
                )
                for st in (50, 100):
                    cur.append(
                        {
                            "run_id": rid,
                            "size": size,
                            "params": int(params),
                            "recipe": r,
                            "lr": 1e-3,
                            "seed": seed,
                            "eval_set": "prose",
                            "step": st,
                            "tokens": int(20 * params * st / 100),
                            "loss": loss + (0.3 if st == 50 else 0.05),
                        }
                    )
    root = tmp_path / "sw"
    root.mkdir()
    pd.DataFrame(res).to_parquet(root / "results.parquet")
    pd.DataFrame(cur).to_parquet(root / "curves.parquet")
    paths, rep = build.run(sweep_dir=str(root), n_boot=50)
    front = rep["frontier"]
    assert {(p["size"], p["step"]) for p in front["points"] if p.get("size")} == {(s, st) for s in ("tiny", "small") for st in (50.0, 100.0)}
    half = next(p for p in front["points"] if p.get("size") == "small" and p["step"] == 50.0)
    full = next(p for p in front["points"] if p.get("size") == "small" and p["step"] == 100.0)
    assert half["compute_fraction"] == pytest.approx(full["compute_fraction"] / 2)
    pred = rep["prediction"]
    assert pred["available"] and pred["fit_sizes"] == ["tiny", "small"] and "log_linear" in pred["methods_run"]
    assert (root / "fig_frontier.png") in paths
    # the final values are results.parquet's losses (at the run's last step), not the curve's point there
    t = build._sweep_table(pd.DataFrame(res), pd.DataFrame(cur))
    last = t[t["step"] == 100].sort_values(["size", "recipe", "seed"])["value"].to_numpy()
    assert last == pytest.approx(pd.DataFrame(res).sort_values(["size", "recipe", "seed"])["loss"].to_numpy())
    assert len(t[t["step"] == 50]) == len(res)
