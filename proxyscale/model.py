"""The size ladder: named Llama-style decoders from conf/model/, built from config (no weights).

Parameter counts and FLOPs come from closed forms so the ladder and dry-run tables need no torch;
a test builds every registered size (on the meta device) and checks the count.
"""
from __future__ import annotations

import glob
import os
from omegaconf import OmegaConf

from proxyscale.config import CONF_DIR, ModelConfig


def n_params(m: ModelConfig, vocab_size: int) -> int:
    """Exact parameter count of `build(m, vocab_size)`."""
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


def build(m: ModelConfig, vocab_size: int, seq_len: int):
    """A freshly initialised transformers LlamaForCausalLM (never downloaded weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=m.d_model,
        num_hidden_layers=m.n_layer,
        num_attention_heads=m.n_head,
        num_key_value_heads=m.n_kv_head or m.n_head,
        intermediate_size=m.d_ff,
        max_position_embeddings=max(seq_len, 128),
        tie_word_embeddings=m.tie_embeddings,
        rope_theta=m.rope_theta,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        use_cache=False,
    )
    return LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa")


def registry() -> dict[str, ModelConfig]:
    """Every size in conf/model/, by name."""
    out = {}
    for path in sorted(glob.glob(os.path.join(CONF_DIR, "model", "*.yaml"))):
        node = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path))
        out[node.name] = node
    return out
