"""The size ladder: named Llama-style decoders from conf/model/, built from config (no weights).

Parameter counts and FLOPs are closed forms in proxyscale.budget (no torch); a test builds every
registered size (on the meta device) and checks the count. `model.parametrization=mup` builds the
same network in µP (proxyscale/job/mup.py): same parameters, rescaled init, attention and logits.
"""

from __future__ import annotations

from proxyscale.config import ModelConfig
from proxyscale.job import mup


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
    net = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa")
    if mup.enabled(m):
        mup.apply(net, m)
    return net
