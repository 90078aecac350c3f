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


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_two_gpu_cell_gives_the_one_gpu_record(tmp_path, cache_dir, strategy):
    """ddp and fsdp on 2 GPUs (NCCL) against 1 GPU, in fp32 so that only reduction order differs."""
    from helpers import assert_same_record, records_by_devices, run_cli

    out = tmp_path / "outputs"
    common = ["-m", "model=tiny", "trainer=gpu", "trainer.precision=32-true", "trainer.compile=false", *FAST, "trainer.seq_len=128", "trainer.batch_size=32"]
    common += ["trainer.log_every_n_steps=2", f"paths.output_dir={out}", f"paths.cache_dir={cache_dir}"]
    for n, extra in ((1, ["trainer.devices=1"]), (2, ["trainer.devices=2", f"trainer.strategy={strategy}"])):  # (one cell: a sweep each)
        r = run_cli(*common, *extra, f"sweep=g{n}", timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    assert_same_record(records_by_devices(out / "g1")[1], records_by_devices(out / "g2")[2])
