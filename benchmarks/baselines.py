"""The usual ways of computing an eNTK, written here as baselines for the benchmark.

1. ``tutorial_jacobian``: the method of the PyTorch "Neural Tangent Kernels" tutorial and of the
   paper author's code: per-sample Jacobians of all parameters by ``vmap(jacrev)`` over the whole
   batch, then an ``einsum`` contraction (``'Naf,Mbf->NMab'`` for the full kernel, the trace form
   ``'Naf,Maf->NM'`` for the class mean).
2. ``ntk_vector_products``: the kernel as ``J (J^T e)`` applied to the identity, in blocks of
   columns, with ``torch.func.vjp``/``jvp`` (neural-tangents' "NTK-vector products"; the tutorial's
   per-pair version of it needs N^2 passes and is not run).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, jacrev, jvp, vjp, vmap


def _selected(model, layers):
    params = dict(model.named_parameters())
    if layers is None:
        return {k: v.detach() for k, v in params.items()}
    keep = [k for k in params if any(k == name or k.startswith(name + ".") for name in layers)]
    return {k: params[k].detach() for k in keep}


def tutorial_jacobian(model, x, collapse, layers=None):
    """Kernel by materialized per-sample Jacobians and einsum (all samples at once)."""
    sel = _selected(model, layers)
    fixed = {k: v.detach() for k, v in model.named_parameters() if k not in sel}
    fixed.update(dict(model.named_buffers()))

    def single(p, xi):
        return functional_call(model, ({**fixed, **p},), (xi.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(single), (None, 0))(sel, x)
    jac = [j.flatten(2) for j in jac.values()]  # (N, C, P_t)
    if collapse == "class_mean":
        return sum(torch.einsum("Naf,Maf->NM", j, j) for j in jac) / jac[0].shape[1]
    if collapse == "sum_logits":
        summed = [j.sum(1) for j in jac]
        return sum(s @ s.T for s in summed) / jac[0].shape[1]
    full = sum(torch.einsum("Naf,Mbf->NMab", j, j) for j in jac)
    n, _, c, _ = full.shape
    return full.permute(2, 0, 3, 1).reshape(c * n, c * n)


def ntk_vector_products(model, x, collapse, layers=None, columns=64):
    """Kernel by vjp/jvp products with identity blocks (no Jacobian, no forward reuse)."""
    sel = _selected(model, layers)
    fixed = {k: v.detach() for k, v in model.named_parameters() if k not in sel}
    fixed.update(dict(model.named_buffers()))

    def f(p):
        return functional_call(model, ({**fixed, **p},), (x,))

    with torch.no_grad():
        n, c = f(sel).shape
    dtype = next(iter(sel.values())).dtype

    def product(cot):  # (b, N, C) -> (b, N, C)
        _, pull = vjp(f, sel)
        (g,) = vmap(pull)(cot)
        return vmap(lambda t: jvp(f, (sel,), (t,))[1])(g)

    if collapse == "flattened":
        size = n * c
        out = torch.empty(size, size, dtype=dtype)
        for s in range(0, size, columns):
            idx = torch.arange(s, min(s + columns, size))
            cot = torch.zeros(idx.numel(), c, n, dtype=dtype)
            cot.view(idx.numel(), -1)[torch.arange(idx.numel()), idx] = 1.0
            res = product(cot.transpose(1, 2))  # (b, N, C)
            out[:, idx] = res.permute(2, 1, 0).reshape(size, -1)
        return out
    out = torch.zeros(n, n, dtype=dtype)
    for s in range(0, n, columns):
        idx = torch.arange(s, min(s + columns, n))
        if collapse == "sum_logits":
            cot = torch.zeros(idx.numel(), n, c, dtype=dtype)
            cot[torch.arange(idx.numel()), idx, :] = 1.0
            out[:, idx] = product(cot).sum(2).T / c
        else:  # class_mean: one product per (class, column)
            for i in range(c):
                cot = torch.zeros(idx.numel(), n, c, dtype=dtype)
                cot[torch.arange(idx.numel()), idx, i] = 1.0
                out[:, idx] += product(cot)[:, :, i].T / c
    return out
