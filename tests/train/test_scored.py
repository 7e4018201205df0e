"""The training forward: logits at scored positions only, the shared prompt prefix run once, and the KL term
scoped to the general (replay) examples. Each against the plain full forward (HF loss, full logits)."""

from __future__ import annotations

import pytest
import torch

from forgetless.train.data import collator_for
from forgetless.train.regularizers.kl import KLToBase
from forgetless.train.scored import scored_cross_entropy, scored_forward, shared_prefix

PREFIX = [5, 9, 11, 3, 7, 2]  # every row starts with these (a system prompt)


def chat_batch(general: tuple[bool, ...] = (False, True, False, True), seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded rows: the shared prefix, a question of its own (unlabelled), an answer (labelled)."""
    g = torch.Generator().manual_seed(seed)
    examples = []
    for i, flag in enumerate(general):
        question = torch.randint(12, 64, (2 + i,), generator=g).tolist()
        answer = torch.randint(12, 64, (3 + 2 * (i % 2),), generator=g).tolist()
        examples.append({"input_ids": PREFIX + question + answer,
                         "labels": [-100] * (len(PREFIX) + len(question)) + answer, "general": flag})
    return collator_for(type("Tok", (), {"pad_token_id": 0, "eos_token_id": 1})())(examples)


def plain(model, batch):
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    return model(**inputs)


def grads(loss, model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params)


@pytest.mark.parametrize("lora", [False, True])
def test_scored_loss_and_gradient_equal_the_plain_forward(build_llama, build_lora, lora):
    model = build_lora() if lora else build_llama()
    if lora:  # non-zero adapters, so that the adapted path matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.3)
    model.train()
    batch = chat_batch()
    out = scored_forward(model, batch)
    assert shared_prefix(batch["input_ids"], batch["attention_mask"], out.where) == len(PREFIX)
    ref = plain(model, batch)
    want = ref.logits[:, :-1][out.where]
    assert out.logits.shape == want.shape and torch.allclose(out.logits, want, atol=1e-5)
    loss = scored_cross_entropy(out, batch["labels"])
    assert torch.allclose(loss, ref.loss, atol=1e-6)
    n = (batch["labels"][:, 1:] != -100).sum()  # the Trainer's count over the accumulated batch
    assert torch.allclose(scored_cross_entropy(out, batch["labels"], n), ref.loss, atol=1e-6)
    for a, b in zip(grads(loss, model), grads(plain(model, batch).loss, model)):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_no_shared_prefix_takes_the_plain_forward(build_llama):
    model = build_llama()
    batch = chat_batch()
    batch["input_ids"][0, 0] = 40  # the rows no longer share their first token
    out = scored_forward(model, batch)
    assert shared_prefix(batch["input_ids"], batch["attention_mask"], out.where) == 0
    assert torch.allclose(scored_cross_entropy(out, batch["labels"]), plain(model, batch).loss, atol=1e-6)


def _kl(model, examples):
    reg = KLToBase({"beta": 1.0, "examples": examples})
    reg.setup(model)
    return reg


@pytest.mark.parametrize("scored", [False, True])
def test_kl_scoped_to_general_examples_leaves_domain_positions_free(build_llama, scored):
    model = build_llama()
    model.train()
    batch = chat_batch()
    reg, every = _kl(model, "general"), _kl(model, "all")
    with torch.no_grad():  # a tuned model: the KL to its frozen starting copy is not zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    outputs = scored_forward(model, batch) if scored else plain(model, batch)
    logits = outputs.logits.detach().requires_grad_(True)
    outputs.logits = logits
    penalty = reg.penalty(model, batch, outputs=outputs)
    (grad,) = torch.autograd.grad(penalty, logits)
    domain = ~batch["general"]
    if scored:  # (N, V) rows in the order of `where`: the domain rows' positions get no gradient at all
        rows = domain[:, None].expand_as(outputs.where)[outputs.where]
        assert grad[rows].abs().max() == 0 and grad[~rows].abs().max() > 0
    else:
        assert grad[domain].abs().max() == 0 and grad[~domain].abs().max() > 0
    assert penalty > 0
    # it equals the plain KL on the general rows alone, and differs from the KL over every row
    general = {k: v[batch["general"]] for k, v in batch.items() if k != "general"}
    assert torch.allclose(penalty, every.penalty(model, general), atol=1e-6)
    assert not torch.allclose(penalty, every.penalty(model, batch), atol=1e-4)


def test_kl_scoped_to_general_examples_is_zero_on_a_batch_without_them(build_llama):
    model = build_llama()
    batch = chat_batch(general=(False, False, False, False))
    reg = _kl(model, "general")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert reg.penalty(model, batch).item() == 0.0
    assert reg.penalty(model, {k: v for k, v in batch.items() if k != "general"}).item() == 0.0


def test_kl_on_general_examples_needs_replay():
    from forgetless.errors import ForgetlessError
    from forgetless.train.config import validate_config

    with pytest.raises(ForgetlessError, match="scoped to general examples.*replay.fraction is 0"):
        validate_config({"data": "x.jsonl", "regularizers": [{"name": "kl", "examples": "general"}]})
    validate_config({"data": "x.jsonl", "replay": {"fraction": 0.25},
                     "regularizers": [{"name": "kl", "examples": "general"}]})


# --- precomputed top-k targets: no base forward while training ------------------------------------------------


def test_topk_kl_is_the_exact_kl_at_full_vocabulary_and_below_it_otherwise():
    from forgetless.train.regularizers.kl import mean_kl, topk_kl

    g = torch.Generator().manual_seed(0)
    base, tuned = torch.randn(7, 64, generator=g) * 3, torch.randn(7, 64, generator=g) * 3
    logp, ids = torch.log_softmax(base, -1).topk(64, -1)
    exact = mean_kl(base, tuned, None)
    assert torch.allclose(topk_kl(tuned, ids, logp), exact, atol=1e-5)
    for k in (1, 4, 16, 48):
        logp, ids = torch.log_softmax(base, -1).topk(k, -1)
        assert topk_kl(tuned, ids, logp) <= exact + 1e-6
    assert topk_kl(base, ids, logp).abs() < 1e-5  # the base itself: zero


@pytest.mark.parametrize("examples", ["general", "all"])
def test_precomputed_targets_give_the_live_kl(build_llama, examples):
    model = build_llama()
    collate = collator_for(type("Tok", (), {"pad_token_id": 0, "eos_token_id": 1})())
    batch = chat_batch()
    stream = [{k: batch[k][i][batch["attention_mask"][i].bool()].tolist() for k in ("input_ids", "labels")}
              | {"general": bool(batch["general"][i])} for i in range(4)]
    live = _kl(model, examples)
    pre = KLToBase({"beta": 1.0, "examples": examples, "top_k": 64})  # 64 = the tiny vocabulary: exact
    pre.setup(model)
    pre.prepare_examples(model, stream, collate)
    assert all(("kl_ids" in e) == (examples == "all" or e["general"]) for e in stream)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = collate(stream)
    for outputs in (scored_forward(model, batch), plain(model, batch)):
        want = live.penalty(model, batch, outputs=outputs)
        got = pre.penalty(model, batch, outputs=outputs)
        assert want > 0 and torch.allclose(got, want, atol=1e-5)
    assert pre.base is None  # no second model is kept
