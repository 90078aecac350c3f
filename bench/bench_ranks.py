"""A multi-process cell against the one-process cell (`python -m bench ranks`): the same debug cell with the lm
and the benchmark task sets (eval=tasks_local) on 1 and on 2 CPU processes (ddp, gloo), through the CLI; the max
abs difference of every measured number of the two records (eval losses, task metrics, eval curve, train curve,
per-example losses and metrics) and the wall time of each command, side by side.
"""

from __future__ import annotations

import json
import os
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


def main() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    recs, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-ranks-") as tmp:
        for n in (1, 2):
            args = [*FAST, "eval=tasks_local", "trainer.log_every_n_steps=1", f"trainer.devices={n}", f"sweep=ranks{n}", f"paths.output_dir={tmp}"]
            args += [f"paths.cache_dir={Path(tmp) / 'cache'}"] + (["trainer.strategy=ddp"] if n > 1 else [])
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "proxyscale", *args], cwd=ROOT, env=env, capture_output=True, text=True)
            seconds[n] = time.perf_counter() - t0
            if r.returncode:
                raise RuntimeError(f"{n}-process cell exited {r.returncode}: {r.stderr[-2000:]}")
        for p in Path(tmp).glob("ranks*/*/result.json"):  # (one cell on any process count: a sweep each)
            rec = json.loads(p.read_text())
            recs[rec["config"]["trainer"]["devices"]] = (rec, pd.read_parquet(p.parent / rec["examples_file"]))
    (one, ex1), (two, ex2) = recs[1], recs[2]
    a, b = _numbers(one), _numbers(two)
    diffs = {kind: max(abs(a[kind][k] - b[kind][k]) for k in a[kind]) for kind in a if a[kind]}
    counts = {kind: len(v) for kind, v in a.items()}
    for col, kind in (("loss", "per-example losses"), ("value", "per-example task metrics")):
        diffs[kind] = float(np.nanmax(np.abs(ex1[col].to_numpy() - ex2[col].to_numpy())))
        counts[kind] = int(np.isfinite(ex1[col].to_numpy()).sum())
    rows = [(kind, str(counts[kind]), f"{d:.2e}") for kind, d in diffs.items()]
    print(table(("2 processes vs 1", "values", "max abs diff"), rows))
    print(f"wall: 1 process {seconds[1]:.1f} s, 2 processes {seconds[2]:.1f} s (the same 12-step debug cell, CLI start included)")
    out = {"max_abs_diff": diffs, "seconds": seconds}
    save("ranks", out)
    return out


if __name__ == "__main__":
    main()
