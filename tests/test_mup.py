"""µP (model.parametrization=mup): the coordinate check, the rule's pieces, the run ids it leaves alone."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from proxyscale import config as C
from proxyscale.config import ModelConfig, OptimConfig
from proxyscale.data import identity
from proxyscale.job import mup, optim
from proxyscale.job.model import build

V, T, B, STEPS, LR = 64, 32, 8, 4, 1e-2
WIDTHS = [32, 64, 128, 256]


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)


def _width(width: int, parametrization: str) -> ModelConfig:
    return ModelConfig(name=f"w{width}", n_layer=2, d_model=width, n_head=2, d_ff=width * 5 // 2, parametrization=parametrization, mup_base_width=32)


def _activation_change(m: ModelConfig) -> tuple[float, float]:
    """Mean |change| of (first block's output in the residual stream, logits) on a fixed probe batch
    after STEPS AdamW steps at LR on random tokens (fixed seeds, one thread: deterministic)."""
    torch.manual_seed(0)
    net = build(m, V, T)
    o = OptimConfig(lr=LR, schedule="constant", warmup_frac=0.0)
    opt = optim.configure(net.named_parameters(), o, STEPS, mup.lr_mult(m))["optimizer"]
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, V, (B, T + 1), generator=g) for _ in range(STEPS)]
    probe = torch.randint(0, V, (B, T), generator=g)

    def acts():
        with torch.no_grad():
            out = net(input_ids=probe, output_hidden_states=True)
        return out.hidden_states[1], out.logits

    before = acts()
    for b in batches:
        logits = net(input_ids=b[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, V), b[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = acts()
    return tuple(float((a - b).abs().mean()) for a, b in zip(after, before))


@pytest.fixture(scope="module")
def coord_check():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {p: {w: _activation_change(_width(w, p)) for w in WIDTHS} for p in ("standard", "mup")}
    finally:
        torch.set_num_threads(threads)


def _spread(changes: dict, i: int) -> float:
    values = [c[i] for c in changes.values()]
    return max(values) / min(values)


def test_coordinate_check_mup_is_flat_in_width_standard_grows(coord_check):
    """Measured (widths 32..256, base 32): hidden change standard 0.031 -> 3.83 (x124), µP
    0.034 -> 0.026 (spread 1.33); logit change standard 0.19 -> 0.73 (x3.8), µP 0.18 -> 0.14 (1.30)."""
    std, mu = coord_check["standard"], coord_check["mup"]
    for i, what in enumerate(["hidden", "logits"]):
        assert _spread(mu, i) < 1.6, f"µP {what} change is not flat in width: {mu}"
    assert std[256][0] / std[32][0] > 20 and all(std[a][0] < std[b][0] for a, b in zip(WIDTHS, WIDTHS[1:])), std
    assert std[256][1] / std[32][1] > 3 and all(std[a][1] < std[b][1] for a, b in zip(WIDTHS, WIDTHS[1:])), std


def test_mup_init_readout_and_attention_scale():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        base = build(_width(256, "mup"), V, T)
        torch.manual_seed(0)
        std = build(_width(256, "standard"), V, T)
    q = base.model.layers[0].self_attn.q_proj.weight
    assert float(q.detach().std()) == pytest.approx(0.02 / 8**0.5, rel=0.05)  # m = 256 / 32 = 8
    assert float(base.model.embed_tokens.weight.detach().std()) == pytest.approx(0.02, rel=0.05)
    assert torch.equal(base.model.embed_tokens.weight, std.model.embed_tokens.weight)
    assert base.lm_head.weight is base.model.embed_tokens.weight  # still tied
    assert base.model.layers[0].self_attn.scaling == 1 / 128 and std.model.layers[0].self_attn.scaling == 128**-0.5


def test_attention_scale_is_honoured_by_sdpa_and_the_logits_carry_1_over_m():
    torch.manual_seed(0)
    net = build(_width(128, "mup"), V, T)
    x = torch.randint(0, V, (2, T))
    with torch.no_grad():
        sdpa = net(input_ids=x).logits
        net.config._attn_implementation = "eager"  # QK^T * self.scaling written out
        eager = net(input_ids=x).logits
        net.config._attn_implementation = "sdpa"
        for layer in net.model.layers:
            layer.self_attn.scaling = layer.self_attn.head_dim**-0.5
        standard_scale = net(input_ids=x).logits
        hidden = net.model(input_ids=x).last_hidden_state
    torch.testing.assert_close(sdpa, eager, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(sdpa, standard_scale, atol=1e-4)  # sdpa read the per-layer scaling
    torch.testing.assert_close(standard_scale, (hidden @ net.lm_head.weight.T) / 4)  # m = 128 / 32
    pickle.dumps(copy.deepcopy(net))  # the readout hook does not stop the model from pickling


def test_mup_composes_and_trains_a_debug_cell_with_scaled_param_groups():
    from proxyscale.job.module import CausalLM

    cfg = _compose(["model=debug", "model.parametrization=mup", "model.mup_base_width=16", "trainer.threads=1"])
    C.validate(cfg)
    assert cfg.model.parametrization == "mup" and C.plain(cfg)["model"]["parametrization"] == "mup"
    torch.manual_seed(0)
    module = CausalLM(cfg, 257, total_steps=4, eval_names=["x"])
    opt = module.configure_optimizers()["optimizer"]
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == pytest.approx([cfg.optim.lr / 2, cfg.optim.lr])  # m = 32 / 16: hidden matrices at lr / 2
    hidden = {id(p) for n, p in module.named_parameters() if mup.is_hidden(n)}
    assert len(hidden) == 7 * cfg.model.n_layer
    for g in opt.param_groups:
        assert all((id(p) in hidden) == (g["lr"] < cfg.optim.lr) for p in g["params"])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(module.parameters()))
    loss = module._loss(torch.randint(0, 257, (4, cfg.trainer.seq_len + 1)))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


def test_standard_run_ids_are_unchanged_and_mup_enters_the_id():
    """A standard config's run id is the id of the same config without the µP keys (so every run id from
    before µP existed stays valid, whatever the machine's corpora fingerprint); µP's keys enter it."""
    for overrides in ([], ["model=debug"], ["model=125m", "optim.lr=1e-3"], ["experiment=duplication_flip"]):
        cfg = _compose(overrides)
        config = C.plain(cfg)
        without = {**config, "model": {k: v for k, v in config["model"].items() if k not in ("parametrization", "mup_base_width")}}
        assert "parametrization" in config["model"] and identity.run_id(cfg) == C.run_id_of(without, identity.environment(config))
        assert identity.run_id(_compose([*overrides, "model.parametrization=standard", "model.mup_base_width=128"])) == identity.run_id(cfg)
    mup_ids = {identity.run_id(_compose(["model.parametrization=mup", f"model.mup_base_width={w}"])) for w in (32, 64)}
    assert len(mup_ids) == 2 and identity.run_id(_compose([])) not in mup_ids


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["model.parametrization=muP"], "model.parametrization must be standard or mup"),
        (["model.parametrization=mup", "model.mup_base_width=0"], "model.mup_base_width must be > 0"),
    ],
)
def test_bad_parametrization_values_raise_one_line(overrides, needle):
    with pytest.raises(C.ConfigError, match=needle):
        C.validate(_compose(overrides))


def test_mup_transfer_preset_sweeps_widths_parametrizations_and_lrs():
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=C.CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["experiment=mup_transfer"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert params["model.parametrization"] == "standard,mup" and len(params["optim.lr"].split(",")) == 5
    mu = _compose(["experiment=mup_transfer", "model=w128", "model.parametrization=mup"])
    assert mu.model.name == "w128_mup" and mup.width_mult(mu.model) == 2.0
