"""docs/your-data.md, followed verbatim: its `yaml file=PATH` blocks are written, its `bash run` blocks run
in order in an empty folder (`proxyscale` and `python` are this environment's), each sweep command with
tiny training budgets appended. The guide's promises are then checked: the recipes are listed with their
folder, the sweep and report exist, and the hydra.searchpath form finds the same cells final."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import pytest

from helpers import FAST, ROOT

GUIDE = ROOT / "docs" / "your-data.md"


def blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block, in order."""
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"^```([^\n]*)\n(.*?)^```\s*$", text, re.M | re.S)]


def test_the_guide_has_the_blocks_the_test_runs():
    infos = [info for info, _ in blocks(GUIDE.read_text())]
    assert sum(i.startswith("yaml file=") for i in infos) >= 2 and sum(i == "bash run" for i in infos) >= 4, infos


@pytest.mark.slow
def test_your_data_guide_runs_verbatim(tmp_path):
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    for name, cmd in (("proxyscale", f'exec {sys.executable} -m proxyscale "$@"'), ("python", f'exec {sys.executable} "$@"')):
        shim = bin_dir / name
        shim.write_text(f"#!/bin/sh\n{cmd}\n")
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    work = tmp_path / "project"
    work.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    outputs = []
    for info, body in blocks(GUIDE.read_text()):
        if info.startswith("yaml file="):
            path = work / info.split("=", 1)[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        elif info == "bash run":
            script = "\n".join(f"{line} {' '.join(FAST)}" if line.startswith("proxyscale -m ") else line for line in body.splitlines())
            res = subprocess.run(["bash", "-ec", script], cwd=work, env=env, capture_output=True, text=True, timeout=1200)
            assert res.returncode == 0, f"{script}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
            outputs.append(res.stdout + res.stderr)
    listing = next(o for o in outputs if "my_notes" in o and "from" in o)
    table = listing[listing.index("\n----") + 1 : listing.index("\nkept:")].splitlines()[1:]  # (the build's log lines follow it)
    rows = {line.split()[0]: line for line in table}
    assert sorted(rows) == ["my_code", "my_notes"] and all(str(work / "myconf") in row for row in rows.values()), listing
    assert "docs" in rows["my_notes"].split(str(work))[0]  # --build tokenized it: kept documents are counted
    sweep = work / "outputs" / "mine"
    assert (sweep / "report.md").exists() and (sweep / "report.json").exists()
    assert len(list(sweep.glob("*/result.json"))) == 12
    assert "12 already final, 0 to run" in outputs[-1], outputs[-1][-2000:]
