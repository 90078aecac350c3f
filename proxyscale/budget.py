"""What a cell costs before it runs: parameter counts, FLOPs, steps, threads and CPU time.

A leaf module (no torch, no Hydra runtime): the planner prints cost tables from it and the job
plans its steps and threads with the same functions, so the estimate and the run never disagree.
"""

from __future__ import annotations

import glob
import os

from omegaconf import DictConfig, OmegaConf

from proxyscale.config import CONF_DIR, ModelConfig

# Cost model of one CPU thread, fitted (relative error) to bench_train's steps, debug to base, on
# the 2-core development machine (fp32, batch 32 x 128 tokens): seconds per step = overhead +
# training FLOPs (flops_per_token) / rate.
CPU_STEP_OVERHEAD_S = 0.023
CPU_FLOPS_PER_S = 6.8e10
BYTE_VOCAB = 257
BPE_VOCAB = 50_304  # the vocabulary assumed for cost estimates of a non-byte tokenizer


def n_params(m: ModelConfig, vocab_size: int) -> int:
    """Exact parameter count of `job.model.build(m, vocab_size)`."""
    kv = m.n_kv_head or m.n_head
    head_dim = m.d_model // m.n_head
    attn = m.d_model * m.d_model * 2 + m.d_model * kv * head_dim * 2  # q, o + k, v
    mlp = 3 * m.d_model * m.d_ff  # SwiGLU gate, up, down
    norms = 2 * m.d_model
    embed = vocab_size * m.d_model * (1 if m.tie_embeddings else 2)
    return m.n_layer * (attn + mlp + norms) + embed + m.d_model


def flops_per_token(m: ModelConfig, vocab_size: int, seq_len: int) -> float:
    """Training FLOPs per token, as MFU is usually counted (PaLM, appendix B): 6 x (non-embedding
    params + output head) plus attention, whose QK^T and AV each take 2 x seq_len x d_model FLOPs
    per token and layer in the forward pass, x3 for forward + backward; causal masking is not
    discounted."""
    dense = n_params(m, vocab_size) - vocab_size * m.d_model * (1 if m.tie_embeddings else 2) + vocab_size * m.d_model
    return 6 * dense + 12 * m.n_layer * seq_len * m.d_model


def ladder() -> dict[str, ModelConfig]:
    """Every size in conf/model/, by name."""
    out = {}
    for path in sorted(glob.glob(os.path.join(CONF_DIR, "model", "*.yaml"))):
        node = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path))
        out[node.name] = node
    return out


def cores() -> int:
    """The cores this process may run on: its CPU affinity (a SLURM task's or a container's share), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (macOS)
        return os.cpu_count() or 1


def threads_per_worker(cfg: DictConfig, workers: int) -> int:
    """trainer.threads, or (when 0) the cores this process may use shared evenly among the `workers` processes that
    train at once beside it (cells, and the ranks of a multi-process cell on this machine)."""
    return cfg.trainer.threads or max(1, cores() // workers)


def plan_steps(cfg: DictConfig, vocab_size: int) -> tuple[int, int]:
    """(steps, tokens_per_step) from the token budget: max_tokens, else params x tokens_per_param."""
    t = cfg.trainer
    per_step = t.batch_size * t.seq_len
    budget = t.max_tokens if t.max_tokens is not None else int(n_params(cfg.model, vocab_size) * t.tokens_per_param)
    return max(1, budget // per_step), per_step


def cost(cfg: DictConfig, workers: int = 1) -> dict:
    """Params, tokens, FLOPs and an estimated time on this machine for one cell, without torch."""
    vocab = BYTE_VOCAB if cfg.data.tokenizer == "byte" else BPE_VOCAB
    steps, per_step = plan_steps(cfg, vocab)
    fpt = flops_per_token(cfg.model, vocab, cfg.trainer.seq_len)
    evals = steps // cfg.eval.every_n_steps + 1
    eval_tokens = evals * len(cfg.eval.sets) * cfg.eval.tokens_per_set
    flops = fpt * steps * per_step + fpt / 3 * eval_tokens
    est = steps * CPU_STEP_OVERHEAD_S + flops / (CPU_FLOPS_PER_S * threads_per_worker(cfg, workers))
    return {"params": n_params(cfg.model, vocab), "tokens": steps * per_step, "steps": steps, "flops": flops, "est_seconds": est}
