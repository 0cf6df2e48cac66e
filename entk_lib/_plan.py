"""Which parameters enter the kernel, and which backend computes each of them.

The engine's one vocabulary of *backends* (how Jacobian products are computed), shared by
:func:`entk_lib.entk`, :func:`entk_lib.entk_operator` and :func:`entk_lib.entk_eigenpairs`:

``"structured"``
    Stock ``nn.Linear`` / ``nn.Embedding`` parameters by their structured factors (output
    cotangents ``G`` and layer inputs ``U``: the Jacobian of ``y = W u`` is ``G (outer) u``, its
    rows never formed), cross-checked against autodiff; every other tensor by ``vmap(jacrev)``.
``"jacobian"``
    Every tensor by per-sample Jacobians, ``vmap(jacrev)``.
``"vjp"``
    Matrix-free: ``torch.func.vjp`` then ``jvp`` of the model, no Jacobian stored
    (:func:`entk_lib.entk_operator` only).
``"auto"``
    The engine decides: ``structured`` for dense kernels; for operators ``structured`` when its
    factors fit the memory budget, else ``vjp``.

A :class:`KernelPlan` records the decision per parameter tensor; it is built once (pilot passes
and the Jacobian-vector-product cross-check) and can be handed to every entry point (``plan=``).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, jvp

from ._factors import (
    Factor,
    JacobianFactor,
    LinearFactor,
    generic_jacobians,
    is_structured_candidate,
    linear_factors,
    weighted_outputs,
)

logger = logging.getLogger("entk_lib")

#: How Jacobian products are computed (see the module docstring).
Backend = Literal["auto", "structured", "jacobian", "vjp"]
BACKENDS: tuple[str, ...] = ("auto", "structured", "jacobian", "vjp")
#: Old spellings still accepted, with a DeprecationWarning: ``entk_operator(backend="factored")``.
_OLD_BACKENDS = {"factored": "structured"}


def check_backend(backend, allowed: Sequence[str] = BACKENDS, where: str = "") -> str:
    """``backend`` in the engine's vocabulary (old spellings mapped, with a DeprecationWarning);
    a ValueError names the valid ones for the entry point ``where``."""
    if isinstance(backend, str) and backend in _OLD_BACKENDS:
        new = _OLD_BACKENDS[backend]
        warnings.warn(f"backend={backend!r} is deprecated; use backend={new!r} (the same strategy)",
                      DeprecationWarning, stacklevel=3)
        backend = new
    if backend not in allowed:
        hint = ""
        if backend == "vjp":
            hint = (" ('vjp' is matrix-free: use entk_lib.entk_operator or "
                    "entk_lib.entk_eigenpairs(..., route='matrix_free'))")
        raise ValueError(f"`backend` must be one of {list(allowed)}{' for ' + where if where else ''}, "
                         f"got {backend!r}{hint}")
    return backend


@dataclass(frozen=True)
class ParamInfo:
    """One parameter tensor entering the kernel."""

    name: str
    module: str
    numel: int
    backend: str  # "structured" or "jacobian"


@dataclass
class KernelPlan:
    """The parameters of a kernel, their owners and backends, and the model's output size.

    Build with :func:`make_plan`; ``describe()`` prints which backend computes each tensor.
    """

    model: nn.Module
    params: dict[str, ParamInfo]
    n_outputs: int
    dtype: torch.dtype
    structured_modules: dict[str, nn.Module] = field(default_factory=dict)
    output_weights: torch.Tensor | None = None
    #: factors of the (weighted) sum of the outputs only (C = 1): all that ``sum_logits`` needs
    sum_outputs: bool = False
    #: where the parameters (and so the factors and kernels) live
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def with_sum_outputs(self, sum_outputs: bool) -> KernelPlan:
        """A copy of the plan (sharing its parameters and modules) that differentiates the summed
        outputs (``sum_logits``) or each output; the plan itself is left as built."""
        if sum_outputs == self.sum_outputs:
            return self
        return dataclasses.replace(self, sum_outputs=sum_outputs)

    def describe(self) -> str:
        lines = [f"{'parameter':<40} {'numel':>10}  backend"]
        for p in self.params.values():
            lines.append(f"{p.name:<40} {p.numel:>10}  {p.backend}")
        return "\n".join(lines)

    @property
    def n_params(self) -> int:
        return sum(p.numel for p in self.params.values())

    def groups(self, by: str | None) -> dict[str, list[str]]:
        """Parameter names grouped into kernels: one total, one per module or per tensor."""
        if by is None:
            return {"total": list(self.params)}
        if by == "parameter":
            return {name: [name] for name in self.params}
        if by == "module":
            out: dict[str, list[str]] = {}
            for p in self.params.values():
                out.setdefault(p.module or "<root>", []).append(p.name)
            return out
        raise ValueError(f"`by` must be 'module' or 'parameter', got {by!r}")

    def factors(self, inputs: torch.Tensor) -> dict[str, Factor]:
        """Jacobian factors of every selected parameter at ``inputs``: name -> factor."""
        state = dict(self.model.named_parameters())
        state.update(dict(self.model.named_buffers()))
        generic = {n: state[n].detach() for n, p in self.params.items() if p.backend == "jacobian"}
        fixed = {k: v.detach() for k, v in state.items() if k not in generic}
        out: dict[str, Factor] = generic_jacobians(
            self.model, generic, fixed, inputs, self.output_weights, self.sum_outputs
        )
        lin = linear_factors(
            self.model, state, self.structured_modules, inputs, self.output_weights, self.sum_outputs
        )
        for module_name, factor in lin.items():
            prefix = f"{module_name}." if module_name else ""
            if prefix + "weight" in self.params:
                out[prefix + "weight"] = factor
            if prefix + "bias" in self.params:
                out[prefix + "bias"] = JacobianFactor(factor.grads.sum(2))
        return {name: out[name] for name in self.params}  # one order in every process

    def jacobian(self, inputs: torch.Tensor) -> torch.Tensor:
        """The explicit Jacobian (C, n, P) (output, input, parameter: class-major, as the rows of
        the ``flattened`` kernel), parameters in the order of ``self.params``."""
        factors = self.factors(inputs)
        return torch.cat([factors[name].explicit() for name in self.params], dim=2)


def select_parameters(model: nn.Module, layers: str | Sequence[str] | None) -> list[str]:
    """Names of the parameters selected by ``layers`` (module names or parameter-name prefixes)."""
    params = [n for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("`model` has no parameters that require gradients")
    if layers is None:
        return params
    if isinstance(layers, str):
        layers = [layers]
    if len(layers) == 0:
        raise ValueError("`layers` must name at least one module or parameter (or be None for all)")
    chosen: list[str] = []
    for layer in layers:
        hits = [p for p in params if p == layer or p.startswith(f"{layer}.")]
        if not hits:
            raise ValueError(
                f"`layers` entry {layer!r} matches no parameter. Valid names: modules "
                f"{_owning_modules(model)}; parameters {params}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    return [p for p in params if p in chosen]


def _owning_modules(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if n and any(True for _ in m.parameters())]


def check_inputs(model: nn.Module, inputs: torch.Tensor, name: str = "inputs") -> int:
    """Run the model on two inputs and return C, with clear errors for bad shapes."""
    if not isinstance(inputs, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor of shape (N, ...), got {type(inputs)}")
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError(f"`{name}` must have a non-empty batch dimension, got shape {tuple(inputs.shape)}")
    pilot = inputs[: min(2, inputs.shape[0])]
    try:
        with torch.no_grad():
            out = model(pilot)
    except Exception as exc:  # noqa: BLE001 - re-raised with the shape that caused it
        raise ValueError(
            f"`{name}` of shape {tuple(inputs.shape)} could not be passed through the model "
            f"(a batch of shape {tuple(pilot.shape)} raised {type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != pilot.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the model must map a batch (N, ...) to outputs (N, C); for a batch of "
            f"{pilot.shape[0]} it returned {shape}"
        )
    return out.shape[1]


def check_output_weights(weights, n_outputs: int, dtype: torch.dtype, device=None) -> torch.Tensor | None:
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=dtype, device=device).flatten()
    if w.numel() != n_outputs or not torch.isfinite(w).all():
        raise ValueError(
            f"`output_weights` must be {n_outputs} finite numbers (one per output), "
            f"got {w.numel()} values"
        )
    return w


def make_plan(
    model: nn.Module,
    inputs: torch.Tensor,
    layers=None,
    output_weights=None,
    backend: str = "auto",
) -> KernelPlan:
    """Validate the call and decide the backend of every selected parameter tensor.

    ``backend``: ``"auto"`` or ``"structured"`` (the same here: structured factors where they are
    verified, ``vmap(jacrev)`` elsewhere) or ``"jacobian"`` (``vmap(jacrev)`` for every tensor).
    The structured path costs two pilot forward passes and one Jacobian-vector-product check.
    """
    backend = check_backend(backend, ("auto", "structured", "jacobian"), "a kernel plan")
    n_outputs = check_inputs(model, inputs)
    names = select_parameters(model, layers)
    named = dict(model.named_parameters())
    dtype = named[names[0]].dtype
    weights = check_output_weights(output_weights, n_outputs, dtype, named[names[0]].device)
    owner = {n: n.rpartition(".")[0] for n in names}
    structured = {}
    if backend != "jacobian":
        structured = _structured_modules(model, inputs, {owner[n] for n in names})
    infos = {
        n: ParamInfo(n, owner[n], named[n].numel(), "structured" if owner[n] in structured else "jacobian")
        for n in names
    }
    plan = KernelPlan(model, infos, n_outputs, dtype, structured, weights, device=named[names[0]].device)
    if structured:
        _verify_structured(plan, inputs[: min(2, inputs.shape[0])])
    logger.debug("eNTK plan:\n%s", plan.describe())
    return plan


def resolve_plan(model, inputs, layers, output_weights, backend: str, plan) -> KernelPlan:
    """``plan`` if given (checked against the call: same model, no second ``layers`` or
    ``output_weights``, a backend it can serve), else a new plan from :func:`make_plan`."""
    if plan is None:
        generic = backend == "jacobian"
        return make_plan(model, inputs, layers, output_weights, "jacobian" if generic else "auto")
    if not isinstance(plan, KernelPlan):
        raise TypeError(f"`plan` must be a KernelPlan (entk_lib.entk_plan) or None, "
                        f"got {type(plan).__name__}")
    if plan.model is not model:
        raise ValueError("`plan` was built for another model")
    if layers is not None or output_weights is not None:
        raise ValueError("`layers` and `output_weights` are part of `plan`: give them to "
                         "entk_lib.entk_plan (or choose_route) instead of this call")
    if backend == "jacobian" and any(p.backend == "structured" for p in plan.params.values()):
        raise ValueError("backend='jacobian' needs a plan built with backend='jacobian'; this plan "
                         "uses the structured backend for some parameters")
    n_outputs = check_inputs(model, inputs)
    if n_outputs != plan.n_outputs:
        raise ValueError(f"`plan` was built for {plan.n_outputs} outputs; the model gives {n_outputs} here")
    return plan


def _structured_modules(model, inputs, owners: set[str]) -> dict[str, nn.Module]:
    """Owners of selected parameters that the structured path handles on this model.

    A module qualifies when it is a stock Linear/Embedding whose parameters belong to it alone,
    and which, on pilot batches of 1 and 2 inputs, is called with the batch as its leading
    dimension the same number of times.
    """
    modules = dict(model.named_modules())
    owners_of = {}
    for mname, m in modules.items():
        for p in m.parameters(recurse=False):
            owners_of.setdefault(id(p), set()).add(mname)
    candidates = {  # in the model's module order: a set's order changes from process to process
        name: modules[name]
        for name in modules
        if name in owners
        and is_structured_candidate(modules[name])
        and all(len(owners_of[id(p)]) == 1 for p in modules[name].parameters(recurse=False))
    }
    if not candidates:
        return {}
    leading = {}
    for size in sorted({1, min(2, inputs.shape[0])}):
        calls = _record_leading_dims(model, candidates, inputs[:size])
        for name, dims in calls.items():
            ok = len(dims) > 0 and all(d == size for d in dims)
            leading.setdefault(name, []).append((ok, len(dims)))
    return {
        name: m
        for name, m in candidates.items()
        if all(ok for ok, _ in leading[name]) and len({k for _, k in leading[name]}) == 1
    }


def _record_leading_dims(model, modules, batch) -> dict[str, list[int]]:
    dims: dict[str, list[int]] = {name: [] for name in modules}

    def hook_for(name):
        def hook(module, args, output):
            dims[name].append(args[0].shape[0] if args[0].dim() > 0 else -1)
            if output.shape[:1] != args[0].shape[:1]:
                dims[name].append(-1)

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in modules.items()]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for h in handles:
            h.remove()
    return dims


def _verify_structured(plan: KernelPlan, pilot: torch.Tensor) -> None:
    """Cross-check the structured factors against autodiff on a pilot batch, at any model size.

    The check compares Jacobian-vector products ``J t`` for a random tangent ``t`` of the
    structured parameters: from the factors, and by ``torch.func.jvp`` through the model. A module
    used outside its own ``forward`` (for example a weight reused by a custom unembedding) is
    missed by the hooks, and its ``J t`` disagrees with probability one; such modules are found
    (one product per module, only when the joint check fails) and moved to the generic path.
    """
    names = [n for n, p in plan.params.items() if p.backend == "structured"]
    state = dict(plan.model.named_parameters())
    state.update(dict(plan.model.named_buffers()))
    factors = plan.factors(pilot)
    gen = torch.Generator().manual_seed(0)
    tangents = {n: torch.randn(state[n].shape, generator=gen, dtype=state[n].dtype).to(state[n].device)
                for n in names}
    if _jvp_agrees(plan, state, factors, tangents, names, pilot):
        return
    modules = sorted({plan.params[n].module for n in names})
    bad = [m for m in modules
           if not _jvp_agrees(plan, state, factors, tangents,
                              [n for n in names if plan.params[n].module == m], pilot)]
    for m in bad:
        logger.warning("module %r is used outside its forward; using the generic Jacobian", m)
        del plan.structured_modules[m]
        for n, p in plan.params.items():
            if p.module == m:
                plan.params[n] = ParamInfo(p.name, p.module, p.numel, "jacobian")


def _jvp_agrees(plan, state, factors, tangents, names, pilot) -> bool:
    """Whether ``J t`` over ``names`` from the factors matches ``torch.func.jvp``."""
    own = {n: tangents[n] for n in names}
    fixed = {k: v.detach() for k, v in state.items() if k not in own}

    def f(params):
        out = functional_call(plan.model, ({**fixed, **params},), (pilot,))
        return weighted_outputs(out, plan.output_weights, plan.sum_outputs)

    primals = {n: state[n].detach() for n in names}
    _, ref = jvp(f, (primals,), (own,))
    ref = ref.T  # (C, n)
    ours = sum(factors[n].jvp(own[n]) for n in names)
    tol = 1e-3 if ref.dtype == torch.float32 else 1e-8
    return bool(torch.allclose(ours, ref, rtol=tol, atol=tol * (ref.abs().max().item() + 1e-30)))


def factor_bytes_per_sample(factors: dict[str, Factor]) -> int:
    return sum(f.nbytes_per_sample() for f in factors.values())


__all__ = ["BACKENDS", "Backend", "KernelPlan", "ParamInfo", "check_backend", "make_plan", "resolve_plan",
           "select_parameters", "LinearFactor"]
