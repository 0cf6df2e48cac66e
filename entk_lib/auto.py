"""Top eigenpairs of a model's eNTK with the representation chosen for you: dense, low-rank or
matrix-free, by what fits the memory budget (the engine says which it took), or forced."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ._collapse import check_collapse
from ._plan import BACKENDS, Backend, KernelPlan, check_backend, resolve_plan
from .kernel import default_memory_budget, entk, entk_lowrank
from .operator import entk_operator
from .params import check_int
from .spectrum import Eigenpairs, top_eigenpairs

__all__ = ["ROUTES", "Route", "RouteKind", "choose_route", "entk_eigenpairs"]

logger = logging.getLogger("entk_lib")

GiB = 1024**3

#: Representations of the kernel that a spectrum can be computed from (``"auto"``: by size).
RouteKind = Literal["auto", "dense", "lowrank", "matrix_free"]
ROUTES: tuple[str, ...] = ("auto", "dense", "lowrank", "matrix_free")
#: Old spellings still accepted, with a DeprecationWarning.
_OLD_ROUTES = {"operator": "matrix_free"}
_COLLAPSES = ("flattened", "class_mean", "sum_logits")


@dataclass(frozen=True)
class Route:
    """How a spectrum will be computed: ``kind`` is ``"dense"``, ``"lowrank"`` or
    ``"matrix_free"``; ``reason`` says why, with the sizes that decided it; ``backend`` how the
    Jacobian products are computed; ``plan`` the :class:`~entk_lib.KernelPlan` built to decide
    (pilot passes, Jacobian-vector-product check), reused by :func:`entk_eigenpairs` and usable as
    ``plan=`` of :func:`entk_lib.entk`, :func:`entk_lib.entk_lowrank`, :func:`entk_lib.entk_operator`.
    """

    kind: str
    reason: str
    backend: str = "auto"
    plan: KernelPlan | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


def _check_route(route) -> str:
    if isinstance(route, str) and route in _OLD_ROUTES:
        new = _OLD_ROUTES[route]
        warnings.warn(f"route={route!r} is deprecated; use route={new!r}", DeprecationWarning, stacklevel=3)
        route = new
    if route not in ROUTES:
        raise ValueError(f"`route` must be one of {list(ROUTES)} or a Route from choose_route, got {route!r}")
    return route


def choose_route(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    collapse: str = "flattened",
    layers=None,
    output_weights=None,
    backend: Backend = "auto",
    route: RouteKind = "auto",
    memory_budget: int | None = None,
) -> Route:
    """Pick (or check) the representation of the kernel of size n (``C*N`` flattened, else ``N``).

    This builds the kernel plan (two pilot forward passes and a Jacobian-vector-product check of
    the structured factors, unless ``backend`` is ``"jacobian"`` or ``"vjp"``) and returns it in
    the route, so that computing the spectrum does not build it again. With ``route="auto"``:

    - ``lowrank`` when the rank bound (P flattened or sum_logits, C*P class_mean) is below n and
      the Jacobian (C*N*P values) fits half the budget: the spectrum comes from the Gram matrix
      ``F^T F``;
    - ``dense`` when the n x n kernel fits a third of the budget (the rest is working memory
      for its contraction and eigensolver);
    - ``matrix_free`` otherwise, and always for ``backend="vjp"``: matrix-free products, block
      Krylov / Lanczos.

    A forced ``route`` is taken as asked (its reason still gives the sizes); a dense kernel
    above the budget still raises :class:`~entk_lib.KernelTooLargeError` when it is computed.
    """
    check_collapse(collapse, _COLLAPSES)
    backend = check_backend(backend, BACKENDS, "choose_route")
    route = _check_route(route)
    if backend == "vjp" and route not in ("auto", "matrix_free"):
        raise ValueError(f"backend='vjp' is matrix-free: it cannot compute the {route!r} route")
    budget = default_memory_budget() if memory_budget is None else int(memory_budget)
    plan = resolve_plan(model, inputs, layers, output_weights,
                        "jacobian" if backend in ("jacobian", "vjp") else "auto", None)
    n_inputs, c, p = inputs.shape[0], plan.n_outputs, plan.n_params
    n = c * n_inputs if collapse == "flattened" else n_inputs
    item = torch.empty((), dtype=plan.dtype).element_size()
    width = {"flattened": p, "class_mean": c * p, "sum_logits": p}[collapse]
    jac_bytes = c * n_inputs * p * item
    kernel_bytes = n * n * item
    sizes = f"n = {n}, P = {p}, budget {budget / GiB:.2f} GiB"
    jac = f"the Jacobian takes {jac_bytes / GiB:.2f} GiB ({sizes})"
    lowrank = f"rank <= {width} < n and {jac}" if width < n else f"rank bound {width} >= n, {jac}"
    dense = f"the kernel takes {kernel_bytes / GiB:.2f} GiB ({sizes})"
    matrix_free = f"the kernel would take {kernel_bytes / GiB:.2f} GiB ({sizes})"
    if route == "auto":
        if backend == "vjp":
            route, why = "matrix_free", f"backend 'vjp'; {matrix_free}"
        elif width < n and jac_bytes <= budget // 2:
            route, why = "lowrank", lowrank
        elif kernel_bytes <= budget // 3:
            route, why = "dense", dense
        else:
            route, why = "matrix_free", matrix_free
    else:
        why = "forced; " + {"lowrank": lowrank, "dense": dense, "matrix_free": matrix_free}[route]
    return Route(route, why, backend, plan)


def entk_eigenpairs(
    model: nn.Module,
    inputs: torch.Tensor,
    k: int,
    *,
    collapse: str = "flattened",
    layers=None,
    output_weights=None,
    backend: Backend = "auto",
    route: RouteKind | Route = "auto",
    solver: str = "auto",
    memory_budget: int | None = None,
    verbose: bool = False,
) -> Eigenpairs:
    """The ``k`` largest eigenpairs of the eNTK of ``model`` at ``inputs``, however it fits.

    Parameters
    ----------
    model, inputs, collapse, layers, output_weights, memory_budget
        As in :func:`entk_lib.entk`; ``collapse`` is one of ``flattened`` (n = C*N),
        ``class_mean``, ``sum_logits`` (n = N).
    k : int
        Number of eigenpairs.
    backend : {"auto", "structured", "jacobian", "vjp"}
        How Jacobian products are computed (the engine's one vocabulary, see
        :mod:`entk_lib._plan`); ``vjp`` implies the matrix-free route.
    route : {"auto", "dense", "lowrank", "matrix_free"} or Route
        The representation of the kernel; ``auto`` picks by size (:func:`choose_route`), a name
        forces it, and a :class:`Route` from :func:`choose_route` is used as it is, with its plan
        (then ``layers``, ``output_weights`` and ``backend`` come from it).
    solver : {"auto", "lanczos", "block"}
        Eigensolver of the matrix-free route (:func:`entk_lib.top_eigenpairs`).
    verbose : bool
        Print the route (it is always logged on the ``entk_lib`` logger).

    Notes
    -----
    Cost model: N inputs, C outputs, P parameters, ``b`` bytes per value, n the kernel's size
    (C*N or N), r its rank bound (P for ``flattened`` and ``sum_logits``, C*P for
    ``class_mean``), B the memory budget.

    ``lowrank`` -- chosen when r < n and the Jacobian fits B/2.
        Memory: the Jacobian, ``C N P b``, and the r x r Gram matrix ``F^T F``. Time: one
        Jacobian pass over the inputs, the Gram product ``n r^2``, ``eigh`` of r x r (``r^3``).
    ``dense`` -- chosen, failing that, when the n x n kernel fits B/3.
        Memory: the kernel ``n^2 b`` plus factors and contraction blocks, all within B (above B:
        :class:`~entk_lib.KernelTooLargeError`). Time: the factors once, the contraction (about
        ``N^2 C^2`` times a per-pair cost that is small for structured Linear/Embedding factors,
        ``P`` for explicit Jacobians), then ``eigh`` (``n^3``, full up to n = 4096; block
        Krylov or LAPACK's subset solver above).
    ``matrix_free`` -- chosen otherwise, and always for ``backend="vjp"``.
        Memory: the structured factors (about as many values as C*N Jacobian rows of the
        non-Linear tensors plus ``N T (C out + in)`` per Linear layer), or with ``vjp`` one
        chunk's activations (all of them with ``reuse_forward``), plus the Krylov basis (n x a
        few k). Time per kernel-vector product: ``O(N C P)`` (``vjp``: one backward and one
        forward pass); Lanczos needs tens of products for small k, block Krylov (k > 32) a few
        times k up to a few thousand.

    All routes give the same eigenpairs (to the eigensolver's tolerance; eigenvectors up to sign
    within degenerate eigenspaces): tested. The plan (parameters, backends, the structured
    factors' Jacobian-vector-product check) is built once, by :func:`choose_route`, and carried by
    the route into the kernel or operator.
    """
    k = check_int("k", k, minimum=1)
    backend = check_backend(backend, BACKENDS, "entk_eigenpairs")
    if isinstance(route, Route):
        if route.plan is None or route.plan.model is not model:
            raise ValueError("`route` was chosen for another model (or carries no plan)")
        if layers is not None or output_weights is not None or backend not in ("auto", route.backend):
            raise ValueError("`layers`, `output_weights` and `backend` are part of the route and its plan: "
                             "give them to choose_route")
        chosen = route
    else:
        chosen = choose_route(model, inputs, collapse=collapse, layers=layers, output_weights=output_weights,
                              backend=backend, route=_check_route(route), memory_budget=memory_budget)
    logger.info("entk_eigenpairs route %s", chosen)
    if verbose:
        print(f"entk_eigenpairs: {chosen}")
    kw = {"collapse": collapse, "plan": chosen.plan, "backend": chosen.backend}
    if chosen.kind == "lowrank":
        return top_eigenpairs(entk_lowrank(model, inputs, **kw), k)
    if chosen.kind == "dense":
        return top_eigenpairs(entk(model, inputs, memory_budget=memory_budget, **kw), k)
    return top_eigenpairs(entk_operator(model, inputs, memory_budget=memory_budget, **kw), k, solver=solver)
