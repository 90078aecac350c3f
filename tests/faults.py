"""Fault-injection fixtures shared by the reliability tests: a real full disk (tmpfs) and a
read-only folder (bind mount), skipped where this process may not mount."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "16m"):
    """`folder` on a small tmpfs (empty): fill it with fill() to make the next write fail with ENOSPC."""
    folder.mkdir(parents=True, exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)):
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> None:
    """Write a filler file in `folder` until its filesystem is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def full_disk(folder: Path, size: str = "64k"):
    """`folder` on a tiny tmpfs, filled up: every write in it fails with ENOSPC."""
    with small_disk(folder, size) as f:
        fill(f)
        yield f


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` bind-mounted read-only over itself: every write in it fails with EROFS."""
    if not (_mount("--bind", str(folder), str(folder)) and _mount("-o", "remount,bind,ro", str(folder))):
        subprocess.run(["umount", str(folder)], capture_output=True)
        pytest.skip("cannot bind-mount read-only here (not root?)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (from /proc), so a test can check none outlives its parent."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for task in os.listdir(f"/proc/{p}/task") if os.path.exists(f"/proc/{p}/task") else []:
            try:
                kids = [int(k) for k in open(f"/proc/{p}/task/{task}/children").read().split()]
            except OSError:
                continue
            out.update(kids)
            todo += kids
    return out


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def survivors(pids, within_s: float) -> list[int]:
    """The processes of `pids` still alive after waiting up to `within_s` seconds for all of them to end."""
    deadline = time.monotonic() + within_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p for p in pids if alive(p)]
