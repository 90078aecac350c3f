"""<sweep>/manifest.jsonl (one line per submitted cell: its job, logs and grid fingerprint) and
<sweep>/submit.json, the grid's fixed settings: every identity key (what determines a cell's
result, see config.identity) whose value is the same for every cell of the submission, and the
keys that varied (swept). A later submit to the same sweep folder is refused when a key fixed in
both submissions has a different value (e.g. trainer.max_tokens): that is a different experiment
and belongs in another `sweep=NAME`. Adding values to a swept axis, or sweeping a key that used to
be fixed, is allowed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from proxyscale import config as C
from proxyscale import record
from proxyscale.launch import LaunchError

MANIFEST = "manifest.jsonl"
SUBMIT_INFO = "submit.json"


def read_manifest(sweep: Path) -> list[dict]:
    path = Path(sweep) / MANIFEST
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            if line.strip():
                rows.append(json.loads(line))
    return rows


def latest_entries(rows: list[dict]) -> dict[str, dict]:
    """run_id -> its most recent manifest line."""
    out: dict[str, dict] = {}
    for r in rows:
        out[r["run_id"]] = r
    return out


@contextlib.contextmanager
def locked(sweep: Path):
    import fcntl

    sweep.mkdir(parents=True, exist_ok=True)
    with open(sweep / ".manifest.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def append_manifest(sweep: Path, rows: list[dict]) -> None:
    """Add one submission's lines: the whole file is rewritten through a rename (atomic)."""
    path = Path(sweep) / MANIFEST
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    record.atomic_write_text(path, old + "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def grid_settings(cfgs) -> tuple[dict[str, Any], list[str]]:
    """(fixed, swept): identity keys with one value across the cells, and the keys that vary."""
    flat = [C.flatten(C.identity(c)) for c in cfgs]
    keys = sorted(set().union(*flat))
    fixed, swept = {}, []
    for k in keys:
        vals = {json.dumps(f.get(k), sort_keys=True) for f in flat}
        if len(vals) == 1:
            fixed[k] = flat[0].get(k)
        else:
            swept.append(k)
    return fixed, swept


def fingerprint(fixed: dict) -> str:
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:12]


def check_same_grid(sweep: Path, fixed: dict, swept: list[str]) -> None:
    """Raise LaunchError when the sweep folder holds a grid with other fixed settings."""
    path = Path(sweep) / SUBMIT_INFO
    if not path.exists():
        return
    old = json.loads(path.read_text())
    for k in sorted(set(old["fixed"]) & set(fixed)):
        if k in swept or k in old.get("swept", []) or k in {f"trainer.{p}" for p in C.PLACEMENT}:  # (earlier submissions stated where cells ran)
            continue
        if json.dumps(old["fixed"][k], sort_keys=True) != json.dumps(fixed[k], sort_keys=True):
            raise LaunchError(f"{sweep} holds a different grid: {k} was {old['fixed'][k]!r} there, now {fixed[k]!r} (submit it as another sweep=NAME)")


def save_grid_settings(sweep: Path, fixed: dict, swept: list[str]) -> None:
    path = Path(sweep) / SUBMIT_INFO
    if path.exists():
        old = json.loads(path.read_text())
        fixed = {k: v for k, v in old["fixed"].items() if k not in swept} | {k: v for k, v in fixed.items() if k not in old.get("swept", [])}
        swept = sorted(set(swept) | set(old.get("swept", [])))
    record.atomic_write_text(path, json.dumps({"fixed": fixed, "swept": swept, "fingerprint": fingerprint(fixed)}, indent=1, sort_keys=True))
