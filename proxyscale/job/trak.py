"""TRAK attribution of document groups from kept proxy checkpoints (Park et al. 2023; Khaddaj, Engstrom & Madry 2025,
Algorithm 2), through the `traker` package (MadryLab's implementation: torch.func per-example gradients, its CPU
random projector, the TRAK estimator, an ensemble over checkpoints).

Train examples are windows of seq_len + 1 tokens cut from each group's documents (the recipe's curated documents, all
groups, up to `per_group` windows each); targets are the eval windows whose losses the sweep recorded
(examples.parquet: window i of each eval set). The model output is a window's mean next-token log-likelihood and its
out-to-loss weight is 1 (the loss is its negative). A group's weight on a target's loss is minus the mean TRAK score of
its sampled windows times the group's number of windows: an estimate of the summed effect of all its text, in the
datamodels' convention (negative = the group lowers the loss), so the same LDS scores it.

On the training side (it builds models and reads the recipe's documents): the CLI hands its weights to
proxyscale.analysis.datamodels.
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np

from proxyscale import record
from proxyscale.config import ConfigError, attrs

INSTALL_HINT = "TRAK needs the traker package: pip install 'proxyscale[attribution]'"


def checkpoint_cells(sweep_dir: str | Path, size: str, n: int) -> list[tuple[Path, record.Record]]:
    """Up to n completed subset cells of `size` that kept their checkpoint (trainer.keep_checkpoints=true), by run id."""
    out = []
    for path in sorted(Path(sweep_dir).glob("*/" + record.RESULT)):
        try:
            rec = record.read(path.parent)
        except record.RecordError:
            continue
        data = rec.config.get("data") or {}
        if rec.size == size and rec.status == "completed" and data.get("subset") is not None and (path.parent / "checkpoints" / "last.ckpt").is_file():
            out.append((path.parent, rec))
    if not out:
        raise ConfigError(f"--trak {size}: no completed subset cell of size {size} in {sweep_dir} kept a checkpoint (train with trainer.keep_checkpoints=true)")
    return out[:n]


def group_windows(config, per_group: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows [N, seq_len+1], group of each window, total windows of each group) from the recipe's curated
    documents: each group's documents joined by EOS in id order, cut into windows, up to per_group drawn per group."""
    from proxyscale.data.cache import curated_documents, group_of
    from proxyscale.data.tokenizer import Tokenizer

    data, seq = config.data, int(config.trainer.seq_len)
    groups = int(data.subset_groups)
    tok = Tokenizer(data.tokenizer)
    streams: dict[int, list[np.ndarray]] = {g: [] for g in range(groups)}
    for src in data.sources:
        if float(src.weight) == 0:
            continue
        docs, _ = curated_documents(src, data, config.paths.cache_dir)
        for d in sorted(docs, key=lambda d: d.id):
            streams[group_of(data, src.name, d.id)].append(np.append(tok.encode(d.text), np.uint16(tok.eos)))
    rng = np.random.default_rng(seed)
    windows, owner, total = [], [], np.zeros(groups)
    for g in range(groups):
        ids = np.concatenate(streams[g]) if streams[g] else np.zeros(0, dtype=np.uint16)
        n = len(ids) // (seq + 1)
        total[g] = n
        if n == 0:
            continue
        pick = np.sort(rng.choice(n, size=min(per_group, n), replace=False))
        cut = ids[: n * (seq + 1)].reshape(n, seq + 1)[pick]
        windows.append(cut.astype(np.int64))
        owner += [g] * len(pick)
    return np.concatenate(windows), np.array(owner), total


def eval_windows_of(config) -> dict[str, np.ndarray]:
    """The cell's lm eval sets' windows (examples.parquet's example i = window i)."""
    from proxyscale.data.cache import eval_tokens
    from proxyscale.job.module import eval_windows

    out = {}
    for s in config.eval.sets:
        if (s.get("task") or "lm") == "lm":
            tokens, _ = eval_tokens(s, config.data.tokenizer, int(config.eval.tokens_per_set), config.paths.cache_dir)
            out[s.name] = eval_windows(tokens, int(config.trainer.seq_len)).numpy()
    return out


def _load(cell: Path, rec: record.Record):
    import torch

    from proxyscale.data.tokenizer import Tokenizer
    from proxyscale.job.model import build

    state = torch.load(io.BytesIO((cell / "checkpoints" / "last.ckpt").read_bytes()), map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get(record.CKPT_RUN_ID) != rec.run_id:
        raise ConfigError(f"--trak: {cell}/checkpoints/last.ckpt is not the checkpoint of cell {rec.run_id}")
    config = attrs(rec.config)
    net = build(config.model, Tokenizer(rec.tokenizer).vocab_size, int(config.trainer.seq_len))
    weights = {k[len("net.") :]: v for k, v in state["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(weights)
    net.set_attn_implementation("eager")  # torch.func's vmap has no batching rule for CPU sdpa (a slow per-sample fallback)
    return net.float().eval(), weights, config


def _lm_output():
    try:
        import torch
        from trak.modelout_functions import AbstractModelOutput
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None

    class LMOutput(AbstractModelOutput):
        """f(window) = mean next-token log-likelihood; the loss is -f, so the out-to-loss weight is 1."""

        def __init__(self) -> None:
            super().__init__()

        @staticmethod
        def get_output(model, weights, buffers, window):
            logits = torch.func.functional_call(model, (weights, buffers), args=(), kwargs={"input_ids": window[:-1].unsqueeze(0)}).logits[0]
            return -torch.nn.functional.cross_entropy(logits, window[1:])

        def get_out_to_loss_grad(self, model, weights, buffers, batch):
            return torch.ones(batch[0].shape[0], 1)

    return LMOutput()


def trak_weights(
    sweep_dir: str | Path, size: str, checkpoints: int = 1, per_group: int = 32, proj_dim: int = 256, batch: int = 8, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict]:
    """{eval set: weights [examples, groups]} from TRAK on up to `checkpoints` kept checkpoints of `size`, and its cost."""
    import torch
    from trak import TRAKer

    task = _lm_output()
    cells = checkpoint_cells(sweep_dir, size, checkpoints)
    t0 = time.perf_counter()
    net, _, config = _load(*cells[0])
    train, owner, total = group_windows(config, per_group, seed)
    targets = eval_windows_of(config)
    names = list(targets)
    all_targets = np.concatenate([targets[n] for n in names])
    # TRAK inverts the features' Gram matrix (proj_dim x proj_dim) without a ridge: with fewer train windows than
    # projected dimensions it is singular and the scores are noise (measured: LDS below random weights), so the
    # projection is capped at half the train windows.
    proj_dim = int(min(proj_dim, max(1, len(train) // 2)))
    with tempfile.TemporaryDirectory() as tmp:
        traker = TRAKer(
            model=net,
            task=task,
            train_set_size=len(train),
            save_dir=tmp,
            device="cpu",
            proj_dim=proj_dim,
            use_half_precision=False,
            projector_seed=seed,
            logging_level=40,
        )
        for model_id, (cell, rec) in enumerate(cells):
            _, weights, _ = _load(cell, rec)
            traker.load_checkpoint(weights, model_id=model_id)
            for i in range(0, len(train), batch):
                traker.featurize(batch=(torch.from_numpy(train[i : i + batch]),), num_samples=len(train[i : i + batch]))
        traker.finalize_features()
        for model_id, (cell, rec) in enumerate(cells):
            _, weights, _ = _load(cell, rec)
            traker.start_scoring_checkpoint(exp_name="targets", checkpoint=weights, model_id=model_id, num_targets=len(all_targets))
            for i in range(0, len(all_targets), batch):
                traker.score(batch=(torch.from_numpy(all_targets[i : i + batch]),), num_samples=len(all_targets[i : i + batch]))
        scores = np.asarray(traker.finalize_scores(exp_name="targets"), dtype=np.float64)  # [train windows, targets]
    groups = int(config.data.subset_groups)
    mean = np.zeros((groups, scores.shape[1]))
    for g in range(groups):
        rows = owner == g
        if rows.any():
            mean[g] = scores[rows].mean(0) * total[g]
    weights_by_set, start = {}, 0
    for name in names:
        n = len(targets[name])
        weights_by_set[name] = -mean[:, start : start + n].T  # examples x groups; negative = lowers the loss
        start += n
    cost = {
        "seconds": round(time.perf_counter() - t0, 2),
        "checkpoints": [rec.run_id for _, rec in cells],
        "train_windows": int(len(train)),
        "proj_dim": proj_dim,
    }
    return weights_by_set, cost
