"""The processes of a multi-process cell on one machine.

Rank 0 is the process that holds the cell (its lock, its record); it starts ranks 1..W-1 itself as
`python -m proxyscale.job RUN_DIR RANK ...` (run.rank_main), each reading the config rank 0 wrote to the run
folder, and sets the variables of a process group started from outside (MASTER_ADDR/PORT,
WORLD_SIZE, NODE_RANK, LOCAL_RANK) in its own environment for the cell's duration. Lightning then
treats every rank as launched externally (LightningEnvironment) and wires them into one process
group; nothing re-runs the command line (a re-run sweep, a joblib or submitit worker would not run
the same cell). Under srun the scheduler starts the ranks instead and none of this is used.

A rank > 0 holds no lock and writes no record, log, cache or tracker: it trains, evaluates its share
and leaves; if it raises, it leaves its traceback in RUN_DIR/.rank-N.error for rank 0's record and
exits 1. It dies with rank 0 (a watchdog), and exits 128 + signal on SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

GROUP_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK")
ERROR_FILE = ".rank-{rank}.error"
GRACE_S = 30.0  # how long rank 0 waits for the other ranks to end after its own training ended


class RankError(RuntimeError):
    """Another rank of the cell failed: its traceback, or how its process ended."""


def die_with_parent(poll_s: float = 0.5) -> None:
    """SIGKILL this process once its parent is gone (no orphan outlives the process that started it)."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="proxyscale-parent-watchdog", daemon=True).start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def errors(out: Path) -> list[str]:
    """The tracebacks the other ranks left in the run folder, rank order."""
    files = sorted(out.glob(ERROR_FILE.format(rank="*")), key=lambda p: int(p.name.split("-")[1].split(".")[0]))
    return [f"rank {p.name.split('-')[1].split('.')[0]}:\n{p.read_text()}" for p in files]


@contextlib.contextmanager
def local_group(out: Path, world: int, threads: int, resume: str | None):
    """Start ranks 1..world-1 of the cell in `out` (its config.yaml written) and make this process rank 0 of
    their process group while the block runs. On the way out: the other ranks get GRACE_S to end (then
    SIGTERM, then SIGKILL), the environment is restored and the process group destroyed, so the next cell
    of this process starts its own. A failure of rank 0 that another rank caused names that rank."""
    for p in out.glob(ERROR_FILE.format(rank="*")):
        p.unlink()
    saved = {k: os.environ.get(k) for k in GROUP_ENV}
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(world), NODE_RANK="0", LOCAL_RANK="0")
    procs = []
    try:
        for rank in range(1, world):
            cmd = [sys.executable, "-m", "proxyscale.job", str(out), str(rank), str(threads), resume or ""]
            procs.append(subprocess.Popen(cmd, env={**os.environ, "LOCAL_RANK": str(rank)}, stdin=subprocess.DEVNULL))
        try:
            yield procs
        except Exception as exc:
            _end(procs, 5.0)
            why = errors(out) or [f"rank {r} ended with {_how(p.returncode)}" for r, p in enumerate(procs, 1) if p.returncode]
            if why:
                raise RankError("\n".join(why)) from exc
            raise
        _end(procs, GRACE_S)
        bad = [f"rank {r} ended with {_how(p.returncode)}" for r, p in enumerate(procs, 1) if p.returncode]
        if bad:
            raise RankError("; ".join(errors(out) or bad))
    finally:
        _end(procs, 0.0)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _how(code: int | None) -> str:
    return f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"


def _end(procs: list[subprocess.Popen], grace: float) -> None:
    """Wait up to `grace` seconds for the processes, then SIGTERM the rest, then SIGKILL."""
    deadline = time.monotonic() + grace
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            if p.poll() is None and sig is not None:
                p.send_signal(sig)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
        if all(p.poll() is not None for p in procs):
            return
        deadline = time.monotonic() + 5.0
