"""In-place interpolation of a loaded model: exact endpoints, per-layer alphas, LoRA scaling."""

from __future__ import annotations

import copy

import pytest
import torch

from forgetless.errors import ForgetlessError
from forgetless.eval import EvalSettings, evaluate
from forgetless.merge import LoraScaler, WeightInterpolator, interpolate_state, load_pair, per_layer
from forgetless.models import load_model
from forgetless.suites import read_suite

FAST = EvalSettings(batch_size=4, max_new_tokens=6, check_max_new_tokens=6)


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _outcomes(result):
    return [(it.key, it.pred, it.logliks, it.reply, it.correct, it.open_correct) for it in result.items]


def _logits(model, seed=0):
    x = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x).logits


def test_full_alpha_0_is_the_base_and_1_the_tuned_bit_for_bit(full_run, tiny_model_dir, suites_dir):
    pair = load_pair(None, str(full_run), device="cpu")  # base from the run file
    base, tuned = load_model(str(tiny_model_dir), device="cpu"), load_model(str(full_run), device="cpu")
    assert isinstance(pair.interpolator, WeightInterpolator) and pair.kind == "full"
    assert pair.interpolator.names and not any("layers.1.mlp" in n for n in pair.interpolator.names)  # frozen: untouched
    suite = [read_suite(suites_dir[0])]
    for alpha, reference, check_items in ((0.0, base, True), (1.0, tuned, True), (0.7, None, False), (0.0, base, False)):
        pair.interpolator.set_alpha(alpha)
        if reference is None:
            continue
        now, ref = _params(pair.loaded.model), _params(reference.model)
        assert all(torch.equal(now[n], ref[n]) for n in ref)
        if check_items:
            assert _outcomes(evaluate(pair.loaded, suite, settings=FAST)) == _outcomes(evaluate(reference, suite,
                                                                                            settings=FAST))


def test_full_middle_alpha_and_per_layer_alpha(full_run, tiny_model_dir):
    pair = load_pair(str(tiny_model_dir), str(full_run), device="cpu")
    base, tuned = _params(load_model(str(tiny_model_dir), device="cpu").model), _params(pair.loaded.model)
    pair.interpolator.set_alpha(0.3)
    expected = interpolate_state(base, tuned, 0.3)
    for name, p in pair.loaded.model.named_parameters():  # frozen parameters stay untouched
        assert torch.equal(p, expected[name] if name in pair.interpolator.names else tuned[name]), name
    pair.interpolator.set_alpha(per_layer(0.0, 1.0, n_layers=2))  # block 0 + embeddings base, the rest tuned
    for name, p in pair.loaded.model.named_parameters():
        want = base[name] if ("layers.0." in name or "embed_tokens" in name) else tuned[name]
        assert torch.equal(p, want), name
    pair.interpolator.set_alpha(1.0)
    assert all(torch.equal(p, tuned[n]) for n, p in pair.loaded.model.named_parameters())


def test_identical_models_are_refused(tiny_model_dir):
    with pytest.raises(ForgetlessError, match="identical"):
        load_pair(str(tiny_model_dir), str(tiny_model_dir), device="cpu")


def test_full_without_a_known_base_is_refused(tiny_model_dir):
    with pytest.raises(ForgetlessError, match="--base"):
        load_pair(None, str(tiny_model_dir), device="cpu")


def test_lora_scaling_endpoints_and_half(lora_run):
    pair = load_pair(None, str(lora_run), device="cpu")
    model = pair.loaded.model
    assert isinstance(pair.interpolator, LoraScaler) and pair.kind == "lora"
    trained = _logits(model)
    with model.disable_adapter():
        disabled = _logits(model)
    assert not torch.equal(trained, disabled)
    pair.interpolator.set_alpha(0.0)
    assert torch.equal(_logits(model), disabled)
    pair.interpolator.set_alpha(0.5)
    half = _logits(model)
    # the same model built another way: lora_B halved, merged into the base weights
    other = copy.deepcopy(model)
    LoraScaler(other).set_alpha(1.0)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)
    torch.testing.assert_close(half, _logits(other.merge_and_unload()), rtol=1e-5, atol=1e-5)
    pair.interpolator.set_alpha(1.0)
    assert torch.equal(_logits(model), trained)


def test_lora_per_layer_alpha_scales_the_right_modules(lora_run):
    pair = load_pair(None, str(lora_run), device="cpu")
    pair.interpolator.set_alpha(per_layer(0.25, 1.0, n_layers=2))
    scalings = {name: layer.scaling["default"] for name, layer in pair.interpolator.layers.items()}
    assert set(scalings) == {f"model.layers.{i}.self_attn.{m}_proj" for i in (0, 1) for m in "qv"}
    assert all(v == (0.25 * 8 / 4 if ".layers.0." in n else 8 / 4) for n, v in scalings.items())


def test_bare_adapter_folder_needs_and_takes_a_base(lora_run, tiny_model_dir):
    pair = load_pair(str(tiny_model_dir), str(lora_run / "adapter"), device="cpu")
    assert pair.kind == "lora" and pair.base == str(tiny_model_dir.resolve())
    assert pair.tuned == str((lora_run / "adapter").resolve())
    with pytest.raises(ForgetlessError, match="--base"):
        load_pair(None, str(lora_run / "adapter"), device="cpu")


def test_rslora_is_scaled_as_it_was_trained_and_saved_as_measured(tiny_model_dir, tmp_path):
    """rsLoRA scales by lora_alpha / sqrt(r): alpha 0.5 must halve that update, and an adapter saved with
    lora_alpha * 0.5 must load as the same model."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "v_proj"]))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    scaler = LoraScaler(model)
    assert all(v == 8 / 2 for v in scaler.trained.values())  # 8 / sqrt(4), not 8 / 4
    halved = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in halved.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)
    scaler.set_alpha(0.5)
    torch.testing.assert_close(_logits(model), _logits(halved), rtol=1e-5, atol=1e-5)
    model.save_pretrained(tmp_path / "a")  # as merge writes a scaled adapter: lora_alpha per module, times alpha
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "a",
                                         config=LoraConfig(r=4, lora_alpha=8, use_rslora=True,
                                                           target_modules=["q_proj", "v_proj"],
                                                           alpha_pattern=scaler.lora_alphas(0.5)))
    torch.testing.assert_close(_logits(reloaded), _logits(halved), rtol=1e-5, atol=1e-5)
    scaler.set_alpha(1.0)
    assert all(layer.scaling["default"] == 4.0 for layer in scaler.layers.values())
