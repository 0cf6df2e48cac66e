"""Chapter 4 (grokking): the eNTK of the modular-addition MLP over training.

The paper's v1 Fig. 3 and Appendix D (Fig. 5), and v4 Fig. 2. For each seed the cached run of
:func:`entk_lib.models.modular.train_modular` (checkpoints every 10 epochs) is analysed at every
``checkpoint_every`` epochs. At each checkpoint the ``class_mean`` eNTK over all p^2 inputs is
computed once and reused for:

- its top eigenpairs, the drops that end the two cliffs and the magnitude of the cliffs'
  eigenvalues;
- the overlaps of the cliff windows with the Fourier families (in % of the family dimension);
- the kernel drift ``||K_t - K_0|| / ||K_0||`` and the kernel-target alignment;
- two eNTK-linearized predictors on the test split (kernel regression with the kernel frozen at
  that checkpoint, run to convergence on the training split), compared with the network at the
  end of training: one started from the outputs at initialization (the paper's Eq. 3 with
  ``K_t``), one from the outputs at the checkpoint (the tangent model at ``theta_t``);
- at ``rotation_epochs``, the two-stage ``L_sum`` / ``L_diff`` rotation of the second cliff
  (Appendix D), scored one-to-one against the sum and difference Fourier pairs.

Onsets, derivatives and rise windows use the definitions of :mod:`entk_lib.grokking`; cliffs
the book's one rule, :class:`entk_lib.spectrum.CliffRule`.
Eigenvector windows are 0-based as in the modular-addition chapter: the leading mode is index
0, the first cliff indices ``1 .. 2(p-1)`` and the second ``2(p-1)+1 .. 4(p-1)``; the drop that
ends the second cliff is ``lambda[4(p-1)] / lambda[4(p-1)+1]``, the paper's lambda_112 / lambda_113
at p = 29 (the paper counts the same way: its cliffs are eigenvectors 1-56 and 57-112 after a
leading mode).

Where each job lives
--------------------
``params.py``
    :class:`GrokkingParams` (the six modular training fields of
    :class:`~entk_lib.models.modular.ModularTraining`, plus the analysis settings; the
    checkpoint interval, the analysed epochs and ``top_k`` are derived from the rest).
``pipeline.py``
    :func:`run_all` / :func:`analyze_seed` (train-or-load, the eNTK at every checkpoint,
    :func:`analyze_checkpoint`), :func:`summarize_seed` (onsets, cliffs, rise windows, derivative
    peaks), :func:`rotate_second_cliff` and its random baseline :func:`rotation_null`.
``claims.py``
    the criteria and rows of the claims table (:func:`claims_table`, :func:`rotation_row`),
    :func:`key_numbers` and the chapter's :func:`record`.
``figures.py``
    the plots (``plot_*``) and the eigenvector :func:`explorer` widget.
"""

from __future__ import annotations

from ...grokking import COMPLETE_LEVEL, ONSET_LEVEL
from .claims import claims_table, key_numbers, record, rotation_row
from .figures import (
    explorer,
    plot_beyond,
    plot_cliff_evolution,
    plot_explorer_static,
    plot_overlap,
    plot_rotation,
    plot_rotation_scores,
    plot_spectra,
    plot_training,
)
from .params import GrokkingParams, snap_to_checkpoints
from .pipeline import (
    analyze_checkpoint,
    analyze_seed,
    rotate_second_cliff,
    rotation_null,
    run_all,
    summarize_seed,
)

__all__ = [
    "COMPLETE_LEVEL",
    "ONSET_LEVEL",
    "GrokkingParams",
    "analyze_checkpoint",
    "analyze_seed",
    "claims_table",
    "explorer",
    "key_numbers",
    "plot_beyond",
    "plot_cliff_evolution",
    "plot_explorer_static",
    "plot_overlap",
    "plot_rotation",
    "plot_rotation_scores",
    "plot_spectra",
    "plot_training",
    "record",
    "rotate_second_cliff",
    "rotation_null",
    "rotation_row",
    "run_all",
    "snap_to_checkpoints",
    "summarize_seed",
]
