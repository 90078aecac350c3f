"""Fault injection on real sweeps: SIGKILL midway, two processes on one sweep folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from faults import alive, descendants

from helpers import FAST, PROXYSCALE, ROOT, run_cli, snapshot

GRID = ["-m", "model=debug", "data=balanced,noisy", "optim.lr=3e-3,1e-2", "sweep=rel", *FAST]


def _records(sweep):
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}


@pytest.mark.slow
def test_sigkill_midway_then_rerun_completes_without_rerunning_finished_cells(out_dir, cache_dir):
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

    r = run_cli(*GRID, f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}")
    assert r.returncode == 0, r.stderr[-2000:]
    after = _records(sweep)
    assert len(after) == 4 and {v["status"] for v in after.values()} == {"completed"}
    assert {k: (sweep / k / "result.json").stat().st_mtime_ns for k in done_before} == stamps
    assert f"{len(done_before)} already final, {4 - len(done_before)} to run" in r.stderr + r.stdout


@pytest.mark.slow
def test_two_processes_on_one_sweep_train_each_cell_once(out_dir, cache_dir):
    args = [PROXYSCALE, *GRID, f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    starts = sum(o.count(" start\n") for o in outs)
    assert starts == 4, outs  # each cell trained by exactly one of the two processes
    recs = _records(out_dir / "rel")
    assert len(recs) == 4 and {v["status"] for v in recs.values()} == {"completed"}


# ---- issue 14: the exit status tells the truth ------------------------------------------------


def _run_ids(*overrides):
    from proxyscale import grid

    return [c.run_id for c in grid.compose_grid(["-m", *overrides])[0]]


@pytest.mark.slow  # shells out to the CLI and trains
def test_a_record_that_cannot_be_written_is_a_non_zero_exit_with_one_line(out_dir, cache_dir):
    args = ["-m", "model=debug", "optim.lr=2e-2,3e-2", "sweep=unwritable", *FAST, f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    plan = run_cli(*args, "dry_run=true")  # the ids the CLI itself plans (its process's environment is the one that trains)
    blocked = next(line.split()[0] for line in plan.stdout.splitlines() if line.startswith("debug-balanced-lr0.02"))
    (out_dir / "unwritable" / blocked / "result.json").mkdir(parents=True)  # a directory in the way
    r = run_cli(*args)
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("proxyscale: error: 1 of 2 cells could not write their record (IsADirectoryError: "), last
    assert last.endswith(f"(see proxyscale status {out_dir / 'unwritable'})")
    assert len(list((out_dir / "unwritable").glob("*/result.json"))) == 2  # the other cell's record is there (and the dir)


@pytest.mark.slow  # shells out to the CLI and trains
def test_a_failed_cell_is_a_non_zero_exit_unless_asked(out_dir, cache_dir):
    args = [
        "-m",
        "model=debug",
        "sweep=crash",
        *FAST,
        f"paths.output_dir={out_dir}",
        f"paths.cache_dir={cache_dir}",
        "data.repeat=false",
        "data.steps=[{op: select_like, keep_frac: 1e-9}]",
    ]
    r = run_cli(*args)  # the pool asks for more tokens than curation leaves: the cell fails when it builds
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
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_training_exits_128_plus_signal_and_the_rerun_resumes(out_dir, cache_dir, sig, code):
    args = ["-m", "model=debug", "sweep=sig", *FAST, "trainer.max_tokens=120000", f"paths.output_dir={out_dir}", f"paths.cache_dir={cache_dir}"]
    proc = subprocess.Popen([PROXYSCALE, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _watch(proc, "step 8/")  # two checkpoints written
    proc.send_signal(sig)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == code, rest[-2000:]
    name = signal.Signals(sig).name
    assert rest.strip().splitlines()[-1] == f"proxyscale: error: interrupted by {name}: 1 of 1 cells not finished (rerun the same command to resume)"
    if sig == signal.SIGTERM:
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr[-2000:]
        (rec,) = _records(out_dir / "sig").values()
        assert rec["status"] == "completed" and rec["requeues"] == 1


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
    deadline = time.time() + 20
    while time.time() < deadline and any(alive(p) for p in workers):
        time.sleep(0.2)
    assert not [p for p in workers if alive(p)], "workers outlived their parent"


# ---- issue 24.1: a sweep has one identity ----------------------------------------------------

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


def test_a_changed_standard_lr_or_budget_into_the_same_sweep_is_one_line_exit_2(out_dir):
    _plan_into(out_dir, *TWO_LRS)
    before = snapshot(out_dir)
    for extra, line in (
        (["standard_lr=1e-2"], "sweep ident: standard_lr=0.01 but {grid} states 0.003 (optim.lr of the sweep's base config"),
        (["trainer.max_tokens=98304"], "sweep ident: trainer.max_tokens is 49152 in {grid}, this command makes it 98304;"),
    ):
        for dry in ([], ["dry_run=true"]):
            r = run_cli("-m", *TWO_LRS, *extra, *dry, f"paths.output_dir={out_dir}")
            assert r.returncode == 2, r.stderr[-2000:]
            err = r.stderr.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("proxyscale: error: " + line.format(grid=out_dir / "ident" / "grid.json")), err
    assert snapshot(out_dir) == before, "a refused command changed the sweep"
    assert run_cli("-m", *TWO_LRS, "optim.lr=3e-3,1e-2,3e-2", "dry_run=true", f"paths.output_dir={out_dir}").returncode == 0  # a wider axis is fine


def test_an_edited_recipe_supersedes_its_cells_whatever_the_override_order(out_dir):
    first, _ = _plan_into(out_dir, "model=debug", "data=noisy", "optim.lr=3e-3", "sweep=ident", *FAST)
    edited = ["optim.lr=3e-3", "data.sources.0.weight=0.9", "sweep=ident", "data=noisy", "model=debug", *reversed(FAST)]  # as a YAML edit would
    again, _ = _plan_into(out_dir, *edited)
    assert first[0].run_id != again[0].run_id
    assert set(_grid_doc(out_dir)["cells"]) == {again[0].run_id}, "both definitions of one cell stay in the grid (and are averaged)"
    same, _ = _plan_into(out_dir, *reversed(["model=debug", "data=noisy", "optim.lr=3e-3", "sweep=ident", *FAST]), write=False)
    assert same[0].run_id == first[0].run_id  # the run id never depends on the order


def test_the_report_lists_missing_grid_cells_and_what_they_change(tmp_path):
    from test_report import synthetic_sweep

    root = tmp_path / "syn"
    df = synthetic_sweep(root)
    cells = {r.run_id: [] for r in df.drop_duplicates("run_id").itertuples()}
    keys = {r.run_id: [r.size, r.recipe, r.lr, r.seed] for r in df.drop_duplicates("run_id").itertuples()}
    for seed in (0, 1):  # the target's third LR for rec1: asked for, never run
        cells[f"lost-{seed}"], keys[f"lost-{seed}"] = [], ["small", "rec1", 1e-2, seed]
    cells["gone"], keys["gone"] = [], ["small", "rec2", 1e-3, 2]  # a third seed, deleted
    (root / "grid.json").write_text(json.dumps({"cells": cells, "keys": keys, "standard_lr": 3e-3, "standard_lr_source": "test"}))
    r = run_cli("report", str(root))
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((root / "report.json").read_text())
    miss = rep["missing_cells"]
    assert miss["n"] == 3 and miss["n_grid"] == len(cells) and {c["run_id"] for c in miss["cells"]} == {"lost-0", "lost-1", "gone"}
    assert "small: recipe rec1 tuned over 2 of 3 LRs (without 0.01), so its best LR may differ" in miss["effects"]
    assert "small: recipe rec2 at lr 0.001 averaged over 2 of 3 seeds" in miss["effects"]
    assert "every cell completed." not in rep["notes"]
    md = (root / "report.md").read_text()
    assert f"3 of {len(cells)} grid cells have no final record" in md and "tuned over 2 of 3 LRs" in md
    assert any(f"3 of {len(cells)} grid cells have no final record" in line for line in r.stdout.splitlines()), r.stdout  # the bottom line says it


# ---- issue 24.2: local data files enter run ids and cache keys by content --------------------


def _edit_in_place(path, old: str, new: str):
    """Same size, same mtime: only the bytes differ."""
    st = path.stat()
    text = path.read_text()
    assert len(old) == len(new) and old in text
    path.write_text(text.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_local_data_file_edited_in_place_is_another_run_id_and_cache(tmp_path, out_dir):
    from omegaconf import OmegaConf

    from proxyscale import grid
    from proxyscale.config import SourceConfig
    from proxyscale.data import cache

    text = "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun. " * 40
    ev, tr = tmp_path / "eval.jsonl", tmp_path / "train.jsonl"
    ev.write_text("\n".join(json.dumps({"text": f"held out {i}: {text}"}) for i in range(20)))
    tr.write_text("\n".join(json.dumps({"text": f"{text} train {i}"}) for i in range(20)))
    args = [
        "-m",
        "model=debug",
        f"eval.sets=[{{name: e, kind: files, path: '{ev}'}}]",
        f"data.sources.0={{name: prose, kind: files, path: '{tr}', weight: 1.0}}",
        f"paths.output_dir={out_dir}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    ids = lambda: grid.compose_grid(args)[0][0].run_id  # noqa: E731
    src = OmegaConf.structured(SourceConfig(name="e", kind="files", path=str(ev)))
    first, first_eval = ids(), cache.eval_tokens(src, "byte", 2048, str(tmp_path / "cache"))[1]["key"]
    _edit_in_place(ev, "held out 3:", "HELD OUT 3:")
    second = ids()
    tokens, meta = cache.eval_tokens(src, "byte", 2048, str(tmp_path / "cache"))
    assert second != first, "an edited eval file kept its run id"
    assert meta["key"] != first_eval and b"HELD OUT" in np.asarray(tokens).astype(np.uint8).tobytes(), "the stale eval cache was served"
    _edit_in_place(tr, "train 5", "TRAIN 5")
    assert ids() not in (first, second), "an edited training file kept its run id"
    assert ids() == ids()  # stable while the files stay


def test_a_files_fingerprint_is_hashed_once_per_content(tmp_path, monkeypatch):
    from proxyscale.data import sources

    path = tmp_path / "a.txt"
    path.write_text("some text " * 100)
    src = {"kind": "files", "path": str(path), "name": "a"}
    hashed = []
    real = sources._hash_file
    monkeypatch.setattr(sources, "_hash_file", lambda *a: hashed.append(a) or real(*a))
    fp = sources.files_fingerprint(src, str(tmp_path / "c"))
    assert sources.files_fingerprint(src, str(tmp_path / "c")) == fp and len(hashed) == 1
    monkeypatch.setattr(sources, "_DIGESTS", {})  # a new process: the memo in the cache folder serves it
    assert sources.files_fingerprint(src, str(tmp_path / "c")) == fp and len(hashed) == 1
    path.write_text("other text " * 100)
    assert sources.files_fingerprint(src, str(tmp_path / "c")) != fp and len(hashed) == 2


# ---- issue 24.3: report files, collect's tables and mixfit's pages are replaced as a set -------


def _report_set(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and (p.name.startswith(("report.", "fig_")))}


def _standard_lr_of_set(folder) -> set:
    """The standard LR each file of the report set shows: one value when the set is whole."""
    lr = json.loads((folder / "report.json").read_text())["reduced_lr"]["standard_lr"]
    shown = {lr}
    for name in ("report.md", "report.html"):
        text = (folder / name).read_text()
        shown |= {v for v in (1e-3, 3e-3) if f"standard LR {v:g}" in text}
    return shown


def test_a_report_on_a_full_disk_leaves_the_old_report_whole_and_says_so(tmp_path):
    from faults import fill, small_disk
    from test_report import synthetic_sweep

    with small_disk(tmp_path / "disk") as disk:
        root = disk / "syn"
        synthetic_sweep(root)
        assert run_cli("report", str(root), "--standard-lr", "1e-3").returncode == 0
        old = _report_set(root)
        fill(disk)
        r = run_cli("report", str(root), "--standard-lr", "3e-3")
        assert r.returncode == 2, r.stderr[-2000:]
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith("proxyscale: error: report not written: No space left on device")
        assert line.endswith(f"the previous report in {root}, if any, is intact")
        assert _report_set(root) == old and not list(root.glob(".report.tmp-*"))
        (disk / "filler").unlink()


@pytest.mark.slow
def test_sigterm_mid_report_leaves_one_whole_set(tmp_path):
    from test_report import synthetic_sweep

    root = tmp_path / "syn"
    synthetic_sweep(root)
    assert run_cli("report", str(root), "--standard-lr", "1e-3").returncode == 0
    assert _standard_lr_of_set(root) == {1e-3}
    for delay in (0.0, 0.3, 1.0):  # after the report starts writing (its first file or its staging folder appears)
        stamp = (root / "report.json").stat().st_mtime_ns
        proc = subprocess.Popen([PROXYSCALE, "report", str(root), "--standard-lr", "3e-3"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and (root / "report.json").stat().st_mtime_ns == stamp and not list(root.glob(".report.tmp-*")):
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        assert len(_standard_lr_of_set(root)) == 1, f"a mixed report set after SIGTERM {delay} s into the write"
    r = run_cli("report", str(root), "--standard-lr", "1e-3")
    assert r.returncode == 0 and _standard_lr_of_set(root) == {1e-3} and not list(root.glob(".report.tmp-*"))


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


# ---- issue 24.4: mixfit never overwrites, never shadows, never proposes from chance ------------


def _mixfit_result(seed=0, noise=False, n=20):
    from test_mixfit import synthetic

    from proxyscale import mixfit

    weights, losses = synthetic(n=n, seed=seed)
    if noise:  # losses that do not depend on the weights at all
        losses["value"] = 3.0 + np.random.default_rng(1000 + seed).normal(0, 0.05, len(losses))
    return mixfit.fit_mixtures(losses, weights, models=("linear",), n_samples=500, top_k=8, seed=seed), weights, losses


def test_mixfit_write_recipe_never_overwrites_or_shadows_a_recipe(tmp_path):
    from proxyscale import mixfit

    res, _, _ = _mixfit_result()
    assert res["proposal"]["better_than_chance"]
    path = mixfit.write_recipe(res, "mine", "balanced", out_dir=tmp_path)
    path.write_text(path.read_text() + "# my hand edit\n")
    with pytest.raises(mixfit.MixfitError, match=r"mine.yaml exists \(a hand edit would be lost\); choose another name, or --force"):
        mixfit.write_recipe(res, "mine", "balanced", out_dir=tmp_path)
    assert "# my hand edit" in path.read_text()
    mixfit.write_recipe(res, "mine", "balanced", out_dir=tmp_path, force=True)
    assert "# my hand edit" not in path.read_text()
    for builtin in ("balanced", "noisy"):
        with pytest.raises(mixfit.MixfitError, match=f"recipe {builtin} exists .*conf/data/{builtin}.yaml"):
            mixfit.write_recipe(res, builtin, "balanced", out_dir=tmp_path, force=True)
        assert not (tmp_path / f"{builtin}.yaml").exists()


def test_mixfit_refuses_a_csv_with_a_repeated_column(tmp_path):
    from test_mixfit import _cli, _files, synthetic

    weights, losses = synthetic(n=12)
    w, lo = _files(tmp_path, weights, losses)
    w.write_text(w.read_text().replace("recipe,prose,code,readme", "recipe,prose,code,code", 1))
    r = _cli("--from-csv", lo, "--mixtures", w, "--models", "linear", "--samples", "500", "--top-k", "8", "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"proxyscale: error: {w}: column 'code' appears 2 times in the header; name each column once"
    ]


def test_mixfit_marks_a_proposal_from_a_model_no_better_than_chance():
    """Calibration: losses independent of the weights (known answer: no signal) are marked in about CHANCE_P of seeds at
    most; a real linear law is never marked."""
    from proxyscale import mixfit

    trusted = [_mixfit_result(seed=s, noise=True)[0]["proposal"]["better_than_chance"] for s in range(40)]
    assert sum(trusted) <= 6, f"{sum(trusted)} of 40 pure-noise fits trusted"  # binomial(40, 0.05): P(> 6) < 1%
    assert all(_mixfit_result(seed=s)[0]["proposal"]["better_than_chance"] for s in range(5))
    res = next(r for r, _, _ in (_mixfit_result(seed=s, noise=True) for s in range(40)) if not r["proposal"]["better_than_chance"])
    assert res["proposal"]["warnings"][0].startswith("not better than chance: linear ranks the out-of-fold mixtures with Spearman")
    with pytest.raises(mixfit.MixfitError, match="no recipe written, the proposal is not better than chance"):
        mixfit.write_recipe(res, "never_written", "balanced")


def test_mixfit_says_when_its_proposal_is_predicted_worse_than_the_best_observed_mixture():
    from test_mixfit import synthetic

    from proxyscale import mixfit

    weights, losses = synthetic(n=20)
    best = losses["value"].idxmax()  # the worst mixture by the law, observed far better than any: the law cannot reach it
    losses.loc[best, "value"] = losses["value"].min() - 1.0
    prop = mixfit.fit_mixtures(losses, weights, models=("linear",), n_samples=500, top_k=8)["proposal"]
    assert prop["worse_than_observed"]
    assert any(
        w.startswith("the proposal's predicted prose_val") and f"worse than the best observed mixture {losses.loc[best, 'recipe']}" in w
        for w in prop["warnings"]
    )


# ---- issue 24.5: what a new user does by mistake is honoured or refused --------------------------


def test_a_debug_preset_keeps_an_asked_model_and_a_grids_model_axis():
    from proxyscale import grid

    (cell,), _ = grid.compose_grid(["debug=fast", "model=tiny"])
    assert cell.view.model.name == "tiny" and cell.view.trainer.max_tokens == 49152  # the preset's budget, the asked size
    (alone,), _ = grid.compose_grid(["debug=fast"])
    assert alone.view.model.name == "debug" and alone.view.trainer.max_tokens == 49152
    cells, _ = grid.compose_grid(["-m", "grid=smoke", "debug=fast"])
    assert len(cells) == 8 and {c.view.model.name for c in cells} == {"debug", "tiny"}


def test_config_dir_keeps_dry_run(tmp_path, out_dir):
    extra = tmp_path / "extra"
    extra.mkdir()
    for args in (["-m", "model=debug", "optim.lr=1e-3,3e-3"], ["model=debug"]):
        r = run_cli("--config-dir", str(extra), *args, "dry_run=true", f"paths.output_dir={out_dir}", "sweep=cd")
        assert r.returncode == 0, r.stderr[-2000:]
        assert "est. CPU time" in r.stdout, r.stdout
        assert not list((out_dir / "cd").rglob("result.json")) and not (out_dir / "cd" / "grid.json").exists(), "a dry run trained or wrote"


def test_a_task_file_with_a_byte_order_mark_is_read(tmp_path):
    from omegaconf import OmegaConf

    from proxyscale.config import SourceConfig
    from proxyscale.data import sources

    path = tmp_path / "t.jsonl"
    path.write_text('{"context": "a", "choices": ["x", "y"], "label": 1}\n', encoding="utf-8-sig")
    src = OmegaConf.structured(SourceConfig(name="t", kind="files", path=str(path), task="mc"))
    sources.check_source(src)
    assert [i.label for i in sources.load_items(src)] == [1]


def test_an_unwritable_output_cache_or_wandb_folder_is_one_line_before_anything_runs(tmp_path, out_dir, cache_dir):
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
            r = run_cli(*args)
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 2 and lines[-1].startswith(f"proxyscale: error: {start}"), r.stderr[-2000:]
            assert len(lines) == 1 or args[0] == "report", r.stderr  # (the report's warnings on the synthetic tables come first)
    assert not out_dir.exists() or not list(out_dir.rglob("result.json"))


def test_status_survives_a_corrupt_grid_json_and_tells_running_interrupted_and_pending_apart(tmp_path):
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
    r = run_cli("status", str(sweep), "--no-scheduler")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "grid.json is unreadable (JSONDecodeError)" in r.stdout and "2 cells: 2 interrupted" in r.stdout, r.stdout
