"""Proxy-vs-target agreement of data-recipe rankings: pure numpy/pandas/scipy, no torch.

Input is a *long* table with columns recipe, size, metric, value and optionally params, lr, seed,
step (see `prepare_sweep` / `prepare_csv`). Seeds are averaged first; a recipe's value at a size is
then either its value at one learning rate or its *tuned* value (the best over the LR grid).

Every comparison of a proxy size with a larger target size returns one dict (see `compare`) with
Pearson r, R^2, Spearman rho, Kendall tau-b (each with a seeded percentile bootstrap CI over
recipes), decision accuracy over recipe pairs (ties excluded and counted), the flipped pairs,
top-k regret and seed-noise abstentions. Anything that cannot be computed is None with a reason in
`undefined`, never a silent NaN.

Conventions
- direction: lower is better (losses) unless `higher_is_better`; it only changes which recipe is
  "best" (tuning over LRs, regret, the proxy's pick, undertrained flags); correlations and
  decision accuracy are invariant to negating both scales.
- standard LR (fixed-LR protocol): the LR present in the most completed cells of the whole table;
  ties go to the largest such LR.
- abstain: a recipe pair is "within seed noise" when |proxy difference| < 2 x sd of that
  difference, sd = pooled seed sd at the proxy size (pooled over recipes and LRs for the metric)
  x sqrt(1/k_a + 1/k_b), k = seeds averaged into each recipe's value.
"""
from __future__ import annotations

import functools
import math
import re
from typing import Any, Iterable

import numpy as np
import pandas as pd

REQUIRED = ("recipe", "size", "metric", "value")
OPTIONAL = ("lr", "seed", "step", "params")
MAX_FLIPS = 100  # flips listed per comparison (all are counted in n_flips)
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmbt])", re.IGNORECASE)
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


class AnalysisError(ValueError):
    """Input the analysis cannot use; the message is one line for the CLI."""


# ---------------------------------------------------------------------------------------------
# input tables


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


def prepare_csv(path: str) -> tuple[pd.DataFrame, list[str]]:
    """Read an external long CSV -> (long table, sizes smallest first). Raises AnalysisError."""
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
    return df, sizes


def prepare_sweep(results: pd.DataFrame) -> tuple[pd.DataFrame, list[str], dict]:
    """results.parquet -> (long table of completed cells, sizes by params, status counts)."""
    status = results.drop_duplicates("run_id") if "run_id" in results.columns else results
    counts = {str(s): {str(k): int(v) for k, v in g["status"].value_counts().items()} for s, g in status.groupby("size")}
    ok = results[(results["status"] == "completed") & np.isfinite(results["loss"].to_numpy(dtype=float))]
    if ok.empty:
        raise AnalysisError("no completed cells with a finite loss in this sweep")
    df = pd.DataFrame({"recipe": ok["recipe"].astype(str), "size": ok["size"].astype(str), "metric": ok["eval_set"].astype(str),
                       "value": ok["loss"].astype(float), "lr": ok["lr"].astype(float), "seed": ok["seed"].astype(float),
                       "params": ok["params"].astype(float)})
    params = df.groupby("size")["params"].first().to_dict()
    sizes = order_sizes(df["size"].unique(), params)
    return df.reset_index(drop=True), sizes, counts


# ---------------------------------------------------------------------------------------------
# one comparison


def rankdata(a, axis: int = -1) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) along the last axis; scipy.stats.rankdata
    semantics without importing scipy (it would double the report's import time)."""
    a = np.asarray(a, dtype=float)
    if a.ndim == 1:
        order = np.argsort(a, kind="mergesort")
        v = a[order]
        new = np.r_[True, v[1:] != v[:-1]]
        starts = np.flatnonzero(new)
        avg = (starts + np.r_[starts[1:], len(a)] - 1) / 2.0 + 1.0
        out = np.empty(len(a))
        out[order] = avg[np.cumsum(new) - 1]
        return out
    shape = a.shape
    a2 = a.reshape(-1, shape[-1])
    rows, n = a2.shape
    row = np.repeat(np.arange(rows), n)
    order = np.lexsort((a2.ravel(), row))
    v, r = a2.ravel()[order], row[order]
    new = np.ones(len(v), dtype=bool)
    new[1:] = (v[1:] != v[:-1]) | (r[1:] != r[:-1])
    group = np.cumsum(new) - 1
    pos = np.arange(len(v)) - r * n  # 0-based position within the row
    first = pos[new]
    last = np.r_[first[1:] - 1, 0]
    last[:-1] = np.where(r[new][1:] == r[new][:-1], first[1:] - 1, n - 1)
    last[-1] = n - 1
    avg = (first + last) / 2.0 + 1.0
    out = np.empty(len(v))
    out[order] = avg[group]
    return out.reshape(shape)


@functools.lru_cache(maxsize=64)
def _triu(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, 1)


def _signs(v: np.ndarray) -> np.ndarray:
    return np.sign(v[:, None] - v[None, :]).astype(np.int8)


def _percentile_ci(stats: np.ndarray, lo: float = 2.5, hi: float = 97.5) -> list[list[float] | None]:
    """Row-wise [lo, hi] percentiles over the finite entries (numpy's linear interpolation), None
    for rows with fewer than 10 finite entries. One sort for all rows instead of nanpercentile's loop."""
    srt = np.sort(stats, axis=1)  # NaN sort last
    valid = np.isfinite(srt).sum(axis=1)
    out = []
    for i, v in enumerate(valid):
        if v < 10:
            out.append(None)
            continue
        row = []
        for q in (lo, hi):
            pos = q / 100.0 * (v - 1)
            f = int(math.floor(pos))
            c = min(f + 1, v - 1)
            row.append(float(srt[i, f] + (srt[i, c] - srt[i, f]) * (pos - f)))
        out.append(row)
    return out


def _weighted_pearson(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of a and b (B x n) with multiplicities w (B x n); NaN where degenerate."""
    tot = w.sum(axis=1, keepdims=True)
    ma, mb = (w * a).sum(1, keepdims=True) / tot, (w * b).sum(1, keepdims=True) / tot
    ac, bc = a - ma, b - mb
    sab, saa, sbb = (w * ac * bc).sum(1), (w * ac * ac).sum(1), (w * bc * bc).sum(1)
    den = np.sqrt(saa * sbb)
    # a resample whose values are all equal leaves only rounding noise (~1e-32 relative) in saa/sbb
    ok = (saa > 1e-20 * tot[:, 0] * (ma[:, 0] ** 2 + 1e-300)) & (sbb > 1e-20 * tot[:, 0] * (mb[:, 0] ** 2 + 1e-300))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(ok, sab / den, np.nan)
    return np.clip(r, -1.0, 1.0)


def _bootstrap(x, y, sx, sy, n_boot: int, seed: int) -> dict[str, Any]:
    """Percentile CIs over recipes (resampled with replacement); degenerate resamples (constant values,
    no untied pairs) skipped. A resample is a multiplicity vector w, so every statistic is a few
    matrix products with the n x n pair matrices instead of a loop over resamples."""
    n = len(x)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    w = np.bincount((idx + (np.arange(n_boot) * n)[:, None]).ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(float)
    xs, ys = np.broadcast_to(x, w.shape), np.broadcast_to(y, w.shape)
    pear = _weighted_pearson(w, xs, ys)
    # One product with all n x n pair matrices side by side:
    #  - average rank of recipe i inside the resample: (# copies below) + ((# tied copies) + 1) / 2
    #  - pair sums over the resample: sum_ij w_i w_j M_ij = w^T M w
    c = sx.astype(float) * sy
    blocks = [(sx > 0).T, (sx == 0).T, (sy > 0).T, (sy == 0).T, c, np.abs(sx), np.abs(sy), np.abs(c), c > 0]
    wm = (w @ np.hstack([m.astype(float) for m in blocks])).reshape(n_boot, len(blocks), n)
    rx = wm[:, 0] + (wm[:, 1] + 1.0) / 2.0
    ry = wm[:, 2] + (wm[:, 3] + 1.0) / 2.0
    spear = _weighted_pearson(w, rx, ry)
    conc, nx, ny, both, agree = np.einsum("bki,bi->kb", wm[:, 4:], w)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(nx * ny > 0, conc / np.sqrt(nx * ny), np.nan)
        da = np.where(both > 0, agree / np.maximum(both, 1), np.nan)
    stats = np.vstack([pear, pear ** 2, spear, tau, da])
    cis = _percentile_ci(stats)
    return {"pearson_ci": cis[0], "r2_ci": cis[1], "spearman_ci": cis[2], "kendall_ci": cis[3], "decision_accuracy_ci": cis[4],
            "n_boot": n_boot, "n_boot_valid": int(np.isfinite(da).sum())}


def compare(recipes: list[str], x: np.ndarray, y: np.ndarray, *, higher_is_better: bool = False, n_boot: int = 1000,
            seed: int = 0, proxy_sd: np.ndarray | None = None, proxy_k: np.ndarray | None = None,
            abstain_reason: str | None = None, max_flips: int = MAX_FLIPS) -> dict[str, Any]:
    """All agreement figures of proxy values x with target values y (one per recipe, same order).

    proxy_sd: pooled seed sd at the proxy (scalar array) and proxy_k: seeds per recipe, for abstentions.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(recipes)
    out: dict[str, Any] = {"n_recipes": n, "recipes": list(recipes)}
    keys = ["pearson", "r2", "spearman", "kendall", "decision_accuracy"]
    for k in keys:
        out[k] = None
        out[k + "_ci"] = None
    out.update({"fit": None, "n_pairs": 0, "n_ties": 0, "n_flips": 0, "flips": [], "flips_truncated": False,
                "regret": None, "abstain": None, "undefined": {}, "reason": None})
    if n < 3:
        reason = f"only {n} recipe(s) at both sizes (need >= 3)"
        out["undefined"] = {k: reason for k in keys + ["regret", "abstain"]}
        out["reason"] = reason
        return out
    const_x, const_y = np.ptp(x) == 0, np.ptp(y) == 0
    sx, sy = _signs(x), _signs(y)
    iu = _triu(n)
    px, py = sx[iu], sy[iu]
    tied = (px == 0) | (py == 0)
    flip = (px * py) < 0
    out["n_ties"] = int(tied.sum())
    out["n_pairs"] = int((~tied).sum())
    out["n_flips"] = int(flip.sum())
    undefined = {}
    if const_x or const_y:
        which = "proxy" if const_x else "target"
        reason = f"{which} values are constant across recipes"
        for k in ("pearson", "r2", "spearman", "kendall"):
            undefined[k] = reason
    else:
        xc, yc = x - x.mean(), y - y.mean()
        r = float(np.clip((xc @ yc) / math.sqrt((xc @ xc) * (yc @ yc)), -1, 1))
        slope = float((xc @ yc) / (xc @ xc))
        out.update(pearson=r, r2=r * r, fit={"slope": slope, "intercept": float(y.mean() - slope * x.mean())})
        rx, ry = rankdata(x), rankdata(y)
        rxc, ryc = rx - rx.mean(), ry - ry.mean()
        out["spearman"] = float(np.clip((rxc @ ryc) / math.sqrt((rxc @ rxc) * (ryc @ ryc)), -1, 1))
        nx, ny = np.count_nonzero(px), np.count_nonzero(py)
        out["kendall"] = float((px.astype(np.int64) * py).sum() / math.sqrt(nx * ny))
    if out["n_pairs"] == 0:
        undefined["decision_accuracy"] = f"all {len(px)} recipe pairs are tied at the proxy or the target"
    else:
        out["decision_accuracy"] = float(1.0 - out["n_flips"] / out["n_pairs"])
    if n_boot and not (const_x or const_y):
        boot = _bootstrap(x, y, sx, sy, n_boot, seed)
        for k in keys:
            out[k + "_ci"] = boot[k + "_ci"]
        out["n_boot"], out["n_boot_valid"] = boot["n_boot"], boot["n_boot_valid"]
    # flips, largest target disagreement first
    fi = np.flatnonzero(flip)
    if len(fi):
        a, b = iu[0][fi], iu[1][fi]
        order = np.argsort(-np.abs(y[a] - y[b]), kind="stable")[:max_flips]
        better = (lambda u, v: u > v) if higher_is_better else (lambda u, v: u < v)
        out["flips"] = [{"a": recipes[a[j]], "b": recipes[b[j]], "proxy_a": float(x[a[j]]), "proxy_b": float(x[b[j]]),
                         "target_a": float(y[a[j]]), "target_b": float(y[b[j]]),
                         "proxy_prefers": recipes[a[j]] if better(x[a[j]], x[b[j]]) else recipes[b[j]],
                         "target_prefers": recipes[a[j]] if better(y[a[j]], y[b[j]]) else recipes[b[j]]} for j in order]
        out["flips_truncated"] = len(fi) > max_flips
    out["regret"] = regret(recipes, x, y, higher_is_better)
    # abstentions: pairs whose proxy difference is within seed noise
    if proxy_sd is None or proxy_k is None or not np.isfinite(proxy_sd):
        undefined["abstain"] = abstain_reason or "no seed replicates at the proxy size"
    else:
        k = np.asarray(proxy_k, dtype=float)
        sd_diff = float(proxy_sd) * np.sqrt(1.0 / k[iu[0]] + 1.0 / k[iu[1]])
        within = np.abs(x[iu[0]] - x[iu[1]]) < 2.0 * sd_diff
        keep = ~tied & ~within
        n_keep = int(keep.sum())
        out["abstain"] = {"n_abstain": int((within & ~tied).sum()), "n_pairs_confident": n_keep,
                          "decision_accuracy_confident": float(1.0 - (flip & keep).sum() / n_keep) if n_keep else None,
                          "decision_accuracy_all": out["decision_accuracy"], "proxy_seed_sd": float(proxy_sd),
                          "rule": "|proxy diff| < 2 * pooled seed sd * sqrt(1/k_a + 1/k_b)"}
        if not n_keep:
            out["abstain"]["reason"] = "every untied pair is within seed noise"
    out["undefined"] = undefined
    out["reason"] = "; ".join(sorted(set(undefined.values()))) or None
    return out


def regret(recipes, x, y, higher_is_better: bool = False) -> dict[str, Any]:
    """Pick by proxy; how much worse (in target units, >= 0) than the best target recipe."""
    s = -1.0 if higher_is_better else 1.0
    sx, sy = s * np.asarray(x), s * np.asarray(y)
    order = np.argsort(sx, kind="stable")
    best = int(np.argmin(sy))
    out = {"best_target": recipes[best], "top1_pick": recipes[order[0]], "top1": float(sy[order[0]] - sy[best]),
           "top1_target_rank": int((sy < sy[order[0]]).sum()) + 1, "k": None, "topk": None, "topk_picks": None}
    if len(recipes) >= 4:
        k = 3
        picks = order[:k]
        out.update(k=k, topk=float(sy[picks].min() - sy[best]), topk_picks=[recipes[i] for i in picks])
    return out


# ---------------------------------------------------------------------------------------------
# the whole analysis, on a dense cube metric x size x lr x seed x recipe


class Cube:
    """Seed values, seed means and tuned values as dense arrays (NaN = no completed cell)."""

    def __init__(self, df: pd.DataFrame, sizes: list[str], higher_is_better: bool, step: bool = False):
        self.sizes = list(sizes)
        self.sgn = -1.0 if higher_is_better else 1.0
        m, self.metrics = pd.factorize(df["metric"], sort=True)
        r, self.recipes = pd.factorize(df["recipe"], sort=True)
        l, self.lrs = pd.factorize(df["lr"], sort=True)
        k, self.seeds = pd.factorize(df["seed"], sort=True) if "seed" in df.columns else (np.zeros(len(df), dtype=np.int64), pd.Index([0.0]))
        pos = {s: i for i, s in enumerate(self.sizes)}
        s = df["size"].map(pos).to_numpy()
        self.metrics, self.recipes, self.lrs = list(self.metrics), list(self.recipes), np.asarray(self.lrs, dtype=float)
        self.shape = (len(self.metrics), len(self.sizes), len(self.lrs), len(self.seeds), len(self.recipes))
        flat = np.ravel_multi_index((m, s, l, k, r), self.shape)
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
            self.var = np.where(self.k >= 2, (dev ** 2).sum(axis=3) / np.maximum(self.k - 1, 1), np.nan)
        score = np.where(np.isfinite(self.mean), self.sgn * self.mean, np.inf)
        best = score.argmin(axis=2)  # (M, S, R)
        self.tuned_lr_idx = best
        self.tuned = np.take_along_axis(self.mean, best[:, :, None, :], axis=2)[:, :, 0, :]
        self.tuned_k = np.take_along_axis(self.k, best[:, :, None, :], axis=2)[:, :, 0, :]
        w = np.where(self.k >= 2, self.k - 1, 0)
        num = np.nansum(np.where(w > 0, self.var * w, 0.0), axis=(2, 3))
        den = w.sum(axis=(2, 3))
        with np.errstate(invalid="ignore", divide="ignore"):
            self.pooled_sd = np.where(den > 0, np.sqrt(num / np.maximum(den, 1)), np.nan)  # (M, S)

    def lrs_at(self, mi: int, si: int) -> list[int]:
        return [li for li in range(len(self.lrs)) if np.isfinite(self.mean[mi, si, li]).any()]


def seed_noise(cube: Cube) -> list[dict]:
    """Per (metric, size): fraction of recipe pairs that two seeds of the same size/LR order differently."""
    out = []
    if len(cube.seeds) < 2:
        return out
    M, S, L, K, R = cube.shape
    iu = _triu(R)
    ka, kb = _triu(K)
    for mi in range(M):
        for si in range(S):
            if not np.isfinite(cube.mean[mi, si]).any():
                continue
            cells = cube.cell[mi, si]  # L x K x R
            ok = np.isfinite(cells)
            with np.errstate(invalid="ignore"):
                sg = np.sign(cells[..., :, None] - cells[..., None, :])[..., iu[0], iu[1]]  # L x K x P (NaN -> 0 below)
            sg = np.where(ok[..., iu[0]] & ok[..., iu[1]], sg, 0.0)
            a, b = sg[:, ka], sg[:, kb]  # L x seed pairs x P
            both = (a != 0) & (b != 0)
            dis, tot = int((both & ((a * b) < 0)).sum()), int(both.sum())
            common = (ok[:, ka] & ok[:, kb]).sum(axis=2)  # recipes with both seeds, per LR and seed pair
            n_comp = int((common >= 2).sum())
            rec = {"metric": cube.metrics[mi], "size": cube.sizes[si], "n_seed_pairs": n_comp, "n_pairs": tot,
                   "floor": dis / tot if tot else None}
            if not tot:
                rec["reason"] = "no LR with two seeds of >= 2 common recipes"
            out.append(rec)
    return out


def standard_lr(df: pd.DataFrame) -> float | None:
    """The LR present in the most completed cells; ties -> the largest."""
    if "lr" not in df.columns or df["lr"].isna().all():
        return None
    cols = [c for c in ("size", "recipe", "lr", "seed") if c in df.columns]
    counts = df.drop_duplicates(cols)["lr"].value_counts()
    return float(max(counts[counts == counts.max()].index))


def analyze(df: pd.DataFrame, sizes: list[str], *, higher_is_better: bool = False, n_boot: int = 1000, n_boot_lr: int = 100,
            seed: int = 0, baselines: dict[tuple[str, str], dict[str, float]] | None = None, baseline_reason: str | None = None,
            curves: pd.DataFrame | None = None, max_flips_lr: int = 10) -> dict[str, Any]:
    """Every comparison of the long table `df` (see module doc).

    baselines: (recipe, metric) -> {"unigram": loss, "bigram": loss}; used for undertrained flags and
    for the null-baseline comparisons. curves: long table with a step column, for early signal.
    n_boot: bootstrap resamples of the size-pair comparisons; n_boot_lr: of each per-proxy-LR one.
    """
    df = df.copy()
    has_lr = "lr" in df.columns and df["lr"].notna().any()
    if not has_lr:
        df["lr"] = np.nan
    df["lr"] = df["lr"].astype(float).fillna(-1.0)  # -1 = "no LR given"
    if "seed" in df.columns:
        df["seed"] = df["seed"].astype(float).fillna(-1.0)
    cube = Cube(df, sizes, higher_is_better)
    has_seed = len(cube.seeds) > 1
    direction = "higher" if higher_is_better else "lower"
    M, S, L, K, R = cube.shape
    recipes = np.array(cube.recipes, dtype=object)
    uni = np.full((M, R), np.nan)
    for (r, m), v in (baselines or {}).items():
        if r in cube.recipes and m in cube.metrics:
            uni[cube.metrics.index(m), cube.recipes.index(r)] = v["unigram"]
    std = standard_lr(df) if has_lr else None
    std_i = int(np.flatnonzero(cube.lrs == std)[0]) if std is not None else None
    comparisons: list[dict] = []

    def one(mi, pi, ti, x, y, k, *, nb, proxy_lr, target_mode, max_flips=MAX_FLIPS):
        ok = np.isfinite(x) & np.isfinite(y)
        names = list(recipes[ok])
        sd = cube.pooled_sd[mi, pi]
        c = compare(names, x[ok], y[ok], higher_is_better=higher_is_better, n_boot=nb, seed=seed,
                    proxy_sd=None if not np.isfinite(sd) else np.float64(sd), proxy_k=k[ok],
                    abstain_reason=None if has_seed else "single seed: no seed-noise estimate", max_flips=max_flips)
        c.update(metric=cube.metrics[mi], proxy=cube.sizes[pi], target=cube.sizes[ti], direction=direction,
                 proxy_lr=proxy_lr, target_mode=target_mode,
                 proxy_values=dict(zip(names, x[ok].tolist())), target_values=dict(zip(names, y[ok].tolist())))
        return c

    reduced: list[dict] = []
    for mi in range(M):
        for pi in range(S):
            for ti in range(pi + 1, S):
                if not (np.isfinite(cube.tuned[mi, pi]).any() and np.isfinite(cube.tuned[mi, ti]).any()):
                    continue
                y = cube.tuned[mi, ti]
                comparisons.append(one(mi, pi, ti, cube.tuned[mi, pi], y, cube.tuned_k[mi, pi], nb=n_boot,
                                       proxy_lr="tuned" if has_lr else None, target_mode="tuned" if has_lr else None))
                plrs, tlrs = cube.lrs_at(mi, pi), cube.lrs_at(mi, ti)
                if not has_lr or (len(plrs) < 2 and len(tlrs) < 2):
                    continue
                fixed = cube.mean[mi, ti, std_i] if std_i is not None and np.isfinite(cube.mean[mi, ti, std_i]).any() else None
                curve = []
                for li in plrs:
                    lr = float(cube.lrs[li])
                    cells = cube.cell[mi, pi, li]  # K x R
                    under = []
                    if baselines and not higher_is_better:
                        with np.errstate(invalid="ignore"):
                            bad = np.argwhere(cells > uni[mi][None, :])
                        under = [{"recipe": cube.recipes[r], "seed": float(cube.seeds[kk]) if has_seed else None,
                                  "loss": float(cells[kk, r]), "unigram": float(uni[mi, r])} for kk, r in bad]
                    for mode, tt in (("tuned", y), ("fixed", fixed)):
                        if tt is None:
                            c = compare([], np.zeros(0), np.zeros(0), n_boot=0)
                            c.update(metric=cube.metrics[mi], proxy=cube.sizes[pi], target=cube.sizes[ti], direction=direction,
                                     proxy_lr=lr, target_mode=mode, proxy_values={}, target_values={})
                            c["reason"] = f"target {cube.sizes[ti]} has no runs at the standard LR {std:g}"
                            c["undefined"] = {k: c["reason"] for k in ("pearson", "r2", "spearman", "kendall", "decision_accuracy")}
                        else:
                            c = one(mi, pi, ti, cube.mean[mi, pi, li], tt, cube.k[mi, pi, li], nb=n_boot_lr, proxy_lr=lr,
                                    target_mode=mode, max_flips=max_flips_lr)
                        c["undertrained"] = under
                        comparisons.append(c)
                        curve.append({"proxy_lr": lr, "target_mode": mode, "spearman": c["spearman"],
                                      "decision_accuracy": c["decision_accuracy"], "decision_accuracy_ci": c["decision_accuracy_ci"],
                                      "n_recipes": c["n_recipes"], "n_undertrained": len(under), "reason": c["reason"]})
                ok = np.isfinite(y)
                entry = {"metric": cube.metrics[mi], "proxy": cube.sizes[pi], "target": cube.sizes[ti], "standard_lr": std,
                         "target_best_lr": {cube.recipes[r]: float(cube.lrs[cube.tuned_lr_idx[mi, ti, r]]) for r in np.flatnonzero(ok)},
                         "curve": curve}
                for mode in ("tuned", "fixed"):
                    pts = [p for p in curve if p["target_mode"] == mode and p["decision_accuracy"] is not None]
                    eligible = [p for p in pts if p["n_undertrained"] == 0]
                    key = lambda p: (p["decision_accuracy"], p["spearman"] if p["spearman"] is not None else -2.0,
                                     -abs(math.log(p["proxy_lr"] / std)) if std and std > 0 and p["proxy_lr"] > 0 else 0.0)
                    best = max(eligible, key=key) if eligible else None
                    stdp = next((p for p in pts if std is not None and p["proxy_lr"] == std), None)
                    entry[f"best_proxy_lr_{mode}"] = best["proxy_lr"] if best else None
                    entry[f"best_{mode}"] = best
                    entry[f"standard_{mode}"] = stdp
                    if not best:
                        entry[f"reason_{mode}"] = ("every proxy LR is undertrained (worse than unigram) or undefined" if pts
                                                   else "no defined point on the curve")
                reduced.append(entry)
    early = early_signal(curves, cube, higher_is_better) if curves is not None else {
        "available": False, "reason": "no training curves (external results without a step column)", "points": []}
    out = {"direction": direction, "metrics": cube.metrics, "sizes": list(sizes), "recipes": cube.recipes,
           "n_boot": n_boot, "n_boot_lr": n_boot_lr, "bootstrap_seed": seed, "comparisons": comparisons,
           "seed_noise": seed_noise(cube) if has_seed else [],
           "reduced_lr": {"available": bool(reduced), "standard_lr": std,
                          "standard_lr_rule": "the LR present in the most completed cells; ties -> the largest",
                          "entries": reduced,
                          "reason": None if reduced else ("no lr column" if not has_lr else "a single LR at every size")},
           "early_signal": early}
    out["baselines"] = baseline_section(baselines, baseline_reason, cube, comparisons, higher_is_better, n_boot, seed)
    out["summary"] = summarize(out)
    return out


def baseline_section(baselines, reason, cube: Cube, comparisons, higher_is_better, n_boot, seed) -> dict:
    """Agreement of the unigram/bigram null models with each tuned target, beside the trained proxies."""
    if not baselines:
        return {"available": False, "reason": reason or "no baselines computed", "values": [], "comparisons": [], "vs_proxies": [], "statements": []}
    values = [{"recipe": r, "metric": m, **v} for (r, m), v in sorted(baselines.items())]
    comps, vs, statements = [], [], []
    for mi, metric in enumerate(cube.metrics):
        for ti in range(1, len(cube.sizes)):
            target = cube.sizes[ti]
            y = cube.tuned[mi, ti]
            common = [r for ri, r in enumerate(cube.recipes) if np.isfinite(y[ri]) and (r, metric) in baselines]
            if not common:
                continue
            yy = np.array([y[cube.recipes.index(r)] for r in common])
            per = {}
            for kind in ("unigram", "bigram"):
                x = np.array([baselines[(r, metric)][kind] for r in common])
                c = compare(common, x, yy, higher_is_better=higher_is_better, n_boot=n_boot, seed=seed,
                            abstain_reason="a count model has no seed noise")
                c.update(metric=metric, proxy=kind, target=target, baseline=kind, proxy_lr=None, target_mode="tuned",
                         proxy_values=dict(zip(common, x.tolist())), target_values=dict(zip(common, yy.tolist())))
                comps.append(c)
                per[kind] = c
            prox = [c for c in comparisons if c["metric"] == metric and c["target"] == target and c.get("proxy_lr") in (None, "tuned")
                    and c["decision_accuracy"] is not None]
            bda = per["bigram"]["decision_accuracy"]
            best = max(prox, key=lambda c: c["decision_accuracy"]) if prox else None
            beats = None if (best is None or bda is None) else best["decision_accuracy"] > bda
            vs.append({"metric": metric, "target": target, "bigram_decision_accuracy": bda,
                       "unigram_decision_accuracy": per["unigram"]["decision_accuracy"],
                       "best_proxy": best["proxy"] if best else None, "best_proxy_decision_accuracy": best["decision_accuracy"] if best else None,
                       "any_proxy_beats_bigram": beats})
            if beats is False:
                statements.append(f"{metric} -> {target}: no trained proxy beats the bigram baseline (bigram decision accuracy {bda:.2f}, "
                                  f"best proxy {best['proxy']} {best['decision_accuracy']:.2f}).")
            elif beats:
                statements.append(f"{metric} -> {target}: the {best['proxy']} proxy beats the bigram baseline "
                                  f"(decision accuracy {best['decision_accuracy']:.2f} vs {bda:.2f}).")
            else:
                statements.append(f"{metric} -> {target}: proxy-vs-bigram comparison undefined "
                                  f"({per['bigram']['reason'] or 'no defined proxy comparison'}).")
    return {"available": True, "reason": None, "smoothing": "add-one", "units": "nats/token", "values": values,
            "comparisons": comps, "vs_proxies": vs, "statements": statements}


def early_signal(curves: pd.DataFrame, cube: Cube, higher_is_better: bool) -> dict:
    """Agreement of each size's tuned values at a fraction of its training with the final tuned largest size."""
    target = cube.sizes[-1]
    if curves is None or curves.empty:
        return {"available": False, "reason": "no training curves", "points": [], "target": target}
    c = curves.copy()
    if "lr" not in c.columns or c["lr"].isna().all():
        c["lr"] = -1.0
    c["lr"] = c["lr"].astype(float).fillna(-1.0)
    if "seed" in c.columns:
        c["seed"] = c["seed"].astype(float).fillna(-1.0)
    gkeys = [k for k in ("size", "recipe", "lr", "seed", "metric") if k in c.columns]
    c["fraction"] = (c["step"] / c.groupby(gkeys)["step"].transform("max")).round(2)
    m = c.groupby(["metric", "size", "fraction", "lr", "recipe"], sort=False).agg(mean=("value", "mean"), step=("step", "median")).reset_index()
    score = -m["mean"] if higher_is_better else m["mean"]
    m = m.loc[score.groupby([m["metric"], m["size"], m["fraction"], m["recipe"]], sort=False).idxmin().to_numpy()]
    points = []
    for (metric, size, frac), g in m.groupby(["metric", "size", "fraction"], sort=False):
        if metric not in cube.metrics or size not in cube.sizes:
            continue
        y = cube.tuned[cube.metrics.index(metric), -1]
        vals = dict(zip(g["recipe"], g["mean"]))
        common = [r for ri, r in enumerate(cube.recipes) if r in vals and np.isfinite(y[ri])]
        if len(common) < 3:
            continue
        c_ = compare(common, np.array([vals[r] for r in common]), np.array([y[cube.recipes.index(r)] for r in common]),
                     higher_is_better=higher_is_better, n_boot=0)
        points.append({"metric": metric, "proxy": size, "target": target, "fraction": float(frac), "step": float(g["step"].median()),
                       "spearman": c_["spearman"], "decision_accuracy": c_["decision_accuracy"], "n_recipes": len(common), "reason": c_["reason"]})
    order = {s: i for i, s in enumerate(cube.sizes)}
    points.sort(key=lambda p: (p["metric"], order.get(p["proxy"], 0), p["fraction"]))
    return {"available": bool(points), "target": target, "points": points,
            "reason": None if points else "fewer than 3 recipes with curves at both sizes",
            "note": "proxy value = best over LRs of the seed-mean eval value at that fraction of its own training; target = final tuned value"}


def _fmt_ci(ci) -> str:
    return f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def verdict(c: dict) -> str:
    """holds: DA >= 0.8 and Spearman CI above 0; weak: DA CI above 0.5; otherwise does not hold."""
    da = c.get("decision_accuracy")
    if da is None:
        return "undefined"
    ci, sci = c.get("decision_accuracy_ci"), c.get("spearman_ci")
    if da >= 0.8 and (sci is None or sci[0] > 0) and (ci is None or ci[0] > 0.5):
        return "holds"
    if ci is not None and ci[0] > 0.5 or ci is None and da > 0.5:
        return "weak"
    return "does not hold"


def sentence(c: dict) -> str:
    if c.get("decision_accuracy") is None:
        return f"the {c['proxy']} proxy vs the {c['target']} target on {c['metric']}: undefined ({c.get('reason')})."
    flips = c["n_flips"]
    s = (f"the {c['proxy']} proxy ranks these {c['n_recipes']} recipes the way the {c['target']} target does with decision accuracy "
         f"{c['decision_accuracy']:.2f}{_fmt_ci(c['decision_accuracy_ci'])}; {flips} pair{'s' if flips != 1 else ''} flip"
         f"{'' if flips != 1 else 's'} of {c['n_pairs']}")
    if c.get("spearman") is not None:
        s += f"; Spearman {c['spearman']:.2f}{_fmt_ci(c['spearman_ci'])}"
    if c.get("n_ties"):
        s += f"; {c['n_ties']} tied pair(s) excluded"
    return s + "."


def summarize(report: dict) -> dict:
    """Per metric: the primary comparison of every proxy with the largest size, a verdict and a sentence."""
    sizes = report["sizes"]
    target = sizes[-1]
    per = []
    for metric in report["metrics"]:
        prim = [c for c in report["comparisons"] if c["metric"] == metric and c["target"] == target and c.get("proxy_lr") in (None, "tuned")]
        lines = [{"proxy": c["proxy"], "target": c["target"], "verdict": verdict(c), "sentence": sentence(c),
                  "decision_accuracy": c["decision_accuracy"], "spearman": c["spearman"]} for c in prim]
        per.append({"metric": metric, "target": target, "lines": lines})
    return {"target": target, "per_metric": per,
            "verdict_rule": "holds: decision accuracy >= 0.8 with its CI above 0.5 and Spearman CI above 0; weak: decision-accuracy CI above 0.5; else does not hold"}
