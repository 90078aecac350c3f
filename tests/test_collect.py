"""proxyscale.collect: a sweep's records -> results/curves/examples tables, replaced as one set and known stale when a record changes."""

from __future__ import annotations

import os
import subprocess

import pytest


def test_a_sweep_copied_without_hidden_files_still_knows_its_tables_are_stale(tmp_path):
    from test_record import _sweep, make_record, put

    from proxyscale import collect

    root, ids = _sweep(tmp_path)
    collect.write(collect.collect(root), root)
    copy = tmp_path / "copy"
    copy.mkdir()
    subprocess.run(f"cp -rp {root}/* {copy}/", shell=True, check=True)  # hidden files stay behind
    assert not list(copy.glob(".*"))
    path = copy / ids[0] / "result.json"
    st = path.stat()
    put(copy, make_record(recipe="a", seed=0, losses={"prose": 9.0, "code": 9.0}))  # same size, new content, old mtime
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert collect.is_stale(copy), "the copied tables were taken as fresh"


def test_a_failed_collect_leaves_the_previous_tables_whole(tmp_path, monkeypatch):
    from test_record import _sweep

    from proxyscale import collect

    root, _ = _sweep(tmp_path)
    collect.write(collect.collect(root), root)
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(collect, "gather_examples", full)
    with pytest.raises(collect.CollectError, match=f"tables not written: No space left on device; the previous tables in {root}, if any, are intact"):
        collect.write(collect.collect(root), root)
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before and not list(root.glob(".results.tmp-*"))
