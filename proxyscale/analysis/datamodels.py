"""Datamodels across scale and their linear datamodeling score (issue 23).

Ilyas et al. 2022 ("Datamodels"); Park et al. 2023 (TRAK: the LDS); Khaddaj, Engstrom & Madry, ICLR 2025
("Small-to-Large Generalization", Algorithm 1: datamodels fitted at one size predict another size's losses).

The training pool is cut into G groups; subset j trains on the groups with indicator x_j in {0,1}^G (the same
subsets at every size). For an example e and a size s, the observed value y_s(j, e) is e's loss (seed mean) after
training on subset j. A datamodel is a linear model y ~ b + w . x, fitted per example and size by ridge regression
with its penalty chosen by efficient leave-one-out cross-validation over a log grid (scikit-learn's RidgeCV, one
penalty per example).

LDS of fit size f on eval size t (one entry per metric, f and t): the subsets both sizes trained are split into K
folds (default 5, seeded); each fold's subsets are predicted by the datamodels fitted at f on the other folds
(cross-fitting: no subset is predicted by a model that saw it). Per example, the Spearman correlation across all
subsets between those out-of-fold predictions and the observed values at t; the LDS is its mean over examples
(an example whose observed values are all equal has no correlation: left out and counted), with a seeded
percentile bootstrap interval over examples (subsets fixed). f = t is the usual LDS; f < t asks whether the
proxy's datamodels predict the target. The bootstrap holds the subsets fixed; `--permutations N` adds a subset-level
test (perm_p: the LDS with the indicators shuffled among the subsets, N times).

Weight agreement: per example, the Spearman correlation across groups of the weights fitted on all subsets at
two sizes; mean over examples. Selection (DsDm, Algorithm 3): the weight of a metric's mean over its examples is
the mean of the examples' weights (the model is linear); the K groups with the most helpful mean weight
(most negative for a loss, most positive for a higher-is-better metric) are selected.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from proxyscale.analysis.types import doc
from proxyscale.errors import UserError

FOLDS = 5
N_BOOT = 1000
TOP_GROUPS = 5
ALPHAS = np.logspace(-3, 4, 15)  # the ridge penalties RidgeCV chooses among (per example)
MIN_SUBSETS = 6  # fewer subsets common to two sizes: no LDS for that pair
MIN_FOLD = 3  # subsets per held-out fold at least (a Spearman correlation over 1 or 2 values says nothing): fewer folds then
INSTALL_HINT = "datamodels need scikit-learn: pip install 'proxyscale[attribution]'"


@dataclass
class Attribution:
    """The "Attribution across scale" section (report.json `attribution`, datamodels.json's figures): LDS entries,
    weight agreement, the selection (DsDm), TRAK's entries, costs, notes."""

    definition: str = doc("the LDS in words", "")
    sizes: list[str] = doc("sizes, small to large", factory=list)
    groups: int = doc("groups the pool is cut into", 0)
    subsets: int = doc("subsets trained", 0)
    permutations: int = doc("subset permutations behind each perm_p (0: none)", 0)
    entries: list[dict] = doc("[{metric, fit_size, eval_size, lds, lds_ci, n_examples, n_undefined, n_subsets, perm_p, perm_n}]", factory=list)
    weight_agreement: list[dict] = doc("[{metric, size_a, size_b, weight_spearman, n_examples}]", factory=list)
    selection: dict | None = doc("{metric, fit_size, k, groups, weights, by} when --select was given")
    trak: list[dict] = doc("TRAK from a checkpoint: [{metric, checkpoint_size, eval_size, lds, lds_ci, seconds, perm_p, ...}]", factory=list)
    cost: dict = doc("{train_flops_by_size, fit_seconds}", factory=dict)
    notes: list[str] = doc("caveats", factory=list)
    reason: str | None = doc("why there are no datamodels (the sweep has subset cells but they could not be fitted)")

    @classmethod
    def from_result(cls, result: dict) -> "Attribution":
        keys = cls.__dataclass_fields__
        return cls(**{k: v for k, v in result.items() if k in keys})

    def headline(self) -> list[str]:
        """One line per metric: the smallest size's datamodels on the largest size's subsets (and the largest's own)."""
        lines = []
        for e in self.entries:
            if e["fit_size"] == self.sizes[0] and e["eval_size"] == self.sizes[-1] or (len(self.sizes) == 1):
                lo, hi = e["lds_ci"]
                lines.append(
                    f"{e['metric']}: datamodels fitted on the {e['fit_size']} models predict the {e['eval_size']} models' values on unseen subsets "
                    f"with LDS {fmt3(e['lds'])} [{fmt3(lo)}, {fmt3(hi)}] ({e['n_examples']} examples, {e['n_subsets']} subsets"
                    + (f"; subset-permutation p {fmt3(e['perm_p'])})" if e.get("perm_p") is not None else ")")
                )
        return lines


def fmt3(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


class DatamodelError(UserError):
    """Bad input for datamodels (a CSV, a sweep without subsets): the one line the CLI prints."""


@dataclass
class Subsets:
    """What datamodels fit: per (metric, size) a subsets x examples matrix of seed-mean values, and each subset's groups."""

    values: dict[tuple[str, str], pd.DataFrame]  # (metric, size) -> DataFrame indexed by subset, a column per example
    members: dict[str, list[str]]  # subset -> its groups
    groups: list[str]  # every group, in indicator order
    sizes: list[str]  # small to large
    higher_is_better: dict[str, bool]
    notes: list[str] = field(default_factory=list)
    cost: dict[str, float] = field(default_factory=dict)  # size -> training FLOPs of all its subset cells (sweeps only)
    recipe: str | None = None  # sweeps: the recipe the subsets were cut from, and its number of groups
    n_groups: int | None = None

    def indicators(self, subsets) -> np.ndarray:
        col = {g: i for i, g in enumerate(self.groups)}
        x = np.zeros((len(subsets), len(self.groups)))
        for r, s in enumerate(subsets):
            x[r, [col[g] for g in self.members[s]]] = 1.0
        return x

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(m for m, _ in self.values))


# ---- input: CSVs and sweeps --------------------------------------------------------------------


def _read(path: str, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DatamodelError(f"{path}: no such file") from None
    except (OSError, ValueError, csv.Error) as exc:
        raise DatamodelError(f"{path}: not a readable CSV ({type(exc).__name__}: {str(exc)[:120]})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatamodelError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(df.columns)})")
    for c in df.columns:
        df[c] = df[c].str.strip()
    df["_line"] = np.arange(len(df)) + 2  # the header is line 1
    return df


def read_csv(losses: str, subsets: str, higher_is_better: list[str] | bool | None = None) -> Subsets:
    """LOSSES (subset,size,example,value[,metric,seed]) and SUBSETS (subset,group: one row per included group).
    Refused in one line naming the file and line: a missing column, an empty or non-numeric value, duplicate rows
    that disagree, a subset with losses but no membership rows or the reverse."""
    df = _read(losses, ("subset", "size", "example", "value"))
    mem = _read(subsets, ("subset", "group"))
    if "metric" not in df.columns:
        df["metric"] = "loss"
    if "seed" not in df.columns:
        df["seed"] = "0"
    for c in ("subset", "size", "example", "metric"):
        bad = df[df[c] == ""]
        if len(bad):
            raise DatamodelError(f"{losses} line {bad['_line'].iloc[0]}: empty {c}")
    values = pd.to_numeric(df["value"], errors="coerce")
    bad = df[~np.isfinite(values.to_numpy(dtype=float))]
    if len(bad):
        raise DatamodelError(f"{losses} line {bad['_line'].iloc[0]}: value {bad['value'].iloc[0]!r} is not a finite number")
    df["value"] = values.astype(float)
    key = ["metric", "size", "subset", "example", "seed"]
    dup = df[df.duplicated(key, keep=False)]
    if len(dup):
        spread = dup.groupby(key)["value"].agg(lambda v: v.max() - v.min())
        clash = spread[spread > 0]
        if len(clash):
            rows = dup.set_index(key).loc[clash.index[0]]
            other = rows[rows["value"] != rows["value"].iloc[0]]
            raise DatamodelError(f"{losses} line {int(other['_line'].iloc[0])}: duplicates line {int(rows['_line'].iloc[0])} with another value")
        df = df.drop_duplicates(key)
    bad = mem[(mem["subset"] == "") | (mem["group"] == "")]
    if len(bad):
        raise DatamodelError(f"{subsets} line {bad['_line'].iloc[0]}: empty subset or group")
    mem = mem.drop_duplicates(["subset", "group"])
    with_losses, with_members = set(df["subset"]), set(mem["subset"])
    lonely = df[~df["subset"].isin(with_members)]
    if len(lonely):
        raise DatamodelError(f"{losses} line {lonely['_line'].iloc[0]}: subset {lonely['subset'].iloc[0]!r} has losses but no rows in {subsets}")
    lonely = mem[~mem["subset"].isin(with_losses)]
    if len(lonely):
        raise DatamodelError(f"{subsets} line {lonely['_line'].iloc[0]}: subset {lonely['subset'].iloc[0]!r} has groups but no losses in {losses}")
    members = {s: sorted(g["group"]) for s, g in mem.groupby("subset", sort=False)}
    metrics = list(dict.fromkeys(df["metric"]))
    if higher_is_better is True:
        hib = dict.fromkeys(metrics, True)
    else:
        hib = {m: m in (higher_is_better or []) for m in metrics}
    return _tables(df, members, _order_sizes(list(dict.fromkeys(df["size"]))), hib)


def _order_sizes(sizes: list[str]) -> list[str]:
    """Sizes small to large when each reads as a number with an optional k/M/B suffix (20M, 1b, 350m); else as given."""
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}

    def value(s: str) -> float | None:
        t = s.strip().lower()
        unit = t[-1] if t and t[-1] in "kmb" else ""
        try:
            return float(t[: len(t) - len(unit)]) * scale[unit]
        except ValueError:
            return None

    vals = [value(s) for s in sizes]
    return [s for _, s in sorted(zip(vals, sizes))] if all(v is not None for v in vals) else sizes


def _tables(df: pd.DataFrame, members: dict[str, list[str]], sizes: list[str], hib: dict[str, bool], notes=None, cost=None) -> Subsets:
    means = df.groupby(["metric", "size", "subset", "example"], sort=False)["value"].mean()
    values = {}
    for (metric, size), part in means.groupby(level=["metric", "size"], sort=False):
        values[(metric, size)] = part.droplevel(["metric", "size"]).unstack("example")
    groups = sorted({g for gs in members.values() for g in gs}, key=_natural)
    return Subsets(values, members, groups, sizes, hib, list(notes or []), dict(cost or {}))


def _natural(g: str):
    return (0, int(g), "") if str(g).isdigit() else (1, 0, str(g))


def read_sweep(results: pd.DataFrame, examples: pd.DataFrame | None, sizes: list[str]) -> Subsets:
    """A collected sweep's subset cells (results.parquet's subset columns) and their per-example values
    (examples.parquet): metric = the eval set (its loss) or `eval_set/metric` (a task metric). Several recipes
    or LRs in one sweep: refused (a datamodel needs one training recipe; subset sweeps take one LR)."""
    if "subset_members" not in results.columns:
        raise DatamodelError("results.parquet has no subset columns (collected by an older proxyscale); run `proxyscale collect` again")
    done = results[(results["status"] == "completed") & (results["subset"] >= 0)].drop_duplicates("run_id")  # not keep_groups cells
    done = done.assign(recipe=done["recipe"].str.replace(r"-sub\d+$", "", regex=True))  # collect names subset i's recipe <recipe>-sub<i>
    if done.empty:
        raise DatamodelError("the sweep has no completed subset cells (train with data.subset=..., e.g. 'data.subset=range(0,64)')")
    for col, what in (("recipe", "recipes"), ("lr", "learning rates"), ("subset_groups", "group counts")):
        if done[col].nunique() > 1:
            values = ", ".join(map(str, sorted(done[col].unique())))
            raise DatamodelError(f"the sweep's subset cells use {done[col].nunique()} {what} ({values}); fit one at a time")
    if examples is None or examples.empty:
        raise DatamodelError("the sweep has no per-example losses (examples.parquet): its cells recorded none")
    cells = done.set_index("run_id")
    ex = examples[examples["run_id"].isin(cells.index)].copy()
    loss = ex["metric"] == "loss"
    ex["value"] = np.where(loss, ex["loss"], ex["value"]).astype(float)
    ex["metric"] = np.where(loss, ex["eval_set"], ex["eval_set"] + "/" + ex["metric"])
    ex["subset"] = cells.loc[ex["run_id"], "subset_members"].to_numpy()  # a subset is its set of groups
    ex["example"] = ex["example"].astype(str)
    members = {m: m.split() for m in done["subset_members"]}
    hib = {m: ("/" in m and not m.endswith("/loss")) for m in ex["metric"].unique()}
    cost = done.assign(flops=done["tokens"].astype(float) * done["flops_per_token"].astype(float)).groupby("size")["flops"].sum().to_dict()
    notes = [f"{len(done)} subset cells of recipe {done['recipe'].iloc[0]} at {done['size'].nunique()} size(s), {len(members)} distinct subsets"]
    data = _tables(ex, members, [s for s in sizes if s in set(done["size"])], hib, notes, cost)
    data.recipe, data.n_groups = str(done["recipe"].iloc[0]), int(done["subset_groups"].iloc[0])
    return data


# ---- fitting -----------------------------------------------------------------------------------


def _ridge():
    try:
        from sklearn.linear_model import RidgeCV
    except ImportError:
        raise DatamodelError(INSTALL_HINT) from None
    return RidgeCV(alphas=ALPHAS, alpha_per_target=True)


def fit_weights(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per example (column of y) a ridge datamodel on the indicators x -> (weights examples x groups, intercepts)."""
    model = _ridge().fit(x, y)
    return np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)


def folds_of(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """The held-out subset indices of each of K seeded folds."""
    from sklearn.model_selection import KFold

    return [test for _, test in KFold(n_splits=n_folds(n, folds), shuffle=True, random_state=seed).split(np.zeros((n, 1)))]


def n_folds(n: int, folds: int) -> int:
    """The folds used for n subsets: the asked number, fewer when a fold would hold fewer than MIN_FOLD subsets."""
    return max(2, min(folds, n // MIN_FOLD))


def cross_fitted_spearman(x: np.ndarray, y_fit: np.ndarray, y_eval: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Per example, the Spearman correlation between the predictions of the datamodels fitted (at y_fit) on the
    other folds and the observed values (y_eval) of a fold's subsets, averaged over folds. Correlating within a
    fold keeps one model per correlation: pooling every fold's predictions would mix fold intercepts, which are
    anti-correlated with the held-out values and bias pure noise to a negative score."""
    per_fold = []
    for test in folds_of(len(x), folds, seed):
        train = np.setdiff1d(np.arange(len(x)), test)
        w, b = fit_weights(x[train], y_fit[train])
        per_fold.append(spearman_columns(x[test] @ w.T + b, y_eval[test]))
    with np.errstate(invalid="ignore"):
        stacked = np.vstack(per_fold)
        n = np.isfinite(stacked).sum(0)
        return np.where(n > 0, np.nansum(stacked, 0) / np.maximum(n, 1), np.nan)


def permutation_p(x: np.ndarray, y_fit: np.ndarray, y_eval: np.ndarray, folds: int, seed: int, lds: float, n_perm: int) -> float:
    """One-sided subset-level p-value of an LDS above 0: the LDS recomputed with the group indicators shuffled among
    the subsets. The bootstrap over examples holds the subsets fixed, so a loss shift that one subset's training
    gives every example (its data order, its noise) counts as many independent agreements there; shuffling whole
    rows keeps that shared part and breaks only the link to the groups."""
    rng = np.random.default_rng(seed)
    null = [np.nanmean(cross_fitted_spearman(x[rng.permutation(len(x))], y_fit, y_eval, folds, seed)) for _ in range(n_perm)]
    return _p_above(np.asarray(null), lds)


def _p_above(null: np.ndarray, observed: float) -> float:
    """(1 + #null draws at or above the observed value) / (1 + draws); NaN when there is no observed value."""
    return (1 + int(np.sum(null >= observed))) / (1 + len(null)) if math.isfinite(observed) else math.nan


def spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per column, the Spearman correlation of a and b down the rows (NaN where either is constant)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=0), rankdata(b, axis=0)
    ra, rb = ra - ra.mean(0), rb - rb.mean(0)
    den = np.sqrt((ra**2).sum(0) * (rb**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(0) / np.where(den > 0, den, 1), np.nan)


def bootstrap_mean(v: np.ndarray, n_boot: int, seed: int) -> list[float]:
    """Seeded 95% percentile bootstrap interval of the mean of v (resampling its entries)."""
    if len(v) < 2:
        return [math.nan, math.nan]
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def lds_of(rho: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """The LDS from per-example correlations: their mean over examples, its bootstrap interval over examples, and
    how many examples had none (constant values)."""
    ok = rho[np.isfinite(rho)]
    return {
        "lds": float(ok.mean()) if len(ok) else math.nan,
        "lds_ci": bootstrap_mean(ok, n_boot, seed),
        "n_examples": int(len(ok)),
        "n_undefined": int(len(rho) - len(ok)),
    }


def _pair(data: Subsets, metric: str, a: str, b: str) -> tuple[list[str], list[str]] | None:
    """(subsets, examples) with values at both sizes (every example in every subset), or None."""
    va, vb = data.values.get((metric, a)), data.values.get((metric, b))
    if va is None or vb is None:
        return None
    subsets = [s for s in va.index if s in vb.index]
    examples = [e for e in va.columns if e in vb.columns]
    full = va.loc[subsets, examples].notna().all(axis=0) & vb.loc[subsets, examples].notna().all(axis=0)
    return subsets, [e for e, ok in zip(examples, full) if ok]


def fit(data: Subsets, folds: int = FOLDS, n_boot: int = N_BOOT, seed: int = 0, top: int = TOP_GROUPS, permutations: int = 0) -> dict:
    """Every (metric, fit size -> eval size) LDS entry, weight agreement between sizes, top groups per example;
    with `permutations`, each entry's subset-level permutation p-value (perm_p)."""
    import time

    if folds < 2:
        raise DatamodelError(f"--folds must be >= 2, got {folds}")
    entries, agreement, top_rows, notes, seconds = [], [], [], list(data.notes), 0.0
    for metric in data.metrics:
        for fi, f in enumerate(data.sizes):
            for t in data.sizes[fi:]:
                pair = _pair(data, metric, f, t)
                if pair is None:
                    continue
                subsets, examples = pair
                if len(subsets) < MIN_SUBSETS or not examples:
                    notes.append(f"{metric}: {f} -> {t}: {len(subsets)} common subsets, {len(examples)} complete examples; no LDS (needs {MIN_SUBSETS})")
                    continue
                t0 = time.perf_counter()
                x = data.indicators(subsets)
                y_fit = data.values[(metric, f)].loc[subsets, examples].to_numpy(float)
                y_eval = data.values[(metric, t)].loc[subsets, examples].to_numpy(float)
                score = lds_of(cross_fitted_spearman(x, y_fit, y_eval, folds, seed), n_boot, seed)
                if permutations:
                    score |= {"perm_p": permutation_p(x, y_fit, y_eval, folds, seed, score["lds"], permutations), "perm_n": permutations}
                seconds += time.perf_counter() - t0
                entries.append({"metric": metric, "fit_size": f, "eval_size": t, **score, "n_subsets": len(subsets), "folds": n_folds(len(subsets), folds)})
        weights = {}
        for s in data.sizes:
            v = data.values.get((metric, s))
            if v is None or len(v) < MIN_SUBSETS:
                continue
            v = v.loc[:, v.notna().all(axis=0)]
            w, _ = fit_weights(data.indicators(list(v.index)), v.to_numpy(float))
            weights[s] = pd.DataFrame(w, index=v.columns, columns=data.groups)
            sign = 1.0 if data.higher_is_better.get(metric) else -1.0  # helpful = lowers a loss, raises an accuracy
            order = np.argsort(-sign * w, axis=1)[:, :top]
            top_rows += [
                {"metric": metric, "size": s, "example": e, "rank": r + 1, "group": data.groups[g], "weight": float(w[i, g])}
                for i, e in enumerate(v.columns)
                for r, g in enumerate(order[i])
            ]
        for i, a in enumerate(data.sizes):
            for b in data.sizes[i + 1 :]:
                if a in weights and b in weights:
                    common = weights[a].index.intersection(weights[b].index)
                    rho = spearman_columns(weights[a].loc[common].to_numpy().T, weights[b].loc[common].to_numpy().T)
                    ok = rho[np.isfinite(rho)]
                    agreement.append(
                        {
                            "metric": metric,
                            "size_a": a,
                            "size_b": b,
                            "weight_spearman": float(ok.mean()) if len(ok) else math.nan,
                            "weight_spearman_ci": bootstrap_mean(ok, n_boot, seed),
                            "n_examples": int(len(ok)),
                        }
                    )
    return {
        "definition": DEFINITION,
        "sizes": data.sizes,
        "groups": len(data.groups),
        "subsets": len(data.members),
        "folds": folds,
        "n_boot": n_boot,
        "bootstrap_seed": seed,
        "permutations": permutations,
        "entries": entries,
        "weight_agreement": agreement,
        "top_groups": top_rows,
        "cost": {"train_flops_by_size": data.cost, "fit_seconds": round(seconds, 3)},
        "notes": notes,
    }


DEFINITION = (
    "per example and size, ridge regression (penalty by leave-one-out CV) of the loss on group indicators; LDS = mean over "
    "examples of the Spearman correlation, across each held-out fold's subsets and averaged over K folds, between the "
    "predictions of datamodels fitted at fit_size on the other folds and the observed values at eval_size; 95% bootstrap interval over examples; "
    "with --permutations, a one-sided p-value of LDS > 0 from shuffling the group indicators among the subsets"
)


def select(data: Subsets, metric: str, k: int, fit_size: str, weights: np.ndarray | None = None) -> dict:
    """DsDm: the k groups whose weight on the metric's mean over its examples is the most helpful. `weights`
    (examples x groups, e.g. TRAK scores) replaces the datamodels fitted at fit_size on all subsets."""
    if metric not in data.metrics:
        raise DatamodelError(f"--select {metric!r}: no such metric (have: {', '.join(data.metrics)})")
    if (metric, fit_size) not in data.values:
        raise DatamodelError(f"--fit-size {fit_size!r}: no values of {metric} at that size (sizes: {', '.join(data.sizes)})")
    if not 1 <= k < len(data.groups):
        raise DatamodelError(f"--k must be in [1, {len(data.groups) - 1}] ({len(data.groups)} groups), got {k}")
    if weights is None:
        v = data.values[(metric, fit_size)]
        v = v.loc[:, v.notna().all(axis=0)]
        weights, _ = fit_weights(data.indicators(list(v.index)), v.to_numpy(float))
    mean = np.asarray(weights).mean(0)
    sign = 1.0 if data.higher_is_better.get(metric) else -1.0
    order = np.argsort(-sign * mean, kind="stable")[:k]
    return {"metric": metric, "fit_size": fit_size, "k": k, "groups": [data.groups[g] for g in order], "weights": [float(mean[g]) for g in order]}


def score_weights(data: Subsets, metric: str, weights: np.ndarray, n_boot: int = N_BOOT, seed: int = 0, permutations: int = 0) -> list[dict]:
    """The LDS of fixed group weights (TRAK's: examples x groups, example i = row i, group g = column g) against the
    observed values at every size: per example the Spearman correlation across all subsets of x . w and the
    observed value (nothing is fitted on the subsets, so no folds); with `permutations`, the same subset-level
    p-value as the datamodels' (perm_p)."""
    cols = [int(g) for g in data.groups]
    out = []
    for t in data.sizes:
        v = data.values.get((metric, t))
        if v is None or len(v) < MIN_SUBSETS:
            continue
        examples = [e for e in v.columns if str(e).isdigit() and int(e) < len(weights) and v[e].notna().all()]
        w = weights[[int(e) for e in examples]][:, cols]
        x, y = data.indicators(list(v.index)), v[examples].to_numpy(float)
        entry = {"metric": metric, "eval_size": t, **lds_of(spearman_columns(x @ w.T, y), n_boot, seed), "n_subsets": len(v)}
        if permutations:
            rng = np.random.default_rng(seed)
            null = np.array([np.nanmean(spearman_columns(x[rng.permutation(len(x))] @ w.T, y)) for _ in range(permutations)])
            entry |= {"perm_p": _p_above(null, entry["lds"]), "perm_n": permutations}
        out.append(entry)
    return out


def write_top_groups(rows: list[dict], path: Path) -> None:
    from proxyscale.record import atomic_write_text

    atomic_write_text(path, pd.DataFrame(rows, columns=["metric", "size", "example", "rank", "group", "weight"]).to_csv(index=False))
