"""Launching: the Python side of every launcher (the Hydra plugin classes in hydra_plugins/ are
thin shims over it; the cluster scripts live in the top-level launchers/).

  local.py     the task Hydra's in-process and joblib launchers call for each cell
  submit.py    `proxyscale submit`: a grid as one non-blocking job array of CellTasks
  slurm.py     the SLURM array backend (sbatch through submitit, sacct for states)
  manifest.py  <sweep>/manifest.jsonl and the grid fingerprint that keeps one sweep one grid
  status.py    `proxyscale status`: records merged with the scheduler's states

An array backend is a module with four functions, named in BACKENDS: `check(launcher, cells)`
refuses what the cluster cannot run, `shape(cfg)` is a cell's resource shape, `submit_array(...)`
submits one array and returns its jobs, `states(job_ids)` reads their scheduler states.
"""

from __future__ import annotations

from proxyscale.errors import UserError

BACKENDS = {"slurm": "proxyscale.launch.slurm"}


class LaunchError(UserError):
    """Bad input for submit/status: the one line the CLI prints (exit 2)."""
