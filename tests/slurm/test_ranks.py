"""A multi-process cell under srun gives the one-process record (the SLURM side of tests/test_multiprocess.py)."""

from __future__ import annotations

import pytest
from test_launch import final, wait_for

from helpers import FAST, assert_same_record, records_by_devices, run_cli

pytestmark = pytest.mark.slurm


def test_a_two_task_ddp_cell_gives_the_one_process_record(slurm_cluster, cache_dir, tmp_path):
    """2 SLURM tasks (srun), one per rank, wired by Lightning's SLURM environment: the eval gathered over both
    ranks, the record rank 0's, equal to the same cell trained here on one process."""
    out = tmp_path / "outputs"
    common = ["model=debug", *FAST, "trainer.log_every_n_steps=2", f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}"]
    r = run_cli("submit", *common, "sweep=ranks", "trainer.strategy=ddp", "trainer.devices=2", "hydra.launcher.cpus_per_task=1", timeout=120)
    assert r.returncode == 0, r.stderr
    r = run_cli(*common, "sweep=one", timeout=300)  # the 1-process cell (the same cell: another sweep), here, meanwhile
    assert r.returncode == 0, r.stderr[-3000:]
    rows = wait_for(out / "ranks", final, 240, slurm_cluster)
    assert [row["state"] for row in rows.values()] == ["completed"], rows
    assert_same_record(records_by_devices(out / "one")[1], records_by_devices(out / "ranks")[2])
