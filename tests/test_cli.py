"""The real `proxyscale` CLI in a subprocess: bad input is one line and exit 2 before anything
trains or is written; a tiny grid runs end to end to a report; reruns skip final cells."""
from __future__ import annotations

import json

import pytest

from helpers import FAST, run_cli, snapshot


@pytest.fixture
def seeded_outputs(out_dir):
    """An outputs folder with an existing file, to check that failed commands leave it alone."""
    (out_dir / "old").mkdir(parents=True)
    (out_dir / "old" / "result.json").write_text('{"keep": true}')
    return out_dir


BAD = [
    (["model=nonexistent"], "Could not find 'model/nonexistent'", "available: "),
    (["-m", "data=balanced,nosuchrecipe"], "Could not find 'data/nosuchrecipe'", "available: "),
    (["optim.lr=0"], "optim.lr must be > 0", ""),
    (["-m", "optim.lr=1e-3,-1e-3"], "optim.lr must be > 0", "optim.lr=-0.001"),
    (["data.sources.0.weight=-0.5"], "negative mixture weight", ""),
    (["data.sources.0.weight=0", "data.sources.1.weight=0", "data.sources.2.weight=0"], "mixture weights sum to zero", ""),
    (["data.sources.2={name: mine, kind: files, path: /no/such/file.jsonl}"], "no local dataset file matches '/no/such/file.jsonl'", ""),
    (["-m", "optim.lr=range(1,1)"], "the grid has zero cells", ""),
    (["optim.lr=fast"], "could not be converted to Float", ""),
    (["model=debug,tiny"], "needs -m/--multirun", ""),
    (["trainer.nonsense=1"], "nonsense", ""),
]


@pytest.mark.parametrize("args,needle,also", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(seeded_outputs, args, needle, also):
    before = snapshot(seeded_outputs)
    r = run_cli(*args, f"paths.output_dir={seeded_outputs}", timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("proxyscale: error: "), r.stderr
    assert needle in lines[0] and also in lines[0]
    assert snapshot(seeded_outputs) == before


def test_dry_run_prints_the_cost_table_and_trains_nothing(out_dir):
    r = run_cli("-m", "grid=demo", "dry_run=true", f"paths.output_dir={out_dir}", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "45 cells" in r.stdout and "mini-noisy-lr0.01" in r.stdout and "est. CPU time" in r.stdout
    assert not out_dir.exists()


def test_ladder_lists_every_size():
    r = run_cli("ladder", timeout=120)
    assert r.returncode == 0, r.stderr
    for name in ("debug", "tiny", "mini", "small", "150m", "760m", "1b"):
        assert f" {name} " in r.stdout
    assert "1.07B" in r.stdout


@pytest.mark.slow
def test_tiny_grid_end_to_end_with_a_diverging_cell(out_dir, cache_dir):
    common = [f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", "sweep=e2e", "model=debug", *FAST, "optim.warmup_frac=0", "optim.grad_clip=0"]
    r = run_cli("-m", "data=balanced,noisy,code_heavy", "optim.lr=3e-3,1e3", *common)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[6/6]" in r.stderr + r.stdout
    sweep = out_dir / "e2e"
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in sweep.glob("*/result.json")}
    assert len(statuses) == 6
    assert {s for k, s in statuses.items() if "lr1000" in k} == {"diverged"}
    assert {s for k, s in statuses.items() if "lr0.003" in k} == {"completed"}
    assert set(json.loads((sweep / "grid.json").read_text())["cells"]) == set(statuses)

    again = run_cli("-m", "data=balanced,noisy,code_heavy", "optim.lr=3e-3,1e3", *common)
    assert "6 already final, 0 to run" in again.stderr + again.stdout

    r = run_cli("collect", str(sweep))
    assert r.returncode == 0 and "3 completed, 3 diverged" in r.stdout
    assert (sweep / "results.parquet").exists()


def test_recipes_lists_the_catalogue():
    r = run_cli("recipes", timeout=120)
    assert r.returncode == 0, r.stderr
    names = [ln.split()[0] for ln in r.stdout.splitlines()[2:]]
    assert len(names) >= 8 and {"balanced", "duplicated", "noisy", "hub_fineweb_edu"} <= set(names)


def test_mixtures_of_an_unknown_recipe_is_one_line():
    r = run_cli("mixtures", "--base", "nosuch", "--n", "2", timeout=60)
    assert r.returncode == 2 and r.stderr.strip().startswith("proxyscale: error: unknown recipe 'nosuch'")
