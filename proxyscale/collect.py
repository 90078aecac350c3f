"""`proxyscale collect`: records -> one tidy table, `results.parquet` (a row per cell x eval set, with
the eval set's null-baseline losses) and `curves.parquet` (a row per cell x eval set x eval step,
for early-signal analysis). Reads records only, through `record.parse`.

Unreadable records (corrupt, truncated, another schema) are reported with their path and skipped;
the cells named in grid.json but without a record are counted as missing.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from proxyscale import record
from proxyscale.errors import UserError

log = logging.getLogger("proxyscale")

RESULTS = "results.parquet"
CURVES = "curves.parquet"
CELL_COLUMNS = ["run_id", "sweep", "status", "size", "params", "recipe", "lr", "seed", "tokens", "steps", "wall_seconds", "train_seconds",
                "eval_seconds", "tokens_per_second", "flops_per_token"]


class CollectError(UserError):
    """No sweep, or nothing readable in it; the one line the CLI prints."""


def collect(sweep_dir: str | Path, workers: int | None = None) -> tuple[pd.DataFrame, str]:
    """Read every record under a sweep folder. Returns (results table, one-paragraph summary).
    Records are parsed by `workers` processes (default: one per core and per PER_WORKER records):
    JSON decoding is most of the cost, ~0.1 ms per record."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise CollectError(f"no sweep folder at {root}")
    with os.scandir(root) as entries:
        paths = sorted(os.path.join(e.path, record.RESULT) for e in entries if e.is_dir())
    if workers is None:
        workers = min(os.cpu_count() or 1, max(1, len(paths) // PER_WORKER))
    if workers > 1:
        k = -(-len(paths) // workers)
        chunks = [paths[i:i + k] for i in range(0, len(paths), k)]  # contiguous: rows keep the folders' order
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(_read_rows, chunks))
    else:
        parts = [_read_rows(paths)]
    bad = [b for part in parts for b in part[2]]
    for b in bad:
        log.warning(f"skipping {b}")
    df = pd.concat([part[0] for part in parts], ignore_index=True)
    if df.empty:
        raise CollectError(f"no readable records under {root}" + (f" ({len(bad)} unreadable)" if bad else ""))
    df.attrs["curves"] = pd.concat([part[1] for part in parts], ignore_index=True)
    return df, _summary(root, df, bad)


PER_WORKER = 2000  # records below which another process costs more than it saves
CURVE_COLUMNS = ["run_id", "size", "params", "recipe", "lr", "seed", "eval_set", "step", "tokens", "loss"]


def _read_rows(paths: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(results rows, curve rows, unreadable-record messages) of these result.json paths;
    a cell folder without a record yet is skipped silently. Built column-wise (a cell's columns
    repeated over its eval sets and curve points): a row-wise build cost as much as the JSON."""
    cells, n_final, finals, n_curve, curve, bad = [], [], [], [], [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            bad.append(f"{path}: unreadable ({type(exc).__name__}: {exc})")
            continue
        try:
            rec = record.parse(text, path)
        except record.RecordError as exc:
            bad.append(str(exc))
            continue
        cells.append(tuple(getattr(rec, c) for c in CELL_COLUMNS))
        sets = rec.final_loss or dict.fromkeys(rec.eval_sets or ["(none)"])
        finals.extend((name, loss, rec.baselines.get(name, {})) for name, loss in sets.items())
        n_final.append(len(sets))
        n = len(curve)
        for point in rec.eval_curve:
            step, tokens = point["step"], point["tokens"]
            curve.extend((name, step, tokens, loss) for name, loss in point["loss"].items())
        n_curve.append(len(curve) - n)
    cell = pd.DataFrame.from_records(cells, columns=CELL_COLUMNS)
    results = cell.loc[cell.index.repeat(n_final)].reset_index(drop=True)
    results["eval_set"] = [name for name, _, _ in finals]
    results["loss"] = np.array([loss for _, loss, _ in finals], dtype=float)  # None (no final loss) -> NaN
    for kind in ("unigram", "bigram"):  # the recipe pool's count models on this eval set (NaN: not in the record)
        results[kind] = np.array([b.get(kind) for _, _, b in finals], dtype=float)
    curves = cell.loc[cell.index.repeat(n_curve), CURVE_COLUMNS[:6]].reset_index(drop=True)
    names, steps, tokens, losses = zip(*curve) if curve else ((), (), (), ())
    curves["eval_set"], curves["step"] = list(names), np.array(steps, dtype=np.int64)
    curves["tokens"], curves["loss"] = np.array(tokens, dtype=np.int64), np.array(losses, dtype=float)
    return results, curves, bad


def expected_cells(root: Path) -> set[str]:
    path = root / record.GRID
    return set(json.loads(path.read_text())["cells"]) if path.exists() else set()


def _summary(root: Path, df: pd.DataFrame, bad: list[str]) -> str:
    cells = df.drop_duplicates("run_id")
    counts = cells["status"].value_counts().to_dict()
    parts = [f"{len(cells)} records: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    expected = expected_cells(root)
    if expected:
        missing = expected - set(cells["run_id"])
        parts.append(f"{len(missing)} of {len(expected)} grid cells missing" if missing else f"all {len(expected)} grid cells present")
    if bad:
        parts.append(f"{len(bad)} unreadable record(s) skipped")
    return "; ".join(parts)


def write(df: pd.DataFrame, sweep_dir: str | Path) -> Path:
    """Write both tables atomically next to the records."""
    root = Path(sweep_dir)
    for name, frame in ((RESULTS, df), (CURVES, df.attrs.get("curves", pd.DataFrame()))):
        tmp = root / f".{name}.tmp"
        frame = frame.copy()
        frame.attrs = {}
        frame.to_parquet(tmp, index=False)
        tmp.replace(root / name)
    return root / RESULTS
