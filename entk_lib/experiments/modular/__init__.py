"""Chapter 3 (modular addition): eNTK cliffs of Gromov's quadratic MLP and Fourier families.

The paper's Section 4 (v1) and Fig. 1 / Table 1 (v4). For each seed, the cached run of
:func:`entk_lib.models.modular.train_modular` is analysed at the end of training:

- the ``class_mean`` eNTK over all p^2 inputs, in total and per layer, and layer 1 at
  initialization: top eigenpairs and cliffs (:func:`entk_lib.find_cliffs`);
- the ``per_class`` kernels (their cliffs, class by class);
- overlaps of the two cliff windows with the four Fourier families, against random subspaces;
- the function-preserving rescaling ``W1 -> s W1, W2 -> W2 / s^2`` (layer kernels scale by
  ``s^-2`` and ``s^4``), which moves the cliffs of the total kernel;
- a causal test: ablate, in the readout weights ``W2``, the hidden-space directions that a
  cliff's eigenvectors induce, against random ablations of the same dimension;
- the ``flattened`` kernel (p^2 * p rows) through the matrix-free operator.

Eigenvector windows use 0-based indices (:func:`entk_lib.features.cliff_windows`): the leading
mode is index 0, the first cliff indices ``1 .. 2(p-1)`` and the second ``2(p-1)+1 .. 4(p-1)``
(eigenvectors 1-56 and 57-112 at p = 29), so the cliffs :func:`find_cliffs` should report sit
at ``2(p-1)+1`` and ``4(p-1)+1`` (:func:`entk_lib.features.cliff_positions`).

Where each job lives
--------------------
``params.py``
    :class:`ModularParams` (the six modular training fields of
    :class:`~entk_lib.models.modular.ModularTraining`, plus the analysis settings; ``top_k`` and
    ``flat_top_k`` are derived from ``p``).
``pipeline.py``
    :func:`run_all` / :func:`analyze_seed` (train-or-load, spectra, overlaps,
    :func:`per_class_cliffs`, :func:`reparam_sweep`, :func:`causal_ablation`), the null sample
    :func:`null_overlaps`, :func:`flattened_analysis` and :func:`summarize` over seeds.
``claims.py``
    the verdict thresholds :data:`CRITERIA`, the rows of :func:`claims_table`,
    :func:`key_numbers` and the chapter's :func:`record`.
``figures.py``
    the plots (``plot_*``).
"""

from __future__ import annotations

from .claims import CRITERIA, PAPER_SECOND_CLIFF, claims_table, key_numbers, record
from .figures import (
    plot_causal,
    plot_flattened,
    plot_overlaps,
    plot_pair_projection,
    plot_per_class_ratios,
    plot_reparam,
    plot_spectra,
    plot_training,
)
from .params import ModularParams, derived_flat_top_k
from .pipeline import (
    analyze_seed,
    causal_ablation,
    flattened_analysis,
    null_overlaps,
    per_class_cliffs,
    reparam_sweep,
    rescaled_total,
    run_all,
    summarize,
)

__all__ = [
    "CRITERIA",
    "PAPER_SECOND_CLIFF",
    "ModularParams",
    "analyze_seed",
    "causal_ablation",
    "claims_table",
    "derived_flat_top_k",
    "flattened_analysis",
    "key_numbers",
    "null_overlaps",
    "per_class_cliffs",
    "plot_causal",
    "plot_flattened",
    "plot_overlaps",
    "plot_pair_projection",
    "plot_per_class_ratios",
    "plot_reparam",
    "plot_spectra",
    "plot_training",
    "record",
    "reparam_sweep",
    "rescaled_total",
    "run_all",
    "summarize",
]
