"""Data-parallel eNTK products under ``torch.distributed``: the inputs sharded over ranks.

A kernel product is ``K V = J (J^T V)``. With the N inputs split into contiguous shards, rank r
holding the Jacobian rows ``J_r`` of its shard,

- ``J^T V = sum_r J_r^T V_r`` is a sum of per-shard pull-backs: **one all-reduce** in parameter
  space (P floats per vector, P the parameters in the kernel);
- ``(J U)_r = J_r U`` is then local to each shard, and **one all-gather** (N*C floats per vector)
  gives every rank the whole product.

So every rank sees the same operator on full-length vectors, and a Krylov solver run with the
same arguments (and seed) on every rank takes the same steps: :func:`entk_lib.top_eigenpairs`
works unchanged, and every rank ends with all eigenpairs. The work per rank (the pull-backs and
push-forwards, which dominate) falls as 1/world_size; the solver's own work (orthogonalizing
N*C-vectors) is repeated on every rank, which is cheap next to the products.

Usage (launch one process per GPU or CPU socket with ``torchrun``; any backend: gloo on CPUs,
NCCL on GPUs)::

    torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(minutes=5))
    op = entk_lib.entk_operator(model, x, collapse="flattened", group="world")  # same x on every rank
    values, vectors = entk_lib.top_eigenpairs(op, k=50, seed=0)                  # same on every rank

The group is never picked up implicitly: every rank must pass the same, full inputs, and a run
that initialised ``torch.distributed`` for another purpose (e.g. data-parallel training on
different batches) must not have its kernels silently sharded. A rank that fails makes the
others fail at their next collective, after the process group's ``timeout``; ``torchrun`` then
stops the launch with the failing rank's error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from .operator import EntkOperator

__all__ = ["DistributedEntkOperator", "ShardedProducts", "all_gather_rows", "all_reduce_sum",
           "resolve_group", "shard_slice"]


def resolve_group(group) -> tuple[object, int, int]:
    """``(group, rank, world_size)`` for ``group``: a process group, or ``"world"`` for the
    default group of an initialised ``torch.distributed``; ``None`` gives ``(None, 0, 1)``."""
    if group is None:
        return None, 0, 1
    if not dist.is_available() or not dist.is_initialized():
        raise ValueError(f"`group`={group!r} needs an initialised torch.distributed "
                         "(torch.distributed.init_process_group, e.g. under torchrun); got none")
    if isinstance(group, str):
        if group != "world":
            raise ValueError(f"`group` must be None, 'world' or a process group, got {group!r}")
        group = dist.group.WORLD
    return group, dist.get_rank(group), dist.get_world_size(group)


def shard_slice(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``range(n)``; shard sizes differ by at most one."""
    if n < world_size:
        raise ValueError(f"{n} inputs cannot be sharded over {world_size} ranks: each rank needs one")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def all_reduce_sum(tensors: list[torch.Tensor], group) -> list[torch.Tensor]:
    """Sum each tensor over the ranks of ``group``, in one collective (one flat buffer)."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view_as(t))
        start += t.numel()
    return out


def all_gather_rows(local: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    """Concatenate every rank's ``local`` (b, n_r, ...) along dimension 1, in rank order
    (``sizes`` the n_r of every rank; shorter shards are padded for the collective)."""
    width = max(sizes)
    padded = local.new_zeros((local.shape[0], width, *local.shape[2:]))
    padded[:, : local.shape[1]] = local
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous(), group=group)
    return torch.cat([p[:, :n] for p, n in zip(parts, sizes, strict=True)], dim=1)


class ShardedProducts:
    """``J J^T`` on full-length blocks (b, N, ...) from one rank's ``pull`` / ``push`` of its
    shard: slice, pull back, all-reduce, push forward, all-gather. ``pull`` returns a list or a
    dict of parameter-space tensors; ``push`` takes the same."""

    def __init__(self, pull: Callable, push: Callable, n_total: int, group):
        self.pull, self.push = pull, push
        self.group, self.rank, self.world_size = resolve_group(group)
        self.n_total = n_total
        self.sizes = [_len(shard_slice(n_total, r, self.world_size)) for r in range(self.world_size)]
        self.shard = shard_slice(n_total, self.rank, self.world_size)

    def pull_all(self, blocks: torch.Tensor):
        """``J^T`` of full-length blocks (b, N, ...): this shard's pull-back, summed over ranks."""
        grads = self.pull(blocks[:, self.shard])
        if isinstance(grads, dict):
            return dict(zip(grads, all_reduce_sum(list(grads.values()), self.group), strict=True))
        return all_reduce_sum(list(grads), self.group)

    def push_all(self, grads) -> torch.Tensor:
        """``J`` of parameter-space tangents, gathered over ranks: (b, N, ...)."""
        return all_gather_rows(self.push(grads), self.sizes, self.group)

    def __call__(self, blocks: torch.Tensor) -> torch.Tensor:
        return self.push_all(self.pull_all(blocks))


def _len(s: slice) -> int:
    return s.stop - s.start


class DistributedEntkOperator(EntkOperator):
    """An :class:`~entk_lib.operator.EntkOperator` over all N inputs whose products run on the
    shard ``local`` holds (its inputs: this rank's :func:`shard_slice` of N), one all-reduce and
    one all-gather per block of vectors. Built by ``entk_operator(..., group=...)``.

    ``class_mean`` goes through the flattened products (one cotangent per class and vector),
    C times more work than the structured operator's per-class shortcut on one process.
    """

    def __init__(self, local: EntkOperator, n_total: int, group):
        self.local = local
        self.products = ShardedProducts(local.pull, local.push, n_total, group)
        super().__init__(n_total, local.n_outputs, local.collapse, local.torch_dtype, local.scale,
                         local.device)
        self.block = getattr(local, "column_block", None)

    def pull(self, cot: torch.Tensor) -> list[torch.Tensor]:
        return self.products.pull_all(cot)

    def push(self, grads: list[torch.Tensor]) -> torch.Tensor:
        return self.products.push_all(grads)

    def apply_cotangents(self, cot: torch.Tensor) -> torch.Tensor:
        step = self.block or cot.shape[0]
        return torch.cat([self.products(cot[s : s + step]) for s in range(0, cot.shape[0], step)])
