"""Run one cell of a grid: skip it if its record is final, else train it and write its record.

This is the function every launcher calls (in-process, joblib workers, submitit array tasks). It
never raises for a cell's own failure: a crash or a divergence becomes that cell's record and the
sweep goes on. What it needs to know about where it runs comes in a `Resources` the launcher fills
in; the job never asks Hydra or the environment.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import secrets
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock, Timeout
from omegaconf import DictConfig

from proxyscale import budget, record, tracking
from proxyscale import config as C
from proxyscale.data import identity

log = logging.getLogger("proxyscale")


@dataclass(frozen=True)
class Resources:
    """Where a cell runs, as the launcher knows it."""

    workers: int = 1  # cells training at once on this machine (threads are shared among them)
    threads: int = 0  # torch threads for each process of this cell; 0 = budget.threads_per_worker over its processes on this machine
    rank: int = 0  # this process's global rank in a multi-process cell (only rank 0 writes the record)
    ranks_started: bool = False  # the scheduler started every rank of a multi-process cell (srun tasks); else rank 0 starts them (job.ranks)
    scheduler_requeues: bool = False  # a scheduler (submitit on SLURM) owns requeueing: Lightning's handler stays off
    position: str = ""  # log prefix such as "[3/45] "


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir) / cfg.sweep / identity.run_id(cfg)


@functools.cache  # the same for every cell of a process
def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("proxyscale", "torch", "lightning", "transformers", "numpy", "hydra-core"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def quiet_lightning() -> None:
    """Silence Lightning's hints that do not apply to a proxyscale cell (the benches share this)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*but have no logger configured.*")
    warnings.filterwarnings("ignore", message=".*LightningModule.*has parameters that were not used.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    warnings.filterwarnings("ignore", message=".*torch.distributed.nn.functional.all_gather is deprecated.*")  # (Lightning's all_gather)
    warnings.filterwarnings("ignore", message=".*The `srun` command is available on your system but is not used.*")  # local cells on a SLURM host


@dataclass
class _Data:
    """A cell's tokens and their cache keys (the record names them, so consumers never re-derive them)."""

    vocab_size: int
    pool: object
    evals: dict
    pool_key: str
    eval_keys: dict[str, str]
    tasks: dict = None  # benchmark task sets (task mc | cloze): name -> tasks.TaskTokens; `evals` holds the lm sets only


def _load_data(cfg: DictConfig) -> _Data:
    from proxyscale.data.cache import eval_tokens, recipe_tokens
    from proxyscale.data.tokenizer import Tokenizer

    verify = bool(cfg.paths.get("verify_caches", False))
    window = cfg.trainer.seq_len + 1
    pool, meta = recipe_tokens(cfg.data, cfg.paths.cache_dir, verify)
    if len(pool) < window + 1:
        raise C.ConfigError(
            f"recipe {cfg.data.name}: its token pool ({Path(cfg.paths.cache_dir) / 'recipes' / meta['key']}.bin) holds {len(pool)} tokens, "
            f"less than one training window ({window + 1})"
        )
    evals, keys, task_sets = {}, {}, {}
    tok = Tokenizer(cfg.data.tokenizer)
    for s in cfg.eval.sets:
        if s.get("task", "lm") != "lm":  # items are small: tokenized per cell, keyed by a hash of their tokens
            from proxyscale.data import tasks
            from proxyscale.data.sources import load_items

            task_sets[s.name] = tasks.tokenize(load_items(s), s.task, tok.encode, tok.eos, cfg.trainer.seq_len, s.target_delimiter)
            keys[s.name] = task_sets[s.name].key()
            continue
        evals[s.name], emeta = eval_tokens(s, cfg.data.tokenizer, cfg.eval.tokens_per_set, cfg.paths.cache_dir, verify)
        keys[s.name] = emeta["key"]
        if len(evals[s.name]) < window:  # its loss would be 0 over no window at all
            raise C.ConfigError(
                f"eval set {s.name!r}: {Path(cfg.paths.cache_dir) / 'eval' / emeta['key']}.bin holds {len(evals[s.name])} tokens, "
                f"less than one window ({window})"
            )
    return _Data(tok.vocab_size, pool, evals, meta["key"], keys, task_sets)


def _null_baselines(cfg: DictConfig, data: _Data) -> dict[str, dict[str, float]]:
    """Count-model losses of this recipe's pool on every eval set, computed here (cached per pool and
    eval set) so the report reads them from the record and never tokenizes."""
    from proxyscale.data.ngram import baselines

    return baselines(data.pool, data.pool_key, data.evals, data.eval_keys, data.vocab_size, cfg.paths.cache_dir)


def checkpoint_path(out: Path) -> Path:
    return out / "checkpoints" / "last.ckpt"


def _checkpoint_callback(out: Path, where: dict):
    """last.ckpt after every periodic eval (so a resumed curve loses no point), written to a temp file
    in the same folder, fsynced and renamed over the previous one, with the cell's run id and placement
    (`where`) inside: a kill mid-write leaves the previous checkpoint, never a torn one."""
    import lightning as L

    class AtomicCheckpoint(L.Callback):
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            checkpoint[record.CKPT_RUN_ID] = out.name
            checkpoint[record.CKPT_PLACEMENT] = where

        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking:
                return
            path = checkpoint_path(out)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            if trainer.is_global_zero:
                path.parent.mkdir(parents=True, exist_ok=True)
            try:
                trainer.save_checkpoint(str(tmp))
                if trainer.is_global_zero:
                    with open(tmp, "rb") as f:
                        os.fsync(f.fileno())
                    os.replace(tmp, path)
                    record.fsync_dir(path.parent)
            finally:
                if trainer.is_global_zero and tmp.exists():
                    tmp.unlink()

    return AtomicCheckpoint()


def usable_checkpoint(out: Path) -> Path | None:
    """This cell's last.ckpt if it loads and names this cell; otherwise it is moved aside to
    last.ckpt.bad-<time> with a warning and the cell trains from the start."""
    import torch

    path = checkpoint_path(out)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        owner = state.get(record.CKPT_RUN_ID) if isinstance(state, dict) else None
        problem = (
            None
            if owner == out.name
            else (f"it belongs to cell {owner}" if owner else "it names no cell")
            if isinstance(state, dict) and "global_step" in state
            else "not a Lightning checkpoint"
        )
    except Exception as exc:  # truncated, corrupt, another format
        problem = f"it does not load ({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:120]})"
    if problem is None:
        return path
    bad = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}")
    os.replace(path, bad)
    log.warning(f"{path}: {problem}; moved aside to {bad.name}, the cell trains from the start")
    return None


def _drop_checkpoints(out: Path) -> None:
    """The record is final: nothing is left to resume. Checkpoints moved aside (.bad-*) stay as evidence."""
    folder = checkpoint_path(out).parent
    for p in [checkpoint_path(out), *folder.glob(".last.ckpt.*.tmp")]:
        p.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # absent, or holds moved-aside checkpoints
        pass


def world_size(cfg: DictConfig) -> int:
    return int(cfg.trainer.devices) * int(cfg.trainer.num_nodes)


def placement(cfg: DictConfig) -> dict:
    """Where the cell runs (a record's `placements` entry, a checkpoint's CKPT_PLACEMENT), with the strategy Lightning
    runs: strategy=auto is `single` on one process and `ddp` on several (_strategy)."""
    world, strategy = world_size(cfg), str(cfg.trainer.strategy)
    if strategy == "auto":
        strategy = "ddp" if world > 1 else "single"
    return {"devices": int(cfg.trainer.devices), "num_nodes": int(cfg.trainer.num_nodes), "world_size": world, "strategy": strategy}


def resume_problem(saved: dict | None, now: dict) -> str | None:
    """Why a checkpoint written at placement `saved` must not resume at `now`, or None. A single-process or DDP
    checkpoint holds the whole model and optimizer (rank 0's, the same on every rank), and the batches are a function of
    (seed, step) alone, so it resumes on any process count. An FSDP checkpoint resumes only with FSDP on as many
    processes: other combinations are not verified. A checkpoint without a placement is from before placements were
    recorded, when a multi-process cell had a run id of its own: one process wrote it."""
    saved = saved or {"strategy": "single", "world_size": 1}
    if "fsdp" not in (saved["strategy"], now["strategy"]) or (saved["strategy"], saved["world_size"]) == (now["strategy"], now["world_size"]):
        return None
    return (
        f"its checkpoint was written by {saved['strategy']} on {saved['world_size']} process(es), this run is {now['strategy']} on "
        f"{now['world_size']}: an FSDP checkpoint resumes only with FSDP on the same number of processes (rerun with "
        f"trainer.strategy={'fsdp' if saved['strategy'] == 'fsdp' else 'ddp'} and {saved['world_size']} processes, or remove it to train from the start)"
    )


def check_resumable(cfg: DictConfig, out: Path) -> None:
    """Raise ConfigError (one line naming the checkpoint) when the cell in `out` would resume from a checkpoint that
    this placement cannot continue (resume_problem). The planner calls it for every pending cell before anything runs;
    a checkpoint that does not load is left to the job (usable_checkpoint moves it aside)."""
    path = checkpoint_path(out)
    if not path.exists() or record.is_completed(out):
        return
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=False, mmap=True).get(record.CKPT_PLACEMENT)  # (mmap: tensors are not read)
    except Exception:
        return
    problem = resume_problem(saved, placement(cfg))
    if problem:
        raise C.ConfigError(f"{path}: {problem}")


def _strategy(cfg: DictConfig):
    """Lightning's strategy for the cell; a multi-process one with the process-group timeout
    (trainer.pg_timeout_s), so a rank that died or hangs fails the cell instead of stalling it. FSDP is torch's FSDP2
    (fully_shard, CausalLM.configure_model) under Lightning's ModelParallelStrategy, every process one data-parallel
    shard: unlike Lightning's FSDPStrategy (FSDP1, CUDA only) it runs on CPUs (gloo) as on GPUs. Its checkpoint is one
    whole file written by rank 0 (save_distributed_checkpoint=False), like the other strategies' last.ckpt."""
    t = cfg.trainer
    if t.strategy == "auto" and world_size(cfg) == 1:
        return "auto"
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy

    timeout = timedelta(seconds=float(t.pg_timeout_s))
    if t.strategy == "fsdp":
        return ModelParallelStrategy(data_parallel_size=world_size(cfg), tensor_parallel_size=1, save_distributed_checkpoint=False, timeout=timeout)
    return DDPStrategy(timeout=timeout)


@contextlib.contextmanager
def _threads_kept(threads: int):
    """OMP_NUM_THREADS=threads while the cell trains. Lightning's DDP launcher, unless that variable is set, sets torch's
    threads to the cores / trainer.devices (lightning.fabric.utilities.distributed._set_num_threads_if_needed): it
    undid trainer.threads, and a 2-node cell (one rank per node) ran every rank with all of the machine's cores,
    about 20x slower per step than the same 2 ranks on one node where cores are scarce (docs/clusters.md#measured)."""
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def _keep_signal_handlers():
    """A callback that puts back this process's SIGTERM handler once Lightning has put its own in: Lightning's
    broadcasts from inside the handler, a collective the other ranks never join, which stalls a multi-process
    cell until the process-group timeout instead of stopping it."""
    import signal

    import lightning as L

    mine = signal.getsignal(signal.SIGTERM)

    class KeepSignalHandlers(L.Callback):
        def on_train_start(self, trainer, pl_module):
            signal.signal(signal.SIGTERM, mine)

        on_validation_start = on_train_start

    return KeepSignalHandlers()


def _trainer(cfg: DictConfig, out: Path, steps: int, monitor, loggers: list, res: Resources, local_ranks: bool = False):
    import lightning as L

    callbacks = [monitor]
    if world_size(cfg) > 1:
        callbacks.append(_keep_signal_handlers())
    if cfg.trainer.checkpoint:
        callbacks.append(_checkpoint_callback(out, placement(cfg)))
    plugins = []
    if local_ranks:  # ranks started by job.ranks, whatever scheduler this process runs under
        from lightning.pytorch.plugins.environments import LightningEnvironment

        plugins.append(LightningEnvironment())
    elif res.scheduler_requeues:  # submitit owns requeueing; Lightning's own handler stays off
        from lightning.pytorch.plugins.environments import SLURMEnvironment  # (not an attribute of L.pytorch.plugins)

        plugins.append(SLURMEnvironment(auto_requeue=False))
    return L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=_strategy(cfg),
        precision=cfg.trainer.precision,
        max_steps=steps,
        val_check_interval=min(cfg.eval.every_n_steps, steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=cfg.optim.grad_clip or None,
        logger=loggers or False,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_checkpointing=False,  # (Lightning's own ModelCheckpoint: ours is atomic and names its cell)
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        plugins=plugins or None,
        default_root_dir=str(out),
    )


def train(cfg: DictConfig, out: Path, label: str, res: Resources, loggers: list, resume: str | None = "auto") -> tuple[record.Record, bool]:
    """Train one cell; returns (its record, status completed or diverged; whether this process is the
    cell's global rank 0). The trackers it starts (rank 0) are appended to `loggers` for the caller to
    finish. `resume`: the checkpoint to continue from, or "auto" (this cell's usable last.ckpt)."""
    import lightning as L
    import torch

    from proxyscale.job import ranks
    from proxyscale.job.module import CausalLM, Monitor, eval_loaders, train_loader

    quiet_lightning()
    world = world_size(cfg)
    local_ranks = world > 1 and not res.ranks_started  # this machine runs every rank: rank 0 starts the others
    # This machine's cores are shared by the workers' cells and by this cell's processes on it: all of its ranks when
    # rank 0 starts them, trainer.devices tasks per node under srun (launch.slurm.shape).
    threads = res.threads or budget.threads_per_worker(cfg, res.workers * (world if local_ranks else int(cfg.trainer.devices) if world > 1 else 1))
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # denormals slowed high-LR CPU runs ~1.7x
    t_start = time.perf_counter()

    resume_from = resume
    if resume == "auto":
        last = usable_checkpoint(out) if res.rank == 0 or not checkpoint_path(out).exists() else checkpoint_path(out)
        resume_from = str(last) if last else None
    if resume_from:
        saved = torch.load(resume_from, map_location="cpu", weights_only=False, mmap=True)  # (its tensors are not read here)
        problem = resume_problem(saved.get(record.CKPT_PLACEMENT), placement(cfg))  # (the planner refused it already; a job started otherwise)
        if problem:
            raise C.ConfigError(f"{resume_from}: {problem}")
        start = int(saved["global_step"])
        log.info(f"{label} resuming from step {start} ({resume_from})")
    else:
        start = 0

    data = _load_data(cfg)
    base = _null_baselines(cfg, data) if res.rank == 0 else {}  # (a cache: rank 0's to write, and only its record reads them)
    steps, per_step = budget.plan_steps(cfg, data.vocab_size)

    L.seed_everything(cfg.seed, verbose=False)
    module = CausalLM(cfg, data.vocab_size, steps, list(data.evals), data.tasks)
    params = sum(p.numel() for p in module.parameters())
    assert params == budget.n_params(cfg.model, data.vocab_size), "closed-form parameter count disagrees with the model"

    def on_eval(point):  # (rank 0) the point is the one Monitor keeps in its curve: the task sets' metrics join it here
        if data.tasks:
            point["metrics"] = module.eval_metrics()
        losses = " ".join(
            [f"{k}={v:.3f}" for k, v in point["loss"].items()] + [f"{k}/{m}={v:.3f}" for k, ms in point.get("metrics", {}).items() for m, v in ms.items()]
        )
        log.info(f"{label} step {point['step']}/{steps} eval {losses}")

    monitor = Monitor(per_step, cfg.trainer.log_every_n_steps, cfg.trainer.diverge_delta, int(cfg.optim.warmup_frac * steps), on_eval, placement(cfg))
    if res.rank == 0:
        loggers.extend(tracking.loggers(cfg, out))
    from proxyscale.data.tokenizer import Tokenizer

    val = eval_loaders(data.evals, cfg.trainer.seq_len, cfg.eval.batch_size, data.tasks, Tokenizer(cfg.data.tokenizer).eos)
    module.set_eval_shape(val)
    group = ranks.local_group(out, world, threads, resume_from) if local_ranks and res.rank == 0 else contextlib.nullcontext()
    with _threads_kept(threads), group:
        trainer = _trainer(cfg, out, steps, monitor, loggers, res, local_ranks)
        trainer.fit(module, train_dataloaders=train_loader(data.pool, cfg, steps, start), val_dataloaders=list(val), ckpt_path=resume_from)
        if not monitor.diverged and (not monitor.eval_curve or monitor.eval_curve[-1]["step"] != trainer.global_step):
            trainer.validate(module, dataloaders=list(val), verbose=False)

        examples_file = None
        if not monitor.diverged:  # (every rank: the eval is gathered, so every rank decides the same)
            if not _complete(module.example_losses(), data, cfg, module.example_metrics()):  # resumed after its last eval: score them again
                trainer.validate(module, dataloaders=list(val), verbose=False)
            losses, metrics = module.example_losses(), module.example_metrics()
            if res.rank == 0 and trainer.is_global_zero and _complete(losses, data, cfg, metrics):
                examples_file = write_examples(out, losses, metrics)
                write_snippets(out.parent, cfg, data)

    done = trainer.global_step
    rec = _record(
        cfg,
        out,
        "diverged" if monitor.diverged else "completed",
        data,
        base,
        params=params,
        tokens=done * per_step,
        steps=done,
        final_loss=monitor.eval_curve[-1]["loss"] if monitor.eval_curve and not monitor.diverged else {},
        final_metrics=(monitor.eval_curve[-1].get("metrics") or {}) if monitor.eval_curve and not monitor.diverged else {},
        eval_curve=monitor.eval_curve,
        train_curve=monitor.train_curve,
        wall_seconds=time.perf_counter() - t_start,
        train_seconds=monitor.train_seconds,
        tokens_per_second=done * per_step / max(monitor.train_seconds, 1e-9),
        flops_per_token=budget.flops_per_token(cfg.model, data.vocab_size, cfg.trainer.seq_len),
        error=monitor.diverged,
        requeues=monitor.resumes,
        eval_seconds=monitor.eval_seconds,
        examples_file=examples_file,
        placements=monitor.placements,
    )
    return rec, trainer.is_global_zero


# ---------------------------------------------------------------------------------------------
# per-example losses (issue 16)


def _complete(losses: dict, data: _Data, cfg: DictConfig, metrics: dict | None = None) -> bool:
    """Every eval set has a loss for each of its windows (eval_windows: len(tokens) // (seq_len + 1)), and every
    task set a score for each of its items."""
    import numpy as np

    tasks = data.tasks or {}
    return (
        set(losses) == set(data.evals)
        and all(len(losses[k]) == len(t) // (cfg.trainer.seq_len + 1) for k, t in data.evals.items())
        and all(k in (metrics or {}) and np.isfinite(metrics[k]["ll_norm"]).all() for k in tasks)
    )


def _arrow(values):
    """A numpy vector as an Arrow array over its memory (made contiguous first: a strided view's buffer would be read
    as packed values). Not pa.array: to check its argument, that imports pandas (about 0.33 s), which nothing else in
    a cell's process needs."""
    import numpy as np
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def _arrow_strings(items: list[str]):
    """A list of str as an Arrow string array (offsets and UTF-8 bytes), without pa.array (see _arrow)."""
    import numpy as np
    import pyarrow as pa

    data = [s.encode() for s in items]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in data])]).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), len(items), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


def write_examples(out: Path, losses: dict, metrics: dict | None = None) -> str:
    """`<run_dir>/examples.parquet`, atomically: a row per (eval set, example) with eval_set (dictionary-encoded
    string), example (int32, the window's index in eval_windows) and loss (float32, mean nats/token of the
    window's seq_len predictions) from the final eval pass. With task sets, a row per (task set, item, metric) too,
    and two more columns: metric (dictionary-encoded: loss on the lm rows, acc / prob_correct / ll_norm) and value
    (float32: the task metric; NaN on loss rows, whose number is `loss`, as `loss` is NaN on task rows). Returns its
    name relative to the run dir (the record's examples_file)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from proxyscale.data.tasks import METRICS

    parts = [(name, "loss", np.asarray(v, dtype=np.float32)) for name, v in losses.items()]
    parts += [(name, m, np.asarray(per[m], dtype=np.float32)) for name, per in (metrics or {}).items() for m in METRICS]
    names = list(dict.fromkeys(p[0] for p in parts))
    kinds = ["loss", *METRICS]
    codes = np.concatenate([np.full(len(v), names.index(n), dtype=np.int8) for n, _, v in parts])
    mcodes = np.concatenate([np.full(len(v), kinds.index(m), dtype=np.int8) for _, m, v in parts])
    values = np.concatenate([v for _, _, v in parts])
    nan = np.float32("nan")
    columns = {
        "eval_set": pa.DictionaryArray.from_arrays(_arrow(codes), _arrow_strings(names)),
        "example": _arrow(np.concatenate([np.arange(len(v), dtype=np.int32) for _, _, v in parts])),
        "loss": _arrow(np.where(mcodes == 0, values, nan).astype(np.float32)),
    }
    if metrics:  # (a cell without task sets writes the three columns it always did)
        columns["metric"] = pa.DictionaryArray.from_arrays(_arrow(mcodes), _arrow_strings(kinds))
        columns["value"] = _arrow(np.where(mcodes == 0, nan, values).astype(np.float32))
    table = pa.Table.from_arrays(list(columns.values()), names=list(columns))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    record.atomic_write_bytes(out / record.EXAMPLES, sink.getvalue().to_pybytes())
    return record.EXAMPLES


SNIPPET_CHARS = 80


def snippet_path(sweep_dir: Path, eval_set: str, key: str, seq_len: int) -> Path:
    return Path(sweep_dir) / record.SNIPPETS / f"{eval_set}-{key}-L{seq_len}.json"


def write_snippets(sweep_dir: Path, cfg: DictConfig, data: _Data) -> None:
    """Once per (eval cache, seq_len) in the sweep (skipped when present; atomic): each example's first
    SNIPPET_CHARS characters of decoded text, whitespace collapsed, so the report shows them without a tokenizer."""
    import json

    seq_len = int(cfg.trainer.seq_len)
    for name, tt in (data.tasks or {}).items():  # a task set's examples are its items: their contexts' last characters
        path = snippet_path(sweep_dir, name, data.eval_keys[name], seq_len)
        if not path.exists():
            texts = [" ".join(c.split())[-SNIPPET_CHARS:] for c in tt.contexts]
            record.atomic_write_text(
                path,
                json.dumps(
                    {
                        "eval_set": name,
                        "eval_cache_key": data.eval_keys[name],
                        "seq_len": seq_len,
                        "tokenizer": cfg.data.tokenizer,
                        "n_examples": len(texts),
                        "snippets": texts,
                    },
                    ensure_ascii=False,
                ),
            )
    todo = {k: t for k, t in data.evals.items() if not snippet_path(sweep_dir, k, data.eval_keys[k], seq_len).exists()}
    if not todo:
        return
    decode = _decoder(cfg.data.tokenizer)
    for name, tokens in todo.items():
        n = len(tokens) // (seq_len + 1)
        texts = [" ".join(decode(tokens[i * (seq_len + 1) : i * (seq_len + 1) + SNIPPET_CHARS]).split())[:SNIPPET_CHARS] for i in range(n)]
        doc = {
            "eval_set": name,
            "eval_cache_key": data.eval_keys[name],
            "seq_len": seq_len,
            "tokenizer": cfg.data.tokenizer,
            "n_examples": n,
            "snippets": texts,
        }
        record.atomic_write_text(snippet_path(sweep_dir, name, data.eval_keys[name], seq_len), json.dumps(doc, ensure_ascii=False))


def _decoder(spec: str):
    """Token ids -> text: UTF-8 bytes for the byte tokenizer (end of document shown as ' | '), else the tokenizer's decode."""
    from proxyscale.data.tokenizer import BYTE_EOS, Tokenizer

    if spec == "byte":
        return lambda ids: bytes(int(t) if t < BYTE_EOS else 0x7C for t in ids).decode("utf-8", "replace")
    tok = Tokenizer(spec)._hf
    return lambda ids: tok.decode([int(t) for t in ids])


def _record(cfg: DictConfig, out: Path, status: str, data: _Data | None = None, base: dict | None = None, **values) -> record.Record:
    """The cell's record: what it measured plus what every consumer needs (eval set names, cache keys,
    null baselines, tracker settings), so none of them re-reads the config."""
    fields = dict(
        params=0,
        tokens=0,
        steps=0,
        final_loss={},
        final_metrics={},
        eval_curve=[],
        train_curve=[],
        wall_seconds=0.0,
        train_seconds=0.0,
        tokens_per_second=0.0,
        flops_per_token=0.0,
    )
    fields.update(values)
    return record.Record(
        run_id=out.name,
        sweep=cfg.sweep,
        status=status,
        size=cfg.model.name,
        recipe=cfg.data.name,
        lr=float(cfg.optim.lr),
        seed=int(cfg.seed),
        tokenizer=cfg.data.tokenizer,
        config=C.plain(cfg),
        versions=_versions(),
        eval_sets=[s.name for s in cfg.eval.sets],
        cache_keys={"pool": data.pool_key, "eval": dict(data.eval_keys)} if data else {},
        baselines=base or {},
        tracking=tracking.settings(cfg, out.name),
        extra={"identity_env": identity.environment(C.plain(cfg))},
        **fields,
    )


def run_cell(cfg: DictConfig, res: Resources = Resources()) -> record.Record | None:
    """Skip-or-train one cell and write its record; returns the record, or None when another
    process holds the cell (two sweeps over one folder never train a cell twice)."""
    out = run_dir(cfg)
    label = f"{res.position}{out.name}".strip()
    if record.is_completed(out):
        rec = record.read(out)
        log.info(f"{label} skip: already {rec.status}")
        return rec
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / ".lock"))  # an flock: released by the OS if this process dies
    if res.rank == 0:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info(f"{label} skip: running in another process")
            return None
    try:
        return _run_locked(cfg, out, label, res)
    finally:
        if lock.is_locked:
            lock.release()


def _run_locked(cfg: DictConfig, out: Path, label: str, res: Resources) -> record.Record:
    if record.is_completed(out):  # finished by another process while we waited for the lock
        return record.read(out)
    if res.rank == 0:  # (the other ranks of a local multi-process cell read it)
        record.atomic_write_text(out / "config.yaml", yaml.safe_dump(C.plain(cfg), sort_keys=False))
    log.info(f"{label} start")
    t0 = time.perf_counter()
    loggers: list = []
    writer = res.rank == 0
    try:
        rec, global_zero = train(cfg, out, label, res, loggers)
        writer = writer and global_zero
    except Exception as exc:  # the cell failed; the sweep goes on
        rec = _record(cfg, out, "failed", wall_seconds=time.perf_counter() - t0, error=traceback.format_exc())
        log.error(f"{label} FAILED: {type(exc).__name__}: {exc} (see {out / record.RESULT})")
    except BaseException:  # interrupted: the trackers still close, as failed
        tracking.finish(loggers, _record(cfg, out, "failed", wall_seconds=time.perf_counter() - t0, error=traceback.format_exc()))
        raise
    tracking.finish(loggers, rec)
    if writer:  # a multi-process cell (ddp/fsdp under srun): one record, from rank 0
        record.write(out, rec)
        if rec.status in ("completed", "diverged") and not cfg.trainer.keep_checkpoints:
            _drop_checkpoints(out)
    if rec.status == "completed":
        losses = " ".join(
            [f"{k}={v:.3f}" for k, v in rec.final_loss.items()] + [f"{k}/{m}={v:.3f}" for k, ms in (rec.final_metrics or {}).items() for m, v in ms.items()]
        )
        log.info(f"{label} completed in {rec.wall_seconds:.1f}s ({rec.tokens_per_second / 1e3:.0f}k tok/s) {losses}")
    elif rec.status == "diverged":
        log.warning(f"{label} DIVERGED: {rec.error}")
    return rec


def rank_main(argv: list[str]) -> int:
    """A rank > 0 of a cell rank 0 started: train it from RUN_DIR/config.yaml; no lock, record or tracker."""
    import signal

    from omegaconf import OmegaConf

    from proxyscale.job import ranks

    out, rank, threads, resume = Path(argv[0]), int(argv[1]), int(argv[2]), argv[3] or None
    ranks.die_with_parent()

    def stop(signum, frame):
        os._exit(128 + signum)  # the cell is rank 0's: nothing of this rank's is worth keeping

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # rank 0 logs the cell
    try:
        cfg = OmegaConf.create(yaml.safe_load((out / "config.yaml").read_text()))
        train(cfg, out, f"{out.name} rank {rank}", Resources(threads=threads, rank=rank), [], resume=resume)
    except Exception:
        record.atomic_write_text(out / ranks.ERROR_FILE.format(rank=rank), traceback.format_exc())
        return 1
    return 0
