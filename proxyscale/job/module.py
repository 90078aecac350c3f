"""One cell's training: a LightningModule over a transformers causal LM, its data, and callbacks.

Batches are a pure function of (seed, step), so a run resumed from a checkpoint at step s sees
exactly the batches an uninterrupted run would have seen from s on.
"""
from __future__ import annotations

import math
import time

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset

from proxyscale.config import Config
from proxyscale.job import model as ladder
from proxyscale.job import mup, optim


class StepBatches(IterableDataset):
    """Random windows of the token pool; batch k is drawn from rng(seed, k)."""

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int, steps: int, start: int = 0):
        self.tokens, self.batch_size, self.seq_len = tokens, batch_size, seq_len
        self.seed, self.steps, self.start = seed, steps, start

    def __iter__(self):
        n = len(self.tokens) - self.seq_len - 1
        for step in range(self.start, self.steps):
            starts = np.random.default_rng([self.seed, step]).integers(0, n, self.batch_size)
            win = np.stack([self.tokens[s : s + self.seq_len + 1] for s in starts]).astype(np.int64)
            yield torch.from_numpy(win)


def eval_windows(tokens: np.ndarray, seq_len: int) -> torch.Tensor:
    """The eval set's examples: consecutive, non-overlapping windows of seq_len + 1 tokens from the
    start of its cached tokens (a tail shorter than a window is dropped). Window i is the same text in
    every cell with the same eval cache (tokenizer, tokens_per_set) and seq_len: the per-example
    losses of issue 16 are indexed by i."""
    n = len(tokens) // (seq_len + 1)
    return torch.from_numpy(np.asarray(tokens[: n * (seq_len + 1)], dtype=np.int64).reshape(n, seq_len + 1))


class CausalLM(L.LightningModule):
    """Next-token loss on the train pool; mean loss (nats/token) on every eval set."""

    def __init__(self, cfg: Config, vocab_size: int, total_steps: int, eval_names: list[str]):
        super().__init__()
        self.cfg, self.total_steps, self.eval_names = cfg, total_steps, eval_names
        self.net = ladder.build(cfg.model, vocab_size, cfg.trainer.seq_len)
        if cfg.trainer.compile:  # in place: parameter names, and so checkpoints, stay those of the plain model
            self.net.compile()
        self.vocab_size = vocab_size
        self._eval_sums: dict[int, list[float]] = {}
        self._eval_rows: dict[int, list[np.ndarray]] = {}  # per eval set: each batch's per-window summed losses, in order

    def _loss(self, batch: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        x, y = batch[:, :-1], batch[:, 1:]
        logits = self.net(input_ids=x).logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction=reduction)

    def training_step(self, batch, batch_idx):
        # Every rank draws the same global batch (a function of seed and step) and keeps its own
        # rows: a W-process cell trains on exactly the batches of a single-process one.
        world = self.trainer.world_size
        loss = self._loss(batch[self.global_rank :: world] if world > 1 else batch)
        self.log("train/loss", loss, prog_bar=False, logger=True)
        return loss

    def on_validation_epoch_start(self):
        self._eval_sums = {i: [0.0, 0] for i in range(len(self.eval_names))}
        self._eval_rows = {i: [] for i in range(len(self.eval_names))}

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        per_token = self._loss(batch, reduction="none").view(batch.size(0), -1)
        acc = self._eval_sums[dataloader_idx]
        acc[0] += float(per_token.sum())
        acc[1] += batch[:, 1:].numel()
        self._eval_rows[dataloader_idx].append(per_token.sum(dim=1).detach().double().cpu().numpy())

    def on_validation_epoch_end(self):
        if self.logger is not None and not self.trainer.sanity_checking:
            self.log_dict({f"eval/{k}/loss": v for k, v in self.eval_losses().items()}, add_dataloader_idx=False)

    def eval_losses(self) -> dict[str, float]:
        return {name: self._eval_sums[i][0] / max(1, self._eval_sums[i][1]) for i, name in enumerate(self.eval_names)}

    def example_losses(self) -> dict[str, np.ndarray]:
        """The last eval pass's loss of every example (mean nats/token of window i, float32), per eval set
        in order; an eval set whose pass did not see every window in order (a multi-process eval, where
        each rank sees a share) is left out: its indices would not be the windows'."""
        out = {}
        for i, name in enumerate(self.eval_names):
            rows = self._eval_rows.get(i) or []
            sums = np.concatenate(rows) if rows else np.zeros(0)
            n_tok = self._eval_sums.get(i, [0.0, 0])[1]
            world = self._trainer.world_size if self._trainer is not None else 1
            if len(sums) and n_tok == len(sums) * (n_tok // len(sums)) and world == 1:
                out[name] = (sums / (n_tok // len(sums))).astype(np.float32)
        return out

    def configure_optimizers(self):
        if mup.enabled(self.cfg.model):  # per-group learning rates: hidden matrices at optim.lr / width multiplier
            return optim.configure(self.named_parameters(), self.cfg.optim, self.total_steps, mup.lr_mult(self.cfg.model))
        return optim.configure(self.parameters(), self.cfg.optim, self.total_steps)


class Monitor(L.Callback):
    """Rank-0 metrics for the record: train-loss points, eval curves, throughput, divergence."""

    def __init__(self, tokens_per_step: int, log_every: int, diverge_delta: float, warmup_steps: int, on_eval=None):
        self.tokens_per_step, self.log_every = tokens_per_step, log_every
        self.diverge_delta, self.warmup_steps = diverge_delta, warmup_steps
        self.on_eval = on_eval
        self.train_curve: list[dict] = []
        self.eval_curve: list[dict] = []
        self.diverged: str | None = None
        self._ema: float | None = None
        self._best = math.inf
        self.train_seconds = 0.0  # inside training batches (forward, backward, optimizer)
        self.eval_seconds = 0.0  # inside eval passes: with train_seconds, the cell's useful work
        self.resumes = 0  # times this cell continued from a checkpoint (requeues)
        self._t0 = self._t_eval = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train_seconds += time.perf_counter() - self._t0
        loss = float(outputs["loss"])
        step = trainer.global_step
        if not math.isfinite(loss):
            self.diverged = f"non-finite train loss at step {step}"
        else:
            self._ema = loss if self._ema is None else 0.9 * self._ema + 0.1 * loss
            self._best = min(self._best, self._ema)
            if step > self.warmup_steps and self._ema > self._best + self.diverge_delta:
                self.diverged = f"train loss blew up at step {step}: {self._ema:.3f} vs best {self._best:.3f}"
        last = 0 < trainer.max_steps <= step
        if step % self.log_every == 0 or self.diverged or last:
            self.train_curve.append({"step": step, "loss": loss})
        if last and step % self.log_every and not (self.diverged or trainer.should_stop):
            # Lightning logs every log_every_n_steps (or when stopping): a cell shorter than that, or whose
            # last step falls between two points, would leave its trackers without that train loss.
            # Lightning's step convention (the finished batch's index), as the trackers expect it.
            for lg in trainer.loggers:
                lg.log_metrics({"train/loss": loss}, step=step - 1)
        if self.diverged:
            trainer.should_stop = True

    def on_validation_epoch_start(self, trainer, pl_module):
        self._t_eval = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self.eval_seconds += time.perf_counter() - self._t_eval
        point = {"step": trainer.global_step, "tokens": trainer.global_step * self.tokens_per_step, "loss": pl_module.eval_losses()}
        if self.eval_curve and self.eval_curve[-1]["step"] == point["step"]:
            self.eval_curve[-1] = point
        else:
            self.eval_curve.append(point)
        if any(not math.isfinite(v) for v in point["loss"].values()):
            self.diverged = self.diverged or f"non-finite eval loss at step {point['step']}"
            trainer.should_stop = True
        if self.on_eval and trainer.is_global_zero:
            self.on_eval(point)

    def state_dict(self):
        return {"train_curve": self.train_curve, "eval_curve": self.eval_curve, "ema": self._ema, "best": self._best, "train_seconds": self.train_seconds,
                "eval_seconds": self.eval_seconds, "resumes": self.resumes}

    def load_state_dict(self, state):
        self.train_curve, self.eval_curve = state["train_curve"], state["eval_curve"]
        self._ema, self._best, self.train_seconds = state["ema"], state["best"], state["train_seconds"]
        self.eval_seconds = state.get("eval_seconds", 0.0)  # (absent from checkpoints of earlier versions)
        self.resumes = state["resumes"] + 1


def eval_loaders(eval_sets: dict[str, np.ndarray], seq_len: int, batch_size: int) -> list[DataLoader]:
    return [DataLoader(eval_windows(t, seq_len), batch_size=batch_size) for t in eval_sets.values()]


def train_loader(tokens: np.ndarray, cfg: Config, steps: int, start: int = 0) -> DataLoader:
    ds = StepBatches(tokens, cfg.trainer.batch_size, cfg.trainer.seq_len, cfg.seed, steps, start)
    return DataLoader(ds, batch_size=None)
