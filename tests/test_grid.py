"""proxyscale.grid: planning a sweep (compose, check, grid.json) before anything trains; nothing here trains."""

from __future__ import annotations

import json

import pytest

from helpers import FAST, run_main, snapshot


def test_closest_keys():
    from proxyscale.grid import closest_keys

    keys = ["optim.lr", "optim.min_lr_frac", "trainer.max_tokens", "trainer.batch_size", "seed", "model"]
    assert closest_keys("lr", keys) == ["optim.lr"]
    assert closest_keys("trainer.max_steps", keys + ["data.steps"]) == ["trainer.max_tokens", "data.steps"]
    assert closest_keys("trainer.nonsense", keys) == []
    assert closest_keys("zzzzzz", keys) == []


TWO_LRS = ["model=debug", "data=balanced,noisy", "optim.lr=3e-3,1e-2", "sweep=ident", *FAST]


def _plan_into(out_dir, *overrides, write=True):
    """Plan a grid in this process (no training) and record it in grid.json, as the sweeper does before launching."""
    from proxyscale import grid

    cells, base = grid.compose_grid(["-m", *overrides, f"paths.output_dir={out_dir}"])
    if write:
        grid.write_grid(cells, base)
    return cells, base


def _grid_doc(out_dir, sweep="ident"):
    return json.loads((out_dir / sweep / "grid.json").read_text())


def test_a_rerun_of_one_cell_at_another_lr_keeps_the_stated_standard_lr(out_dir):
    _plan_into(out_dir, *TWO_LRS)
    assert _grid_doc(out_dir)["standard_lr"] == pytest.approx(3e-3)
    _plan_into(out_dir, "model=debug", "data=balanced", "optim.lr=1e-2", "sweep=ident", *FAST)  # one cell again, at the other LR
    doc = _grid_doc(out_dir)
    assert doc["standard_lr"] == pytest.approx(3e-3), "a cell's LR replaced the sweep's standard LR"
    assert len(doc["cells"]) == 4


def test_a_changed_standard_lr_or_budget_into_the_same_sweep_is_one_line_exit_2(out_dir, capsys):
    _plan_into(out_dir, *TWO_LRS)
    before = snapshot(out_dir)
    for extra, line in (
        (["standard_lr=1e-2"], "sweep ident: standard_lr=0.01 but {grid} states 0.003 (optim.lr of the sweep's base config"),
        (["trainer.max_tokens=98304"], "sweep ident: trainer.max_tokens is 49152 in {grid}, this command makes it 98304;"),
    ):
        for dry in ([], ["dry_run=true"]):
            r = run_main(capsys, "-m", *TWO_LRS, *extra, *dry, f"paths.output_dir={out_dir}")
            assert r.returncode == 2, r.stderr[-2000:]
            err = r.stderr.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("proxyscale: error: " + line.format(grid=out_dir / "ident" / "grid.json")), err
    assert snapshot(out_dir) == before, "a refused command changed the sweep"
    assert run_main(capsys, "-m", *TWO_LRS, "optim.lr=3e-3,1e-2,3e-2", "dry_run=true", f"paths.output_dir={out_dir}").returncode == 0  # a wider axis is fine


def test_an_edited_recipe_supersedes_its_cells_whatever_the_override_order(out_dir):
    first, _ = _plan_into(out_dir, "model=debug", "data=noisy", "optim.lr=3e-3", "sweep=ident", *FAST)
    edited = ["optim.lr=3e-3", "data.sources.0.weight=0.9", "sweep=ident", "data=noisy", "model=debug", *reversed(FAST)]  # as a YAML edit would
    again, _ = _plan_into(out_dir, *edited)
    assert first[0].run_id != again[0].run_id
    assert set(_grid_doc(out_dir)["cells"]) == {again[0].run_id}, "both definitions of one cell stay in the grid (and are averaged)"
    same, _ = _plan_into(out_dir, *reversed(["model=debug", "data=noisy", "optim.lr=3e-3", "sweep=ident", *FAST]), write=False)
    assert same[0].run_id == first[0].run_id  # the run id never depends on the order


def test_an_unwritable_output_cache_or_wandb_folder_is_one_line_before_anything_runs(tmp_path, out_dir, cache_dir, capsys):
    from faults import read_only
    from test_report import synthetic_sweep

    ro = tmp_path / "ro"
    ro.mkdir()
    synthetic_sweep(ro / "syn")
    with read_only(ro):
        cases = [
            (["-m", "model=debug", f"paths.output_dir={ro}", f"paths.cache_dir={cache_dir}"], f"paths.output_dir: {ro} is not writable"),
            (["model=debug", f"paths.output_dir={out_dir}", f"paths.cache_dir={ro / 'cache'}"], f"paths.cache_dir: {ro} is not writable"),
            (
                ["model=debug", "logger=wandb", f"logger.dir={ro / 'wandb'}", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"],
                f"logger.dir: {ro} is not writable (W&B would log to a temp folder instead); choose a writable logger.dir",
            ),
            (["report", str(ro / "syn")], f"report not written: {ro / 'syn'} is not writable (give --out DIR)"),
        ]
        for args, start in cases:
            r = run_main(capsys, *args)
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 2 and lines[-1].startswith(f"proxyscale: error: {start}"), r.stderr[-2000:]
            assert len(lines) == 1 or args[0] == "report", r.stderr  # (the report's warnings on the synthetic tables come first)
    assert not out_dir.exists() or not list(out_dir.rglob("result.json"))


def test_glob_reaches_a_sub_folder_only_when_its_pattern_names_one(out_dir):
    """`data=glob(mix/*)` (where `proxyscale mixtures` writes) lists that folder's recipes; `glob(readme*)` keeps to the group's own."""
    nested, _ = _plan_into(out_dir, "model=debug", "data=glob(ladder/readme_1*)", "sweep=globs", *FAST, write=False)
    assert sorted(c.cfg.data.name for c in nested) == ["readme_10", "readme_15"]
    flat, _ = _plan_into(out_dir, "model=debug", "data=glob(readme*)", "sweep=globs", *FAST, write=False)
    assert [c.cfg.data.name for c in flat] == ["readme_heavy"]
