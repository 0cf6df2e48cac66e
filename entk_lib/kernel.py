"""The empirical neural tangent kernel of any ``torch.nn.Module``.

Notation: a batch of N inputs, a model with C outputs and P parameters, Jacobian ``J`` of shape
(C, N, P) (output, input, parameter: class-major, so ``J.reshape(C*N, P)`` has the rows of the
``flattened`` kernel; :func:`entk_jacobian` returns exactly this). The eNTK is
``K[a, b, i, j] = sum_p J[i, a, p] J[j, b, p]``, shape (N, N, C, C), and :func:`entk` returns one
of its collapses (see :mod:`entk_lib._collapse` for shapes and the class-major ordering of
``"flattened"``).

Three lines on your own model::

    import entk_lib
    K = entk_lib.entk(model, x, collapse="class_mean")        # (N, N)
    pairs = entk_lib.top_eigenpairs(K, k=20)                    # values descending

The dense kernel is built in chunks of inputs under a memory budget (``memory_budget`` bytes, by
default ``ENTK_MEMORY_BUDGET`` or 4 GiB). ``backend`` is the engine's one strategy switch (see
:mod:`entk_lib._plan`): ``"structured"`` (the default under ``"auto"``) computes stock
``nn.Linear``/``nn.Embedding`` parameters from their structured factors (:mod:`entk_lib._factors`)
and all others by ``torch.func`` (``vmap`` + ``jacrev``); ``"jacobian"`` uses ``vmap(jacrev)`` for
every tensor. The decision is a :class:`KernelPlan` (:func:`entk_plan`), which every entry point
accepts prebuilt (``plan=``) so that it is made once. For kernels too large to form, use
:func:`entk_lib.entk_operator` (matrix-free, also ``backend="vjp"``), :func:`entk_lowrank` (when P
is small), or :func:`entk_lib.entk_eigenpairs`, which chooses.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ._collapse import (
    COLLAPSES,
    block_index,
    canonical_shape,
    check_collapse,
    public_view,
    transpose_block,
)
from ._factors import Factor, contract_factors
from ._plan import (
    BACKENDS,
    Backend,
    KernelPlan,
    check_backend,
    check_inputs,
    factor_bytes_per_sample,
    make_plan,
    resolve_plan,
)

__all__ = [
    "BACKENDS",
    "COLLAPSES",
    "Backend",
    "KernelPlan",
    "KernelTooLargeError",
    "LowRankKernel",
    "default_memory_budget",
    "entk",
    "entk_by_layer",
    "entk_jacobian",
    "entk_lowrank",
    "entk_plan",
]

GiB = 1024**3


class KernelTooLargeError(ValueError, MemoryError):
    """A dense kernel (or its working memory) would exceed the memory budget."""


def default_memory_budget() -> int:
    """Bytes the dense engine may use: ``ENTK_MEMORY_BUDGET`` (bytes or e.g. '6GiB'), else 4 GiB."""
    raw = os.environ.get("ENTK_MEMORY_BUDGET")
    if not raw:
        return 4 * GiB
    text, scale = raw.strip(), 1
    for suffix, factor in (("GiB", GiB), ("MiB", 1024**2), ("GB", 10**9), ("MB", 10**6)):
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)].strip(), factor
            break
    try:
        value = float(text) * scale
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"`ENTK_MEMORY_BUDGET` must be a positive number of bytes or a size such as "
                         f"'6GiB', '512MiB', '8GB' or '500MB', got {raw!r}")
    return int(value)


#: Backends of the dense entry points (``"vjp"`` is matrix-free: :func:`entk_lib.entk_operator`).
_DENSE_BACKENDS = ("auto", "structured", "jacobian")


def entk_plan(
    model: nn.Module, inputs: torch.Tensor, *, layers=None, output_weights=None, backend: Backend = "auto"
) -> KernelPlan:
    """Which parameters enter the kernel and which backend computes each (``.describe()``).

    Built once (two pilot passes and a Jacobian-vector-product check of the structured factors),
    it can be passed to :func:`entk`, :func:`entk_by_layer`, :func:`entk_jacobian`,
    :func:`entk_lowrank` and :func:`entk_lib.entk_operator` as ``plan=`` (then without ``layers``
    and ``output_weights``, which it holds). ``backend``: ``"auto"``/``"structured"`` (structured
    factors where they are verified) or ``"jacobian"``; ``"vjp"`` builds the cheap ``"jacobian"``
    plan (no pilot passes: a ``vjp`` operator only needs the parameter names and output weights).
    """
    backend = check_backend(backend, BACKENDS, "entk_plan")
    generic = backend in ("jacobian", "vjp")
    return make_plan(model, inputs, layers, output_weights, "jacobian" if generic else "auto")


def entk(
    model: nn.Module,
    inputs: torch.Tensor,
    inputs2: torch.Tensor | None = None,
    *,
    collapse: str = "flattened",
    layers: str | Sequence[str] | None = None,
    output_weights=None,
    backend: Backend = "auto",
    memory_budget: int | None = None,
    progress: bool = False,
    plan: KernelPlan | None = None,
) -> torch.Tensor:
    """The eNTK of ``model`` at ``inputs`` (against ``inputs2`` if given), in one collapse.

    Parameters
    ----------
    model : nn.Module
        Maps a batch (N, ...) to outputs (N, C); samples must be processed independently
        (``model.eval()`` for dropout or batch norm).
    inputs, inputs2 : Tensor, shapes (N, ...) and (M, ...)
        Row and column inputs; ``inputs2=None`` gives the symmetric kernel (M = N).
    collapse : {"full", "flattened", "per_class", "class_mean", "sum_logits"}
        ``full`` (N, M, C, C); ``flattened`` (C*N, C*M) with row ``i*N + a``; ``per_class``
        (C, N, M) diagonal blocks; ``class_mean`` (N, M) mean over i of ``K[:, :, i, i]``;
        ``sum_logits`` (N, M) ``(1/C) sum_{i,j} K[:, :, i, j]``.
    layers : str or list of str, optional
        Module names or parameter-name prefixes whose parameters alone enter the sum.
    output_weights : array of length C, optional
        Factor multiplying each output's Jacobian row (importance rescaling).
    backend : {"auto", "structured", "jacobian"}
        ``structured`` (the same as ``auto`` here) computes Linear/Embedding parameters from
        their structured factors and the rest by ``vmap(jacrev)``; ``jacobian`` uses
        ``vmap(jacrev)`` for all. Both give the same kernel (tested). ``vjp`` is matrix-free only.
    memory_budget : int, optional
        Bytes for the kernel and its working memory (default :func:`default_memory_budget`); a
        kernel above it raises :class:`KernelTooLargeError`.
    progress : bool
        Show a progress bar over input chunks.
    plan : KernelPlan, optional
        A prebuilt plan (:func:`entk_plan`, or ``choose_route(...).plan``), used instead of
        building one; it holds ``layers`` and ``output_weights``.

    Returns
    -------
    Tensor in the model's dtype, shaped as listed under ``collapse``.
    """
    return _kernels(
        model, inputs, inputs2, collapse, layers, output_weights, backend, memory_budget, progress, None, plan
    )["total"]


def entk_by_layer(
    model: nn.Module,
    inputs: torch.Tensor,
    inputs2: torch.Tensor | None = None,
    *,
    collapse: str = "flattened",
    layers=None,
    output_weights=None,
    by: str = "module",
    backend: Backend = "auto",
    memory_budget: int | None = None,
    progress: bool = False,
    plan: KernelPlan | None = None,
) -> dict[str, torch.Tensor]:
    """One kernel per module that owns parameters (``by="module"``) or per tensor (``"parameter"``).

    The kernels sum to :func:`entk` with the same arguments. Parameters owned directly by the
    root module are grouped under ``"<root>"``. Other arguments as in :func:`entk`.
    """
    return _kernels(
        model, inputs, inputs2, collapse, layers, output_weights, backend, memory_budget, progress, by, plan
    )


def entk_jacobian(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    layers=None,
    output_weights=None,
    backend: Backend = "auto",
    plan: KernelPlan | None = None,
) -> torch.Tensor:
    """The Jacobian ``J`` (C, N, P) of the outputs w.r.t. the selected parameters.

    ``J[i, a, p]`` is output ``i`` at input ``a`` differentiated by parameter ``p`` (class-major:
    ``J.reshape(C*N, P)`` is ordered as the rows of the ``flattened`` kernel). Parameters are
    concatenated in ``model.named_parameters()`` order, each flattened. ``backend`` and ``plan``
    as in :func:`entk`.
    """
    backend = check_backend(backend, _DENSE_BACKENDS, "entk_jacobian")
    plan = resolve_plan(model, inputs, layers, output_weights, backend, plan)
    return plan.jacobian(inputs)


@dataclass
class LowRankKernel:
    """A kernel ``K = F F^T`` kept as its factor ``F`` (n, r), for spectra when r << n.

    :func:`entk_lib.top_eigenpairs` diagonalizes the r x r Gram matrix ``F^T F`` instead of the
    n x n kernel; the eigenvalues agree and ``K``'s eigenvectors are ``F v / sqrt(lambda)``.
    """

    factor: torch.Tensor
    collapse: str

    @property
    def shape(self) -> tuple[int, int]:
        n = self.factor.shape[0]
        return (n, n)

    @property
    def rank_bound(self) -> int:
        return min(self.factor.shape)

    def dense(self) -> torch.Tensor:
        return self.factor @ self.factor.T

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.factor @ (self.factor.T @ v)


def entk_lowrank(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    collapse: str = "flattened",
    layers=None,
    output_weights=None,
    backend: Backend = "auto",
    plan: KernelPlan | None = None,
) -> LowRankKernel:
    """The kernel as ``F F^T`` with ``F`` built from the Jacobian (for P < C*N, e.g. TMS).

    ``flattened``: ``F = J`` (C, N, P) reshaped (C*N, P), class-major rows; ``class_mean``:
    (N, C*P) over sqrt(C); ``sum_logits``: the class-summed Jacobian (N, P) over sqrt(C).
    ``backend`` and ``plan`` as in :func:`entk`.
    """
    check_collapse(collapse, ("flattened", "class_mean", "sum_logits"))
    jac = entk_jacobian(model, inputs, layers=layers, output_weights=output_weights, backend=backend,
                        plan=plan)
    c, n, p = jac.shape
    if collapse == "flattened":
        factor = jac.reshape(c * n, p)
    elif collapse == "class_mean":
        factor = jac.permute(1, 0, 2).reshape(n, c * p) / c**0.5
    else:
        factor = jac.sum(0) / c**0.5
    return LowRankKernel(factor, collapse)


# --------------------------------------------------------------------------------------------
# The blocked driver
# --------------------------------------------------------------------------------------------


def _kernels(model, inputs, inputs2, collapse, layers, output_weights, backend, budget, progress, by,
             plan=None):
    check_collapse(collapse)
    backend = check_backend(backend, _DENSE_BACKENDS, "dense kernels")
    budget = default_memory_budget() if budget is None else int(budget)
    plan = resolve_plan(model, inputs, layers, output_weights, backend, plan)
    if inputs2 is not None:
        check_inputs(model, inputs2, "inputs2")
    if collapse == "sum_logits":  # (1/C) S S^T, S the Jacobian of the summed outputs: C x cheaper
        plan = plan.with_sum_outputs(True)
        kernels = _kernels_of_plan(plan, inputs, inputs2, "class_mean", budget, progress, by)
        return {g: k / plan.n_outputs for g, k in kernels.items()}
    return _kernels_of_plan(plan, inputs, inputs2, collapse, budget, progress, by)


def _kernels_of_plan(plan, inputs, inputs2, collapse, budget, progress, by):
    """Blocked computation of the kernels of ``plan`` (one per group of ``by``)."""
    c = 1 if plan.sum_outputs else plan.n_outputs
    groups = plan.groups(by)
    n = inputs.shape[0]
    m = n if inputs2 is None else inputs2.shape[0]
    shape = canonical_shape(collapse, n, m, c)
    itemsize = torch.empty((), dtype=plan.dtype).element_size()
    result_bytes = len(groups) * itemsize * _prod(shape)
    if result_bytes > budget:
        raise KernelTooLargeError(
            f"the kernel{'s' if len(groups) > 1 else ''} need "
            f"{result_bytes / GiB:.2f} GiB, above the memory budget of {budget / GiB:.2f} GiB. "
            "Use entk_lib.entk_operator(...) for a matrix-free operator (top eigenpairs by "
            "Lanczos), entk_lowrank(...) when P < C*N, or raise `memory_budget`."
        )
    pilot = plan.factors(inputs[: min(2, n)])
    per_sample = max(1, factor_bytes_per_sample(pilot))  # bytes of all factors of one input
    out = {g: torch.zeros(shape, dtype=plan.dtype, device=plan.device) for g in groups}
    free = budget - result_bytes
    if (n + (0 if inputs2 is None else m)) * per_sample <= free * 3 // 4:
        _all_at_once(plan, inputs, inputs2, collapse, groups, out, free, per_sample, progress)
    else:
        _chunk_pairs(plan, inputs, inputs2, collapse, groups, out, free, per_sample, progress)
    return {g: public_view(k, collapse) for g, k in out.items()}


def _prod(shape) -> int:
    total = 1
    for s in shape:
        total *= s
    return total


def _factors_in_chunks(plan, x, chunk, progress, label) -> dict[str, Factor]:
    """Factors of all of ``x``, computed ``chunk`` inputs at a time into preallocated storage."""
    n = x.shape[0]
    out: dict[str, Factor] = {}
    starts = range(0, n, chunk)
    for s in tqdm(starts, desc=label, disable=not progress or len(starts) == 1, leave=False):
        rows = slice(s, min(s + chunk, n))
        part = plan.factors(x[rows])
        for name, factor in part.items():
            if name not in out:
                out[name] = factor.allocate(n)
            out[name].assign(rows, factor)
    return out


def _add_group_contraction(target, fa, fb, names, collapse) -> None:
    """``target += `` the kernel block of one group's parameters, each parameter's factors
    contracted on their own (no concatenated copy of the Jacobian), one term alive at a time."""
    for k in names:
        term = contract_factors(fa[k], fb[k], collapse)
        target += term
        del term


#: Working memory of one chunk's Jacobian computation, in units of its stored factor size
#: (``vmap(jacrev)`` keeps per-output activations and a transposed copy).
_TRANSIENT = 6

#: Live kernel-block temporaries per contracted block, in units of the block's size: one term
#: of :func:`contract_factors`, and inside it the running sum over positions and one input Gram
#: matrix.
_BLOCK_TEMPORARIES = 3


def _chunk_size(free, per_sample, stored_chunks=0) -> int:
    """Inputs per chunk so that ``stored_chunks`` stored chunk factors plus one chunk's
    transient work use at most a quarter (all-at-once) or all (block pairs) of ``free``."""
    if stored_chunks == 0:
        return max(1, int(free // (4 * _TRANSIENT * per_sample)))
    return max(1, int(free // ((stored_chunks + _TRANSIENT) * per_sample)))


def _rows_per_block(free, row_bytes, factor_bytes) -> int:
    """Kernel rows (inputs) contracted at once so that the block temporaries and a contiguous
    copy of those rows' factors fit in ``free``."""
    return max(1, int(free // max(1, _BLOCK_TEMPORARIES * row_bytes + factor_bytes)))


def _all_at_once(plan, x1, x2, collapse, groups, out, free, per_sample, progress):
    """Factors of all inputs kept; the kernel contracted in blocks of rows, accumulated in place."""
    chunk = _chunk_size(free, per_sample)
    fa = _factors_in_chunks(plan, x1, chunk, progress, "eNTK factors")
    fb = fa if x2 is None else _factors_in_chunks(plan, x2, chunk, progress, "eNTK factors (x2)")
    n = x1.shape[0]
    stored = (n + (0 if x2 is None else x2.shape[0])) * per_sample
    one = next(iter(out.values()))
    rows = _rows_per_block(free - stored, one.element_size() * one.numel() // n, per_sample)
    for g, names in groups.items():
        for s in range(0, n, rows):
            r = slice(s, min(s + rows, n))
            part = {k: fa[k].rows(r) for k in names}
            _add_group_contraction(out[g][block_index(collapse, r, slice(None))], part, fb, names, collapse)


def _chunk_pairs(plan, x1, x2, collapse, groups, out, free, per_sample, progress):
    """Blocks (rows, cols) of inputs; factors recomputed per block when they cannot all be kept."""
    chunk = _chunk_size(free, per_sample, stored_chunks=2)
    n = x1.shape[0]
    m = n if x2 is None else x2.shape[0]
    rows = [slice(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    cols = [slice(s, min(s + chunk, m)) for s in range(0, m, chunk)]
    pairs = [(r, c) for i, r in enumerate(rows) for j, c in enumerate(cols) if x2 is not None or j >= i]
    for r, c in tqdm(pairs, desc="eNTK blocks", disable=not progress, leave=False):
        fa = plan.factors(x1[r])
        fb = fa if (x2 is None and r == c) else plan.factors((x1 if x2 is None else x2)[c])
        for g, names in groups.items():
            block = out[g][block_index(collapse, r, c)]
            _add_group_contraction(block, fa, fb, names, collapse)
            if x2 is None and r != c:
                out[g][block_index(collapse, c, r)] = transpose_block(block, collapse)
