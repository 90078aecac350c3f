"""Atomic record writes, skip-if-final, and the collector on hand-made records."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import pandas as pd
import pytest

from helpers import run_main
from proxyscale import collect as table
from proxyscale import record
from proxyscale.data import identity

ENV = {"corpora": "test", "step_versions": {}}


def make_record(run_id=None, status="completed", size="tiny", recipe="a", lr=1e-3, seed=0, losses=None, params=1000, sweep="s", model=None) -> record.Record:
    """A record consistent with its config (collect rejects others); its run id is derived from the
    config unless given (`run_id` makes a distinct cell, by a config key outside the checked fields)."""
    from proxyscale.config import run_id_of

    losses = {"prose": 2.0, "code": 1.5} if losses is None else losses
    config = {
        "sweep": sweep,
        "seed": seed,
        "model": {"name": size, **(model or {})},
        "data": {"name": recipe},
        "optim": {"lr": lr},
        "trainer": {},
        "eval": {"sets": [{"name": k} for k in losses]},
        "tag": run_id,
    }
    return record.Record(
        run_id=run_id_of(config, ENV),
        sweep=sweep,
        status=status,
        size=size,
        params=params,
        recipe=recipe,
        lr=lr,
        seed=seed,
        tokens=4096,
        steps=1,
        final_loss=losses if status == "completed" else {},
        eval_curve=[{"step": 1, "tokens": 4096, "loss": losses}],
        train_curve=[{"step": 0, "loss": 5.0}],
        wall_seconds=1.0,
        train_seconds=0.5,
        tokens_per_second=8192.0,
        flops_per_token=1e5,
        tokenizer="byte",
        config=config,
        versions={},
        error=None if status == "completed" else "boom",
        eval_sets=list(losses),
        baselines={k: {"unigram": 5.0 + i, "bigram": 3.0 + i} for i, k in enumerate(losses)},
        extra={"identity_env": ENV},
    )


def put(root, rec: record.Record):
    """Write a record into its cell folder under a sweep folder; returns its run id."""
    record.write(root / rec.run_id, rec)
    return rec.run_id


def test_write_read_roundtrip_and_no_temp_left(tmp_path):
    rec = make_record()
    record.write(tmp_path, rec)
    assert record.read(tmp_path) == rec
    assert [p.name for p in tmp_path.iterdir()] == [record.RESULT]


def test_failed_write_keeps_the_previous_record(tmp_path, monkeypatch):
    record.write(tmp_path, make_record(status="failed"))
    before = (tmp_path / record.RESULT).read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        record.write(tmp_path, make_record())
    assert (tmp_path / record.RESULT).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [record.RESULT]


@pytest.mark.parametrize("content", ["", '{"run_id": "r", "sta', "[]", json.dumps({"schema_version": 0})])
def test_corrupt_truncated_or_old_records_are_errors_not_crashes(tmp_path, content):
    (tmp_path / record.RESULT).write_text(content)
    with pytest.raises(record.RecordError):
        record.read(tmp_path)
    assert not record.is_completed(tmp_path)


def test_final_statuses(tmp_path):
    for status, final in (("completed", True), ("diverged", True), ("failed", False)):
        record.write(tmp_path / status, make_record(status=status))
        assert record.is_completed(tmp_path / status) is final


def test_collect_tidy_table_counts_missing_and_skips_bad(tmp_path):
    ids = [
        put(tmp_path, make_record(run_id=f"c{i}", size=size, recipe=recipe, status=status))
        for i, (size, recipe, status) in enumerate([("tiny", "a", "completed"), ("tiny", "b", "completed"), ("mini", "a", "diverged")])
    ]
    (tmp_path / "c9").mkdir()
    (tmp_path / "c9" / record.RESULT).write_text("{not json")
    (tmp_path / "grid.json").write_text(json.dumps({"sweep": "s", "cells": {**dict.fromkeys(ids, []), "c3": []}}))
    got = table.collect(tmp_path)
    df, summary = got.results, got.summary
    assert len(df) == 6  # 3 cells x 2 eval sets
    assert df.set_index(["run_id", "eval_set"]).loc[(ids[2], "code"), ["unigram", "bigram"]].tolist() == [6.0, 4.0]  # baselines from the record
    assert set(df.columns) >= {"run_id", "size", "recipe", "lr", "seed", "status", "eval_set", "loss", "params"}
    assert df[df.status == "diverged"]["loss"].isna().all()
    assert df[(df.run_id == ids[0]) & (df.eval_set == "code")]["loss"].item() == 1.5
    assert "2 completed" in summary and "1 diverged" in summary
    assert "1 of 4 grid cells missing" in summary and "1 unreadable" in summary
    path = table.write(got, tmp_path)
    assert pd.read_parquet(path).shape == df.shape
    assert len(pd.read_parquet(tmp_path / table.CURVES)) == 6


def test_collect_in_worker_processes_matches_one_process(tmp_path):
    """Large sweeps are parsed in parallel; the table, the curves and the skipped records must not
    depend on it. A cell folder without a record yet (a running cell) is not an error."""
    for i in range(24):
        put(tmp_path, make_record(recipe="ab"[i % 2], seed=i, status="diverged" if i == 5 else "completed"))
    (tmp_path / "c90").mkdir()
    (tmp_path / "c90" / record.RESULT).write_text('{"schema_version": 0}')
    (tmp_path / "running").mkdir()
    one, two = table.collect(tmp_path, workers=1), table.collect(tmp_path, workers=3)
    pd.testing.assert_frame_equal(one.results, two.results)
    pd.testing.assert_frame_equal(one.curves, two.curves)
    assert one.summary == two.summary and "24 records" in one.summary and "1 unreadable" in one.summary
    assert one.results["run_id"].is_monotonic_increasing and one.manifest == two.manifest


def test_collect_on_empty_folder_is_an_error(tmp_path):
    with pytest.raises(table.CollectError, match="no readable records"):
        table.collect(tmp_path)


def test_collect_cli_warns_with_each_bad_records_path_and_keeps_the_good_ones(tmp_path, capsys):
    """Faults a sweep folder meets in practice: an empty, a truncated, a non-object record, one
    from an older schema, one without its config, and a cell whose folder has no record yet."""
    ok = put(tmp_path, make_record(run_id="ok"))
    no_config = asdict(make_record(run_id="nc"))
    del no_config["config"]
    bad = {
        "empty": "",
        "truncated": '{"run_id": "r", "sta',
        "list": "[]",
        "noconfig": json.dumps(no_config),
        "old": json.dumps({**asdict(make_record(run_id="old")), "schema_version": 0}),
    }
    for name, text in bad.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / record.RESULT).write_text(text)
    (tmp_path / "running").mkdir()
    r = run_main(capsys, "collect", str(tmp_path))
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("skipping ")]
    assert sorted(ln.split()[1].rstrip(":") for ln in warnings) == sorted(str(tmp_path / n / record.RESULT) for n in bad)
    assert "missing fields ['config']" in r.stderr and "schema version 0, expected 1" in r.stderr
    assert "1 records: 1 completed" in r.stdout and "5 unreadable record(s) skipped" in r.stdout
    assert set(pd.read_parquet(tmp_path / table.RESULTS)["run_id"]) == {ok}


# ---- issue 14: records that cannot be mixed up, collected by content ---------------------------


def _sweep(tmp_path, n=3):
    root = tmp_path / "s"
    ids = [put(root, make_record(recipe="ab"[i % 2], seed=i)) for i in range(n)]
    (root / "grid.json").write_text(json.dumps({"sweep": "s", "cells": dict.fromkeys(ids, [])}))
    return root, ids


@pytest.mark.parametrize(
    "edit,why",
    [
        (lambda raw: raw.update(lr=0.5), "fields disagree with its config (lr 0.5 vs 0.001)"),  # a hand-edited lr
        (lambda raw: raw["config"]["optim"].update(lr=0.5) or raw.update(lr=0.5), "does not match its config"),  # config and field edited
        (lambda raw: raw.update(sweep="other") or raw["config"].update(sweep="other"), "a record of sweep 'other', not 's'"),  # copied from another sweep
    ],
)
def test_an_inconsistent_record_is_rejected_with_its_path(tmp_path, caplog, edit, why):
    root, ids = _sweep(tmp_path)
    path = root / ids[1] / record.RESULT
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    with caplog.at_level("WARNING", logger="proxyscale"):
        got = table.collect(root)
    df, summary = got.results, got.summary
    assert set(df["run_id"]) == {ids[0], ids[2]}
    assert "1 inconsistent record(s) rejected" in summary
    assert any(r.getMessage().startswith(f"skipping {path}: ") and why in r.getMessage() for r in caplog.records), caplog.text


def test_a_multi_process_record_from_before_placement_left_the_run_id_is_read(tmp_path):
    """Its run id hashed trainer.devices (as it was then): collect checks it against that identity and keeps it."""
    from proxyscale.config import run_id_of

    root = tmp_path / "s"
    rec = make_record()
    rec.config["trainer"] = {"devices": 2, "num_nodes": 1, "strategy": "ddp"}
    rec.run_id = run_id_of(rec.config, ENV, placement=True)
    assert rec.run_id != run_id_of(rec.config, ENV)
    put(root, rec)
    got = table.collect(root)
    assert list(got.results["run_id"].unique()) == [rec.run_id] and "rejected" not in got.summary


def test_records_outside_the_current_grid_are_listed_not_averaged(tmp_path, caplog):
    root, ids = _sweep(tmp_path)
    stale = put(root, make_record(recipe="a", seed=0, run_id="old-yaml"))  # the same cell before its recipe changed
    with caplog.at_level("WARNING", logger="proxyscale"):
        got = table.collect(root)
    df, summary = got.results, got.summary
    assert stale not in set(df["run_id"]) and "all 3 grid cells present" in summary
    assert "1 record(s) not in the current grid.json left out" in summary
    assert any(str(root / stale / record.RESULT) in r.getMessage() for r in caplog.records)
    got = table.collect(root, all_records=True)
    assert stale in set(got.results["run_id"]) and "included (--all-records)" in got.summary


def test_the_run_id_covers_corpora_step_versions_and_the_recipes_content(monkeypatch):
    from dataclasses import replace

    from hydra import compose, initialize_config_dir

    from proxyscale import config as C
    from proxyscale.data import curation, sources

    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["data=noisy"])
        bigger = compose("config", overrides=["data=noisy", "data.sources.0.max_docs=5"])  # the recipe's YAML changed
    base = identity.run_id(cfg)
    assert identity.run_id(bigger) != base
    monkeypatch.setattr(sources, "builtin_fingerprint", lambda: "after-a-pip-install")
    assert identity.run_id(cfg) != base
    monkeypatch.undo()
    op = cfg.data.steps[0]["op"]
    monkeypatch.setitem(curation.STEPS, op, replace(curation.STEPS[op], version=curation.STEPS[op].version + 1))
    assert identity.run_id(cfg) != base


def test_a_changed_cell_supersedes_its_old_run_id_in_grid_json(tmp_path):
    from hydra import compose, initialize_config_dir

    from proxyscale import config as C
    from proxyscale import grid

    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        old, new, other = (
            compose("config", overrides=[f"paths.output_dir={tmp_path}", *o])
            for o in (["data=noisy"], ["data=noisy", "data.sources.0.weight=0.9"], ["data=balanced"])
        )
    grid.write_grid([grid.Cell(["data=noisy"], old, identity.run_id(old)), grid.Cell(["data=balanced"], other, identity.run_id(other))], old)
    grid.write_grid([grid.Cell(["data=noisy"], new, identity.run_id(new))], new)  # same overrides, another run id
    cells = json.loads((tmp_path / "default" / "grid.json").read_text())["cells"]
    assert set(cells) == {identity.run_id(new), identity.run_id(other)}
    (tmp_path / "default" / "grid.json").write_text("{corrupt")
    grid.write_grid([grid.Cell(["data=noisy"], new, identity.run_id(new))], new)  # rebuilt, not a traceback
    assert set(json.loads((tmp_path / "default" / "grid.json").read_text())["cells"]) == {identity.run_id(new)}


def test_is_stale_follows_record_content_not_mtime_and_rebuilds_a_corrupt_table(tmp_path):
    root, ids = _sweep(tmp_path)
    assert table.is_stale(root)
    table.write(table.collect(root), root)
    assert not table.is_stale(root)
    path = root / ids[0] / record.RESULT
    st = path.stat()
    record.write(path.parent, make_record(recipe="a", seed=0, losses={"prose": 9.0, "code": 9.0}))  # same size, new content
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime
    assert table.is_stale(root)
    table.write(table.collect(root), root)
    assert not table.is_stale(root)
    (root / table.RESULTS).write_bytes(b"PAR1 torn")
    assert table.is_stale(root)


def test_records_get_the_umask_permissions_and_collect_temp_names_are_per_writer(tmp_path):
    old = os.umask(0o022)
    try:
        root, _ = _sweep(tmp_path)
        assert oct(next(root.glob("*/result.json")).stat().st_mode & 0o777) == oct(0o644)
        (root / f".{table.RESULTS}.tmp").mkdir()  # the fixed temp name of an older or concurrent writer
        table.write(table.collect(root), root)
        assert oct((root / table.RESULTS).stat().st_mode & 0o777) == oct(0o644)
        assert not [p for p in root.iterdir() if p.name.endswith(".tmp") and p.is_file()]
    finally:
        os.umask(old)


def test_a_read_only_sweep_is_collected_elsewhere(tmp_path, capsys):
    from faults import read_only

    root, _ = _sweep(tmp_path)
    with read_only(root):
        r = run_main(capsys, "collect", str(root), "--out", str(tmp_path / "elsewhere"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "elsewhere" / table.RESULTS).exists() and not (root / table.RESULTS).exists()
    assert not table.is_stale(root, tmp_path / "elsewhere")


def test_collect_and_report_say_which_parametrization_each_size_used(tmp_path):
    """µP or standard per size (model.parametrization in the record's config) reaches results.parquet and
    the report's notes; records without the key (before µP) read as standard."""
    from proxyscale.report import build

    for size, params, model in (("tiny", 1000, None), ("mini", 4000, {"parametrization": "mup", "mup_base_width": 64})):
        for recipe, shift in (("a", 0.0), ("b", 0.1), ("c", 0.2)):
            put(tmp_path, make_record(size=size, params=params, recipe=recipe, model=model, losses={"prose": 2.0 + shift, "code": 1.5 + shift}))
    got = table.collect(tmp_path)
    assert dict(got.results.groupby("size")["parametrization"].first()) == {"mini": "mup", "tiny": "standard"}
    table.write(got, tmp_path)
    rep = build.build_sweep(str(tmp_path), n_boot=0)
    assert rep["size_parametrization"] == {"tiny": "standard", "mini": "mup"}
    assert "parametrization per size: tiny standard, mini mup." in rep["notes"]


def test_an_interrupted_publish_is_finished_and_an_unfinished_stage_discarded(tmp_path):
    from proxyscale import record

    folder = tmp_path / "out"
    folder.mkdir()
    for name in ("a.md", "a.json", "fig_old.png"):
        (folder / name).write_text("old")
    stage = record.stage_dir(folder, "report")
    for name in ("a.md", "a.json"):
        (stage / name).write_text("new")
    record.atomic_write_text(stage / record.COMMIT, json.dumps({"files": ["a.md", "a.json"], "remove": ["fig_old.png"]}))
    os.replace(stage / "a.md", folder / "a.md")  # the writer died after its first rename
    lines = record.recover_sets(folder, "report")
    assert lines and "finished publishing" in lines[0]
    assert {p.name: p.read_text() for p in folder.iterdir() if not p.name.startswith(".")} == {"a.md": "new", "a.json": "new"}
    dead = folder / ".report.tmp-999999999-abcd"  # no COMMIT, its writer gone: the old set was never touched
    dead.mkdir()
    (dead / "a.md").write_text("half")
    assert "discarded" in record.recover_sets(folder, "report")[0] and not dead.exists()
    assert (folder / "a.md").read_text() == "new"
