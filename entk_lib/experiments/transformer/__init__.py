"""Chapter 6 (1-layer Transformer on modular addition): the paper's Section 4, Fig. 3 and Table 2.

For each seed a :class:`~entk_lib.models.transformer.ModularTransformer` is trained (cached on
disk, :func:`~entk_lib.models.transformer.train_transformer`, through the shared loop
:func:`entk_lib.training.train`), its key frequencies are read off the Fourier spectrum of its
token embedding (:func:`entk_lib.features.key_frequencies`), and the per-parameter-tensor eNTKs
(``sum_logits`` collapse, all p^2 inputs) are diagonalized:

* at every ``checkpoint_every`` epochs for the ``tracked`` tensors (the unembedding, as in the
  paper's Fig. 3), and for every tensor at every ``full_every`` epochs and at the end;
* the overlap (:func:`entk_lib.alignment.subspace_overlap`) of eigenvector windows with the sum
  modes ``cos/sin(2 pi k (a+b)/p)`` and the axis-sum modes ``cos/sin(2 pi k a/p) + (same in b)``
  at the K key frequencies is measured against random subspaces of the same dimension.

Windows (fixed from the paper's seed-2 analysis, where K = 2): the *sum window* is eigenvectors
``1 .. 2K+1`` (the paper's "top five"), the *axis-sum window* the next ``2K`` (its "5-8").

Where each job lives:

``params.py``
    :class:`TransformerParams` (defaults, derived ``checkpoint_every``, ``full_every``,
    ``top_k``; validation) and :data:`TENSORS`, the nine parameter tensors;
``pipeline.py``
    train-or-load and the cached per-seed analysis (:func:`analyze_seed`), the seeds in parallel
    processes (:func:`run_all`), Table 2 over seeds (:func:`table2`);
``claims.py``
    what the paper reports (:data:`PAPER`), the per-seed summary the verdicts read
    (:func:`seed_summary`), the claims table and the chapter's record;
``figures.py``
    plots, Table 2 and the key numbers as tables, the measured cost, the closing note.
"""

from __future__ import annotations

from .claims import PAPER, PEAK_REL_HEIGHT, claims_table, record, seed_summary
from .figures import (
    Note,
    closing_note,
    cost_view,
    key_numbers,
    plot_eigenvectors,
    plot_fig3,
    plot_fourier,
    plot_training,
    table2_view,
    tensor_timeline,
)
from .params import TENSORS, TransformerParams
from .pipeline import (
    ANALYSIS_VERSION,
    GROK_LEVELS,
    GROK_NAMES,
    analyze_seed,
    build_model,
    capture_rank,
    family_weights,
    run_all,
    table2,
    time_full_set,
    windows,
)

__all__ = [
    "ANALYSIS_VERSION",
    "GROK_LEVELS",
    "GROK_NAMES",
    "PAPER",
    "PEAK_REL_HEIGHT",
    "TENSORS",
    "Note",
    "TransformerParams",
    "analyze_seed",
    "build_model",
    "capture_rank",
    "claims_table",
    "closing_note",
    "cost_view",
    "family_weights",
    "key_numbers",
    "plot_eigenvectors",
    "plot_fig3",
    "plot_fourier",
    "plot_training",
    "record",
    "run_all",
    "seed_summary",
    "table2",
    "table2_view",
    "tensor_timeline",
    "time_full_set",
    "windows",
]
