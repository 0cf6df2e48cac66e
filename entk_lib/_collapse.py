"""How the four-index eNTK ``K[a, b, i, j]`` is collapsed, and contractions into each collapse.

Internally every collapse is held in a *canonical* layout whose sample axes are explicit, so that
blocks over (row chunk, column chunk) of inputs can be written with plain slicing:

============  =================  ======================  ===========
collapse      canonical shape    public shape            sample axes
============  =================  ======================  ===========
full          (N, M, C, C)       (N, M, C, C)            0, 1
flattened     (C, N, C, M)       (C*N, C*M), class-major 1, 3
per_class     (C, N, M)          (C, N, M)               1, 2
class_mean    (N, M)             (N, M)                  0, 1
sum_logits    (N, M)             (N, M)                  0, 1
============  =================  ======================  ===========

Row ``i*N + a`` of the flattened kernel is output ``i`` at input ``a`` (block ``(i, j)`` of the
flattened matrix is ``K[:, :, i, j]``).
"""

from __future__ import annotations

import torch

COLLAPSES = ("full", "flattened", "per_class", "class_mean", "sum_logits")

_SAMPLE_AXES = {
    "full": (0, 1),
    "flattened": (1, 3),
    "per_class": (1, 2),
    "class_mean": (0, 1),
    "sum_logits": (0, 1),
}


def check_collapse(collapse: str, allowed=COLLAPSES) -> str:
    if collapse not in allowed:
        raise ValueError(f"`collapse` must be one of {list(allowed)}, got {collapse!r}")
    return collapse


def canonical_shape(collapse: str, n: int, m: int, c: int) -> tuple[int, ...]:
    return {
        "full": (n, m, c, c),
        "flattened": (c, n, c, m),
        "per_class": (c, n, m),
        "class_mean": (n, m),
        "sum_logits": (n, m),
    }[collapse]


def public_view(kernel: torch.Tensor, collapse: str) -> torch.Tensor:
    """Reshape a canonical kernel into the documented public shape."""
    if collapse == "flattened":
        c, n, _, m = kernel.shape
        return kernel.reshape(c * n, c * m)
    return kernel


def class_multiplicity(collapse: str, c: int) -> int:
    """How many class pairs one contraction of this collapse touches (for cost models)."""
    return {"full": c * c, "flattened": c * c, "per_class": c, "class_mean": c, "sum_logits": 1}[
        collapse
    ]


def contract(jac_a: torch.Tensor, jac_b: torch.Tensor, collapse: str) -> torch.Tensor:
    """Kernel block ``J_a J_b^T`` in the canonical layout of ``collapse``.

    Parameters
    ----------
    jac_a, jac_b : Tensor, shapes (C, n, P) and (C, m, P)
        Jacobians (or Jacobian factors) of the C outputs at n and m inputs.
    """
    c, n, p = jac_a.shape
    m = jac_b.shape[1]
    if collapse in ("full", "flattened"):
        flat = (jac_a.reshape(c * n, p) @ jac_b.reshape(c * m, p).T).view(c, n, c, m)
        return flat.permute(1, 3, 0, 2) if collapse == "full" else flat
    if collapse == "per_class":
        return torch.bmm(jac_a, jac_b.transpose(1, 2))
    if collapse == "class_mean":  # sum over classes of J_i J_i^T, accumulated in place (no temporaries)
        total = jac_a.new_zeros((n, m))
        for i in range(c):
            total.addmm_(jac_a[i], jac_b[i].T)
        return total.div_(c)
    if collapse == "sum_logits":
        return (jac_a.sum(0) @ jac_b.sum(0).T).div_(c)
    raise ValueError(f"unknown collapse {collapse!r}")


def sample_mask(kernel: torch.Tensor, mask: torch.Tensor, collapse: str) -> torch.Tensor:
    """Multiply a canonical kernel block entrywise by an (n, m) matrix over input pairs, in place
    (``kernel`` must be a fresh block, as :func:`contract` returns)."""
    if collapse == "full":
        return kernel.mul_(mask[:, :, None, None])
    if collapse == "flattened":
        return kernel.mul_(mask[None, :, None, :])
    if collapse == "per_class":
        return kernel.mul_(mask[None])
    return kernel.mul_(mask)


def block_index(collapse: str, rows: slice, cols: slice) -> tuple:
    """Index tuple selecting the (rows, cols) input block of a canonical kernel."""
    axes = _SAMPLE_AXES[collapse]
    index = [slice(None)] * (4 if collapse in ("full", "flattened") else 3 if collapse == "per_class" else 2)
    index[axes[0]] = rows
    index[axes[1]] = cols
    return tuple(index)


def transpose_block(block: torch.Tensor, collapse: str) -> torch.Tensor:
    """The block at (cols, rows) of a symmetric kernel, given the block at (rows, cols)."""
    if collapse == "full":
        return block.permute(1, 0, 3, 2)
    if collapse == "flattened":
        return block.permute(2, 3, 0, 1)
    if collapse == "per_class":
        return block.transpose(1, 2)
    return block.T
