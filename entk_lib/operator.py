"""The eNTK as a matrix-free ``scipy.sparse.linalg.LinearOperator``.

A product ``K V`` is ``J (J^T V)``: pull the block ``V`` back to parameter space, push it
forward again. The kernel is never formed, nor are the Jacobian rows of Linear/Embedding weights.
``backend`` (the engine's one vocabulary, :mod:`entk_lib._plan`) says how the pair is computed:

``structured``
    The per-parameter Jacobian factors of :mod:`entk_lib._factors` are computed once for all
    inputs and kept (output cotangents ``G`` and layer inputs ``U`` for Linear/Embedding weights,
    explicit Jacobian blocks for other parameters). A product then costs
    ``O(N T out (C + in))`` per vector and Linear layer: a few matrix products, no autodiff.
``jacobian``
    The explicit Jacobian (C, N, P) of every parameter, ``vmap(jacrev)``, computed once and kept;
    a product is two matrix products with it (memory C N P).
``vjp``
    ``torch.func.vjp`` then ``torch.func.jvp`` of the model on chunks of the batch, the columns
    of ``V`` batched with ``vmap``; no Jacobian at all. Without ``reuse_forward`` it holds one
    chunk's activations at a time; use it when the factors do not fit the memory budget (large
    models, long sequences).
``auto``
    ``structured`` when its factors fit half the memory budget, else ``vjp``.

The ``structured`` and ``jacobian`` operators are :class:`FactoredOperator` (products from stored
factors), the ``vjp`` one a :class:`VjpOperator`.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn
from torch.func import functional_call, jvp, linearize, vjp, vmap

from ._collapse import check_collapse
from ._factors import Factor, JacobianFactor, LinearFactor, cat_factors
from ._plan import (
    BACKENDS,
    Backend,
    KernelPlan,
    check_backend,
    check_inputs,
    check_output_weights,
    factor_bytes_per_sample,
    resolve_plan,
    select_parameters,
)
from .params import check_int

__all__ = ["EntkOperator", "FactoredOperator", "VjpOperator", "entk_operator"]


class EntkOperator(LinearOperator):
    """Matrix-free eNTK: ``flattened`` (C*N, C*N), ``class_mean`` or ``sum_logits`` (N, N).

    Subclasses implement :meth:`apply_cotangents`, the flattened product ``J J^T`` on a batch of
    output-space blocks; the collapses are built from it here. ``matvec``/``matmat`` take numpy
    arrays; products run in torch in the model's dtype. ``n_products`` counts kernel-vector
    products (columns) so far.
    """

    def __init__(self, n_inputs: int, n_outputs: int, collapse: str, torch_dtype: torch.dtype,
                 scale: float = 1.0, device: torch.device | str = "cpu"):
        self.collapse = collapse
        self.scale = scale
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs
        self.torch_dtype = torch_dtype
        self.device = device
        self.n_products = 0
        size = n_inputs * n_outputs if collapse == "flattened" else n_inputs
        super().__init__(dtype=np.dtype(str(torch_dtype).replace("torch.", "")), shape=(size, size))

    def pull(self, cot: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        """``J^T`` on a batch of output-space blocks (b, N, C): parameter-space tensors, each with
        the batch in one of its dimensions (summed over inputs, so a sharded operator all-reduces
        them: :mod:`entk_lib.distributed`)."""
        raise NotImplementedError

    def push(self, grads: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        """``J`` on what :meth:`pull` returned: (b, N, C)."""
        raise NotImplementedError

    def apply_cotangents(self, cot: torch.Tensor) -> torch.Tensor:
        """``J J^T`` on a batch of output-space blocks: (b, N, C) -> (b, N, C)."""
        return self.push(self.pull(cot))

    def _matmat(self, v):
        v_t = torch.as_tensor(np.asarray(v), dtype=self.torch_dtype, device=self.device)
        n, c, k = self.n_inputs, self.n_outputs, v_t.shape[1]
        self.n_products += k
        if self.collapse == "flattened":
            out = self.apply_cotangents(v_t.T.reshape(k, c, n).permute(0, 2, 1))  # (k, N, C)
            result = out.permute(2, 1, 0).reshape(c * n, k)
        elif self.collapse == "sum_logits":
            cot = v_t.T[:, :, None].expand(k, n, c)
            result = self.apply_cotangents(cot).sum(2).T / c
        else:  # class_mean: (1/C) sum_i J_i J_i^T v
            result = self.apply_class_mean(v_t) / c
        return (result * self.scale if self.scale != 1.0 else result).detach().cpu().numpy()

    def apply_class_mean(self, v: torch.Tensor) -> torch.Tensor:
        """``sum_i J_i J_i^T v`` for v of shape (N, k), one cotangent per (class, vector); the
        :class:`FactoredOperator` overrides this with a per-class product that costs C times less."""
        n, c, k = self.n_inputs, self.n_outputs, v.shape[1]
        eye = torch.eye(c, dtype=self.torch_dtype, device=v.device)
        cot = (eye[:, None, None, :] * v.T[None, :, :, None]).reshape(c * k, n, c)
        out = self.apply_cotangents(cot).reshape(c, k, n, c)
        return torch.diagonal(out, dim1=0, dim2=3).sum(-1).T

    def _matvec(self, v):
        return self._matmat(np.asarray(v).reshape(-1, 1))[:, 0]

    def _rmatvec(self, v):
        return self._matvec(v)

    def _adjoint(self):
        return self


class VjpOperator(EntkOperator):
    """Products by ``torch.func.vjp`` / ``jvp`` on chunks of ``chunk_size`` inputs.

    With ``reuse_forward`` the forward pass of every chunk runs once: its vjp closure and its
    linearization (``torch.func.linearize``) are kept and reused by every product (about 3x
    faster; memory of the chunk activations). Models that cannot be traced for linearization fall
    back to a fresh ``jvp`` per product.
    """

    def __init__(self, model, inputs, collapse, names, n_outputs, weights, chunk_size, reuse_forward):
        state = dict(model.named_parameters())
        state.update(dict(model.named_buffers()))
        self.model = model
        self.inputs = inputs
        self.weights = weights
        self.chunk_size = chunk_size
        self.reuse_forward = reuse_forward
        self.params = {k: state[k].detach() for k in names}
        self.fixed = {k: v.detach() for k, v in state.items() if k not in self.params}
        self._closures: list | None = None
        first = next(iter(self.params.values()))
        super().__init__(inputs.shape[0], n_outputs, collapse, first.dtype, device=first.device)

    def _f(self, params, x):
        out = functional_call(self.model, ({**self.fixed, **params},), (x,))
        return out * self.weights if self.weights is not None else out

    def _chunks(self):
        n = self.inputs.shape[0]
        return [slice(s, min(s + self.chunk_size, n)) for s in range(0, n, self.chunk_size)]

    def _chunk_f(self, sl):
        """The model's (weighted) outputs on one chunk, as a function of the parameters."""
        def f(p):
            return self._f(p, self.inputs[sl])

        return f

    def _closures_for(self, sl):
        """(pull, push, f) for one chunk: vjp and (linearized, if possible) jvp functions."""
        f = self._chunk_f(sl)
        _, pull = vjp(f, self.params)
        push = None
        if self.reuse_forward:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    _, push = linearize(f, self.params)
            except Exception:  # noqa: BLE001 - untraceable model: plain jvp each time
                push = None
        return pull, push, f

    def _push(self, closures, grads):
        pull, push, f = closures
        if push is not None:
            try:
                return vmap(push)(grads)
            except Exception:  # noqa: BLE001 - the traced graph failed under vmap: stop using it
                closures[1] = None
        return vmap(lambda t: jvp(f, (self.params,), (t,))[1])(grads)

    def pull(self, cot: torch.Tensor) -> list[torch.Tensor]:
        """Pull back chunk by chunk: one (b, *shape) gradient per parameter, summed over chunks."""
        if self.reuse_forward and self._closures is None:
            self._closures = [list(self._closures_for(sl)) for sl in self._chunks()]
        grads = None
        for i, sl in enumerate(self._chunks()):
            pull = self._closures[i][0] if self._closures else self._closures_for(sl)[0]
            (g,) = vmap(pull)(cot[:, sl])
            grads = g if grads is None else {k: grads[k] + g[k] for k in g}
            del pull  # without reuse_forward, one chunk's activations are alive at a time
        return list(grads.values())

    def push(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """Push forward chunk by chunk (a fresh jvp per chunk without ``reuse_forward``)."""
        tangents = dict(zip(self.params, grads, strict=True))
        outs = []
        for i, sl in enumerate(self._chunks()):
            outs.append(self._push(self._closures[i] if self._closures else [None, None, self._chunk_f(sl)],
                                   tangents))
        return torch.cat(outs, dim=1)


class FactoredOperator(EntkOperator):
    """Products from stored Jacobian factors (see the module docstring).

    Parameters
    ----------
    factors : dict name -> factor
        Factors over all N inputs (output weights already applied).
    column_block : int
        Columns of ``V`` processed at once (bounds the working memory of Linear factors).
    """

    def __init__(self, factors: dict[str, Factor], n_outputs: int, collapse: str, column_block: int,
                 scale: float = 1.0):
        jac = [f.jac for f in factors.values() if isinstance(f, JacobianFactor)]
        self.jacobian = torch.cat(jac, dim=2) if jac else None  # (C, N, P_generic)
        self.linear = [f for f in factors.values() if isinstance(f, LinearFactor)]
        self.column_block = column_block
        first = next(iter(factors.values()))
        tensor = first.jac if isinstance(first, JacobianFactor) else first.grads
        super().__init__(first.n, n_outputs, collapse, tensor.dtype, scale, tensor.device)

    def apply_cotangents(self, cot: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(cot)
        for s in range(0, cot.shape[0], self.column_block):
            block = cot[s : s + self.column_block].permute(2, 1, 0)  # (C, N, b)
            out[s : s + self.column_block] = self._apply_block(block).permute(2, 1, 0)
        return out

    def _apply_block(self, v: torch.Tensor) -> torch.Tensor:
        """``J J^T v`` for v of shape (C, N, b), summed over all parameters."""
        return self._push_block(self._pull_block(v), v.shape[2])

    def _pull_block(self, v: torch.Tensor) -> list[torch.Tensor]:
        """``J^T v`` for v (C, N, b): the explicit Jacobian's (P_generic, b), then per
        Linear/Embedding weight its gradient (in, out*b) (:func:`_linear_pull`)."""
        c, n, b = v.shape
        grads = []
        if self.jacobian is not None:
            grads.append(self.jacobian.reshape(c * n, -1).T @ v.reshape(c * n, b))
        return grads + [_linear_pull(f, v) for f in self.linear]

    def _push_block(self, grads: list[torch.Tensor], b: int) -> torch.Tensor:
        """``J`` on what :meth:`_pull_block` returned, for ``b`` vectors: (C, N, b)."""
        c, n = self.n_outputs, self.n_inputs
        total = torch.zeros((c, n, b), dtype=self.torch_dtype, device=self.device)
        if self.jacobian is not None:
            total += (self.jacobian.reshape(c * n, -1) @ grads[0]).reshape(c, n, b)
        for f, g in zip(self.linear, grads[self.jacobian is not None:], strict=True):
            total += _linear_push(f, g, b)
        return total

    def pull(self, cot: torch.Tensor) -> list[torch.Tensor]:
        return self._pull_block(cot.permute(2, 1, 0))

    def push(self, grads: list[torch.Tensor]) -> torch.Tensor:
        if self.jacobian is not None:  # the explicit Jacobian's gradient is (P, b)
            b = grads[0].shape[-1]
        else:  # a Linear weight's gradient is (in, out * b)
            b = grads[0].shape[1] // self.linear[0].grads.shape[3]
        return self._push_block(grads, b).permute(2, 1, 0)

    def apply_class_mean(self, v: torch.Tensor) -> torch.Tensor:
        """``sum_i J_i J_i^T v`` for v (N, k), class by class: C times cheaper than pushing a
        cotangent per (class, vector) through :meth:`apply_cotangents`."""
        out = torch.empty_like(v)
        for s in range(0, v.shape[1], self.column_block):
            block = v[:, s : s + self.column_block]
            total = torch.zeros_like(block)
            if self.jacobian is not None:
                for jac in self.jacobian:  # (N, P) per class
                    total += jac @ (jac.T @ block)
            for f in self.linear:
                total += _linear_class_mean_product(f, block)
            out[:, s : s + self.column_block] = total
        return out


def _linear_pull(f: LinearFactor, v: torch.Tensor) -> torch.Tensor:
    """``J^T v`` for one Linear/Embedding weight, v (C, N, b) -> the weight gradient (in, O*b):
    ``W_grad = sum_{a,t} U[a,t] (outer) Z[a,t]`` with ``Z[a,t] = sum_i G[i,a,t] v[i,a]``."""
    c, n, t, o = f.grads.shape
    g = f.grads.permute(1, 2, 3, 0).reshape(n, t * o, c)  # (N, T*O, C)
    z = torch.bmm(g, v.permute(1, 0, 2)).reshape(n * t, o * v.shape[2])  # (N*T, O*b)
    if f.kind == "embedding":
        return z.new_zeros((f.n_in, z.shape[1])).index_add_(0, f.inputs.reshape(-1), z)
    return f.inputs.reshape(n * t, -1).T @ z


def _linear_push(f: LinearFactor, w_grad: torch.Tensor, b: int) -> torch.Tensor:
    """``J`` on a weight gradient (in, O*b) -> (C, N, b): ``out[i,a] = sum_t G[i,a,t] . (W_grad U[a,t])``."""
    c, n, t, o = f.grads.shape
    g = f.grads.permute(1, 2, 3, 0).reshape(n, t * o, c)
    y = (w_grad[f.inputs.reshape(-1)] if f.kind == "embedding" else f.inputs.reshape(n * t, -1) @ w_grad)
    return torch.bmm(g.transpose(1, 2), y.reshape(n, t * o, b)).permute(1, 0, 2)


def _through_inputs(f: LinearFactor, z: torch.Tensor) -> torch.Tensor:
    """``U (U^T z)`` for z of shape (N*T, O*b): pull back to the weight, push forward again."""
    if f.kind == "embedding":
        idx = f.inputs.reshape(-1)
        w_grad = z.new_zeros((f.n_in, z.shape[1])).index_add_(0, idx, z)
        return w_grad[idx]
    u = f.inputs.reshape(z.shape[0], -1)
    return u @ (u.T @ z)


def _linear_class_mean_product(f: LinearFactor, v: torch.Tensor) -> torch.Tensor:
    """``sum_i J_i J_i^T v`` for one Linear/Embedding weight, v (N, b) -> (N, b), class by class."""
    c, n, t, o = f.grads.shape
    b = v.shape[1]
    total = torch.zeros_like(v)
    for g in f.grads:  # (N, T, O) for one class
        z = (g[..., None] * v[:, None, None, :]).reshape(n * t, o * b)
        y = _through_inputs(f, z).reshape(n, t, o, b)
        total += torch.einsum("nto,ntob->nb", g, y)
    return total


def entk_operator(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    collapse: str = "flattened",
    layers=None,
    output_weights=None,
    backend: Backend = "auto",
    chunk_size: int = 256,
    column_block: int = 64,
    reuse_forward: bool | None = None,
    memory_budget: int | None = None,
    plan: KernelPlan | None = None,
    group=None,
) -> EntkOperator:
    """A matrix-free ``LinearOperator`` for the eNTK (``flattened``, ``class_mean``, ``sum_logits``).

    Same arguments and ordering as :func:`entk_lib.entk`. ``backend`` (see the module
    docstring): ``"structured"`` (stored structured factors, fastest), ``"jacobian"`` (stored
    explicit Jacobian), ``"vjp"`` (autodiff products, least memory) or ``"auto"`` (structured
    when the factors fit half of ``memory_budget``, default :func:`entk_lib.kernel.
    default_memory_budget`, else vjp); ``"factored"`` is the old name of ``"structured"``.
    ``chunk_size`` inputs are processed per autodiff pass; ``column_block`` vectors per product
    from stored factors. ``reuse_forward`` (vjp backend) keeps each chunk's forward pass for all products
    (default: when the estimated activations fit half the budget). ``plan``: a prebuilt
    :class:`~entk_lib.KernelPlan` (:func:`entk_lib.entk_plan`, ``choose_route(...).plan``), used
    instead of building one. Use with :func:`entk_lib.top_eigenpairs`.

    ``group``: a ``torch.distributed`` process group, or ``"world"``, to shard the products over
    its ranks by inputs (:mod:`entk_lib.distributed`; every rank passes the same full ``inputs``
    and gets the same operator; ``memory_budget`` then applies to each rank's shard).
    """
    if group is not None:
        from .distributed import DistributedEntkOperator, resolve_group, shard_slice

        group, rank, world = resolve_group(group)
        local = entk_operator(model, inputs[shard_slice(inputs.shape[0], rank, world)], collapse=collapse,
                              layers=layers, output_weights=output_weights, backend=backend,
                              chunk_size=chunk_size, column_block=column_block, reuse_forward=reuse_forward,
                              memory_budget=memory_budget, plan=plan)
        return DistributedEntkOperator(local, inputs.shape[0], group)
    from .kernel import default_memory_budget

    check_collapse(collapse, ("flattened", "class_mean", "sum_logits"))
    backend = check_backend(backend, BACKENDS, "entk_operator")
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    column_block = check_int("column_block", column_block, minimum=1)
    budget = default_memory_budget() if memory_budget is None else int(memory_budget)
    n = inputs.shape[0] if isinstance(inputs, torch.Tensor) else 0
    if backend != "vjp" or plan is not None:
        plan = resolve_plan(model, inputs, layers, output_weights, backend, plan)
    if backend != "vjp":
        # sum_logits needs only the Jacobian of the summed outputs: C times smaller factors
        plan = plan.with_sum_outputs(collapse == "sum_logits")
        if backend != "auto" or factor_bytes_per_sample(plan.factors(inputs[: min(2, n)])) * n <= budget // 2:
            parts = [plan.factors(inputs[s : s + chunk_size]) for s in range(0, n, chunk_size)]
            factors = {k: cat_factors([p[k] for p in parts]) for k in parts[0]}
            if plan.sum_outputs:
                return FactoredOperator(factors, 1, collapse, column_block, 1.0 / plan.n_outputs)
            return FactoredOperator(factors, plan.n_outputs, collapse, column_block)
    if plan is not None:
        names, n_outputs, weights = list(plan.params), plan.n_outputs, plan.output_weights
    else:
        n_outputs = check_inputs(model, inputs)
        names = select_parameters(model, layers)
        first = dict(model.named_parameters())[names[0]]
        weights = check_output_weights(output_weights, n_outputs, first.dtype, first.device)
    if reuse_forward is None:
        reuse_forward = _activation_bytes(model, inputs[: min(2, n)]) * n // min(2, n) <= budget // 2
    return VjpOperator(model, inputs, collapse, names, n_outputs, weights, chunk_size, reuse_forward)


def _activation_bytes(model: nn.Module, pilot: torch.Tensor) -> int:
    """Bytes of all module outputs on a pilot batch, times 3 (a rough bound for autodiff state)."""
    total = [0]

    def hook(module, args, output):
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(pilot)
    finally:
        for h in handles:
            h.remove()
    return 3 * total[0]
