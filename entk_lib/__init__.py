"""entk_lib: the empirical neural tangent kernel of any ``torch.nn.Module``, its spectra, and
the tools to match its eigenvectors to features (the library behind the entk-book)."""

from .auto import Route, choose_route, entk_eigenpairs
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
from .spectrum import CliffRule, Drops, Eigenpairs, cliff_ratios, describe_drops, find_cliffs, top_eigenpairs

__version__ = "0.1.0"

__all__ = [
    "COLLAPSES",
    "Eigenpairs",
    "EntkOperator",
    "KernelTooLargeError",
    "CliffRule",
    "Drops",
    "LowRankKernel",
    "Route",
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
