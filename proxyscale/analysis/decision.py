"""The first screen of a report, as typed sections: which recipe to pick, how sure, what would make it surer
(`Decision`), and the recipe x size table of losses (`Losses`). Built from the verdicts and the cube;
report.json carries them as `decision` and `losses` (dataclasses.asdict), the page renders each from one template.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from proxyscale.analysis.protocol import Cube
from proxyscale.analysis.types import doc
from proxyscale.analysis.verdict import DA_BAR

TOP = 3  # target's top recipes named per eval set
MAX_LOSS_ROWS = 10  # recipes per loss table: the target's best, then the proxies' picks


@dataclass
class DecisionRow:
    """One eval set: the verdict of its most useful proxy and what to do."""

    metric: str = doc("eval set")
    direction: str = doc("'lower' or 'higher' is better")
    proxy: str | None = doc("the cheapest proxy that holds, else the largest proxy")
    verdict: str = doc("holds | fails | inconclusive")
    decision_accuracy: float | None = doc("decision accuracy against the target")
    interval: list[float] | None = doc("the simultaneous 95% interval the verdict used")
    target_top: list[str] = doc("the target's best recipes, best first")
    separable: str = doc("'yes' | 'no' | 'untested' (one seed at the target) | 'tied'")
    action: str = doc("what to do, in words")


@dataclass
class Decision:
    """The first screen: one row per eval set."""

    target: str = doc("target size")
    family_size: int = doc("claims the simultaneous intervals cover")
    bar: float = doc("the DA bar verdicts are judged against")
    rows: list[DecisionRow] = doc("rows", factory=list)


@dataclass
class LossRow:
    recipe: str = doc("recipe")
    cells: list[str] = doc("per size: 'mean ± sd (k seeds)' at the tuned LR, '' when not run")


@dataclass
class LossTable:
    metric: str = doc("eval set")
    direction: str = doc("'lower' or 'higher' is better")
    sizes: list[str] = doc("sizes, smallest first")
    rows: list[LossRow] = doc("rows")
    n_more: int = doc("recipes not listed (all are in report.json comparisons)")


@dataclass
class Losses:
    tables: list[LossTable] = doc("one per eval set", factory=list)


def _separable(c: dict, higher: bool) -> tuple[list[str], str]:
    vals = sorted(c["target_values"].items(), key=lambda kv: -kv[1] if higher else kv[1])
    top = [r for r, _ in vals[:TOP]]
    if len(vals) < 2:
        return top, "untested"
    if c.get("regret") and len(c["regret"]["best_targets"]) > 1:
        return top, "tied"
    tn = c.get("target_noise")
    if not tn:
        return top, "untested"
    noise = 2 * tn["target_seed_sd"] * (2 / tn["target_k"]) ** 0.5
    return top, "yes" if abs(vals[1][1] - vals[0][1]) > noise else "no"


def _action(line: dict, sep: str, top: list[str], target: str) -> str:
    if line["verdict"] == "holds":
        pick = f"pick by the {line['proxy']} proxy"
    elif line["verdict"] == "fails":
        pick = f"do not pick by the {line['proxy']} proxy: train a larger proxy or the target"
    else:
        why = line["reason"].split("; ")
        pick = next((w.split(": ", 1)[1] for w in why if ": add " in w), None) or next((w for w in why if "add " in w), "see the verdict")
    if sep == "no":
        pick += f"; at {target} the top recipes are within seed noise: add target seeds before naming a winner"
    return pick


def decision(report: dict, primary: list[dict]) -> Decision:
    summ = report["summary"]
    out = Decision(target=summ["target"], family_size=summ.get("family_size", 1), bar=DA_BAR)
    for pm in summ["per_metric"]:
        lines = pm["lines"]
        if not lines:
            continue
        line = next((ln for ln in lines if ln["verdict"] == "holds"), lines[-1])
        c = next(c for c in primary if c["metric"] == pm["metric"] and c["proxy"] == line["proxy"] and c["target"] == pm["target"])
        top, sep = _separable(c, pm["direction"] == "higher")
        out.rows.append(
            DecisionRow(
                metric=pm["metric"],
                direction=pm["direction"],
                proxy=line["proxy"],
                verdict=line["verdict"],
                decision_accuracy=line["decision_accuracy"],
                interval=line.get("decision_accuracy_sci"),
                target_top=top,
                separable=sep,
                action=_action(line, sep, top, pm["target"]),
            )
        )
    return out


def losses(cube: Cube) -> Losses:
    """Per eval set: the target's best recipes (and each proxy's pick) x sizes, seed mean ± sd at the tuned LR."""
    sd = np.sqrt(np.take_along_axis(cube.var, cube.tuned_lr_idx[:, :, None, :], axis=2)[:, :, 0, :])
    out = Losses()
    for mi, metric in enumerate(cube.metrics):
        score = cube.sgn[mi] * cube.tuned[mi]  # (S, R), lower = better
        order = [int(r) for r in np.argsort(np.where(np.isfinite(score[-1]), score[-1], np.inf), kind="stable") if np.isfinite(score[-1, r])]
        picks = [int(np.nanargmin(np.where(np.isfinite(s), s, np.nan))) for s in score[:-1] if np.isfinite(s).any()]
        chosen = list(dict.fromkeys(order[:MAX_LOSS_ROWS] + picks))
        rows = []
        for r in chosen:
            cells = []
            for si in range(len(cube.sizes)):
                m, k, s = cube.tuned[mi, si, r], cube.tuned_k[mi, si, r], sd[mi, si, r]
                cells.append("" if not np.isfinite(m) else f"{m:.4f}" + (f" ± {s:.2g} ({int(k)} seeds)" if np.isfinite(s) else " (1 seed)"))
            rows.append(LossRow(recipe=cube.recipes[r], cells=cells))
        present = int(np.isfinite(cube.tuned[mi]).any(axis=0).sum())
        out.tables.append(
            LossTable(
                metric=metric,
                direction="higher" if cube.higher[mi] else "lower",
                sizes=list(cube.sizes),
                rows=rows,
                n_more=present - len(rows),
            )
        )
    return out


def as_json(section) -> dict:
    return dataclasses.asdict(section)
