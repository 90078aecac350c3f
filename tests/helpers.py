"""Shared test helpers: the real CLI in a subprocess, fast-cell overrides, folder snapshots.
(A plain module, not conftest.py: tests/slurm has its own conftest and both would be `conftest`.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROXYSCALE = str(Path(sys.executable).with_name("proxyscale"))

# A cell that trains in a few seconds: the debug size, 12 steps, small eval sets.
RECORD_TOL = 1e-5  # a multi-process cell vs the same cell on one process: float reduction order only (docs/targets.md)
FAST = ["trainer.max_tokens=49152", "eval.tokens_per_set=2048", "eval.every_n_steps=4", "data.pool_tokens=200000", "trainer.threads=1"]


def conf_options(group: str) -> list[str]:
    """The option names of a conf/ group (its yaml files), sorted."""
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([PROXYSCALE, *args], cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder with its bytes: to assert a failed command touched nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def preempt_at(monkeypatch, step: int):
    """Make in-process training raise at `step`, like a preemption; returns the undo."""
    from proxyscale.job.module import Monitor

    original = Monitor.on_train_batch_end

    def hook(self, trainer, *args):
        original(self, trainer, *args)
        if trainer.global_step == step:
            raise RuntimeError("preempted")

    monkeypatch.setattr(Monitor, "on_train_batch_end", hook)
    return lambda: monkeypatch.setattr(Monitor, "on_train_batch_end", original)


def stub_record(**values):
    """A Record for tests that write records by hand: empty measurements for every field they do not set."""
    from proxyscale import record

    base = dict(run_id="r", sweep="s", status="completed", size="debug", params=1, recipe="balanced", lr=1e-3, seed=0, tokens=0, steps=0,
                final_loss={}, eval_curve=[], train_curve=[], wall_seconds=0.0, train_seconds=0.0, tokens_per_second=0.0,
                flops_per_token=0.0, tokenizer="byte", config={}, versions={})  # fmt: skip
    return record.Record(**{**base, **values})


CHROMIUM = "/usr/bin/chromium"


def screenshot(page: Path, shot: Path, profile: Path, window: str, *extra: str) -> subprocess.CompletedProcess:
    """A headless Chromium screenshot of a local page (no network, a throwaway profile)."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", *extra]  # fmt: skip
    cmd = [CHROMIUM, *flags, f"--user-data-dir={profile}", f"--screenshot={shot}", f"--window-size={window}", page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def records_by_devices(sweep: Path) -> dict[int, dict]:
    """The sweep's records by process count."""
    out = {}
    for p in sweep.glob("*/result.json"):
        rec = json.loads(p.read_text())
        rec["_dir"] = p.parent
        out[rec["config"]["trainer"]["devices"]] = rec
    return out


def _measured(rec: dict) -> dict[str, float]:
    out = {f"final/{k}": v for k, v in rec["final_loss"].items()}
    out.update({f"final/{s}/{m}": v for s, ms in (rec["final_metrics"] or {}).items() for m, v in ms.items()})
    for p in rec["eval_curve"]:
        out.update({f"eval@{p['step']}/{k}": v for k, v in p["loss"].items()})
        out.update({f"eval@{p['step']}/{s}/{m}": v for s, ms in (p.get("metrics") or {}).items() for m, v in ms.items()})
    out.update({f"train@{p['step']}": p["loss"] for p in rec["train_curve"]})
    return out


def assert_same_record(one: dict, two: dict) -> float:
    """Every measured number of the two records within RECORD_TOL (the per-example file included); returns the max abs difference."""
    import numpy as np
    import pandas as pd

    assert (one["status"], one["steps"], one["tokens"]) == (two["status"], two["steps"], two["tokens"]) == ("completed", one["steps"], one["tokens"])
    a, b = _measured(one), _measured(two)
    assert a.keys() == b.keys() and len(a) > 10, sorted(a.keys() ^ b.keys())
    diff = max(abs(a[k] - b[k]) for k in a)
    assert diff <= RECORD_TOL, {k: (a[k], b[k]) for k in a if abs(a[k] - b[k]) > RECORD_TOL}
    assert one["examples_file"] == two["examples_file"] == "examples.parquet"
    ea, eb = (pd.read_parquet(r["_dir"] / r["examples_file"]) for r in (one, two))
    assert len(ea) == len(eb) and (ea["eval_set"].astype(str) == eb["eval_set"].astype(str)).all() and (ea["example"] == eb["example"]).all()
    for col in ("loss", "value"):
        if col in ea:
            x, y = ea[col].to_numpy(), eb[col].to_numpy()
            assert (np.isnan(x) == np.isnan(y)).all()
            diff = max(diff, float(np.nanmax(np.abs(x - y))))
    assert diff <= RECORD_TOL
    return diff


def run_main(capsys, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """proxyscale.cli.main in this process (no interpreter and import start-up, 3-6 CPU s a call): its exit
    status and what it printed (log lines on stderr, as in the command), like run_cli. What main() changes
    in the process (sys.argv, signal handlers, environment, Hydra's global state, root logging, gc.freeze,
    torch's thread count) is put back afterwards. capsys=None (a module-scoped fixture has none) captures
    sys.stdout/sys.stderr itself."""
    import contextlib
    import gc
    import io
    import logging
    import signal
    from unittest import mock

    from hydra.core.global_hydra import GlobalHydra

    from proxyscale import cli as entry

    argv, handlers = sys.argv[:], {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    root = logging.getLogger()
    root_state = (root.handlers[:], root.level)
    with contextlib.ExitStack() as stack:
        if capsys is None:
            out_buf, err_buf = io.StringIO(), io.StringIO()
            stack.enter_context(contextlib.redirect_stdout(out_buf))
            stack.enter_context(contextlib.redirect_stderr(err_buf))
        else:
            capsys.readouterr()
        handler = logging.StreamHandler(sys.stderr)  # what main()'s logging.basicConfig gives a fresh process: log lines on stderr
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        code = 0
        with mock.patch.dict(os.environ, env or {}):
            try:
                entry.main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
            finally:
                gc.unfreeze()
                sys.argv[:] = argv
                for s, h in handlers.items():
                    signal.signal(s, h)
                root.handlers[:] = root_state[0]
                root.setLevel(root_state[1])
                GlobalHydra.instance().clear()
                if threads is not None:
                    sys.modules["torch"].set_num_threads(threads)
    out, err = (out_buf.getvalue(), err_buf.getvalue()) if capsys is None else capsys.readouterr()
    return subprocess.CompletedProcess(["proxyscale", *args], code, out, err)
