"""Trackers (proxyscale/tracking.py): W&B offline runs per cell, resume into the same run, no API key
in any output, `wandb-sync`, the report run, logger=none without wandb, csv and tensorboard.

W&B's offline `.wandb` files are read back with wandb's own protobuf schema (wandb.proto): the file
is a LevelDB-style log of `Record` messages. Everything is offline; nothing reaches the network.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from helpers import FAST, ROOT, preempt_at, run_main
from proxyscale import config as C
from proxyscale import grid, record, tracking
from proxyscale.tracking import wandb as wb

FAKE_KEY = "fk" + "0123456789abcdef" * 2 + "feedbe"  # 40 characters, never a real key
assert len(FAKE_KEY) == 40


# ------------------------------------------------------------------------ reading offline runs


def wandb_records(path: Path) -> list:
    """Every protobuf Record of a .wandb file (32 KiB blocks of [crc32 u32][len u16][type u8] chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B data file"
    pos, block, buf, chunks = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero padding to the end of a block
            pos += left
            continue
        if pos + 7 + length > len(data):  # a chunk still being written
            break
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # FULL
            chunks.append(chunk)
        elif kind == 2:  # FIRST
            buf = chunk
        elif kind == 3:  # MIDDLE
            buf += chunk
        elif kind == 4:  # LAST
            chunks.append(buf + chunk)
            buf = b""
    out = []
    for c in chunks:
        r = pb.Record()
        r.ParseFromString(c)
        out.append(r)
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def finished_records(path: Path, timeout: float = 60) -> list:
    """The records once the run's exit record is on disk: wandb's service process may still be
    writing the file for a moment after `finish()` returned in this process."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        recs = wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in recs) or time.monotonic() > deadline:
            return recs
        time.sleep(0.2)


def read_offline_run(folder: Path) -> dict:
    """{id, group, job_type, name, tags, project, config, history, summary, exit_code} of one run folder."""
    (path,) = folder.glob("*.wandb")
    run: dict = {"folder": folder, "config": {}, "history": [], "summary": {}, "exit_code": None}
    for r in finished_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run.update(id=r.run.run_id, group=r.run.run_group, job_type=r.run.job_type, name=r.run.display_name, tags=list(r.run.tags), project=r.run.project)
            run["config"].update({_key(u): json.loads(u.value_json) for u in r.run.config.update})
        elif kind == "config":
            run["config"].update({_key(u): json.loads(u.value_json) for u in r.config.update})
        elif kind == "history":
            run["history"].append({_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            run["summary"].update({_key(u): json.loads(u.value_json) for u in r.summary.update})
        elif kind == "exit":
            run["exit_code"] = r.exit.exit_code
    return run


def offline_runs(root: Path) -> list[dict]:
    return [read_offline_run(f) for f in wb.offline_runs(root)]


def series(run: dict, key: str) -> list[tuple[int, float]]:
    return [(h["trainer/global_step"], h[key]) for h in run["history"] if key in h]


def files_containing(root: Path, text: str) -> list[str]:
    needle = text.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """A fake API key in the environment, W&B's own folders inside tmp_path, no mode override."""
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return {k: os.environ[k] for k in os.environ if k.startswith("WANDB_")}


def _cfg(out_dir, cache_dir, *extra):
    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        return compose("config", overrides=["model=debug", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", *FAST, *extra])


# ------------------------------------------------------------------------ unit


def test_config_is_flattened_to_dotted_keys():
    flat = C.flatten(
        {
            "optim": {"lr": 0.003, "optimizer": {"_target_": "x"}},
            "model": {"n_layer": 2},
            "data": {"sources": [{"name": "a", "weight": 1.0}], "steps": []},
            "tags": ["a", "b"],
        }
    )
    assert flat == {
        "optim.lr": 0.003,
        "optim.optimizer._target_": "x",
        "model.n_layer": 2,
        "data.sources.0.name": "a",
        "data.sources.0.weight": 1.0,
        "data.steps": [],
        "tags": ["a", "b"],
    }


def test_logger_settings_are_checked_before_anything_trains(tmp_path, cache_dir, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(C.ConfigError, match="logger.kind must be one of none, csv, tensorboard, wandb"):
        grid.check_cell(_cfg(tmp_path, cache_dir, "logger.kind=comet"))
    with pytest.raises(C.ConfigError, match="logger.mode must be one of offline, online, disabled"):
        grid.check_cell(_cfg(tmp_path, cache_dir, "logger=wandb", "logger.mode=cloud"))
    with pytest.raises(C.ConfigError, match="logger.mode=online needs WANDB_API_KEY"):
        grid.check_cell(_cfg(tmp_path, cache_dir, "logger=wandb", "logger.mode=online"))
    grid.check_cell(_cfg(tmp_path, cache_dir, "logger=wandb"))  # offline needs no key
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    grid.check_cell(_cfg(tmp_path, cache_dir, "logger=wandb", "logger.mode=online"))
    cfg = _cfg(tmp_path, cache_dir, "logger=wandb")
    assert cfg.logger.mode == "offline" and wb.wandb_dir(cfg) == tmp_path / "default"


def test_a_bad_logger_kind_is_one_line_and_exit_2(tmp_path, capsys):
    res = run_main(capsys, "-m", "model=debug", "logger.kind=comet", f"paths.output_dir={tmp_path}")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("proxyscale: error: logger.kind must be one of none, csv, tensorboard, wandb, got 'comet'")
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------ wandb-sync


def _fake_offline_run(root: Path, rid: str) -> Path:
    folder = root / "wandb" / f"offline-run-20260101_000000-{rid}"
    folder.mkdir(parents=True)
    (folder / f"run-{rid}.wandb").write_bytes(b":W&B" + struct.pack("<HB", 0xBEE1, 1))
    return folder


def test_wandb_sync_nothing_to_sync_and_missing_folder(tmp_path, capsys):
    (tmp_path / "sweep").mkdir()
    res = run_main(capsys, "wandb-sync", str(tmp_path / "sweep"))
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        f"proxyscale: error: {tmp_path / 'sweep'}: nothing to sync: no offline W&B runs (was the sweep run with logger=wandb?)"
    ]
    res = run_main(capsys, "wandb-sync", str(tmp_path / "nope"))
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1 and "no such sweep folder" in res.stderr
    res = run_main(capsys, "wandb-sync")
    assert res.returncode == 2 and "sweep_dir" in res.stderr


def test_wandb_sync_needs_a_key_and_dry_run_invokes_wandb_sync(tmp_path):
    sweep = tmp_path / "sweep"
    a = _fake_offline_run(sweep, "debug-balanced-lr0.003-s0-aaaa")
    b = _fake_offline_run(sweep, "debug-noisy-lr0.003-s0-bbbb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), NETRC=str(tmp_path / "no-netrc"), WANDB_CONFIG_DIR=str(tmp_path / "cfg"))
    from helpers import PROXYSCALE

    res = subprocess.run([PROXYSCALE, "wandb-sync", str(sweep)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        "proxyscale: error: 2 offline run(s) not synced: set WANDB_API_KEY in the environment (or run `wandb login`) first"
    ]
    res = subprocess.run([PROXYSCALE, "wandb-sync", str(sweep), "--dry-run", "--project", "p1"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"-m wandb sync --project p1 --dry-run {a} {b}" in res.stdout
    assert "Would sync 2 run(s)" in res.stdout  # wandb's own dry run answered
    assert wb.sync_command([a], entity="team") == [sys.executable, "-m", "wandb", "sync", "--entity", "team", str(a)]


# ------------------------------------------------------------------------ logger=none


@pytest.mark.slow
def test_logger_none_never_imports_wandb(tmp_path, cache_dir):
    driver = f"""
import sys
from hydra import compose, initialize_config_dir
from proxyscale import config as C
from proxyscale.job import run_cell
with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
    cfg = compose("config", overrides={["model=debug", f"paths.output_dir={tmp_path}", f"paths.cache_dir={cache_dir}", "logger=none", *FAST]!r})
rec = run_cell(cfg)
print("STATUS", rec.status, "WANDB", "wandb" in sys.modules)
"""
    res = subprocess.run([sys.executable, "-c", driver], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "STATUS completed WANDB False" in res.stdout
    assert not list(tmp_path.rglob("offline-run-*"))


# ------------------------------------------------------------------------ csv / tensorboard


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_the_csv_logger_keeps_working(tmp_path, cache_dir):
    """(logger=tensorboard: test_tensorboard_gets_the_config_as_hparams_and_the_steps_wandb_shows reads its events back)"""
    from proxyscale.job import run_cell, run_dir

    cfg = _cfg(tmp_path, cache_dir, "logger=csv", "trainer.log_every_n_steps=2")
    rec = run_cell(cfg)
    assert rec.status == "completed", rec.error
    header = (run_dir(cfg) / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss", "eval/prose/loss", "eval/code/loss", "eval/readme/loss"} <= set(header)


# ------------------------------------------------------------------------ wandb: real runs


@pytest.mark.slow
def test_a_wandb_grid_through_the_cli_is_one_offline_run_per_cell(tmp_path, cache_dir, wandb_env):
    out = tmp_path / "outputs"
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    res = subprocess.run(
        [
            str(Path(sys.executable).with_name("proxyscale")),
            "-m",
            "model=debug",
            *FAST,
            "sweep=wbgrid",
            "logger=wandb",
            "trainer.log_every_n_steps=2",
            "data=balanced,noisy",
            "optim.lr=3e-3",
            "data.steps=[],[{op: quality_filter, min_chars: 100000000}]",  # the second cell fails when it builds its pool (curation keeps nothing)
            f"paths.output_dir={out}",
            f"paths.cache_dir={cache_dir}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    # the two cells whose curation keeps nothing fail by design; a sweep with failed cells exits 1 (issue 14: truthful exit status)
    assert res.returncode == 1 and "2 of 4 cells failed" in res.stderr, res.stderr[-3000:]
    sweep = out / "wbgrid"
    recs = {p.parent.name: record.read(p.parent) for p in sweep.glob(f"*/{record.RESULT}")}
    assert sorted(r.status for r in recs.values()) == ["completed", "completed", "failed", "failed"]
    runs = offline_runs(sweep)
    assert all(r["folder"].parent == sweep / "wandb" for r in runs)
    # one run per cell, ids == the records' tracking ids (run id + sweep hash): the in-process cells never collapse into one run
    # (the cells whose curation keeps nothing fail while loading their data, before job/run.py starts a tracker: no W&B run for them)
    assert sorted(r["id"] for r in runs) == sorted(rec.tracking["id"] for rec in recs.values() if rec.status == "completed")
    for run in runs:
        rec = recs[run["config"]["run_id"]]
        assert run["id"] == wb.run_key("wbgrid", rec.run_id) == rec.tracking["id"]
        cfg = rec.config
        assert run["group"] == "wbgrid" and run["project"] == "proxyscale" and run["job_type"] == "train-debug"
        assert {"size:debug", f"recipe:{rec.recipe}", "lr:0.003", "seed:0"} <= set(run["tags"])
        assert run["name"] == rec.run_id.rsplit("-", 1)[0]
        c = run["config"]
        assert c["optim.lr"] == pytest.approx(0.003) and c["model.n_layer"] == 2 and c["run_id"] == rec.run_id
        assert c["data.pool_tokens"] == cfg["data"]["pool_tokens"] and c["data.sources.0.name"] == cfg["data"]["sources"][0]["name"]
        assert not any(isinstance(v, dict) and v for k, v in c.items() if k != "_wandb"), "config is not flat"
        assert run["summary"]["status"] == rec.status
        if rec.status == "completed":
            assert run["exit_code"] == 0
            assert [s for s, _ in series(run, "train/loss")] == list(range(2, 13, 2))
            for name in ("prose", "code", "readme"):
                ev = series(run, f"eval/{name}/loss")
                assert [s for s, _ in ev] == [p["step"] for p in rec.eval_curve] == [4, 8, 12]
                assert [v for _, v in ev] == pytest.approx([p["loss"][name] for p in rec.eval_curve], abs=1e-5)
                assert run["summary"][f"final/eval/{name}/loss"] == pytest.approx(rec.final_loss[name], abs=1e-5)
            assert all(v > 0 for _, v in series(run, "perf/tokens_per_second"))
            # numbers for loss-vs-size charts, from the record; the LR each logged step used, from the schedule
            assert (c["params"], c["tokens"]) == (rec.params, rec.tokens) and c["flops"] == pytest.approx(rec.flops_per_token * rec.tokens, rel=0.2)
            from proxyscale.job.optim import lr_factor

            o = C.attrs(cfg).optim
            lrs = series(run, "train/lr")
            assert [s for s, _ in lrs] == list(range(2, 13, 2))
            assert [v for _, v in lrs] == pytest.approx([o.lr * lr_factor(s - 1, 12, o) for s, _ in lrs], rel=1e-6)
            assert run["summary"]["steps"] == 12 and run["summary"]["tokens"] == rec.tokens
            assert run["summary"]["tokens_per_second"] == pytest.approx(rec.tokens_per_second, rel=1e-6)
        else:
            assert run["exit_code"] == 1 and run["summary"]["error"]
    leaks = files_containing(tmp_path, FAKE_KEY)
    assert not leaks, f"the API key was written to {leaks}"
    assert FAKE_KEY not in res.stdout + res.stderr
    assert f"W&B: 2 offline run folder(s) in {sweep / 'wandb'}; upload with: proxyscale wandb-sync {sweep}" in res.stderr + res.stdout


@pytest.mark.slow
def test_an_interrupted_cell_resumes_into_the_same_wandb_run(tmp_path, cache_dir, wandb_env, monkeypatch):
    from proxyscale.job import run_cell, run_dir

    cfg = _cfg(tmp_path / "outputs", cache_dir, "optim.lr=1e-2", "trainer.checkpoint=true", "logger=wandb", "trainer.log_every_n_steps=1", "sweep=wbresume")
    undo = preempt_at(monkeypatch, 6)
    first = run_cell(cfg)
    assert first.status == "failed" and "preempted" in first.error
    import wandb

    assert wandb.run is None, "the failed cell left its W&B run open"
    undo()
    resumed = run_cell(cfg)
    assert resumed.status == "completed" and resumed.requeues == 1
    assert wandb.run is None

    a, b = offline_runs(tmp_path / "outputs" / "wbresume")  # oldest first
    assert a["id"] == b["id"] == wb.run_key("wbresume", run_dir(cfg).name) == resumed.tracking["id"]
    assert a["exit_code"] == 1 and a["summary"]["status"] == "failed" and "preempted" in a["summary"]["error"]
    assert b["exit_code"] == 0 and b["summary"]["status"] == "completed"
    # the first run died in step 6 (before Lightning logged it); the checkpoint was at the step-4
    # eval, so the resumed run goes on from step 5 in the same run id
    assert [s for s, _ in series(a, "train/loss")] == [1, 2, 3, 4, 5]
    assert [s for s, _ in series(a, "eval/prose/loss")] == [4]
    assert [s for s, _ in series(b, "train/loss")] == list(range(5, 13))
    assert [s for s, _ in series(b, "eval/prose/loss")] == [8, 12]
    assert b["summary"]["requeues"] == 1
    assert b["summary"]["final/eval/prose/loss"] == pytest.approx(resumed.final_loss["prose"], abs=1e-5)
    leaks = files_containing(tmp_path, FAKE_KEY)
    assert not leaks, f"the API key was written to {leaks}"


@pytest.mark.slow
def test_publish_logs_the_report_as_a_run_in_the_sweep_group(tmp_path, wandb_env):
    from proxyscale.report import wandb_publish

    sweep = tmp_path / "outputs" / "pub"
    cell = sweep / "debug-balanced-lr0.003-s0-aaaa"
    cell.mkdir(parents=True)
    (cell / "config.yaml").write_text("sweep: pub\nlogger:\n  kind: wandb\n  project: proxyscale\n  mode: offline\n  tags: [study]\n")
    (cell / record.RESULT).write_text(
        json.dumps(
            {
                "run_id": cell.name,
                "status": "completed",
                "size": "debug",
                "params": 35008,
                "recipe": "balanced",
                "lr": 0.003,
                "seed": 0,
                "tokens": 49152,
                "steps": 12,
                "tokens_per_second": 1e4,
                "final_loss": {"prose": 4.6, "code": 4.5},
            }
        )
    )
    flips = [
        {
            "a": "balanced",
            "b": "noisy",
            "proxy_a": 4.6,
            "proxy_b": 4.7,
            "target_a": 4.1,
            "target_b": 4.0,
            "proxy_prefers": "balanced",
            "target_prefers": "noisy",
        }
    ]
    report = {
        "schema_version": 1,
        "direction": "lower",
        "sizes": ["debug", "tiny"],
        "recipes": ["balanced", "noisy", "dup"],
        "metrics": ["prose"],
        "status_counts": {"debug": {"completed": 3}, "tiny": {"completed": 2, "failed": 1}},
        "comparisons": [
            {
                "metric": "prose",
                "proxy": "debug",
                "target": "tiny",
                "proxy_lr": None,
                "target_mode": None,
                "n_recipes": 3,
                "pearson": 0.5,
                "r2": 0.25,
                "spearman": 0.5,
                "kendall": 0.33,
                "decision_accuracy": 0.667,
                "n_pairs": 3,
                "n_flips": 1,
                "flips": flips,
                "pearson_ci": [0.1, 0.9],
            },
            {
                "metric": "prose",
                "proxy": "debug",
                "target": "tiny",
                "proxy_lr": 0.001,
                "target_mode": "tuned",
                "n_recipes": 3,
                "spearman": None,
                "decision_accuracy": None,
                "reason": "too few recipes",
            },
            "not a comparison",
        ],
        "summary": {
            "target": "tiny",
            "bottom_line": ["At tiny: balanced wins on prose.", "debug -> tiny: inconclusive on prose."],
            "per_metric": [{"metric": "prose", "lines": [{"proxy": "debug", "target": "tiny", "verdict": "inconclusive", "reason": "3 recipes"}]}],
        },
    }
    rj = tmp_path / "report.json"
    rj.write_text(json.dumps(report))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.plot([0, 1], [1, 0])
    plt.savefig(tmp_path / "fig_ranking.png")
    plt.close("all")

    where = Path(wandb_publish.publish(sweep, rj, tmp_path))
    assert where.parent == sweep / "wandb" and where.name.startswith("offline-run-")
    (run,) = [r for r in offline_runs(sweep) if r["job_type"] == "report"]
    assert run["group"] == "pub" and run["name"] == "pub-report" and "study" in run["tags"] and run["exit_code"] == 0
    s = run["summary"]
    assert s["prose/debug->tiny/decision_accuracy"] == pytest.approx(0.667) and s["prose/debug->tiny/n_flips"] == 1
    assert s["cells/completed"] == 5 and s["cells/failed"] == 1 and s["n_comparisons"] == 2 and s["target"] == "tiny"
    (logged,) = run["history"]
    assert {logged[f"{k}/_type"] for k in ("results", "comparisons", "flips")} == {"table-file"}
    assert logged["figures/ranking/_type"] == "image-file"
    assert s["bottom_line"] == "At tiny: balanced wins on prose.\ndebug -> tiny: inconclusive on prose."
    assert s["verdict/prose/debug->tiny"] == "inconclusive" and run["id"] == wandb_publish.report_id("pub")
    tables = {p.name.split("_")[0]: json.loads(p.read_text()) for p in (where / "files" / "media" / "table").glob("*.table.json")}
    assert tables["comparisons"]["columns"][:3] == ["metric", "proxy", "target"] and len(tables["comparisons"]["data"]) == 2
    assert tables["flips"]["data"][0][4:6] == ["balanced", "noisy"]
    assert len(tables["results"]["data"]) == 2  # the one record, per eval set
    assert list((where / "files" / "media" / "images").rglob("*.png"))
    with pytest.raises(wandb_publish.PublishError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        wandb_publish.publish(sweep, tmp_path / "bad.json", tmp_path)
    assert not files_containing(tmp_path, FAKE_KEY)


# ------------------------------------------------------------------------ tracker conventions (issue 17.4)


def tensorboard_events(folder: Path):
    """The run's TensorBoard events through tensorboard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def tensorboard_hparams(ea) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = {}
    for content in ea.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.WhichOneof("data") == "session_start_info":
            for k, v in data.session_start_info.hparams.items():
                out[k] = getattr(v, v.WhichOneof("kind"))
        elif data.WhichOneof("data") == "experiment":
            out["_metrics"] = [m.name.tag for m in data.experiment.metric_infos]
    return out


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_tensorboard_gets_the_config_as_hparams_and_the_steps_wandb_shows(tmp_path, cache_dir):
    pytest.importorskip("tensorboard", reason="reading events back needs tensorboard (the test extras pin it)")
    from proxyscale.job import run_cell, run_dir

    cfg = _cfg(tmp_path, cache_dir, "logger=tensorboard", "trainer.log_every_n_steps=5", "sweep=tb")
    rec = run_cell(cfg)
    assert rec.status == "completed", rec.error
    folder = run_dir(cfg)
    ea = tensorboard_events(folder)
    tags = ea.Tags()["scalars"]
    assert "epoch" not in tags and {"train/loss", "eval/prose/loss", "eval/code/loss", "eval/readme/loss"} <= set(tags)
    # optimizer steps done, as W&B's trainer/global_step and the record: 5, 10 and the last step
    assert [e.step for e in ea.Scalars("train/loss")] == [5, 10, 12] == [p["step"] for p in rec.train_curve]
    assert [e.value for e in ea.Scalars("train/loss")] == pytest.approx([p["loss"] for p in rec.train_curve], abs=1e-5)
    assert [e.step for e in ea.Scalars("eval/prose/loss")] == [p["step"] for p in rec.eval_curve] == [4, 8, 12]
    hp = tensorboard_hparams(ea)
    assert hp["optim.lr"] == pytest.approx(float(cfg.optim.lr)) and hp["model.n_layer"] == 2 and hp["run_id"] == folder.name
    assert hp["sweep"] == "tb" and hp["data.sources.0.name"] == rec.config["data"]["sources"][0]["name"]
    assert {"train/loss", "eval/prose/loss"} <= set(hp["_metrics"])
    assert hp["params"] == rec.params and hp["tokens"] == rec.tokens and hp["flops"] > 0 and "train/lr" in tags
    import yaml

    saved = yaml.safe_load((folder / "tensorboard" / "hparams.yaml").read_text())
    assert saved and saved["optim.lr"] == pytest.approx(float(cfg.optim.lr)) and saved["run_id"] == folder.name


@pytest.mark.slow  # trains in-process (Lightning fit)
def test_a_cell_shorter_than_the_logging_interval_records_its_train_loss(tmp_path, cache_dir):
    """3 steps with log_every_n_steps=25: the record and the tracker both get the step-3 train loss."""
    from proxyscale.job import run_cell, run_dir

    cfg = _cfg(tmp_path, cache_dir, "logger=csv", "trainer.max_tokens=12288", "trainer.log_every_n_steps=25")
    rec = run_cell(cfg)
    assert rec.status == "completed" and rec.steps == 3, rec.error
    assert [p["step"] for p in rec.train_curve] == [3] and rec.train_curve[0]["loss"] > 0
    import csv

    rows = list(csv.DictReader((run_dir(cfg) / "csv" / "metrics.csv").open()))
    train = [(int(r["step"]), float(r["train/loss"])) for r in rows if r.get("train/loss")]
    assert train == [(3, pytest.approx(rec.train_curve[0]["loss"], abs=1e-5))]
    assert "epoch" not in rows[0]


def test_wandb_ids_name_the_sweep_and_the_record_agrees(tmp_path, cache_dir):
    cfg_a = _cfg(tmp_path, cache_dir, "logger=wandb", "sweep=a")
    cfg_b = _cfg(tmp_path, cache_dir, "logger=wandb", "sweep=b")
    rid = "debug-balanced-lr0.003-s0-1234abcd"
    a, b = wb.settings(cfg_a, rid)["id"], wb.settings(cfg_b, rid)["id"]
    assert a != b and a.startswith(rid + "-") and b.startswith(rid + "-")
    assert a == wb.settings(cfg_a, rid)["id"] == wb.run_key("a", rid)  # stable: a requeue of sweep a continues its run
    assert not set(":;,#?/'") & set(a) and len(a) <= 64
    assert tracking.settings(cfg_a, rid)["id"] == a


@pytest.mark.slow
def test_the_same_cell_in_two_sweeps_is_two_wandb_runs(tmp_path, cache_dir, wandb_env):
    """Same cell (same run id) in two sweeps, both written into one W&B folder: two run ids, each the
    record's tracking.id; steps as the record's (a 3-step cell with log_every_n_steps=25 logs step 3); no `epoch`."""
    from proxyscale.job import run_cell, run_dir

    shared = tmp_path / "wandb-root"
    recs = {}
    for sweep in ("first", "second"):
        cfg = _cfg(
            tmp_path / "outputs",
            cache_dir,
            "logger=wandb",
            f"sweep={sweep}",
            f"logger.dir={shared}",
            "trainer.max_tokens=12288",
            "trainer.log_every_n_steps=25",
        )
        rec = run_cell(cfg)
        assert rec.status == "completed", rec.error
        recs[sweep] = rec
    assert recs["first"].run_id == recs["second"].run_id == run_dir(cfg).name
    runs = offline_runs(shared)
    assert len(runs) == 2
    ids = {r["group"]: r["id"] for r in runs}
    assert ids == {s: recs[s].tracking["id"] for s in recs} and ids["first"] != ids["second"]
    for run in runs:
        assert run["name"] == recs["first"].run_id.rsplit("-", 1)[0] and run["config"]["run_id"] == recs["first"].run_id
        assert [s for s, _ in series(run, "train/loss")] == [3]
        assert [s for s, _ in series(run, "eval/prose/loss")] == [3]
        assert not any("epoch" in h for h in run["history"])


def test_the_report_run_has_one_id_per_sweep_and_carries_the_figures_and_verdicts(tmp_path, wandb_env):
    """Publishing twice resumes the same W&B run (id report-<sweep hash>); another sweep gets another id; the
    run has every fig_*.png of the report folder as an image and the bottom line and verdicts in its summary."""
    import matplotlib

    from proxyscale.report import wandb_publish

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rep = {
        "schema_version": 1,
        "direction": "lower",
        "sizes": ["s", "l"],
        "recipes": ["a", "b", "c"],
        "metrics": ["prose"],
        "comparisons": [],
        "summary": {
            "target": "l",
            "bottom_line": ["At l: a wins on prose.", "s -> l: holds on prose (decision accuracy 1.00)."],
            "per_metric": [{"metric": "prose", "lines": [{"proxy": "s", "target": "l", "verdict": "holds", "reason": "p 0.01"}]}],
        },
    }
    ids = {}
    for sweep in ("one", "two"):
        root = tmp_path / "outputs" / sweep
        root.mkdir(parents=True)
        (root / "report.json").write_text(json.dumps(rep))
        for name in ("scatter", "bump"):
            plt.plot([0, 1], [1, 0])
            plt.savefig(root / f"fig_{name}.png")
            plt.close("all")
        for _ in range(2 if sweep == "one" else 1):
            wandb_publish.publish(root, root / "report.json", root)
        runs = [r for r in offline_runs(root) if r["job_type"] == "report"]
        assert len(runs) == (2 if sweep == "one" else 1)
        assert {r["id"] for r in runs} == {wandb_publish.report_id(sweep)}
        ids[sweep] = runs[0]["id"]
        for run in runs:
            (logged,) = run["history"]
            assert {k for k in logged if k.startswith("figures/") and k.endswith("/_type")} == {"figures/scatter/_type", "figures/bump/_type"}
            assert run["summary"]["bottom_line"].splitlines() == rep["summary"]["bottom_line"]
            assert run["summary"]["verdict/prose/s->l"] == "holds" and run["exit_code"] == 0
        assert len(list(runs[-1]["folder"].glob("files/media/images/**/*.png"))) == 2
    assert ids["one"] != ids["two"] and ids["one"] == wandb_publish.report_id("one")
    assert wandb_publish.report_id("one") == wandb_publish.report_id("one")
