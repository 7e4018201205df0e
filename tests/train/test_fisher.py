from __future__ import annotations

import pytest
import torch

from forgetless.errors import ForgetlessError
from forgetless.train.fisher import (
    causal_lm_log_likelihood,
    diagonal_fisher,
    fisher_bruteforce,
    load_fisher,
    normalize_fisher,
    save_fisher,
)


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def split(batch, size):
    n = batch["input_ids"].shape[0]
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]


@pytest.fixture(scope="module")
def model64(build_llama):
    return build_llama(dtype=torch.float64)


@pytest.fixture(scope="module")
def batch6(build_batch):
    return build_batch(seed=1, batch_size=6)


@pytest.fixture(scope="module")
def reference(model64, batch6):
    return fisher_bruteforce(model64, [batch6])


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_fisher_equals_bruteforce_per_example_loop(model64, batch6, reference, strategy):
    fisher = diagonal_fisher(model64, [batch6], strategy=strategy, chunk_size=4)
    assert max(float(f.abs().max()) for f in reference.values()) > 1e-3  # not trivially zero
    assert max_diff(fisher, reference) < 1e-6


def test_batch_size_does_not_change_the_fisher(model64, batch6, reference):
    one_at_a_time = diagonal_fisher(model64, split(batch6, 1), strategy="vmap")
    fours = diagonal_fisher(model64, split(batch6, 4), strategy="vmap")
    assert max_diff(one_at_a_time, reference) < 1e-6
    assert max_diff(fours, reference) < 1e-6


def test_is_mean_of_squared_per_example_grads_not_squared_batch_grad(model64, batch6):
    fisher = diagonal_fisher(model64, [batch6], strategy="vmap")
    # by hand: per-example gradients, then the two candidate formulas
    grads = []
    for ex in split(batch6, 1):
        if (ex["labels"][:, 1:] != -100).any():
            model64.zero_grad()
            causal_lm_log_likelihood(model64(**{k: ex[k] for k in ("input_ids", "attention_mask")}).logits, ex["labels"], ex["attention_mask"]).sum().backward()
            grads.append({n: p.grad.clone() for n, p in model64.named_parameters()})
    model64.zero_grad(set_to_none=True)
    n = "model.layers.0.self_attn.q_proj.weight"
    mean_of_squares = torch.stack([g[n].square() for g in grads]).mean(0)
    square_of_mean = torch.stack([g[n] for g in grads]).mean(0).square()
    assert len(grads) == 5  # the example without a scored token is not counted
    assert torch.allclose(fisher[n], mean_of_squares, atol=1e-10)
    assert not torch.allclose(fisher[n], square_of_mean, rtol=0.1)
    assert (fisher[n] >= square_of_mean - 1e-12).all()  # Jensen: E[g^2] >= E[g]^2


def test_grads_and_mode_untouched(build_llama, batch):
    model = build_llama()
    model.train()
    marker = torch.full_like(model.lm_head.weight, 7.0)
    model.lm_head.weight.grad = marker.clone()
    diagonal_fisher(model, [batch])
    assert torch.equal(model.lm_head.weight.grad, marker)
    assert all(p.grad is None for n, p in model.named_parameters() if n != "lm_head.weight")
    assert model.training


def test_only_trainable_or_passed_params(build_llama, batch):
    model = build_llama()
    for n, p in model.named_parameters():
        p.requires_grad_("mlp" in n)
    fisher = diagonal_fisher(model, [batch])
    assert fisher and all("mlp" in n for n in fisher)
    frozen = {"model.norm.weight": model.model.norm.weight}
    assert set(diagonal_fisher(model, [batch], params=frozen)) == {"model.norm.weight"}
    with pytest.raises(ForgetlessError, match="not parameters"):
        diagonal_fisher(model, [batch], params={"nope": model.model.norm.weight})


def test_max_examples_and_progress(model64, batch6):
    seen = []
    capped = diagonal_fisher(model64, split(batch6, 2), max_examples=3, progress=seen.append)
    assert seen == [2, 3]
    assert max_diff(capped, fisher_bruteforce(model64, [{k: v[:3] for k, v in batch6.items()}])) < 1e-6


def test_true_fisher_samples_labels_from_the_model(model64, batch6):
    def run(seed):
        return diagonal_fisher(model64, [batch6], empirical=False, generator=torch.Generator().manual_seed(seed))

    a, b = run(0), run(0)
    assert max_diff(a, b) == 0.0  # deterministic for a generator seed
    assert max_diff(a, run(1)) > 0  # sampled labels
    assert max_diff(a, diagonal_fisher(model64, [batch6])) > 0  # not the data's labels


def test_normalize_fisher():
    fisher = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([[4.0]])}
    assert torch.equal(normalize_fisher(fisher, "none")["a"], fisher["a"])
    mean = normalize_fisher(fisher, "mean")
    assert torch.allclose(torch.cat([mean["a"], mean["b"].flatten()]).mean(), torch.tensor(1.0))
    top = normalize_fisher(fisher, "max")
    assert float(top["b"].max()) == 1.0 and torch.allclose(top["a"], torch.tensor([0.25, 0.75]))
    assert torch.equal(normalize_fisher({"z": torch.zeros(2)}, "mean")["z"], torch.zeros(2))
    with pytest.raises(ForgetlessError, match="normalisation"):
        normalize_fisher(fisher, "sum")


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_save_load_roundtrip(tmp_path, dtype):
    fisher = {"w": torch.rand(3, 4, generator=torch.Generator().manual_seed(0))}
    path = tmp_path / "fisher.safetensors"
    save_fisher(path, fisher, {"examples": 12, "empirical": True}, dtype=dtype)
    loaded, meta = load_fisher(path)
    assert meta == {"examples": 12, "empirical": True, "storage_dtype": dtype}
    assert loaded["w"].dtype == torch.float32
    assert torch.allclose(loaded["w"], fisher["w"], rtol=1e-2 if dtype != "fp32" else 0, atol=0)
    with pytest.raises(ForgetlessError, match="not found"):
        load_fisher(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ForgetlessError, match="not a readable safetensors"):
        load_fisher(tmp_path / "junk.safetensors")


def test_tied_embeddings_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32)).double()
    model.config._attn_implementation = "eager"
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 64, (3, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    labels = torch.where(mask.bool(), ids, -100)
    labels[:, :2] = -100
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    fisher = diagonal_fisher(model, [batch], strategy="vmap")
    assert "transformer.wte.weight" in fisher  # one entry for the tied embedding / head
    assert max_diff(fisher, fisher_bruteforce(model, [batch])) < 1e-6
