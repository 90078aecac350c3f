"""One training cell: `run_cell(cfg, Resources(...))` is what every launcher calls."""

from proxyscale.job.run import Resources, quiet_lightning, run_cell, run_dir

__all__ = ["Resources", "quiet_lightning", "run_cell", "run_dir"]
