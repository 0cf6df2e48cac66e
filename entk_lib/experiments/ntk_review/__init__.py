"""Chapter 1 (NTK review): the linearized model at initialization and at the end of training.

For each width and seed an NTK-parametrized MLP is trained by full-batch gradient descent on the
squared loss (two-moons data, labels +-1). We compare the trained network on held-out points with
the kernel-linearized model of the paper's Eq. (1) (kernel at initialization, ``K_0``) and Eq. (3)
(kernel at the end of training, ``K_T``), both run for the same number of gradient steps in
closed form (:func:`entk_lib.regression.kernel_regression` with ``steps``), and truncate ``K_T``
to its top eigenpairs.

Where each job lives:

``params``
    :class:`ReviewParams` (defaults; ``ranks`` derived from ``n_train``).
``pipeline``
    :func:`run_width` (train one network, its kernels and linearized predictors),
    :func:`width_sweep` (every width and seed), :func:`summarize` (means over seeds).
``claims``
    :data:`CRITERIA`, :func:`criteria_text`, :func:`smallest_rank`, :func:`claims_table`,
    :func:`record`.
``figures``
    :func:`plot_drift`, :func:`plot_faithfulness`, :func:`plot_predictions`, :func:`plot_spectra`.
"""

from __future__ import annotations

from .claims import CRITERIA, claims_table, criteria_text, record, smallest_rank
from .figures import plot_drift, plot_faithfulness, plot_predictions, plot_spectra
from .params import ReviewParams, derived_ranks
from .pipeline import run_width, summarize, width_sweep

__all__ = [
    "CRITERIA",
    "ReviewParams",
    "claims_table",
    "criteria_text",
    "derived_ranks",
    "plot_drift",
    "plot_faithfulness",
    "plot_predictions",
    "plot_spectra",
    "record",
    "run_width",
    "smallest_rank",
    "summarize",
    "width_sweep",
]
