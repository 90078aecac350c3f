"""The real `proxyscale` CLI in a subprocess: bad input is one line and exit 2 before anything
trains or is written; a tiny grid runs end to end to a report; reruns skip final cells."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import FAST, PROXYSCALE, run_cli, snapshot


@pytest.fixture
def seeded_outputs(out_dir):
    """An outputs folder with an existing file, to check that failed commands leave it alone."""
    (out_dir / "old").mkdir(parents=True)
    (out_dir / "old" / "result.json").write_text('{"keep": true}')
    return out_dir


NO_SLURM = {"PATH": str(Path(PROXYSCALE).parent)}  # the venv's bin only: no sbatch

# The bad-input table: every entry must fail in one line, exit 2, before anything trains or is
# written (CSV inputs are in test_report.py, cluster-specific ones in tests/slurm/).
BAD = [
    # sizes, recipes and other config groups
    (["model=nonexistent"], "Could not find 'model/nonexistent'", "available: ", None),
    (["-m", "data=balanced,nosuchrecipe"], "Could not find 'data/nosuchrecipe'", "available: ", None),
    (["logger=nosuch"], "Could not find 'logger/nosuch'", "wandb", None),
    # values
    (["optim.lr=0"], "optim.lr must be > 0", "", None),
    (["-m", "optim.lr=1e-3,-1e-3"], "optim.lr must be > 0", "optim.lr=-0.001", None),
    (["optim.lr=fast"], "could not be converted to Float", "", None),
    (["optim.schedule=linear"], "optim.schedule must be cosine, wsd or constant", "", None),
    (["trainer.nonsense=1"], "nonsense", "", None),
    (["trainer.strategy=deepspeed"], "trainer.strategy must be auto, ddp or fsdp", "", None),
    (["trainer.batch_size=33", "trainer.devices=2"], "must divide evenly over devices x num_nodes", "", None),
    (["eval.tokens_per_set=10"], "eval.tokens_per_set must hold one sequence", "", None),
    # recipes: mixtures, sources, curation steps
    (["data.sources.0.weight=-0.5"], "negative mixture weight", "", None),
    (["data.sources.0.weight=0", "data.sources.1.weight=0", "data.sources.2.weight=0"], "mixture weights sum to zero", "", None),
    (["data.sources.2={name: mine, kind: files, path: /no/such/file.jsonl}"], "no local dataset file matches '/no/such/file.jsonl'", "", None),
    (["data.sources.0.path=nope"], "unknown built-in corpus 'nope'", "", None),
    (["data.sources.0.kind=ftp"], "kind must be builtin, hf or files", "", None),
    (["data.steps=[{op: frobnicate}]"], "unknown op 'frobnicate'", "", None),
    (["data.steps=[{op: quality_filter, bogus: 1}]"], "unknown parameter(s) ['bogus']", "", None),
    (["data.steps=[{op: exact_dedup, sources: [nosuch]}]"], "names missing source(s) ['nosuch']", "", None),
    (["data.steps=[{op: select_like, keep_frac: 0}]"], "keep_frac must be in (0, 1]", "", None),
    (["data.steps=[{op: duplicate, factor: 0}]"], "duplicate factor must be >= 1", "", None),
    # grids and launchers
    (["-m", "optim.lr=range(1,1)"], "the grid has zero cells", "", None),
    (["-m", "data=glob(nomatch*)"], "the grid has zero cells", "", None),
    (["model=debug,tiny"], "needs -m/--multirun", "", None),
    (["submit", "model=debug"], "'sbatch' not found on PATH", "", NO_SLURM),
]


def test_the_bad_input_table_is_large():
    assert len(BAD) >= 20


@pytest.mark.parametrize("args,needle,also,env", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(seeded_outputs, args, needle, also, env):
    before = snapshot(seeded_outputs)
    r = run_cli(*args, f"paths.output_dir={seeded_outputs}", env=env, timeout=120)
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
