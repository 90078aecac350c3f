"""Proxy-vs-target report: `analysis` (numbers, no torch), `build` (inputs -> report.json), `render`
(report.md + self-contained report.html).

The analysis multiplies many tiny matrices (bootstrap pair statistics); BLAS worker threads only add
contention there (x4 slower on a busy 2-core box), so unless the user chose otherwise, OpenBLAS runs
single-threaded when this package is imported before numpy (as `proxyscale report` does).
"""
import os as _os
import sys as _sys

if "numpy" not in _sys.modules:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        _os.environ.setdefault(_var, "1")
