"""Proxy-vs-target report: `analysis` (numbers, no torch), `build` (inputs -> report.json), `render`
(report.md + self-contained report.html).

The analysis multiplies many tiny matrices (bootstrap pair statistics); OpenBLAS worker threads only
add contention there (about x4 slower on a busy 2-core box), so unless the user chose otherwise,
numpy's OpenBLAS runs single-threaded when this package is imported before numpy (as `proxyscale
report` does). Only OPENBLAS_NUM_THREADS is set: torch's own thread pools are left alone.
"""
import os as _os
import sys as _sys

if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
