"""The eNTK as a matrix-free ``scipy.sparse.linalg.LinearOperator``.

A product ``K V`` is ``J (J^T V)``: one vector-Jacobian product (``torch.func.vjp``) pulls the
block ``V`` back to parameter space, one Jacobian-vector product (``torch.func.jvp``) pushes it
forward. Neither the Jacobian nor the kernel is ever formed; the batch is processed in chunks,
and the columns of ``V`` are batched with ``vmap``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn
from torch.func import functional_call, jvp, vjp, vmap

from ._collapse import check_collapse
from ._plan import check_inputs, check_output_weights, select_parameters
from .params import check_int

__all__ = ["EntkOperator", "entk_operator"]


class EntkOperator(LinearOperator):
    """Matrix-free eNTK (``flattened`` (C*N, C*N), ``class_mean`` or ``sum_logits`` (N, N)).

    Build with :func:`entk_operator`. ``matvec``/``matmat`` accept numpy arrays; the products run
    in torch in the model's dtype. ``n_products`` counts kernel-vector products so far.
    """

    def __init__(self, model, inputs, collapse, names, n_outputs, weights, chunk_size):
        state = dict(model.named_parameters())
        state.update(dict(model.named_buffers()))
        self.model = model
        self.inputs = inputs
        self.collapse = collapse
        self.n_outputs = n_outputs
        self.weights = weights
        self.chunk_size = chunk_size
        self.params = {k: state[k].detach() for k in names}
        self.fixed = {k: v.detach() for k, v in state.items() if k not in self.params}
        self.torch_dtype = next(iter(self.params.values())).dtype
        n = inputs.shape[0]
        size = n * n_outputs if collapse == "flattened" else n
        self.n_products = 0
        super().__init__(dtype=np.dtype(str(self.torch_dtype).replace("torch.", "")), shape=(size, size))

    # -- the model as a function of the selected parameters, on one chunk --------------------
    def _f(self, params, x):
        out = functional_call(self.model, ({**self.fixed, **params},), (x,))
        return out * self.weights if self.weights is not None else out

    def _chunks(self):
        n = self.inputs.shape[0]
        return [slice(s, min(s + self.chunk_size, n)) for s in range(0, n, self.chunk_size)]

    def apply_cotangents(self, cot: torch.Tensor) -> torch.Tensor:
        """``J J^T`` on a batch of output-space blocks: (b, N, C) -> (b, N, C)."""
        grads = None
        for sl in self._chunks():
            _, pull = vjp(lambda p, sl=sl: self._f(p, self.inputs[sl]), self.params)
            (g,) = vmap(pull)(cot[:, sl])
            grads = g if grads is None else {k: grads[k] + g[k] for k in g}
        outs = []
        for sl in self._chunks():
            def push(t, sl=sl):
                return jvp(lambda p: self._f(p, self.inputs[sl]), (self.params,), (t,))[1]

            outs.append(vmap(push)(grads))
        self.n_products += cot.shape[0]
        return torch.cat(outs, dim=1)

    def _matmat(self, v):
        v_t = torch.as_tensor(np.asarray(v), dtype=self.torch_dtype)
        n, c, k = self.inputs.shape[0], self.n_outputs, v_t.shape[1]
        if self.collapse == "flattened":
            cot = v_t.T.reshape(k, c, n).permute(0, 2, 1)
            out = self.apply_cotangents(cot)  # (k, N, C)
            result = out.permute(2, 1, 0).reshape(c * n, k)
        elif self.collapse == "sum_logits":
            cot = v_t.T[:, :, None].expand(k, n, c)
            result = self.apply_cotangents(cot).sum(2).T / c
        else:  # class_mean: (1/C) sum_i J_i J_i^T v, one cotangent per (class, vector)
            eye = torch.eye(c, dtype=self.torch_dtype)
            cot = (eye[:, None, None, :] * v_t.T[None, :, :, None]).reshape(c * k, n, c)
            out = self.apply_cotangents(cot).reshape(c, k, n, c)
            result = torch.diagonal(out, dim1=0, dim2=3).sum(-1).T / c
        return result.detach().numpy()

    def _matvec(self, v):
        return self._matmat(np.asarray(v).reshape(-1, 1))[:, 0]

    def _rmatvec(self, v):
        return self._matvec(v)

    def _adjoint(self):
        return self


def entk_operator(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    collapse: str = "flattened",
    layers=None,
    output_weights=None,
    chunk_size: int = 256,
) -> EntkOperator:
    """A matrix-free ``LinearOperator`` for the eNTK (``flattened``, ``class_mean``, ``sum_logits``).

    Same arguments and ordering as :func:`entk_lib.entk`; ``chunk_size`` inputs are processed per
    vjp/jvp pass. Use with :func:`entk_lib.top_eigenpairs` (Lanczos).
    """
    check_collapse(collapse, ("flattened", "class_mean", "sum_logits"))
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    n_outputs = check_inputs(model, inputs)
    names = select_parameters(model, layers)
    dtype = dict(model.named_parameters())[names[0]].dtype
    weights = check_output_weights(output_weights, n_outputs, dtype)
    return EntkOperator(model, inputs, collapse, names, n_outputs, weights, chunk_size)
