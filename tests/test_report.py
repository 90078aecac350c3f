"""`proxyscale report` end to end through the CLI: external CSVs checked against direct scipy
computations, the published DCLM results, a sweep (synthetic and real), and the HTML page rendered
in headless Chromium. (Bad CSVs are rows of the bad-input table in test_cli.py.) The unit-tier reports run
the CLI's main in this process (helpers.run_main: no interpreter start-up and imports per report); the slow
tier's run the installed command, as do test_cli.py's refusals and the RegMix CPU guard (a fresh interpreter)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

from helpers import CHROMIUM, FAST, PROXYSCALE, ROOT, run_main, screenshot
from proxyscale import record
from proxyscale.analysis import types
from proxyscale.report import build, render, wandb_publish

REPO = Path(__file__).resolve().parent.parent
CLI = PROXYSCALE  # the proxyscale beside this interpreter: a checkout without .venv/ or proxyscale on PATH (a worktree) runs it too
REALDATA = REPO.parent / "shared" / "realdata"


def cli(*args, cwd=REPO, timeout=600):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def strict_json(path):
    def no_nan(c):
        raise AssertionError(f"report.json holds {c}")

    return json.loads(Path(path).read_text(), parse_constant=no_nan)


def direct(x, y):
    x, y = np.asarray(x), np.asarray(y)
    iu = np.triu_indices(len(x), 1)
    sx, sy = np.sign(x[:, None] - x[None])[iu], np.sign(y[:, None] - y[None])[iu]
    ok = (sx != 0) & (sy != 0)
    return {
        "pearson": st.pearsonr(x, y)[0],
        "spearman": st.spearmanr(x, y)[0],
        "kendall": st.kendalltau(x, y)[0],
        "decision_accuracy": float(((sx * sy)[ok] > 0).mean()),
        "n_pairs": int(ok.sum()),
        "n_ties": int((~ok).sum()),
    }


# ---------------------------------------------------------------------------------------------
# --from-csv end to end


def small_csv(tmp_path, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    recipes = [f"mix{i}" for i in range(7)]
    quality = rng.normal(size=7)
    rows = []
    for size, scale in (("60M", 1.0), ("1.3B", 0.6), ("350k", 1.5)):  # out of order on purpose
        for metric in ("web", "code"):
            noise = rng.normal(scale=0.4, size=7)
            for r, q, e in zip(recipes, quality, noise):
                rows.append({"recipe": r, "size": size, "metric": metric, "value": round(3.0 + scale * (q + e), 6)})
    df = pd.DataFrame(rows)
    df.loc[(df["recipe"] == "mix1") & (df["size"] == "60M") & (df["metric"] == "web"), "value"] = df.loc[
        (df["recipe"] == "mix2") & (df["size"] == "60M") & (df["metric"] == "web"), "value"
    ].iloc[0]  # a tie
    path = tmp_path / "ext.csv"
    df.to_csv(path, index=False)
    return path, df


def test_from_csv_end_to_end_matches_scipy(tmp_path, capsys):
    path, df = small_csv(tmp_path)
    out = run_main(capsys, "report", "--from-csv", str(path), "--out", str(tmp_path / "rep"), "--no-figures")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    for name in ("report.json", "report.md", "report.html"):
        assert (tmp_path / "rep" / name).stat().st_size > 500
    rep = strict_json(tmp_path / "rep" / "report.json")
    for key in ("comparisons", "reduced_lr", "baselines", "early_signal", "summary", "seed_noise", "sizes", "direction"):
        assert key in rep
    assert rep["sizes"] == ["350k", "60M", "1.3B"] and rep["direction"] == "lower"
    assert rep["baselines"]["available"] is False and "external" in rep["baselines"]["reason"]
    assert rep["reduced_lr"]["available"] is False
    comps = rep["comparisons"]
    assert len(comps) == 2 * 3  # 2 metrics x 3 ordered pairs
    for c in comps:
        for key in (
            "metric",
            "proxy",
            "target",
            "n_recipes",
            "pearson",
            "r2",
            "spearman",
            "kendall",
            "decision_accuracy",
            "n_pairs",
            "n_flips",
            "pearson_ci",
            "spearman_ci",
            "kendall_ci",
            "decision_accuracy_ci",
            "r2_ci",
            "n_ties",
            "flips",
            "regret",
            "abstain",
            "undefined",
            "reason",
        ):
            assert key in c, key
        piv = df[df["metric"] == c["metric"]].pivot(index="recipe", columns="size", values="value")
        x, y = piv[c["proxy"]].to_numpy(), piv[c["target"]].to_numpy()
        d = direct(x, y)
        assert c["n_recipes"] == 7
        for k in ("pearson", "spearman", "kendall", "decision_accuracy"):
            assert c[k] == pytest.approx(d[k], abs=1e-9), (c["metric"], c["proxy"], c["target"], k)
        assert c["r2"] == pytest.approx(d["pearson"] ** 2)
        assert (c["n_pairs"], c["n_ties"]) == (d["n_pairs"], d["n_ties"])
        assert c["n_flips"] == len(c["flips"]) == round((1 - d["decision_accuracy"]) * d["n_pairs"])
        lo, hi = c["decision_accuracy_ci"]
        assert lo <= c["decision_accuracy"] <= hi
        best = piv.index[np.argmin(x)]
        assert c["regret"]["top1_picks"] == [best] and c["regret"]["top1"] == pytest.approx(piv.loc[best, c["target"]] - y.min())
        assert c["abstain"] is None and "abstain" in c["undefined"]  # one value per cell: no seed noise
    tie = next(c for c in comps if c["metric"] == "web" and c["proxy"] == "60M")
    assert tie["n_ties"] >= 1
    lines = rep["summary"]["per_metric"][0]["lines"]
    assert [ln["proxy"] for ln in lines] == ["350k", "60M"] and all(ln["target"] == "1.3B" for ln in lines)
    assert "decision accuracy" in lines[0]["sentence"]
    # reproducible: a second build of the same CSV (its analysis, without drawing the figures again) gives the same numbers
    assert json.loads(json.dumps(build._clean(build.build_csv(str(path)))))["comparisons"] == comps


def test_no_figures_writes_the_same_report_json_draws_nothing_and_says_so(tmp_path, capsys):
    """--no-figures: the analysis and report.json are the full report's; no fig_* file is written and those of an earlier
    report in the folder go (they would be linked from nothing); each figure's place in report.md/.html says why."""
    path, _ = small_csv(tmp_path)
    full, bare = tmp_path / "full", tmp_path / "bare"
    assert run_main(capsys, "report", "--from-csv", str(path), "--out", str(full)).returncode == 0
    drawn = sorted(p.name for p in full.glob("fig_*.png"))
    assert drawn, "the full report drew no figure"
    r = run_main(capsys, "report", "--from-csv", str(path), "--out", str(bare), "--no-figures")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert (bare / "report.json").read_bytes() == (full / "report.json").read_bytes()
    assert not list(bare.glob("fig_*")) and "fig_" not in r.stdout
    md, html = (bare / "report.md").read_text(), (bare / "report.html").read_text()
    assert md.count("written with --no-figures") >= len(drawn) and "No figures: every figure was skipped" in md  # (skipped ones too: not built)
    assert "data:image/png" not in html and "written with --no-figures" in html
    assert run_main(capsys, "report", "--from-csv", str(path), "--out", str(full), "--no-figures").returncode == 0
    assert not list(full.glob("fig_*"))


def test_from_csv_with_lr_seed_step_params(tmp_path, capsys):
    """Optional columns: params orders sizes; lr gives the reduced-LR section; step gives early signal."""
    rng = np.random.default_rng(3)
    rows = []
    q = {f"r{i}": rng.normal() for i in range(5)}
    for size, params in (("proxyA", 1e6), ("targetB", 1e8)):
        for lr in (1e-3, 3e-3, 1e-2):
            for seed in (0, 1):
                for r, v in q.items():
                    for step in (100, 200):
                        val = 3 + v + 0.3 * abs(np.log10(lr) + 2.5) + 0.05 * rng.normal() + (0.5 if step == 100 else 0)
                        rows.append({"recipe": r, "size": size, "metric": "loss", "value": val, "lr": lr, "seed": seed, "step": step, "params": params})
    path = tmp_path / "lr.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    out = run_main(capsys, "report", "--from-csv", str(path), "--out", str(tmp_path / "rep"), "--standard-lr", "1e-2", "--no-figures")
    assert out.returncode == 0, out.stderr
    rep = strict_json(tmp_path / "rep" / "report.json")
    assert rep["sizes"] == ["proxyA", "targetB"]
    red = rep["reduced_lr"]
    assert red["available"] and red["standard_lr"] == pytest.approx(1e-2) and red["standard_lr_source"] == "--standard-lr on the command line"
    (e,) = red["entries"]
    assert {p["proxy_lr"] for p in e["curve"]} == {1e-3, 3e-3, 1e-2} and {p["target_mode"] for p in e["curve"]} == {"tuned", "fixed"}
    modes = {(c["proxy_lr"], c["target_mode"]) for c in rep["comparisons"]}
    assert ("tuned", "tuned") in modes and (1e-3, "fixed") in modes
    prim = next(c for c in rep["comparisons"] if c["proxy_lr"] == "tuned")
    assert prim["abstain"] is not None and prim["abstain"]["proxy_seed_sd"] > 0
    assert len(rep["seed_noise"]) == 2
    es = rep["early_signal"]
    assert es["available"] and {p["fraction"] for p in es["points"]} == {0.5, 1.0}
    final = [p for p in es["points"] if p["proxy"] == "proxyA" and p["fraction"] == 1.0][0]
    assert final["spearman"] == pytest.approx(prim["spearman"])


@pytest.fixture(scope="module")
def regmix_report(tmp_path_factory) -> tuple[Path, float]:
    """The RegMix report (256 recipes x 13 metrics, HTML and every figure) built once in a fresh interpreter: its
    folder and CPU seconds, for the scipy check and the CPU guard (once per test process: `--dist loadfile` keeps a file on one)."""
    out = tmp_path_factory.mktemp("regmix")
    secs, _ = run_peak(REALDATA / "regmix_1m_60m.csv", out)
    return out, secs


@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is absent")
def test_realdata_regmix_figures_equal_independent_scipy(regmix_report):
    """RegMix 1M -> 60M, 256 mixtures x 13 Pile losses: every published-data figure equals scipy's."""
    src = REALDATA / "regmix_1m_60m.csv"
    rep = strict_json(regmix_report[0] / "report.json")
    df = pd.read_csv(src, dtype={"recipe": str})
    assert len(rep["metrics"]) == 13
    for metric in rep["metrics"]:
        piv = df[df["metric"] == metric].pivot(index="recipe", columns="size", values="value")
        c = next(c for c in rep["comparisons"] if c["metric"] == metric and c["proxy"] == "1M")
        d = direct(piv["1M"], piv["60M"])
        assert c["n_recipes"] == 256 and c["n_pairs"] == d["n_pairs"] and c["n_ties"] == d["n_ties"]
        for k in ("pearson", "spearman", "kendall", "decision_accuracy"):
            assert c[k] == pytest.approx(d[k], abs=1e-9), (metric, k)


@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is absent")
def test_realdata_dclm_higher_is_better(tmp_path, capsys):
    src = REALDATA / "dclm_scales.csv"
    out = run_main(capsys, "report", "--from-csv", str(src), "--out", str(tmp_path), "--no-figures", "--higher-is-better")
    assert out.returncode == 0, out.stderr
    rep = strict_json(tmp_path / "report.json")
    assert rep["direction"] == "higher" and rep["sizes"] == ["400M-1x", "1B-1x", "7B-1x"]
    df = pd.read_csv(src)
    for metric in ("Core", "Extended", "MMLU"):
        piv = df[df["metric"] == metric].pivot(index="recipe", columns="size", values="value")
        c = next(c for c in rep["comparisons"] if c["metric"] == metric and c["proxy"] == "400M-1x" and c["target"] == "7B-1x")
        d = direct(piv["400M-1x"], piv["7B-1x"])
        assert c["n_recipes"] == 11
        for k in ("pearson", "spearman", "kendall", "decision_accuracy"):
            assert c[k] == pytest.approx(d[k], abs=1e-9)
        best = piv["400M-1x"].idxmax()  # higher is better: the proxy's pick is its maximum
        assert c["regret"]["top1_picks"] == [best]
        assert c["regret"]["top1"] == pytest.approx(piv["7B-1x"].max() - piv.loc[best, "7B-1x"])
    assert "decision accuracy" in (tmp_path / "report.md").read_text()


@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is absent")
def test_direction_per_metric_through_the_cli(tmp_path, capsys):
    """DCLM's accuracies without a direction are warned about by name; naming two of them makes exactly
    those higher-is-better; a sweep refuses the flag (its metrics are losses)."""
    src = REALDATA / "dclm_scales.csv"
    out = run_main(capsys, "report", "--from-csv", str(src), "--out", str(tmp_path / "a"), "--no-figures")
    assert out.returncode == 0, out.stderr
    notes = " ".join(strict_json(tmp_path / "a" / "report.json")["notes"])
    assert "metric 'MMLU' reads like an accuracy but is analysed as lower-is-better" in notes
    out = run_main(capsys, "report", "--from-csv", str(src), "--out", str(tmp_path / "b"), "--no-figures", "--higher-is-better", "MMLU", "Core")
    assert out.returncode == 0, out.stderr
    rep = strict_json(tmp_path / "b" / "report.json")
    assert rep["directions"] == {"Core": "higher", "Extended": "lower", "MMLU": "higher"} and rep["direction"] == "mixed"
    out = run_main(capsys, "report", str(tmp_path), "--higher-is-better", "acc")
    assert out.returncode == 2 and out.stderr.strip().endswith("--higher-is-better is for --from-csv results")


# ---------------------------------------------------------------------------------------------
# sweeps


def synthetic_sweep(root: Path):
    """results.parquet + curves.parquet of a fake sweep (no records: baselines are skipped with a reason)."""
    rng = np.random.default_rng(1)
    rows, curves = [], []
    q = {f"rec{i}": rng.normal(scale=0.2) for i in range(5)}
    for size, params in (("tiny", 1e5), ("mini", 2e5), ("small", 4e5)):
        for r, v in q.items():
            for lr in (1e-3, 3e-3):
                for seed in (0, 1):
                    status = "diverged" if (size, r, lr, seed) == ("mini", "rec0", 3e-3, 1) else "completed"
                    run = f"{size}-{r}-{lr}-{seed}"
                    for es in ("prose", "code"):
                        loss = np.nan if status != "completed" else 3 - np.log10(params) / 5 + v + 0.02 * rng.normal()
                        rows.append(
                            {
                                "run_id": run,
                                "sweep": "syn",
                                "status": status,
                                "size": size,
                                "params": int(params),
                                "recipe": r,
                                "lr": lr,
                                "seed": seed,
                                "tokens": 1000,
                                "steps": 10,
                                "wall_seconds": 1.0,
                                "tokens_per_second": 1e3,
                                "flops_per_token": 1e5,
                                "eval_set": es,
                                "loss": loss,
                            }
                        )
                        for step in (5, 10):
                            curves.append(
                                {
                                    "run_id": run,
                                    "size": size,
                                    "params": int(params),
                                    "recipe": r,
                                    "lr": lr,
                                    "seed": seed,
                                    "eval_set": es,
                                    "step": step,
                                    "tokens": step * 100,
                                    "loss": (loss if step == 10 else loss + 1),
                                }
                            )
    root.mkdir(parents=True)
    (root / "grid.json").write_text(json.dumps({"standard_lr": 3e-3, "standard_lr_source": "optim.lr of the sweep's base config"}))
    pd.DataFrame(rows).to_parquet(root / "results.parquet")
    pd.DataFrame(curves).to_parquet(root / "curves.parquet")
    return pd.DataFrame(rows)


def test_synthetic_sweep_report(tmp_path, capsys):
    root = tmp_path / "syn"
    df = synthetic_sweep(root)
    out = run_main(capsys, "report", str(root))
    assert out.returncode == 0, out.stderr
    rep = strict_json(root / "report.json")
    assert rep["source"]["kind"] == "sweep" and rep["sizes"] == ["tiny", "mini", "small"]
    assert rep["status_counts"]["mini"] == {"completed": 19, "diverged": 1}
    assert any("1 diverged/failed" in n for n in rep["notes"])
    assert rep["baselines"]["available"] is False and rep["baselines"]["reason"]
    prim = next(c for c in rep["comparisons"] if c["metric"] == "code" and c["proxy"] == "tiny" and c["target"] == "small" and c["proxy_lr"] == "tuned")
    ok = df[(df["status"] == "completed") & (df["eval_set"] == "code")]
    m = ok.groupby(["size", "recipe", "lr"])["loss"].mean().groupby(["size", "recipe"]).min().unstack("size")
    assert prim["proxy_values"] == pytest.approx(m["tiny"].to_dict()) and prim["target_values"] == pytest.approx(m["small"].to_dict())
    assert prim["spearman"] == pytest.approx(st.spearmanr(m["tiny"], m["small"])[0])
    # the diverged cell is excluded: mini/rec0 at lr 3e-3 is the mean of seed 0 only
    e = next(e for e in rep["reduced_lr"]["entries"] if e["metric"] == "code" and e["proxy"] == "mini" and e["target"] == "small")
    c = next(
        c
        for c in rep["comparisons"]
        if c["metric"] == "code" and c["proxy"] == "mini" and c["target"] == "small" and c["proxy_lr"] == 3e-3 and c["target_mode"] == "tuned"
    )
    want = ok[(ok["size"] == "mini") & (ok["recipe"] == "rec0") & (ok["lr"] == 3e-3)]["loss"]
    assert len(want) == 1 and c["proxy_values"]["rec0"] == pytest.approx(want.iloc[0])
    red = rep["reduced_lr"]  # the standard LR comes from grid.json, never from cell counts
    assert red["standard_lr"] == pytest.approx(3e-3) and red["standard_lr_source"] == "grid.json: optim.lr of the sweep's base config"
    assert len(e["curve"]) == 4
    assert rep["early_signal"]["available"] and rep["early_signal"]["target"] == "small"
    html = (root / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "Cell status" in html


# ---------------------------------------------------------------------------------------------
# the page in a real browser


def check_pngs(html: str) -> int:
    imgs = re.findall(r"<img[^>]*>", html)
    assert imgs
    for tag in imgs:
        m = re.search(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", tag)
        assert m, tag[:120]
        data = base64.b64decode(m.group(1), validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image as mpimg

        assert mpimg.imread(io.BytesIO(data), format="png").shape[0] > 100
    return len(imgs)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium")
def test_html_renders_in_headless_chromium(tmp_path):
    root = tmp_path / "syn"
    synthetic_sweep(root)
    assert cli("report", root).returncode == 0
    page = root / "report.html"
    assert check_pngs(page.read_text()) >= 4
    # every figure file report.html and report.md link (fig_<name>.png/.svg beside them) is there and not empty
    refs = re.findall(r"(?:src|href)='((?!data:)[^']+)'", page.read_text())
    refs += re.findall(r"\]\(([^)]+)\)", (root / "report.md").read_text())
    assert len(refs) >= 8 and all((root / r).is_file() and (root / r).stat().st_size > 0 for r in refs), refs
    shot = tmp_path / "shot.png"
    proc = screenshot(page, shot, tmp_path / "profile", "1200,3000")
    assert shot.exists(), proc.stderr[-2000:]
    import matplotlib.image as mpimg

    img = mpimg.imread(str(shot))
    assert img.shape[0] >= 2000 and img.shape[1] >= 1000
    rgb = (img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    colours = np.unique(rgb[::7], axis=0)
    assert len(colours) > 200, f"screenshot looks blank ({len(colours)} colours)"
    assert (rgb < 128).all(axis=1).mean() > 0.005  # some dark text/lines on the page


@pytest.mark.slow
def test_report_of_a_real_tiny_sweep(tmp_path, fresh_cache, capsys):
    """(The tests' fast cells, FAST, on a cache folder of its own: the baselines the jobs cache are this sweep's alone.)"""
    out_dir = tmp_path / "outputs"
    args = ["-m", "grid=smoke", "sweep=rep", "data=balanced,noisy,code_heavy", "optim.lr=3e-3,1e-2", *FAST]
    train = run_main(capsys, *args, f"paths.output_dir={out_dir}", f"paths.cache_dir={fresh_cache}")
    assert train.returncode == 0, train.stderr[-3000:]
    root = out_dir / "rep"
    out = run_main(capsys, "report", str(root))  # collects first: no results.parquet yet
    assert out.returncode == 0, out.stderr
    assert (root / "results.parquet").exists()
    rep = strict_json(root / "report.json")
    assert rep["sizes"] == ["debug", "tiny"] and sorted(rep["metrics"]) == ["code", "prose", "readme"]
    assert sum(rep["status_counts"]["tiny"].values()) == 6
    b = rep["baselines"]
    assert b["available"], b["reason"]
    assert {(v["recipe"], v["metric"]) for v in b["values"]} == {(r, m) for r in ("balanced", "noisy", "code_heavy") for m in ("code", "prose", "readme")}
    assert all(0 < v["bigram"] < v["unigram"] < np.log(257) for v in b["values"])
    res = pd.read_parquet(root / "results.parquet")
    res = res[res["status"] == "completed"]
    tuned = res.groupby(["eval_set", "size", "recipe"])["loss"].min()
    prim = next(c for c in rep["comparisons"] if c["metric"] == "code" and c["proxy_lr"] == "tuned")
    assert prim["target_values"] == pytest.approx(tuned.loc["code", "tiny"].to_dict())
    assert prim["spearman"] is None or prim["spearman"] == pytest.approx(st.spearmanr(tuned.loc["code", "debug"], tuned.loc["code", "tiny"])[0])
    assert rep["reduced_lr"]["available"] and rep["early_signal"]["available"]
    assert check_pngs((root / "report.html").read_text()) >= 4
    # the jobs computed them (the report never tokenizes) and cached them per (pool key, eval key)
    assert all(r.baselines.keys() == {"code", "prose", "readme"} for r in map(record.read, (p.parent for p in root.glob("*/result.json"))))
    cache = fresh_cache / "baselines"
    assert cache.is_dir() and len(list(cache.glob("*.json"))) >= 9


def test_the_report_lists_missing_grid_cells_and_what_they_change(tmp_path, capsys):
    root = tmp_path / "syn"
    df = synthetic_sweep(root)
    cells = {r.run_id: [] for r in df.drop_duplicates("run_id").itertuples()}
    keys = {r.run_id: [r.size, r.recipe, r.lr, r.seed] for r in df.drop_duplicates("run_id").itertuples()}
    for seed in (0, 1):  # the target's third LR for rec1: asked for, never run
        cells[f"lost-{seed}"], keys[f"lost-{seed}"] = [], ["small", "rec1", 1e-2, seed]
    cells["gone"], keys["gone"] = [], ["small", "rec2", 1e-3, 2]  # a third seed, deleted
    (root / "grid.json").write_text(json.dumps({"cells": cells, "keys": keys, "standard_lr": 3e-3, "standard_lr_source": "test"}))
    r = run_main(capsys, "report", str(root), "--no-figures")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((root / "report.json").read_text())
    miss = rep["missing_cells"]
    assert miss["n"] == 3 and miss["n_grid"] == len(cells) and {c["run_id"] for c in miss["cells"]} == {"lost-0", "lost-1", "gone"}
    assert "small: recipe rec1 tuned over 2 of 3 LRs (without 0.01), so its best LR may differ" in miss["effects"]
    assert "small: recipe rec2 at lr 0.001 averaged over 2 of 3 seeds" in miss["effects"]
    assert "every cell completed." not in rep["notes"]
    md = (root / "report.md").read_text()
    assert f"3 of {len(cells)} grid cells have no final record" in md and "tuned over 2 of 3 LRs" in md
    assert any(f"3 of {len(cells)} grid cells have no final record" in line for line in r.stdout.splitlines()), r.stdout  # the bottom line says it


def _report_set(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and (p.name.startswith(("report.", "fig_")))}


def _standard_lr_of_set(folder) -> set:
    """The standard LR each file of the report set shows: one value when the set is whole."""
    lr = json.loads((folder / "report.json").read_text())["reduced_lr"]["standard_lr"]
    shown = {lr}
    for name in ("report.md", "report.html"):
        text = (folder / name).read_text()
        shown |= {v for v in (1e-3, 3e-3) if f"standard LR {v:g}" in text}
    return shown


def test_a_report_on_a_full_disk_leaves_the_old_report_whole_and_says_so(tmp_path, capsys):
    from faults import fill, small_disk

    with small_disk(tmp_path / "disk") as disk:
        root = disk / "syn"
        synthetic_sweep(root)
        assert run_main(capsys, "report", str(root), "--standard-lr", "1e-3", "--no-figures").returncode == 0
        old = _report_set(root)
        fill(disk)
        r = run_main(capsys, "report", str(root), "--standard-lr", "3e-3", "--no-figures")
        assert r.returncode == 2, r.stderr[-2000:]
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith("proxyscale: error: report not written: No space left on device")
        assert line.endswith(f"the previous report in {root}, if any, is intact")
        assert _report_set(root) == old and not list(root.glob(".report.tmp-*"))
        (disk / "filler").unlink()


@pytest.mark.slow
def test_sigterm_mid_report_leaves_one_whole_set(tmp_path, capsys):
    root = tmp_path / "syn"
    synthetic_sweep(root)
    assert run_main(capsys, "report", str(root), "--standard-lr", "1e-3").returncode == 0
    assert _standard_lr_of_set(root) == {1e-3}
    for delay in (0.0, 0.3, 1.0):  # after the report starts writing (its first file or its staging folder appears)
        stamp = (root / "report.json").stat().st_mtime_ns
        proc = subprocess.Popen([PROXYSCALE, "report", str(root), "--standard-lr", "3e-3"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and (root / "report.json").stat().st_mtime_ns == stamp and not list(root.glob(".report.tmp-*")):
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        assert len(_standard_lr_of_set(root)) == 1, f"a mixed report set after SIGTERM {delay} s into the write"
    r = run_main(capsys, "report", str(root), "--standard-lr", "1e-3")
    assert r.returncode == 0 and _standard_lr_of_set(root) == {1e-3} and not list(root.glob(".report.tmp-*"))


def long_csv(path: Path, n: int, metrics=("loss",), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=n)
    rows = [
        pd.DataFrame({"recipe": [f"r{i:05d}" for i in range(n)], "size": s, "metric": m, "value": 3 + sc * q + 0.3 * rng.normal(size=n)})
        for s, sc in (("1M", 1.0), ("60M", 0.8))
        for m in metrics
    ]
    pd.concat(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def max_gap_stat():
    """A new statistic, registered the way compare.py registers its own."""
    stat = types.register(types.Statistic("max_gap", lambda x, y: float(np.max(np.abs(x - y))), "max |proxy - target|", "largest gap"))
    yield stat
    types.unregister("max_gap")


def test_registered_statistic_reaches_json_markdown_and_wandb(tmp_path, max_gap_stat):
    path = long_csv(tmp_path / "x.csv", 12)
    paths, rep = build.run(csv=str(path), out=str(tmp_path / "out"), figures=False)
    saved = json.loads(paths[0].read_text())
    c = saved["comparisons"][0]
    x, y = np.array(list(c["proxy_values"].values())), np.array(list(c["target_values"].values()))
    assert c["max_gap"] == pytest.approx(np.max(np.abs(x - y))) and c["stats"]["max_gap"] == c["max_gap"]
    assert "max \\|proxy - target\\|" in paths[1].read_text() or "max |proxy - target|" in paths[1].read_text()
    assert f"{c['max_gap']:.3f}" in paths[1].read_text()
    cols = wandb_publish.comparison_columns()
    assert "max_gap" in cols and wandb_publish.comparison_rows(saved)[0][cols.index("max_gap")] == pytest.approx(c["max_gap"])
    # every statistic with an interval carries its bounds beside it in W&B, as in the report's tables
    row = wandb_publish.comparison_rows(saved)[0]
    for stat in ("pearson", "spearman", "kendall", "decision_accuracy"):
        i = cols.index(stat)
        assert cols[i + 1 : i + 3] == [f"{stat}_lo", f"{stat}_hi"]
        if saved["comparisons"][0].get(f"{stat}_ci"):
            assert row[i + 1 : i + 3] == pytest.approx(saved["comparisons"][0][f"{stat}_ci"])
    assert "max_gap" in types.schema_doc() and "max |proxy - target|" in render.comp_head()


def test_every_comparison_field_is_documented():
    import dataclasses

    assert all(f.metadata.get("doc") for f in dataclasses.fields(types.Comparison))
    assert "decision_accuracy_ci" in build.__doc__ or "types.Comparison" in build.__doc__


def test_baselines_from_results_columns_and_bottom_line(tmp_path):
    """A sweep whose collector wrote unigram/bigram: the bigram is the floor; the bottom line opens every output."""
    rng = np.random.default_rng(2)
    q = {f"rec{i}": rng.normal(scale=0.3) for i in range(6)}
    rows = []
    for size, params in (("tiny", 1e5), ("small", 4e5)):
        for r, v in q.items():
            for seed in (0, 1, 2):
                loss = 3.0 - np.log10(params) / 5 + v + 0.01 * rng.normal()
                rows.append(
                    {
                        "run_id": f"{size}-{r}-{seed}",
                        "status": "completed",
                        "size": size,
                        "params": int(params),
                        "recipe": r,
                        "lr": 1e-3,
                        "seed": seed,
                        "eval_set": "prose",
                        "loss": loss,
                        "unigram": 5.0,
                        "bigram": 3.0 + v,
                    }
                )
    root = tmp_path / "sw"
    root.mkdir()
    pd.DataFrame(rows).to_parquet(root / "results.parquet")
    (paths, rep) = build.run(sweep_dir=str(root), figures=False)
    b = rep["baselines"]
    assert b["available"] and {v["recipe"]: v["bigram"] for v in b["values"]} == pytest.approx({r: 3.0 + v for r, v in q.items()})
    (vs,) = b["vs_proxies"]
    assert vs["outcome"] in ("beats", "indistinguishable", "beaten") and len(vs["difference_ci"]) == 2
    # the bigram orders recipes exactly like the target here: no trained proxy can beat it
    assert vs["outcome"] != "beats" and any("bigram" in w for w in rep["warnings"])
    bl = rep["summary"]["bottom_line"]
    assert 3 <= len(bl) <= 6 and bl[0].startswith("At small") and any("LR" in ln for ln in bl)
    assert any("fixed-LR target unavailable" in ln and "--standard-lr" in ln for ln in bl)
    md = paths[1].read_text().splitlines()
    assert md[2] == f"- **{bl[0]}**"
    assert rep["summary"]["per_metric"][0]["lines"][0]["verdict"] in ("holds", "fails", "inconclusive")


def test_mixed_directions_per_metric(tmp_path):
    from proxyscale import analysis

    df = pd.read_csv(long_csv(tmp_path / "x.csv", 8, metrics=("loss", "acc")))
    rep = analysis.analyze(df, ["1M", "60M"], higher_is_better={"acc": True}, n_boot=0)
    assert rep["directions"] == {"acc": "higher", "loss": "lower"} and rep["direction"] == "mixed"
    by = {c["metric"]: c for c in rep["comparisons"]}
    assert by["acc"]["direction"] == "higher" and by["acc"]["regret"]["best_targets"] != by["loss"]["regret"]["best_targets"]


PEAK = textwrap.dedent("""
    import os, resource, sys, time
    t = time.perf_counter()
    from proxyscale.report import build, render
    build.run(csv=sys.argv[1], out=sys.argv[2])
    workers = min(len(os.sched_getaffinity(0)), len(render.BUILDERS))
    own, child = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(sum(r.ru_utime + r.ru_stime for r in (own, child)), own.ru_maxrss / 1024 + workers * child.ru_maxrss / 1024)
""")


def run_peak(csv: Path, out: Path) -> tuple[float, float]:
    """(CPU seconds, peak MB) of a --from-csv report in a fresh interpreter. CPU time (the parent's and the drawing
    workers'), not wall time: other work on the machine does not inflate it. The peak counts the drawing workers as if
    each held its largest size at the same moment as the parent (an upper bound)."""
    res = subprocess.run([sys.executable, "-c", PEAK, str(csv), str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    secs, mb = map(float, res.stdout.split()[-2:])
    return secs, mb


def test_memory_is_linear_in_recipes(tmp_path):
    """5,000 recipes x 2 sizes (12.5M pairs; the old n x n pair matrices took 4.6 GB) stay far under 1.5 GB and 60 CPU s."""
    secs, mb = run_peak(long_csv(tmp_path / "big.csv", 5000), tmp_path / "out")
    assert mb < 1500 and secs < 60, (secs, mb)


@pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata is absent")
def test_regmix_end_to_end_is_not_grossly_slower(regmix_report):
    """256 recipes x 13 metrics, HTML and every figure included: a guard against a gross regression only (5x the
    5 s target in CPU seconds, one fresh process; about 10 s measured, imports included). The 5 s target itself is
    measured side by side by bench/bench_report.py."""
    secs = regmix_report[1]
    assert secs < 5 * 5, f"the RegMix report took {secs:.1f} CPU s, over 5x its 5 s target (bench: python -m bench bench_report)"
