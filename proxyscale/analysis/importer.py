"""External long CSVs -> the analysis' long table: size labels, size order, column checks.

Interface (shared with the importer of issue 12): prepare_csv(path, higher_is_better=...) -> (df, sizes,
directions {metric: higher_is_better}, notes); parse_size, order_sizes, AnalysisError.
"""
from __future__ import annotations

import re
from typing import Iterable

import numpy as np
import pandas as pd

REQUIRED = ("recipe", "size", "metric", "value")
OPTIONAL = ("lr", "seed", "step", "params")
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmbt])", re.IGNORECASE)
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


class AnalysisError(ValueError):
    """Input the analysis cannot use; the message is one line for the CLI."""


def parse_size(name: str) -> float | None:
    """Parameter count named by a size label: 350k, 1M, 60M, 400M-1x, 1.3B, 7B-1x -> float, else None."""
    m = _SIZE_RE.search(str(name))
    return float(m.group(1)) * _SUFFIX[m.group(2).lower()] if m else None


def order_sizes(sizes: Iterable[str], params: dict[str, float] | None = None) -> list[str]:
    """Sizes smallest first, by params when given for every size, else by the number in the name."""
    sizes = list(dict.fromkeys(str(s) for s in sizes))
    if params and all(s in params and params[s] == params[s] for s in sizes):
        key = {s: float(params[s]) for s in sizes}
    else:
        key = {s: parse_size(s) for s in sizes}
        bad = [s for s, v in key.items() if v is None]
        if bad:
            raise AnalysisError(f"cannot order sizes {', '.join(map(repr, bad))}: give a params column or names like 60M, 1.3B, 350k")
    values = sorted(key.values())
    if len(set(values)) < len(values):
        dup = sorted({s for s in sizes if values.count(key[s]) > 1})
        raise AnalysisError(f"cannot order sizes {', '.join(map(repr, dup))}: they have the same parameter count")
    return sorted(sizes, key=lambda s: key[s])


def prepare_csv(path: str, higher_is_better: bool = False) -> tuple[pd.DataFrame, list[str], dict[str, bool], list[str]]:
    """Read an external long CSV -> (long table, sizes smallest first, direction per metric, notes). Raises AnalysisError."""
    try:
        raw = pd.read_csv(path)
    except FileNotFoundError:
        raise AnalysisError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise AnalysisError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise AnalysisError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise AnalysisError(f"{path}: missing column(s) {', '.join(missing)} (need recipe,size,metric,value[,lr,seed,step,params])")
    if raw.empty:
        raise AnalysisError(f"{path}: empty file (no rows)")
    df = raw[[c for c in REQUIRED + OPTIONAL if c in raw.columns]].copy()
    for c in ("recipe", "size", "metric"):
        if df[c].isna().any():
            raise AnalysisError(f"{path}: column {c} has empty values (row {int(df[c].isna().to_numpy().argmax()) + 2})")
        df[c] = df[c].astype(str).str.strip()
    for c in ("value",) + tuple(c for c in OPTIONAL if c in df.columns):
        num = pd.to_numeric(df[c], errors="coerce")
        bad = num.isna() & (df[c].notna() if c != "value" else True)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise AnalysisError(f"{path}: non-numeric {c} {df[c].iloc[row]!r} (row {row + 2})")
        df[c] = num.astype(float)
    if not np.isfinite(df["value"].to_numpy()).all():
        raise AnalysisError(f"{path}: value has non-finite entries")
    if df["recipe"].nunique() < 2:
        raise AnalysisError(f"{path}: only one recipe ({df['recipe'].iloc[0]!r}); a ranking needs at least 2")
    if df["size"].nunique() < 2:
        raise AnalysisError(f"{path}: only one size ({df['size'].iloc[0]!r}); a proxy and a target are needed")
    params = None
    if "params" in df.columns:
        per = df.groupby("size")["params"].agg(["min", "max"])
        if (per["min"] != per["max"]).any():
            raise AnalysisError(f"{path}: size {per.index[(per['min'] != per['max']).to_numpy()][0]!r} has more than one params value")
        params = per["min"].to_dict()
    sizes = order_sizes(df["size"].unique(), params)
    return df, sizes, {m: bool(higher_is_better) for m in df["metric"].unique()}, []
