"""Size extrapolation: predict each recipe's value at the target size from several proxy sizes.

Issue 15 ("predict, don't just rank"). Input is the analysis' long table (recipe, size, metric, value
and optionally lr, seed, step, params, tokens, flops); `predict` returns the JSON-ready
``{"methods": [...], "single_scale": [...], "notes": [...]}`` section.

Methods (per metric; every fit is by scipy.optimize, nothing hand-written):

- ``shared_power`` (default): L_r(N) = E_r + A_r (N/N_ref)^-alpha with ONE alpha shared by all recipes.
  For a fixed alpha, E_r and A_r are linear least squares; alpha minimises the profiled residual sum of
  squares (grid, then scipy ``minimize_scalar`` in the best bracket). Needs 3 sizes.
- ``log_linear``: L_r = a_r + b_r log N (per recipe). Needs 2 sizes.
- ``power_per_recipe``: L_r = E_r + A_r (N/N_ref)^-alpha_r (scipy ``curve_fit`` with bounds). With exactly
  3 sizes three parameters go through three points: ``exact_fit: true`` (no residual to judge it by).
- ``compute_3p`` / ``compute_2p`` (DataDecide, Magnusson et al. 2025; OLMo-ladder forms):
  L_r(C) = exp(a_r) / (C/C_ref)^alpha_r + E_r, and the same without E, C = 6 N D (or a flops column),
  fitted by L-BFGS-B (scipy ``minimize``) on a Huber loss (delta 1e-3) of log residuals
  log(pred) - log(L), several starting points. Bounds: a in [-10, 10], alpha in [0, 3], E in [0, min L).
- ``nd_law`` (experimental): L_r(N, D) = exp(a) / (N/N_ref)^alpha + exp(b) / (D/D_ref)^beta + E over every
  (size, step) of the proxies (rows with step and tokens), same loss and optimiser; predicts at the
  target's (N, D). Only with intermediate checkpoints.

Scoring, against the target's values when it was run: decision accuracy (pairs ordered as at the
target, ties excluded), Spearman, mean absolute error, bias (mean pred - actual), top-1 regret (how much
worse the predicted best recipe is at the target than the actual best), and compute_fraction =
compute of the fit sizes (sum over sizes of 6 N D per recipe) / compute of training every recipe at the
target. A backtest always leaves out the largest proxy and predicts it from the smaller ones.
`single_scale` ranks the target by each proxy size's raw values; each method's ``da_diff`` is its DA minus
the best single size among its fit sizes, with a seeded paired bootstrap interval over recipes.

Tokens: a tokens column gives each size's training tokens (its largest value at that size); without one,
D = 20 N (Chinchilla's ratio) is assumed and a note says so.
"""

from __future__ import annotations

# scipy.optimize and scipy.stats are imported where a fit needs them: importing them costs ~2 s on a loaded machine,
# and a report whose data cannot be extrapolated (two sizes) only needs the frontier's pair counts.
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from proxyscale.analysis import stats
from proxyscale.analysis.importer import parse_size
from proxyscale.analysis.types import doc
from proxyscale.errors import UserError

TOKENS_PER_PARAM = 20.0  # assumed D/N without a tokens column (Hoffmann et al. 2022)
HUBER_DELTA = 1e-3  # Huber delta on log residuals (Hoffmann et al. 2022; DataDecide's fits)
METHODS = ("shared_power", "log_linear", "power_per_recipe", "compute_3p", "compute_2p", "nd_law")
MIN_SIZES = {"shared_power": 3, "log_linear": 2, "power_per_recipe": 3, "compute_3p": 3, "compute_2p": 2}


@dataclass
class MethodEntry:
    """One extrapolation method fitted on the proxies and scored at the target."""

    metric: str = doc("eval set")
    method: str = doc("one of METHODS")
    fit_sizes: list[str] = doc("the sizes it was fitted on", factory=list)
    target: str = doc("the size it predicts")
    predicted: dict = doc("{recipe: predicted value | null}", factory=dict)
    params: dict = doc("the fitted parameters ({name: value or {recipe: value}})", factory=dict)
    residuals: dict = doc("{rms, max_abs, per_recipe_rms} of the fit at the fit sizes", factory=dict)
    compute_fraction: float = doc("compute of the fit sizes / training every recipe at the target", 0.0)
    backtest: bool = doc("leaves out the largest proxy and predicts it from the smaller ones", False)
    exact_fit: bool | None = doc("power_per_recipe on exactly 3 sizes: three parameters through three points")
    experimental: bool = doc("nd_law", False)
    decision_accuracy: float | None = doc("of the predictions against the target's values")
    decision_accuracy_ci: list[float] | None = doc("its 95% interval (stats.da_interval, as every comparison)")
    spearman: float | None = doc("Spearman rho of predictions and values")
    mean_abs_error: float | None = doc("mean |prediction - value|")
    bias: float | None = doc("mean prediction - value")
    top1_regret: float | None = doc("how much worse at the target the predicted best recipe is than the actual best")
    reason: str | None = doc("why it was not scored")
    best_single_size: str | None = doc("the fit size whose raw values rank the target best")
    da_diff: float | None = doc("DA - that size's DA")
    da_diff_ci: list[float] | None = doc("95% paired bootstrap interval over recipes (stats.percentile_interval)")


@dataclass
class SingleScale:
    """One proxy size's raw values ranking the target."""

    metric: str = doc("eval set")
    size: str = doc("proxy size")
    target: str = doc("target size")
    compute_fraction: float = doc("its compute / training every recipe at the target", 0.0)
    backtest: bool = doc("scored against the largest proxy (the backtest's target)", False)
    decision_accuracy: float | None = doc("against the target")
    decision_accuracy_ci: list[float] | None = doc("its 95% interval")
    spearman: float | None = doc("Spearman rho")
    mean_abs_error: float | None = doc("mean |value - target value|")
    bias: float | None = doc("mean value - target value")
    top1_regret: float | None = doc("regret of this size's best recipe at the target")


@dataclass
class SkippedMethod:
    method: str = doc("method name")
    reason: str = doc("why it did not run (too few sizes, no checkpoints, over the fitting budget)", "")


@dataclass
class Prediction:
    """Size extrapolation: each method's predictions at the target, scored against it and against the best single size."""

    available: bool = doc("methods ran", False)
    reason: str | None = doc("one line when not available (fewer than 3 sizes, sizes without a parameter count, too many recipes)")
    target: str | None = doc("the largest size")
    fit_sizes: list[str] = doc("the proxies", factory=list)
    methods_run: list[str] = doc("methods fitted", factory=list)
    methods_skipped: list[SkippedMethod] = doc("methods not fitted, with why", factory=list)
    methods: list[MethodEntry] = doc("fits and backtests", factory=list)
    single_scale: list[SingleScale] = doc("each proxy size alone, scored the same way", factory=list)
    notes: list[str] = doc("caveats in words", factory=list)


class PredictError(UserError):
    """Input the extrapolation cannot use; str(exc) is one line."""


# ---------------------------------------------------------------------------------------------
# the long table -> per-metric recipe x size tables


def _directions(metrics, higher_is_better) -> dict[str, bool]:
    if isinstance(higher_is_better, dict):
        return {m: bool(higher_is_better.get(m, False)) for m in metrics}
    if higher_is_better is None or isinstance(higher_is_better, bool):
        return {m: bool(higher_is_better) for m in metrics}
    named = set(higher_is_better)
    return {m: m in named for m in metrics}


def _tuned(df: pd.DataFrame, higher: dict[str, bool], step_keep: str = "final") -> pd.DataFrame:
    """Seed means, then each recipe's best LR -> rows (metric, size, recipe[, step]) with value (`stats.tuned`)."""
    return stats.tuned(df, higher, step_keep=step_keep)


def final_tables(df: pd.DataFrame, sizes: list[str], higher_is_better=False) -> dict[str, pd.DataFrame]:
    """metric -> DataFrame (index recipe, columns sizes in order) of seed-mean, best-LR final values."""
    higher = _directions(df["metric"].unique(), higher_is_better)
    t = _tuned(df, higher)
    out = {}
    for m, g in t.groupby("metric", sort=True):
        out[str(m)] = g.pivot(index="recipe", columns="size", values="value").reindex(columns=[s for s in sizes])
    return out


def size_params(df: pd.DataFrame, sizes: list[str]) -> dict[str, float]:
    """Parameter count per size: the params column where given, else the number in the label."""
    given = {}
    if "params" in df.columns:
        given = {str(s): float(v) for s, v in df.groupby("size")["params"].max().items() if v == v}
    out, bad = {}, []
    for s in sizes:
        n = given.get(s, parse_size(s))
        if n is None or not n > 0:
            bad.append(s)
        else:
            out[s] = float(n)
    if bad:
        raise PredictError(
            f"cannot extrapolate across sizes: {', '.join(map(repr, bad))} has no params value and its label "
            "does not name a parameter count (give a params column or labels like 60M, 1B)"
        )
    return out


def size_tokens(df: pd.DataFrame, sizes: list[str], params: dict[str, float], notes: list[str] | None = None) -> dict[str, float]:
    """Training tokens per size: the largest tokens value at that size, else 20 x params (with a note)."""
    given = {}
    if "tokens" in df.columns:
        given = {str(s): float(v) for s, v in df.groupby("size")["tokens"].max().items() if v == v and v > 0}
    missing = [s for s in sizes if s not in given]
    if missing and notes is not None:
        notes.append(f"no tokens for size(s) {', '.join(missing)}: compute assumes D = {TOKENS_PER_PARAM:g} x N tokens (Chinchilla's ratio).")
    return {s: given.get(s, TOKENS_PER_PARAM * params[s]) for s in sizes}


def size_compute(df: pd.DataFrame, sizes: list[str], params: dict[str, float], tokens: dict[str, float]) -> dict[str, float]:
    """Training FLOPs of one recipe at each size: the mean over recipes of a flops column's final value, else 6 N D."""
    out = {s: 6.0 * params[s] * tokens[s] for s in sizes}
    if "flops" in df.columns and df["flops"].notna().any():
        per = df.groupby(["size", "recipe"])["flops"].max().groupby("size").mean()
        out.update({str(s): float(v) for s, v in per.items() if v == v and v > 0 and str(s) in out})
    return out


# ---------------------------------------------------------------------------------------------
# scores


def bootstrap_da(pred, actual, n_boot: int = 1000, seed: int = 0, other=None) -> np.ndarray:
    """Seeded bootstrap over recipes of DA (or of DA(pred) - DA(other), paired) -> array of n_boot values.

    A resampled recipe drawn c times weighs its pairs by c_i c_j; a recipe paired with its own copy is a tie.
    Pairs tied by the tie rule (`stats.snapped`) are left out, as in every other DA."""
    counts = stats.resample_counts(len(pred), n_boot, seed)

    def da(x):
        p, a = stats.snapped(x, actual)
        sp, sa = np.sign(p[:, None] - p[None, :]), np.sign(a[:, None] - a[None, :])
        valid = ((sp != 0) & (sa != 0)).astype(float)
        agree = valid * (sp == sa)
        num = ((counts @ agree) * counts).sum(axis=1)  # sum_ij c_i agree_ij c_j per replicate, by BLAS (einsum: 10x slower)
        den = ((counts @ valid) * counts).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.maximum(den, 1e-300), np.nan)

    out = da(np.asarray(pred, float))
    if other is not None:
        out = out - da(np.asarray(other, float))
    return out


def scores(pred, actual, higher: bool) -> dict[str, Any]:
    p, a = np.asarray(pred, float), np.asarray(actual, float)
    pick = int(np.argmax(p) if higher else np.argmin(p))
    best = float(a.max() if higher else a.min())
    regret = best - float(a[pick]) if higher else float(a[pick]) - best
    return {
        "decision_accuracy": stats.decision_accuracy(p, a),
        "spearman": stats.spearman(p, a),
        "mean_abs_error": float(np.mean(np.abs(p - a))),
        "bias": float(np.mean(p - a)),
        "top1_regret": regret,
    }


# ---------------------------------------------------------------------------------------------
# fits: each takes N (S,), Y (R, S) [, compute (S,)] and returns (predict(N_t, C_t) -> (R,), params, fitted (R, S))


def _fit_shared_power(N, Y):
    from scipy import optimize

    x = N / N.max()
    lx = np.log(x)

    def solve(alpha):
        X = np.column_stack([np.ones_like(x), np.exp(-alpha * lx)])
        coef, *_ = np.linalg.lstsq(X, Y.T, rcond=None)  # (2, R)
        return coef, float(((X @ coef - Y.T) ** 2).sum())

    grid = np.geomspace(1e-3, 3.0, 80)
    rss = np.array([solve(a)[1] for a in grid])
    i = int(np.argmin(rss))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(lambda a: solve(a)[1], bounds=(lo, hi), method="bounded", options={"xatol": 1e-7})
    alpha = float(res.x) if res.fun <= rss[i] else float(grid[i])
    coef, _ = solve(alpha)
    E, A = coef
    fitted = E[:, None] + A[:, None] * x[None, :] ** -alpha
    predict = lambda Nt, Ct: E + A * (Nt / N.max()) ** -alpha
    return predict, {"alpha": alpha, "n_ref": float(N.max()), "E": E, "A": A, "at_bound": bool(i in (0, len(grid) - 1))}, fitted


def _fit_log_linear(N, Y):
    lx = np.log(N)
    b, a = np.polyfit(lx, Y.T, 1)  # linear least squares per recipe
    fitted = a[:, None] + b[:, None] * lx[None, :]
    return (lambda Nt, Ct: a + b * math.log(Nt)), {"intercept": a, "slope_per_log_n": b}, fitted


def _fit_power_per_recipe(N, Y, alpha0: float = 0.3):
    from scipy import optimize

    x = N / N.max()
    f = lambda xx, E, A, al: E + A * xx**-al
    P = np.zeros((len(Y), 3))
    for r, y in enumerate(Y):
        p0 = (max(float(y.min()) * 0.9, 0.0) if y.min() > 0 else float(y.min()) - 1.0, max(float(y[-1] - y.min() * 0.9), 1e-3), alpha0)
        lo_e = 0.0 if y.min() > 0 else -np.inf
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hi_e = float(y.min()) if y.min() > 0 else np.inf
                P[r], _ = optimize.curve_fit(f, x, y, p0=p0, bounds=([lo_e, -np.inf, 0.0], [hi_e, np.inf, 3.0]), maxfev=20000)
        except (RuntimeError, ValueError):
            P[r] = np.nan
    E, A, al = P.T
    fitted = E[:, None] + A[:, None] * x[None, :] ** -al[:, None]
    return (lambda Nt, Ct: E + A * (Nt / N.max()) ** -al), {"n_ref": float(N.max()), "E": E, "A": A, "alpha": al}, fitted


def _huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def _huber_fit(model, y, starts, bounds):
    """Minimise sum Huber(log model(p) - log y) by L-BFGS-B from several starts; best result."""
    from scipy import optimize

    ly = np.log(y)

    def loss(p):
        pred = model(p)
        if np.any(~np.isfinite(pred)) or np.any(pred <= 0):
            return 1e6
        return float(_huber(np.log(pred) - ly).sum())

    best = None
    for s in starts:
        r = optimize.minimize(loss, np.asarray(s, float), method="L-BFGS-B", bounds=bounds)
        if best is None or r.fun < best.fun:
            best = r
    return best.x


def _fit_compute(C, Y, with_e: bool):
    c = C / C.max()
    lc = np.log(c)
    P = np.zeros((len(Y), 3))
    for r, y in enumerate(Y):
        if np.any(y <= 0):
            P[r] = np.nan
            continue
        ymin = float(y.min())
        if with_e:
            model = lambda p: np.exp(p[0] - p[1] * lc) + p[2]
            starts = [(math.log(max(ymin * (1 - e), 1e-6)), al, ymin * e) for al in (0.05, 0.2, 0.5) for e in (0.0, 0.5, 0.9)]
            bounds = [(-10, 10), (0, 3), (0, ymin * (1 - 1e-9))]
            P[r] = _huber_fit(model, y, starts, bounds)
        else:
            model = lambda p: np.exp(p[0] - p[1] * lc)
            P[r, :2] = _huber_fit(model, y, [(math.log(ymin), al) for al in (0.01, 0.05, 0.2)], [(-10, 10), (0, 3)])
    a, al, E = P.T
    fitted = np.exp(a[:, None] - al[:, None] * lc[None, :]) + E[:, None]
    params = {"c_ref": float(C.max()), "a": a, "alpha": al} | ({"E": E} if with_e else {})
    return (lambda Nt, Ct: np.exp(a - al * math.log(Ct / C.max())) + E), params, fitted


def _fit_nd(points: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """points[r] = (N, D, L) arrays of one recipe -> predict(N_t, D_t) per recipe."""
    allN = np.concatenate([p[0] for p in points])
    allD = np.concatenate([p[1] for p in points])
    n_ref, d_ref = float(allN.max()), float(allD.max())
    P = np.full((len(points), 5), np.nan)
    rms = np.full(len(points), np.nan)
    for r, (n, d, y) in enumerate(points):
        if len(y) < 5 or len(set(n)) < 2 or np.any(y <= 0):
            continue
        ln, ld, ymin = np.log(n / n_ref), np.log(d / d_ref), float(y.min())
        model = lambda p, ln=ln, ld=ld: np.exp(p[0] - p[1] * ln) + np.exp(p[2] - p[3] * ld) + p[4]
        starts = [(math.log(ymin * 0.3), al, math.log(ymin * 0.3), be, ymin * 0.4) for al in (0.1, 0.4) for be in (0.1, 0.4)]
        P[r] = _huber_fit(model, y, starts, [(-10, 10), (0, 3), (-10, 10), (0, 3), (0, ymin * (1 - 1e-9))])
        rms[r] = float(np.sqrt(np.mean((model(P[r]) - y) ** 2)))
    a, al, b, be, E = P.T
    predict = lambda Nt, Dt: np.exp(a - al * math.log(Nt / n_ref)) + np.exp(b - be * math.log(Dt / d_ref)) + E
    return predict, {"n_ref": n_ref, "d_ref": d_ref, "a": a, "alpha": al, "b": b, "beta": be, "E": E}, rms


# ---------------------------------------------------------------------------------------------
# the section


def _jsonable(params: dict, recipes: list[str]) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, np.ndarray):
            out[k] = {r: (float(x) if np.isfinite(x) else None) for r, x in zip(recipes, v)}
        else:
            out[k] = v
    return out


def _residuals(fitted: np.ndarray, Y: np.ndarray, recipes: list[str]) -> dict:
    res = fitted - Y
    per = np.sqrt(np.nanmean(res**2, axis=1))
    return {"rms": float(np.sqrt(np.nanmean(res**2))), "max_abs": float(np.nanmax(np.abs(res))), "per_recipe_rms": {r: float(v) for r, v in zip(recipes, per)}}


def _nd_points(df: pd.DataFrame, metric: str, fit_sizes: list[str], recipes: list[str], params: dict[str, float], higher: dict[str, bool]):
    if "step" not in df.columns or "tokens" not in df.columns or not df["step"].notna().any() or not df["tokens"].notna().any():
        return None, "needs intermediate checkpoints (step and tokens columns)"
    d = df[(df["metric"] == metric) & df["size"].isin(fit_sizes) & df["tokens"].notna()]
    if d.empty:
        return None, "no rows with tokens at the fit sizes"
    d = d.copy()
    d["step"] = d["tokens"]  # one point per tokens value
    t = _tuned(d.drop(columns=["tokens"]), higher, step_keep="all")
    pts = []
    for r in recipes:
        g = t[t["recipe"] == r]
        pts.append((g["size"].map(params).to_numpy(float), g["step"].to_numpy(float), g["value"].to_numpy(float)))
    if all(len(p[2]) < 5 for p in pts):
        return None, "fewer than 5 (size, step) points per recipe"
    return pts, None


def _method_entry(metric, method, fit_sizes, target, recipes, pred, y, higher, params, residuals, cf, extra=None):
    e = {
        "metric": metric,
        "method": method,
        "fit_sizes": list(fit_sizes),
        "target": target,
        "predicted": {r: (float(v) if np.isfinite(v) else None) for r, v in zip(recipes, pred)},
        "params": params,
        "residuals": residuals,
        "compute_fraction": cf,
    }
    if y is not None and np.all(np.isfinite(pred)):
        e.update(scores(pred, y, higher))
    elif y is not None:
        e.update(
            {
                "decision_accuracy": None,
                "spearman": None,
                "mean_abs_error": None,
                "bias": None,
                "top1_regret": None,
                "reason": "the fit failed for some recipe (no prediction)",
            }
        )
    e.update(extra or {})
    return e


def _fit_all(df, metric, tab: pd.DataFrame, fit_sizes, target, params, tokens, compute, higher, methods, backtest, notes, target_y=True):
    """Every requested method fitted on fit_sizes and evaluated at `target` -> list of entries."""
    recipes = list(tab.index)
    N = np.array([params[s] for s in fit_sizes])
    C = np.array([compute[s] for s in fit_sizes])
    Y = tab[fit_sizes].to_numpy(float)
    y = tab[target].to_numpy(float) if target_y and target in tab.columns else None
    Nt, Ct = params[target], compute[target]
    cf = float(C.sum() / Ct)
    out = []
    tag = {"backtest": True} if backtest else {}
    for m in methods:
        if m == "nd_law":
            pts, why = _nd_points(df, metric, fit_sizes, recipes, params, {metric: higher})
            if pts is None:
                continue
            predict, p, rms = _fit_nd(pts)
            pred = predict(Nt, tokens[target])
            resid = {
                "rms": float(np.nanmean(rms)) if np.isfinite(rms).any() else None,
                "per_recipe_rms": {r: (float(v) if np.isfinite(v) else None) for r, v in zip(recipes, rms)},
            }
            out.append(_method_entry(metric, m, fit_sizes, target, recipes, pred, y, higher, _jsonable(p, recipes), resid, cf, {"experimental": True, **tag}))
            continue
        if len(fit_sizes) < MIN_SIZES[m]:
            continue
        if m == "shared_power":
            predict, p, fitted = _fit_shared_power(N, Y)
        elif m == "log_linear":
            predict, p, fitted = _fit_log_linear(N, Y)
        elif m == "power_per_recipe":
            predict, p, fitted = _fit_power_per_recipe(N, Y)
        elif m in ("compute_3p", "compute_2p"):
            if np.any(Y <= 0):
                continue
            predict, p, fitted = _fit_compute(C, Y, with_e=m == "compute_3p")
        else:
            raise PredictError(f"unknown extrapolation method {m!r} (known: {', '.join(METHODS)})")
        extra = dict(tag)
        if m == "power_per_recipe":
            extra["exact_fit"] = len(fit_sizes) == 3
        pred = predict(Nt, Ct)
        out.append(_method_entry(metric, m, fit_sizes, target, recipes, pred, y, higher, _jsonable(p, recipes), _residuals(fitted, Y, recipes), cf, extra))
    return out


def predict(
    df: pd.DataFrame,
    sizes: list[str],
    *,
    target: str | None = None,
    higher_is_better=False,
    methods: tuple[str, ...] = METHODS,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The prediction section: {"methods": [...], "single_scale": [...], "notes": [str]}.

    df: the long table; sizes: smallest first. target: the size to predict (default the largest); the
    proxies are the sizes below it. A target not in the table (a label that parses, e.g. "7B") is predicted
    but not scored. Raises PredictError (one line) when sizes carry no parameter count.
    """
    notes: list[str] = []
    sizes = [str(s) for s in sizes]
    target = str(target) if target is not None else sizes[-1]
    all_sizes = sizes if target in sizes else sizes + [target]
    params = size_params(df, all_sizes)
    order = sorted(all_sizes, key=lambda s: params[s])
    proxies = [s for s in order if params[s] < params[target]]
    tokens = size_tokens(df, all_sizes, params, notes)
    compute = size_compute(df, all_sizes, params, tokens)
    measured = any(c in df.columns and df[c].notna().any() for c in ("tokens", "flops"))
    tables = final_tables(df, sizes, higher_is_better)
    higher = _directions(tables, higher_is_better)
    methods_out, single_out = [], []
    for metric, tab in tables.items():
        target_run = target in tab.columns and tab[target].notna().any()
        tasks = []  # (fit sizes, target, backtest)
        if len(proxies) >= 2:
            tasks.append((proxies, target, False))
        else:
            notes.append(f"{metric}: only {len(proxies)} proxy size below {target}; nothing to extrapolate from.")
        if len(proxies) >= 3:
            tasks.append((proxies[:-1], proxies[-1], True))
        elif len(proxies) == 2:
            notes.append(f"{metric}: the backtest (predict {proxies[-1]} from the smaller proxies) needs at least 3 proxy sizes; {len(proxies)} given.")
        for fit_sizes, tgt, backtest in tasks:
            scored = backtest or target_run
            cols = list(fit_sizes) + ([tgt] if scored else [])
            t = tab.reindex(columns=cols).dropna()
            if len(t) < 3:
                notes.append(f"{metric}: fewer than 3 recipes with values at {', '.join(cols)}; no fit.")
                continue
            if len(t) < len(tab):
                notes.append(
                    f"{metric}: {len(tab) - len(t)} recipe(s) lack a value at some of {', '.join(cols)} and are left out of the "
                    f"{'backtest' if backtest else 'fit'}."
                )
            entries = _fit_all(df, metric, t, fit_sizes, tgt, params, tokens, compute, higher[metric], methods, backtest, notes, target_y=scored)
            if not scored:
                notes.append(f"{metric}: target {tgt} was not run: predictions only, no score.")
                methods_out.extend(entries)
                continue
            y = t[tgt].to_numpy(float)
            singles = {}
            for s in fit_sizes:
                x = t[s].to_numpy(float)
                e = {"metric": metric, "size": s, "target": tgt, **scores(x, y, higher[metric]), "compute_fraction": float(compute[s] / compute[tgt])}
                if backtest:
                    e["backtest"] = True
                singles[s] = x
                single_out.append(e)
            ranked = [e for e in single_out if e["metric"] == metric and e["target"] == tgt and e.get("backtest", False) == backtest]
            best = max(ranked, key=lambda e: (e["decision_accuracy"] if e["decision_accuracy"] is not None else -1, params[e["size"]]))
            behind = []
            for k, e in enumerate(entries):
                e["best_single_size"] = best["size"]
                pred = np.array([e["predicted"][r] for r in t.index], dtype=float)
                if e.get("decision_accuracy") is None or best["decision_accuracy"] is None:
                    e["da_diff"], e["da_diff_ci"] = None, None
                    continue
                e["da_diff"] = e["decision_accuracy"] - best["decision_accuracy"]
                e["da_diff_ci"] = ci = stats.percentile_interval(bootstrap_da(pred, y, n_boot, seed + k, other=singles[best["size"]]))
                if ci is None or ci[0] <= 0:
                    behind.append(f"{e['method']} {e['da_diff']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""))
                if e["method"] == entries[0]["method"] and e["mean_abs_error"] is not None and e["mean_abs_error"] * 1.5 < best["mean_abs_error"]:
                    notes.append(
                        f"{metric}: {e['method']} ({', '.join(fit_sizes)} -> {tgt}) predicts the values "
                        f"{best['mean_abs_error'] / max(e['mean_abs_error'], 1e-12):.1f}x more accurately than {best['size']}'s raw values "
                        f"(mean error {e['mean_abs_error']:.4f} vs {best['mean_abs_error']:.4f})."
                    )
            if behind:
                notes.append(
                    f"{metric}{' backtest' if backtest else ''}: extrapolating from {', '.join(fit_sizes)} to {tgt} does not rank better "
                    f"than {best['size']} alone (DA {best['decision_accuracy']:.3f}); DA difference [95% interval including 0 or "
                    f"below]: {'; '.join(behind)}."
                )
            methods_out.extend(entries)
        fit = [e for e in methods_out if e["metric"] == metric and not e.get("backtest")]
        if fit and fit[0]["compute_fraction"] > 1:
            notes.append(
                f"{metric}: fitting {len(fit[0]['fit_sizes'])} sizes costs {fit[0]['compute_fraction']:.2f}x training every recipe at "
                f"{target}{'' if measured else f' (assuming {TOKENS_PER_PARAM:g} tokens/param)'}: running the target directly is cheaper."
            )
    if any(higher.values()):
        notes.append("power laws are forms for losses; extrapolating a higher-is-better metric with them is a rough guide.")
    return {"methods": methods_out, "single_scale": single_out, "notes": list(dict.fromkeys(notes))}
