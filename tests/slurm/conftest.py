"""Fixtures for the `slurm` tier: a real SLURM cluster from launchers/slurm, two nodes by default.

`slurm_cluster` (session scope) runs launchers/slurm/cluster-up.sh, which is idempotent: if a
cluster is already up (e.g. `make slurm-up`, or a previous session) it returns in well under a
second. Its two nodes are two network namespaces of this machine (launchers/slurm/nodes.sh);
where namespaces cannot be made (cluster-up.sh exits 3) the session falls back to one node and
the multi-node tests skip, saying why. It exports SLURM_CONF into os.environ so sbatch/sacct/scancel (and so submitit, and the
jobs themselves, which inherit the environment) talk to that cluster.

At the end of the session the cluster is stopped only if this session started it: a cluster
that was already running is left running, as found. PROXYSCALE_SLURM_KEEP=1 keeps a cluster
this session started (faster re-runs; its state stays in the state directory either way).

Tests skip, with the reason, when the SLURM/munge/mariadb binaries are absent (install them with
`tests/system-deps.sh slurm`), or when the cluster is down and this user cannot start it (not root).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UP = REPO / "launchers" / "slurm" / "cluster-up.sh"
DOWN = REPO / "launchers" / "slurm" / "cluster-down.sh"
BINARIES = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "scancel", "sinfo")


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    state_dir: Path
    conf: Path  # the generated slurm.conf; SLURM_CONF points at it for the whole session
    nodes: tuple[str, ...] = ()  # node names, as sinfo -N lists them
    single_node_reason: str = ""  # why the session runs one node where it asked for several
    env: dict = dataclasses.field(default_factory=dict, repr=False)  # the environment cluster-up.sh ran with

    def up(self) -> None:
        """cluster-up.sh again: a node taken away (node-down.sh) is started and rejoins."""
        r = subprocess.run(["bash", str(UP)], env=self.env, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, f"cluster-up.sh failed (rc {r.returncode}):\n{r.stdout}\n{r.stderr}"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    def log_tail(self, name: str = "slurmctld.log", lines: int = 40) -> str:
        """The end of a daemon's log, for assertion messages."""
        path = self.log_dir / name
        if not path.exists():
            return f"(no {path})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _is_up(env: dict[str, str]) -> bool:
    """True when cluster-up.sh would return at once (healthy), without starting anything."""
    conf = Path(env["PROXYSCALE_SLURM_STATE"]) / "etc" / "slurm.conf"
    if not conf.exists():
        return False
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], env={**env, "SLURM_CONF": str(conf)}, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    states = r.stdout.split()
    return r.returncode == 0 and bool(states) and all(st.startswith(("idle", "mixed", "allocated")) for st in states)


def _nodes(conf: Path) -> tuple[str, ...]:
    r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], env={**os.environ, "SLURM_CONF": str(conf)}, capture_output=True, text=True, timeout=10)
    return tuple(sorted(set(r.stdout.split())))


@pytest.fixture(scope="session")
def slurm_cluster():
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"SLURM not installed (missing {', '.join(missing)}): run tests/system-deps.sh slurm")
    env = dict(os.environ)
    state = Path(env.setdefault("PROXYSCALE_SLURM_STATE", "/tmp/proxyscale-slurm"))
    was_up = _is_up(env)
    if not was_up and os.geteuid() != 0:
        pytest.skip(f"no SLURM cluster at {state} and not root to start one: sudo {UP}")
    single = ""
    try:
        r = subprocess.run(["bash", str(UP)], env=env, capture_output=True, text=True, timeout=240)
        if r.returncode == 3 and env.get("PROXYSCALE_SLURM_NODES", "2") != "1":  # no network namespaces here
            single = r.stderr.strip().splitlines()[-1]
            env["PROXYSCALE_SLURM_NODES"] = "1"
            r = subprocess.run(["bash", str(UP)], env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"cluster-up.sh did not finish in 240 s:\n{e.stdout}\n{e.stderr}")
    if r.returncode != 0:
        pytest.fail(f"cluster-up.sh failed (rc {r.returncode}):\n{r.stdout}\n{r.stderr}")
    conf = state / "etc" / "slurm.conf"
    cluster = SlurmCluster(state_dir=state, conf=conf, nodes=_nodes(conf), single_node_reason=single, env=env)
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        if not was_up and os.environ.get("PROXYSCALE_SLURM_KEEP") != "1":
            subprocess.run(["bash", str(DOWN)], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def multinode_cluster(slurm_cluster) -> SlurmCluster:
    """The session's cluster, when it has two or more nodes."""
    if len(slurm_cluster.nodes) < 2:
        pytest.skip(f"the SLURM cluster has one node ({slurm_cluster.single_node_reason or 'started with PROXYSCALE_SLURM_NODES=1'})")
    return slurm_cluster


@pytest.fixture
def submitit_folder(slurm_cluster, tmp_path) -> Path:
    """A fresh submitit folder per test: job ids restart when a cluster is purged and rebuilt,
    so a shared folder could mix logs and pickles of different jobs with the same id."""
    folder = tmp_path / "submitit"
    folder.mkdir()
    return folder
