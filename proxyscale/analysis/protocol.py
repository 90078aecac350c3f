"""The sweep's cube (metric x size x LR x seed x recipe), seed noise, and the reduced-LR protocol.

The standard LR (the fixed-LR target) is stated by the user (--standard-lr) or by the sweep's grid.json,
never guessed from cell counts; without it the fixed-target mode is unavailable with that reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from proxyscale.analysis.importer import AnalysisError, order_sizes
from proxyscale.analysis.types import doc

NO_STANDARD_LR = "no standard LR stated: pass --standard-lr"


def metric_names(results: pd.DataFrame) -> pd.Series:
    """The analysis' metric of each results.parquet row: the eval set's name for a loss row (as before benchmark
    tasks), `<eval set>/<metric>` (hellaswag/acc) for a task set's row."""
    sets = results["eval_set"].astype(str)
    if "metric" not in results.columns:
        return sets
    m = results["metric"].astype(str)
    return sets.where(m == "loss", sets + "/" + m)


def metric_values(results: pd.DataFrame) -> pd.Series:
    """The number of each row: `loss` on loss rows, `value` on task rows (results.parquet fills `value` on every
    row; the per-example tables leave it NaN on loss rows, whose number is `loss`)."""
    if "value" not in results.columns or "metric" not in results.columns:
        return results["loss"].astype(float)
    return results["value"].astype(float).where(results["metric"].astype(str) != "loss", results["loss"].astype(float))


def sweep_directions(results: pd.DataFrame) -> dict[str, bool]:
    """{analysis metric: higher is better} of a sweep's results: losses lower, task metrics (acc, prob_correct,
    ll_norm) higher, from the collector's higher_is_better column (absent: every metric is a loss)."""
    names = metric_names(results)
    hib = results["higher_is_better"].astype(bool) if "higher_is_better" in results.columns else pd.Series(False, index=results.index)
    return {str(n): bool(h) for n, h in zip(names, hib)}


def sweep_table(results: pd.DataFrame) -> pd.DataFrame:
    """Completed cells' rows with a finite value, as the analysis' long table (recipe, size, metric, value, lr,
    seed, params, and tokens/step/run_id where the results have them)."""
    vals = metric_values(results)
    keep = (results["status"] == "completed") & np.isfinite(vals.to_numpy(dtype=float))
    ok = results[keep]
    cols = {
        "recipe": ok["recipe"].astype(str),
        "size": ok["size"].astype(str),
        "metric": metric_names(ok),
        "value": vals[keep],
        "lr": ok["lr"].astype(float),
        "seed": ok["seed"].astype(float),
        "params": ok["params"].astype(float),
    }
    return pd.DataFrame(cols)


def prepare_sweep(results: pd.DataFrame) -> tuple[pd.DataFrame, list[str], dict, dict]:
    """results.parquet -> (long table of completed cells, sizes by params, status counts, baselines).

    Metrics: each lm eval set's loss under the set's name; each task set's acc, prob_correct and ll_norm as
    `<set>/<metric>` (their directions: `sweep_directions`).
    baselines: (recipe, eval set) -> {unigram, bigram} from the collector's columns (nats/token of
    add-one count models of the recipe's pool), empty when the sweep predates them."""
    status = results.drop_duplicates("run_id") if "run_id" in results.columns else results
    counts = {str(s): {str(k): int(v) for k, v in g["status"].value_counts().items()} for s, g in status.groupby("size")}
    df = sweep_table(results)
    if df.empty:
        raise AnalysisError("no completed cells with a finite loss in this sweep")
    params = df.groupby("size")["params"].first().to_dict()
    sizes = order_sizes(df["size"].unique(), params)
    base: dict = {}
    if {"unigram", "bigram"} <= set(results.columns):
        b = results[["recipe", "eval_set", "unigram", "bigram"]].astype({"unigram": float, "bigram": float})
        b = b[np.isfinite(b["unigram"]) & np.isfinite(b["bigram"])]
        for (r, m), g in b.groupby(["recipe", "eval_set"]):
            base[(str(r), str(m))] = {"unigram": float(g["unigram"].mean()), "bigram": float(g["bigram"].mean())}
    return df.reset_index(drop=True), sizes, counts, base


class Cube:
    """Seed values, seed means and tuned values as dense arrays (NaN = no completed cell)."""

    def __init__(self, df: pd.DataFrame, sizes: list[str], directions: dict[str, bool]):
        self.sizes = list(sizes)
        m, metrics = pd.factorize(df["metric"], sort=True)
        r, recipes = pd.factorize(df["recipe"], sort=True)
        li, lrs = pd.factorize(df["lr"], sort=True)
        k, self.seeds = pd.factorize(df["seed"], sort=True) if "seed" in df.columns else (np.zeros(len(df), dtype=np.int64), pd.Index([0.0]))
        self.metrics, self.recipes, self.lrs = list(metrics), list(recipes), np.asarray(lrs, dtype=float)
        self.higher = [bool(directions.get(mm, False)) for mm in self.metrics]
        self.sgn = np.array([-1.0 if h else 1.0 for h in self.higher])
        s = df["size"].map({s: i for i, s in enumerate(self.sizes)}).to_numpy()
        self.shape = (len(self.metrics), len(self.sizes), len(self.lrs), len(self.seeds), len(self.recipes))
        flat = np.ravel_multi_index((m, s, li, k, r), self.shape)
        n = int(np.prod(self.shape))
        cnt = np.bincount(flat, minlength=n)
        tot = np.bincount(flat, weights=df["value"].to_numpy(dtype=float), minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.cell = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan).reshape(self.shape)  # repeated rows averaged
        have = np.isfinite(self.cell)
        self.k = have.sum(axis=3)  # seeds per (metric, size, lr, recipe)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.mean = np.where(self.k > 0, np.nansum(self.cell, axis=3) / np.maximum(self.k, 1), np.nan)
            dev = np.where(have, self.cell - self.mean[:, :, :, None, :], 0.0)
            self.var = np.where(self.k >= 2, (dev**2).sum(axis=3) / np.maximum(self.k - 1, 1), np.nan)
        self.score = np.where(np.isfinite(self.mean), self.sgn[:, None, None, None] * self.mean, np.inf)
        best = self.score.argmin(axis=2)  # (M, S, R)
        self.tuned_lr_idx = best
        self.tuned = np.take_along_axis(self.mean, best[:, :, None, :], axis=2)[:, :, 0, :]
        self.tuned_k = np.take_along_axis(self.k, best[:, :, None, :], axis=2)[:, :, 0, :]
        w = np.where(self.k >= 2, self.k - 1, 0)
        num = np.nansum(np.where(w > 0, self.var * w, 0.0), axis=(2, 3))
        den = w.sum(axis=(2, 3))
        with np.errstate(invalid="ignore", divide="ignore"):
            self.pooled_sd = np.where(den > 0, np.sqrt(num / np.maximum(den, 1)), np.nan)  # (M, S)

    def sd_at(self, mi: int, si: int, lr_idx) -> float:
        """Seed sd of (metric, size) pooled over recipes at the LR each value was taken at: `lr_idx` is one LR
        index (a fixed-LR comparison) or an array of one per recipe (tuned values: tuned_lr_idx). A verdict's
        noise is that of the runs it compares, not of every LR: an unstable LR elsewhere does not inflate it."""
        li = np.broadcast_to(np.asarray(lr_idx), (self.shape[4],))
        r = np.arange(self.shape[4])
        var, k = self.var[mi, si, li, r], self.k[mi, si, li, r]
        w = np.where((k >= 2) & np.isfinite(var), k - 1, 0)
        return float(np.sqrt((np.where(w > 0, var, 0.0) * w).sum() / w.sum())) if w.sum() else float("nan")

    def lrs_at(self, mi: int, si: int) -> list[int]:
        return [li for li in range(len(self.lrs)) if np.isfinite(self.mean[mi, si, li]).any()]

    def own_best_lr(self, mi: int, si: int) -> float | None:
        """The size's own optimum: the LR with the best mean over the recipes run at every LR of that size."""
        lis = self.lrs_at(mi, si)
        if len(lis) < 2:
            return None
        sc = self.score[mi, si][lis]
        full = np.isfinite(sc).all(axis=0)
        if not full.any():
            return None
        return float(self.lrs[lis[int(np.argmin(sc[:, full].mean(axis=1)))]])


@dataclass
class SeedNoise:
    """One (metric, size): how much seeds alone reorder recipes."""

    metric: str = doc("eval set")
    size: str = doc("size")
    n_seed_pairs: int = doc("(seed, seed, LR) combinations with >= 2 common recipes")
    n_pairs: int = doc("recipe pairs compared across those seed pairs")
    floor: float | None = doc("share of those pairs two seeds order differently")
    pooled_sd: float | None = doc("pooled seed sd of a value at this size")
    reason: str | None = doc("why floor is null")


def seed_noise(cube: Cube) -> list[dict]:
    """Per (metric, size): pooled seed sd and the fraction of recipe pairs two seeds of the same size
    and LR order differently (pairs walked per LR, so memory stays linear in recipes x seeds)."""
    out = []
    if len(cube.seeds) < 2:
        return out
    from proxyscale.analysis.stats import pair_blocks

    M, S, L, K, R = cube.shape
    ka, kb = np.triu_indices(K, 1)
    for mi in range(M):
        for si in range(S):
            if not np.isfinite(cube.mean[mi, si]).any():
                continue
            dis = tot = n_comp = 0
            for li in range(L):
                cells = cube.cell[mi, si, li]  # K x R
                ok = np.isfinite(cells)
                n_comp += int(((ok[ka] & ok[kb]).sum(axis=1) >= 2).sum())
                for i, j in pair_blocks(R, max(1, (1 << 20) // max(K, 1))):
                    with np.errstate(invalid="ignore"):
                        sg = np.where(ok[:, i] & ok[:, j], np.sign(cells[:, i] - cells[:, j]), 0.0)  # K x P
                    a, b = sg[ka], sg[kb]
                    both = (a != 0) & (b != 0)
                    dis += int((both & (a * b < 0)).sum())
                    tot += int(both.sum())
            sd = cube.pooled_sd[mi, si]
            rec = SeedNoise(
                metric=cube.metrics[mi],
                size=cube.sizes[si],
                n_seed_pairs=n_comp,
                n_pairs=tot,
                floor=dis / tot if tot else None,
                pooled_sd=float(sd) if np.isfinite(sd) else None,
                reason=None if tot else "no LR with two seeds of >= 2 common recipes",
            )
            out.append(asdict(rec))
    return out


@dataclass
class CurvePoint:
    """One proxy LR of a reduced-LR curve, against the tuned or the fixed-LR target."""

    proxy_lr: float = doc("the proxy's peak LR")
    target_mode: str = doc("'tuned' (each recipe's best LR at the target) | 'fixed' (the stated standard LR)")
    spearman: float | None = doc("Spearman rho against the target")
    decision_accuracy: float | None = doc("decision accuracy against the target")
    decision_accuracy_ci: list[float] | None = doc("its 95% interval (the comparison's)")
    n_recipes: int = doc("recipes at both", 0)
    n_undertrained: int = doc("proxy cells at this LR worse than the bigram (never the best pick)", 0)
    reason: str | None = doc("why a figure is undefined")


@dataclass
class ReducedLREntry:
    """One (metric, proxy, target): agreement as a function of the proxy's LR."""

    metric: str = doc("eval set")
    proxy: str = doc("proxy size")
    target: str = doc("target size")
    standard_lr: float | None = doc("the stated standard LR")
    proxy_best_lr: float | None = doc("the proxy size's own optimum (best mean over the recipes run at every LR)")
    target_own_best_lr: float | None = doc("the target size's own optimum")
    target_best_lr: dict = doc("{recipe: the LR that won at the target}", factory=dict)
    curve: list[CurvePoint] = doc("one point per proxy LR and target mode", factory=list)
    reason_fixed: str | None = doc("why the fixed-LR target is unavailable")
    notes: list[str] = doc("caveats (e.g. the best proxy LR is the proxy's own optimum: ordinary tuning)", factory=list)
    best_proxy_lr_tuned: float | None = doc("the best proxy LR against the tuned target (undertrained LRs excluded)")
    best_tuned: CurvePoint | None = doc("its curve point")
    standard_tuned: CurvePoint | None = doc("the point at the standard LR, tuned target")
    reason_tuned: str | None = doc("why there is no best proxy LR against the tuned target")
    best_proxy_lr_fixed: float | None = doc("the best proxy LR against the fixed-LR target")
    best_fixed: CurvePoint | None = doc("its curve point")
    standard_fixed: CurvePoint | None = doc("the point at the standard LR, fixed target")


@dataclass
class ReducedLR:
    """The reduced-LR protocol: does a proxy trained at another LR rank the target better than its tuned one?"""

    available: bool = doc("entries exist (an LR grid at some size)", False)
    reason: str | None = doc("why not available")
    standard_lr: float | None = doc("the stated standard LR (fixed-LR target)")
    standard_lr_source: str | None = doc("--standard-lr or grid.json; never guessed")
    fixed_available: bool = doc("the fixed-LR target mode is available", False)
    fixed_reason: str | None = doc("why it is not")
    assumption: str = doc("the LR assumption in one sentence (also in the bottom line)", "")
    entries: list[ReducedLREntry] = doc("one per (metric, proxy < target) with an LR grid", factory=list)


def standard_lr_index(cube: Cube, lr: float | None) -> tuple[int | None, str | None]:
    """Index of the stated standard LR in the LR grid, or (None, why the fixed-target mode is unavailable)."""
    if lr is None:
        return None, NO_STANDARD_LR
    hit = np.flatnonzero(np.isclose(cube.lrs, lr, rtol=1e-9, atol=0.0))
    if not len(hit):
        grid = ", ".join(f"{v:g}" for v in cube.lrs if v > 0)
        return None, f"the stated standard LR {lr:g} is not in the LR grid ({grid})"
    return int(hit[0]), None


def pick_best(curve: list[dict], mode: str, std: float | None) -> tuple[dict | None, dict | None, str | None]:
    """(best point, point at the standard LR, reason when none) of one target mode's curve: best decision
    accuracy among proxy LRs with no undertrained cell; ties -> Spearman, then the LR closest to standard."""
    pts = [p for p in curve if p["target_mode"] == mode and p["decision_accuracy"] is not None]
    eligible = [p for p in pts if p["n_undertrained"] == 0]
    key = lambda p: (
        p["decision_accuracy"],
        p["spearman"] if p["spearman"] is not None else -2.0,
        -abs(math.log(p["proxy_lr"] / std)) if std and std > 0 and p["proxy_lr"] > 0 else 0.0,
    )
    best = max(eligible, key=key) if eligible else None
    stdp = next((p for p in pts if std is not None and math.isclose(p["proxy_lr"], std, rel_tol=1e-9)), None)
    reason = None if best else ("every proxy LR is undertrained (worse than the bigram) or undefined" if pts else "no defined point on the curve")
    return best, stdp, reason
