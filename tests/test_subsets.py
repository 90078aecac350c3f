"""Subset sweeps (datamodels' training sets): deterministic groups, members seeded by the subset index alone,
the subset in the run id and the token cache key, the ids of cells without a subset unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from helpers import FAST, assert_same_record, records_by_devices, run_cli, run_main
from proxyscale import grid
from proxyscale.config import DataConfig, SourceConfig, data_identity, run_id_of, subset_members
from proxyscale.data import cache
from proxyscale.data.sources import Document


def test_members_depend_on_the_index_alone_and_keep_about_the_fraction():
    a = subset_members({"subset": 3, "subset_groups": 64, "subset_frac": 0.5, "seed": 0, "name": "x"})
    assert a == subset_members({"subset": 3, "subset_groups": 64, "subset_frac": 0.5, "seed": 9, "name": "y"})
    assert a != subset_members({"subset": 4, "subset_groups": 64, "subset_frac": 0.5})
    sizes = [len(subset_members({"subset": i, "subset_groups": 64, "subset_frac": 0.25})) for i in range(200)]
    assert abs(np.mean(sizes) / 64 - 0.25) < 0.02
    assert subset_members({"subset": None}) is None
    assert subset_members({"keep_groups": [5, 1, 5]}) == [1, 5]


def test_identity_drops_subset_keys_only_without_a_subset():
    plain = {"name": "r", "subset": None, "subset_groups": 64, "subset_frac": 0.5, "keep_groups": None, "seed": 0}
    assert data_identity(plain) == {"name": "r", "seed": 0}
    assert data_identity({**plain, "subset": 2})["subset"] == 2


def test_a_subset_keeps_whole_groups_and_every_index_enters_the_cache_key():
    docs = [Document(f"d{i}", "text " * 50) for i in range(400)]
    src = [SourceConfig(name="prose", path="python_docs")]
    data = OmegaConf.structured(DataConfig(name="r", sources=src, subset=1, subset_groups=8, subset_frac=0.5))
    kept = cache.in_subset(docs, "prose", data)
    members = set(subset_members({"subset": 1, "subset_groups": 8, "subset_frac": 0.5}))
    assert kept and all(cache.document_group("prose", d.id, 8) in members for d in kept)
    assert {d.id for d in docs} - {d.id for d in kept} == {d.id for d in docs if cache.document_group("prose", d.id, 8) not in members}
    keys = {cache._key(cache._recipe_payload(OmegaConf.structured(DataConfig(name="r", sources=src, subset=i, subset_groups=8)))) for i in range(4)}
    assert len(keys) == 4
    whole = OmegaConf.structured(DataConfig(name="r", sources=src))
    assert cache.in_subset(docs, "prose", whole) == docs
    assert "subset" not in cache._recipe_payload(whole)["recipe"]


def test_a_subset_multirun_is_one_cell_per_index_with_the_index_in_its_run_id():
    cells, _ = grid.compose_grid(["-m", "model=debug", "debug=fast", "data.subset=range(0,3)", "data.subset_groups=8"])
    assert [c.run_id.split("-")[2] for c in cells] == ["sub0", "sub1", "sub2"]
    assert len({c.run_id for c in cells}) == 3
    (whole,), _ = grid.compose_grid(["model=debug", "debug=fast"])
    assert "-sub" not in whole.run_id
    cfg = {"model": {"name": "m"}, "data": {"name": "r", "subset": None, "subset_groups": 64, "subset_frac": 0.5, "keep_groups": None}}
    cfg.update(optim={"lr": 1e-3}, seed=0)
    assert run_id_of(cfg, None) == run_id_of({**cfg, "data": {"name": "r"}}, None)  # ids from before subset sweeps stay


def test_bad_subset_settings_are_refused_in_one_line():
    with pytest.raises(grid.GridError, match="subset_frac must be in"):
        grid.compose_grid(["model=debug", "debug=fast", "data.subset=0", "data.subset_frac=1.5"])
    with pytest.raises(grid.GridError, match="keep_groups"):
        grid.compose_grid(["model=debug", "debug=fast", "data.keep_groups=[99]", "data.subset_groups=8"])


def test_source_groups_need_one_group_per_source_and_no_subset_is_empty():
    with pytest.raises(grid.GridError, match="subset_groups must be the number of sources"):
        grid.compose_grid(["model=debug", "debug=fast", "data.subset=0", "data.subset_by=source", "data.subset_groups=8"])
    (cell,), _ = grid.compose_grid(["model=debug", "debug=fast", "data.subset=0", "data.subset_by=source", "data.subset_groups=3"])
    data = cell.cfg.data
    assert [cache.group_of(data, s.name, "any id") for s in data.sources] == [0, 1, 2]
    assert all(subset_members({"subset": i, "subset_groups": 3, "subset_frac": 0.05}) for i in range(50))


@pytest.mark.slow  # (a 1-process and a 2-process training cell)
def test_a_two_process_subset_cell_gives_the_one_process_record(out_dir, cache_dir, capsys):
    """The subset data path (the group filter, the pool of the kept documents) on 2 gloo processes: both ranks train
    on the subset's batches, so the record equals the 1-process one within float reduction order (helpers.RECORD_TOL)."""
    cell = ["model=debug", *FAST, "trainer.log_every_n_steps=2", "data.subset=3", "data.subset_groups=8", f"paths.cache_dir={cache_dir}"]
    two = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.pg_timeout_s=60"]
    r = run_main(capsys, *cell, "sweep=one", f"paths.output_dir={out_dir}")  # (1 process: this one)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_cli(*cell, *two, "sweep=two", f"paths.output_dir={out_dir}", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = records_by_devices(out_dir / "one")[1], records_by_devices(out_dir / "two")[2]
    for rec in (one, two):
        assert "-sub3-" in rec["run_id"] and rec["config"]["data"]["subset"] == 3 and rec["config"]["data"]["subset_groups"] == 8
    assert_same_record(one, two)
