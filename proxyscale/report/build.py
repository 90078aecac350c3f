"""`proxyscale report`: a sweep folder or an external CSV -> report.json, report.md, report.html.

report.json schema (NaN is written as null; every figure that cannot be computed is null with a
reason string next to it):

  schema_version: 3   (`proxyscale report --schema` prints the JSON Schema, generated from the dataclasses)
  source: {kind: "sweep" | "csv", path}
  direction: "lower" | "higher"          which way is better, for every metric
  metrics, sizes (smallest first), recipes: lists of names; size_params: {size: params} (when known)
  size_parametrization: {size: standard | mup} (sweeps: model.parametrization of the completed cells; also a note)
  status_counts: {size: {completed|diverged|failed: n}}   (sweeps; only completed cells are analysed)
  missing_cells: {n, n_grid, line, cells: [{run_id, size, recipe, lr, seed, state}], effects: [str]}   (sweeps: grid.json
      cells without a final record, and what that changes: fewer LRs tuned over, fewer seeds, a recipe left out)
  n_boot, n_boot_lr, bootstrap_seed      seed-noise replicates widening the intervals (size pairs / per-LR
                                         entries) and recipe resamples of the baseline differences
  directions: {metric: "lower" | "higher"}; direction: the common one or "mixed"
  tie_rule: values within 1e-9 x the largest |value| of a comparison are tied
  comparisons: [ one object per (metric, proxy, target) with proxy smaller than target, and for
      sweeps with an LR grid also per proxy LR and target mode. Keys and their meaning are the fields
      of proxyscale.analysis.types.Comparison (types.schema_doc() prints them), plus registered
      statistics flattened to top-level keys; per-LR entries add undertrained: [{recipe, seed, loss, bigram}] ]
  seed_noise: [proxyscale.analysis.protocol.SeedNoise]  floor = fraction of recipe pairs two seeds of the same size
      and LR order differently
  reduced_lr: proxyscale.analysis.protocol.ReducedLR (the standard LR from --standard-lr or grid.json, never guessed;
      undertrained proxy LRs - any cell worse than the bigram baseline - are never the best pick)
  baselines: proxyscale.analysis.baselines.Baselines (unigram/bigram count models, values from results.parquet)
  early_signal: proxyscale.analysis.early.EarlySignal
  prediction: proxyscale.analysis.scaling.Prediction (fits on the same seed-mean, best-LR values; methods over the
      report's fitting budget PREDICT_BUDGET_S are skipped with the reason)
  frontier: proxyscale.analysis.frontier.Frontier (every proxy (size, step) with all recipes evaluated - a sweep's eval
      curves, a CSV's step rows - and every extrapolation method, against the target's final values; the planner)
  per_example: proxyscale.analysis.examples.PerExample (from examples.parquet or a CSV's example column)
  attribution: proxyscale.analysis.datamodels.Attribution (sweeps with subset cells only; datamodels.* files beside it)
  warnings: [str]
  decision: proxyscale.analysis.decision.Decision (the first screen: one row per eval set)
  losses: proxyscale.analysis.decision.Losses (per eval set: recipe x size seed mean ± sd at the tuned LR)
  summary: proxyscale.analysis.verdict.Summary (verdicts per eval set and the bottom line, 3-7 lines, also atop
      report.md/html and on the terminal)
  notes: [str]
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy imports wait until a report is built: `import build` stays cheap
    import pandas as pd

SCHEMA_VERSION = 3  # 3: every key of a typed section is always present (null or false where it does not apply)


class ReportError(ValueError):
    """Bad input for a report; the message is the one line the CLI prints."""


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars and arrays -> Python."""
    import numpy as np

    def walk(o):
        if isinstance(o, dict):
            return {str(k): walk(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v) for v in o]
        if isinstance(o, np.ndarray):
            return walk(o.tolist())
        if isinstance(o, (bool, np.bool_)):
            return bool(o)
        if isinstance(o, (int, np.integer)):
            return int(o)
        if isinstance(o, (float, np.floating)):
            f = float(o)
            return f if math.isfinite(f) else None
        return o

    return walk(obj)


def _parametrization(results: "pd.DataFrame", sizes: list[str]) -> dict[str, str]:
    """{size: standard | mup | "mixed: ..."} of the completed cells (model.parametrization); {} for tables collected before it was recorded."""
    if "parametrization" not in results.columns:
        return {}
    done = results[results["status"] == "completed"]
    per = done.groupby("size")["parametrization"].agg(lambda v: sorted(set(v)))
    return {s: (per[s][0] if len(per[s]) == 1 else "mixed: " + ", ".join(per[s])) for s in sizes if s in per.index}


def _load_sweep(root: Path, out: Path) -> "tuple[pd.DataFrame, pd.DataFrame | None]":
    """The sweep's tables, collected again (into `out`) when its records or grid.json changed since."""
    import pandas as pd

    from proxyscale import collect

    if not root.is_dir():
        raise ReportError(f"no sweep folder at {root}")
    if collect.is_stale(root, out):
        try:
            collected = collect.collect(root)
        except collect.CollectError as exc:
            raise ReportError(str(exc)) from None
        collect.write(collected, root, out)
    results = pd.read_parquet(out / collect.RESULTS)
    curves_path = out / collect.CURVES
    curves = pd.read_parquet(curves_path) if curves_path.exists() else None
    return results, curves


def _grid_standard_lr(root: Path) -> tuple[float | None, str | None]:
    """(standard_lr, its source) from the sweep's grid.json when it states them."""
    from proxyscale import record

    path = root / record.GRID
    if not path.exists():
        return None, None
    try:
        grid = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not readable JSON ({exc})") from None
    lr = grid.get("standard_lr") if isinstance(grid, dict) else None
    if lr is None:
        return None, None
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ReportError(f"{path}: standard_lr must be a positive number, got {lr!r}")
    return float(lr), f"grid.json: {grid.get('standard_lr_source') or 'stated by the sweep'}"


def _standard_lr(flag: float | None, root: Path | None) -> tuple[float | None, str | None]:
    """The CLI flag overrides the sweep's grid.json; neither: None (fixed-target mode unavailable)."""
    if flag is not None:
        if not (flag > 0 and math.isfinite(flag)):
            raise ReportError(f"--standard-lr must be a finite number > 0, got {flag:g}")
        return float(flag), "--standard-lr on the command line"
    return _grid_standard_lr(root) if root is not None else (None, None)


# ---------------------------------------------------------------------------------------------
# predictions (size extrapolation) and the compute-decision frontier (issue 15)

DECISION_LEVEL = 0.8  # the planner's default: the cheapest choice whose DA lower bound reaches it
MAX_PAIRWISE_RECIPES = 2000  # scores and bootstraps build n x n pair matrices: above this, both sections are skipped
PREDICT_BUDGET_S = 2.0  # estimated fitting time the report spends on extrapolation methods
# Estimated seconds per recipe fit (one recipe, one metric, one fit: the main fit or the backtest), measured on
# a 4-size synthetic ladder on the 2-core dev machine; shared_power and log_linear are vectorised over recipes.
FIT_COST_S = {"shared_power": 0.0005, "log_linear": 0.0005, "power_per_recipe": 0.005, "compute_2p": 0.025, "compute_3p": 0.07, "nd_law": 0.1}


def check_decision_level(level: float) -> float:
    if not (isinstance(level, (int, float)) and 0.5 < float(level) <= 1.0):
        raise ReportError(f"--decision-level must be in (0.5, 1] (a decision accuracy above chance), got {level:g}")
    return float(level)


def _choose_methods(table: "pd.DataFrame", n_proxies: int, n_recipes: int, n_metrics: int) -> tuple[list[str], list[dict]]:
    """The extrapolation methods the report runs, cheapest first within PREDICT_BUDGET_S, and why the others did not."""
    from proxyscale.analysis import scaling

    tasks = 1 + (n_proxies >= 3)  # the fit, and the backtest that leaves out the largest proxy
    fits = n_recipes * n_metrics * tasks
    has_ckpt = all(c in table.columns and table[c].notna().any() for c in ("step", "tokens"))
    run, skipped, spent = [], [], 0.0
    for m in sorted(scaling.METHODS, key=lambda m: FIT_COST_S[m]):
        need = scaling.MIN_SIZES.get(m, 2)
        if n_proxies < need:
            skipped.append({"method": m, "reason": f"needs {need} proxy sizes below the target; {n_proxies} given"})
            continue
        if m == "nd_law" and not has_ckpt:
            skipped.append({"method": m, "reason": "needs intermediate checkpoints (step and tokens columns)"})
            continue
        cost = FIT_COST_S[m] * fits
        if spent + cost > PREDICT_BUDGET_S:
            skipped.append(
                {
                    "method": m,
                    "reason": f"about {cost:.1f} s for {fits} recipe fits ({n_recipes} recipes x {n_metrics} metrics x "
                    f"{tasks} fit(s)) would exceed the report's {PREDICT_BUDGET_S:g} s budget; run "
                    f"proxyscale.analysis.scaling.predict(..., methods=({m!r},)) for it",
                }
            )
            continue
        spent += cost
        run.append(m)
    return [m for m in scaling.METHODS if m in run], skipped


def predictions(
    table: "pd.DataFrame", sizes: list[str], directions: dict[str, bool], *, n_boot: int = 1000, seed: int = 0, decision_level: float = DECISION_LEVEL
) -> tuple[dict, dict]:
    """(prediction, frontier) sections of report.json from the analysis' long table (with step/tokens rows where
    there are checkpoints). Neither raises on data it cannot use: it says why in `reason` (one line)."""
    from proxyscale.analysis import frontier as F
    from proxyscale.analysis import scaling

    sizes = [str(s) for s in sizes]
    target = sizes[-1]
    n_recipes, n_metrics = int(table["recipe"].nunique()), int(table["metric"].nunique())
    pred: dict[str, Any] = {
        "available": False,
        "reason": None,
        "target": target,
        "fit_sizes": sizes[:-1],
        "methods_run": [],
        "methods_skipped": [],
        "methods": [],
        "single_scale": [],
        "notes": [],
    }
    front: dict[str, Any] = {"available": False, "reason": None, "decision_level": decision_level, "target": target, "points": [], "plans": [], "notes": []}
    if n_recipes > MAX_PAIRWISE_RECIPES:
        why = (
            f"{n_recipes} recipes: decision-accuracy bootstraps build recipe x recipe matrices; skipped above "
            f"{MAX_PAIRWISE_RECIPES} recipes (the comparisons above still score every pair)"
        )
        pred["reason"] = front["reason"] = why
        return _typed(pred, front)
    try:
        params = scaling.size_params(table, sizes)
    except scaling.PredictError as exc:
        pred["reason"] = front["reason"] = str(exc)
        return _typed(pred, front)
    proxies = [s for s in sizes if params[s] < params[target]]
    if len(proxies) < 2:
        pred["reason"] = (
            f"{len(sizes)} sizes: extrapolating to {target} needs at least 2 proxy sizes below it (3 sizes in all); "
            "the frontier below compares the single proxy sizes instead"
        )
        pred["notes"].append(pred["reason"] + ".")
    else:
        methods, skipped = _choose_methods(table, len(proxies), n_recipes, n_metrics)
        pred["methods_run"], pred["methods_skipped"] = methods, skipped
        out = scaling.predict(table, sizes, target=target, higher_is_better=directions, methods=tuple(methods), n_boot=n_boot, seed=seed)
        pred.update(out, available=True)
        _da_intervals(pred, table, sizes, proxies, directions)
        if skipped:
            pred["notes"].append("not run: " + "; ".join(f"{s['method']} ({s['reason']})" for s in skipped) + ".")
    out = F.frontier(table, sizes, target=target, prediction=pred if pred["available"] else None, higher_is_better=directions, decision_level=decision_level)
    front.update(out, available=bool(out["points"]), reason=None if out["points"] else "no point with every recipe at the target")
    return _typed(pred, front)


def _typed(pred: dict, front: dict) -> tuple[dict, dict]:
    """The two sections as their dataclasses' serialisation (a key neither declares is an error)."""
    from dataclasses import asdict

    from proxyscale.analysis.frontier import Frontier
    from proxyscale.analysis.scaling import Prediction
    from proxyscale.analysis.types import typed

    return asdict(typed(Prediction, pred)), asdict(typed(Frontier, front))


def _da_intervals(pred: dict, table: "pd.DataFrame", sizes: list[str], proxies: list[str], directions: dict[str, bool]) -> None:
    """decision_accuracy_ci on every method and single-size entry: the interval every comparison reports."""
    import numpy as np

    from proxyscale.analysis import scaling
    from proxyscale.analysis.stats import da_interval

    tables = scaling.final_tables(table, sizes, directions)
    for e in pred["methods"] + pred["single_scale"]:
        e["decision_accuracy_ci"] = None
        tab = tables.get(e["metric"])
        if e.get("decision_accuracy") is None or tab is None:
            continue
        if "method" in e:
            recipes = [r for r, v in e["predicted"].items() if v is not None]
            x = np.array([e["predicted"][r] for r in recipes], dtype=float)
            y = tab.loc[recipes, e["target"]].to_numpy(float)
        else:  # the recipes predict scored: every value at the fit sizes (the proxies below this target) and the target
            cols = [s for s in proxies if sizes.index(s) < sizes.index(e["target"])] + [e["target"]]
            t = tab.reindex(columns=cols).dropna()
            x, y = t[e["size"]].to_numpy(float), t[e["target"]].to_numpy(float)
        if np.isfinite(x).all() and np.isfinite(y).all():
            e["decision_accuracy_ci"] = da_interval(x, y)


def _sweep_table(results: "pd.DataFrame", curves: "pd.DataFrame | None") -> "pd.DataFrame":
    """Completed cells' final losses (at the run's last step, with params and tokens) plus their earlier eval points."""
    import numpy as np
    import pandas as pd

    from proxyscale.analysis.protocol import metric_values, sweep_table

    keep = (results["status"] == "completed") & np.isfinite(metric_values(results).to_numpy(dtype=float))
    ok = results[keep]
    final = sweep_table(results)  # lm losses and task metrics (hellaswag/acc ...)
    for c in ("tokens", "steps"):
        if c in ok.columns:
            final["tokens" if c == "tokens" else "step"] = ok[c].astype(float).to_numpy()
    if curves is None or curves.empty or "step" not in final.columns or not final["step"].notna().all():
        return final.drop(columns=["step"], errors="ignore")
    early = _long_curves(curves, set(ok["run_id"]), extra=("params", "tokens", "run_id"))
    last = dict(zip(ok["run_id"], ok["steps"].astype(float)))
    early = early[early["step"] < early["run_id"].map(last)].drop(columns="run_id")  # the final loss stands for the last step
    return pd.concat([final, early], ignore_index=True)


def _long_curves(curves: "pd.DataFrame", run_ids: set, extra: tuple[str, ...] = ()) -> "pd.DataFrame":
    """curves.parquet rows of these cells as the analysis' long table (metric = eval set, value = loss, step),
    with the `extra` columns (params, tokens, run_id) kept as they are."""
    import pandas as pd

    cv = curves[curves["run_id"].isin(run_ids)]
    cols = {"recipe": cv["recipe"].astype(str), "size": cv["size"].astype(str), "metric": cv["eval_set"].astype(str), "value": cv["loss"].astype(float)}
    cols.update({c: cv[c].astype(float) for c in ("lr", "seed", "params", "tokens", "step") if c in ("lr", "seed", "step") or c in extra})
    cols.update({c: cv[c] for c in extra if c not in cols})
    return pd.DataFrame(cols)


def _add_predictions(rep: dict, table: "pd.DataFrame", sizes: list[str], *, n_boot: int, decision_level: float) -> None:
    """report.json's prediction and frontier, and the planner's line in the bottom line when it fits."""
    from proxyscale.analysis.verdict import bottom_line

    directions = {m: d == "higher" for m, d in rep["directions"].items()}
    rep["prediction"], rep["frontier"] = predictions(table, sizes, directions, n_boot=n_boot, seed=rep["bootstrap_seed"], decision_level=decision_level)
    primary = [c for c in rep["comparisons"] if c.get("proxy_lr") in (None, "tuned") and c.get("target_mode") in (None, "tuned")]
    rep["summary"]["bottom_line"] = bottom_line(rep, primary)  # again, now with the planner's line where it fits


def build_sweep(
    sweep_dir: str, *, n_boot: int = 1000, standard_lr: float | None = None, decision_level: float = DECISION_LEVEL, out: str | None = None
) -> dict:
    """A sweep's report. Its metrics are the lm eval sets' losses (lower is better) and the task sets' acc,
    prob_correct and ll_norm (`<set>/<metric>`, higher is better)."""

    from proxyscale import analysis

    root = Path(sweep_dir)
    results, curves = _load_sweep(root, Path(out or root))
    try:
        df, sizes, counts, base = analysis.prepare_sweep(results)
    except analysis.AnalysisError as exc:
        raise ReportError(str(exc)) from None
    if df["recipe"].nunique() < 2:
        raise ReportError(f"{root}: only one recipe with completed cells ({df['recipe'].iloc[0]!r}); a ranking needs at least 2")
    if len(sizes) < 2:
        raise ReportError(f"{root}: only one size with completed cells ({sizes[0]!r}); a proxy and a target are needed")
    lr, source = _standard_lr(standard_lr, root)
    reason = None if base else "results.parquet has no unigram/bigram columns (collected before the count-model baselines): re-collect the sweep"
    long_curves = None
    if curves is not None and not curves.empty:
        long_curves = _long_curves(curves, set(results.loc[results["status"] == "completed", "run_id"]))
    from proxyscale.analysis.protocol import sweep_directions

    directions = {m: h for m, h in sweep_directions(results).items() if m in set(df["metric"])}
    rep = analysis.analyze(
        df,
        sizes,
        higher_is_better=directions,
        n_boot=n_boot,
        baselines=base or None,
        baseline_reason=reason,
        curves=long_curves,
        standard_lr=lr,
        standard_lr_source=source,
    )
    n_bad = sum(n for c in counts.values() for s, n in c.items() if s != "completed")
    missing = missing_cells(root, results)
    done = "every cell with a record completed." if missing["n"] else "every cell completed."
    notes = [f"{n_bad} diverged/failed cell(s) excluded from every figure." if n_bad else done]
    if missing["n"]:
        rep["warnings"] = [missing["line"], *rep.get("warnings", [])]
        notes += [missing["line"], *missing["effects"]]
        shown = missing["cells"][:MAX_MISSING_LISTED]
        notes += [f"missing: {c['size']} {c['recipe']} lr {c['lr']:g} seed {c['seed']} ({c['state']}; {c['run_id']})" for c in shown]
        if missing["n"] > MAX_MISSING_LISTED:
            notes.append(f"... and {missing['n'] - MAX_MISSING_LISTED} more missing cell(s): proxyscale status {root}")
    parametrization = _parametrization(results, sizes)
    if parametrization:
        notes.append("parametrization per size: " + ", ".join(f"{s} {p}" for s, p in parametrization.items()) + ".")
    _add_predictions(rep, _sweep_table(results, curves), sizes, n_boot=n_boot, decision_level=decision_level)
    rep["per_example"] = _per_example_sweep(root, Path(out or root), results, df, sizes, rep)
    return {
        "schema_version": SCHEMA_VERSION,
        "source": {"kind": "sweep", "path": str(root)},
        "size_params": {s: int(p) for s, p in df.groupby("size")["params"].first().items()},
        "size_parametrization": parametrization,
        "status_counts": counts,
        "missing_cells": missing,
        "notes": notes,
        **rep,
    }


MAX_MISSING_LISTED = 20  # missing cells named one by one in the notes (all of them in report.json)


def missing_cells(root: Path, results: "pd.DataFrame") -> dict:
    """The cells of the sweep's grid.json without a final record (never run, interrupted, failed, deleted), and what
    their absence changes: a (size, recipe) tuned over fewer LRs, averaged over fewer seeds, or left out entirely.
    {n, n_grid, line, cells: [{run_id, size, recipe, lr, seed, state}], effects: [str]}."""
    from proxyscale import collect

    doc = collect.read_grid_doc(root) or {}
    cells, keys = doc.get("cells") or {}, doc.get("keys") or {}
    status = dict(zip(results["run_id"], results["status"]))
    final = {rid for rid, st in status.items() if st in ("completed", "diverged")}
    out: dict[str, Any] = {"n": 0, "n_grid": len(cells), "line": None, "cells": [], "effects": []}
    lost = [rid for rid in sorted(cells) if rid not in final]
    if not lost:
        return out
    for rid in lost:
        size, recipe, lr, seed = keys.get(rid) or [None, None, float("nan"), None]
        out["cells"].append({"run_id": rid, "size": size, "recipe": recipe, "lr": lr, "seed": seed, "state": "failed" if rid in status else "no record"})
    out["n"] = len(lost)
    out["line"] = f"{len(lost)} of {len(cells)} grid cells have no final record (never run, interrupted, failed or deleted): the figures use the others"
    if len(keys) < len(cells):
        out["effects"].append("grid.json predates per-cell keys: what the missing cells change is not known (rerun the sweep command to record them)")
        return out
    asked: dict[tuple, dict[float, set]] = {}
    for rid in cells:
        size, recipe, lr, seed = keys[rid]
        asked.setdefault((size, recipe), {}).setdefault(lr, set()).add(seed)
    have: dict[tuple, dict[float, set]] = {}
    for rid in cells:
        if rid in final:
            size, recipe, lr, seed = keys[rid]
            have.setdefault((size, recipe), {}).setdefault(lr, set()).add(seed)
    for (size, recipe), lrs in sorted(asked.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        got = have.get((size, recipe), {})
        if not got:
            out["effects"].append(f"{size}: recipe {recipe} has no final cell, so it is left out of every comparison with {size}")
            continue
        if len(got) < len(lrs):
            without = ", ".join(f"{lr:g}" for lr in sorted(set(lrs) - set(got)))
            out["effects"].append(f"{size}: recipe {recipe} tuned over {len(got)} of {len(lrs)} LRs (without {without}), so its best LR may differ")
        fewer = [lr for lr in sorted(got) if len(got[lr]) < len(lrs[lr])]
        for lr in fewer:
            out["effects"].append(f"{size}: recipe {recipe} at lr {lr:g} averaged over {len(got[lr])} of {len(lrs[lr])} seeds")
    return out


def build_csv(
    path: str,
    *,
    higher_is_better: bool | list[str] | None = None,
    n_boot: int = 1000,
    standard_lr: float | None = None,
    allow_short_runs: bool = False,
    decision_level: float = DECISION_LEVEL,
) -> dict:
    """An external CSV's report; higher_is_better: True (every metric), metric names, or None (a `direction` column or lower)."""
    import pandas as pd

    from proxyscale import analysis

    try:
        df, sizes, directions, notes, examples = analysis.prepare_csv(path, higher_is_better=higher_is_better, allow_short_runs=allow_short_runs)
    except analysis.AnalysisError as exc:
        raise ReportError(str(exc)) from None
    notes = list(notes)
    if "seed" in df.columns:  # two rows for one run and metric are a conflict, not two seeds
        keys = [k for k in ("recipe", "size", "metric", "lr", "seed", "step") if k in df.columns]
        twins = df[df.duplicated(keys, keep=False)]
        clash = twins.groupby(keys, dropna=False)["value"].nunique()
        clash = clash[clash > 1]
        if len(clash):
            first = dict(zip(keys, clash.index[0] if isinstance(clash.index[0], tuple) else (clash.index[0],)))
            vals = twins.merge(pd.DataFrame([first]), on=keys)["value"].tolist()
            raise ReportError(
                f"{path}: {len(clash)} run(s) have rows with different values, e.g. "
                + ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in first.items())
                + f": {', '.join(f'{v:g}' for v in vals)}; keep one row per (recipe, size, metric, lr, seed)"
            )
        df = df.drop_duplicates(keys)
    curves = None
    if "step" in df.columns:
        keys = [k for k in ("recipe", "size", "metric", "lr", "seed") if k in df.columns]
        curves = df.copy()
        last = df.groupby(keys, dropna=False)["step"].transform("max")
        df = df[df["step"] == last].drop(columns="step")
        notes.append("rows at the last step of each run are the final values; earlier steps feed the early-signal section.")
    dup_keys = [k for k in ("recipe", "size", "metric", "lr", "seed") if k in df.columns]
    if df.duplicated(dup_keys).any():
        notes.append("repeated (recipe, size, metric[, lr, seed]) rows are averaged like seeds.")
    lr, source = _standard_lr(standard_lr, None)
    rep = analysis.analyze(
        df,
        sizes,
        higher_is_better=directions,
        n_boot=n_boot,
        curves=curves,
        standard_lr=lr,
        standard_lr_source=source,
        baseline_reason="external results: no count-model baselines",
    )
    rep["warnings"] = [n for n in notes if "but is analysed as" in n] + list(rep["warnings"])  # direction doubts reach the terminal
    _add_predictions(rep, curves if curves is not None else df, sizes, n_boot=n_boot, decision_level=decision_level)
    size_params = df.groupby("size")["params"].first().to_dict() if "params" in df.columns else {s: analysis.parse_size(s) for s in sizes}
    rep["per_example"] = _per_example(examples, df, sizes, rep, size_params, None if examples is not None else "the CSV has no example column")
    return {
        "schema_version": SCHEMA_VERSION,
        "source": {"kind": "csv", "path": str(path)},
        "size_params": size_params,
        "status_counts": {},
        "notes": notes,
        **rep,
    }


def _per_example(
    examples: "pd.DataFrame | None",
    agg: "pd.DataFrame",
    sizes: list[str],
    rep: dict,
    params: dict,
    reason: str | None,
    snippets: dict | None = None,
    notes: list[str] | None = None,
) -> dict:
    from proxyscale.analysis import examples as X

    directions = {m: d == "higher" for m, d in rep["directions"].items()}
    return X.section(
        examples, agg, sizes, directions, params=params, n_boot=rep["n_boot"], seed=rep["bootstrap_seed"], snippets=snippets, reason=reason, notes=notes
    )


def _per_example_sweep(root: Path, out: Path, results: "pd.DataFrame", df: "pd.DataFrame", sizes: list[str], rep: dict) -> dict:
    """per_example from the sweep's examples.parquet (gathered now when the tables predate it) and the snippet
    files the jobs wrote (eval_snippets/, named in examples.json)."""
    import pandas as pd

    from proxyscale import collect

    path, note = out / collect.EXAMPLES, out / collect.EXAMPLES_NOTE
    if not path.exists() or not note.exists():
        collect.gather_examples(root, results, out)
    params = {s: int(p) for s, p in df.groupby("size")["params"].first().items()}
    if not path.exists():
        old = not set(collect.EXAMPLE_COLUMNS_OF_RESULTS) <= set(results.columns)
        why = (
            "results.parquet predates the per-example columns: run `proxyscale collect` on the sweep again"
            if old
            else "no per-example losses: no completed cell names an examples file (trained before per-example losses were recorded, or a multi-process eval)"
        )
        return _per_example(None, df, sizes, rep, params, why)
    ex = pd.read_parquet(path)
    done = set(results.loc[results["status"] == "completed", "run_id"])
    ex = ex[ex["run_id"].isin(done)]
    from proxyscale.analysis.protocol import metric_names, metric_values

    table = pd.DataFrame(
        {
            "recipe": ex["recipe"].astype(str),
            "size": ex["size"].astype(str),
            "metric": metric_names(ex),
            "example": ex["example"].astype(int),
            "value": metric_values(ex),
            "lr": ex["lr"].astype(float),
            "seed": ex["seed"].astype(float),
        }
    )
    snippets, notes = {}, []
    try:
        meta = json.loads(note.read_text())
    except (OSError, ValueError):
        meta = {}
    for name, info in (meta.get("eval_sets") or {}).items():
        try:
            snippets[name] = json.loads((root / info["snippets"]).read_text())["snippets"]
        except (OSError, ValueError, KeyError, TypeError):
            notes.append(f"eval set {name}: no snippet file ({info.get('snippets') if isinstance(info, dict) else '?'}); flips shown without text")
    if meta.get("left_out"):
        notes.append(f"{len(meta['left_out'])} cell file(s) or eval set(s) left out of examples.parquet (see examples.json)")
    return _per_example(table, df, sizes, rep, params, None, snippets, notes)


def write_json(report: dict, path: Path) -> Path:
    path.write_text(json.dumps(_clean(report), indent=1, allow_nan=False))
    return path


def run(
    sweep_dir: str | None = None,
    csv: str | None = None,
    out: str | None = None,
    higher_is_better: bool | list[str] | None = None,
    n_boot: int = 1000,
    standard_lr: float | None = None,
    allow_short_runs: bool = False,
    decision_level: float = DECISION_LEVEL,
    figures: bool = True,
) -> tuple[list[Path], dict]:
    """Build the report; returns (the written paths [report.json, report.md, report.html, figure PNGs], the report).
    figures=False (--no-figures) draws none: each figure's place in report.md/.html says so."""
    if bool(sweep_dir) == bool(csv):
        raise ReportError("give either a sweep folder or --from-csv PATH")
    decision_level = check_decision_level(decision_level)
    _standard_lr(standard_lr, None)  # a bad --standard-lr is refused before any work
    if csv and not out:
        raise ReportError("--from-csv needs --out DIR")
    if not csv:
        if higher_is_better:
            raise ReportError("a sweep's metrics are eval losses (lower is better); --higher-is-better is for --from-csv results")
        if allow_short_runs:
            raise ReportError("--allow-short-runs is for --from-csv results; a sweep's records say where each cell stopped")
        if not Path(sweep_dir).is_dir():
            raise ReportError(f"no sweep folder at {sweep_dir}")
    from proxyscale.report import render

    with render.painters() if figures else contextlib.nullcontext() as pool:  # forked now: the workers import matplotlib while the analysis runs
        if csv:
            report = build_csv(
                csv, higher_is_better=higher_is_better, n_boot=n_boot, standard_lr=standard_lr, allow_short_runs=allow_short_runs, decision_level=decision_level
            )
        folder = Path(out or sweep_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportError(f"cannot create output folder {folder}: {exc.strerror}") from None
        import os

        if not os.access(folder, os.W_OK | os.X_OK):  # before the analysis, not after it
            raise ReportError(f"report not written: {folder} is not writable (give --out DIR); the previous report there, if any, is intact")
        if not csv:
            report = build_sweep(sweep_dir, n_boot=n_boot, standard_lr=standard_lr, decision_level=decision_level, out=str(folder))
        datamodels = None
        if not csv:  # issue 23: datamodels and their section when the sweep trained subsets (report/attribution.py)
            from proxyscale.report import attribution

            found = attribution.for_report(sweep_dir, folder)
            if found is not None:
                datamodels, report["attribution"] = found
        report = _clean(report)
        paths = write_report(report, folder, pool, datamodels, figures)
    return paths, report


REPORT_ORDER = ("report.md", "report.html", "report.json")  # published in this order: report.json, which readers open first, last


def write_report(report: dict, folder: Path, pool=None, datamodels: dict | None = None, figures: bool = True) -> list[Path]:
    """Every report file (report.json, .md, .html, the figures) written into a staging folder beside `folder`'s files and
    published as one set (record.publish_set): a failed or interrupted write leaves the previous report whole, and says
    so; figures of the previous report that this one does not draw are removed with it. The one place report files are
    written. `datamodels`: the sweep's datamodels result, whose files (datamodels.json, ...) join the set and whose figure
    the attribution section shows. Returns [report.json, report.md, report.html, figures...]."""
    from proxyscale import record
    from proxyscale.report import render

    def fail(exc: OSError) -> ReportError:
        where = f" ({exc.filename})" if exc.filename else ""
        return ReportError(f"report not written: {exc.strerror or exc}{where}; the previous report in {folder}, if any, is intact")

    with record.staged(folder, "report", fail) as stage:
        extra = {}
        if datamodels is not None:
            from proxyscale.report import attribution

            if stage / attribution.FIGURE in attribution.write(datamodels, stage):
                extra["attribution"] = (stage / attribution.FIGURE).read_bytes()
        render.write(report, stage, pool, extra, draw=figures)
        write_json(report, stage / "report.json")
    stale = [p.name for p in folder.glob("fig_*") if p.suffix in (".png", ".svg")]
    paths = record.publish_set(folder, stage, "report", list(REPORT_ORDER), remove=stale)
    return sorted(paths, key=lambda p: (p.name not in REPORT_ORDER, ["report.json", "report.md", "report.html"].index(p.name) if p.name in REPORT_ORDER else 0))
