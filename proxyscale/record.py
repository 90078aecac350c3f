"""The one record schema: the job writes it; the collector, the trackers and W&B publishing read it
(through `parse`), and none of them re-reads a cell's config.

`<sweep_dir>/<run_id>/result.json` is written once per cell outcome, atomically (temp file +
rename), so a reader sees either the previous complete record or the new one, never a torn file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

SCHEMA_VERSION = 1
RESULT = "result.json"
EXAMPLES = "examples.parquet"  # per cell: eval_set, example, loss (+ metric, value) of every eval window and task item (issue 16)
SNIPPETS = "eval_snippets"  # per sweep: a folder of <eval set>-<eval cache key>-L<seq_len>.json, each example's first characters
CKPT_RUN_ID = "proxyscale_run_id"  # the key of a cell's checkpoint that names the cell it belongs to
CKPT_PLACEMENT = "proxyscale_placement"  # the key of a cell's checkpoint that says where it was written (Record.placements' fields)
GRID = "grid.json"  # per sweep: every cell the planner asked for, and the stated standard LR
STATUSES = ("completed", "diverged", "failed")


@dataclass
class Record:
    run_id: str
    sweep: str
    status: str  # completed | diverged | failed
    size: str  # model registry name
    params: int
    recipe: str
    lr: float
    seed: int
    tokens: int  # tokens trained on
    steps: int
    final_loss: dict[str, float]  # eval set -> loss (nats/token) at the last step
    eval_curve: list[dict]  # [{step, tokens, loss: {lm eval set: loss}, metrics: {task set: {metric: value}} (with task sets)}]
    train_curve: list[dict]  # [{step, loss}]
    wall_seconds: float
    train_seconds: float
    tokens_per_second: float
    flops_per_token: float
    tokenizer: str
    config: dict[str, Any]  # the resolved cell config
    versions: dict[str, str]
    error: Optional[str] = None  # diverged: why; failed: the traceback
    requeues: int = 0
    eval_seconds: float = 0.0  # time in eval passes (train_seconds: in training batches)
    eval_sets: list[str] = field(default_factory=list)  # eval set names, in config order
    cache_keys: dict[str, Any] = field(default_factory=dict)  # {pool: key, eval: {set: key}} of the token caches used
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # eval set -> {unigram, bigram}: count models of the pool (nats/token)
    tracking: dict[str, Any] = field(default_factory=dict)  # tracker settings: {kind, ...; wandb: project, entity, group, mode, dir, id}
    final_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task set -> {acc, prob_correct, ll_norm} at the last step (higher is better)
    examples_file: Optional[str] = None  # completed cells: the per-example losses beside the record (EXAMPLES, relative to the run dir)
    # Where the cell ran, one entry per run of it (a cell resumed on another process count has one per count):
    # [{step (where that run started), devices, num_nodes, world_size, strategy (single | ddp | fsdp), threads (torch's, per process)}].
    # Information only: not part of its identity.
    placements: list[dict] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)


class RecordError(ValueError):
    """A result.json that cannot be read as a record (corrupt, truncated, or another schema)."""


def umask() -> int:
    """The process umask (read without a lasting change)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_name(path: Path) -> Path:
    """A temp file beside `path`, unique per writer (pid + random), so concurrent writers never share one."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: some filesystems refuse a directory fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file (unique per writer, the process umask's permissions like any other file) + fsync +
    rename: a reader sees the old file or the new one; on any error (ENOSPC, EROFS) no temp is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; records are as readable as the other files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write(run_dir: Path, rec: Record) -> Path:
    path = Path(run_dir) / RESULT
    atomic_write_text(path, json.dumps(asdict(rec), indent=1, sort_keys=True))
    return path


def read(run_dir: Path) -> Record:
    path = Path(run_dir) / RESULT
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise RecordError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    return parse(text, path)


def parse(text: bytes | str, path: Path | str) -> Record:
    """A record from the text of its result.json (`path` names it in errors)."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        got = raw.get("schema_version") if isinstance(raw, dict) else type(raw).__name__
        raise RecordError(f"{path}: schema version {got!r}, expected {SCHEMA_VERSION}")
    missing = [name for name in _REQUIRED if name not in raw]
    if missing or raw.get("status") not in STATUSES:
        raise RecordError(f"{path}: missing fields {missing} or bad status {raw.get('status')!r}")
    return Record(**{k: v for k, v in raw.items() if k in _NAMES})


_NAMES = frozenset(f.name for f in fields(Record))
_REQUIRED = [f.name for f in fields(Record) if f.default is MISSING and f.default_factory is MISSING]


def is_completed(run_dir: Path) -> bool:
    """Completed or diverged cells are final: reruns skip them. Failed cells are retried."""
    try:
        return read(run_dir).status in ("completed", "diverged")
    except RecordError:
        return False


# ---- a set of files replaced as one (report, collect's tables, mixfit's pages) -----------------

COMMIT = "COMMIT"  # in a staging folder: the decision to publish it (names to move in, in order, and names to remove)


class SetWriteError(OSError):
    """A set of output files that could not be staged: the previous set in the folder is untouched."""


def _stage_dirs(folder: Path, tag: str) -> list[Path]:
    return sorted(folder.glob(f".{tag}.tmp-*")) if folder.is_dir() else []


def recover_sets(folder: Path, tag: str) -> list[str]:
    """Finish or discard what an interrupted writer of `tag` files left in `folder`: a staging folder with its COMMIT is
    published (the writer had decided; it died between renames), one without is removed when its writer is gone (the
    previous set was never touched). Returns one line per folder handled, for the caller to log."""
    import shutil

    lines: list[str] = []
    if not _stage_dirs(Path(folder), tag):
        return lines
    with _set_lock(Path(folder), tag):
        for stage in _stage_dirs(Path(folder), tag):
            try:
                plan = json.loads((stage / COMMIT).read_text())
            except (OSError, ValueError):
                plan = None
            if plan is not None:
                _move_in(Path(folder), stage, plan)
                lines.append(f"{folder}: finished publishing the {tag} files that an interrupted writer had committed")
                continue
            try:
                pid = int(stage.name.split("-")[-2])
            except (IndexError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                continue  # another writer is staging now
            shutil.rmtree(stage, ignore_errors=True)
            lines.append(f"{folder}: an interrupted {tag} write was discarded; the previous {tag} files there are intact")
    return lines


@contextlib.contextmanager
def _set_lock(folder: Path, tag: str):
    """One publisher of `tag` files in `folder` at a time (concurrent reports each leave a whole set; the last one wins)."""
    import fcntl

    with open(folder / f".{tag}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stage_dir(folder: Path, tag: str) -> Path:
    """A new staging folder beside the files it will replace (same filesystem: publishing is renames)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = folder / f".{tag}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        stage.mkdir()
    except OSError as exc:
        raise SetWriteError(exc.errno, f"cannot write in {folder} ({exc.strerror})") from None
    return stage


@contextlib.contextmanager
def staged(folder: Path, tag: str, fail):
    """A staging folder for publish_set, after finishing or discarding an interrupted writer's set (said as warnings).
    An OSError making it or writing into it becomes `fail(exc)` (the caller's one-line error saying the previous set is
    intact); on any failure the staging folder is removed."""
    import logging
    import shutil

    for line in recover_sets(folder, tag):
        logging.getLogger("proxyscale").warning(line)
    try:
        stage = stage_dir(folder, tag)
    except SetWriteError as exc:
        raise fail(exc) from None
    try:
        yield stage
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise fail(exc) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def publish_set(folder: Path, stage: Path, tag: str, order: list[str], remove: list[str] = ()) -> list[Path]:
    """Replace files in `folder` by the ones staged in `stage` as one step: every staged file is fsynced, a COMMIT naming
    them (in `order`: the file readers open first goes last) and the old files to `remove` is written, then, with
    SIGINT/SIGTERM/SIGHUP held back, the files are renamed in and the stale ones removed. A writer killed before COMMIT
    leaves the old set whole; one killed after it is finished by recover_sets on the next run. Returns the new paths."""
    import signal

    folder, stage = Path(folder), Path(stage)
    names = [n for n in order if (stage / n).exists()]
    names = [p.name for p in sorted(stage.iterdir()) if p.name not in names and p.name != COMMIT] + names
    for n in names:
        with open(stage / n, "rb") as f:
            os.fsync(f.fileno())
    plan = {"files": names, "remove": sorted(set(remove) - set(names))}
    atomic_write_text(stage / COMMIT, json.dumps(plan))
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    with _set_lock(folder, tag):
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            _move_in(folder, stage, plan)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return [folder / n for n in names]


def _move_in(folder: Path, stage: Path, plan: dict) -> None:
    import shutil

    for n in plan["files"]:
        if (stage / n).exists():  # a resumed publish: some were moved already
            os.replace(stage / n, folder / n)
    for n in plan["remove"]:
        with contextlib.suppress(FileNotFoundError):
            (folder / n).unlink()
    fsync_dir(folder)
    shutil.rmtree(stage, ignore_errors=True)
