"""Launch paths that need no cluster: Hydra's submitit_local launcher through our sweeper, and the
manifest / grid-fingerprint / status logic of `proxyscale submit` and `proxyscale status`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults import descendants, full_disk, read_only, survivors
from hydra import compose, initialize_config_dir

from helpers import FAST, PROXYSCALE, ROOT, run_cli, run_main, snapshot, stub_record
from proxyscale import config as C
from proxyscale import grid, record
from proxyscale.launch import LaunchError, local, manifest
from proxyscale.launch.status import cell_states, counts, status_table


def _record(sweep: Path, rid: str, status: str, error: str | None = None) -> None:
    rec = stub_record(run_id=rid, sweep=sweep.name, status=status, error=error)
    record.write(sweep / rid, rec)


def test_status_of_a_local_sweep_from_records(tmp_path, capsys):
    sweep = tmp_path / "s"
    _record(sweep, "a", "completed")
    _record(sweep, "b", "failed", "Traceback (most recent call last):\n  ...\nValueError: pool too small")
    _record(sweep, "c", "diverged", "loss is nan")
    (sweep / "grid.json").write_text(json.dumps({"cells": {"a": [], "b": [], "c": [], "d": ["seed=3"]}}))
    rows, note = cell_states(sweep)
    assert note is None
    assert {r["run_id"]: r["state"] for r in rows} == {"a": "completed", "b": "failed", "c": "diverged", "d": "pending"}
    b = next(r for r in rows if r["run_id"] == "b")
    assert str(sweep / "b" / "result.json") in b["error"] and "ValueError: pool too small" in b["error"]
    table = status_table(rows)
    assert table.splitlines()[-1] == "4 cells: 1 pending, 1 completed, 1 diverged, 1 failed"
    assert table.splitlines()[1].startswith("b ")  # failed cells first
    assert table.count("error:") == 1 and "error: ValueError: pool too small (" in table  # said once, the cause first
    assert f"why: loss is nan ({sweep / 'c' / 'result.json'})" in table  # a diverged cell says why it stopped

    r = run_main(capsys, "status", str(sweep))
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "4 cells: 1 pending, 1 completed, 1 diverged, 1 failed", r.stdout + r.stderr
    r = run_main(capsys, "status", str(tmp_path / "missing"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_status_tells_how_a_requeued_cell_got_there():
    """Each run of the cell's task (sacct -D: state on nodes), then how often it resumed; nothing for a cell that ran once."""
    base = {"job": "11", "error": "", "log": "", "scheduler": "COMPLETED", "state": "completed"}
    rows = [
        {**base, "run_id": "lost", "requeues": 1, "attempts": [{"state": "NODE_FAIL", "nodes": "psn1"}, {"state": "COMPLETED", "nodes": "psn2"}]},
        {**base, "run_id": "once", "requeues": 0, "attempts": [{"state": "COMPLETED", "nodes": "psn1"}]},
        {**base, "run_id": "local", "requeues": 2, "attempts": []},  # resumed, no scheduler to ask
    ]
    lines = {line.split()[0]: line for line in status_table(rows).splitlines()[1:-1]}
    assert lines["lost"].endswith("runs: NODE_FAIL on psn1 -> COMPLETED on psn2, resumed from its checkpoint 1x")
    assert lines["once"].endswith("11") and lines["local"].endswith("resumed from its checkpoint 2x")


def test_status_merges_manifest_without_scheduler(tmp_path):
    """Cells in a manifest but no scheduler to ask: records decide; a started cell reads running."""
    sweep = tmp_path / "s"
    _record(sweep, "a", "completed")
    (sweep / "b").mkdir()
    (sweep / "b" / "config.yaml").write_text("x: 1\n")
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    manifest.append_manifest(
        sweep,
        [
            {
                "run_id": rid,
                "job_id": f"7_{i}",
                "array_job_id": "7",
                "array_index": i,
                "submitted": now,
                "overrides": [],
                "stdout": f"/x/7_{i}_0_log.out",
                "stderr": f"/x/7_{i}_0_log.err",
            }
            for i, rid in enumerate(("a", "b", "c"))
        ],
    )
    manifest.append_manifest(sweep, [{"run_id": "c", "job_id": "9", "array_job_id": "9", "array_index": 0, "submitted": now, "overrides": []}])
    assert len((sweep / manifest.MANIFEST).read_text().splitlines()) == 4
    rows, _ = cell_states(sweep, scheduler=False)
    got = {r["run_id"]: (r["state"], r["job"]) for r in rows}
    assert got == {"a": ("completed", "7_0"), "b": ("running", "7_1"), "c": ("pending", "9")}


def test_same_grid_check(tmp_path):

    def settings(*args):
        cells, _ = grid.compose_grid(["-m", "model=debug", *FAST, f"paths.output_dir={tmp_path}", *args])
        return manifest.grid_settings([c.cfg for c in cells])

    fixed, swept = settings("data=balanced,noisy")
    assert swept == ["data.name", "data.sources"] or "data.name" in swept
    assert fixed["trainer.max_tokens"] == 49152 and "data.name" not in fixed
    sweep = tmp_path / "s"
    manifest.save_grid_settings(sweep, fixed, swept)
    manifest.check_same_grid(sweep, *settings("data=noisy"))  # a sub-grid: same experiment
    manifest.check_same_grid(sweep, *settings("data=balanced,noisy", "optim.lr=1e-3,3e-3"))  # a new axis
    with pytest.raises(LaunchError, match="different grid: trainer.max_tokens was 49152"):
        manifest.check_same_grid(sweep, *settings("data=balanced", "trainer.max_tokens=98304"))
    manifest.check_same_grid(sweep, *settings("data=noisy", "trainer.devices=2", "trainer.strategy=ddp"))  # where cells run: not a setting
    info = json.loads((sweep / manifest.SUBMIT_INFO).read_text())
    info["fixed"].update({"trainer.devices": 2, "trainer.strategy": "ddp"})  # as a submission stated them before placement left the identity
    (sweep / manifest.SUBMIT_INFO).write_text(json.dumps(info))
    manifest.check_same_grid(sweep, *settings("data=noisy"))


def test_submit_without_sbatch_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "outputs"
    r = run_main(capsys, "submit", "model=debug,tiny", *FAST, f"paths.output_dir={out}", env={"PATH": "/nonexistent"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'sbatch' not found" in r.stderr, r.stderr
    assert snapshot(out) == {}


def test_submitit_local_schema_holds_with_the_repo_root_first_on_sys_path(tmp_path):
    """`python -m proxyscale` from the repo root puts our hydra_plugins before site-packages', so
    Hydra's plugin scan re-registers the stock submitit_local schema (no array_parallelism) last."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxyscale",
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.array_parallelism=1",
            "model=debug",
            "dry_run=true",
            f"paths.output_dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "1 cells" in r.stdout, r.stderr[-2000:]


@pytest.mark.slow
def test_hydra_submitit_local_launcher_runs_the_grid(tmp_path, cache_dir):
    """`proxyscale -m hydra/launcher=submitit_local ...`: our sweeper, submitit's local executor,
    one process per cell (2 at a time), blocking until both records are written."""
    out = tmp_path / "outputs"
    args = ("-m", "hydra/launcher=submitit_local", "model=debug", "data=balanced,noisy", *FAST)
    args += (f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}", "sweep=sl")
    r = run_cli(*args, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    sweep = out / "sl"
    recs = [record.read(p.parent) for p in sweep.glob("*/result.json")]
    assert sorted(x.recipe for x in recs) == ["balanced", "noisy"] and {x.status for x in recs} == {"completed"}
    assert all(x.steps == 12 for x in recs)
    assert list(sweep.glob(".submitit/*/*_log.out")), "not run through submitit"
    rows, _ = cell_states(sweep)
    assert counts(rows)["completed"] == 2
    # a second run skips both final cells (the sweeper's skip) and launches nothing
    again = run_cli(*args, timeout=200)
    assert again.returncode == 0 and "2 already final, 0 to run" in again.stdout + again.stderr


@pytest.mark.slow  # shells out to the CLI and trains
def test_in_process_and_worker_processes_train_the_same_cells_with_progress_and_a_summary(tmp_path, cache_dir):
    """hydra/launcher=local: n_jobs=1 runs the sweeper's composed configs in this process, n_jobs=2
    recomposes them in joblib workers; both must train every cell to the same losses. Hydra's joblib
    listing (shown with PROXYSCALE_VERBOSE=1, off otherwise) tells which ran; with two workers the
    progress lines still count 1/2 then 2/2 (each worker reads the shared progress file). Each run says its
    plan, progress with elapsed and ETA, a summary and the next command; a dry run then counts the final cells and a
    rerun trains nothing."""
    losses = {}
    for n_jobs in (1, 2):
        common = ["-m", "model=debug", *FAST, "seed=0,1", f"hydra.launcher.n_jobs={n_jobs}", f"sweep=jobs{n_jobs}"]
        common += [f"paths.output_dir={tmp_path}", f"paths.cache_dir={cache_dir}"]
        r = run_cli(*common, timeout=600, env={"PROXYSCALE_VERBOSE": "1"} if n_jobs == 2 else None)
        assert r.returncode == 0, r.stderr[-2000:]
        log = r.stdout + r.stderr
        sweep = tmp_path / f"jobs{n_jobs}"
        assert ("Joblib.Parallel(n_jobs=2" in log) == (n_jobs == 2)
        assert n_jobs == 2 or ("Launching jobs" not in log and "#0 :" not in log)  # Hydra's listing only when asked
        assert re.search(rf"sweep jobs{n_jobs}: 2 cells, 0 already final, 2 to run -> .* \(estimated .+ with {n_jobs} worker\(s\): the cost model", log)
        assert re.search(r"progress 1/2 cells \(1 completed, 0 diverged, 0 failed\), elapsed [\d.]+ (s|min), ETA [\d.]+ (s|min)", log)
        assert re.search(r"progress 2/2 cells \(2 completed, 0 diverged, 0 failed\), elapsed [\d.]+ (s|min), ETA 0 s", log)
        done = rf"sweep jobs{n_jobs} done in [\d.]+ (s|min): 2 completed, 0 diverged, 0 failed \(0 already final\); records in {re.escape(str(sweep))}\n"
        assert re.search(done, log)
        assert f"next: proxyscale report {sweep}" in log
        assert not list(sweep.glob(".progress-*"))
        recs = [record.read(p.parent) for p in sorted(sweep.glob("*/result.json"))]
        assert [x.status for x in recs] == ["completed", "completed"]
        losses[n_jobs] = {x.run_id: x.final_loss for x in recs}
    assert losses[1] == losses[2]
    dry = run_cli(*common, "dry_run=true", timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "2 cells (2 already final, 0 to run): 0.00e+00 FLOPs, about 0 s" in dry.stdout
    assert dry.stdout.count(" final") >= 2  # each final cell's row says so
    again = run_cli(*common, timeout=120)
    assert again.returncode == 0 and f"nothing to run: every cell is final; next: proxyscale report {sweep}" in again.stdout + again.stderr


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


GRID = ["-m", "model=debug", "data=balanced,noisy", "optim.lr=3e-3,1e-2", "sweep=rel", *FAST]


def _records(sweep):
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}


@pytest.mark.slow
def test_sigkill_midway_then_two_processes_finish_the_sweep_each_cell_once_and_finished_cells_never_again(out_dir, cache_dir):
    """A sweep killed midway (SIGKILL: no handler runs) leaves its final records whole; two processes then started on
    the same sweep train each remaining cell exactly once between them (the cell lock) and neither touches a final one."""
    args = [PROXYSCALE, *GRID, f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sweep = out_dir / "rel"
    deadline = time.time() + 300
    while time.time() < deadline and len(_records(sweep)) < 1:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {k: v for k, v in _records(sweep).items() if v["status"] == "completed"}
    assert 1 <= len(done_before) < 4, "kill the sweep midway"
    stamps = {k: (sweep / k / "result.json").stat().st_mtime_ns for k in done_before}
    assert not list(sweep.glob("*/.result.json.*.tmp")), "a partial record is left"

    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(o.count(" start\n") for o in outs) == 4 - len(done_before), outs  # each remaining cell trained by one of the two
    after = _records(sweep)
    assert len(after) == 4 and {v["status"] for v in after.values()} == {"completed"}
    assert {k: (sweep / k / "result.json").stat().st_mtime_ns for k in done_before} == stamps
    assert any(f"{len(done_before)} already final, {4 - len(done_before)} to run" in o for o in outs), outs


def _run_ids(*overrides):
    from proxyscale import grid

    return [c.run_id for c in grid.compose_grid(["-m", *overrides])[0]]


@pytest.mark.slow  # trains (in this process)
def test_a_record_that_cannot_be_written_is_a_non_zero_exit_with_one_line(out_dir, cache_dir, capsys):
    args = ["-m", "model=debug", "optim.lr=2e-2,3e-2", "sweep=unwritable", *FAST, f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    plan = run_main(capsys, *args, "dry_run=true")
    blocked = next(line.split()[0] for line in plan.stdout.splitlines() if line.startswith("debug-balanced-lr0.02"))
    (out_dir / "unwritable" / blocked / "result.json").mkdir(parents=True)  # a directory in the way
    r = run_main(capsys, *args)
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("proxyscale: error: 1 of 2 cells could not write their record (IsADirectoryError: "), last
    assert last.endswith(f"(see proxyscale status {out_dir / 'unwritable'})")
    assert len(list((out_dir / "unwritable").glob("*/result.json"))) == 2  # the other cell's record is there (and the dir)


@pytest.mark.slow  # trains (in this process)
def test_a_failed_cell_is_a_non_zero_exit_unless_asked(out_dir, cache_dir, capsys):
    args = [
        "-m",
        "model=debug",
        "sweep=crash",
        *FAST,
        f"paths.output_dir={out_dir}",
        f"paths.cache_dir={cache_dir}",
        "data.steps=[{op: quality_filter, min_chars: 100000000}]",
    ]
    r = run_main(capsys, *args)  # curation keeps no document: the cell fails when it builds its pool
    assert r.returncode == 1, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == f"proxyscale: error: 1 of 1 cells failed (see proxyscale status {out_dir / 'crash'})"


def _watch(proc, needle: str, timeout: float = 240) -> str:
    """Read the process's merged output until `needle` appears."""
    seen, deadline = "", time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never appeared:\n{seen[-3000:]}")


@pytest.mark.slow  # shells out to the CLI and trains
def test_killing_only_the_parent_of_a_two_worker_sweep_stops_its_workers(out_dir, cache_dir):
    args = [
        "-m",
        "model=debug",
        "optim.lr=2e-2,3e-2",
        "sweep=orphans",
        "hydra.launcher.n_jobs=2",
        *FAST,
        "trainer.max_tokens=2000000",
        f"paths.output_dir={out_dir}",
        f"paths.cache_dir={cache_dir}",
    ]
    proc = subprocess.Popen([PROXYSCALE, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _watch(proc, "step 4/")
    workers = descendants(proc.pid)
    assert workers
    proc.kill()  # the parent only, not its process group
    proc.wait()
    assert not survivors(workers, within_s=20), "workers outlived their parent"


def test_status_survives_a_corrupt_grid_json_and_tells_running_interrupted_and_pending_apart(tmp_path, capsys):
    from filelock import FileLock

    from proxyscale.launch.status import cell_states, status_table

    sweep = tmp_path / "s"
    for rid in ("run", "int", "pend"):
        (sweep / rid).mkdir(parents=True)
    for rid in ("run", "int"):
        (sweep / rid / "config.yaml").write_text("{}")
        (sweep / rid / ".lock").write_text("")
    (sweep / "grid.json").write_text(json.dumps({"cells": {"run": [], "int": [], "pend": []}}))
    lock = FileLock(str(sweep / "run" / ".lock"))
    with lock:  # a process trains "run"; "int" was started, then killed
        rows, note = cell_states(sweep, scheduler=False)
    assert {r["run_id"]: r["state"] for r in rows} == {"run": "running", "int": "interrupted", "pend": "pending"}
    assert status_table(rows, note).splitlines()[-1] == "3 cells: 1 pending, 1 running, 1 interrupted"
    (sweep / "grid.json").write_text('{"cells": {"run": [')  # torn
    r = run_main(capsys, "status", str(sweep), "--no-scheduler")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "grid.json is unreadable (JSONDecodeError)" in r.stdout and "2 cells: 2 interrupted" in r.stdout, r.stdout


def _cfg(out_dir, cache_dir, *extra):
    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        return compose("config", overrides=["model=debug", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}", *FAST, *extra])


def test_a_command_run_again_in_one_process_answers_for_its_own_cells(out_dir, capsys, monkeypatch):
    """main() twice in one process (a notebook, the tests): a single run's exit status is its own cell's, not an earlier
    command's failed cell (local.OUTCOMES is cleared per command). The cell is final here, so nothing trains."""
    args = ["model=debug", "sweep=again", f"paths.output_dir={out_dir}"]
    (cell,), _ = grid.compose_grid(args)
    record.write(out_dir / "again" / cell.run_id, stub_record(run_id=cell.run_id, sweep="again", status="completed"))
    monkeypatch.setattr(local, "OUTCOMES", ["failed"])  # what an earlier command in this process left
    r = run_main(capsys, *args)
    assert r.returncode == 0 and "skip: already completed" in r.stdout + r.stderr, r.stderr[-2000:]


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
