"""Top eigenpairs of a model's eNTK with the representation chosen for you: dense, low-rank or
matrix-free, by what fits the memory budget (the engine says which it took)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from ._collapse import check_collapse
from ._plan import make_plan
from .kernel import default_memory_budget, entk, entk_lowrank
from .operator import entk_operator
from .params import check_int
from .spectrum import Eigenpairs, top_eigenpairs

__all__ = ["Route", "choose_route", "entk_eigenpairs"]

logger = logging.getLogger("entk_lib")

GiB = 1024**3


@dataclass(frozen=True)
class Route:
    """How a spectrum will be computed: ``kind`` is ``"dense"``, ``"lowrank"`` or ``"operator"``;
    ``reason`` says why, with the sizes that decided it."""

    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


def choose_route(
    model: nn.Module, inputs: torch.Tensor, *, collapse: str = "flattened", layers=None,
    memory_budget: int | None = None,
) -> Route:
    """Pick the representation of the kernel of size n (``C*N`` flattened, else ``N``).

    - ``lowrank`` when P < n and the Jacobian (n x P) fits half the budget: the spectrum comes
      from the P x P Gram matrix ``J^T J``;
    - ``dense`` when the n x n kernel fits a third of the budget (the rest is working memory
      for its contraction and eigensolver);
    - ``operator`` otherwise: matrix-free products, block Krylov / Lanczos.
    """
    check_collapse(collapse, ("flattened", "class_mean", "sum_logits"))
    budget = default_memory_budget() if memory_budget is None else int(memory_budget)
    plan = make_plan(model, inputs, layers)
    n_inputs, c, p = inputs.shape[0], plan.n_outputs, plan.n_params
    n = c * n_inputs if collapse == "flattened" else n_inputs
    item = torch.empty((), dtype=plan.dtype).element_size()
    width = {"flattened": p, "class_mean": c * p, "sum_logits": p}[collapse]
    jac_bytes = c * n_inputs * p * item
    kernel_bytes = n * n * item
    sizes = f"n = {n}, P = {p}, budget {budget / GiB:.2f} GiB"
    if width < n and jac_bytes <= budget // 2:
        return Route("lowrank", f"rank <= {width} < n and the Jacobian takes "
                                f"{jac_bytes / GiB:.2f} GiB ({sizes})")
    if kernel_bytes <= budget // 3:
        return Route("dense", f"the kernel takes {kernel_bytes / GiB:.2f} GiB ({sizes})")
    return Route("operator", f"the kernel would take {kernel_bytes / GiB:.2f} GiB ({sizes})")


def entk_eigenpairs(
    model: nn.Module,
    inputs: torch.Tensor,
    k: int,
    *,
    collapse: str = "flattened",
    layers=None,
    output_weights=None,
    memory_budget: int | None = None,
    verbose: bool = False,
) -> Eigenpairs:
    """The ``k`` largest eigenpairs of the eNTK of ``model`` at ``inputs``, however it fits.

    The route (:func:`choose_route`) is logged on the ``entk_lib`` logger and printed with
    ``verbose``. Arguments as in :func:`entk_lib.entk`; ``collapse`` is one of ``flattened``,
    ``class_mean``, ``sum_logits``. All routes give the same eigenpairs (to the eigensolver's
    tolerance; eigenvectors up to sign within degenerate eigenspaces).
    """
    k = check_int("k", k, minimum=1)
    route = choose_route(model, inputs, collapse=collapse, layers=layers, memory_budget=memory_budget)
    logger.info("entk_eigenpairs route %s", route)
    if verbose:
        print(f"entk_eigenpairs: {route}")
    kw = {"collapse": collapse, "layers": layers, "output_weights": output_weights}
    if route.kind == "lowrank":
        return top_eigenpairs(entk_lowrank(model, inputs, **kw), k)
    if route.kind == "dense":
        return top_eigenpairs(entk(model, inputs, memory_budget=memory_budget, **kw), k)
    return top_eigenpairs(entk_operator(model, inputs, memory_budget=memory_budget, **kw), k)
