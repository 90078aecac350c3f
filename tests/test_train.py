"""Real training of the debug size in-process: loss falls, records are written, skips, divergence."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from helpers import FAST, preempt_at
from proxyscale import config as C
from proxyscale import record
from proxyscale.data import cache as token_cache  # noqa: E402
from proxyscale.job import run_cell, run_dir
from proxyscale.job.module import StepBatches


def _cfg(out_dir, cache_dir, *extra):
    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        return compose("config", overrides=["model=debug", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", *FAST, *extra])


def test_batches_are_a_function_of_seed_and_step():
    tokens = np.arange(10_000, dtype=np.uint16)
    full = list(StepBatches(tokens, 4, 16, seed=3, steps=6))
    resumed = list(StepBatches(tokens, 4, 16, seed=3, steps=6, start=4))
    assert all((a == b).all() for a, b in zip(full[4:], resumed))
    assert not (list(StepBatches(tokens, 4, 16, seed=4, steps=1))[0] == full[0]).all()
    assert full[0].shape == (4, 17) and (full[0][:, 1:] == full[0][:, :-1] + 1).all()


@pytest.fixture(scope="module")
def plain(tmp_path_factory, cache_dir):
    """The FAST debug cell at lr 1e-2, trained once for the module: (its config, its record)."""
    cfg = _cfg(tmp_path_factory.mktemp("plain"), cache_dir, "optim.lr=1e-2")
    return cfg, run_cell(cfg)


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_a_cell_trains_writes_its_record_and_is_skipped_on_rerun(plain):
    cfg, rec = plain
    assert rec.status == "completed", rec.error
    assert rec.steps == 12 and rec.tokens == 49152
    assert set(rec.final_loss) == {"prose", "code", "readme"}
    curve = [p["loss"]["prose"] for p in rec.eval_curve]
    assert [p["step"] for p in rec.eval_curve] == [4, 8, 12]
    assert curve[-1] < curve[0] < np.log(257)  # it learned something
    assert rec.params == 35008 and rec.versions["torch"].startswith("2.13")
    folder = run_dir(cfg)
    assert (folder / "config.yaml").exists() and record.read(folder) == rec
    mtime = (folder / record.RESULT).stat().st_mtime_ns
    again = run_cell(cfg)
    assert again == rec and (folder / record.RESULT).stat().st_mtime_ns == mtime


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_a_huge_learning_rate_is_recorded_as_diverged(out_dir, cache_dir):
    rec = run_cell(_cfg(out_dir, cache_dir, "optim.lr=1e3", "optim.warmup_frac=0", "optim.grad_clip=0", "trainer.max_tokens=98304"))
    assert rec.status == "diverged" and rec.error
    assert rec.final_loss == {}


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_a_crashing_cell_is_recorded_as_failed_with_its_traceback(out_dir, cache_dir):
    rec = run_cell(_cfg(out_dir, cache_dir, "data.pool_tokens=100"))  # fewer tokens than one window
    assert rec.status == "failed" and "Traceback" in rec.error
    assert record.read(run_dir(_cfg(out_dir, cache_dir, "data.pool_tokens=100"))).status == "failed"


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_an_interrupted_cell_resumes_from_its_checkpoint_to_the_same_result(plain, out_dir, cache_dir, monkeypatch):
    plain = plain[1]  # the same cell, never interrupted
    cfg = _cfg(out_dir / "b", cache_dir, "optim.lr=1e-2", "trainer.checkpoint=true")
    undo = preempt_at(monkeypatch, 6)
    first = run_cell(cfg)
    assert first.status == "failed" and "preempted" in first.error
    assert (run_dir(cfg) / "checkpoints" / "last.ckpt").exists()
    undo()
    resumed = run_cell(cfg)
    assert resumed.status == "completed" and resumed.requeues == 1
    assert resumed.steps == plain.steps and resumed.tokens == plain.tokens
    assert [p["step"] for p in resumed.eval_curve] == [p["step"] for p in plain.eval_curve]
    for k, v in plain.final_loss.items():
        assert resumed.final_loss[k] == pytest.approx(v, abs=1e-5)


@pytest.mark.slow
def test_a_compiled_cell_matches_the_eager_one_and_checkpoints_plain_names(out_dir, cache_dir):
    """trainer.compile (on in trainer=gpu) compiles the model in place: same losses as eager, the
    same run id, and checkpoints an eager cell can resume from."""
    import torch

    eager = run_cell(_cfg(out_dir / "eager", cache_dir))
    cfg = _cfg(out_dir / "compiled", cache_dir, "trainer.compile=true", "trainer.checkpoint=true", "trainer.keep_checkpoints=true")
    compiled = run_cell(cfg)
    assert compiled.status == "completed", compiled.error
    assert run_dir(cfg).name == eager.run_id
    assert compiled.config["trainer"]["compile"] is True
    for k, v in eager.final_loss.items():
        assert compiled.final_loss[k] == pytest.approx(v, abs=1e-3)
    state = torch.load(run_dir(cfg) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert "net.model.embed_tokens.weight" in state and not any("_orig_mod" in k for k in state)


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
    one = {"devices": 1, "num_nodes": 1, "world_size": 1, "strategy": "single"}
    assert state["proxyscale_placement"] == one  # where it was written: what a resume elsewhere is checked against
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"], "a temp checkpoint is left"
    rec = run_cell(cfg)
    assert rec.status == "completed" and rec.requeues == 1
    assert rec.placements == [{"step": 0, **one, "threads": 1}, {"step": 4, **one, "threads": 1}]  # one entry per run of the cell
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


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_an_eval_set_shorter_than_one_window_fails_the_cell_not_loss_zero(out_dir, cache_dir, monkeypatch):
    monkeypatch.setattr(token_cache, "eval_tokens", lambda *a, **k: (np.zeros(100, dtype=np.uint16), {"key": "short"}))
    rec = run_cell(_cfg(out_dir, cache_dir))
    assert rec.status == "failed" and "eval set 'prose'" in rec.error and "holds 100 tokens, less than one window (129)" in rec.error
