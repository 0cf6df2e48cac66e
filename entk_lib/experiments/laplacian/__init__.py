"""Chapter 5 (Laplacian rotation): from eNTK cliffs to individual Fourier features.

The paper's Appendix C and D (v1) and Fig. 4. For each seed, the cached modular-addition run of
:func:`entk_lib.models.modular.train_modular` is analysed at the end of training:

- the two cliff windows of the ``class_mean`` eNTK (0-based eigenvector indices,
  :func:`entk_lib.features.cliff_windows`): the first, ``1 .. 2(p-1)``, of the layer-1 kernel
  (or the total kernel, ``first_kernel``), and the second, ``2(p-1)+1 .. 4(p-1)``, of the total
  kernel;
- each window rotated by the two-stage Rayleigh-Ritz rotation of :mod:`entk_lib.laplacian`
  (axis Laplacians ``L_a``, ``L_b`` on the first, sum/difference Laplacians on the second), with
  the paper's ``n_second = d/2`` and the footnote-11 variant ``d/2 + n_extra``, and a sweep of
  ``n_second``;
- the one-to-one score of :func:`entk_lib.laplacian.pair_match` before and after, against the
  ceiling that the window's span allows (its overlap with the two families, divided by d);
- the compressed spectrum (stage-one Ritz values) against the Laplacian's values on pure
  Fourier modes;
- controls: the same rotation on the untrained network's first window; a graph learned from
  the eNTK (k nearest rows) in place of the torus, and random graphs with the same degrees
  along the same lines.

Where each job lives
--------------------
``params.py``
    :class:`LaplacianParams` (the six modular training fields of
    :class:`~entk_lib.models.modular.ModularTraining`, plus the rotation and graph settings;
    ``n_extra``, ``extra_sweep`` and ``knn_sweep`` are derived from ``p`` and ``n_second``).
``pipeline.py``
    :func:`run_all` / :func:`analyze_seed` (train-or-load, the cliff windows),
    :func:`analyze_cliff` (rotation, scores, Ritz values), :func:`learned_graph_scores` (learned
    and random graphs) and :func:`summarize` over seeds.
``claims.py``
    the verdict thresholds :data:`CRITERIA`, the rows of :func:`claims_table`,
    :func:`key_numbers`, the :func:`closing_note` and the chapter's :func:`record`.
``figures.py``
    the plots (``plot_*``).
"""

from __future__ import annotations

from .claims import CRITERIA, claims_table, closing_note, key_numbers, record
from .figures import plot_graphs, plot_heatmaps, plot_sweep, plot_why
from .params import CLIFFS, FIRST_KERNELS, GRAPH_ROWS, LaplacianParams
from .pipeline import analyze_cliff, analyze_seed, learned_graph_scores, run_all, summarize

__all__ = [
    "CLIFFS",
    "CRITERIA",
    "FIRST_KERNELS",
    "GRAPH_ROWS",
    "LaplacianParams",
    "analyze_cliff",
    "analyze_seed",
    "claims_table",
    "closing_note",
    "key_numbers",
    "learned_graph_scores",
    "plot_graphs",
    "plot_heatmaps",
    "plot_sweep",
    "plot_why",
    "record",
    "run_all",
    "summarize",
]
