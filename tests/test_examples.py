"""Per-example losses and the predictive correlation across scale (issue 16)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import FAST, run_main
from proxyscale import collect, record
from proxyscale.analysis import examples as X
from proxyscale.job import run as job_run
from proxyscale.report import build

# ---------------------------------------------------------------------------------------------
# (a) the statistic on synthetic tables of known structure


def synthetic(n_ex: int, n_rec: int, noise: float, shared: bool, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-example losses at sizes 1M and 10M: example difficulty d(e) + a recipe effect s(e, r) (the same at both sizes
    when `shared`, independent draws otherwise) + noise of sd `noise` per size, seed (2 seeds, the noise split between
    them) and a second, worse LR whose values are unrelated noise (the tuned LR must be the one used)."""
    rng = np.random.default_rng(seed)
    d = 3 * rng.normal(size=n_ex)
    s = {z: rng.normal(size=(n_ex, n_rec)) for z in ("1M", "10M")}
    if shared:
        s["10M"] = s["1M"]
    frames = []
    for size in ("1M", "10M"):
        base = d[:, None] + s[size] + noise * rng.normal(size=(n_ex, n_rec))
        eps = 0.3 * rng.normal(size=(n_ex, n_rec))
        for seed_ in (0, 1):  # seed noise that cancels in the seed mean: +eps / -eps
            for lr, vals in ((1e-3, base + (eps if seed_ == 0 else -eps)), (3e-3, 5 + rng.normal(size=(n_ex, n_rec)))):
                for r in range(n_rec):
                    frames.append(
                        pd.DataFrame(
                            {"recipe": f"r{r:02d}", "size": size, "metric": "set", "example": np.arange(n_ex), "value": vals[:, r], "lr": lr, "seed": seed_}
                        )
                    )
    ex = pd.concat(frames, ignore_index=True)
    agg = ex.groupby(["recipe", "size", "metric", "lr", "seed"], as_index=False)["value"].mean()
    return ex, agg


def test_shared_effects_give_the_theoretical_correlation():
    k, noise = 30, 0.5
    ex, agg = synthetic(400, k, noise, shared=True)
    sec = X.section(ex, agg, ["1M", "10M"], {"set": False}, n_boot=500, seed=0)
    e = sec["entries"][0]
    rho = 1 / (1 + noise**2)  # corr(s + n1, s + n2) with var(s) = 1, var(n) = noise^2
    expected = rho * (1 - (1 - rho**2) / (2 * (k - 3)))  # E[sample r] over k recipes (Olkin-Pratt, first order)
    assert sec["available"] and e["n_recipes"] == k and e["n_examples"] == 400
    assert e["mean"] == pytest.approx(expected, abs=0.015)
    assert e["mean_ci"][0] < e["mean"] < e["mean_ci"][1] and e["mean_ci"][1] - e["mean_ci"][0] < 0.05
    assert "tuned LR" in sec["lr_rule"]
    q = e["quantiles"]
    assert q["q05"] <= q["q25"] <= q["q50"] <= q["q75"] <= q["q95"]
    # the same seed gives the same interval
    assert X.section(ex, agg, ["1M", "10M"], {"set": False}, n_boot=500, seed=0)["entries"][0]["mean_ci"] == e["mean_ci"]


def test_independent_effects_give_zero_with_an_interval_covering_it():
    ex, agg = synthetic(400, 12, 0.5, shared=False, seed=1)
    e = X.section(ex, agg, ["1M", "10M"], {"set": False}, n_boot=500, seed=0)["entries"][0]
    assert abs(e["mean"]) < 0.05 and e["mean_ci"][0] < 0 < e["mean_ci"][1]
    assert e["flips"] and e["flips"][0]["rho"] == min(f["rho"] for f in e["flips"])


def test_too_few_recipes_say_why():
    ex, agg = synthetic(20, 2, 0.5, shared=True)
    sec = X.section(ex, agg, ["1M", "10M"], {"set": False}, n_boot=10)
    assert not sec["available"] and "needs 3" in sec["reason"]


# ---------------------------------------------------------------------------------------------
# (b) a real tiny sweep through the CLI


@pytest.mark.slow
def test_tiny_sweep_writes_examples_and_the_report_section(tmp_path, cache_dir, capsys):
    out = tmp_path / "outputs"
    recipes = ["balanced", "noisy", "code_heavy", "boilerplate"]
    res = run_main(capsys, "-m", "model=debug,tiny", f"data={','.join(recipes)}", "sweep=ex", *FAST, f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}")
    assert res.returncode == 0, res.stderr[-3000:]
    root = out / "ex"
    recs = [record.read(p.parent) for p in root.glob("*/result.json")]
    assert len(recs) == 8 and all(r.examples_file == record.EXAMPLES for r in recs)
    n_win = 2048 // 129  # eval.tokens_per_set // (seq_len + 1)
    cell = pd.read_parquet(root / recs[0].run_id / record.EXAMPLES)
    assert len(cell) == 3 * n_win and str(cell["loss"].dtype) == "float32" and str(cell["example"].dtype) == "int32"
    # the per-example losses average to the record's eval loss (every window has seq_len predictions)
    assert cell.groupby("eval_set", observed=True)["loss"].mean().to_dict() == pytest.approx(recs[0].final_loss, rel=1e-5)
    snippets = sorted((root / record.SNIPPETS).glob("*.json"))
    assert len(snippets) == 3 and all(len(json.loads(p.read_text())["snippets"]) == n_win for p in snippets)

    rep = run_main(capsys, "report", str(root))
    assert rep.returncode == 0, rep.stderr[-3000:]
    table = pd.read_parquet(root / collect.EXAMPLES)
    assert len(table) == 8 * 3 * n_win and list(table.columns) == collect.EXAMPLE_COLUMNS
    assert table.groupby(["run_id", "eval_set"]).size().eq(n_win).all()
    pe = json.loads((root / "report.json").read_text())["per_example"]
    assert pe["available"] and pe["target"] == "tiny"
    assert {e["metric"] for e in pe["entries"]} == {"code", "prose", "readme"}
    for e in pe["entries"]:
        assert (e["proxy"], e["n_recipes"], e["n_examples"] + e["n_undefined"]) == ("debug", 4, n_win)
        assert -1 <= e["mean"] <= 1 and e["mean_ci"][0] <= e["mean"] <= e["mean_ci"][1]
        assert all(isinstance(f["snippet"], str) and f["snippet"] for f in e["flips"])
    assert (root / "fig_per_example.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (root / "fig_per_example.svg").read_bytes()[:2000]
    md, page = (root / "report.md").read_text(), (root / "report.html").read_text()
    assert "## Per-example view (predictive correlation across scale)" in md and "fig_per_example.png" in md and "fig_per_example.svg" in md
    assert "Per-example view" in page and page.rstrip().endswith("</html>")


# ---------------------------------------------------------------------------------------------
# (c) an imported long CSV with an example column


def _csv(path: Path, drop: int | None = None) -> Path:
    ex, _ = synthetic(25, 5, 0.5, shared=True)
    ex = ex.rename(columns={"example": "example"}).astype({"seed": int})
    if drop is not None:
        ex = ex.drop(index=drop)
    ex.to_csv(path, index=False)
    return path


def test_csv_with_an_example_column(tmp_path):
    paths, rep = build.run(csv=str(_csv(tmp_path / "ex.csv")), out=str(tmp_path / "rep"), n_boot=200)
    pe = rep["per_example"]
    assert pe["available"] and len(pe["entries"]) == 1
    e = pe["entries"][0]
    assert (e["proxy"], e["target"], e["n_recipes"], e["n_examples"]) == ("1M", "10M", 5, 25) and e["mean"] > 0.5
    assert any("example column" in n for n in rep["notes"])
    assert rep["recipes"] == [f"r{r:02d}" for r in range(5)]  # the main report ranks the per-run means over examples
    assert (tmp_path / "rep" / "fig_per_example.png") in paths


def test_csv_with_a_gap_is_refused_in_one_line(tmp_path, capsys):
    src = _csv(tmp_path / "gap.csv", drop=7)
    res = run_main(capsys, "report", "--from-csv", str(src), "--out", str(tmp_path / "rep"))
    assert res.returncode == 2
    line = res.stderr.strip()
    assert "\n" not in line and "gap: example '7' of metric 'set' is missing for r00" in line and "size 1M" in line, line


def test_csv_without_an_example_column_says_so(tmp_path):
    ex, agg = synthetic(5, 3, 0.5, shared=True)
    agg.to_csv(tmp_path / "agg.csv", index=False)
    pe = build.build_csv(str(tmp_path / "agg.csv"), n_boot=50)["per_example"]
    assert not pe["available"] and pe["reason"] == "the CSV has no example column"


# ---------------------------------------------------------------------------------------------
# (d) the bytes: the demo's 45 cells x 3 eval sets x 127 examples


def test_examples_files_stay_small(tmp_path):
    rng = np.random.default_rng(0)
    keys = {"prose": "k1", "code": "k2", "readme": "k3"}
    n_win = 16384 // 129
    assert n_win == 127
    rows = []
    for i, (size, recipe, seed) in enumerate((s, r, k) for s in ("debug", "tiny", "mini") for r in "abcde" for k in (0, 1, 2)):
        rid = f"{size}-{recipe}-s{seed}-{i:08x}"
        (tmp_path / rid).mkdir()
        losses = {k: (4 + rng.normal(size=n_win)).astype(np.float32) for k in keys}  # noisy floats: incompressible, the worst case
        assert job_run.write_examples(tmp_path / rid, losses) == record.EXAMPLES
        cell = {"run_id": rid, "status": "completed", "size": size, "recipe": recipe, "lr": 3e-3, "seed": seed, "examples_file": record.EXAMPLES}
        rows += [{**cell, "seq_len": 128, "eval_set": name, "eval_cache_key": key} for name, key in keys.items()]
    assert len(rows) == 45 * 3
    per_cell = max(p.stat().st_size for p in tmp_path.glob("*/examples.parquet"))
    path = collect.gather_examples(tmp_path, pd.DataFrame(rows), tmp_path)
    total = path.stat().st_size
    n = 45 * 3 * n_win
    assert len(pd.read_parquet(path)) == n
    # measured (pyarrow 26, zstd): 3.4 KB per cell file (381 rows) and 95 KB for the sweep's table (17145 rows, ~5.5 bytes a row)
    assert per_cell < 4_000, per_cell
    assert total < 200_000, total
    note = json.loads((tmp_path / collect.EXAMPLES_NOTE).read_text())
    assert note["rows"] == n and note["cells"] == 45 and not note["left_out"]


def test_an_examples_file_reads_back_its_losses_and_metrics_and_writing_it_imports_no_pandas(tmp_path):
    """write_examples builds its Arrow columns over numpy memory, not through pa.array (which imports pandas: about
    0.33 s of every cell's process); what it writes reads back row for row, and a fresh process that writes one has not
    imported pandas."""
    from proxyscale.data.tasks import METRICS

    rng = np.random.default_rng(1)
    losses = {"prose": rng.random(5), "code": rng.random(3)}
    metrics = {"arc": {m: rng.random(4) for m in METRICS}}
    job_run.write_examples(tmp_path, losses, metrics)
    t = pd.read_parquet(tmp_path / record.EXAMPLES)
    lm = t[t.metric == "loss"]
    assert list(lm.eval_set) == ["prose"] * 5 + ["code"] * 3 and list(lm.example) == [*range(5), *range(3)]
    assert np.array_equal(lm.loss.to_numpy(), np.concatenate(list(losses.values())).astype(np.float32)) and lm.value.isna().all()
    for m in METRICS:
        rows = t[t.metric == m]
        assert list(rows.eval_set) == ["arc"] * 4 and list(rows.example) == [0, 1, 2, 3] and rows.loss.isna().all()
        assert np.array_equal(rows.value.to_numpy(), metrics["arc"][m].astype(np.float32))
    job_run.write_examples(tmp_path, losses)  # (no task sets: the three columns alone)
    assert list(pd.read_parquet(tmp_path / record.EXAMPLES).columns) == ["eval_set", "example", "loss"]
    code = (
        "import sys, numpy as np\nfrom pathlib import Path\nfrom proxyscale.job.run import write_examples\n"
        f"write_examples(Path({str(tmp_path)!r}), {{'prose': np.ones(3)}})\nprint('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stdout + out.stderr[-2000:]
