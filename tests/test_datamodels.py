"""Datamodels on planted data with a known answer (own seeded generator), CSV refusals, DsDm selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import FAST, run_main
from proxyscale.analysis import datamodels as dm
from proxyscale.cli import main
from proxyscale.config import CONF_DIR
from proxyscale.job import trak
from proxyscale.report import attribution

G, M, E = 24, 120, 40  # groups, subsets, examples
HELPFUL = [3, 7, 11, 19]  # the groups planted to lower every example's loss most


def planted(tmp_path, noise=0.3, rho=0.5, seed=0):
    """Two sizes. Size `small`: y = 3 + x.w + noise; size `large`: weights rho*w + sqrt(1-rho^2)*w' (w' independent),
    so the small size's datamodels predict the large one's losses less well than its own. Returns paths and the
    oracle LDS (Spearman of the planted signal against the observed values, mean over examples) of each pair."""
    rng = np.random.default_rng(seed)
    x = (rng.random((M, G)) < 0.5).astype(float)
    w_small = rng.normal(0, 0.3, (E, G))
    w_small[:, HELPFUL] -= 1.5
    w_large = rho * w_small + np.sqrt(1 - rho**2) * rng.normal(0, 0.3, (E, G))
    w_large[:, HELPFUL] = w_small[:, HELPFUL]
    rows, oracle = [], {}
    obs = {}
    for size, w in (("10M", w_small), ("100M", w_large)):
        y = 3 + x @ w.T + rng.normal(0, noise, (M, E))
        obs[size] = y
        rows += [(f"s{j}", size, f"e{e}", y[j, e]) for j in range(M) for e in range(E)]
    for f, wf in (("10M", w_small), ("100M", w_large)):
        for t in ("10M", "100M"):
            oracle[(f, t)] = float(np.nanmean(dm.spearman_columns(x @ wf.T, obs[t])))
    losses = tmp_path / "losses.csv"
    pd.DataFrame(rows, columns=["subset", "size", "example", "value"]).to_csv(losses, index=False)
    subsets = tmp_path / "subsets.csv"
    pd.DataFrame([(f"s{j}", f"{g}") for j in range(M) for g in range(G) if x[j, g]], columns=["subset", "group"]).to_csv(subsets, index=False)
    return losses, subsets, oracle


def test_planted_datamodels_recover_the_oracle_lds_across_sizes_and_the_selection(tmp_path):
    losses, subsets, oracle = planted(tmp_path)
    data = dm.read_csv(str(losses), str(subsets))
    assert data.sizes == ["10M", "100M"] and len(data.groups) == G
    result = dm.fit(data, n_boot=300)
    got = {(e["fit_size"], e["eval_size"]): e for e in result["entries"]}
    assert set(got) == {("10M", "10M"), ("10M", "100M"), ("100M", "100M")}
    for pair, e in got.items():
        # the fitted models are estimates: they can approach the oracle but not beat it by more than noise
        assert oracle[pair] - 0.1 < e["lds"] < oracle[pair] + 0.03, (pair, e["lds"], oracle[pair])
        assert e["lds_ci"][0] < e["lds"] < e["lds_ci"][1]
        assert e["n_examples"] == E and e["n_subsets"] == M
    assert got[("10M", "100M")]["lds"] < got[("100M", "100M")]["lds"] - 0.05  # the planted drift across scale shows
    (agree,) = result["weight_agreement"]
    assert 0.5 < agree["weight_spearman"] < 0.95
    sel = dm.select(data, "loss", 4, "10M")
    assert sorted(int(g) for g in sel["groups"]) == HELPFUL and all(w < 0 for w in sel["weights"])


def test_pure_noise_has_an_lds_near_zero(tmp_path):
    rng = np.random.default_rng(5)
    rows = [(f"s{j}", "a", f"e{e}", rng.normal()) for j in range(60) for e in range(30)]
    pd.DataFrame(rows, columns=["subset", "size", "example", "value"]).to_csv(tmp_path / "l.csv", index=False)
    x = rng.random((60, 10)) < 0.5
    pd.DataFrame([(f"s{j}", g) for j in range(60) for g in range(10) if x[j, g]], columns=["subset", "group"]).to_csv(tmp_path / "s.csv", index=False)
    (e,) = dm.fit(dm.read_csv(str(tmp_path / "l.csv"), str(tmp_path / "s.csv")), n_boot=300)["entries"]
    assert e["lds_ci"][0] < 0.05 and abs(e["lds"]) < 0.1


def test_the_cli_writes_json_md_html_figure_and_refuses_a_recipe_from_a_csv(tmp_path, capsys):
    losses, subsets, _ = planted(tmp_path, noise=0.5)
    out = tmp_path / "out"
    args = ["--from-csv", str(losses), "--subsets", str(subsets), "--out", str(out), "--n-boot", "100", "--select", "loss", "--k", "4", "--permutations", "9"]
    main(["datamodels", *args])
    doc = json.loads((out / "datamodels.json").read_text())
    assert {"metric", "fit_size", "eval_size", "lds", "lds_ci", "n_examples", "n_subsets"} <= set(doc["entries"][0])
    assert [e["perm_p"] for e in doc["entries"]] == [0.1] * 3 and "subset-permutation p" in (out / "datamodels.md").read_text()
    assert doc["selection"]["fit_size"] == "10M" and sorted(map(int, doc["selection"]["groups"])) == HELPFUL
    for f in ("datamodels.md", "datamodels.html", "datamodels_lds.png", "datamodels_top_groups.csv"):
        assert (out / f).stat().st_size > 0
    assert "LDS" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["datamodels", "--from-csv", str(losses), "--subsets", str(subsets), "--out", str(out), "--select", "loss", "--k", "2", "--write-recipe", "x"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["datamodels", "--from-csv", str(losses), "--subsets", str(subsets), "--out", str(tmp_path / "o"), "--permutations", "-1"])
    assert exc.value.code == 2 and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "losses,subsets,message",
    [
        ("subset,size,example\ns0,a,e0\n", "subset,group\ns0,1\n", "missing column(s) value"),
        ("subset,size,example,value\ns0,a,e0,1\ns1,a,e0,2\n", "subset,group\ns0,1\n", "losses.csv line 3: subset 's1' has losses but no rows"),
        ("subset,size,example,value\ns0,a,e0,1\n", "subset,group\ns0,1\ns9,2\n", "subsets.csv line 3: subset 's9' has groups but no losses"),
        ("subset,size,example,value\ns0,a,e0,1\ns0,a,e0,1\ns0,a,e0,2\n", "subset,group\ns0,1\n", "losses.csv line 4: duplicates line 2"),
        ("subset,size,example,value\ns0,a,e0,x\n", "subset,group\ns0,1\n", "losses.csv line 2: value 'x'"),
    ],
)
def test_bad_csvs_are_refused_in_one_line_naming_the_row(tmp_path, capsys, losses, subsets, message):
    (tmp_path / "losses.csv").write_text(losses)
    (tmp_path / "subsets.csv").write_text(subsets)
    with pytest.raises(SystemExit) as exc:
        main(["datamodels", "--from-csv", str(tmp_path / "losses.csv"), "--subsets", str(tmp_path / "subsets.csv"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_tiny_subset_sweep_through_datamodels_trak_the_report_and_a_selection_recipe(tmp_path, cache_dir, capsys):
    out = tmp_path / "outputs"
    common = [*FAST, f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}"]
    res = run_main(capsys, "-m", "model=debug,tiny", "data.subset=range(0,8)", "data.subset_groups=8", "sweep=subs", "trainer.keep_checkpoints=true", *common)
    assert res.returncode == 0, res.stderr[-3000:]
    root = out / "subs"
    name = f"dsdm_test_{tmp_path.name}"[-60:]
    recipe = Path(CONF_DIR) / "data" / "selected" / f"{name}.yaml"
    try:
        dm_run = run_main(capsys, "datamodels", str(root), "--trak", "debug", "--n-boot", "200", "--select", "prose", "--k", "2", "--write-recipe", name)
        assert dm_run.returncode == 0, dm_run.stderr[-3000:]
        doc = json.loads((root / "datamodels.json").read_text())
        pairs = {(e["metric"], e["fit_size"], e["eval_size"]) for e in doc["entries"]}
        assert ("prose", "debug", "tiny") in pairs and ("code", "tiny", "tiny") in pairs
        assert all(e["n_subsets"] == 8 and -1 <= e["lds"] <= 1 for e in doc["entries"])
        trak = {(t["metric"], t["eval_size"]): t for t in doc["trak"]}
        assert set(trak) >= {("prose", "debug"), ("prose", "tiny")} and all(t["checkpoint_size"] == "debug" for t in doc["trak"])
        assert doc["selection"]["k"] == 2 and len(doc["selection"]["groups"]) == 2
        assert "keep_groups" in recipe.read_text()
        again = run_main(capsys, "datamodels", str(root), "--n-boot", "50", "--select", "prose", "--k", "2", "--write-recipe", name)
        assert again.returncode == 2 and "exists" in again.stderr
        rep = run_main(capsys, "report", str(root))
        assert rep.returncode == 0, rep.stderr[-3000:]
        assert "## Attribution across scale" in (root / "report.md").read_text()
        assert "attribution" in json.loads((root / "report.json").read_text())
        trained = run_main(capsys, "model=debug", f"data=selected/{name}", "sweep=sel", *common)
        assert trained.returncode == 0, trained.stderr[-3000:]
    finally:
        recipe.unlink(missing_ok=True)


@pytest.mark.slow
def test_trak_on_a_debug_checkpoint_beats_random_scores(tmp_path, cache_dir, capsys):
    """TRAK's group weights from kept debug checkpoints predict the subsets' losses at the debug size better than
    every one of 50 seeded random weight draws does. Groups are the recipe's three sources
    (subset_by=source), so which groups a model saw changes its losses enough for one checkpoint to tell."""
    out = tmp_path / "outputs"
    common = [*FAST, "eval.tokens_per_set=8192", f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}"]
    sweep = ["-m", "model=debug", "data.subset=range(0,16)", "data.subset_by=source", "data.subset_groups=3", "sweep=t", "trainer.keep_checkpoints=true"]
    res = run_main(capsys, *sweep, *common)
    assert res.returncode == 0, res.stderr[-3000:]
    data = attribution.sweep_subsets(out / "t")
    weights, cost = trak.trak_weights(out / "t", "debug", checkpoints=2, per_group=32, proj_dim=256)
    assert cost["proj_dim"] == 48  # capped at half the 96 train windows: the Gram matrix TRAK inverts stays regular
    # A permutation-style test: TRAK's mean LDS over the three eval sets against the same mean for 50 seeded draws of
    # random weights; it must beat every draw (p < 1/51). 64 windows per eval set keep the draws' spread small
    # (sd 0.04, max 0.09 here; TRAK 0.29): with 16 windows the draws reached 0.18 and a TRAK run on another CPU 0.14.
    rng = np.random.default_rng(0)
    metrics = ("prose", "code", "readme")
    got = {m: dm.score_weights(data, m, weights[m], n_boot=100)[0]["lds"] for m in metrics}
    draws = [np.mean([dm.score_weights(data, m, rng.normal(size=weights[m].shape), n_boot=10)[0]["lds"] for m in metrics]) for _ in range(50)]
    assert np.mean(list(got.values())) > max(draws), (got, sorted(draws)[-5:])


def test_the_permutation_p_is_calibrated_where_subsets_share_noise_and_the_bootstrap_is_not():
    """Null data whose subsets each shift every example's loss alike (one subset's training noise): the bootstrap over
    examples excludes 0 in most draws, the subset-permutation p-value rejects at 5% about 5% of the time; a planted
    signal gets the smallest p-value."""
    m, g, e, draws, n_perm = 30, 8, 12, 30, 19
    boot_wrong, rejected = 0, 0
    for seed in range(draws):
        rng = np.random.default_rng(100 + seed)
        x = (rng.random((m, g)) < 0.5).astype(float)
        y = rng.normal(0, 1, (m, 1)) + rng.normal(0, 0.3, (m, e))
        score = dm.lds_of(dm.cross_fitted_spearman(x, y, y, 3, seed), 200, seed)
        boot_wrong += not score["lds_ci"][0] <= 0 <= score["lds_ci"][1]
        rejected += dm.permutation_p(x, y, y, 3, seed, score["lds"], n_perm) <= 0.05
    assert boot_wrong >= 20 and rejected <= 4, (boot_wrong, rejected)  # measured 26 and 1; P(Binomial(30, 0.05) > 4) = 0.06
    rng = np.random.default_rng(7)
    x = (rng.random((m, g)) < 0.5).astype(float)
    y = x @ rng.normal(0, 1, (g, e)) + rng.normal(0, 1, (m, 1)) + rng.normal(0, 0.3, (m, e))
    score = dm.lds_of(dm.cross_fitted_spearman(x, y, y, 3, 0), 200, 0)
    assert dm.permutation_p(x, y, y, 3, 0, score["lds"], n_perm) == 1 / (n_perm + 1)


def test_fixed_weights_get_the_same_subset_permutation_p(tmp_path):
    """TRAK-like fixed weights (row = example number, column = group number): the datamodels' weights get the smallest
    p-value, and not once the values are moved to other subsets; no LDS, no p-value."""
    losses, subsets, _ = planted(tmp_path)
    data = dm.read_csv(str(losses), str(subsets))
    data.values = {k: v.rename(columns=lambda c: c[1:]) for k, v in data.values.items()}  # examples named by number, as a sweep's
    v = data.values[("loss", "10M")]
    w, _ = dm.fit_weights(data.indicators(list(v.index)), v.to_numpy(float))
    rows, cols = np.argsort([int(e) for e in v.columns]), np.argsort([int(g) for g in data.groups])
    fitted = w[rows][:, cols]
    good = dm.score_weights(data, "loss", fitted, n_boot=50, permutations=19)[0]
    order = np.random.default_rng(3).permutation(len(v))  # each subset's values moved to another subset: no link to the groups
    data.values = {k: x.set_axis(x.index[order]) for k, x in data.values.items()}
    bad = dm.score_weights(data, "loss", fitted, n_boot=50, permutations=19)[0]
    assert good["lds"] > 0.5 and good["perm_p"] == 0.05 and good["perm_n"] == 19 and bad["perm_p"] > 0.05, (good, bad)
    assert np.isnan(dm._p_above(np.zeros(5), float("nan")))


@pytest.mark.parametrize("preset", ["dsdm_selection_cpu", "dsdm_selection"])
def test_the_selection_presets_compose_with_random_draws_perplexity_and_the_bench_recipes(preset, monkeypatch):
    """Every recipe a selection preset lists composes under it (the selected/ ones are written by stage 2 and checked
    against the bench's names); the five random draws are distinct, deterministic 4-of-16 draws, each with its own
    name and run id; perplexity selection reads the scorers of stage 0/1 by size."""
    from hydra import compose, initialize_config_dir

    from proxyscale import config as C

    monkeypatch.syspath_prepend(str(Path(CONF_DIR).parent))
    from bench import bench_attribution as ba

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        options = str(compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True).hydra.sweeper.params.data).split(",")
        cfgs = {o: compose("config", overrides=[f"experiment={preset}", f"data={o}"]) for o in options if not o.startswith("selected/")}
        again = compose("config", overrides=[f"experiment={preset}", "data=random_groups/draw3"])
    written = {o.split("/", 1)[1] for o in options if o.startswith("selected/")}
    assert written <= set(ba.SELECTIONS) and {"dsdm_debug", "dsdm_tiny", "trak_debug"} <= written
    names = {cfg.data.name for cfg in cfgs.values()}
    assert names >= {*ba.DRAWS, "selected_by_proxy_debug", "selected_by_proxy_tiny", "classified", "selected"}
    if preset == "dsdm_selection_cpu":  # the bench's table covers exactly what the preset trains
        assert set(ba.BASELINES) == names and written == set(ba.SELECTIONS)
        assert all(cfg.trainer.max_tokens == 98304 and cfg.data.pool_tokens == 200000 for cfg in cfgs.values())
    draws = {cfg.data.name: C.plain(cfg) for cfg in cfgs.values() if cfg.data.name in ba.DRAWS}
    for d, name in enumerate(ba.DRAWS):
        expected = sorted(int(g) for g in np.random.default_rng(d).choice(16, 4, replace=False))
        assert C.subset_members(draws[name]["data"]) == expected and draws[name]["data"]["subset_groups"] == 16
    assert len({tuple(C.subset_members(c["data"])) for c in draws.values()}) == len(ba.DRAWS) == 5
    assert len({C.run_id_of(c, None) for c in draws.values()}) == 5
    assert C.plain(again)["data"] == draws["random_groups_draw3"]["data"]
    for size in ("debug", "tiny"):
        step = C.plain(cfgs[f"selected_by_proxy_{size}"])["data"]["steps"][2]
        assert step["op"] == "select_by_proxy" and step["proxy_size"] == size
        assert step["proxy"] == f"{cfgs[f'selected_by_proxy_{size}'].paths.output_dir}/scorers"
