from __future__ import annotations

import copy
import warnings

import pytest
import torch

from forgetless.errors import ForgetlessError
from forgetless.train.fisher import diagonal_fisher
from forgetless.train.regularizers import (
    EWC,
    L2SP,
    REGULARIZERS,
    EWCConfig,
    KLToBase,
    build_regularizer,
    canonical_name,
    lora_effective_updates,
    lora_sites,
)

INPUTS = ("input_ids", "attention_mask")


def randomize_lora_b(model, seed=1):
    """PEFT initialises B to zero; give it values so the update is not trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def sgd_step(model, batch, regs=(), lr=0.5):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)
    out = model(**batch)
    loss = out.loss + sum(r.penalty(model, batch, out) for r in regs)
    opt.zero_grad()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def setup_all(model, batch, **ewc):
    regs = [
        build_regularizer("ewc", {"lambda": 1.0, **ewc}),
        build_regularizer("l2sp", {"alpha": 1.0}),
        build_regularizer("kl", {"beta": 1.0}),
    ]
    for r in regs:
        r.setup(model, reference_batches=[batch])
    return regs


# --- LoRA effective update -------------------------------------------------------------------


def test_lora_update_equals_merged_minus_base(build_lora):
    model = build_lora()
    randomize_lora_b(model)
    deltas = lora_effective_updates(model)
    assert len(deltas) == 4  # q_proj and v_proj in 2 layers
    named = dict(model.named_parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged = dict(copy.deepcopy(model).merge_and_unload().named_parameters())
    for base_name, delta in deltas.items():
        assert base_name.endswith("base_layer.weight")
        assert torch.allclose(named[base_name] + delta, merged[canonical_name(base_name)], atol=1e-6)


def test_lora_update_fan_in_fan_out():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(base, LoraConfig(r=2, lora_alpha=6, target_modules=["c_attn"], fan_in_fan_out=True))
        randomize_lora_b(model)
        (name, delta), = lora_effective_updates(model).items()
        merged = dict(copy.deepcopy(model).merge_and_unload().named_parameters())
    assert delta.shape == (16, 48)  # Conv1D stores (in, out)
    assert torch.allclose(dict(model.named_parameters())[name] + delta, merged[canonical_name(name)], atol=1e-6)


# --- EWC -------------------------------------------------------------------------------------


def test_ewc_on_lora_equals_hand_computation(build_lora):
    model = build_lora()
    g = torch.Generator().manual_seed(2)
    names = [s.base_name for s in lora_sites(model)]
    named = dict(model.named_parameters())
    fisher = {n: torch.rand(named[n].shape, generator=g) for n in names}
    ewc = EWC({"lambda": 3.0, "fisher_normalize": "none"}, fisher=fisher)
    ewc.setup(model)
    randomize_lora_b(model)
    expected = 0.0
    for n in names:
        prefix = n.removesuffix("base_layer.weight")
        a, b = named[prefix + "lora_A.default.weight"], named[prefix + "lora_B.default.weight"]
        expected += (fisher[n] * (2.0 * b @ a) ** 2).sum()  # scale = lora_alpha / r = 8 / 4
    assert torch.allclose(ewc.penalty(model), 1.5 * expected)


def test_ewc_lora_fisher_is_the_base_weights_fisher(build_llama, build_lora, batch):
    lora = build_lora()
    randomize_lora_b(lora)  # adapters must be switched off while the Fisher is computed
    ewc = EWC({"fisher_normalize": "none"})
    ewc.setup(lora, reference_batches=[batch])
    base = build_llama()
    wanted = {n: p for n, p in base.named_parameters() if "q_proj" in n or "v_proj" in n}
    expected = diagonal_fisher(base, [batch], params=wanted)
    assert {canonical_name(n) for n in ewc.fisher} == set(expected)
    for n, f in ewc.fisher.items():
        assert torch.allclose(f, expected[canonical_name(n)], atol=1e-7)
    assert all("lora" not in n for n in ewc.fisher)  # memory only for adapted/trained weights


def test_the_fisher_is_cached_per_base_weights_data_and_settings(build_llama, batch, tmp_path, monkeypatch):
    from forgetless.train.fisher import load_fisher, save_fisher

    monkeypatch.setenv("FORGETLESS_HOME", str(tmp_path))
    first = EWC({"fisher_normalize": "none"})
    first.setup(build_llama(), reference_batches=[batch])
    (path,) = (tmp_path / "fisher").glob("*.safetensors")
    assert all(torch.equal(first.fisher[n], f) for n, f in load_fisher(path)[0].items())
    # a second setup reads the file instead of computing: a planted value shows through
    planted = {n: torch.full_like(f, 7.0) for n, f in first.fisher.items()}
    save_fisher(path, planted)
    again = EWC({"fisher_normalize": "none"})
    again.setup(build_llama(), reference_batches=[batch])
    assert all(torch.equal(again.fisher[n], planted[n]) for n in planted)
    # other weights, other data or another storage dtype: another entry, computed afresh
    moved = build_llama()
    with torch.no_grad():
        next(moved.parameters()).add_(1e-3)
    EWC({"fisher_normalize": "none"}).setup(moved, reference_batches=[batch])
    EWC({"fisher_normalize": "none"}).setup(build_llama(), reference_batches=[{**batch, "labels": batch["input_ids"]}])
    half = EWC({"fisher_normalize": "none", "fisher_dtype": "bf16"})
    half.setup(build_llama(), reference_batches=[batch])
    assert len(list((tmp_path / "fisher").glob("*.safetensors"))) == 4
    assert all(torch.equal(half.fisher[n], first.fisher[n].bfloat16().float()) for n in first.fisher)
    off = EWC({"fisher_normalize": "none", "fisher_cache": False})
    off.setup(build_llama(), reference_batches=[batch])
    assert all(torch.equal(off.fisher[n], first.fisher[n]) for n in first.fisher)


def test_ewc_full_finetuning_hand_computation(build_llama, batch):
    model = build_llama()
    ewc = EWC({"lambda": 2.0, "fisher_normalize": "none"})
    ewc.setup(model, reference_batches=[batch])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sgd_step(model, batch)
    expected = sum((ewc.fisher[n] * (p - before[n]) ** 2).sum() for n, p in model.named_parameters())
    assert torch.allclose(ewc.penalty(model), expected, rtol=1e-5)


def test_precomputed_base_fisher_anchors_a_lora_run(build_llama, build_lora, batch):
    base = build_llama()
    fisher = diagonal_fisher(base, [batch], params=dict(base.named_parameters()))  # plain names
    ewc = EWC(fisher=fisher)
    ewc.setup(build_lora())
    assert len(ewc.fisher) == 4
    with pytest.raises(ForgetlessError, match="no entry"):
        EWC(fisher={"model.norm.weight": torch.ones(16)}).setup(build_lora())
    negative = {n: f.clone().index_fill_(0, torch.tensor([0]), -1.0) for n, f in fisher.items()}
    with pytest.raises(ForgetlessError, match="negative entries"):
        EWC(fisher=negative).setup(build_lora())


def test_ewc_needs_reference_data(build_llama):
    with pytest.raises(ForgetlessError, match="reference batches"):
        EWC().setup(build_llama())


# --- all three: zero at step 0, then positive; gradients only to trainable params -------------


def test_lora_penalties_zero_at_step0_positive_after_a_step(build_lora, batch):
    model = build_lora()
    regs = setup_all(model, batch)
    out = model(**batch)
    assert [r.penalty(model, batch, out).item() for r in regs] == [0.0, 0.0, 0.0]
    sgd_step(model, batch)
    assert all(r.penalty(model, batch).item() > 0 for r in regs)


def test_full_finetuning_penalties_zero_at_step0_positive_after_a_step(build_llama, batch):
    model = build_llama()
    regs = setup_all(model, batch)
    assert [r.penalty(model, batch).item() for r in regs[:2]] == [0.0, 0.0]
    assert regs[2].penalty(model, batch).item() < 1e-6  # frozen copy: identical up to rounding
    sgd_step(model, batch)
    assert all(r.penalty(model, batch).item() > 0 for r in regs)
    assert regs[2].base is not model
    assert all(not p.requires_grad for p in regs[2].base.parameters())


@pytest.mark.parametrize("name", ["ewc", "l2sp", "kl"])
def test_gradients_flow_only_to_trainable_params(build_lora, batch, name):
    model = build_lora()
    reg = build_regularizer(name, {})
    reg.setup(model, reference_batches=[batch])
    sgd_step(model, batch)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    reg.penalty(model, batch).backward()
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags  # disable_adapter restored
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n


def test_l2sp_lora_is_the_effective_update_norm(build_lora, batch):
    model = build_lora()
    l2sp = L2SP({"alpha": 0.5})
    l2sp.setup(model)
    randomize_lora_b(model)
    expected = sum(d.square().sum() for d in lora_effective_updates(model).values())
    assert torch.allclose(l2sp.penalty(model), 0.25 * expected, rtol=1e-5)


# --- KL --------------------------------------------------------------------------------------


def test_kl_reuses_outputs_and_positions(build_lora, batch):
    model = build_lora()
    randomize_lora_b(model)
    kl = KLToBase({"beta": 2.0})
    kl.setup(model)
    out = model(**batch)
    given, recomputed = kl.penalty(model, batch, out), kl.penalty(model, batch)
    assert torch.allclose(given, recomputed) and given > 0
    assert torch.allclose(kl.penalty(model, batch, out.logits), given)
    every = KLToBase({"beta": 2.0, "positions": "attention"})
    every.setup(model)
    assert every.penalty(model, batch, out).item() > 0 and not torch.allclose(every.penalty(model, batch, out), given)


# --- registry and config ---------------------------------------------------------------------


def test_registry_names_and_did_you_mean():
    assert REGULARIZERS.names() == ["ewc", "kl", "l2sp"]
    with pytest.raises(ForgetlessError, match="did you mean 'ewc'"):
        build_regularizer("ewcc")


def test_negative_weights_refused_all_errors_at_once():
    with pytest.raises(ForgetlessError, match=r"lambda.*got -1"):
        build_regularizer("ewc", {"lambda": -1})
    with pytest.raises(ForgetlessError, match=r"lambda.*fisher_normalize"):
        EWCConfig(lambda_=-0.5, fisher_normalize="median")
    with pytest.raises(ForgetlessError, match="alpha"):
        build_regularizer("l2sp", {"alpha": -0.1})
    with pytest.raises(ForgetlessError, match="beta"):
        build_regularizer("kl", {"beta": -2})
    assert EWC(lambda_=0.5).config.weight == 0.5


def test_penalty_before_setup_refused(build_llama):
    with pytest.raises(ForgetlessError, match="before setup"):
        L2SP().penalty(build_llama())


def test_generic_weight_name_as_the_recipe_passes_it():
    assert EWC(weight=3.0).config.lambda_ == 3.0
    assert build_regularizer("l2sp", {"weight": 0.2}).config.alpha == 0.2
    assert KLToBase(weight=0.5, positions="attention").config.beta == 0.5
    with pytest.raises(ForgetlessError, match="not both"):
        EWC(weight=1.0, **{"lambda": 2.0})
    with pytest.raises(ForgetlessError, match="must be a number >= 0"):
        L2SP(weight=-1)
