"""Run every bench/bench_*.py in turn (`python -m bench [name ...]`)."""

import importlib
import pkgutil
import sys
from pathlib import Path

names = sys.argv[1:] or sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
for name in names:
    print(f"\n== {name}")
    importlib.import_module(f"bench.{name}").main()
