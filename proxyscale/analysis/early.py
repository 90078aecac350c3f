"""Early signal: does a size's ranking part-way through its training already match the final target ranking?"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from proxyscale.analysis import stats
from proxyscale.analysis.compare import compare
from proxyscale.analysis.protocol import Cube
from proxyscale.analysis.types import doc

NOTE = "proxy value = best over LRs of the seed-mean eval value at that fraction of its own training; target = final tuned value"


@dataclass
class EarlyPoint:
    """One size at one fraction of its training against the final target ranking."""

    metric: str = doc("eval set")
    proxy: str = doc("the size whose intermediate values rank (the target itself included)")
    target: str = doc("the largest size (its final tuned values)")
    fraction: float = doc("step / the run's last step, rounded to 0.01", 0.0)
    step: float = doc("the median step at that fraction", 0.0)
    spearman: float | None = doc("Spearman rho with the final target values")
    decision_accuracy: float | None = doc("decision accuracy against them")
    n_recipes: int = doc("recipes at both", 0)
    reason: str | None = doc("why a figure is undefined")


@dataclass
class EarlySignal:
    """Early signal: does a ranking part-way through training already match the final target ranking?"""

    available: bool = doc("points exist", False)
    reason: str | None = doc("why not available")
    target: str | None = doc("the largest size")
    note: str | None = doc("how values are taken")
    points: list[EarlyPoint] = doc("per (metric, size, fraction)", factory=list)


def early_signal(curves: pd.DataFrame, cube: Cube) -> dict:
    """Agreement of each size's tuned values at a fraction of its training with the final tuned largest size."""
    target = cube.sizes[-1]
    if curves is None or curves.empty:
        return asdict(EarlySignal(available=False, reason="no training curves", target=target))
    c = curves.copy()
    if "lr" not in c.columns or c["lr"].isna().all():
        c["lr"] = -1.0
    c["lr"] = c["lr"].astype(float).fillna(-1.0)
    if "seed" in c.columns:
        c["seed"] = c["seed"].astype(float).fillna(-1.0)
    gkeys = [k for k in ("size", "recipe", "lr", "seed", "metric") if k in c.columns]
    c["fraction"] = (c["step"] / c.groupby(gkeys)["step"].transform("max")).round(2)
    keys = ["metric", "size", "fraction", "lr", "recipe"]
    m = stats.tuned(c.drop(columns="step"), dict(zip(cube.metrics, cube.higher)), keys=("metric", "size", "fraction", "recipe"))
    steps = c.groupby(keys)["step"].median()
    m = m.assign(step=steps.reindex(pd.MultiIndex.from_frame(m[keys])).to_numpy()).rename(columns={"value": "mean"})
    points = []
    for (metric, size, frac), g in m.groupby(["metric", "size", "fraction"], sort=False):
        if metric not in cube.metrics or size not in cube.sizes:
            continue
        y = cube.tuned[cube.metrics.index(metric), -1]
        vals = dict(zip(g["recipe"], g["mean"]))
        common = [r for ri, r in enumerate(cube.recipes) if r in vals and np.isfinite(y[ri])]
        if len(common) < 3:
            continue
        c_ = compare(
            common,
            np.array([vals[r] for r in common]),
            np.array([y[cube.recipes.index(r)] for r in common]),
            higher_is_better=cube.higher[cube.metrics.index(metric)],
            n_boot=0,
            with_test=False,
        ).to_dict()
        points.append(
            EarlyPoint(
                metric=metric,
                proxy=size,
                target=target,
                fraction=float(frac),
                step=float(g["step"].median()),
                spearman=c_["spearman"],
                decision_accuracy=c_["decision_accuracy"],
                n_recipes=len(common),
                reason=c_["reason"],
            )
        )
    order = {s: i for i, s in enumerate(cube.sizes)}
    points.sort(key=lambda p: (p.metric, order.get(p.proxy, 0), p.fraction))
    out = EarlySignal(
        available=bool(points), target=target, points=points, reason=None if points else "fewer than 3 recipes with curves at both sizes", note=NOTE
    )
    return asdict(out)
