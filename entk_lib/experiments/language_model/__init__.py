"""Chapter 7 (paper v4 Section 5, Table 3): eNTK features of a pretrained LM against PCA.

What the chapter computes: stories -> part-of-speech tagged windows (label = the POS of the
model's greedy next word where it agrees with the true next word) -> one forward pass recording
activations -> the logit eNTK of one module (matrix-free, Lanczos) -> one score per window per
eigenvector -> probe metrics against PCA and random directions of the same budget -> a layer
sweep -> steering and ablation along the chosen directions -> the claims table and the record.

Where each job lives:

``params.py``
    :class:`LMParams` (defaults, the derived ``lanczos_steps`` and ``sweep_steps``, validation)
    and :func:`check_model` (what only the loaded model can tell).
``pipeline.py``
    :func:`load`, :func:`build_windows`, :func:`entk_layer`, :func:`probes`, :func:`p_values`,
    :func:`layer_sweep`, :func:`steering_test`.
``claims.py``
    :data:`CRITERIA`, :func:`claims_table`, :func:`closing_note`, :func:`record`.
``figures.py``
    :func:`per_tag_table`, :func:`sweep_table`, :func:`steering_table`, :func:`plot_per_tag`,
    :func:`plot_sweep`.

The science below it is in :mod:`entk_lib.lm` (data, kernel, probe, steering, models).
"""

from .claims import CRITERIA, claims_table, closing_note, record
from .figures import per_tag_table, plot_per_tag, plot_sweep, steering_table, sweep_table
from .params import OFFLINE_MODEL, LMParams, check_model
from .pipeline import build_windows, entk_layer, layer_sweep, load, p_values, probes, steering_test

__all__ = [
    "CRITERIA",
    "OFFLINE_MODEL",
    "LMParams",
    "build_windows",
    "check_model",
    "claims_table",
    "closing_note",
    "entk_layer",
    "layer_sweep",
    "load",
    "p_values",
    "per_tag_table",
    "plot_per_tag",
    "plot_sweep",
    "probes",
    "record",
    "steering_table",
    "steering_test",
    "sweep_table",
]
