"""`proxyscale status`: one row per cell of a sweep, records merged with the scheduler's states."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from proxyscale import record
from proxyscale.launch import slurm
from proxyscale.launch.manifest import latest_entries, read_manifest

STATES = ("pending", "running", "interrupted", "requeued", "completed", "diverged", "failed", "cancelled")
ACTIVE = slurm.ACTIVE


def cell_states(sweep: Path, scheduler: bool = True) -> tuple[list[dict], str | None]:
    """One row per cell of the sweep: run_id, state, job, error (path), log. Plus a note."""
    sweep = Path(sweep)
    known: dict[str, Any] = {}
    gpath = sweep / record.GRID
    note = None
    if gpath.exists():
        try:
            cells = json.loads(gpath.read_text())["cells"]
            if not isinstance(cells, dict):
                raise TypeError(f"cells is a {type(cells).__name__}")
            known.update(cells)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            note = f"{gpath} is unreadable ({type(exc).__name__}); cells come from records and manifest.jsonl only (rerun the sweep to rebuild it)"
    entries = latest_entries(read_manifest(sweep))
    for rid, e in entries.items():
        known.setdefault(rid, e.get("overrides", []))
    for d in sweep.iterdir() if sweep.exists() else []:
        if (d / record.RESULT).exists() or (d / "config.yaml").exists():  # a record, or a cell that started
            known.setdefault(d.name, [])
    live = None
    if scheduler and entries:
        live = slurm.states([e["job_id"] for e in entries.values()])
        if live is None:
            note = "; ".join(filter(None, [note, "scheduler not reachable (no sacct): states of unfinished cells come from records only"]))
    held = _held_locks()
    rows = []
    for rid in sorted(known):
        d = sweep / rid
        e = entries.get(rid)
        row = {"run_id": rid, "job": e["job_id"] if e else "", "error": "", "log": ""}
        try:
            rec = record.read(d)
        except record.RecordError:
            rec = None
        sub_t = _parse_time(e["submitted"]) if e else None
        rec_t = (d / record.RESULT).stat().st_mtime if rec else None
        sched = live.get(e["job_id"]) if (live is not None and e) else None
        state_s = sched["state"] if sched else ""
        resubmitted_after_fail = rec is not None and rec.status == "failed" and sub_t is not None and rec_t is not None and sub_t > rec_t - 1
        if rec is not None and rec.status in ("completed", "diverged"):
            state = rec.status
            if rec.status == "diverged":  # why it stopped, where the record is
                row["error"] = f"{_last_line(rec.error)} ({d / record.RESULT})"
        elif rec is not None and rec.status == "failed" and not (resubmitted_after_fail and ((live is not None and sched is None) or state_s in ACTIVE)):
            state = "failed"
            row["error"] = f"{_last_line(rec.error)} ({d / record.RESULT})"
        elif sched is None and not e:  # a local cell: its flock says whether a process runs it now
            started = (d / "config.yaml").exists()
            lock = d / ".lock"
            running = lock.exists() and (lock.stat().st_ino in held if held is not None else _local_sweep_alive(sweep))
            state = "running" if running else "interrupted" if started else "pending"
            if state == "interrupted":
                row["error"] = "started, no record and no process runs it (stopped or killed): a rerun resumes it"
        elif sched is None:  # not submitted, sacct lagging a fresh submission, or no sacct here
            started = (d / "config.yaml").exists()
            state = "pending" if not (e and live is None and started) else "running"
        elif state_s.startswith("CANCELLED"):
            state = "cancelled"
        elif state_s in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"):
            state = "requeued" if sched["requeued"] or state_s.startswith("REQUEUE") else "pending"
        elif state_s in ACTIVE:
            cfg_path = d / "config.yaml"
            started = cfg_path.exists() and (sub_t is None or cfg_path.stat().st_mtime >= sub_t - 1)
            state = ("requeued" if sched["requeued"] else "running") if started else "pending"
        else:  # the task ended (COMPLETED/FAILED/TIMEOUT/OUT_OF_MEMORY/NODE_FAIL) without a final record
            state = "failed"
            row["error"] = f"job {e['job_id']} ended {state_s} without a record for this cell"
        if e and state in ("failed", "cancelled", "requeued", "running"):
            row["log"] = f"{e.get('stdout', '')} {e.get('stderr', '')}".strip()
        row["state"] = state
        row["scheduler"] = state_s
        row["requeues"] = rec.requeues if rec is not None else 0  # times the cell resumed from its checkpoint
        row["attempts"] = [{"state": s, "nodes": n} for s, n in sched["attempts"]] if sched else []
        rows.append(row)
    return rows, note


def _held_locks() -> set[int] | None:
    """Inodes of the files some process holds a lock on (/proc/locks; None where there is none): a local cell's run
    folder has a .lock its process holds while it trains, released by the OS when it dies."""
    try:
        text = open("/proc/locks").read()
    except OSError:
        return None
    out = set()
    for line in text.splitlines():
        for field in line.split():
            if field.count(":") == 2:
                try:
                    out.add(int(field.rsplit(":", 1)[1]))
                except ValueError:
                    pass
                break
    return out


def _local_sweep_alive(sweep: Path) -> bool:
    """Without /proc/locks: whether a local sweep on this folder is alive (its .progress-<pid>.jsonl names the pid)."""
    import os

    for p in sweep.glob(".progress-*.jsonl"):
        try:
            os.kill(int(p.stem.split("-")[-1].split(".")[0]), 0)
            return True
        except (ValueError, ProcessLookupError):
            continue
        except PermissionError:
            return True
    return False


def _parse_time(s: str) -> float | None:
    try:
        return _dt.datetime.fromisoformat(s).timestamp()
    except (TypeError, ValueError):
        return None


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:120] if lines else "?"


def status_table(rows: list[dict], note: str | None = None) -> str:
    order = {s: i for i, s in enumerate(("failed", "cancelled", "interrupted", "running", "requeued", "pending", "diverged", "completed"))}
    rows = sorted(rows, key=lambda r: (order.get(r["state"], 99), r["run_id"]))
    head = ("cell", "state", "job")
    w = [max([len(head[0])] + [len(r["run_id"]) for r in rows]), max(len(s) for s in STATES), max([3] + [len(r["job"]) for r in rows])]
    lines = [f"{head[0]:<{w[0]}}  {head[1]:<{w[1]}}  {head[2]:<{w[2]}}  details"]
    for r in rows:
        label = {"diverged": "why", "interrupted": "note"}.get(r["state"], "error")
        detail = "  ".join(x for x in (_story(r), r["error"] and f"{label}: {r['error']}", r["log"] and f"log: {r['log']}") if x)
        lines.append(f"{r['run_id']:<{w[0]}}  {r['state']:<{w[1]}}  {r['job'] or '-':<{w[2]}}  {detail}".rstrip())
    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    if note:
        lines.append(f"note: {note}")
    lines.append(f"{len(rows)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


def _story(row: dict) -> str:
    """How a cell that was requeued got where it is: each run of its task (state on nodes), then how
    many times the cell resumed from its checkpoint; empty for a cell that ran once."""
    runs = row.get("attempts") or []
    if len(runs) < 2 and not row.get("requeues"):
        return ""
    parts = [" -> ".join(f"{a['state']} on {a['nodes']}" if a["nodes"] else a["state"] for a in runs)] if len(runs) > 1 else []
    if row.get("requeues"):
        parts.append(f"resumed from its checkpoint {row['requeues']}x")
    return "runs: " + ", ".join(parts) if len(runs) > 1 else parts[0]


def counts(rows: list[dict]) -> dict[str, int]:
    return {s: sum(r["state"] == s for r in rows) for s in STATES}
