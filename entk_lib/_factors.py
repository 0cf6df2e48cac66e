"""Per-parameter Jacobian factors: the generic ``vmap(jacrev)`` path and the structured path.

For a parameter that enters the network linearly, ``y = W u`` (``nn.Linear``) or ``y = W[idx]``
(``nn.Embedding``), the Jacobian of output ``i`` at input ``a`` factorizes as

    dF_i(x_a) / dW = sum_t  G[i, a, t] (outer) u[a, t]

with ``G[i, a, t] = dF_i(x_a) / dy_t`` the output cotangent at the layer's output for position
``t`` and ``u[a, t]`` the layer's input there. The layer's kernel is then a sum over positions of
entrywise products of two small Gram matrices, ``(G_t G_s^T) * (U_t U_s^T)``, never forming the
``out * in``-long Jacobian rows. Everything else is differentiated with ``torch.func``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ._collapse import class_multiplicity, contract, sample_mask

# --------------------------------------------------------------------------------------------
# Factors
# --------------------------------------------------------------------------------------------


@dataclass
class JacobianFactor:
    """An explicit Jacobian block ``jac`` of shape (C, n, P)."""

    jac: torch.Tensor

    @property
    def n(self) -> int:
        return self.jac.shape[1]

    def explicit(self) -> torch.Tensor:
        return self.jac

    def rows(self, rows: slice) -> JacobianFactor:
        """The factor of the inputs ``rows`` (a view, no copy)."""
        return JacobianFactor(self.jac[:, rows])

    def allocate(self, n: int) -> JacobianFactor:
        """An uninitialized factor like this one for ``n`` samples (filled by :meth:`assign`)."""
        c, _, p = self.jac.shape
        return JacobianFactor(self.jac.new_empty((c, n, p)))

    def assign(self, rows: slice, part: JacobianFactor) -> None:
        self.jac[:, rows] = part.jac

    def nbytes_per_sample(self) -> int:
        c, _, p = self.jac.shape
        return c * p * self.jac.element_size()

    def jvp(self, tangent: torch.Tensor) -> torch.Tensor:
        """``J t`` (C, n) for a tangent shaped like the parameter."""
        return self.jac @ tangent.reshape(-1).to(self.jac.dtype)


@dataclass
class LinearFactor:
    """Structured factors of the Jacobian of a ``Linear`` or ``Embedding`` weight.

    Attributes
    ----------
    grads : Tensor, shape (C, n, T, out)
        Output cotangents ``dF_i(x_a)/dy_t`` at the layer's output, position ``t``.
    inputs : Tensor, shape (n, T, in) for ``kind="linear"``; integer (n, T) for ``"embedding"``.
    n_in : int
        ``in`` (Linear) or the vocabulary size (Embedding).
    """

    grads: torch.Tensor
    inputs: torch.Tensor
    kind: str
    n_in: int

    @property
    def n(self) -> int:
        return self.grads.shape[1]

    def rows(self, rows: slice) -> LinearFactor:
        """The factor of the inputs ``rows`` (views, no copy)."""
        return LinearFactor(self.grads[:, rows], self.inputs[rows], self.kind, self.n_in)

    def allocate(self, n: int) -> LinearFactor:
        """An uninitialized factor like this one for ``n`` samples (filled by :meth:`assign`)."""
        c, _, t, o = self.grads.shape
        inputs = self.inputs.new_empty((n, *self.inputs.shape[1:]))
        return LinearFactor(self.grads.new_empty((c, n, t, o)), inputs, self.kind, self.n_in)

    def assign(self, rows: slice, part: LinearFactor) -> None:
        self.grads[:, rows] = part.grads
        self.inputs[rows] = part.inputs

    def input_gram(self, other: LinearFactor, t: int, s: int) -> torch.Tensor:
        """``A[a, b] = u[a, t] . u'[b, s]`` of shape (n, m) for positions ``t`` and ``s``."""
        if self.kind == "embedding":
            return (self.inputs[:, t, None] == other.inputs[None, :, s]).to(self.grads.dtype)
        return self.inputs[:, t] @ other.inputs[:, s].T

    def explicit(self) -> torch.Tensor:
        """The Jacobian (C, n, out*in), parameters in ``weight.flatten()`` order."""
        c, n, _, out = self.grads.shape
        if self.kind == "embedding":
            onehot = nn.functional.one_hot(self.inputs, self.n_in).to(self.grads.dtype)
            return torch.einsum("iatk,atv->iavk", self.grads, onehot).reshape(c, n, self.n_in * out)
        return torch.einsum("iatk,atl->iakl", self.grads, self.inputs).reshape(c, n, out * self.n_in)

    def nbytes_per_sample(self) -> int:
        c, _, t, out = self.grads.shape
        width = 1 if self.kind == "embedding" else self.n_in
        return (c * t * out + t * width) * self.grads.element_size()

    def jvp(self, tangent: torch.Tensor) -> torch.Tensor:
        """``J t`` (C, n) for a tangent of the weight, from the factors (no Jacobian rows):
        ``sum_t G[i, a, t] . (T u[a, t])`` (Linear, T of shape (out, in)) or ``T[idx[a, t]]``
        (Embedding, T of shape (vocab, out))."""
        tangent = tangent.to(self.grads.dtype)
        moved = tangent[self.inputs] if self.kind == "embedding" else self.inputs @ tangent.T
        return torch.einsum("iato,ato->ia", self.grads, moved)


Factor = JacobianFactor | LinearFactor


def cat_factors(factors: list[Factor]) -> Factor:
    """Factors of consecutive input chunks joined along the inputs (one copy, into new storage)."""
    out = factors[0].allocate(sum(f.n for f in factors))
    start = 0
    for f in factors:
        out.assign(slice(start, start + f.n), f)
        start += f.n
    return out


def contract_factors(fa: Factor, fb: Factor, collapse: str) -> torch.Tensor:
    """Canonical kernel block ``J_a J_b^T`` for two factors of the same parameter."""
    if isinstance(fa, JacobianFactor):
        return contract(fa.jac, fb.jac, collapse)
    if _structured_is_cheaper(fa, fb, collapse):  # sum over positions of (G_t G_s^T) * (U_t U_s^T)
        total = None
        for t in range(fa.grads.shape[2]):
            for s in range(fb.grads.shape[2]):
                term = sample_mask(contract(fa.grads[:, :, t], fb.grads[:, :, s], collapse),
                                   fa.input_gram(fb, t, s), collapse)
                total = term if total is None else total.add_(term)
                del term
        return total
    return contract(fa.explicit(), fb.explicit(), collapse)


def _structured_is_cheaper(fa: LinearFactor, fb: LinearFactor, collapse: str) -> bool:
    """Compare multiply-add counts of the structured and the explicit contraction."""
    c, n, t_len, out = fa.grads.shape
    m, s_len = fb.grads.shape[1], fb.grads.shape[2]
    mult = class_multiplicity(collapse, c)
    width = 1 if fa.kind == "embedding" else fa.n_in
    structured = t_len * s_len * n * m * (mult * out + width + mult)
    explicit = (n * t_len + m * s_len) * c * out * fa.n_in + mult * n * m * out * fa.n_in
    return structured <= explicit


# --------------------------------------------------------------------------------------------
# Computing factors for a chunk of inputs
# --------------------------------------------------------------------------------------------


def weighted_outputs(out: torch.Tensor, output_weights, sum_outputs: bool = False) -> torch.Tensor:
    """Outputs (..., C) times their weights; summed to (..., 1) if ``sum_outputs``."""
    if output_weights is not None:
        out = out * output_weights
    return out.sum(-1, keepdim=True) if sum_outputs else out


def generic_jacobians(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    fixed: dict[str, torch.Tensor],
    inputs: torch.Tensor,
    output_weights: torch.Tensor | None,
    sum_outputs: bool = False,
) -> dict[str, JacobianFactor]:
    """Per-sample Jacobians w.r.t. ``params`` by ``vmap(jacrev)``: name -> (C, n, numel).

    With ``sum_outputs`` the Jacobian of the (weighted) sum of the outputs, C = 1.
    """
    if not params:
        return {}

    def single(p, x):
        out = functional_call(model, ({**fixed, **p},), (x.unsqueeze(0),)).squeeze(0)
        return weighted_outputs(out, output_weights, sum_outputs)

    jac = vmap(jacrev(single), in_dims=(None, 0))(params, inputs)
    return {
        name: JacobianFactor(j.reshape(j.shape[0], j.shape[1], -1).transpose(0, 1).contiguous())
        for name, j in jac.items()
    }


def linear_factors(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    modules: dict[str, nn.Module],
    inputs: torch.Tensor,
    output_weights: torch.Tensor | None,
    sum_outputs: bool = False,
) -> dict[str, LinearFactor]:
    """Factors (output cotangents and layer inputs) of the given Linear/Embedding modules.

    One forward pass records each module's input and adds a zero probe to its output; the
    gradients of the C outputs with respect to the probes are the cotangents ``G``. The samples
    must be processed independently (no batch statistics), as for any per-sample kernel.
    """
    if not modules:
        return {}
    records: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    probes: dict[str, list[torch.Tensor]] = {name: [] for name in modules}

    def hook_for(name):
        def hook(module, args, output):
            records[name].append(args[0].detach())
            probe = torch.zeros_like(output, requires_grad=True)
            probes[name].append(probe)
            return output + probe

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in modules.items()]
    try:
        detached = {k: v.detach() for k, v in state.items()}
        out = functional_call(model, (detached,), (inputs,))
    finally:
        for h in handles:
            h.remove()
    out = weighted_outputs(out, output_weights, sum_outputs)
    flat_probes = [p for name in modules for p in probes[name]]
    grads = _batched_output_grads(out, flat_probes)
    result, k = {}, 0
    for name, module in modules.items():
        g_calls = grads[k : k + len(probes[name])]
        k += len(probes[name])
        result[name] = _assemble_linear_factor(module, records[name], g_calls, inputs.shape[0])
    return result


def _batched_output_grads(out: torch.Tensor, probes: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of every output column (summed over the batch) w.r.t. each probe: (C, *probe)."""
    n, c = out.shape
    eye = torch.eye(c, dtype=out.dtype, device=out.device)
    cotangents = eye[:, None, :].expand(c, n, c)
    try:
        return list(
            torch.autograd.grad(out, probes, cotangents, is_grads_batched=True, allow_unused=True)
        )
    except RuntimeError:  # some ops have no batching rule: fall back to one pass per output
        per_class = [
            torch.autograd.grad(out, probes, cotangents[i], retain_graph=True, allow_unused=True)
            for i in range(c)
        ]
        return [torch.stack(gs) for gs in zip(*per_class, strict=True)]


def _assemble_linear_factor(module, inputs_per_call, grads_per_call, n) -> LinearFactor:
    """Stack the calls of one module along a position axis: G (C, n, T, out), U (n, T, ...)."""
    c = grads_per_call[0].shape[0] if grads_per_call[0] is not None else None
    g_list, u_list = [], []
    for u, g in zip(inputs_per_call, grads_per_call, strict=True):
        if g is None:
            g = module.weight.new_zeros((c, *u.shape[:-1], module.weight.shape[0]))
        if isinstance(module, nn.Embedding):
            u = u.reshape(n, -1)
            g = g.reshape(g.shape[0], n, -1, g.shape[-1])
            if module.padding_idx is not None:
                g = g * (u != module.padding_idx).to(g.dtype)[None, :, :, None]
        else:
            u = u.reshape(n, -1, u.shape[-1])
            g = g.reshape(g.shape[0], n, -1, g.shape[-1])
        g_list.append(g)
        u_list.append(u)
    grads = torch.cat(g_list, dim=2)
    inputs = torch.cat(u_list, dim=1)
    if isinstance(module, nn.Embedding):
        return LinearFactor(grads, inputs, "embedding", module.num_embeddings)
    return LinearFactor(grads, inputs.to(grads.dtype), "linear", module.in_features)


def is_structured_candidate(module: nn.Module) -> bool:
    """A module the structured backend understands: stock ``Linear`` or plain ``Embedding``."""
    if type(module).forward is nn.Linear.forward and isinstance(module, nn.Linear):
        return True
    if type(module).forward is nn.Embedding.forward and isinstance(module, nn.Embedding):
        return module.max_norm is None and not module.scale_grad_by_freq
    return False
