"""Chapter 2 (Toy Models of Superposition): the paper's Section 3, Fig. 1 and Appendix B.

For every model (m, S) and seed a TMS model is trained and cached
(:func:`entk_lib.models.tms.train_tms`); its flattened eNTK over all N samples and n outputs (an
(n*N, n*N) matrix of rank at most P = m*n + n) is diagonalized through its P x P Gram matrix
(:func:`entk_lib.entk_lowrank`), once per importance exponent beta
(``output_weights = I**(beta/2)``; beta = 0 is the unrescaled kernel). The top eigenvectors are
compared with the expanded feature vectors (feature i's data column inside output block i) by two
scores:

``raw``
    ``|cos|`` with the expanded feature vector, as in the paper's Fig. 1. The data are in
    [0, 1] and not centred, so the bare indicator of block i already scores mean/rms of feature
    i (about 0.87 for dense uniform features): every raw score is reported beside this
    *class-block baseline*.
``feature score``
    ``sqrt(share of the vector's mass inside block i) * |Pearson correlation of the vector with
    x_i inside block i|``, in [0, 1]. It is 1 exactly when the vector lives in block i and is an
    affine, non-constant function of the feature values there; a block indicator scores 0.

Both are also computed for a Haar-random orthonormal basis of the same size (chance level).

Where each job lives:

``params``
    :class:`TMSParams` (defaults; ``models`` and ``top_k`` derived from ``n_features``; one
    model's training setup by :meth:`TMSParams.setup`).
``pipeline``
    :func:`run_all` / :func:`analyse_run` (train or load, spectra, alignment measures),
    :func:`summarize` (arrays over seeds), :func:`appendix_b_check` (closed form vs engine).
``claims``
    :data:`CRITERIA`, :func:`key_numbers`, :func:`claims_table`, :func:`record`.
``figures``
    :func:`plot_wtw`, :func:`plot_figure1`, :func:`plot_trap`, :func:`plot_alignment_summary`.
"""

from __future__ import annotations

from .claims import (
    CRITERIA,
    PAPER_BETAS,
    PAPER_REPRESENTED,
    claims_table,
    key_numbers,
    record,
    two_lines_pass,
)
from .figures import plot_alignment_summary, plot_figure1, plot_trap, plot_wtw
from .params import TMSParams, derived_models
from .pipeline import (
    alignment_stats,
    analyse_run,
    appendix_b_check,
    block_indicators,
    block_scores,
    chain_cover,
    feature_view,
    flattened_spectra,
    importance_lines,
    run_all,
    runs_of,
    subspace_capture,
    summarize,
)

__all__ = [
    "CRITERIA",
    "PAPER_BETAS",
    "PAPER_REPRESENTED",
    "TMSParams",
    "alignment_stats",
    "analyse_run",
    "appendix_b_check",
    "block_indicators",
    "block_scores",
    "chain_cover",
    "claims_table",
    "derived_models",
    "feature_view",
    "flattened_spectra",
    "importance_lines",
    "key_numbers",
    "plot_alignment_summary",
    "plot_figure1",
    "plot_trap",
    "plot_wtw",
    "record",
    "run_all",
    "runs_of",
    "subspace_capture",
    "summarize",
    "two_lines_pass",
]
