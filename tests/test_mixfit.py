"""Issue 15: mixture regression (proxyscale.mixfit, `proxyscale mixfit`): RegMix's published numbers,
degenerate fits, the proposal, recipe writing and the one-line refusals of the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import run_main, stub_record
from proxyscale import mixfit

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata"
needs_real = pytest.mark.skipif(not (REAL / "regmix_mixtures.csv").exists(), reason="no ../shared/realdata")
DOMAINS = ["prose", "code", "readme"]


def synthetic(n=30, seed=0, law="linear"):
    """n Dirichlet mixtures over prose/code/readme with a loss that falls with the prose weight."""
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(3), n)
    if law == "linear":
        y = 4.0 - 1.0 * w[:, 0] - 0.3 * w[:, 1]
    else:  # Data Mixing Laws form
        y = 2.0 + 1.5 * np.exp(-2.0 * w[:, 0] - 0.5 * w[:, 1])
    y = y + rng.normal(0, 1e-3, n)
    names = [f"m{i:02d}" for i in range(n)]
    weights = pd.DataFrame(np.round(w, 4), index=pd.Index(names, name="recipe"), columns=DOMAINS)
    weights["prose"] = 1.0 - weights["code"] - weights["readme"]
    losses = pd.DataFrame({"recipe": names, "size": "1M", "metric": "prose_val", "value": y})
    return weights, losses


@needs_real
def test_regmix_lightgbm_reproduces_published_heldout_rank_correlations():
    weights, tol = mixfit.read_mixtures(REAL / "regmix_mixtures.csv")
    assert tol == pytest.approx(17 * 0.5e-3)  # 17 domains written with 3 decimals
    losses = mixfit.read_losses([REAL / "regmix_1m_60m.csv", REAL / "regmix_more.csv"])
    res = mixfit.fit_mixtures(losses, weights, weight_tol=tol, metrics=["Pile-CC"], holdout_splits=["test", "test1b"], models=("linear", "lightgbm"))
    assert res["size"] == "1M"
    lgb = next(m for m in res["models"] if m["model"] == "lightgbm")
    lin = next(m for m in res["models"] if m["model"] == "linear")
    assert lgb["n_train"] == 512 and not lgb["degenerate"]
    assert res["lightgbm_params"]["min_data_in_leaf"] == 20 and res["lightgbm_params"]["early_stopping"] is None
    published = {"test@1M": 0.990, "test@60M": 0.986, "test1b@1B": 0.962}
    for key, rho in published.items():
        assert abs(lgb["heldout"][key]["spearman"] - rho) <= 0.005, (key, lgb["heldout"][key])
        assert lgb["heldout"][key]["spearman"] - lin["heldout"][key]["spearman"] > 0.05  # linear is clearly worse
    assert lgb["heldout"]["test1b@1B"]["n"] == 64 and lgb["heldout"]["test@60M"]["n"] == 256
    assert lgb["oof_scheme"].startswith("5-fold") and lgb["oof_spearman"] > 0.95
    prop = res["proposal"]
    assert prop["model"] == "lightgbm" and prop["n_samples"] == 100_000
    assert max(prop["weights"], key=prop["weights"].get) == "pile_cc"
    assert sum(prop["weights"].values()) == pytest.approx(1.0)
    assert prop["best_observed"]["recipe"].startswith("train")


def test_lightgbm_defaults_on_25_mixtures_are_degenerate_not_a_correlation():
    weights, losses = synthetic(n=25)
    res = mixfit.fit_mixtures(losses, weights, models=("lightgbm",), lgb_overrides={"min_data_in_leaf": 20}, n_samples=2000, top_k=16)
    m = res["models"][0]
    assert m["degenerate"] is True and m["oof_spearman"] is None and m["oof_decision_accuracy"] is None
    assert m["oof_scheme"] == "leave-one-out" and "no fit" in m["reason"]
    assert res["proposal"]["available"] is False
    # the data-scaled minimum leaf size (max(2, n // 20) = 2 here) splits and ranks
    res = mixfit.fit_mixtures(losses, weights, models=("lightgbm",), n_samples=2000, top_k=16)
    assert res["models"][0]["degenerate"] is False and res["models"][0]["oof_spearman"] > 0.8


def test_linear_and_dml_fit_their_own_laws_and_the_proposal_follows_the_loss(tmp_path):
    weights, losses = synthetic(n=40, law="dml")
    res = mixfit.fit_mixtures(losses, weights, models=("linear", "dml"), n_samples=5000, top_k=32)
    dml = next(m for m in res["models"] if m["model"] == "dml")
    assert dml["oof_spearman"] > 0.99 and dml["oof_decision_accuracy"] > 0.95
    prop = res["proposal"]
    assert prop["model"] == "dml"
    assert max(prop["weights"], key=prop["weights"].get) == "prose"  # the loss falls fastest with prose
    assert prop["predicted"] <= prop["best_observed"]["observed"] + 0.02
    # domains that are proxyscale sources: the proposal becomes a recipe copying the base's sources
    path = mixfit.write_recipe(res, "mixfit_test", "balanced", out_dir=tmp_path)
    text = path.read_text()
    assert "/data/balanced@_here_" in text and "python_docs" in text and "mixfit" in text
    paths = mixfit.write(res, tmp_path / "out")
    names = {p.name for p in paths}
    assert {"mixfit.json", "mixfit.md", "mixfit.html", "mixfit_prose_val.png"} <= names
    data = json.loads((tmp_path / "out" / "mixfit.json").read_text())
    assert {"model", "metric", "size", "oof_spearman", "oof_decision_accuracy", "heldout", "degenerate"} <= set(data["models"][0])
    assert "data:image/png;base64," in (tmp_path / "out" / "mixfit.html").read_text()


def _cli(capsys, *args):
    """`proxyscale mixfit ARGS` through the CLI's main in this process (helpers.run_main)."""
    return run_main(capsys, "mixfit", *map(str, args))


def _files(tmp_path, weights, losses):
    w, lo = tmp_path / "w.csv", tmp_path / "l.csv"
    weights.reset_index().to_csv(w, index=False)
    losses.to_csv(lo, index=False)
    return w, lo


@pytest.mark.parametrize(
    "case, needle",
    [
        ("sum", "'m03': weights sum to"),
        ("missing", "'ghost' has losses but no weights"),
        ("few", "at least 5"),
        ("metric", "unknown metric/domain 'nope'"),
        ("domains", "unknown domains"),
    ],
)
def test_cli_refuses_bad_input_in_one_line(tmp_path, capsys, case, needle):
    weights, losses = synthetic(n=12)
    extra = ["--samples", "500", "--top-k", "8", "--models", "linear", "--out", tmp_path / "o"]
    if case == "sum":
        weights.loc["m03", "code"] += 0.01
    elif case == "missing":
        losses = pd.concat([losses, pd.DataFrame([{"recipe": "ghost", "size": "1M", "metric": "prose_val", "value": 3.0}])])
    elif case == "few":
        losses = losses.head(4)
    elif case == "metric":
        extra += ["--metric", "nope"]
    elif case == "domains":
        weights = weights.rename(columns={"readme": "pile_cc"})
        extra += ["--write-recipe", "never_written", "--base", "balanced"]
    w, lo = _files(tmp_path, weights, losses)
    r = _cli(capsys, "--from-csv", lo, "--mixtures", w, *extra)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (ROOT / "conf" / "data" / "mix" / "never_written.yaml").exists()


def test_cli_writes_the_page(tmp_path, capsys):
    weights, losses = synthetic(n=12, law="dml")  # (on a linear law the dml fit runs to its 2,000-evaluation cap per fold: 5 CPU s)
    w, lo = _files(tmp_path, weights, losses)
    r = _cli(capsys, "--from-csv", lo, "--mixtures", w, "--samples", "2000", "--top-k", "16", "--models", "linear,dml", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "mixfit.html").exists() and (tmp_path / "o" / "mixfit_prose_val.png").exists()
    # the terminal summary: each model's out-of-fold Spearman with its 95% interval (the json's numbers), and the proposal
    data = json.loads((tmp_path / "o" / "mixfit.json").read_text())
    for m in data["models"]:
        lo, hi = m["oof_spearman_ci"]
        assert lo - 1e-9 <= m["oof_spearman"] <= hi + 1e-9
        line = next(x for x in r.stdout.splitlines() if f" {m['model']} " in x and "out-of-fold" in x)
        assert f"out-of-fold {m['oof_spearman']:.3f} [{lo:.3f}, {hi:.3f}] (n=12)" in line, r.stdout
    assert "Spearman rho [95% CI]" in r.stdout and "Proposal (" in r.stdout


def test_cli_reads_a_sweep_folder(tmp_path, capsys):
    from proxyscale import record

    weights, losses = synthetic(n=8)
    sweep = tmp_path / "sweep"
    fields = dict(sweep="sweep", size="debug", params=1000, tokens=1, steps=1, tokenizer="t")
    for seed in (0, 1):
        for (name, w), y in zip(weights.iterrows(), losses["value"]):
            sources = [{"name": d, "path": d, "weight": float(w[d]) * 2} for d in DOMAINS]  # unnormalised: read_sweep normalises
            rec = stub_record(
                run_id=f"{name}-{seed}",
                recipe=name,
                seed=seed,
                final_loss={"prose_val": float(y) + 1e-3 * seed},
                config={"data": {"sources": sources}},
                **fields,
            )
            record.write(sweep / f"{name}-{seed}", rec)
    r = _cli(capsys, sweep, "--samples", "2000", "--top-k", "16", "--models", "linear", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "o" / "mixfit.json").read_text())
    assert data["domains"] == DOMAINS and data["models"][0]["n_train"] == 8
    assert sum(data["proposal"]["weights"].values()) == pytest.approx(1.0)


def _mixfit_result(seed=0, noise=False, n=20):
    from proxyscale import mixfit

    weights, losses = synthetic(n=n, seed=seed)
    if noise:  # losses that do not depend on the weights at all
        losses["value"] = 3.0 + np.random.default_rng(1000 + seed).normal(0, 0.05, len(losses))
    return mixfit.fit_mixtures(losses, weights, models=("linear",), n_samples=500, top_k=8, seed=seed), weights, losses


def test_mixfit_write_recipe_never_overwrites_or_shadows_a_recipe(tmp_path):
    from proxyscale import mixfit

    res, _, _ = _mixfit_result()
    assert res["proposal"]["better_than_chance"]
    path = mixfit.write_recipe(res, "mine", "balanced", out_dir=tmp_path)
    path.write_text(path.read_text() + "# my hand edit\n")
    with pytest.raises(mixfit.MixfitError, match=r"mine.yaml exists \(a hand edit would be lost\); choose another name, or --force"):
        mixfit.write_recipe(res, "mine", "balanced", out_dir=tmp_path)
    assert "# my hand edit" in path.read_text()
    mixfit.write_recipe(res, "mine", "balanced", out_dir=tmp_path, force=True)
    assert "# my hand edit" not in path.read_text()
    for builtin in ("balanced", "noisy"):
        with pytest.raises(mixfit.MixfitError, match=f"recipe {builtin} exists .*conf/data/{builtin}.yaml"):
            mixfit.write_recipe(res, builtin, "balanced", out_dir=tmp_path, force=True)
        assert not (tmp_path / f"{builtin}.yaml").exists()


def test_mixfit_refuses_a_csv_with_a_repeated_column(tmp_path, capsys):
    weights, losses = synthetic(n=12)
    w, lo = _files(tmp_path, weights, losses)
    w.write_text(w.read_text().replace("recipe,prose,code,readme", "recipe,prose,code,code", 1))
    r = _cli(capsys, "--from-csv", lo, "--mixtures", w, "--models", "linear", "--samples", "500", "--top-k", "8", "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"proxyscale: error: {w}: column 'code' appears 2 times in the header; name each column once"
    ]


def test_mixfit_marks_a_proposal_from_a_model_no_better_than_chance():
    """Calibration: losses independent of the weights (known answer: no signal) are marked in about CHANCE_P of seeds at
    most; a real linear law is never marked."""
    from proxyscale import mixfit

    trusted = [_mixfit_result(seed=s, noise=True)[0]["proposal"]["better_than_chance"] for s in range(40)]
    assert sum(trusted) <= 6, f"{sum(trusted)} of 40 pure-noise fits trusted"  # binomial(40, 0.05): P(> 6) < 1%
    assert all(_mixfit_result(seed=s)[0]["proposal"]["better_than_chance"] for s in range(5))
    res = next(r for r, _, _ in (_mixfit_result(seed=s, noise=True) for s in range(40)) if not r["proposal"]["better_than_chance"])
    assert res["proposal"]["warnings"][0].startswith("not better than chance: linear ranks the out-of-fold mixtures with Spearman")
    with pytest.raises(mixfit.MixfitError, match="no recipe written, the proposal is not better than chance"):
        mixfit.write_recipe(res, "never_written", "balanced")


def test_mixfit_says_when_its_proposal_is_predicted_worse_than_the_best_observed_mixture():
    from proxyscale import mixfit

    weights, losses = synthetic(n=20)
    best = losses["value"].idxmax()  # the worst mixture by the law, observed far better than any: the law cannot reach it
    losses.loc[best, "value"] = losses["value"].min() - 1.0
    prop = mixfit.fit_mixtures(losses, weights, models=("linear",), n_samples=500, top_k=8)["proposal"]
    assert prop["worse_than_observed"]
    assert any(
        w.startswith("the proposal's predicted prose_val") and f"worse than the best observed mixture {losses.loc[best, 'recipe']}" in w
        for w in prop["warnings"]
    )
