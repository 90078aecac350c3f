"""Atomic record writes, skip-if-final, and the collector on hand-made records."""
from __future__ import annotations

import json
import os
from dataclasses import asdict

import pandas as pd
import pytest

from proxyscale import collect as table
from proxyscale import record

from helpers import run_cli


def make_record(run_id="r", status="completed", size="tiny", recipe="a", lr=1e-3, seed=0, losses=None, params=1000) -> record.Record:
    losses = {"prose": 2.0, "code": 1.5} if losses is None else losses
    return record.Record(
        run_id=run_id, sweep="s", status=status, size=size, params=params, recipe=recipe, lr=lr, seed=seed,
        tokens=4096, steps=1, final_loss=losses if status == "completed" else {},
        eval_curve=[{"step": 1, "tokens": 4096, "loss": losses}], train_curve=[{"step": 0, "loss": 5.0}],
        wall_seconds=1.0, train_seconds=0.5, tokens_per_second=8192.0, flops_per_token=1e5, tokenizer="byte",
        config={"eval": {"sets": [{"name": k} for k in losses]}}, versions={}, error=None if status == "completed" else "boom",
        eval_sets=list(losses), baselines={k: {"unigram": 5.0 + i, "bigram": 3.0 + i} for i, k in enumerate(losses)},
    )


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


@pytest.mark.parametrize("content", ["", "{\"run_id\": \"r\", \"sta", "[]", json.dumps({"schema_version": 0})])
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
    for i, (size, recipe, status) in enumerate([("tiny", "a", "completed"), ("tiny", "b", "completed"), ("mini", "a", "diverged")]):
        record.write(tmp_path / f"c{i}", make_record(run_id=f"c{i}", size=size, recipe=recipe, status=status))
    (tmp_path / "c9").mkdir()
    (tmp_path / "c9" / record.RESULT).write_text("{not json")
    (tmp_path / "grid.json").write_text(json.dumps({"cells": {"c0": [], "c1": [], "c2": [], "c3": []}}))
    df, summary = table.collect(tmp_path)
    assert len(df) == 6  # 3 cells x 2 eval sets
    assert df.set_index(["run_id", "eval_set"]).loc[("c2", "code"), ["unigram", "bigram"]].tolist() == [6.0, 4.0]  # baselines from the record
    assert set(df.columns) >= {"run_id", "size", "recipe", "lr", "seed", "status", "eval_set", "loss", "params"}
    assert df[df.status == "diverged"]["loss"].isna().all()
    assert df[(df.run_id == "c0") & (df.eval_set == "code")]["loss"].item() == 1.5
    assert "2 completed" in summary and "1 diverged" in summary
    assert "1 of 4 grid cells missing" in summary and "1 unreadable" in summary
    path = table.write(df, tmp_path)
    assert pd.read_parquet(path).shape == df.shape
    assert len(pd.read_parquet(tmp_path / table.CURVES)) == 6


def test_collect_in_worker_processes_matches_one_process(tmp_path):
    """Large sweeps are parsed in parallel; the table, the curves and the skipped records must not
    depend on it. A cell folder without a record yet (a running cell) is not an error."""
    for i in range(24):
        record.write(tmp_path / f"c{i:02d}", make_record(run_id=f"c{i:02d}", recipe="ab"[i % 2], seed=i, status="diverged" if i == 5 else "completed"))
    (tmp_path / "c90").mkdir()
    (tmp_path / "c90" / record.RESULT).write_text('{"schema_version": 0}')
    (tmp_path / "running").mkdir()
    one, s1 = table.collect(tmp_path, workers=1)
    two, s2 = table.collect(tmp_path, workers=3)
    pd.testing.assert_frame_equal(one, two)
    pd.testing.assert_frame_equal(one.attrs["curves"], two.attrs["curves"])
    assert s1 == s2 and "24 records" in s1 and "1 unreadable" in s1
    assert one["run_id"].is_monotonic_increasing


def test_collect_on_empty_folder_is_an_error(tmp_path):
    with pytest.raises(table.CollectError, match="no readable records"):
        table.collect(tmp_path)


def test_collect_cli_warns_with_each_bad_records_path_and_keeps_the_good_ones(tmp_path):
    """Faults a sweep folder meets in practice: an empty, a truncated, a non-object record, one
    from an older schema, one without its config, and a cell whose folder has no record yet."""
    record.write(tmp_path / "ok", make_record(run_id="ok"))
    no_config = asdict(make_record(run_id="nc"))
    del no_config["config"]
    bad = {"empty": "", "truncated": '{"run_id": "r", "sta', "list": "[]", "noconfig": json.dumps(no_config),
           "old": json.dumps({**asdict(make_record(run_id="old")), "schema_version": 0})}
    for name, text in bad.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / record.RESULT).write_text(text)
    (tmp_path / "running").mkdir()
    r = run_cli("collect", str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("skipping ")]
    assert sorted(ln.split()[1].rstrip(":") for ln in warnings) == sorted(str(tmp_path / n / record.RESULT) for n in bad)
    assert "missing fields ['config']" in r.stderr and "schema version 0, expected 1" in r.stderr
    assert "1 records: 1 completed" in r.stdout and "5 unreadable record(s) skipped" in r.stdout
    assert set(pd.read_parquet(tmp_path / table.RESULTS)["run_id"]) == {"ok"}
