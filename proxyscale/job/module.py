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
from torch.utils.data import DataLoader, Dataset, IterableDataset

from proxyscale.config import Config
from proxyscale.data import tasks as T
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

    def __init__(self, cfg: Config, vocab_size: int, total_steps: int, eval_names: list[str], tasks: dict | None = None):
        super().__init__()
        self.cfg, self.total_steps, self.eval_names = cfg, total_steps, eval_names
        self.tasks: dict[str, T.TaskTokens] = dict(tasks or {})  # benchmark task sets: their loaders follow the lm sets'
        self.task_names = list(self.tasks)
        self._task_rows: dict[int, dict[int, tuple]] = {}  # per task set: batch index -> (its sequence rows, ll, greedy)
        self.net = ladder.build(cfg.model, vocab_size, cfg.trainer.seq_len)
        if cfg.trainer.compile:  # in place: parameter names, and so checkpoints, stay those of the plain model
            self.net.compile()
        self.vocab_size = vocab_size
        self._eval_rows: dict[int, dict[int, tuple]] = {}  # per lm set: batch index -> (its summed loss, per-window summed losses)
        self._gathered: dict | None = None  # the last eval pass over every rank: see _gather

    def _loss(self, batch: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        x, y = batch[:, :-1], batch[:, 1:]
        logits = self.net(input_ids=x).logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction=reduction)

    def training_step(self, batch, batch_idx):
        # Every rank draws the same global batch (a function of seed and step) and keeps its own
        # rows: a W-process cell trains on exactly the batches of a single-process one. The equal
        # shares make the mean of the ranks' losses the global batch's loss (what one process logs).
        world = self.trainer.world_size
        loss = self._loss(batch[self.global_rank :: world] if world > 1 else batch)
        batch_loss = self.all_gather(loss.detach()).mean() if world > 1 else loss.detach()
        if self.trainer.loggers:  # (only trackers read these: without one, self.log's bookkeeping was 2-3% of a debug cell's CPU)
            self.log("train/loss", batch_loss, prog_bar=False, logger=True)
            # The LR this step used (group 0 is the full-LR group, also under muP): trackers plot the schedule.
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=False, logger=True)
        return {"loss": loss, "batch_loss": batch_loss}

    def on_validation_epoch_start(self):
        self._eval_rows = {i: {} for i in range(len(self.eval_names))}
        self._task_rows = {j: {} for j in range(len(self.task_names))}
        self._gathered = None

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        # Batches come whole with their index (a multi-process eval shards batches, never windows or items,
        # so every window is scored in the batch it has on one process, and padding repeats are recognised).
        if dataloader_idx >= len(self.eval_names):  # a benchmark task set: score each continuation given its context
            k, tokens, meta = batch
            logits = self.net(input_ids=tokens[:, :-1]).logits
            ll, greedy = continuation_scores(logits, tokens[:, 1:], meta[:, 1], meta[:, 2])
            self._task_rows[dataloader_idx - len(self.eval_names)][int(k)] = (meta[:, 0], ll.double(), greedy)
            return
        k, windows = batch
        per_token = self._loss(windows, reduction="none").view(windows.size(0), -1)
        self._eval_rows[dataloader_idx][int(k)] = (float(per_token.sum()), per_token.sum(dim=1).detach().double())

    def on_validation_epoch_end(self):
        if self.logger is not None and not self.trainer.sanity_checking:
            values = {f"eval/{k}/loss": v for k, v in self.eval_losses().items()}
            values.update({f"eval/{k}/{m}": v for k, ms in self.eval_metrics().items() for m, v in ms.items() if math.isfinite(v)})
            self.log_dict(values, add_dataloader_idx=False)  # (the same on every rank: gathered)

    def _collect(self, parts: dict[int, tuple[torch.Tensor, torch.Tensor]], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Every rank's values at positions 0..n-1 ({batch: (positions, values)} here), gathered with Lightning's
        all_gather: (values, seen), each position's value taken from the first rank that scored it (a batch the
        distributed sampler repeated as padding counts once)."""
        vals = torch.zeros(n, dtype=torch.float64, device=self.device)
        seen = torch.zeros(n, dtype=torch.float64, device=self.device)
        for pos, v in parts.values():
            vals[pos.to(self.device)] = v.to(self.device, torch.float64)
            seen[pos.to(self.device)] = 1.0
        if self._trainer is not None and self.trainer.world_size > 1:
            g = self.all_gather({"vals": vals, "seen": seen})
            first = g["seen"].argmax(dim=0)  # the first rank holding each position (0 where none does)
            vals = g["vals"].gather(0, first[None])[0]
            seen = g["seen"].amax(dim=0)
        return vals.cpu().numpy(), seen.cpu().numpy() > 0

    def _gather(self) -> dict:
        """The last eval pass over every rank, in window / item order: {"lm": {i: (batch sums, window sums, seen)},
        "tasks": {j: (ll, greedy, seen) per sequence row}}. A collective: every rank reaches it in the same hook
        (Monitor.on_validation_epoch_end), later calls reuse it."""
        if self._gathered is not None:
            return self._gathered
        lm, tasks = {}, {}
        for i in range(len(self.eval_names)):
            rows = self._eval_rows.get(i) or {}
            nb, n = self._n_batches[i], self._n_windows[i]
            bsum, bseen = self._collect({k: (torch.tensor([k]), torch.tensor([v[0]], dtype=torch.float64)) for k, v in rows.items()}, nb)
            wsum, wseen = self._collect({k: (torch.arange(k * self._eval_batch, k * self._eval_batch + len(v[1])), v[1]) for k, v in rows.items()}, n)
            lm[i] = (bsum, wsum, bseen.all() and wseen.all())
        for j, name in enumerate(self.task_names):
            rows = self._task_rows.get(j) or {}
            n = len(self.tasks[name].seqs)
            ll, seen = self._collect({k: (r, v) for k, (r, v, _) in rows.items()}, n)
            greedy, _ = self._collect({k: (r, g.double()) for k, (r, _, g) in rows.items()}, n)
            tasks[j] = (np.where(seen, ll, np.nan), greedy > 0.5, seen)
        self._gathered = {"lm": lm, "tasks": tasks}
        return self._gathered

    def eval_losses(self) -> dict[str, float]:
        """Mean loss (nats/token) of every lm set: its batches' summed losses added in batch order (as one process
        adds them), over its windows' tokens."""
        out = {}
        for i, name in enumerate(self.eval_names):
            bsum, _, _ = self._gather()["lm"][i]
            out[name] = sum(bsum.tolist()) / max(1, self._n_windows[i] * self._seq_len)
        return out

    def example_metrics(self) -> dict[str, dict[str, np.ndarray]]:
        """The last eval pass's per-item metrics of every task set ({set: {metric: (items,)}} over tasks.METRICS,
        over every rank; NaN for an item not scored)."""
        out = {}
        for j, name in enumerate(self.task_names):
            tt = self.tasks[name]
            ll, greedy, seen = self._gather()["tasks"][j]
            out[name] = T.score_items(tt.task, ll[seen], tt.length[seen], greedy[seen], tt.item[seen], tt.choice[seen], tt.labels, tt.n_choices, tt.chars[seen])
        return out

    def eval_metrics(self) -> dict[str, dict[str, float]]:
        """The task sets' metrics of the last eval pass: {set: {metric: value}} over tasks.METRICS, means over the items."""
        return {name: T.aggregate(per_item) for name, per_item in self.example_metrics().items()}

    def example_losses(self) -> dict[str, np.ndarray]:
        """The last eval pass's loss of every example (mean nats/token of window i, float32), per eval set in
        order, gathered over every rank; an eval set some of whose windows were not scored is left out."""
        out = {}
        for i, name in enumerate(self.eval_names):
            _, wsum, complete = self._gather()["lm"][i]
            if complete and len(wsum):
                out[name] = (wsum / self._seq_len).astype(np.float32)
        return out

    def set_eval_shape(self, loaders: "EvalLoaders") -> None:
        """The lm sets' window and batch counts (what a gathered pass must cover)."""
        self._n_windows, self._n_batches = loaders.n_windows, loaders.n_batches
        self._eval_batch, self._seq_len = loaders.batch_size, loaders.seq_len

    def configure_model(self):
        """Under trainer.strategy=fsdp (ModelParallelStrategy, which sets the device mesh): shard every decoder layer
        and then the rest of the network over the data-parallel processes with torch's FSDP2, once (Lightning calls
        this hook again for a validate after fit). configure_optimizers runs after it, on the sharded parameters."""
        from torch.distributed.fsdp import FSDPModule, fully_shard

        if self._device_mesh is None or isinstance(self.net, FSDPModule):
            return
        mesh = self._device_mesh["data_parallel"]
        for layer in self.net.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(self.net, mesh=mesh)

    def configure_optimizers(self):
        if mup.enabled(self.cfg.model):  # per-group learning rates: hidden matrices at optim.lr / width multiplier
            return optim.configure(self.named_parameters(), self.cfg.optim, self.total_steps, mup.lr_mult(self.cfg.model))
        return optim.configure(self.parameters(), self.cfg.optim, self.total_steps)


class Monitor(L.Callback):
    """Rank-0 metrics for the record: train-loss points, eval curves, throughput, divergence."""

    def __init__(self, tokens_per_step: int, log_every: int, diverge_delta: float, warmup_steps: int, on_eval=None, where: dict | None = None):
        self.tokens_per_step, self.log_every = tokens_per_step, log_every
        self.where = where or {}  # this run's placement (job.run.placement)
        self.placements: list[dict] = []  # one per run of the cell: {step it started at, **where, threads}
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

    def on_train_start(self, trainer, pl_module):
        # (after a checkpoint's restore: the step it resumes at; and after Lightning's launcher: the torch threads it trains with)
        self.placements.append({"step": trainer.global_step, **self.where, "threads": torch.get_num_threads()})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train_seconds += time.perf_counter() - self._t0
        loss = float(outputs["batch_loss"])  # the global batch's loss, the same on every rank
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
        return {
            "train_curve": self.train_curve,
            "eval_curve": self.eval_curve,
            "ema": self._ema,
            "best": self._best,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "resumes": self.resumes,
            "placements": self.placements,
        }

    def load_state_dict(self, state):
        self.train_curve, self.eval_curve = state["train_curve"], state["eval_curve"]
        self._ema, self._best, self.train_seconds = state["ema"], state["best"], state["train_seconds"]
        self.eval_seconds = state.get("eval_seconds", 0.0)  # (absent from checkpoints of earlier versions)
        self.resumes = state["resumes"] + 1
        self.placements = list(state.get("placements", []))  # (absent from checkpoints of earlier versions)


class EvalLoaders(list):
    """The eval sets' loaders (lm sets first, then task sets), with the lm sets' window and batch counts."""

    def __init__(self, loaders, n_windows: list[int], batch_size: int, seq_len: int):
        super().__init__(loaders)
        self.n_windows, self.batch_size, self.seq_len = n_windows, batch_size, seq_len
        self.n_batches = [-(-n // batch_size) for n in n_windows]


def eval_loaders(eval_sets: dict[str, np.ndarray], seq_len: int, batch_size: int, tasks: dict | None = None, pad: int = 0) -> EvalLoaders:
    """The lm sets' window loaders, then one per task set (batches of whole items, about batch_size sequences per
    batch). Each dataset item is a whole batch with its index, so a multi-process eval (Lightning's
    DistributedSampler over these items) gives each rank whole batches: the same batches, of the same shapes, that
    one process scores, and a repeated padding batch is known by its index."""
    windows = [eval_windows(t, seq_len) for t in eval_sets.values()]
    out = [DataLoader(_Batches(w, batch_size), batch_size=None) for w in windows]
    for tt in (tasks or {}).values():
        per = max(1, batch_size // max(1, int(tt.n_choices.max()) if tt.n_items else 1))
        out.append(DataLoader(_ItemBatches(tt, per, pad), batch_size=None))
    return EvalLoaders(out, [len(w) for w in windows], batch_size, seq_len)


class _Batches(Dataset):
    """Batch k of an lm set: (k, windows k * batch_size ... )."""

    def __init__(self, windows: torch.Tensor, batch_size: int):
        self.windows, self.batch_size = windows, batch_size

    def __len__(self):
        return -(-len(self.windows) // self.batch_size)

    def __getitem__(self, k):
        return k, self.windows[k * self.batch_size : (k + 1) * self.batch_size]


class _ItemBatches(Dataset):
    """Batch k of a task set: (k, tokens padded on the right with `pad` to the batch's longest sequence, meta: sequence
    row, start, length) for items k * per ... (k + 1) * per - 1, every continuation of an item in the same batch."""

    def __init__(self, tt: "T.TaskTokens", per: int, pad: int):
        self.tt, self.per, self.pad = tt, per, pad

    def __len__(self):
        return -(-self.tt.n_items // self.per)

    def __getitem__(self, k):
        tt = self.tt
        rows = [r for i in range(k * self.per, min(tt.n_items, (k + 1) * self.per)) for r in tt.item_rows(i)]
        width = max(len(tt.seqs[r]) for r in rows)
        tokens = torch.full((len(rows), width), self.pad, dtype=torch.long)
        for j, r in enumerate(rows):
            tokens[j, : len(tt.seqs[r])] = torch.from_numpy(tt.seqs[r])
        meta = torch.from_numpy(np.stack([np.asarray(rows, dtype=np.int64), tt.start[rows], tt.length[rows]], axis=1))
        return k, tokens, meta


def continuation_scores(logits: torch.Tensor, targets: torch.Tensor, start: torch.Tensor, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: the summed log-likelihood (nats) of its continuation, targets[start:start + length] (targets =
    the sequence shifted by one, logits[t] predicting targets[t]), and whether greedy argmax reproduces every
    continuation token. Right padding lies after the continuation, so a causal model never sees it."""
    lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
    pos = torch.arange(targets.size(1), device=targets.device)[None, :]
    mask = (pos >= start[:, None]) & (pos < (start + length)[:, None])
    ll = torch.where(mask, lp, torch.zeros_like(lp)).sum(dim=1)
    greedy = ((logits.argmax(dim=-1) == targets) | ~mask).all(dim=1)
    return ll, greedy


def train_loader(tokens: np.ndarray, cfg: Config, steps: int, start: int = 0) -> DataLoader:
    ds = StepBatches(tokens, cfg.trainer.batch_size, cfg.trainer.seq_len, cfg.seed, steps, start)
    return DataLoader(ds, batch_size=None)
