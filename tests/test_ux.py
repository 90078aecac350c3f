"""Issue 17: a CLI that explains itself (help, version, did-you-mean, refusals before anything runs),
progress you can trust (progress/ETA lines, the end-of-sweep summary, dry runs that count final
cells) and tables that fit 100 columns."""

from __future__ import annotations

import importlib.metadata
import json
import re

import pytest

from helpers import FAST, run_cli, snapshot
from proxyscale.cli import SUBCOMMANDS


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_lists_every_subcommand_in_100_columns(flag):
    r = run_cli(flag, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for name in SUBCOMMANDS:
        assert any(ln.startswith(f"  {name} ") for ln in lines), name
    assert "--hydra-help" in r.stdout and "PROXYSCALE_VERBOSE=1" in r.stdout and "PROXYSCALE_OK_EXIT=1" in r.stdout
    assert max(map(len, lines)) <= 100
    assert "Hydra" not in lines[0]


def test_version_is_proxyscales():
    r = run_cli("--version", timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"proxyscale {importlib.metadata.version('proxyscale')}"


def test_hydra_help_stays_reachable():
    r = run_cli("--hydra-help", timeout=60)
    assert r.returncode == 0 and "Hydra" in r.stdout


def test_closest_keys():
    from proxyscale.grid import closest_keys

    keys = ["optim.lr", "optim.min_lr_frac", "trainer.max_tokens", "trainer.batch_size", "seed", "model"]
    assert closest_keys("lr", keys) == ["optim.lr"]
    assert closest_keys("trainer.max_steps", keys + ["data.steps"]) == ["trainer.max_tokens", "data.steps"]
    assert closest_keys("trainer.nonsense", keys) == []
    assert closest_keys("zzzzzz", keys) == []


def test_gpu_cells_are_refused_without_a_gpu(out_dir):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out_dir.mkdir(parents=True)
    for args in (["trainer=gpu"], ["-m", "trainer=cpu,gpu", "model=debug"]):
        r = run_cli(*args, f"paths.output_dir={out_dir}", timeout=120)
        assert r.returncode == 2, r.stderr
        (line,) = r.stderr.splitlines()
        assert line.startswith("proxyscale: error: trainer.accelerator=gpu but this machine has no CUDA GPU (use trainer=cpu here"), line
        assert snapshot(out_dir) == {}


def test_progress_eta_uses_the_measured_ratio(tmp_path):
    from proxyscale.launch.local import Progress

    path = str(tmp_path / "p.jsonl")
    Progress.start(path, total=4, est_seconds=40.0, workers=2)
    writer, reader = Progress(path), Progress(path)  # two processes: a worker adds, another reads
    writer.add("a", "completed", 20.0, 10.0)  # measured twice the estimate
    writer.add("b", "diverged", 1.0, 10.0)
    reader.read()
    assert reader.counts() == {"completed": 1, "diverged": 1}
    assert reader.eta() == pytest.approx(20.0 * 2.0 / 2)  # 20 s estimated left x 2.0 / 2 workers
    assert re.fullmatch(r"progress 2/4 cells \(1 completed, 1 diverged, 0 failed\), elapsed \d+ s, ETA 20 s", reader.line())
    writer.add("c", "failed", 5.0, 10.0)
    assert reader.read().line().startswith("progress 3/4 cells (1 completed, 1 diverged, 1 failed)")


def test_the_first_eta_uses_the_ratio_measured_by_earlier_cells_on_this_machine(tmp_path):
    """Before any cell of a sweep ends, the ETA is the cost model scaled by what earlier completed cells took
    here (cell_timings.jsonl in the cache folder, the last 50); with none yet, the cost model itself."""
    from proxyscale.launch import local

    cache = str(tmp_path / "cache")
    assert local.measured_ratio(cache) == (1.0, 0)
    for i in range(60):  # the first 10 (ratio 100) fall out of the window of 50
        local._add_timing(cache, 100.0 if i < 10 else 30.0, 10.0)
    ratio, n = local.measured_ratio(cache)
    assert (ratio, n) == (pytest.approx(3.0), 50)
    path = str(tmp_path / "p.jsonl")
    local.Progress.start(path, total=4, est_seconds=40.0, workers=2, ratio=ratio)
    assert local.Progress(path).read().eta() == pytest.approx(40.0 * 3.0 / 2)


@pytest.mark.slow  # shells out to the CLI and trains
def test_a_sweep_reports_progress_and_a_summary_and_a_dry_run_counts_final_cells(out_dir, cache_dir):
    common = ["-m", "model=debug", "optim.lr=3e-3,1e-2", "sweep=ux", *FAST, f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    r = run_cli(*common)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    sweep = out_dir / "ux"
    assert re.search(r"sweep ux: 2 cells, 0 already final, 2 to run -> .* \(estimated .+ with 1 worker\(s\): the cost model", log)
    assert re.search(r"progress 1/2 cells \(1 completed, 0 diverged, 0 failed\), elapsed [\d.]+ (s|min), ETA [\d.]+ (s|min)", log)
    assert re.search(r"progress 2/2 cells \(2 completed, 0 diverged, 0 failed\), elapsed [\d.]+ (s|min), ETA 0 s", log)
    assert re.search(rf"sweep ux done in [\d.]+ (s|min): 2 completed, 0 diverged, 0 failed \(0 already final\); records in {re.escape(str(sweep))}\n", log)
    assert f"next: proxyscale report {sweep}" in log
    assert "Launching jobs" not in log and "#0 :" not in log
    assert not list(sweep.glob(".progress-*"))
    assert sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/result.json")) == ["completed", "completed"]

    dry = run_cli(*common, "dry_run=true", timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "2 cells (2 already final, 0 to run): 0.00e+00 FLOPs, about 0 s" in dry.stdout
    assert dry.stdout.count(" final") >= 2  # each final cell's row says so

    again = run_cli(*common, timeout=120)
    assert again.returncode == 0 and f"nothing to run: every cell is final; next: proxyscale report {sweep}" in again.stdout + again.stderr


@pytest.mark.parametrize("command", [["ladder"], ["recipes"]])
def test_ladder_and_recipes_fit_100_columns(command):
    r = run_cli(*command, timeout=120)
    assert r.returncode == 0, r.stderr
    assert max(map(len, r.stdout.splitlines())) <= 100, r.stdout
    if command == ["ladder"]:
        assert r.stdout.splitlines()[0].split() == ["size", "layers", "d_model", "heads", "params", "tokens", "FLOPs", "est.", "CPU", "time"]
        assert "cell" not in r.stdout and "recipe" not in r.stdout
    else:
        assert " 1.5M " in r.stdout and "M " in r.stdout and "0.65536M" not in r.stdout


@pytest.mark.slow  # shells out to the CLI and trains
def test_recipes_finds_caches_built_at_another_pool_size(cache_dir):
    r = run_cli(
        "-m",
        "model=debug",
        "data=noisy",
        "sweep=ux_pool",
        *FAST,
        f"paths.output_dir={cache_dir.parent / 'ux_pool'}",
        f"paths.cache_dir={cache_dir}",
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {ln.split()[0]: ln for ln in run_cli("recipes", f"paths.cache_dir={cache_dir}", timeout=120).stdout.splitlines()[2:] if ln.strip()}
    assert rows["noisy"].rstrip().endswith(" docs"), rows["noisy"]  # built with data.pool_tokens=200000, listed at the recipe's own 1.5M


@pytest.mark.slow  # shells out to the CLI and trains
def test_ctrl_c_says_what_was_kept_and_how_to_resume(out_dir, cache_dir):
    import signal
    import subprocess
    import time

    from helpers import PROXYSCALE, ROOT

    args = [
        "-m",
        "model=debug",
        "optim.lr=3e-3,1e-2",
        "sweep=ux_int",
        *FAST,
        "trainer.max_tokens=120000",
        f"paths.output_dir={out_dir}",
        f"paths.cache_dir={cache_dir}",
    ]
    proc = subprocess.Popen([PROXYSCALE, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, deadline = "", time.time() + 300
    while time.time() < deadline:  # the first cell is final and the second has written a checkpoint
        line = proc.stdout.readline()
        seen += line
        if "[2/2]" in line and "step 8/" in line:
            break
    proc.send_signal(signal.SIGINT)
    lines = (seen + proc.communicate(timeout=120)[0]).strip().splitlines()
    assert proc.returncode == 130, "\n".join(lines[-20:])
    sweep = out_dir / "ux_int"
    assert lines[-2] == f"proxyscale: 1 final record(s) kept in {sweep}; unfinished cells resume from their last checkpoint"
    assert lines[-1] == "proxyscale: error: interrupted by SIGINT: 1 of 2 cells not finished (rerun the same command to resume)"
