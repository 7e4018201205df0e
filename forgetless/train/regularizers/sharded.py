"""EWC and L2-SP under FSDP2: anchors and Fisher sharded exactly like the parameters.

FSDP2 (`fully_shard`) turns every parameter into a DTensor of which each process holds one shard.
The penalty sum_i F_i * (theta_i - theta0_i)^2 is a sum over elements, so each process sums over its
own shards and one all-reduce adds the partial sums; the gradient 2 F (theta - theta0) of a shard
needs only that shard, so it stays on its process (it never enters FSDP's gradient averaging, and
equals the one-process gradient). For LoRA, each process gathers the small factors A and B whole and
forms only its rows of scale * B @ A, the rows of its shard of the base weight's Fisher.

The anchors and the Fisher are taken whole at setup (before the Trainer shards the model), then
cut to each process's shard at the first penalty: from there on a process holds 1/N of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

from forgetless.errors import ForgetlessError


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 (or another DTensor layout) holds the model's parameters as shards."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def shard_like(full: Tensor, param: DTensor) -> DTensor:
    """A tensor every process holds whole, laid out like `param`: each process keeps its own shard only
    (cut locally, no communication)."""
    return distribute_tensor(full.to(param.to_local().device), param.device_mesh, param.placements,
                             src_data_rank=None)


def shard_all(tensors: Mapping[str, Tensor], params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`shard_like` for every tensor whose parameter is sharded; the others stay as they are."""
    return {n: shard_like(t, params[n]) if isinstance(params[n], DTensor) and not isinstance(t, DTensor) else t
            for n, t in tensors.items()}


def lora_rows_quadratic(factors: Iterable[tuple[Tensor, Tensor, float, bool]], weight: DTensor,
                        fisher: DTensor | None) -> Tensor:
    """sum over this process's rows of W of F * delta^2, delta = sum of scale * B @ A (a partial sum).

    The factors are small (r rows or columns), so each process gathers them whole and forms the rows of
    delta that match its shard of W and F; their gradients are partial sums, added by one reduce-scatter
    back into each factor's shards."""
    if weight.device_mesh.ndim != 1 or tuple(weight.placements) != (Shard(0),):
        raise ForgetlessError(f"EWC / L2-SP under sharding support one mesh dimension sharded by rows, got "
                              f"{weight.device_mesh.ndim} and {weight.placements}", hint="use FSDP2's default layout")
    delta = None
    for a, b, scale, transpose in factors:
        a, b = (x.full_tensor(grad_placements=[Partial()]) if isinstance(x, DTensor) else x for x in (a, b))
        d = (b.float() @ a.float()) * scale
        delta = (d.T if transpose else d) if delta is None else delta + (d.T if transpose else d)
    mesh = weight.device_mesh
    pieces = delta.chunk(mesh.size(), dim=0)  # DTensor's Shard(0) cuts rows as torch.chunk does
    rows = pieces[mesh.get_local_rank()] if mesh.get_local_rank() < len(pieces) else delta[:0]
    square = rows.square()
    return (square if fisher is None else fisher.to_local() * square).sum()


def sharded_quadratic(terms: Iterable[Tensor], mesh: DeviceMesh) -> Tensor:
    """The sum of this process's partial sums (DTensor sums over its shards, or plain sums over its rows),
    all-reduced once: a scalar, the same on every process. Its gradient is the local sum's, since
    d(total)/d(this process's part) = 1: each shard's gradient stays where the shard is."""
    local = torch.zeros((), device=mesh.device_type)
    for term in terms:  # a DTensor sum over shards is Partial; its local value is this process's part
        local = local + (term.to_local(grad_placements=[Replicate()]) if isinstance(term, DTensor) else term)
    total = local.detach().clone()
    dist.all_reduce(total, group=mesh.get_group())
    return local + (total - local.detach())
