"""A multi-process cell against the one-process cell (`python -m bench ranks`): the same debug cell with the lm
and the benchmark task sets (eval=tasks_local) on 1 and on 2 CPU processes (ddp and fsdp, gloo), and stopped at its
first checkpoint on one count then resumed on the other (ddp: 1 then 2, 2 then 1; fsdp: 2 then 2), through the CLI; the max abs difference of
every measured number of each record from the one-process record (eval losses, task metrics, eval curve, train
curve, per-example losses and metrics) and the wall time of each, side by side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import save, table

ROOT = Path(__file__).resolve().parents[1]
FAST = ["model=debug", "trainer.max_tokens=49152", "eval.tokens_per_set=2048", "eval.every_n_steps=4", "data.pool_tokens=200000", "trainer.threads=1"]


def _numbers(rec: dict) -> dict[str, dict[str, float]]:
    """A record's measured numbers by kind."""
    out = {"final eval loss": dict(rec["final_loss"]), "final task metrics": {}, "eval curve": {}, "train curve": {}}
    out["final task metrics"] = {f"{s}/{m}": v for s, ms in (rec["final_metrics"] or {}).items() for m, v in ms.items()}
    for p in rec["eval_curve"]:
        out["eval curve"].update({f"{p['step']}/{k}": v for k, v in p["loss"].items()})
        out["eval curve"].update({f"{p['step']}/{s}/{m}": v for s, ms in (p.get("metrics") or {}).items() for m, v in ms.items()})
    out["train curve"] = {str(p["step"]): p["loss"] for p in rec["train_curve"]}
    return out


def _placed(n: int, strategy: str = "ddp") -> list[str]:
    return [f"trainer.devices={n}"] + ([f"trainer.strategy={strategy}"] if n > 1 else [])


def _cli(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "proxyscale", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _interrupted(args: list[str], sweep: Path, env: dict) -> None:
    """The cell stopped by SIGTERM once its first checkpoint (step 4) is written, as a preemption would stop it."""
    proc = _cli(args, env)
    for line in proc.stdout:
        if "step 4/12" in line:
            break
    ckpt = next(sweep.glob("*/config.yaml")).parent / "checkpoints" / "last.ckpt"
    while not ckpt.exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=300)[0]
    if proc.returncode != 143:
        raise RuntimeError(f"the interrupted cell exited {proc.returncode}: {rest[-2000:]}")


def _diffs(one: tuple, other: tuple) -> dict[str, float]:
    """Max abs difference of every measured number of two (record, per-example table) pairs, by kind."""
    (r1, ex1), (r2, ex2) = one, other
    a, b = _numbers(r1), _numbers(r2)
    out = {kind: max(abs(a[kind][k] - b[kind][k]) for k in a[kind]) for kind in a if a[kind]}
    for col, kind in (("loss", "per-example losses"), ("value", "per-example task metrics")):
        out[kind] = float(np.nanmax(np.abs(ex1[col].to_numpy() - ex2[col].to_numpy())))
    return out


def main() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    recs, seconds = {}, {}
    runs = {
        "2 processes": ([2], None, "ddp"),
        "1 then 2, resumed": ([1, 2], "move12", "ddp"),
        "2 then 1, resumed": ([2, 1], "move21", "ddp"),
        "2 processes fsdp": ([2], "fsdp", "fsdp"),
        "fsdp 2 then 2, resumed": ([2, 2], "fsdp22", "fsdp"),
    }
    with tempfile.TemporaryDirectory(prefix="bench-ranks-") as tmp:
        common = [*FAST, "eval=tasks_local", "trainer.log_every_n_steps=1", f"paths.output_dir={tmp}", f"paths.cache_dir={Path(tmp) / 'cache'}"]
        for name, (counts, sweep, strategy) in [("1 process", ([1], None, "ddp")), *runs.items()]:
            sweep = sweep or f"ranks{counts[0]}"  # (one cell on any process count: a sweep each)
            args = [*common, f"sweep={sweep}"]
            t0 = time.perf_counter()
            if len(counts) > 1:
                _interrupted([*args, *_placed(counts[0], strategy)], Path(tmp, sweep), env)
            r = subprocess.run([sys.executable, "-m", "proxyscale", *args, *_placed(counts[-1], strategy)], cwd=ROOT, env=env, capture_output=True, text=True)
            seconds[name] = time.perf_counter() - t0
            if r.returncode:
                raise RuntimeError(f"{name}: exited {r.returncode}: {r.stderr[-2000:]}")
            (p,) = Path(tmp, sweep).glob("*/result.json")
            rec = json.loads(p.read_text())
            recs[name] = (rec, pd.read_parquet(p.parent / rec["examples_file"]))
    one = recs["1 process"]
    diffs = {name: _diffs(one, recs[name]) for name in runs}
    counts = {kind: len(v) for kind, v in _numbers(one[0]).items()}
    for col, kind in (("loss", "per-example losses"), ("value", "per-example task metrics")):
        counts[kind] = int(np.isfinite(one[1][col].to_numpy()).sum())
    rows = [(kind, str(counts[kind]), *(f"{diffs[name][kind]:.2e}" for name in runs)) for kind in diffs["2 processes"]]
    print(table(("max abs diff vs 1 process", "values", *runs), rows))
    placed = {name: [(p["step"], p["world_size"]) for p in recs[name][0]["placements"]] for name in runs}
    print("requeues, (step, processes) of each run: " + "; ".join(f"{name}: {recs[name][0]['requeues']}, {placed[name]}" for name in runs))
    print("wall: " + ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items()) + " (the 12-step debug cell, CLI start included)")
    out = {"max_abs_diff": diffs, "seconds": seconds}
    save("ranks", out)
    return out


if __name__ == "__main__":
    main()
