"""`proxyscale report`: a sweep folder or an external CSV -> report.json, report.md, report.html.

report.json schema (NaN is written as null; every figure that cannot be computed is null with a
reason string next to it):

  schema_version: 1
  source: {kind: "sweep" | "csv", path}
  direction: "lower" | "higher"          which way is better, for every metric
  metrics, sizes (smallest first), recipes: lists of names; size_params: {size: params} (when known)
  status_counts: {size: {completed|diverged|failed: n}}   (sweeps; only completed cells are analysed)
  n_boot, n_boot_lr, bootstrap_seed      seed-noise replicates widening the intervals (size pairs / per-LR
                                         entries) and recipe resamples of the baseline differences
  directions: {metric: "lower" | "higher"}; direction: the common one or "mixed"
  tie_rule: values within 1e-9 x the largest |value| of a comparison are tied
  comparisons: [ one object per (metric, proxy, target) with proxy smaller than target, and for
      sweeps with an LR grid also per proxy LR and target mode. Keys and their meaning are the fields
      of proxyscale.analysis.types.Comparison (types.schema_doc() prints them), plus registered
      statistics flattened to top-level keys; per-LR entries add undertrained: [{recipe, seed, loss, bigram}] ]
  seed_noise: [{metric, size, floor, pooled_sd, n_seed_pairs, n_pairs}]  floor = fraction of recipe pairs two
      seeds of the same size and LR order differently
  reduced_lr: {available, reason, standard_lr, standard_lr_source (--standard-lr or grid.json; never guessed),
      fixed_available, fixed_reason, assumption, entries: [{metric, proxy, target, standard_lr, proxy_best_lr,
      target_own_best_lr, target_best_lr: {recipe: lr}, curve: [{proxy_lr, target_mode, spearman,
      decision_accuracy, decision_accuracy_ci, n_recipes, n_undertrained, reason}], best_proxy_lr_tuned,
      best_proxy_lr_fixed, best_tuned, best_fixed, standard_tuned, standard_fixed, reason_fixed, notes}]}
      (undertrained proxy LRs - any cell worse than the bigram baseline - are never the best pick)
  baselines: {available, reason, smoothing, units, rule, values: [{recipe, metric, unigram, bigram}] (from
      results.parquet), comparisons: [same keys as above, proxy = "unigram" | "bigram"],
      vs_proxies: [{metric, target, bigram_decision_accuracy, unigram_decision_accuracy, best_proxy,
      best_proxy_decision_accuracy, difference, difference_ci, outcome: beats|indistinguishable|beaten}],
      statements: [str], warnings: [str]}
  early_signal: {available, reason, target, note, points: [{metric, proxy, target, fraction, step,
      spearman, decision_accuracy, n_recipes, reason}]}
  warnings: [str]
  summary: {target, verdict_rule, bottom_line: [str] (3-6 lines, also atop report.md/html and the terminal),
      per_metric: [{metric, direction, target, lines: [{proxy, target, verdict: holds|fails|inconclusive, reason,
      sentence, decision_accuracy, decision_accuracy_ci, spearman, p_value}]}]}
  notes: [str]
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy imports wait until a report is built: `import build` stays cheap
    import pandas as pd

SCHEMA_VERSION = 1


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


def _needs_collect(root: Path) -> bool:
    from proxyscale import collect, record

    res = root / collect.RESULTS
    if not res.exists():
        return True
    newest = max((p.stat().st_mtime for p in root.glob(f"*/{record.RESULT}")), default=0.0)
    return newest > res.stat().st_mtime


def _load_sweep(root: Path) -> "tuple[pd.DataFrame, pd.DataFrame | None]":
    import pandas as pd

    from proxyscale import collect

    if not root.is_dir():
        raise ReportError(f"no sweep folder at {root}")
    if _needs_collect(root):
        try:
            df, _ = collect.collect(root)
        except collect.CollectError as exc:
            raise ReportError(str(exc)) from None
        collect.write(df, root)
    results = pd.read_parquet(root / collect.RESULTS)
    curves_path = root / collect.CURVES
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
        if not flag > 0:
            raise ReportError(f"--standard-lr must be positive, got {flag:g}")
        return float(flag), "--standard-lr on the command line"
    return _grid_standard_lr(root) if root is not None else (None, None)


def build_sweep(sweep_dir: str, *, n_boot: int = 1000, standard_lr: float | None = None) -> dict:
    """A sweep's report. Its metrics are eval losses, lower is better."""
    import pandas as pd

    from proxyscale import analysis

    root = Path(sweep_dir)
    results, curves = _load_sweep(root)
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
        done = set(results.loc[results["status"] == "completed", "run_id"])
        cv = curves[curves["run_id"].isin(done)]
        long_curves = pd.DataFrame({"recipe": cv["recipe"].astype(str), "size": cv["size"].astype(str), "metric": cv["eval_set"].astype(str),
                                    "value": cv["loss"].astype(float), "lr": cv["lr"].astype(float), "seed": cv["seed"].astype(float),
                                    "step": cv["step"].astype(float)})
    rep = analysis.analyze(df, sizes, higher_is_better=False, n_boot=n_boot, baselines=base or None,
                           baseline_reason=reason, curves=long_curves, standard_lr=lr, standard_lr_source=source)
    n_bad = sum(n for c in counts.values() for s, n in c.items() if s != "completed")
    notes = [f"{n_bad} diverged/failed cell(s) excluded from every figure." if n_bad else "every cell completed."]
    return {"schema_version": SCHEMA_VERSION, "source": {"kind": "sweep", "path": str(root)},
            "size_params": {s: int(p) for s, p in df.groupby("size")["params"].first().items()},
            "status_counts": counts, "notes": notes, **rep}


def build_csv(path: str, *, higher_is_better: bool | list[str] | None = None, n_boot: int = 1000, standard_lr: float | None = None,
              allow_short_runs: bool = False) -> dict:
    """An external CSV's report; higher_is_better: True (every metric), metric names, or None (a `direction` column or lower)."""
    from proxyscale import analysis

    try:
        df, sizes, directions, notes = analysis.prepare_csv(path, higher_is_better=higher_is_better, allow_short_runs=allow_short_runs)
    except analysis.AnalysisError as exc:
        raise ReportError(str(exc)) from None
    notes = list(notes)
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
    rep = analysis.analyze(df, sizes, higher_is_better=directions, n_boot=n_boot, curves=curves, standard_lr=lr, standard_lr_source=source,
                           baseline_reason="external results: no count-model baselines")
    size_params = df.groupby("size")["params"].first().to_dict() if "params" in df.columns else {s: analysis.parse_size(s) for s in sizes}
    return {"schema_version": SCHEMA_VERSION, "source": {"kind": "csv", "path": str(path)}, "size_params": size_params,
            "status_counts": {}, "notes": notes, **rep}


def write_json(report: dict, path: Path) -> Path:
    path.write_text(json.dumps(_clean(report), indent=1, allow_nan=False))
    return path


def run(sweep_dir: str | None = None, csv: str | None = None, out: str | None = None, higher_is_better: bool | list[str] | None = None,
        n_boot: int = 1000, standard_lr: float | None = None, allow_short_runs: bool = False) -> tuple[list[Path], dict]:
    """Build the report; returns (the written paths [report.json, report.md, report.html], the report)."""
    if bool(sweep_dir) == bool(csv):
        raise ReportError("give either a sweep folder or --from-csv PATH")
    if csv:
        if not out:
            raise ReportError("--from-csv needs --out DIR")
        report = build_csv(csv, higher_is_better=higher_is_better, n_boot=n_boot, standard_lr=standard_lr, allow_short_runs=allow_short_runs)
    else:
        if higher_is_better:
            raise ReportError("a sweep's metrics are eval losses (lower is better); --higher-is-better is for --from-csv results")
        if allow_short_runs:
            raise ReportError("--allow-short-runs is for --from-csv results; a sweep's records say where each cell stopped")
        report = build_sweep(sweep_dir, n_boot=n_boot, standard_lr=standard_lr)
    folder = Path(out or sweep_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create output folder {folder}: {exc.strerror}") from None
    report = _clean(report)
    paths = [write_json(report, folder / "report.json")]
    from proxyscale.report import render

    paths += render.write(report, folder)
    return paths, report
