"""Run every bench/bench_*.py in turn (`python -m bench [name ...]`; a name with or without its bench_ prefix)."""

import importlib
import pkgutil
import sys
from pathlib import Path

every = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
names = [n if n.startswith("bench_") else f"bench_{n}" for n in sys.argv[1:]] or every
for name in names:
    print(f"\n== {name}")
    importlib.import_module(f"bench.{name}").main()
