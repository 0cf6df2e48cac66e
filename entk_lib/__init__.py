"""entk_lib: the empirical neural tangent kernel of any ``torch.nn.Module``, its spectra, and
the tools to match its eigenvectors to features (the library behind the entk-book).

One strategy switch: ``backend`` (:data:`BACKENDS`: ``"auto"``, ``"structured"``,
``"jacobian"``, ``"vjp"``) says how Jacobian products are computed in :func:`entk`,
:func:`entk_operator` and :func:`entk_eigenpairs`; ``route`` (:data:`ROUTES`: ``"auto"``,
``"dense"``, ``"lowrank"``, ``"matrix_free"``) which representation of the kernel
:func:`entk_eigenpairs` diagonalizes; ``solver`` which eigensolver :func:`top_eigenpairs` runs on
an operator. A :class:`KernelPlan` (:func:`entk_plan`) holds the per-tensor decision and is built
once. The Jacobian is ``J`` (C, N, P): outputs, inputs, parameters.
"""

from ._plan import BACKENDS, Backend, KernelPlan
from .auto import ROUTES, Route, RouteKind, choose_route, entk_eigenpairs
from .kernel import (
    COLLAPSES,
    KernelTooLargeError,
    LowRankKernel,
    entk,
    entk_by_layer,
    entk_jacobian,
    entk_lowrank,
    entk_plan,
)
from .operator import EntkOperator, entk_operator
from .spectrum import (
    SOLVERS,
    CliffRule,
    Drops,
    Eigenpairs,
    SolverInfo,
    cliff_ratios,
    describe_drops,
    find_cliffs,
    top_eigenpairs,
)

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "COLLAPSES",
    "ROUTES",
    "SOLVERS",
    "Backend",
    "Eigenpairs",
    "EntkOperator",
    "KernelPlan",
    "KernelTooLargeError",
    "CliffRule",
    "Drops",
    "LowRankKernel",
    "Route",
    "RouteKind",
    "SolverInfo",
    "choose_route",
    "cliff_ratios",
    "describe_drops",
    "entk",
    "entk_by_layer",
    "entk_eigenpairs",
    "entk_jacobian",
    "entk_lowrank",
    "entk_operator",
    "entk_plan",
    "find_cliffs",
    "top_eigenpairs",
]
