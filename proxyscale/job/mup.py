"""µP (maximal update parametrization) for the ladder's Llama decoders, as one small rule.

`model.parametrization=mup` applies the Adam rule of Yang et al. 2022 (Tensor Programs V, table 3
with the output-multiplier form of table 8, the form the `mup` package implements) so that the best
learning rate and the activation scale after training stay put as the width grows. The width
multiplier is m = d_model / model.mup_base_width; at m = 1 µP's init, learning rates and output
scale equal the standard ones, and only the attention scale differs (1/d_head instead of
1/sqrt(d_head), at every width).

| parameters                                   | init std        | Adam lr     | forward            |
|----------------------------------------------|-----------------|-------------|--------------------|
| embedding (input; tied readout, see below)   | 0.02            | lr          |                    |
| hidden matrices: q, k, v, o, gate, up, down  | 0.02 / sqrt(m)  | lr / m      |                    |
| RMSNorm gains (no biases in these models)    | 1               | lr          |                    |
| readout (lm_head)                            | as the embedding| lr          | logits x 1/m       |
| attention                                    |                 |             | QK^T / d_head      |

Standard parametrization (the default) is transformers' Llama: every matrix std 0.02, one lr,
QK^T / sqrt(d_head). Under µP the hidden init std is proportional to 1/sqrt(fan_in) (every hidden
fan-in, d_model or d_ff, grows with m when d_ff / d_model is fixed, as in the w* rungs).

Tied embeddings stay tied: the shared matrix is treated as the input embedding (vector-like: lr
and init unscaled) and the readout's 1/m comes from a multiplier on the logits, as the `mup`
package's MuSharedReadout does. An untied lm_head gets the same: std 0.02, lr unscaled, logits x
1/m (not zero-initialised). AdamW's decoupled weight decay is multiplied by the group's lr, so it
shrinks with the hidden lr (as in `mup.MuAdamW`).
"""

from __future__ import annotations

import functools
import math

from proxyscale.config import ModelConfig

BASE_STD = 0.02  # transformers' LlamaConfig.initializer_range, the standard init of every matrix
HIDDEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def enabled(m: ModelConfig) -> bool:
    return getattr(m, "parametrization", "standard") == "mup"  # (configs from before µP lack the key)


def width_mult(m: ModelConfig) -> float:
    """m = d_model / mup_base_width (1.0 under standard parametrization)."""
    return m.d_model / m.mup_base_width if enabled(m) else 1.0


def is_hidden(name: str) -> bool:
    """A hidden (matrix-like: both dimensions grow with width) weight, by parameter name; works on
    the plain model's names and on prefixed ones (CausalLM's `net.`, compile and FSDP wrappers)."""
    parts = name.split(".")
    return len(parts) >= 2 and parts[-1] == "weight" and parts[-2] in HIDDEN


def lr_mult(m: ModelConfig):
    """name -> multiplier of optim.lr: 1/m for hidden matrices, 1 for everything else."""
    mult = width_mult(m)
    return lambda name: 1.0 / mult if is_hidden(name) else 1.0


def apply(net, m: ModelConfig) -> None:
    """Turn a freshly built standard model into its µP version in place: hidden init, attention
    scale, readout multiplier. (The learning rates are optim.configure's, through `lr_mult`.)"""
    import torch

    mult = width_mult(m)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if is_hidden(name):
                p.normal_(0.0, BASE_STD / math.sqrt(mult))
    for layer in net.model.layers:
        layer.self_attn.scaling = 1.0 / layer.self_attn.head_dim  # read by the sdpa and eager paths
    net.lm_head.register_forward_hook(functools.partial(_scale_logits, factor=1.0 / mult))


def _scale_logits(module, inputs, logits, *, factor: float):
    """lm_head forward hook (a module-level function, so that the model still pickles)."""
    return logits * factor
