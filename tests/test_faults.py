"""Unit-level fault injection (issue 14): outcomes and exit lines, checkpoints that are torn or
foreign, records on a full or read-only disk. Each test fails on the code before issue 14."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
import torch
from faults import full_disk, read_only
from hydra import compose, initialize_config_dir

from helpers import FAST, preempt_at
from proxyscale import config as C
from proxyscale.job import run_cell, run_dir
from proxyscale.launch import local


def _cfg(out_dir, cache_dir, *extra):
    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        return compose("config", overrides=["model=debug", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", *FAST, *extra])


# ---- 1. exit status -------------------------------------------------------------------------


def test_summarise_counts_failed_and_unwritten_cells(monkeypatch):
    monkeypatch.delenv(local.OK_EXIT_ENV, raising=False)
    assert local.summarise(["completed", "diverged", "busy"], "outputs/x") is None
    assert (
        local.summarise(["completed", "failed", "failed", "completed", "completed", "diverged"], "outputs/demo")
        == "2 of 6 cells failed (see proxyscale status outputs/demo)"
    )
    assert (
        local.summarise(["completed", "error: OSError: [Errno 28] No space left on device"], "o/s")
        == "1 of 2 cells could not write their record (OSError: [Errno 28] No space left on device) (see proxyscale status o/s)"
    )
    monkeypatch.setenv(local.OK_EXIT_ENV, "1")
    assert local.summarise(["failed"], "o/s") is None


def test_a_full_disk_makes_the_cell_an_error_outcome_not_a_silent_success(tmp_path, cache_dir):
    out = tmp_path / "full"
    with full_disk(out):
        outcome = local.task(_cfg(out, cache_dir))
        assert outcome.startswith("error: OSError: [Errno 28] No space left on device"), outcome
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "a temp file is left"


def test_a_read_only_sweep_folder_makes_the_cell_an_error_outcome(tmp_path, cache_dir):
    out = tmp_path / "ro"
    out.mkdir()
    with read_only(out):
        outcome = local.task(_cfg(out, cache_dir))
    assert outcome.startswith("error: OSError: [Errno 30] Read-only file system"), outcome


# ---- 2. durable checkpoints -----------------------------------------------------------------


def _interrupted(cfg, monkeypatch):
    """Run `cfg` until a preemption at step 6 (a checkpoint was saved at step 4); return its last.ckpt."""
    undo = preempt_at(monkeypatch, 6)
    assert run_cell(cfg).status == "failed"
    undo()
    path = run_dir(cfg) / "checkpoints" / "last.ckpt"
    assert path.exists()
    return path


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_checkpoints_are_on_by_default_name_their_cell_and_go_once_final(out_dir, cache_dir, monkeypatch):
    cfg = _cfg(out_dir, cache_dir, "optim.lr=2e-2")
    path = _interrupted(cfg, monkeypatch)
    state = torch.load(path, map_location="cpu", weights_only=False)
    assert state["proxyscale_run_id"] == run_dir(cfg).name and state["global_step"] == 4
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"], "a temp checkpoint is left"
    rec = run_cell(cfg)
    assert rec.status == "completed" and rec.requeues == 1
    assert not (run_dir(cfg) / "checkpoints").exists(), "last.ckpt stays after the cell is final"


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_keep_checkpoints_keeps_them(out_dir, cache_dir):
    cfg = _cfg(out_dir, cache_dir, "optim.lr=2e-2", "trainer.keep_checkpoints=true")
    assert run_cell(cfg).status == "completed"
    assert (run_dir(cfg) / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow  # trains in-process (Lightning fit)
@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_torn_or_foreign_checkpoint_is_moved_aside_and_the_cell_retrains(out_dir, cache_dir, monkeypatch, caplog, damage):
    cfg = _cfg(out_dir, cache_dir, "optim.lr=2e-2")
    path = _interrupted(cfg, monkeypatch)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # another cell's checkpoint copied into this one's folder
        other = _cfg(out_dir, cache_dir, "optim.lr=3e-2")
        shutil.copy(_interrupted(other, monkeypatch), path)
    with caplog.at_level(logging.WARNING, logger="proxyscale"):
        rec = run_cell(cfg)
    assert rec.status == "completed" and rec.requeues == 0, rec.error  # trained from the start
    bad = list((run_dir(cfg) / "checkpoints").glob("last.ckpt.bad-*"))
    assert len(bad) == 1
    reason = "does not load" if damage == "truncated" else "belongs to cell"
    assert any(reason in r.getMessage() and "moved aside" in r.getMessage() for r in caplog.records), caplog.text
    assert not (run_dir(cfg) / "checkpoints" / "last.ckpt").exists()


# ---- 3. verified caches ---------------------------------------------------------------------

from proxyscale.data import cache as token_cache  # noqa: E402


def _build(n=4000):
    calls = []

    def build():
        calls.append(1)
        return np.arange(n, dtype=np.uint16) % 257, {"what": "test"}

    return build, calls


def _paths(tmp_path):
    (meta,) = (tmp_path / "k").glob("*.json")
    return meta.with_suffix(".bin"), meta


@pytest.mark.parametrize(
    "damage,said",
    [
        ("cut", "bytes, its meta says 4000 tokens"),  # a pool cut to 2.5%
        ("odd", "bytes, its meta says 4000 tokens"),  # a .bin of odd length
        ("meta", "unreadable meta"),  # a meta file that is not JSON
    ],
)
def test_a_damaged_token_cache_is_rebuilt_with_its_path_named(tmp_path, caplog, damage, said):
    build, calls = _build()
    tokens, meta = token_cache._cached(str(tmp_path), "k", {"p": 1}, build)
    assert meta["n_tokens"] == 4000 and len(meta["sha256"]) == 64 and len(calls) == 1
    bin_path, meta_path = _paths(tmp_path)
    if damage == "cut":
        bin_path.write_bytes(bin_path.read_bytes()[:200])
    elif damage == "odd":
        bin_path.write_bytes(bin_path.read_bytes() + b"\0")
    else:
        meta_path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="proxyscale"):
        tokens, meta = token_cache._cached(str(tmp_path), "k", {"p": 1}, build)
    assert len(calls) == 2 and len(tokens) == 4000 and meta["n_tokens"] == 4000
    assert any(said in r.getMessage() and str(tmp_path / "k") in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records), caplog.text


def test_a_cache_with_other_content_is_rebuilt_on_its_first_use_in_a_process(tmp_path, monkeypatch):
    build, calls = _build()
    token_cache._cached(str(tmp_path), "k", {"p": 1}, build)
    bin_path, _ = _paths(tmp_path)
    st = bin_path.stat()
    bin_path.write_bytes(bytes(reversed(bin_path.read_bytes())))  # same length, other tokens
    os.utime(bin_path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its old mtime
    monkeypatch.setattr(token_cache, "VERIFIED", set())  # a new process (issue 24: not only with paths.verify_caches=true)
    tokens, _ = token_cache._cached(str(tmp_path), "k", {"p": 1}, build)
    assert len(calls) == 2 and (np.asarray(tokens) == np.arange(4000) % 257).all()
    token_cache._cached(str(tmp_path), "k", {"p": 1}, build)
    assert len(calls) == 2  # verified once per process, then only its length
    tokens, _ = token_cache._cached(str(tmp_path), "k", {"p": 1}, build, verify=True)
    assert len(calls) == 2


def test_a_cache_build_on_a_full_disk_raises_and_leaves_no_litter(tmp_path):
    build, _ = _build(200_000)
    with full_disk(tmp_path / "c"):
        with pytest.raises(OSError, match=f"cannot write cache file {tmp_path / 'c' / 'k'}/.*No space left.*set paths.cache_dir"):
            token_cache._cached(str(tmp_path / "c"), "k", {"p": 1}, build)
        assert sorted(p.name for p in (tmp_path / "c" / "k").iterdir() if not p.name.endswith(".lock")) == []


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_an_eval_set_shorter_than_one_window_fails_the_cell_not_loss_zero(out_dir, cache_dir, monkeypatch):
    monkeypatch.setattr(token_cache, "eval_tokens", lambda *a, **k: (np.zeros(100, dtype=np.uint16), {"key": "short"}))
    rec = run_cell(_cfg(out_dir, cache_dir))
    assert rec.status == "failed" and "eval set 'prose'" in rec.error and "holds 100 tokens, less than one window (129)" in rec.error
