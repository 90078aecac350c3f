"""`proxyscale report --wandb`: the report as one W&B run in the sweep's group (job_type "report").

The run has a fixed id per sweep (`report_id`: "report-" + a hash of the sweep's name) and resumes it
(resume="allow"), so publishing again updates the one report run instead of adding another. It holds
the results table (one row per cell x eval set: results.parquet, else the records), the
proxy-vs-target comparisons and their flipped pairs from report.json as wandb.Table, every report
figure (the fig_<name>.png files render.write puts beside report.md) as wandb.Image under
figures/<name>, and in its summary the bottom line (`bottom_line`, one line each), the verdicts per
eval set (`verdict/<eval set>/<proxy>-><target>`: holds | inconclusive | fails) and headline figures
(decision accuracy, Spearman per proxy -> target and metric). report.json is read defensively: a
missing or null field leaves its cell empty instead of failing.

Same W&B settings as the cells (conf/logger/wandb.yaml, read from the sweep's config): offline by
default, files under <sweep>/wandb/ (synced by `proxyscale wandb-sync`); online only with
logger.mode=online and WANDB_API_KEY in the environment.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

FLIP_COLUMNS = ["metric", "proxy", "target", "proxy_lr", "a", "b", "proxy_a", "proxy_b", "target_a", "target_b", "proxy_prefers", "target_prefers"]
RESULT_COLUMNS = ["run_id", "status", "size", "params", "recipe", "lr", "seed", "eval_set", "loss", "tokens", "steps", "tokens_per_second"]


class PublishError(RuntimeError):
    """The report could not be published; the message is one line."""


def _cell(v: Any) -> Any:
    """A value a wandb.Table column can hold: scalars as they are, the rest as compact JSON."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return None if not math.isfinite(v) else v
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return _cell(v.item())
    except ImportError:  # pragma: no cover
        pass
    return json.dumps(v, default=str)


def _rows(items: list, columns: list[str]) -> list[list]:
    return [[_cell(it.get(c)) for c in columns] for it in items if isinstance(it, dict)]


def read_report(path: str | Path) -> dict:
    try:
        rep = json.loads(Path(path).read_text())
    except OSError as exc:
        raise PublishError(f"{path}: cannot read report.json ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise PublishError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(rep, dict):
        raise PublishError(f"{path}: report.json is not an object")
    return rep


def comparison_columns() -> list[str]:
    """The typed Comparison's W&B columns (analysis.types), registered statistics included, each statistic
    with an interval followed by its bounds (`<stat>_lo`, `<stat>_hi`), as the report's tables show them."""
    import dataclasses

    from proxyscale.analysis.types import Comparison, wandb_columns

    with_ci = {f.name[: -len("_ci")] for f in dataclasses.fields(Comparison) if f.name.endswith("_ci")}
    return [x for c in wandb_columns() for x in ([c, f"{c}_lo", f"{c}_hi"] if c in with_ci else [c])]


def comparison_rows(rep: dict) -> list[list]:
    comps = [c for c in rep.get("comparisons") or [] if isinstance(c, dict)] if isinstance(rep.get("comparisons"), list) else []
    bounds = []
    for c in comps:
        row = dict(c)
        for key, ci in c.items():
            if key.endswith("_ci") and isinstance(ci, list) and len(ci) == 2:
                row[key[:-3] + "_lo"], row[key[:-3] + "_hi"] = ci
        bounds.append(row)
    return _rows(bounds, comparison_columns())


def flip_rows(rep: dict) -> list[list]:
    rows = []
    for c in rep.get("comparisons") or []:
        if not isinstance(c, dict):
            continue
        for f in c.get("flips") or []:
            if isinstance(f, dict):
                row = {**{k: c.get(k) for k in ("metric", "proxy", "target", "proxy_lr")}, **f}
                rows.append([_cell(row.get(k)) for k in FLIP_COLUMNS])
    return rows


def headline(rep: dict) -> dict[str, Any]:
    """Summary values: decision accuracy and Spearman per (metric, proxy -> target), for the entries
    without a per-LR split (or the LR-tuned ones), plus counts."""
    out: dict[str, Any] = {}
    comps = [c for c in rep.get("comparisons") or [] if isinstance(c, dict)]
    for c in comps:
        if c.get("proxy_lr") not in (None, "tuned") or c.get("target_mode") not in (None, "tuned"):
            continue
        key = f"{c.get('metric')}/{c.get('proxy')}->{c.get('target')}"
        for fig in ("decision_accuracy", "spearman", "kendall", "pearson"):
            v = _cell(c.get(fig))
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"{key}/{fig}"] = v
        if isinstance(c.get("n_flips"), int):
            out[f"{key}/n_flips"] = c["n_flips"]
    accs = [v for k, v in out.items() if k.endswith("/decision_accuracy")]
    if accs:
        out["decision_accuracy/mean"] = sum(accs) / len(accs)
        out["decision_accuracy/min"] = min(accs)
    out["n_comparisons"] = len(comps)
    counts = rep.get("status_counts")
    if isinstance(counts, dict):
        for status in ("completed", "diverged", "failed"):
            out[f"cells/{status}"] = sum(int(c.get(status, 0) or 0) for c in counts.values() if isinstance(c, dict))
    summ = rep.get("summary")
    if isinstance(summ, dict) and summ.get("target") is not None:
        out["target"] = str(summ["target"])
    return out


def report_id(sweep: str) -> str:
    """The report run's W&B id: fixed per sweep, so a rerun of `proxyscale report --wandb` resumes it."""
    from proxyscale.tracking.wandb import sweep_hash

    return f"report-{sweep_hash(sweep)}"


def verdicts(rep: dict) -> dict[str, Any]:
    """Summary values from report.json's summary: the bottom line and each eval set's verdict per proxy -> target."""
    out: dict[str, Any] = {}
    summ = rep.get("summary")
    if not isinstance(summ, dict):
        return out
    lines = [str(ln) for ln in summ.get("bottom_line") or [] if ln is not None]
    if lines:
        out["bottom_line"] = "\n".join(lines)
    for pm in summ.get("per_metric") or []:
        if not isinstance(pm, dict):
            continue
        for ln in pm.get("lines") or []:
            if isinstance(ln, dict) and ln.get("verdict"):
                out[f"verdict/{pm.get('metric')}/{ln.get('proxy')}->{ln.get('target')}"] = str(ln["verdict"])
                if ln.get("reason"):
                    out[f"verdict/{pm.get('metric')}/{ln.get('proxy')}->{ln.get('target')}/reason"] = str(ln["reason"])
    return out


def figure_files(out: Path) -> list[Path]:
    """The report's figures: the fig_<name>.png files beside report.md."""
    return sorted(p for p in Path(out).glob("fig_*.png") if p.is_file() and p.stat().st_size > 0)


def result_rows(sweep_dir: str | Path | None) -> list[list]:
    """One row per cell x eval set: results.parquet when collected, else straight from the records."""
    if not sweep_dir:
        return []
    root = Path(sweep_dir)
    parquet = root / "results.parquet"
    if parquet.exists():
        try:
            import pandas as pd

            df = pd.read_parquet(parquet)
            return [[_cell(r.get(c)) for c in RESULT_COLUMNS] for r in df.to_dict("records")]
        except Exception:  # an unreadable table falls back to the records
            pass
    from proxyscale import record

    rows = []
    for path in sorted(root.glob(f"*/{record.RESULT}")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        losses = rec.get("final_loss") or {None: None}
        for name, loss in losses.items():
            rows.append([_cell({**rec, "eval_set": name, "loss": loss}.get(c)) for c in RESULT_COLUMNS])
    return rows


def _sweep_logger(sweep_dir: Path | None) -> dict:
    """The sweep's logger settings, from any cell's config.yaml (project, entity, mode, dir, group)."""
    if sweep_dir is None:
        return {}
    from omegaconf import OmegaConf

    for cfg_path in sorted(sweep_dir.glob("*/config.yaml")):
        try:
            cfg = OmegaConf.to_container(OmegaConf.load(cfg_path))
        except Exception:
            continue
        lg = cfg.get("logger") or {}
        if lg.get("kind") == "wandb":
            return {**lg, "sweep": cfg.get("sweep")}
    return {}


def publish(
    sweep_dir: str | Path | None,
    report_json_path: str | Path,
    out_dir: str | Path,
    *,
    project: str | None = None,
    entity: str | None = None,
    mode: str | None = None,
) -> str:
    """Log the report as a run with job_type "report" in the sweep's group; returns the run's local
    folder (offline) or URL (online). Raises PublishError with a one-line message."""
    import os

    rep = read_report(report_json_path)
    out = Path(out_dir)
    root = Path(sweep_dir) if sweep_dir else None
    lg = _sweep_logger(root)
    sweep = lg.get("sweep") or (root.name if root else out.name)
    mode = mode or lg.get("mode") or "offline"
    if os.environ.get("WANDB_MODE") == "disabled":
        mode = "disabled"
    if mode not in ("offline", "online", "disabled"):
        raise PublishError(f"W&B mode must be offline, online or disabled, got {mode!r}")
    if mode == "online":
        from proxyscale.tracking.wandb import _has_wandb_login

        if not _has_wandb_login():
            raise PublishError("publishing online needs WANDB_API_KEY in the environment (or `wandb login`)")
    wandb_root = Path(lg["dir"]) if lg.get("dir") else (root if root is not None else out)
    wandb_root.mkdir(parents=True, exist_ok=True)

    import wandb

    from proxyscale.tracking.wandb import finish_stale_run

    finish_stale_run()
    run = wandb.init(
        project=project or lg.get("project") or "proxyscale",
        entity=entity or lg.get("entity"),
        id=report_id(sweep),
        resume="allow",
        group=lg.get("group") or sweep,
        job_type="report",
        name=f"{sweep}-report",
        dir=str(wandb_root),
        mode=mode,
        tags=["report"] + [str(t) for t in lg.get("tags") or []],
        config={
            "sweep": sweep,
            "report_json": str(report_json_path),
            "schema_version": rep.get("schema_version"),
            "direction": rep.get("direction"),
            "sizes": rep.get("sizes"),
            "recipes": rep.get("recipes"),
            "metrics": rep.get("metrics"),
        },
        settings=wandb.Settings(quiet=True),
    )
    ok = False
    try:
        payload: dict[str, Any] = {}
        results = result_rows(root)
        if results:
            payload["results"] = wandb.Table(columns=RESULT_COLUMNS, data=results)
        payload["comparisons"] = wandb.Table(columns=comparison_columns(), data=comparison_rows(rep))
        payload["flips"] = wandb.Table(columns=FLIP_COLUMNS, data=flip_rows(rep))
        for png in figure_files(out):
            payload[f"figures/{png.stem.removeprefix('fig_')}"] = wandb.Image(str(png), caption=png.name)
        run.log(payload)
        for k, v in {**headline(rep), **verdicts(rep)}.items():
            run.summary[k] = v
        ok = True
    finally:
        where = run.dir if mode == "offline" else (getattr(run, "url", None) or run.dir)
        run.finish(exit_code=0 if ok else 1)
    return str(Path(where).parent) if mode == "offline" else str(where)
