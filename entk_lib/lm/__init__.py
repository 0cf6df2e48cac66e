"""eNTK features of a pretrained causal language model (the paper's Section 5).

* :mod:`~entk_lib.lm.models` -- loading the model (offline GGUF Gemma-3-270m, or the Hub).
* :mod:`~entk_lib.lm.data` -- stories, context windows, part-of-speech labels.
* :mod:`~entk_lib.lm.kernel` -- the logit eNTK of one module, matrix-free (its eigenpairs by
  :func:`entk_lib.top_eigenpairs` with ``solver="lanczos", steps=...``).
* :mod:`~entk_lib.lm.probe` -- AP / AUROC / precision-at-quota probes, PCA and random baselines,
  permutation tests.
* :mod:`~entk_lib.lm.steering` -- steering and ablation along the chosen directions.

``transformers`` (and ``spacy`` for the labels) are needed; install ``entk-lib[lm]``.
"""

from .kernel import LMKernelOperator, capture_windows, eigenvector_scores, lanczos_top, sqrt_unembedding_gram
from .probe import auroc, average_precision, pca_scores, precision_at_quota

__all__ = [
    "LMKernelOperator",
    "auroc",
    "average_precision",
    "capture_windows",
    "eigenvector_scores",
    "lanczos_top",
    "pca_scores",
    "precision_at_quota",
    "sqrt_unembedding_gram",
]
