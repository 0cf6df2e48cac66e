"""Timing a grokking transition: onset epochs, derivatives of curves over checkpoints, rise windows.

These helpers take plain curves (epochs and values), so any chapter can apply the same
definitions to its own training history or to a quantity measured at checkpoints::

    from entk_lib.grokking import grokking_onset, derivative_peak
    onset, done = grokking_onset(run.history)               # epochs of 50% and 95% test accuracy
    slope, peak = derivative_peak(epochs, overlap_percent)  # central differences, epoch of the max

Definitions
    *Onset of grokking*: the first recorded epoch at which the test accuracy reaches 50%; the
    transition is *complete* at the first epoch it reaches 95% (``levels=(0.5, 0.95)``). Only
    recorded epochs are searched, so the answer is exact to the evaluation interval. Where a
    transition is slow, the *first rise* is the first epoch at 10% test accuracy.

    *Derivative*: central differences in the interior (second order, also on a non-uniform
    grid), one-sided first differences at the two ends, in units of the values per epoch.

    *Rise window*: the first epochs at which a curve has covered 10% and 90% of its rise from
    its first value to its maximum (optionally on a log scale).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .params import check_real

__all__ = [
    "COMPLETE_LEVEL",
    "ONSET_LEVEL",
    "RISE_LEVEL",
    "central_difference",
    "derivative_maxima",
    "derivative_peak",
    "first_epoch_reaching",
    "grokking_onset",
    "rise_window",
]


#: Test accuracy that marks the onset of grokking, and its completion (the book's definitions;
#: COMPLETE_LEVEL on the training accuracy is the memorization epoch). RISE_LEVEL marks the first
#: departure from chance, where a slow transition (the Transformer's) starts.
ONSET_LEVEL, COMPLETE_LEVEL, RISE_LEVEL = 0.5, 0.95, 0.10


def _curve(epochs, values, *, min_len: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validated float arrays (T,) with strictly increasing epochs."""
    ep = np.asarray(epochs, dtype=float)
    val = np.asarray(values, dtype=float)
    if ep.ndim != 1 or ep.shape != val.shape:
        raise ValueError(f"`epochs` and `values` must be 1-D of the same length, got shapes "
                         f"{ep.shape} and {val.shape}")
    if ep.size < min_len:
        raise ValueError(f"`epochs` must hold at least {min_len} points, got {ep.size}")
    if np.any(np.diff(ep) <= 0):
        raise ValueError("`epochs` must be strictly increasing")
    if not np.all(np.isfinite(val)):
        raise ValueError("`values` must be finite")
    return ep, val


def _as_int(epoch: float) -> int | float:
    return int(epoch) if float(epoch).is_integer() else float(epoch)


def first_epoch_reaching(epochs, values, level: float) -> int | None:
    """The first epoch at which ``values >= level`` (None if never).

    Parameters
    ----------
    epochs : sequence (T,), strictly increasing
    values : sequence (T,)
    level : float
    """
    ep, val = _curve(epochs, values)
    level = check_real("level", level)
    hit = np.nonzero(val >= level)[0]
    return _as_int(ep[hit[0]]) if hit.size else None


def grokking_onset(history: Mapping[str, Sequence[float]],
                   levels: Sequence[float] = (ONSET_LEVEL, COMPLETE_LEVEL), *,
                   key: str = "test_acc", epoch_key: str = "epoch") -> list[int | None]:
    """Epochs at which the accuracy in ``history`` first reaches each level.

    Parameters
    ----------
    history : mapping with ``history[epoch_key]`` (T,) and ``history[key]`` (T,)
        For example :attr:`entk_lib.training.TrainingRun.history` (accuracies in [0, 1]).
    levels : sequence of float in (0, 1]
        Default ``(ONSET_LEVEL, COMPLETE_LEVEL) = (0.5, 0.95)``: the onset of grokking and its
        completion.
    key, epoch_key : str
        Which curve to read (``"train_acc"`` gives the memorization epochs).

    Returns
    -------
    list of int or None, one per level (None: never reached).
    """
    for name in (epoch_key, key):
        if name not in history:
            raise ValueError(f"`history` has no {name!r} entry; it has {sorted(history)}")
    levels = [check_real(f"levels[{i}]", v, low=0.0, high=1.0, low_inclusive=False)
              for i, v in enumerate(levels)]
    return [first_epoch_reaching(history[epoch_key], history[key], v) for v in levels]


def central_difference(epochs, values) -> np.ndarray:
    """First derivative ``d values / d epoch`` (T,), by central differences.

    Interior points use the second-order formula for a possibly non-uniform grid (on a uniform
    grid ``(y[i+1] - y[i-1]) / (x[i+1] - x[i-1])``), exact for quadratics; the end points use
    forward and backward first differences. Needs at least two points.
    """
    ep, val = _curve(epochs, values, min_len=2)
    return np.gradient(val, ep, edge_order=1)


def derivative_peak(epochs, values) -> tuple[np.ndarray, int | float]:
    """The central-difference derivative (T,) and the epoch where it is largest (first maximum)."""
    ep, _ = _curve(epochs, values, min_len=2)
    slope = central_difference(epochs, values)
    return slope, _as_int(ep[int(np.argmax(slope))])


def derivative_maxima(epochs, values, rel_height: float = 0.5) -> list[tuple[int | float, float]]:
    """Every local maximum of the derivative that reaches ``rel_height`` of its largest value.

    Where two maxima have similar heights, which one is the largest (:func:`derivative_peak`)
    can change with floating-point rounding (another CPU, another BLAS path), so a claim about
    "the" peak should look at all of them.

    Returns
    -------
    list of ``(epoch, height / largest height)``, largest first (the first is the epoch of
    :func:`derivative_peak` when the largest derivative is positive; empty otherwise).
    """
    ep, _ = _curve(epochs, values, min_len=2)
    rel_height = check_real("rel_height", rel_height, low=0.0, high=1.0, low_inclusive=False)
    slope = central_difference(epochs, values)
    top = slope.max()
    if top <= 0:
        return []
    padded = np.concatenate([[-np.inf], slope, [-np.inf]])
    is_max = (padded[1:-1] >= padded[:-2]) & (padded[1:-1] > padded[2:])
    idx = [i for i in np.nonzero(is_max)[0] if slope[i] >= rel_height * top]
    idx.sort(key=lambda i: (-slope[i], i))
    return [(_as_int(ep[i]), float(slope[i] / top)) for i in idx]


def rise_window(epochs, values, low: float = 0.1, high: float = 0.9, *, log: bool = False):
    """When a curve covers ``low`` and ``high`` of its rise from its first value to its maximum.

    Parameters
    ----------
    epochs : sequence (T,), strictly increasing
    values : sequence (T,); positive when ``log``
    low, high : float, 0 < low < high <= 1
    log : bool
        Measure the rise of ``log(values)`` (for eigenvalues spanning orders of magnitude).

    Returns
    -------
    (epoch_low, epoch_high), the first epochs at which ``values - values[0]`` reaches ``low`` and
    ``high`` times ``max(values) - values[0]``; None if the curve never rises above its first
    value.
    """
    ep, val = _curve(epochs, values)
    low = check_real("low", low, low=0.0, high=1.0, low_inclusive=False)
    high = check_real("high", high, low=low, high=1.0, low_inclusive=False)
    if log:
        if np.any(val <= 0):
            raise ValueError("`values` must be positive when `log` is True")
        val = np.log(val)
    rise = val - val[0]
    top = rise.max()
    if top <= 0:
        return None
    return first_epoch_reaching(ep, rise, low * top), first_epoch_reaching(ep, rise, high * top)
