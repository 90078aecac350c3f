"""Proxy-vs-target agreement of data-recipe rankings: pure numpy/pandas (scipy imported lazily), no torch.

Input is a long table with columns recipe, size, metric, value and optionally params, lr, seed, step
(`importer.prepare_csv`, `protocol.prepare_sweep`). Seeds are averaged first; a recipe's value at a
size is its value at one LR or its tuned value (the best seed mean over the LR grid).

Homes: importer (CSV input), compare (one comparison), verdict (tests, verdicts, bottom line),
protocol (cube, seed noise, reduced-LR protocol), baselines (count-model floor), early (early
signal), types (the typed Comparison that drives tables and schema). `analyze` runs them in order.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from proxyscale.analysis import baselines as B
from proxyscale.analysis import decision as D
from proxyscale.analysis.compare import MAX_FLIPS
from proxyscale.analysis.compare import compare as compare_one
from proxyscale.analysis.early import EarlySignal, early_signal
from proxyscale.analysis.importer import AnalysisError, order_sizes, parse_size, prepare_csv
from proxyscale.analysis.protocol import NO_STANDARD_LR, Cube, ReducedLR, pick_best, prepare_sweep, seed_noise, standard_lr_index
from proxyscale.analysis.stats import TIE_RULE
from proxyscale.analysis.types import typed
from proxyscale.analysis.verdict import bottom_line, summarize

__all__ = ["AnalysisError", "analyze", "compare_one", "order_sizes", "parse_size", "prepare_csv", "prepare_sweep"]


def directions_of(higher_is_better: bool | dict[str, bool], metrics) -> dict[str, bool]:
    """Per-metric direction: one bool for every metric, or a mapping (metrics it omits: lower is better)."""
    if isinstance(higher_is_better, dict):
        return {m: bool(higher_is_better.get(m, False)) for m in metrics}
    return {m: bool(higher_is_better) for m in metrics}


def _normalise(df: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    df = df.copy()
    has_lr = "lr" in df.columns and df["lr"].notna().any()
    df["lr"] = (df["lr"] if has_lr else pd.Series(np.nan, index=df.index)).astype(float).fillna(-1.0)  # -1 = "no LR given"
    if "seed" in df.columns:
        df["seed"] = df["seed"].astype(float).fillna(-1.0)
    return df, has_lr


class _Run:
    """One analysis: the cube and settings shared by its steps."""

    def __init__(self, cube: Cube, has_lr: bool, n_boot: int, n_boot_lr: int, seed: int, max_flips_lr: int):
        self.cube, self.has_lr, self.n_boot, self.n_boot_lr, self.seed, self.max_flips_lr = cube, has_lr, n_boot, n_boot_lr, seed, max_flips_lr
        self.has_seed = len(cube.seeds) > 1
        self.recipes = np.array(cube.recipes, dtype=object)

    def one(self, mi, pi, ti, x, y, kx, ky, *, lx, ly, nb, proxy_lr, target_mode, max_flips=MAX_FLIPS, with_test=True) -> dict:
        """One comparison; lx / ly: the LR index (or one per recipe) of the proxy's and the target's values, where
        their seed noise is estimated."""
        cube = self.cube
        ok = np.isfinite(x) & np.isfinite(y)
        names = list(self.recipes[ok])
        sdx, sdy = cube.sd_at(mi, pi, lx), cube.sd_at(mi, ti, ly)
        c = compare_one(
            names,
            x[ok],
            y[ok],
            higher_is_better=cube.higher[mi],
            n_boot=nb,
            seed=self.seed,
            proxy_sd=sdx if np.isfinite(sdx) else None,
            proxy_k=kx[ok],
            target_sd=sdy if np.isfinite(sdy) else None,
            target_k=ky[ok],
            abstain_reason=None if self.has_seed else "single seed: no seed-noise estimate",
            max_flips=max_flips,
            with_test=with_test,
        )
        c.metric, c.proxy, c.target, c.proxy_lr, c.target_mode = cube.metrics[mi], cube.sizes[pi], cube.sizes[ti], proxy_lr, target_mode
        c.proxy_values, c.target_values = dict(zip(names, x[ok].tolist())), dict(zip(names, y[ok].tolist()))
        return c.to_dict()

    def size_pairs(self) -> list[dict]:
        """Every (metric, proxy < target) comparison of tuned values: the primary comparisons."""
        cube, out = self.cube, []
        M, S = cube.shape[:2]
        for mi in range(M):
            for pi in range(S):
                for ti in range(pi + 1, S):
                    if np.isfinite(cube.tuned[mi, pi]).any() and np.isfinite(cube.tuned[mi, ti]).any():
                        mode = "tuned" if self.has_lr else None
                        out.append(
                            self.one(
                                mi,
                                pi,
                                ti,
                                cube.tuned[mi, pi],
                                cube.tuned[mi, ti],
                                cube.tuned_k[mi, pi],
                                cube.tuned_k[mi, ti],
                                lx=cube.tuned_lr_idx[mi, pi],
                                ly=cube.tuned_lr_idx[mi, ti],
                                nb=self.n_boot,
                                proxy_lr=mode,
                                target_mode=mode,
                            )
                        )
        return out

    def reduced_lr(self, std: float | None, source: str | None, bigram: np.ndarray) -> tuple[list[dict], dict]:
        """Per proxy LR against the tuned target and (with a stated standard LR) the fixed-LR target."""
        cube, comps, entries = self.cube, [], []
        std_i, fixed_reason = standard_lr_index(cube, std) if self.has_lr else (None, "no lr column")
        M, S = cube.shape[:2]
        for mi in range(M):
            for pi in range(S):
                for ti in range(pi + 1, S):
                    plrs, tlrs = cube.lrs_at(mi, pi), cube.lrs_at(mi, ti)
                    if not self.has_lr or (len(plrs) < 2 and len(tlrs) < 2) or not np.isfinite(cube.tuned[mi, ti]).any():
                        continue
                    y = cube.tuned[mi, ti]
                    fixed_ok = std_i is not None and np.isfinite(cube.mean[mi, ti, std_i]).any()
                    why_fixed = fixed_reason or (None if fixed_ok else f"target {cube.sizes[ti]} has no runs at the standard LR {std:g}")
                    curve = []
                    for li in plrs:
                        lr = float(cube.lrs[li])
                        under = (
                            B.undertrained(cube.cell[mi, pi, li], bigram[mi], cube.recipes, cube.seeds, self.has_seed)
                            if np.isfinite(bigram[mi]).any() and not cube.higher[mi]
                            else []
                        )
                        for mode in ("tuned", "fixed"):
                            if mode == "fixed" and why_fixed:
                                continue
                            tt, tk = (y, cube.tuned_k[mi, ti]) if mode == "tuned" else (cube.mean[mi, ti, std_i], cube.k[mi, ti, std_i])
                            c = self.one(
                                mi,
                                pi,
                                ti,
                                cube.mean[mi, pi, li],
                                tt,
                                cube.k[mi, pi, li],
                                tk,
                                lx=li,
                                ly=cube.tuned_lr_idx[mi, ti] if mode == "tuned" else std_i,
                                nb=self.n_boot_lr,
                                proxy_lr=lr,
                                target_mode=mode,
                                max_flips=self.max_flips_lr,
                                with_test=False,
                            )
                            c["undertrained"] = under
                            comps.append(c)
                            curve.append(
                                {
                                    "proxy_lr": lr,
                                    "target_mode": mode,
                                    "spearman": c["spearman"],
                                    "decision_accuracy": c["decision_accuracy"],
                                    "decision_accuracy_ci": c["decision_accuracy_ci"],
                                    "n_recipes": c["n_recipes"],
                                    "n_undertrained": len(under),
                                    "reason": c["reason"],
                                }
                            )
                    entry = {
                        "metric": cube.metrics[mi],
                        "proxy": cube.sizes[pi],
                        "target": cube.sizes[ti],
                        "standard_lr": std,
                        "proxy_best_lr": cube.own_best_lr(mi, pi),
                        "target_own_best_lr": cube.own_best_lr(mi, ti),
                        "target_best_lr": {cube.recipes[r]: float(cube.lrs[cube.tuned_lr_idx[mi, ti, r]]) for r in np.flatnonzero(np.isfinite(y))},
                        "curve": curve,
                        "reason_fixed": why_fixed,
                        "notes": [],
                    }
                    for mode in ("tuned", "fixed"):
                        best, stdp, why = pick_best(curve, mode, std)
                        entry[f"best_proxy_lr_{mode}"] = best["proxy_lr"] if best else None
                        entry[f"best_{mode}"], entry[f"standard_{mode}"] = best, stdp
                        if not best:
                            entry[f"reason_{mode}"] = why_fixed if mode == "fixed" and why_fixed else why
                        elif entry["proxy_best_lr"] is not None and np.isclose(best["proxy_lr"], entry["proxy_best_lr"], rtol=1e-9):
                            entry["notes"].append(
                                f"against the {mode} target the best proxy LR {best['proxy_lr']:g} is the {cube.sizes[pi]} proxy's own "
                                f"optimum: this is ordinary tuning, not the reduced-LR protocol"
                            )
                    if std is not None and entry["target_own_best_lr"] is not None and np.isclose(std, entry["target_own_best_lr"], rtol=1e-9):
                        entry["notes"].append(f"the standard LR {std:g} is also the {cube.sizes[ti]} target's own optimum")
                    entries.append(entry)
        if not self.has_lr:
            assumption = "LR: no lr column; each value is taken as given."
        elif std is None:
            assumption = f"LR: every size tuned per recipe over its LR grid; fixed-LR target unavailable ({NO_STANDARD_LR})."
        else:
            assumption = f"LR: every size tuned per recipe over its LR grid; standard LR {std:g} ({source})."
        section = typed(
            ReducedLR,
            {
                "available": bool(entries),
                "standard_lr": std,
                "standard_lr_source": source if std is not None else None,
                "fixed_available": fixed_reason is None,
                "fixed_reason": fixed_reason,
                "assumption": assumption,
                "entries": entries,
                "reason": None if entries else ("no lr column" if not self.has_lr else "a single LR at every size"),
            },
        )
        return comps, asdict(section)


def analyze(
    df: pd.DataFrame,
    sizes: list[str],
    *,
    higher_is_better: bool | dict[str, bool] = False,
    n_boot: int = 1000,
    n_boot_lr: int = 100,
    seed: int = 0,
    baselines: dict[tuple[str, str], dict[str, float]] | None = None,
    baseline_reason: str | None = None,
    curves: pd.DataFrame | None = None,
    max_flips_lr: int = 10,
    standard_lr: float | None = None,
    standard_lr_source: str | None = None,
) -> dict[str, Any]:
    """Every comparison of the long table `df` (see the package doc).

    higher_is_better: one bool or {metric: bool}. baselines: (recipe, metric) -> {unigram, bigram} (nats/token),
    for undertrained flags and the null-baseline floor. curves: long table with a step column (early signal).
    n_boot / n_boot_lr: seed-noise replicates of the size-pair / per-proxy-LR intervals and baseline resamples.
    standard_lr: the stated standard LR (fixed-LR target) and where it came from."""
    df, has_lr = _normalise(df)
    dirs = directions_of(higher_is_better, sorted(df["metric"].unique()))
    cube = Cube(df, sizes, dirs)
    run = _Run(cube, has_lr, n_boot, n_boot_lr, seed, max_flips_lr)
    bigram = np.full((len(cube.metrics), len(cube.recipes)), np.nan)
    for (r, m), v in (baselines or {}).items():
        if r in cube.recipes and m in cube.metrics:
            bigram[cube.metrics.index(m), cube.recipes.index(r)] = v["bigram"]
    primary = run.size_pairs()
    per_lr, reduced = run.reduced_lr(standard_lr, standard_lr_source, bigram)
    directions = {m: "higher" if h else "lower" for m, h in zip(cube.metrics, cube.higher)}
    kinds = set(directions.values())
    out = {
        "direction": kinds.pop() if len(kinds) == 1 else "mixed",
        "directions": directions,
        "metrics": cube.metrics,
        "sizes": list(sizes),
        "recipes": cube.recipes,
        "n_boot": n_boot,
        "n_boot_lr": n_boot_lr,
        "bootstrap_seed": seed,
        "tie_rule": TIE_RULE,
        "comparisons": primary + per_lr,
        "seed_noise": seed_noise(cube) if run.has_seed else [],
        "reduced_lr": reduced,
        "early_signal": early_signal(curves, cube)
        if curves is not None
        else asdict(EarlySignal(reason="no training curves (external results without a step column)", target=cube.sizes[-1])),
    }
    out["baselines"] = B.section(baselines, baseline_reason, cube, primary, n_boot, seed)
    out["warnings"] = _warnings(out, run)
    out["summary"] = summarize(out, primary)
    out["summary"]["bottom_line"] = bottom_line(out, primary)
    out["decision"] = D.as_json(D.decision(out, primary))
    out["losses"] = D.as_json(D.losses(cube))
    return out


def _warnings(report: dict, run: _Run) -> list[str]:
    w = list(report["baselines"].get("warnings") or [])
    if not run.has_seed:
        w.append("single seed per cell: intervals cover recipe sampling only and verdicts assume the differences are real")
    return w
