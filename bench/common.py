"""Shared by the benchmarks: the CLI's plain-text table and merging results into bench/results.json."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from proxyscale.grid import text_table as table  # noqa: F401  (re-exported for the benches)

RESULTS = Path(__file__).with_name("results.json")


def save(key: str, value: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[key] = {**value, "_machine": platform.node(), "_when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True))
