"""Records -> one tidy table: `results.parquet` (a row per cell x eval set) and `curves.parquet`
(a row per cell x eval set x eval step, for early-signal analysis).

Unreadable records (corrupt, truncated, another schema) are reported with their path and skipped;
the cells named in grid.json but without a record are counted as missing.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from proxyscale import record

log = logging.getLogger("proxyscale")

RESULTS = "results.parquet"
CURVES = "curves.parquet"
CELL_COLUMNS = ["run_id", "sweep", "status", "size", "params", "recipe", "lr", "seed", "tokens", "steps", "wall_seconds", "tokens_per_second", "flops_per_token"]


class TableError(ValueError):
    pass


def collect(sweep_dir: str | Path) -> tuple[pd.DataFrame, str]:
    """Read every record under a sweep folder. Returns (results table, one-paragraph summary)."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise TableError(f"no sweep folder at {root}")
    rows, curve_rows, bad = [], [], []
    for path in sorted(root.glob(f"*/{record.RESULT}")):
        try:
            rec = record.read(path.parent)
        except record.RecordError as exc:
            bad.append(str(exc))
            log.warning(f"skipping {exc}")
            continue
        base = {c: getattr(rec, c) for c in CELL_COLUMNS}
        sets = rec.final_loss or {s: float("nan") for s in _eval_names(rec)}
        for name, loss in sets.items():
            rows.append({**base, "eval_set": name, "loss": float(loss)})
        for point in rec.eval_curve:
            for name, loss in point["loss"].items():
                curve_rows.append({"run_id": rec.run_id, "size": rec.size, "params": rec.params, "recipe": rec.recipe, "lr": rec.lr, "seed": rec.seed, "eval_set": name, "step": point["step"], "tokens": point["tokens"], "loss": float(loss)})
    if not rows:
        raise TableError(f"no readable records under {root}" + (f" ({len(bad)} unreadable)" if bad else ""))
    df = pd.DataFrame(rows)
    df.attrs["curves"] = pd.DataFrame(curve_rows)
    return df, _summary(root, df, bad)


def _eval_names(rec: record.Record) -> list[str]:
    sets = (rec.config.get("eval") or {}).get("sets") or []
    return [s["name"] for s in sets] or ["(none)"]


def expected_cells(root: Path) -> set[str]:
    path = root / "grid.json"
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
