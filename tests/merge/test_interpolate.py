"""The interpolation math: pure functions against brute force, exact endpoints, per-layer alphas."""

from __future__ import annotations

import pytest
import torch

from forgetless.errors import ForgetlessError
from forgetless.merge import block_index, interpolate_into, interpolate_state, interpolate_tensor, layer_alpha, per_layer


def _states(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    names = ["model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.3.self_attn.q_proj.weight",
             "model.norm.weight", "lm_head.weight"]
    base = {n: torch.randn(4, 3, generator=gen).to(dtype) for n in names}
    tuned = {n: torch.randn(4, 3, generator=gen).to(dtype) for n in names}
    return base, tuned


def test_matches_the_formula_elementwise():
    base, tuned = _states()
    for alpha in (0.1, 0.5, 0.9, 1.5):
        out = interpolate_state(base, tuned, alpha)
        for name in base:
            expected = [[(1 - alpha) * b + alpha * t for b, t in zip(rb, rt)]
                        for rb, rt in zip(base[name].tolist(), tuned[name].tolist())]
            torch.testing.assert_close(out[name], torch.tensor(expected), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_endpoints_are_exact_and_inputs_untouched(dtype):
    base, tuned = _states(dtype)
    copies = {n: t.clone() for n, t in tuned.items()}
    zero, one = interpolate_state(base, tuned, 0.0), interpolate_state(base, tuned, 1.0)
    for name in base:
        assert torch.equal(zero[name], base[name]) and torch.equal(one[name], tuned[name])
        assert torch.equal(tuned[name], copies[name])
    assert interpolate_tensor(base["lm_head.weight"], tuned["lm_head.weight"], 0.3).dtype == dtype


def test_per_name_alpha_applies_to_the_right_tensors():
    base, tuned = _states()
    out = interpolate_state(base, tuned, lambda name: 0.0 if "layers.0" in name else 1.0)
    assert torch.equal(out["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])
    for name in set(base) - {"model.layers.0.mlp.up_proj.weight"}:
        assert torch.equal(out[name], tuned[name])


def test_mismatched_states_are_refused():
    base, tuned = _states()
    with pytest.raises(ForgetlessError, match="different parameters"):
        interpolate_state({k: v for k, v in base.items() if k != "lm_head.weight"}, tuned, 0.5)
    with pytest.raises(ForgetlessError, match="shape"):
        interpolate_state({**base, "lm_head.weight": torch.zeros(5, 3)}, tuned, 0.5)
    with pytest.raises(ForgetlessError, match="finite"):
        interpolate_state(base, tuned, float("nan"))


def test_layer_alpha_splits_blocks_embeddings_and_head():
    assert block_index("model.layers.11.mlp.down_proj.weight") == 11 and block_index("lm_head.weight") is None
    assert block_index("transformer.h.2.attn.c_attn.weight") == 2
    lower, upper = 0.2, 0.9
    expect = {"model.embed_tokens.weight": lower, "model.layers.0.self_attn.q_proj.weight": lower,
              "model.layers.1.mlp.up_proj": lower, "model.layers.2.mlp.up_proj.weight": upper,
              "model.layers.3.input_layernorm.weight": upper, "model.norm.weight": upper, "lm_head.weight": upper}
    for name, alpha in expect.items():
        assert layer_alpha(name, lower, upper, n_layers=4) == alpha, name
    assert layer_alpha("model.layers.2.mlp.up_proj.weight", lower, upper, n_layers=4, split=3) == lower
    assert per_layer(lower, upper, 4, split=0)("model.layers.0.mlp.up_proj.weight") == upper
    with pytest.raises(ForgetlessError, match="split"):
        per_layer(lower, upper, 4, split=5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_in_place_write_matches_the_pure_function_bit_for_bit(dtype):
    base, tuned = _states(dtype)
    for alpha in (0.0, 0.37, 1.0):
        out = torch.empty_like(tuned["lm_head.weight"])
        interpolate_into(out, base["lm_head.weight"], tuned["lm_head.weight"], alpha)
        assert torch.equal(out, interpolate_tensor(base["lm_head.weight"], tuned["lm_head.weight"], alpha))
