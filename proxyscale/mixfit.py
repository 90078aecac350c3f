"""Mixture regression (issue 15): from data-mixture weights to a validation loss, validated out of fold,
on larger sizes and on held-out mixtures, then a searched mixture proposal (RegMix-style).

Inputs: a long loss table (recipe, size, metric, value[, lr, seed]) and one row of domain weights per
mixture (recipe + one numeric column per domain; a non-numeric column such as `split` is kept for
`holdout_splits` and otherwise ignored). `fit_mixtures` returns the JSON-ready result that `write`
turns into mixfit.json, mixfit.md, mixfit.html and one PNG per metric.

Models (each fitted per metric, on the mixtures at the fitted size that are not held out):
- ``linear``: least squares with an intercept on the weights (numpy lstsq).
- ``dml``: Data Mixing Laws (Ye et al. 2024), L = c + k exp(sum_j t_j r_j) for the metric's validation
  domain, fitted by scipy least_squares from a log-linear start.
- ``lightgbm``: gradient-boosted trees with RegMix's settings (sail-sg/regmix,
  regression_fitting/regression.ipynb at commit 1678465: objective regression, gbdt, 1000 boosting rounds,
  learning_rate 0.01, seed 42, the rest LightGBM defaults, i.e. num_leaves 31 and min_data_in_leaf 20).
  Differences: min_data_in_leaf = min(20, max(2, n // 20)) so that small designs can split (it is
  RegMix's 20 from 400 mixtures up), one thread (deterministic, and faster on small data), and NO early
  stopping: RegMix stops on the set it then scores (3 rounds of patience), which leaks held-out
  information. With these settings the 512 RegMix training mixtures at 1M rank the held-out ones at
  Spearman 0.990 (1M), 0.986 (60M) and 0.962 (1B) for Pile-CC, as RegMix reports.

Validation: out-of-fold predictions (leave-one-out under 50 mixtures, else 5 folds, seeded) scored by
Spearman and decision accuracy at the fitted size and against every larger size the same mixtures were
run at; the model fitted on all of them scores each held-out split at every size it was run at. A model
whose predictions are constant (ptp < 1e-12) is ``degenerate``: "no fit", never a correlation.

Search: Dirichlet samples (seeded) with concentration prior x s, prior = the mean training weights and s
log-uniform in [0.1, 10] per sample (RegMix's synthesis likewise mixes sparse and near-prior draws), samples
outside any domain's observed [min, max] dropped; the mean of the top-k (k = 128) predicted is the proposal,
shown next to the best observed mixture.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import optimize, stats

from proxyscale.analysis import stats as S
from proxyscale.errors import UserError

MODELS = ("linear", "dml", "lightgbm")
LGB_PARAMS = {
    "objective": "regression",
    "boosting_type": "gbdt",
    "learning_rate": 0.01,
    "num_leaves": 31,
    "seed": 42,
    "verbosity": -1,
    "deterministic": True,
    "force_col_wise": True,
}
LGB_ROUNDS = 1000
WEIGHT_TOL = 1e-3
MIN_MIXTURES = 5
LOO_BELOW = 50
log = logging.getLogger("proxyscale")


class MixfitError(UserError):
    """Input the mixture regression cannot use; str(exc) is one line."""


# ---------------------------------------------------------------------------------------------
# inputs


def _csv(path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise MixfitError(f"{path}: no such file") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MixfitError(f"{path}: not a readable CSV ({str(exc).splitlines()[0] if str(exc) else 'empty'})") from None
    with open(path, newline="", encoding="utf-8-sig") as f:  # pandas renames a repeated column (code -> code.1): a domain that is not one
        header = [h.strip() for h in next(csv.reader(f), [])]
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        raise MixfitError(f"{path}: column {dups[0]!r} appears {header.count(dups[0])} times in the header; name each column once")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _decimals(text: pd.Series) -> int:
    d = text.str.strip().str.extract(r"\.(\d+)$")[0].dropna().str.len()
    return int(d.max()) if len(d) else 0


def read_mixtures(path) -> tuple[pd.DataFrame, float]:
    """Mixture CSV -> (table indexed by recipe: numeric domain columns, plus `split` if given; weight-sum tolerance).

    The tolerance is 1e-3, or the rounding the file itself shows (k domains written with d decimals can miss
    1 by k x 0.5e-d: RegMix's 17 domains at 3 decimals by up to 0.0085) when that is larger."""
    raw = _csv(path)
    if "recipe" not in raw.columns:
        raise MixfitError(f"{path}: no recipe column (need recipe + one weight column per domain)")
    raw["recipe"] = raw["recipe"].str.strip()
    if (raw["recipe"] == "").any():
        raise MixfitError(f"{path}: empty recipe name (row {int((raw['recipe'] == '').to_numpy().argmax()) + 2})")
    dup = raw["recipe"][raw["recipe"].duplicated()]
    if len(dup):
        raise MixfitError(f"{path}: recipe {dup.iloc[0]!r} has two rows of weights")
    domains, extra, dec = [], [], 0
    for c in raw.columns:
        if c == "recipe":
            continue
        num = pd.to_numeric(raw[c].str.strip(), errors="coerce")
        if num.notna().all():
            domains.append(c)
            dec = max(dec, _decimals(raw[c]))
            raw[c] = num.astype(float)
        else:
            extra.append(c)
    if len(domains) < 2:
        raise MixfitError(f"{path}: {len(domains)} numeric weight column(s); a mixture needs at least 2 domains")
    w = raw.set_index("recipe")[domains]
    neg = (w < 0).any(axis=1)
    if neg.any():
        raise MixfitError(f"{path}: mixture {neg.index[neg.to_numpy()][0]!r} has a negative weight")
    tol = max(WEIGHT_TOL, len(domains) * 0.5 * 10.0**-dec) if dec else WEIGHT_TOL
    out = w.copy()
    if "split" in extra:
        out["split"] = raw.set_index("recipe")["split"].str.strip()
    return out, tol


def read_losses(paths) -> pd.DataFrame:
    """Long loss CSVs (recipe, size, metric, value[, lr, seed, step]) -> one long table of final values."""
    frames = []
    for p in paths:
        raw = _csv(p)
        missing = [c for c in ("recipe", "size", "metric", "value") if c not in raw.columns]
        if missing:
            raise MixfitError(f"{p}: missing column(s) {', '.join(missing)} (need recipe,size,metric,value)")
        d = raw[[c for c in ("recipe", "size", "metric", "value", "lr", "seed", "step") if c in raw.columns]].copy()
        for c in ("recipe", "size", "metric"):
            d[c] = d[c].str.strip()
        for c in ("value", "lr", "seed", "step"):
            if c in d.columns:
                num = pd.to_numeric(d[c].str.strip().replace("", np.nan), errors="coerce")
                if c == "value" and (num.isna() | ~np.isfinite(num)).any():
                    row = int((num.isna() | ~np.isfinite(num)).to_numpy().argmax())
                    raise MixfitError(f"{p}: value {d[c].iloc[row]!r} is not a finite number (row {row + 2})")
                d[c] = num.astype(float)
        frames.append(d)
    if not frames:
        raise MixfitError("no loss table: give --from-csv FILE or a sweep folder")
    return pd.concat(frames, ignore_index=True)


def read_sweep(sweep_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep folder's records -> (long losses, weights per recipe from each record's data sources)."""
    from proxyscale import record

    root = Path(sweep_dir)
    files = sorted(root.glob("*/" + record.RESULT))
    if not files:
        raise MixfitError(f"{root}: no records (*/{record.RESULT})")
    rows, weights = [], {}
    for f in files:
        try:
            rec = record.parse(f.read_bytes(), f)
        except record.RecordError as exc:
            raise MixfitError(str(exc).splitlines()[0]) from None
        if rec.status != "completed":
            continue
        sources = ((rec.config or {}).get("data") or {}).get("sources") or []
        w = {str(s["name"]): float(s.get("weight", 0.0)) for s in sources}
        tot = sum(w.values())
        if len(w) < 2 or tot <= 0:
            raise MixfitError(f"{f}: recipe {rec.recipe!r} has {len(w)} weighted source(s); a mixture needs at least 2")
        w = {k: v / tot for k, v in w.items()}
        prev = weights.get(rec.recipe)
        if prev is not None and (prev.keys() != w.keys() or any(abs(prev[k] - w[k]) > 1e-9 for k in w)):
            raise MixfitError(f"{f}: recipe {rec.recipe!r} has different weights in different records")
        weights[rec.recipe] = w
        for m, v in rec.final_loss.items():
            rows.append({"recipe": rec.recipe, "size": rec.size, "metric": m, "value": float(v), "lr": float(rec.lr), "seed": float(rec.seed)})
    if not rows:
        raise MixfitError(f"{root}: no completed records")
    names = list(dict.fromkeys(k for w in weights.values() for k in w))  # the sources' config order
    W = pd.DataFrame([{k: w.get(k, 0.0) for k in names} for w in weights.values()], index=pd.Index(list(weights), name="recipe"))
    return pd.DataFrame(rows), W


def _tuned_values(losses: pd.DataFrame, higher: bool) -> pd.DataFrame:
    """Seed means, then each recipe's best LR at each (size, metric) -> rows recipe, size, metric, value (`stats.tuned`)."""
    return S.tuned(losses, higher, keys=("recipe", "size", "metric"))[["recipe", "size", "metric", "value"]]


# ---------------------------------------------------------------------------------------------
# models: fit(X, y) -> predict(X) callable


def lgb_params(n: int, overrides: dict | None = None, num_threads: int = 1) -> dict:
    p = dict(LGB_PARAMS, min_data_in_leaf=min(20, max(2, n // 20)), num_threads=num_threads)
    p.update(overrides or {})
    return p


def fit_model(name: str, X: np.ndarray, y: np.ndarray, *, lgb_overrides: dict | None = None, num_threads: int = 1) -> Callable:
    if name == "linear":
        A = np.column_stack([np.ones(len(X)), X])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        return lambda Z: np.column_stack([np.ones(len(Z)), Z]) @ coef
    if name == "dml":
        return _fit_dml(X, y)
    if name == "lightgbm":
        import lightgbm as lgb

        params = lgb_params(len(X), lgb_overrides, num_threads)
        rounds = int(params.pop("num_iterations", LGB_ROUNDS))
        booster = lgb.train(params, lgb.Dataset(X, y, params={"verbosity": -1}), num_boost_round=rounds)
        return lambda Z: booster.predict(np.asarray(Z, float), num_threads=num_threads)
    raise MixfitError(f"unknown model {name!r} (known: {', '.join(MODELS)})")


def _fit_dml(X: np.ndarray, y: np.ndarray) -> Callable:
    """L = c + k exp(t . r) (Data Mixing Laws, one validation domain); k > 0 for losses that fall with their domain."""
    span = float(np.ptp(y)) or 1.0
    c0 = float(y.min()) - 0.1 * span
    A = np.column_stack([np.ones(len(X)), X])
    lt, *_ = np.linalg.lstsq(A, np.log(y - c0), rcond=None)
    p0 = np.concatenate([[c0, lt[0]], lt[1:]])  # c, log k, t

    def f(p, Z):
        return p[0] + np.exp(np.clip(p[1] + Z @ p[2:], -50, 50))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = optimize.least_squares(lambda p: f(p, X) - y, p0, method="trf", x_scale="jac", max_nfev=2000)
    p = res.x
    return lambda Z: f(p, np.asarray(Z, float))


# ---------------------------------------------------------------------------------------------
# validation


def agreement(pred, actual) -> dict[str, Any]:
    """Spearman and decision accuracy, or "no fit" when the predictions are constant."""
    p, a = np.asarray(pred, float), np.asarray(actual, float)
    if len(p) < 2 or np.ptp(p) < 1e-12 or not np.all(np.isfinite(p)):
        return {"n": int(len(p)), "spearman": None, "decision_accuracy": None, "degenerate": True, "reason": "no fit: constant predictions"}
    rho = S.spearman(p, a)
    return {"n": int(len(p)), "spearman": rho, "spearman_ci": spearman_ci(p, a), "decision_accuracy": S.decision_accuracy(p, a), "degenerate": False}


def spearman_ci(pred, actual) -> list[float] | None:
    """95% interval of Spearman's rho as the report gives it: Kendall's interval mapped through the copula."""
    rho, tau = S.spearman(pred, actual), S.kendall(pred, actual)
    if rho is None or tau is None or len(pred) < 4:
        return None
    return S.spearman_interval(rho, S.tau_interval(tau, len(pred)))


def out_of_fold(name: str, X: np.ndarray, y: np.ndarray, seed: int = 0, **kw) -> np.ndarray:
    """Out-of-fold predictions: leave-one-out under 50 mixtures, else 5 folds (seeded)."""
    n = len(y)
    folds = np.arange(n) if n < LOO_BELOW else np.random.default_rng(seed).permutation(n) % 5
    pred = np.empty(n)
    for k in np.unique(folds):
        test = folds == k
        pred[test] = fit_model(name, X[~test], y[~test], **kw)(X[test])
    return pred


# ---------------------------------------------------------------------------------------------
# the whole fit


def _check(weights: pd.DataFrame, tol: float, values: pd.DataFrame, domains: list[str]) -> None:
    sums = weights[domains].sum(axis=1)
    bad = (sums - 1).abs() > tol
    if bad.any():
        r = bad.index[bad.to_numpy()][0]
        raise MixfitError(f"mixture {r!r}: weights sum to {sums[r]:.6g}, not 1 (tolerance {tol:g})")
    missing = sorted(set(values["recipe"]) - set(weights.index))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise MixfitError(f"mixture {missing[0]!r}{more} has losses but no weights in the mixtures table")


def sample_mixtures(prior: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n Dirichlet(prior x s) draws, s log-uniform in [0.1, 10], kept when every weight is inside [lo, hi]."""
    rng = np.random.default_rng(seed)
    s = np.exp(rng.uniform(math.log(0.1), math.log(10.0), size=(n, 1)))
    g = rng.standard_gamma(np.maximum(prior[None, :] * s, 1e-3))
    w = g / np.maximum(g.sum(axis=1, keepdims=True), 1e-300)
    ok = np.all((w >= lo - 1e-12) & (w <= hi + 1e-12), axis=1) & np.isfinite(w).all(axis=1)
    return w[ok]


def fit_mixtures(
    losses: pd.DataFrame,
    weights: pd.DataFrame,
    *,
    weight_tol: float = WEIGHT_TOL,
    metrics: list[str] | None = None,
    size: str | None = None,
    holdout_splits=(),
    models=MODELS,
    target_metric: str | None = None,
    higher_is_better: bool = False,
    n_samples: int = 100_000,
    top_k: int = 128,
    seed: int = 0,
    lgb_overrides: dict | None = None,
    num_threads: int = 1,
    oof: bool = True,
) -> dict[str, Any]:
    """Fit every model per metric, validate, and propose a mixture -> the mixfit.json dict (see module doc).

    weights: indexed by recipe, one column per domain (+ optional `split`); losses: long table."""
    domains = [c for c in weights.columns if c != "split"]
    weights = weights.copy()
    weights.index = weights.index.astype(str)
    values = _tuned_values(losses, higher_is_better)
    _check(weights, weight_tol, values, domains)
    W = weights[domains].div(weights[domains].sum(axis=1), axis=0)
    known = sorted(values["metric"].unique())
    metrics = list(metrics) if metrics else known
    unknown = [m for m in metrics + ([target_metric] if target_metric else []) if m not in known]
    if unknown:
        raise MixfitError(f"unknown metric/domain {unknown[0]!r}: the losses have {', '.join(known[:8])}{' ...' if len(known) > 8 else ''}")
    splits = weights["split"] if "split" in weights.columns else pd.Series("", index=weights.index)
    for s in holdout_splits:
        if not (splits == s).any():
            have = sorted(set(splits) - {""})
            raise MixfitError(f"--holdout-split {s!r}: no mixture has that split (splits: {', '.join(have) or 'none'})")
    held = set(splits.index[splits.isin(list(holdout_splits))])
    from proxyscale.analysis.importer import parse_size

    sizes = sorted(values["size"].unique(), key=lambda s: (parse_size(s) is None, parse_size(s) or 0.0, s))
    train_vals = values[~values["recipe"].isin(held)]
    if size is None:
        size = next((s for s in sizes if (train_vals["size"] == s).any()), None)
    if size is None or not (train_vals["size"] == size).any():
        raise MixfitError(f"no training mixtures at size {size!r} (sizes: {', '.join(sizes)})")
    target_metric = target_metric or metrics[0]
    kw = {"lgb_overrides": lgb_overrides, "num_threads": num_threads}
    larger = [s for s in sizes if parse_size(s) and parse_size(size) and parse_size(s) > parse_size(size)]
    out_models, fitted = [], {}
    for metric in metrics:
        tv = train_vals[(train_vals["metric"] == metric) & (train_vals["size"] == size)].set_index("recipe")["value"]
        if len(tv) < MIN_MIXTURES:
            raise MixfitError(f"{metric} at {size}: {len(tv)} mixture(s) with a loss; a regression needs at least {MIN_MIXTURES}")
        recipes = list(tv.index)
        X, y = W.loc[recipes].to_numpy(float), tv.to_numpy(float)
        for name in models:
            entry: dict[str, Any] = {"model": name, "metric": metric, "size": size, "n_train": len(y)}
            if oof:
                p = out_of_fold(name, X, y, seed=seed, **kw)
                ag = agreement(p, y)
                entry.update(
                    oof_spearman=ag["spearman"],
                    oof_spearman_ci=ag.get("spearman_ci"),
                    oof_decision_accuracy=ag["decision_accuracy"],
                    degenerate=ag["degenerate"],
                    oof_scheme="leave-one-out" if len(y) < LOO_BELOW else "5-fold (seeded)",
                    oof={"recipe": recipes, "observed": y.tolist(), "predicted": p.tolist()},
                )
            predictor = fit_model(name, X, y, **kw)
            insample = predictor(X)
            if not oof:
                entry.update(oof_spearman=None, oof_decision_accuracy=None, degenerate=bool(np.ptp(insample) < 1e-12))
            entry["degenerate"] = bool(entry["degenerate"] or np.ptp(insample) < 1e-12)
            heldout = {}
            if not entry["degenerate"]:
                for big in larger:  # the same (training) mixtures at a larger size, against their out-of-fold predictions
                    bv = values[(values["metric"] == metric) & (values["size"] == big) & values["recipe"].isin(recipes)].set_index("recipe")["value"]
                    if oof and len(bv) >= 2:
                        pos = [recipes.index(r) for r in bv.index]
                        heldout[big] = agreement(np.asarray(entry["oof"]["predicted"])[pos], bv.to_numpy(float))
                for s in holdout_splits:
                    hv = values[(values["metric"] == metric) & values["recipe"].isin(splits.index[splits == s])]
                    for sz, g in hv.groupby("size"):
                        if len(g) >= 2:
                            heldout[f"{s}@{sz}"] = agreement(predictor(W.loc[g["recipe"]].to_numpy(float)), g["value"].to_numpy(float))
            else:
                entry["reason"] = "no fit: the model predicts a constant"
                entry["oof_spearman"] = entry["oof_decision_accuracy"] = None
            entry["heldout"] = heldout
            out_models.append(entry)
            fitted[(name, metric)] = (predictor, recipes, X, y, insample)
    result = {
        "size": size,
        "domains": domains,
        "metrics": metrics,
        "target_metric": target_metric,
        "holdout_splits": list(holdout_splits),
        "n_mixtures": int(len(W)),
        "weight_tolerance": weight_tol,
        "lightgbm_params": lgb_params(len(y), lgb_overrides, num_threads) | {"num_boost_round": LGB_ROUNDS, "early_stopping": None},
        "models": out_models,
    }
    result["proposal"] = _propose(result, fitted, W, domains, target_metric, higher_is_better, n_samples, top_k, seed)
    return result


CHANCE_P = 0.05  # a proposal's model must rank the out-of-fold mixtures better than chance at this one-sided level


def _rank_p_value(oof: dict | None) -> float | None:
    """One-sided p-value of the out-of-fold Spearman correlation (predicted vs observed) being > 0; None without one."""
    if not oof or len(oof["observed"]) < 3 or np.ptp(oof["predicted"]) < 1e-12:
        return None
    res = stats.spearmanr(oof["predicted"], oof["observed"], alternative="greater")
    return float(res.pvalue) if np.isfinite(res.pvalue) else None


def _propose(result, fitted, W, domains, metric, higher, n_samples, top_k, seed) -> dict:
    cands = [m for m in result["models"] if m["metric"] == metric and not m["degenerate"]]
    if not cands:
        return {"available": False, "reason": f"every model of {metric} is degenerate (constant predictions): no proposal"}
    order = {n: i for i, n in enumerate(MODELS)}
    best = max(cands, key=lambda m: (m["oof_spearman"] if m["oof_spearman"] is not None else -2.0, -order.get(m["model"], 9)))
    predictor, recipes, X, y, insample = fitted[(best["model"], metric)]
    lo, hi = X.min(axis=0), X.max(axis=0)
    S = sample_mixtures(X.mean(axis=0), lo, hi, n_samples, seed)
    if len(S) < top_k:
        return {"available": False, "reason": f"only {len(S)} of {n_samples} samples inside the observed weight ranges (need {top_k})"}
    p = predictor(S)
    top = np.argsort(-p if higher else p, kind="stable")[:top_k]
    prop = S[top].mean(axis=0)
    b = int(np.argmax(y) if higher else np.argmin(y))
    oof = best.get("oof")
    predicted = float(predictor(prop[None, :])[0])
    warnings_ = []
    p_rank = _rank_p_value(oof)
    if p_rank is None or p_rank >= CHANCE_P:
        rho = "n/a" if best["oof_spearman"] is None else f"{best['oof_spearman']:.3f}"
        warnings_.append(
            f"not better than chance: {best['model']} ranks the out-of-fold mixtures with Spearman {rho} (one-sided p "
            f"{'n/a' if p_rank is None else f'{p_rank:.2f}'}, needs < {CHANCE_P:g}), so the proposal is a guess; --write-recipe refuses it"
        )
    if (predicted < y[b]) if higher else (predicted > y[b]):
        warnings_.append(
            f"the proposal's predicted {metric} {predicted:.4f} is worse than the best observed mixture {recipes[b]} ({y[b]:.4f}): "
            f"{recipes[b]} is the better pick on this evidence"
        )
    return {
        "available": True,
        "better_than_chance": p_rank is not None and p_rank < CHANCE_P,
        "rank_p_value": p_rank,
        "worse_than_observed": bool((predicted < y[b]) if higher else (predicted > y[b])),
        "warnings": warnings_,
        "model": best["model"],
        "metric": metric,
        "n_samples": int(n_samples),
        "n_in_range": int(len(S)),
        "top_k": int(top_k),
        "prior": "mean training weights x s, s log-uniform in [0.1, 10]",
        "weights": dict(zip(domains, prop.tolist())),
        "predicted": predicted,
        "predicted_top_k_mean": float(p[top].mean()),
        "best_observed": {
            "recipe": recipes[b],
            "weights": dict(zip(domains, X[b].tolist())),
            "observed": float(y[b]),
            "predicted": float(insample[b]),
            "predicted_oof": float(oof["predicted"][b]) if oof else None,
        },
    }


# ---------------------------------------------------------------------------------------------
# recipe file, pages


def write_recipe(result: dict, name: str, base: str, out_dir: Path | None = None, force: bool = False) -> Path:
    """The proposal as conf/data/mix/NAME.yaml: the base recipe's sources with the proposed weights. Refused when the
    proposal's model ranks mixtures no better than chance, when NAME is another recipe's (a built-in would have a twin
    of its name), and when the file exists (a hand edit would be lost) unless `force`."""
    from proxyscale.config import CONF_DIR, ConfigError
    from proxyscale.data.mixtures import load_base
    from proxyscale.data.mixtures import write_recipe as write_one

    prop = result["proposal"]
    if not prop.get("available"):
        raise MixfitError(f"no proposal to write: {prop.get('reason')}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise MixfitError(f"--write-recipe {name!r}: use letters, digits, '_', '-', '.'")
    if prop.get("better_than_chance") is False:
        raise MixfitError(f"--write-recipe {name!r}: no recipe written, the proposal is {prop['warnings'][0]}".replace("; --write-recipe refuses it", ""))
    target = Path(out_dir or Path(CONF_DIR) / "data" / "mix") / f"{name}.yaml"
    taken = [p for p in Path(CONF_DIR, "data").rglob(f"{name}.yaml") if p.resolve() != target.resolve()]
    if taken:
        raise MixfitError(f"--write-recipe {name!r}: recipe {name} exists ({taken[0]}); two recipes of one name would be confused: choose another name")
    if target.exists() and not force:
        raise MixfitError(f"--write-recipe {name!r}: {target} exists (a hand edit would be lost); choose another name, or --force to overwrite it")
    try:
        _, names = load_base(base)
    except ConfigError as exc:
        raise MixfitError(str(exc)) from None
    domains = list(prop["weights"])
    if set(domains) != set(names):
        unknown = sorted(set(domains) - set(names)) or sorted(set(names) - set(domains))
        raise MixfitError(
            f"unknown domains {', '.join(unknown[:5])}: the mixture's domains are not the sources of recipe {base!r} "
            f"({', '.join(names)}); only proxyscale source names can be written as a recipe"
        )
    w = np.array([prop["weights"][n] for n in names])
    w = w / w.sum()
    desc = f"{base} with weights proposed by proxyscale mixfit ({prop['model']}, {prop['metric']}, predicted {prop['predicted']:.4f})"
    return write_one(base, name, w, desc, out_dir, header="# Generated by `proxyscale mixfit --write-recipe`; edit freely.\n")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figures(result: dict) -> dict[str, bytes]:
    """metric -> PNG: out-of-fold predicted vs observed, one panel per model."""
    plt = _plt()
    out = {}
    for metric in result["metrics"]:
        ms = [m for m in result["models"] if m["metric"] == metric and m.get("oof")]
        if not ms:
            continue
        fig, axes = plt.subplots(1, len(ms), figsize=(4.2 * len(ms), 4.0), squeeze=False)
        for ax, m in zip(axes[0], ms):
            o, p = np.asarray(m["oof"]["observed"]), np.asarray(m["oof"]["predicted"])
            ax.scatter(o, p, s=10, alpha=0.6, color="#0072B2")
            lo, hi = float(min(o.min(), p.min())), float(max(o.max(), p.max()))
            ax.plot([lo, hi], [lo, hi], color="#555555", lw=1, ls="--")
            title = "no fit (constant)" if m["degenerate"] else f"rho {m['oof_spearman']:.3f}, DA {m['oof_decision_accuracy']:.3f}"
            ax.set_title(f"{m['model']}: {title}", fontsize=10)
            ax.set_xlabel(f"observed {metric} at {m['size']}", fontsize=10)
            ax.set_ylabel("out-of-fold predicted", fontsize=10)
            ax.tick_params(labelsize=9)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        out[metric] = buf.getvalue()
    return out


def _f(v, nd=3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _rows(result: dict) -> list[list[str]]:
    rows = []
    for m in result["models"]:
        held = (
            "; ".join(
                f"{k}: " + ("no fit" if v["degenerate"] else f"rho {_f(v['spearman'])}, DA {_f(v['decision_accuracy'])} (n={v['n']})")
                for k, v in m["heldout"].items()
            )
            or "-"
        )
        oof = "no fit (constant predictions)" if m["degenerate"] else f"rho {_f(m['oof_spearman'])}, DA {_f(m['oof_decision_accuracy'])}"
        rows.append([m["metric"], m["model"], m["size"], str(m["n_train"]), oof, held])
    return rows


HEAD = ["metric", "model", "size", "mixtures", "out-of-fold", "held out / larger sizes"]


def _proposal_lines(result: dict) -> list[str]:
    p = result["proposal"]
    if not p.get("available"):
        return [f"No proposal: {p['reason']}."]
    top = sorted(p["weights"].items(), key=lambda kv: -kv[1])
    b = p["best_observed"]
    return [
        f"Proposal ({p['model']} on {p['metric']}, mean of the top {p['top_k']} of {p['n_in_range']} in-range samples out of {p['n_samples']}): "
        f"predicted {p['predicted']:.4f}.",
        "Weights: " + ", ".join(f"{k} {v:.3f}" for k, v in top),
        f"Best observed mixture {b['recipe']}: observed {b['observed']:.4f}, predicted {b['predicted']:.4f}.",
        *[f"Warning: {w}." for w in p.get("warnings") or []],
    ]


def summary(result: dict) -> list[str]:
    """What `proxyscale mixfit` prints: per metric and model, the out-of-fold and held-out Spearman with 95%
    intervals and n, then the proposal."""

    def rho(v: dict | None, key: str = "spearman") -> str:
        if not v or v.get(key) is None:
            return "no fit"
        ci = v.get(f"{key}_ci")
        return f"{v[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    rows = []
    for m in result["models"]:
        held = "; ".join(f"{k} {rho(v)} (n={v['n']})" for k, v in m["heldout"].items()) or "-"
        oof = "no fit" if m["degenerate"] else rho(m, "oof_spearman")
        rows.append(f"  {m['metric']:<14} {m['model']:<9} out-of-fold {oof} (n={m['n_train']}); held out / larger: {held}")
    head = f"mixfit at {result['size']}: {result['n_mixtures']} mixtures, {len(result['domains'])} domains; Spearman rho [95% CI]:"
    return [head, *rows, *_proposal_lines(result)]


def _section(result: dict, figs: dict[str, bytes]) -> dict:
    files = [{"metric": m, "file": f"mixfit_{_safe(m)}.png", "png": png} for m, png in figs.items()]
    return {"r": result, "head_row": HEAD, "rows": _rows(result), "proposal": _proposal_lines(result), "figures": files}


def markdown(result: dict, figs: dict[str, bytes] | None = None) -> str:
    """mixfit.md: the mixfit section's template, in Markdown (figures linked beside it)."""
    from proxyscale.report import sections

    return sections.render("mixfit", _section(result, figs or {}), "md")


def html_page(result: dict, figs: dict[str, bytes]) -> str:
    """mixfit.html: the same template in the report's page shell, figures embedded."""
    from proxyscale.report import sections

    return sections.page(f"mixfit at {result['size']}", sections.render("mixfit", _section(result, figs), "html"))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write(result: dict, out_dir) -> list[Path]:
    """mixfit.json, mixfit.md, mixfit.html and mixfit_<metric>.png in out_dir, published as one set (record.publish_set):
    a failed or interrupted write leaves the previous set whole; figures of the previous set not drawn now go with it."""
    from proxyscale import record

    out = Path(out_dir)
    figs = figures(result)
    fail = lambda exc: MixfitError(f"mixfit pages not written: {exc.strerror or exc}; the previous ones in {out}, if any, are intact")
    with record.staged(out, "mixfit", fail) as stage:
        (stage / "mixfit.json").write_text(json.dumps(result, indent=1, allow_nan=False, default=float))
        (stage / "mixfit.md").write_text(markdown(result, figs))
        (stage / "mixfit.html").write_text(html_page(result, figs))
        for metric, png in figs.items():
            (stage / f"mixfit_{_safe(metric)}.png").write_bytes(png)
    stale = [p.name for p in out.glob("mixfit_*.png")]
    paths = record.publish_set(out, stage, "mixfit", ["mixfit.md", "mixfit.html", "mixfit.json"], remove=stale)
    first = ["mixfit.json", "mixfit.md", "mixfit.html"]
    return sorted(paths, key=lambda p: first.index(p.name) if p.name in first else len(first))
