"""The fused EWC/L2-SP quadratic equals the plain autograd formula: value and gradients."""

from __future__ import annotations

import pytest
import torch

from forgetless.train.regularizers import EWC, L2SP, lora_effective_updates, lora_sites
from forgetless.train.regularizers import quadratic
from forgetless.train.regularizers.quadratic import anchored_quadratic, lora_quadratic, lora_sq_norm


def leaves(*shapes, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


@pytest.fixture(params=[False, True], ids=["one-at-a-time", "batched"])
def path(request, monkeypatch):
    """Both loops on any device: one weight at a time (CPU) and batched groups (accelerators)."""
    monkeypatch.setattr(quadratic, "FORCE_BATCHED", request.param)
    monkeypatch.setattr(quadratic, "GROUP_ELEMENTS", 150)  # groups of several weights, split where full
    return request.param


@pytest.mark.parametrize("weighted", [True, False])
def test_anchored_quadratic_value_and_gradient_equal_autograd(weighted, path):
    params = leaves((5, 7), (3,), (2, 4, 6), (11, 11), (4, 5))
    theta0 = [p.detach() + torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) for p in params]
    fisher = [torch.rand(p.shape, generator=torch.Generator().manual_seed(2)) for p in params] if weighted else None
    value = anchored_quadratic(params, theta0, fisher)
    (3.0 * value).backward()
    fused = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    ones = [1.0] * len(params)
    expected = sum((f * (p - p0) ** 2).sum() for p, p0, f in zip(params, theta0, fisher or ones))
    (3.0 * expected).backward()
    assert torch.allclose(value, expected, rtol=1e-6)
    for got, p in zip(fused, params):
        assert torch.allclose(got, p.grad, rtol=1e-6, atol=1e-7)


def test_anchored_quadratic_keeps_the_parameter_dtype(path):
    (p,) = leaves((8, 8), dtype=torch.bfloat16)
    p0 = torch.zeros(8, 8, dtype=torch.bfloat16)
    anchored_quadratic([p], [p0], [torch.ones(8, 8)]).backward()
    assert p.grad.dtype == torch.bfloat16
    assert torch.allclose(p.grad.float(), 2 * p.detach().float(), rtol=1e-2)


def test_anchored_quadratic_refuses_a_second_backward():
    (p,) = leaves((4,))
    value = anchored_quadratic([p], [torch.zeros(4)], None)
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="twice"):
        value.backward()


def lora_factors(seed):
    """Seven adapted weights: a same-shaped group too large for one call, a transposed pair, an odd
    shape, another scale."""
    shapes = [((3, 11), (6, 3), 1.7, False), ((3, 11), (6, 3), 1.7, False), ((3, 11), (6, 3), 1.7, True),
              ((2, 5), (9, 2), 0.5, False), ((3, 11), (6, 3), 2.0, False), ((3, 11), (6, 3), 1.7, True),
              ((3, 11), (6, 3), 1.7, False)]
    factors = []
    for k, (shape_a, shape_b, scale, transpose) in enumerate(shapes):
        a, b = leaves(shape_a, shape_b, seed=seed + k)
        factors.append((a, b, scale, transpose))
    return factors


def lora_reference(factors, fisher):
    """The plain formula, by autograd: sum F * (scale * B @ A)^2 (transposed where asked)."""
    total = 0.0
    for (a, b, scale, transpose), f in zip(factors, fisher):
        delta = scale * (b @ a)
        total = total + (f * (delta.T if transpose else delta) ** 2).sum()
    return total


@pytest.mark.parametrize("weighted", [True, False])
def test_lora_quadratic_value_and_gradient_equal_autograd(weighted, path):
    factors = lora_factors(seed=4)
    g = torch.Generator().manual_seed(5)
    shapes = [(a.shape[1], b.shape[0]) if t else (b.shape[0], a.shape[1]) for a, b, _, t in factors]
    fisher = [torch.rand(shape, generator=g) for shape in shapes] if weighted else None
    value = lora_quadratic(factors, fisher) if weighted else lora_sq_norm(factors)
    value.backward()
    tensors = [t for a, b, _, _ in factors for t in (a, b)]
    fused = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    expected = lora_reference(factors, fisher or [1.0] * len(factors))
    expected.backward()
    assert torch.allclose(value, expected, rtol=1e-5)
    for got, t in zip(fused, tensors):
        # float32 rounding follows the size of the terms summed, not of their (possibly cancelling)
        # sum: an element near 0 in a gradient of size 40 carries errors of about 40 * eps
        assert torch.allclose(got, t.grad, rtol=1e-5, atol=1e-6 * max(1.0, t.grad.abs().max().item()))


def test_ewc_and_l2sp_gradients_on_a_lora_model_equal_autograd(build_lora, path):
    """Through the regularizers on a real PEFT model: the gradients of A and B of every layer."""
    model = build_lora()
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    named = dict(model.named_parameters())
    fisher = {s.base_name: torch.rand(named[s.base_name].shape, generator=g) for s in lora_sites(model)}
    ewc, l2sp = EWC({"lambda": 2.0, "fisher_normalize": "none"}, fisher=fisher), L2SP({"alpha": 0.5})
    for reg in (ewc, l2sp):
        reg.setup(model)
    trained = [p for p in model.parameters() if p.requires_grad]
    (ewc.penalty(model) + l2sp.penalty(model)).backward()
    fused = [p.grad.clone() for p in trained]
    model.zero_grad(set_to_none=True)
    deltas = lora_effective_updates(model)
    expected = sum(1.0 * (fisher[n] * d**2).sum() + 0.25 * (d**2).sum() for n, d in deltas.items())
    expected.backward()
    for got, p in zip(fused, trained):
        assert torch.allclose(got, p.grad, rtol=1e-5, atol=1e-8)
