"""proxyscale.grid: planning a sweep (compose, check, grid.json) before anything trains; nothing here trains."""

from __future__ import annotations


def test_closest_keys():
    from proxyscale.grid import closest_keys

    keys = ["optim.lr", "optim.min_lr_frac", "trainer.max_tokens", "trainer.batch_size", "seed", "model"]
    assert closest_keys("lr", keys) == ["optim.lr"]
    assert closest_keys("trainer.max_steps", keys + ["data.steps"]) == ["trainer.max_tokens", "data.steps"]
    assert closest_keys("trainer.nonsense", keys) == []
    assert closest_keys("zzzzzz", keys) == []
