"""The typed schema of one training cell, and the value checks Hydra's types cannot express.

Hydra merges `conf/` into these dataclasses, so a misspelt key or a string where a number belongs
fails at composition. `validate` then checks values (lr > 0, weights >= 0, ...) so a whole grid can
be rejected with one line before any cell trains.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from proxyscale.errors import UserError

CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")


class ConfigError(UserError):
    """A problem in the user's configuration; its message is the one line the CLI prints."""


@dataclass
class ModelConfig:
    """One rung of the size ladder (conf/model/<name>.yaml); a Llama-style decoder."""

    name: str = MISSING  # registry name, used in run ids and reports
    n_layer: int = MISSING  # depth: the one knob that grows a size
    d_model: int = MISSING  # hidden width
    n_head: int = MISSING  # attention heads (d_model must divide evenly)
    d_ff: int = MISSING  # SwiGLU inner width
    n_kv_head: Optional[int] = None  # grouped-query heads; None = n_head
    tie_embeddings: bool = True  # share input embedding and output head
    rope_theta: float = 10000.0
    parametrization: str = "standard"  # standard | mup (maximal update parametrization, proxyscale/job/mup.py)
    mup_base_width: int = 64  # mup only: the d_model at which mup equals standard init and lr (width multiplier = d_model / this)


@dataclass
class SourceConfig:
    """Where documents come from: a built-in offline corpus, a hub dataset, or local files."""

    name: str = MISSING  # label of this source inside the recipe / eval set name
    kind: str = "builtin"  # builtin | hf | files
    path: Optional[str] = None  # builtin corpus name, hub dataset id, or local file/glob; None = name
    config_name: Optional[str] = None  # hub dataset configuration
    split: str = "train"  # hub / local split
    text_field: str = "text"  # column holding the document text
    format: Optional[str] = None  # files only: json | jsonl | parquet | text (default: from suffix)
    weight: float = 1.0  # mixture weight (normalised over the recipe's sources)
    max_docs: Optional[int] = None  # read at most this many documents (streams hub datasets); task sets: items
    # Eval sets only: what is scored (proxyscale/data/tasks.py). lm = mean next-token loss of the text (the default);
    # mc = multiple choice (a context and candidate continuations, one correct); cloze = a context and one target continuation.
    task: str = "lm"  # lm | mc | cloze
    context_field: str = "context"  # mc/cloze: the column holding the context (dotted paths reach nested fields: a.b.0)
    context_template: Optional[str] = None  # mc/cloze: a str.format template over the row's fields instead, e.g. "{question}\nAnswer:"
    choices_field: str = "choices"  # mc: the column holding the list of candidate continuations
    label_field: str = "label"  # mc: the column holding the 0-based index of the correct choice
    target_field: str = "target"  # cloze: the column holding the target continuation
    cloze_last_word: bool = False  # cloze: the context field's last word is the target (LAMBADA); target_field unused
    target_delimiter: str = " "  # mc/cloze: joins the (right-stripped) context and each continuation
    preprocess: Optional[str] = None  # mc: hellaswag = the harness's HellaSwag context and cleanup (activity_label, ctx_a, ctx_b, endings)


@dataclass
class DataConfig:
    """A data recipe: sources + mixture weights + ordered curation steps, tokenized once and cached."""

    name: str = MISSING  # recipe name, used in run ids and reports
    description: str = ""  # one line shown by `proxyscale recipes` and in the report
    tokenizer: str = "byte"  # byte (UTF-8 bytes, vocab 257) or a local HF tokenizer path
    pool_tokens: int = 1_500_000  # size of the recipe's token pool that training samples from
    repeat: bool = True  # allow a source to be cycled when curation leaves too few tokens
    seed: int = 0  # seed of document shuffling and stochastic curation steps
    sources: List[SourceConfig] = field(default_factory=list)
    steps: List[Dict[str, Any]] = field(default_factory=list)  # [{op: exact_dedup}, {op: ..., k: v}]
    # Subset sweeps (datamodels, proxyscale/analysis/datamodels.py): the curated documents fall into
    # subset_groups groups by a hash of (source name, document id), or with subset_by=source one group per
    # source (subset_groups = the number of sources); subset=i keeps each group with probability subset_frac,
    # seeded by i alone, so every size of a sweep trains on the same subsets.
    # keep_groups: an explicit list of groups instead (a selection's recipe). Both None: the whole pool.
    subset: Optional[int] = None
    subset_groups: int = 64
    subset_frac: float = 0.5
    subset_by: str = "document"  # document | source
    keep_groups: Optional[List[int]] = None


@dataclass
class EvalConfig:
    """Held-out eval sets, identical for every recipe, evaluated periodically and at the end."""

    sets: List[SourceConfig] = field(default_factory=list)  # builtin sets use the held-out side
    tokens_per_set: int = 32768  # tokens scored per eval set
    every_n_steps: int = 50  # periodic eval interval (the loss curve for early-signal analysis)
    batch_size: int = 64  # eval windows per forward pass


@dataclass
class OptimConfig:
    """AdamW (a `_partial_` target) and its learning-rate schedule."""

    lr: float = 3e-3  # peak learning rate: the axis of the reduced-LR protocol
    optimizer: Dict[str, Any] = field(default_factory=lambda: {"_target_": "torch.optim.AdamW", "_partial_": True})
    schedule: str = "cosine"  # cosine | wsd | constant
    warmup_frac: float = 0.05  # fraction of steps warming up linearly from 0
    decay_frac: float = 0.2  # wsd only: fraction of steps in the final linear decay
    min_lr_frac: float = 0.1  # floor of the decay, as a fraction of lr
    grad_clip: float = 1.0  # max global grad norm; 0 disables


@dataclass
class TrainerConfig:
    """How long and on what a cell trains."""

    batch_size: int = 32  # sequences per optimizer step (global)
    seq_len: int = 128  # tokens per sequence
    tokens_per_param: float = 20.0  # token budget = params x this (Chinchilla: 20)
    max_tokens: Optional[int] = None  # fixed token budget; overrides tokens_per_param
    accelerator: str = "cpu"  # cpu | gpu | auto
    devices: int = 1  # devices per node
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp
    precision: str = "32-true"  # Lightning precision, e.g. bf16-mixed on GPUs
    compile: bool = False  # torch.compile the model (GPU cells; on CPUs compiling costs more than it saves)
    threads: int = 0  # torch threads per process (each rank of a multi-process cell); 0 = its cores / the processes training beside it
    diverge_delta: float = 1.0  # smoothed train loss this far (nats) above its best = diverged
    log_every_n_steps: int = 25  # train-loss points kept in the record
    checkpoint: bool = True  # save last.ckpt (atomically, with the run id inside) after every periodic eval, so an interrupted cell resumes
    keep_checkpoints: bool = False  # keep checkpoints/ once the cell's record is final (default: removed)
    pg_timeout_s: float = 1800.0  # a multi-process cell: a collective waiting this long for a rank (dead, hung) fails the cell


@dataclass
class LoggerConfig:
    """Experiment tracker for per-step metrics; the record is written regardless."""

    kind: str = "none"  # none | csv | tensorboard | wandb (see proxyscale/tracking.py)
    # wandb only (the other kinds ignore these):
    project: str = "proxyscale"  # W&B project
    entity: Optional[str] = None  # W&B user or team; None = the API key's default entity
    mode: str = "offline"  # offline (default: files only) | online (needs WANDB_API_KEY in the env) | disabled
    dir: Optional[str] = None  # folder that gets wandb/offline-run-*; None = <output_dir>/<sweep>
    group: Optional[str] = None  # W&B group; None = the sweep name
    tags: List[str] = field(default_factory=list)  # extra tags besides size:/recipe:/lr:/seed:


@dataclass
class PathsConfig:
    output_dir: str = "outputs"  # sweeps land in <output_dir>/<sweep>/<run_id>/
    cache_dir: str = "outputs/.cache"  # tokenized recipe and eval caches, shared by all sweeps
    verify_caches: bool = False  # re-hash every token cache on open (its length is always checked)


@dataclass
class Config:
    """One training cell. A sweep is a grid of these."""

    sweep: str = "default"  # sweep name: the folder under output_dir and the report's title
    seed: int = 0  # model init and batch order
    standard_lr: Optional[float] = None  # the LR a team would use untuned (the reduced-LR protocol's fixed target); None = optim.lr of the sweep's base config
    dry_run: bool = False  # print the cost table of the grid and train nothing
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


def register_schema() -> None:
    ConfigStore.instance().store(name="config_schema", node=Config)


register_schema()

# Keys that change how a cell runs but not what it computes: left out of the run id.
_NOT_IDENTITY = {"sweep", "dry_run", "logger", "paths", "standard_lr"}
_NOT_IDENTITY_TRAINER = {"threads", "log_every_n_steps", "checkpoint", "keep_checkpoints", "accelerator", "compile", "pg_timeout_s"}
# Where a cell runs: a cell gives the same record on any number of processes, devices or nodes (docs/targets.md), so these
# keys enter the identity at their one-process values. (Not dropped: every one-process cell keeps the run id it had.)
PLACEMENT = {"devices": 1, "num_nodes": 1, "strategy": "auto"}


TASK_DEFAULTS = {
    "task": "lm",
    "context_field": "context",
    "context_template": None,
    "choices_field": "choices",
    "label_field": "label",
    "target_field": "target",
    "cloze_last_word": False,
    "target_delimiter": " ",
    "preprocess": None,
}


SUBSET_KEYS = ("subset", "subset_groups", "subset_frac", "subset_by", "keep_groups")


def data_identity(data: dict) -> dict:
    """A plain recipe without its subset keys when it uses no subset: they enter run ids and cache keys only
    for subset cells, so the ids of every cell from before subset sweeps stay what they were."""
    if data.get("subset") is None and data.get("keep_groups") is None:
        return {k: v for k, v in data.items() if k not in SUBSET_KEYS}
    return dict(data)


def subset_members(data: dict) -> list[int] | None:
    """The groups a recipe's subset keeps (sorted), None when it keeps the whole pool. Subset i keeps each of
    the subset_groups groups with probability subset_frac, drawn by numpy's PCG64 seeded by i only."""
    if data.get("keep_groups") is not None:
        return sorted({int(g) for g in data["keep_groups"]})
    if data.get("subset") is None:
        return None
    import numpy as np

    draw = np.random.default_rng(int(data["subset"])).random(int(data.get("subset_groups") or 64))
    kept = [int(g) for g in np.flatnonzero(draw < float(data.get("subset_frac", 0.5)))]
    return kept or [int(np.argmin(draw))]  # a draw that keeps nothing keeps its lowest group: no subset is empty


def source_identity(src: dict) -> dict:
    """A plain source without its task keys at their defaults: the task keys enter run ids and cache keys only
    when a source sets one, so the ids of every cell from before benchmark tasks stay what they were."""
    return {k: v for k, v in src.items() if not (k in TASK_DEFAULTS and v == TASK_DEFAULTS[k])} if isinstance(src, dict) else src


def identity(cfg: DictConfig) -> dict:
    """The part of a cell's config that determines its result (without the environment's part)."""
    return identity_of(plain(cfg))


def identity_of(config: dict, placement: bool = False) -> dict:
    """`identity` of a plain (resolved) config, such as a record's `config`. With `placement`, the identity records
    written before placement left it had: the config's own devices, num_nodes and strategy."""
    out = {k: v for k, v in config.items() if k not in _NOT_IDENTITY and k != "hydra"}
    trainer = {k: v for k, v in (out.get("trainer") or {}).items() if k not in _NOT_IDENTITY_TRAINER}
    out["trainer"] = trainer if placement else {k: PLACEMENT.get(k, v) for k, v in trainer.items()}
    out["data"] = data_identity({k: v for k, v in (out.get("data") or {}).items() if k != "description"})
    if "sources" in out["data"]:
        out["data"]["sources"] = [source_identity(s) for s in out["data"]["sources"] or []]
    if isinstance(out.get("eval"), dict) and "sets" in out["eval"]:
        out["eval"] = {**out["eval"], "sets": [source_identity(s) for s in out["eval"]["sets"] or []]}
    model = out.get("model") or {}
    if model.get("parametrization", "standard") == "standard":  # µP's keys enter the id only when µP is on
        out["model"] = {k: v for k, v in model.items() if k not in ("parametrization", "mup_base_width")}
    return out


def _plain(node):
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def plain(cfg: DictConfig) -> dict:
    """The resolved cell config without Hydra's own node."""
    return {k: _plain(cfg[k]) for k in cfg if k != "hydra"}


class AttrDict(dict):
    """A plain config read like a DictConfig (cfg.model.n_layer): the planner validates and costs
    thousands of cells on these, ~20x faster than through OmegaConf's nodes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def attrs(obj: Any) -> Any:
    """A plain (resolved) config as nested AttrDicts."""
    if isinstance(obj, dict):
        return AttrDict({k: attrs(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return [attrs(v) for v in obj]
    return obj


def run_id_of(config: dict, env: dict | None, placement: bool = False) -> str:
    """The run id of a plain config in an environment (None: the id before environments were part of
    it, to check records written then; `placement`: the id before placement left it, see identity_of)."""
    ident = identity_of(config, placement)
    if env is not None:
        ident = {**ident, "environment": env}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
    subset = config["data"].get("subset")
    recipe = config["data"]["name"] + (f"-sub{subset}" if subset is not None else "")
    return f"{config['model']['name']}-{recipe}-lr{config['optim']['lr']:g}-s{config['seed']}-{digest}"


MAX_NAME = 100  # a run id (size-recipe-lr-seed-digest) stays well below the 255-byte file name limit
RESERVED_NAMES = {"grid.json", "results.parquet", "curves.parquet", "report", "wandb"}


def unwritable(path: str | Path) -> str | None:
    """Why files cannot be made under `path` (its nearest existing folder is read-only or not ours), or None."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        return f"{p} is not a folder"
    return None if os.access(p, os.W_OK | os.X_OK) else f"{p} is not writable"


def check_name(kind: str, name: Any) -> None:
    """A sweep, recipe or size name becomes a folder name (outputs/<sweep>/<size>-<recipe>-...): one
    path component, not hidden (outputs/.cache holds the token caches), at most MAX_NAME characters."""
    text = str(name)
    problem = (
        "is empty"
        if not text
        else f"is {len(text)} characters long (at most {MAX_NAME})"
        if len(text) > MAX_NAME
        else "holds a '/' or '\\' (names are one folder, never a path)"
        if "/" in text or "\\" in text or "\0" in text
        else "starts with '.' (hidden and reserved names such as .cache are not allowed)"
        if text.startswith(".")
        else "is reserved"
        if text in RESERVED_NAMES
        else "holds a control character"
        if any(ord(ch) < 32 for ch in text)
        else None
    )
    if problem:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ConfigError(f"{kind} name {shown!r} {problem}")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError with one line for the first value that cannot train. Schema values only:
    the planner (grid.check_cell) adds the checks that need the data sources and the trackers."""
    m, d, o, t, e = cfg.model, cfg.data, cfg.optim, cfg.trainer, cfg.eval
    check_name("sweep", cfg.sweep)
    check_name("recipe", d.name)
    check_name("model", m.name)
    tok = d.tokenizer
    checks = [
        (0 <= cfg.seed <= 2**32 - 1, f"seed must be in [0, 2**32 - 1], got {cfg.seed}"),
        (d.seed >= 0, f"data.seed must be >= 0, got {d.seed}"),
        (
            tok == "byte" or os.path.exists(os.path.expanduser(str(tok))),
            f"data.tokenizer must be 'byte' or a local tokenizer folder (never downloaded), got {tok!r}",
        ),
        (
            m.n_kv_head is None or (m.n_kv_head > 0 and m.n_head % m.n_kv_head == 0),
            f"model {m.name}: n_kv_head {m.n_kv_head} does not divide n_head {m.n_head}",
        ),
        (o.grad_clip >= 0, f"optim.grad_clip must be >= 0 (0 disables), got {o.grad_clip}"),
        (0 <= o.min_lr_frac <= 1, f"optim.min_lr_frac must be in [0, 1], got {o.min_lr_frac}"),
        (t.diverge_delta > 0, f"trainer.diverge_delta must be > 0, got {t.diverge_delta}"),
        (t.log_every_n_steps > 0, f"trainer.log_every_n_steps must be > 0, got {t.log_every_n_steps}"),
        (t.threads >= 0, f"trainer.threads must be >= 0 (0 = cores / workers), got {t.threads}"),
        (t.devices >= 1 and t.num_nodes >= 1, f"trainer.devices and trainer.num_nodes must be >= 1, got {t.devices} and {t.num_nodes}"),
        (e.batch_size > 0, f"eval.batch_size must be > 0, got {e.batch_size}"),
        (o.lr > 0 and math.isfinite(o.lr), f"optim.lr must be a finite number > 0, got {o.lr}"),
        (0 <= o.warmup_frac < 1, f"optim.warmup_frac must be in [0, 1), got {o.warmup_frac}"),
        (0 <= o.decay_frac <= 1, f"optim.decay_frac must be in [0, 1], got {o.decay_frac}"),
        (o.schedule in ("cosine", "wsd", "constant"), f"optim.schedule must be cosine, wsd or constant, got {o.schedule!r}"),
        (m.n_layer > 0 and m.d_model > 0 and m.n_head > 0 and m.d_ff > 0, f"model {m.name}: sizes must be positive"),
        (m.d_model % m.n_head == 0, f"model {m.name}: d_model {m.d_model} is not divisible by n_head {m.n_head}"),
        (m.parametrization in ("standard", "mup"), f"model.parametrization must be standard or mup, got {m.parametrization!r}"),
        (m.mup_base_width > 0, f"model.mup_base_width must be > 0 (the width multiplier is d_model / mup_base_width), got {m.mup_base_width}"),
        (t.batch_size > 0 and t.seq_len > 1, "trainer.batch_size must be > 0 and trainer.seq_len > 1"),
        (
            t.max_tokens is None or t.max_tokens >= t.batch_size * t.seq_len,
            f"trainer.max_tokens={t.max_tokens} is less than one batch ({t.batch_size * t.seq_len} tokens)",
        ),
        (
            t.batch_size % (t.devices * t.num_nodes) == 0,
            f"trainer.batch_size={t.batch_size} must divide evenly over devices x num_nodes = {t.devices * t.num_nodes} processes",
        ),
        (t.tokens_per_param > 0, f"trainer.tokens_per_param must be > 0, got {t.tokens_per_param}"),
        (t.strategy in ("auto", "ddp", "fsdp"), f"trainer.strategy must be auto, ddp or fsdp, got {t.strategy!r}"),
        (t.pg_timeout_s > 0, f"trainer.pg_timeout_s must be > 0, got {t.pg_timeout_s}"),
        (len(d.sources) > 0, f"recipe {d.name}: no sources"),
        (d.pool_tokens > 0, f"recipe {d.name}: pool_tokens must be > 0"),
        (d.subset is None or d.subset >= 0, f"data.subset must be >= 0, got {d.subset}"),
        (d.subset_groups >= 2, f"data.subset_groups must be >= 2, got {d.subset_groups}"),
        (0 < d.subset_frac < 1, f"data.subset_frac must be in (0, 1), got {d.subset_frac}"),
        (d.subset_by in ("document", "source"), f"data.subset_by must be document or source, got {d.subset_by!r}"),
        (
            d.subset_by == "document" or d.subset_groups == len(d.sources),
            f"data.subset_by=source: data.subset_groups must be the number of sources ({len(d.sources)}), got {d.subset_groups}",
        ),
        (d.subset is None or d.keep_groups is None, "data.subset and data.keep_groups exclude each other (a subset index or an explicit group list)"),
        (
            d.keep_groups is None or (len(d.keep_groups) > 0 and all(0 <= int(g) < d.subset_groups for g in d.keep_groups)),
            f"data.keep_groups must be a non-empty list of groups in [0, {d.subset_groups})",
        ),
        (
            d.pool_tokens <= 0 or d.pool_tokens >= t.seq_len + 2,
            f"recipe {d.name}: data.pool_tokens={d.pool_tokens} is less than one training window (trainer.seq_len + 2 = {t.seq_len + 2} tokens)",
        ),
        (len(e.sets) > 0, "eval.sets is empty: at least one eval set is needed"),
        (e.tokens_per_set >= t.seq_len + 1, f"eval.tokens_per_set must hold one sequence ({t.seq_len + 1} tokens)"),
        (e.every_n_steps > 0, "eval.every_n_steps must be > 0"),
        (
            cfg.standard_lr is None or (cfg.standard_lr > 0 and math.isfinite(cfg.standard_lr)),
            f"standard_lr must be a finite number > 0, got {cfg.standard_lr}",
        ),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    weights = [s.weight for s in d.sources]
    if any(w < 0 for w in weights):
        raise ConfigError(f"recipe {d.name}: negative mixture weight in {weights}")
    if sum(weights) <= 0:
        raise ConfigError(f"recipe {d.name}: mixture weights sum to zero")
    names = [s.name for s in d.sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"recipe {d.name}: duplicate source names {names}")
    for s in d.sources:
        if s.get("task", "lm") != "lm":
            raise ConfigError(f"recipe {d.name}: source {s.name!r} has task {s.task!r}; recipes train on text (task lm), benchmark tasks are eval sets")
    set_names = [s.name for s in e.sets]
    if len(set(set_names)) != len(set_names):
        raise ConfigError(f"eval.sets: duplicate eval set names {set_names}")
    for s in e.sets:
        if "/" in str(s.name):
            raise ConfigError(f"eval set name {s.name!r} holds a '/' (metric names are <eval set>/<metric>)")


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists -> {dotted.key: scalar}; lists of scalars stay lists, list items of
    dicts are indexed (data.sources.0.weight)."""
    if OmegaConf.is_config(obj):
        obj = OmegaConf.to_container(obj, resolve=True)
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        if not obj and prefix:
            out[prefix] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in obj):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}"))
    else:
        out[prefix] = list(obj) if isinstance(obj, tuple) else obj
    return out
