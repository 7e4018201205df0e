"""sum F * delta^2 with its gradient, in as few passes over the weights as possible (EWC and L2-SP).

The penalty is cheap in FLOPs but touches every trained weight several times per step: on a
memory-bound CPU, or for a small batch, autograd's generic graph (subtract, square, multiply,
sum, then the same chain backwards, each step a fresh tensor as large as the model) cost as
much as 18% of a training step. Here the forward keeps one tensor per weight, F * delta, which
is exactly what the backward needs, so the backward is a single scaling (or, for LoRA, two thin
matrix products). The values and gradients are the plain formula's (tested against autograd).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


class _AnchoredQuadratic(torch.autograd.Function):
    """sum_n sum F_n * (p_n - theta0_n)^2 over directly trained weights (F_n None: all ones)."""

    @staticmethod
    def forward(ctx, theta0: Sequence[Tensor], fisher: Sequence[Tensor | None], *params: Tensor) -> Tensor:
        total = torch.zeros((), dtype=torch.float64, device=params[0].device)
        kept = []
        for p, p0, f in zip(params, theta0, fisher):
            delta = p.detach().float() - p0.float()
            weighted = delta if f is None else delta * f  # = d(penalty)/dp / 2
            total += _dot(weighted, delta).double()
            kept.append(weighted)
        ctx.kept, ctx.dtypes = kept, [p.dtype for p in params]
        return total.float()

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.kept is None:
            raise RuntimeError("the anchored penalty's backward ran twice; compute the penalty again")
        kept, ctx.kept = ctx.kept, None
        # in place: these tensors are this call's own, and autograd takes them over as the gradients
        grads = tuple(w.mul_(2 * grad).to(dtype) for w, dtype in zip(kept, ctx.dtypes))
        return None, None, *grads


class _LoraQuadratic(torch.autograd.Function):
    """sum F * (scale * B @ A)^2 for one LoRA-adapted weight (transpose: the update is (B @ A)^T)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, scale: float, transpose: bool, fisher: Tensor) -> Tensor:
        delta = (b.detach().float() @ a.detach().float()).mul_(scale)
        if transpose:
            delta = delta.T
        weighted = delta * fisher
        value = _dot(weighted, delta)
        ctx.save_for_backward(a, b)
        ctx.weighted, ctx.scale, ctx.transpose = weighted, scale, transpose
        return value

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b = ctx.saved_tensors
        weighted = ctx.weighted.T if ctx.transpose else ctx.weighted  # (out, in), like B @ A
        coef = 2 * ctx.scale * grad
        grad_a = (b.float().T @ weighted).mul_(coef).to(a.dtype) if ctx.needs_input_grad[0] else None
        grad_b = (weighted @ a.float().T).mul_(coef).to(b.dtype) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None, None, None


def anchored_quadratic(params: Sequence[Tensor], theta0: Sequence[Tensor], fisher: Sequence[Tensor | None]) -> Tensor:
    """sum over n of sum F_n * (params_n - theta0_n)^2, float32; differentiable in params."""
    if not params:
        return torch.zeros(())
    return _AnchoredQuadratic.apply(list(theta0), list(fisher), *params)


def lora_quadratic(a: Tensor, b: Tensor, scale: float, transpose: bool, fisher: Tensor) -> Tensor:
    """sum F * delta_W^2 with delta_W = scale * B @ A (transposed if `transpose`); differentiable in A and B."""
    return _LoraQuadratic.apply(a, b, scale, transpose, fisher)
