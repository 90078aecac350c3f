"""The logging conventions every tracker shares (csv, TensorBoard, W&B): one step numbering, one metric set."""

from __future__ import annotations


def tracker_step(lightning_step: int | None) -> int | None:
    """The tracker step for the step Lightning passes to `Logger.log_metrics` (the finished batch's
    index): optimizer steps done, as in the record's curves and on the console."""
    return None if lightning_step is None else lightning_step + 1


def tracker_metrics(values: dict) -> dict:
    """What a tracker logs of Lightning's metrics: all but the constant `epoch` Lightning adds."""
    return {k: v for k, v in values.items() if k != "epoch"}


def run_numbers(cfg) -> dict[str, float]:
    """The cell's size and budget as numbers for a tracker's run config (params, tokens, FLOPs, from the cost
    model the planner and the job share), so loss can be charted against size or compute across runs."""
    from proxyscale import budget

    k = budget.cost(cfg)
    return {"params": int(k["params"]), "tokens": int(k["tokens"]), "flops": float(k["flops"])}
