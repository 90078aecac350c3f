"""GPU tier: a real cell on CUDA in bf16 with torch.compile (trainer=gpu). Skipped (not failed)
where no CUDA device exists."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from helpers import FAST
from proxyscale import config as C
from proxyscale.job import run_cell

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def test_a_cell_trains_on_the_gpu_in_bf16(out_dir, cache_dir):
    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "model=tiny",
                "trainer=gpu",
                f"paths.output_dir={out_dir}",
                f"paths.cache_dir={cache_dir}",
                *FAST,
                "trainer.seq_len=128",
                "trainer.batch_size=32",
            ],
        )
    rec = run_cell(cfg)
    assert rec.status == "completed", rec.error
    curve = [p["loss"]["prose"] for p in rec.eval_curve]
    assert curve[-1] < curve[0]
    assert rec.config["trainer"]["precision"] == "bf16-mixed" and rec.config["trainer"]["compile"] is True
