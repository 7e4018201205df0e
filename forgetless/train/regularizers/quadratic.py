"""sum F * delta^2 with its gradient, in as few passes and kernel launches as possible (EWC and L2-SP).

The penalty is cheap in FLOPs but touches every trained weight several times per step: on a
memory-bound CPU, or for a small batch, autograd's generic graph (subtract, square, multiply,
sum, then the same chain backwards, each step a fresh tensor as large as the model) cost as
much as 18% of a training step. Here the forward keeps one tensor per weight, F * delta, which
is exactly what the backward needs, so the backward is a single scaling (or, for LoRA, two thin
matrix products). The values and gradients are the plain formula's (tested against autograd).

Where the weights live decides the loop. A CPU pays per pass over memory, so it takes one weight
at a time with the fewest passes. An accelerator pays per kernel launch (hundreds of weights, a
few launches each, cost more than the arithmetic at small batches), so there weights are taken
many at a time: multi-tensor (`torch._foreach_*`) ops for full fine-tuning, and one batched
product per group of same-shaped LoRA layers. Either way a group holds at most GROUP_ELEMENTS
weights, which bounds the temporaries.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

GROUP_ELEMENTS = 2**27  # weights per batched call on an accelerator (512 MB of float32 temporaries)
FORCE_BATCHED: bool | None = None  # None: batched on accelerators only; tests set it to check both paths anywhere


def batched(device: torch.device) -> bool:
    """Take many weights per call (accelerators) rather than one at a time (CPU)."""
    return device.type != "cpu" if FORCE_BATCHED is None else FORCE_BATCHED


def _groups(sizes: Sequence[int], keys: Sequence[object], device: torch.device) -> Iterator[list[int]]:
    """Indices grouped by key, in order, each group at most GROUP_ELEMENTS weights; singletons on a CPU."""
    if not batched(device):
        yield from ([i] for i in range(len(sizes)))
        return
    open_groups: dict[object, tuple[list[int], int]] = {}
    for i, (size, key) in enumerate(zip(sizes, keys)):
        members, total = open_groups.get(key, ([], 0))
        if members and total + size > GROUP_ELEMENTS:
            yield members
            members, total = [], 0
        open_groups[key] = (members + [i], total + size)
    yield from (members for members, _ in open_groups.values())


def _weighted_sum(weighted: list[Tensor], delta: list[Tensor], fisher_given: bool) -> Tensor:
    """sum over tensors of sum(weighted * delta), float64. One tensor: a dot product (no extra pass).
    Many: multi-tensor norms; with a Fisher delta is overwritten by F * delta^2 >= 0 (F >= 0), whose
    1-norm is its sum."""
    if len(delta) == 1:
        return torch.dot(weighted[0].reshape(-1), delta[0].reshape(-1)).double()
    if not fisher_given:
        return torch.stack(torch._foreach_norm(delta, 2)).double().square().sum()
    torch._foreach_mul_(delta, weighted)
    return torch.stack(torch._foreach_norm(delta, 1)).double().sum()


class _AnchoredQuadratic(torch.autograd.Function):
    """sum_n sum F_n * (p_n - theta0_n)^2 over directly trained weights (fisher None: all ones)."""

    @staticmethod
    def forward(ctx, theta0: Sequence[Tensor], fisher: Sequence[Tensor] | None, *params: Tensor) -> Tensor:
        device = params[0].device
        total = torch.zeros((), dtype=torch.float64, device=device)
        kept: list[Tensor] = [None] * len(params)  # type: ignore[list-item]
        for group in _groups([p.numel() for p in params], [None] * len(params), device):
            delta = torch._foreach_sub([params[i].detach().float() for i in group], [theta0[i].float() for i in group])
            weighted = delta if fisher is None else torch._foreach_mul(delta, [fisher[i] for i in group])
            for i, w in zip(group, weighted):
                kept[i] = w  # = d(penalty)/dp / 2
            total += _weighted_sum(weighted, delta, fisher is not None)
        ctx.kept, ctx.dtypes = kept, [p.dtype for p in params]
        return total.float()

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.kept is None:
            raise RuntimeError("the anchored penalty's backward ran twice; compute the penalty again")
        kept, ctx.kept = ctx.kept, None
        # in place: these tensors are this call's own, and autograd takes them over as the gradients
        torch._foreach_mul_(kept, 2 * grad)
        return None, None, *(w.to(dtype) for w, dtype in zip(kept, ctx.dtypes))


class _LoraQuadratic(torch.autograd.Function):
    """sum over LoRA-adapted weights of sum F * (scale * B @ A)^2 (transpose: the update is (B @ A)^T).

    factors = (A_0, B_0, A_1, B_1, ...); a group's A and B are stacked and multiplied in one batched
    product (groups of one on a CPU)."""

    @staticmethod
    def forward(ctx, scales: Sequence[float], transposes: Sequence[bool], fisher: Sequence[Tensor],
                *factors: Tensor) -> Tensor:
        a, b = factors[0::2], factors[1::2]
        device = a[0].device
        keys = [(x.shape, y.shape, s, t) for x, y, s, t in zip(a, b, scales, transposes)]
        total = torch.zeros((), dtype=torch.float64, device=device)
        ctx.groups = []
        for group in _groups([f.numel() for f in fisher], keys, device):
            stack_a = torch.stack([a[i].detach().float() for i in group])  # (G, r, in)
            stack_b = torch.stack([b[i].detach().float() for i in group])  # (G, out, r)
            delta = torch.bmm(stack_b, stack_a).mul_(scales[group[0]])  # (G, out, in)
            if transposes[group[0]]:
                delta = delta.transpose(1, 2).contiguous()
            if len(group) == 1:
                weighted = delta * fisher[group[0]]
            else:
                weighted = delta.clone()
                torch._foreach_mul_(list(weighted.unbind(0)), [fisher[i] for i in group])
            total += torch.dot(weighted.reshape(-1), delta.reshape(-1)).double()
            ctx.groups.append((group, stack_a, stack_b, weighted))
        ctx.scales, ctx.transposes, ctx.dtypes = scales, transposes, [f.dtype for f in factors]
        return total.float()

    @staticmethod
    def backward(ctx, grad: Tensor):
        grads: list[Tensor | None] = [None] * len(ctx.dtypes)
        for group, stack_a, stack_b, weighted in ctx.groups:
            first = group[0]
            weighted = weighted.transpose(1, 2) if ctx.transposes[first] else weighted  # (G, out, in), like B @ A
            coef = 2 * ctx.scales[first] * grad
            need_a = any(ctx.needs_input_grad[3 + 2 * i] for i in group)  # frozen factors: no product
            need_b = any(ctx.needs_input_grad[4 + 2 * i] for i in group)
            grad_a = torch.bmm(stack_b.transpose(1, 2), weighted).mul_(coef) if need_a else None  # (G, r, in)
            grad_b = torch.bmm(weighted, stack_a.transpose(1, 2)).mul_(coef) if need_b else None  # (G, out, r)
            for k, i in enumerate(group):
                if grad_a is not None:
                    grads[2 * i] = grad_a[k].to(ctx.dtypes[2 * i])
                if grad_b is not None:
                    grads[2 * i + 1] = grad_b[k].to(ctx.dtypes[2 * i + 1])
        ctx.groups = []
        return None, None, None, *grads


def anchored_quadratic(params: Sequence[Tensor], theta0: Sequence[Tensor], fisher: Sequence[Tensor] | None) -> Tensor:
    """sum over n of sum F_n * (params_n - theta0_n)^2 (fisher None: ||params - theta0||^2), float32;
    differentiable in params. A Fisher is non-negative."""
    if not params:
        return torch.zeros(())
    return _AnchoredQuadratic.apply(list(theta0), None if fisher is None else list(fisher), *params)


def lora_quadratic(factors: Sequence[tuple[Tensor, Tensor, float, bool]], fisher: Sequence[Tensor]) -> Tensor:
    """sum over LoRA-adapted weights of sum F * delta_W^2, delta_W = scale * B @ A (transposed if `transpose`);
    factors: one (A, B, scale, transpose) per weight, fisher: that weight's F. Differentiable in every A and B."""
    if not factors:
        return torch.zeros(())
    scales, transposes = [f[2] for f in factors], [f[3] for f in factors]
    return _LoraQuadratic.apply(scales, transposes, list(fisher), *(t for a, b, _, _ in factors for t in (a, b)))


def lora_sq_norm(factors: Sequence[tuple[Tensor, Tensor, float, bool]]) -> Tensor:
    """sum over LoRA-adapted weights of ||scale * B @ A||_F^2 without forming B @ A:
    ||s B A||^2 = s^2 * sum((B^T B) * (A A^T)), two (r, r) products per weight, batched per group of
    same-shaped layers on an accelerator. Plain autograd (the tensors involved are r x r)."""
    if not factors:
        return torch.zeros(())
    device = factors[0][0].device
    keys = [(a.shape, b.shape, s) for a, b, s, _ in factors]
    terms = []
    for group in _groups([a.shape[1] * b.shape[0] for a, b, _, _ in factors], keys, device):
        stack_a = torch.stack([factors[i][0].float() for i in group])  # (G, r, in)
        stack_b = torch.stack([factors[i][1].float() for i in group])  # (G, out, r)
        gram = torch.bmm(stack_b.transpose(1, 2), stack_b) * torch.bmm(stack_a, stack_a.transpose(1, 2))
        terms.append(factors[group[0]][2] ** 2 * gram.sum())
    return torch.stack(terms).sum()
