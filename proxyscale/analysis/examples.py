"""Per-example predictive correlation across scale (issue 16; Khaddaj, Engstrom & Madry, "Small-to-Large
Generalization: Training Data Influences Models Consistently Across Scale", ICLR 2025).

An example is one eval window (`proxyscale.job.module.eval_windows`: window i of seq_len + 1 tokens of an eval
set's cached tokens, the same text for every recipe and size); its value is the loss of that window (mean
nats/token). From an imported CSV, an example is whatever the `example` column names.

For each eval set, each (proxy, target) size pair and each example e, with recipes r = 1..K present at both sizes:

  1. seed means first: L_s(e, r) = the mean over seeds of example e's loss, for recipe r at size s, at r's TUNED LR
     at s (the LR whose seed-mean eval-set value is best, exactly the report's tuned values; one LR: that LR);
  2. centre across recipes: C_s(e, r) = L_s(e, r) - mean_r' L_s(e, r') (removes the example's difficulty, which is
     shared by every recipe: what is left is the effect of the training distribution on that example);
  3. the predictive correlation of e is the correlation across recipes of the centred values at the two sizes:
     rho(e) = sum_r C_p(e, r) C_t(e, r) / sqrt(sum_r C_p(e, r)^2 * sum_r C_t(e, r)^2)
     (the Pearson correlation across recipes of L_p(e, .) and L_t(e, .)); undefined (left out and counted) when
     every recipe has the same loss at a size;
  4. its distribution over examples: mean (the paper's "mean predictive correlation"), a seeded percentile bootstrap
     interval of the mean over examples (recipes fixed), quantiles, the share above 0.

rho(e) keeps each recipe's overall effect (a recipe better on every example raises every rho alike): the
`residual_*` fields also remove it (double centring: C_s(e, r) minus the mean over examples of C_s(., r)), an
addition of proxyscale, not the paper's definition, to show how much agreement is specific to examples.
The flips are the examples with the lowest rho, with the proxy's best and worst recipe on that example and
whether the target orders that pair the other way (the sign of the best-vs-worst recipe effect flips).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from proxyscale.analysis.protocol import Cube
from proxyscale.analysis.stats import bootstrap_mean
from proxyscale.analysis.types import doc, typed

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
MAX_FLIPS = 5  # examples listed per (eval set, proxy, target)
MIN_RECIPES = 3  # with 2 recipes every rho is +-1
DEFINITION = (
    "per example: seed-mean loss at each recipe's tuned LR, centred across recipes at each size; rho = correlation across "
    "recipes of the proxy's and the target's centred losses; mean over examples with a seeded bootstrap interval over examples"
)


@dataclass
class ExampleFlip:
    """An example whose recipe effects agree least across scale."""

    example: Any = doc("the example's id (eval window index, or the CSV's example value)")
    rho: float = doc("its predictive correlation", 0.0)
    proxy_best: str = doc("the proxy's best recipe on it", "")
    proxy_worst: str = doc("the proxy's worst recipe on it", "")
    proxy_effect: float = doc("proxy value of best - worst", 0.0)
    target_effect: float = doc("target value of the same two recipes' difference", 0.0)
    target_best: str = doc("the target's best recipe on it", "")
    target_worst: str = doc("the target's worst recipe on it", "")
    sign_flip: bool = doc("the target orders the proxy's best and worst the other way", False)
    snippet: str | None = doc("the example's text, where the sweep saved it")


@dataclass
class ExampleEntry:
    """One eval set and (proxy, target): the distribution over examples of the predictive correlation."""

    metric: str = doc("eval set")
    proxy: str = doc("proxy size")
    target: str = doc("target size")
    proxy_params: float | None = doc("proxy parameters")
    target_params: float | None = doc("target parameters")
    n_recipes: int = doc("recipes with every example at both sizes", 0)
    recipes: list[str] = doc("their names", factory=list)
    reason: str | None = doc("why there is no correlation")
    n_examples: int = doc("examples with a defined rho", 0)
    n_undefined: int | None = doc("examples every recipe scores alike at a size (left out)")
    mean: float | None = doc("mean predictive correlation (the paper's statistic)")
    mean_ci: list[float] | None = doc("95% seeded percentile bootstrap interval over examples (recipes fixed)")
    quantiles: dict | None = doc("{q05, q25, q50, q75, q95} of rho over examples")
    frac_positive: float | None = doc("share of examples with rho > 0")
    residual_mean: float | None = doc("mean rho after also removing each recipe's overall effect (double centring)")
    residual_ci: list[float] | None = doc("its interval")
    flips: list[ExampleFlip] = doc("the examples with the lowest rho", factory=list)
    dropped_recipes: list[str] | None = doc("recipes missing at one size or without every example there")


@dataclass
class PerExample:
    """Per-example predictive correlation across scale (issue 16)."""

    available: bool = doc("some entry has a correlation", False)
    reason: str | None = doc("why not available")
    definition: str = doc("the statistic in words", DEFINITION)
    n_boot: int = doc("bootstrap resamples of the examples", 0)
    bootstrap_seed: int = doc("their seed", 0)
    target: str | None = doc("the largest size")
    lr_rule: str | None = doc("which LR's per-example values are used")
    entries: list[ExampleEntry] = doc("every eval set x (proxy < target)", factory=list)
    notes: list[str] = doc("caveats", factory=list)


def _norm(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["lr"] = (df["lr"].astype(float) if "lr" in df.columns else pd.Series(np.nan, index=df.index)).fillna(-1.0)
    df["seed"] = (df["seed"].astype(float) if "seed" in df.columns else pd.Series(0.0, index=df.index)).fillna(-1.0)
    return df


def tuned_values(examples: pd.DataFrame, agg: pd.DataFrame, sizes: list[str], directions: dict[str, bool]) -> tuple[pd.Series, str]:
    """Seed-mean per-example values at each (metric, size, recipe)'s tuned LR -> (Series indexed by metric, size,
    recipe, example; the LR rule in words). The tuned LR is the report's: `Cube(agg).tuned_lr_idx`."""
    ex, agg = _norm(examples), _norm(agg)
    cube = Cube(agg, sizes, directions)
    tuned = pd.DataFrame(
        [
            (m, s, r, float(cube.lrs[cube.tuned_lr_idx[mi, si, ri]]))
            for mi, m in enumerate(cube.metrics)
            for si, s in enumerate(cube.sizes)
            for ri, r in enumerate(cube.recipes)
            if np.isfinite(cube.tuned[mi, si, ri])
        ],
        columns=["metric", "size", "recipe", "tuned_lr"],
    )
    ex = ex.merge(tuned, on=["metric", "size", "recipe"], how="inner")
    ex = ex[ex["lr"] == ex["tuned_lr"]]
    rule = (
        "each recipe's tuned LR per size (the best seed-mean eval-set value over its LR grid, as the rest of the report)"
        if len(cube.lrs) > 1
        else "the one LR given"
        if cube.lrs[0] != -1.0
        else "no LR column: values as given"
    )
    return ex.groupby(["metric", "size", "recipe", "example"], sort=False)["value"].mean(), rule


def _rho(xp: np.ndarray, xt: np.ndarray) -> np.ndarray:
    """Per example (rows), the correlation across recipes (columns) of the centred values."""
    cp = xp - xp.mean(axis=1, keepdims=True)
    ct = xt - xt.mean(axis=1, keepdims=True)
    den = np.sqrt((cp**2).sum(axis=1) * (ct**2).sum(axis=1))
    scale = np.maximum(np.abs(xp).max(axis=1), np.abs(xt).max(axis=1)) + 1e-300
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12 * scale**2, (cp * ct).sum(axis=1) / den, np.nan)


def summarise(rho: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    ok = rho[np.isfinite(rho)]
    if not len(ok):
        return {"n_examples": 0, "mean": None, "mean_ci": None, "quantiles": None, "frac_positive": None}
    return {
        "n_examples": int(len(ok)),
        "mean": float(ok.mean()),
        "mean_ci": bootstrap_mean(ok, n_boot, rng),
        "quantiles": {f"q{int(round(q * 100)):02d}": float(v) for q, v in zip(QUANTILES, np.quantile(ok, QUANTILES))},
        "frac_positive": float((ok > 0).mean()),
    }


def pair(lp: pd.DataFrame, lt: pd.DataFrame, *, higher: bool, n_boot: int, rng: np.random.Generator, snippets: list[str] | None = None) -> dict[str, Any]:
    """One (proxy, target) of one eval set; lp, lt: recipes x examples (seed-mean tuned values), same labels."""
    xp, xt = lp.to_numpy(float).T, lt.to_numpy(float).T  # examples x recipes
    rho = _rho(xp, xt)
    out = summarise(rho, n_boot, rng)
    out["n_undefined"] = int((~np.isfinite(rho)).sum())
    res = _rho(xp - (xp - xp.mean(axis=1, keepdims=True)).mean(axis=0), xt - (xt - xt.mean(axis=1, keepdims=True)).mean(axis=0))
    r = summarise(res, n_boot, rng)
    out["residual_mean"], out["residual_ci"] = r["mean"], r["mean_ci"]
    recipes, examples = list(lp.index), list(lp.columns)
    sgn = -1.0 if higher else 1.0
    order = [i for i in np.argsort(np.where(np.isfinite(rho), rho, np.inf), kind="stable") if np.isfinite(rho[i])][:MAX_FLIPS]
    flips = []
    for i in order:
        best, worst = int(np.argmin(sgn * xp[i])), int(np.argmax(sgn * xp[i]))
        dp, dt = xp[i, best] - xp[i, worst], xt[i, best] - xt[i, worst]
        ex = examples[i]
        snip = None
        if snippets is not None and isinstance(ex, (int, np.integer)) and 0 <= int(ex) < len(snippets):
            snip = snippets[int(ex)]
        flips.append(
            {
                "example": ex.item() if isinstance(ex, np.generic) else ex,
                "rho": float(rho[i]),
                "proxy_best": recipes[best],
                "proxy_worst": recipes[worst],
                "proxy_effect": float(dp),
                "target_effect": float(dt),
                "target_best": recipes[int(np.argmin(sgn * xt[i]))],
                "target_worst": recipes[int(np.argmax(sgn * xt[i]))],
                "sign_flip": bool(dp * dt < 0),
                "snippet": snip,
            }
        )
    out["flips"] = flips
    return out


def section(
    examples: pd.DataFrame | None,
    agg: pd.DataFrame,
    sizes: list[str],
    directions: dict[str, bool],
    *,
    params: dict[str, float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    snippets: dict[str, list[str]] | None = None,
    reason: str | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """report.json's `per_example`. examples: long table recipe, size, metric, example, value[, lr, seed] (None: not
    available, `reason` says why); agg: the report's long table (recipe, size, metric, value[, lr, seed]) that fixes
    the tuned LRs. Entries: every eval set x (proxy < target) with at least MIN_RECIPES recipes present at both."""
    sizes = [str(s) for s in sizes]
    out: dict[str, Any] = {
        "available": False,
        "reason": reason,
        "definition": DEFINITION,
        "n_boot": n_boot,
        "bootstrap_seed": seed,
        "target": sizes[-1] if sizes else None,
        "lr_rule": None,
        "entries": [],
        "notes": list(notes or []),
    }
    if examples is None or examples.empty:
        out["reason"] = reason or "no per-example losses"
        return asdict(typed(PerExample, out))
    vals, out["lr_rule"] = tuned_values(examples, agg, sizes, directions)
    for mi, metric in enumerate(sorted(vals.index.get_level_values("metric").unique())):
        table = vals.xs(metric, level="metric").unstack("example")  # (size, recipe) x examples
        at = {s: table.xs(s, level="size") for s in sizes if s in table.index.get_level_values("size")}
        for pi, p in enumerate(sizes):
            for ti in range(pi + 1, len(sizes)):
                t = sizes[ti]
                if p not in at or t not in at:
                    continue
                lp, lt = at[p].dropna(axis=0, how="any"), at[t].dropna(axis=0, how="any")
                common = sorted(set(lp.index) & set(lt.index))
                cols = [c for c in at[p].columns if c in set(lp.columns) and c in set(lt.columns)]
                entry = {
                    "metric": metric,
                    "proxy": p,
                    "target": t,
                    "proxy_params": (params or {}).get(p),
                    "target_params": (params or {}).get(t),
                    "n_recipes": len(common),
                    "recipes": common,
                }
                dropped = sorted((set(at[p].index) | set(at[t].index)) - set(common))
                if dropped:
                    entry["dropped_recipes"] = dropped  # missing at one size, or without every example there
                if len(common) < MIN_RECIPES:
                    entry.update(
                        reason=f"{len(common)} recipe(s) with every example at both sizes; a per-example correlation needs {MIN_RECIPES}",
                        n_examples=0,
                        mean=None,
                        mean_ci=None,
                        flips=[],
                    )
                else:
                    rng = np.random.default_rng([seed, mi, pi, ti])
                    entry.update(
                        pair(
                            lp.loc[common, cols],
                            lt.loc[common, cols],
                            higher=bool(directions.get(metric, False)),
                            n_boot=n_boot,
                            rng=rng,
                            snippets=(snippets or {}).get(metric),
                        ),
                        reason=None,
                    )
                out["entries"].append(entry)
    ok = [e for e in out["entries"] if e.get("mean") is not None]
    out["available"] = bool(ok)
    if not ok:
        out["reason"] = out["entries"][0]["reason"] if out["entries"] else "no eval set has per-example losses at two sizes"
    else:
        out["reason"] = None
        if min(e["n_recipes"] for e in ok) < 10:
            out["notes"].append(
                f"{min(e['n_recipes'] for e in ok)} recipes per correlation: each example's rho is a correlation over that "
                "few points and is noisy; the mean over examples averages that noise but not its bias toward 0."
            )
    return asdict(typed(PerExample, out))
