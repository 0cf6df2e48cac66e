"""Ground-truth feature bases: Fourier families for modular arithmetic, TMS feature vectors.

Input ordering for modular arithmetic (used everywhere in this library): the p^2 inputs are the
pairs (a, b) with ``index = a * p + b``, a and b in ``0 .. p-1``. So ``a`` varies slowest, and a
vector over the inputs reshaped to (p, p) has rows indexed by a and columns by b.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .params import check_choice, check_int, check_real

__all__ = [
    "FOURIER_KINDS",
    "KeyFrequencies",
    "axis_sum_family",
    "cliff_positions",
    "cliff_windows",
    "fourier_families",
    "fourier_family",
    "fourier_power",
    "key_frequencies",
    "modular_pairs",
    "tms_expanded_features",
]

FOURIER_KINDS = ("a", "b", "sum", "diff")


def modular_pairs(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``a`` and ``b`` of length p^2 in the library's input order (index = a*p + b)."""
    p = check_int("p", p, minimum=2)
    a, b = np.divmod(np.arange(p * p), p)
    return a, b


def fourier_family(p: int, kind: str, frequencies=None) -> np.ndarray:
    """Fourier features over the p^2 inputs, columns ``[cos k1, sin k1, cos k2, sin k2, ...]``.

    Parameters
    ----------
    p : int
        Modulus.
    kind : {"a", "b", "sum", "diff"}
        The phase variable: ``a``, ``b``, ``a + b`` or ``a - b``.
    frequencies : sequence of int, optional
        Frequencies k (default ``1 .. (p-1)//2``, giving ``p - 1`` columns for odd p).

    Returns
    -------
    ndarray (p^2, 2 * len(frequencies)): ``cos(2 pi k x / p)`` and ``sin(2 pi k x / p)``.
    """
    check_choice("kind", kind, FOURIER_KINDS)
    a, b = modular_pairs(p)
    x = {"a": a, "b": b, "sum": a + b, "diff": a - b}[kind]
    ks = range(1, (p - 1) // 2 + 1) if frequencies is None else frequencies
    cols = []
    for k in ks:
        k = check_int("frequencies", k, minimum=1, maximum=p - 1)
        cols += [np.cos(2 * np.pi * k * x / p), np.sin(2 * np.pi * k * x / p)]
    return np.stack(cols, axis=1)


def cliff_windows(p: int) -> dict[str, slice]:
    """0-based eigenvector windows of the modular-addition eNTK (cliffs of 2(p-1) Fourier modes
    after a leading mode): ``lead`` (0), ``first`` (1 .. 2(p-1)), ``second`` (2(p-1)+1 ..
    4(p-1)) and ``next`` (the following 2(p-1), a control window)."""
    c = 2 * (p - 1)
    return {"lead": slice(0, 1), "first": slice(1, 1 + c), "second": slice(1 + c, 1 + 2 * c),
            "next": slice(1 + 2 * c, 1 + 3 * c)}


def cliff_positions(p: int) -> tuple[int, int]:
    """0-based indices of the drops that end the first and second windows of
    :func:`cliff_windows`: 2(p-1)+1 and 4(p-1)+1 (57 and 113 at p = 29)."""
    w = cliff_windows(p)
    return w["first"].stop, w["second"].stop


def fourier_families(p: int) -> dict[str, np.ndarray]:
    """All four families (a, b, sum, diff), each (p^2, p-1) for odd p: 4(p-1) columns in total."""
    return {kind: fourier_family(p, kind) for kind in FOURIER_KINDS}


def tms_expanded_features(data) -> np.ndarray:
    """Expanded TMS feature vectors in the flattened (class-major) kernel's row space.

    Parameters
    ----------
    data : array (N, n)
        The dataset, one row per sample, one column per feature.

    Returns
    -------
    ndarray (n*N, n): column ``i`` equals ``data[:, i]`` inside block ``i`` (rows ``i*N .. i*N +
    N - 1``, i.e. output i) and 0 elsewhere.
    """
    x = np.asarray(data, dtype=float)
    n_samples, n = x.shape
    out = np.zeros((n * n_samples, n))
    for i in range(n):
        out[i * n_samples : (i + 1) * n_samples, i] = x[:, i]
    return out


# --------------------------------------------------------------------------------------------
# Key frequencies of a trained modular-arithmetic model, and the families built from them
# --------------------------------------------------------------------------------------------


def axis_sum_family(p: int, frequencies) -> np.ndarray:
    """"Axis-sum" modes over the p^2 inputs: ``cos(2 pi k a/p) + cos(2 pi k b/p)`` and the sine.

    Columns ``[cos-sum k1, sin-sum k1, cos-sum k2, ...]`` (p^2, 2 * len(frequencies)), the same
    layout as :func:`fourier_family`. They are the sums of the ``a`` and ``b`` families' columns,
    the features a model that adds the two tokens' embeddings carries before it multiplies them.
    """
    return fourier_family(p, "a", frequencies) + fourier_family(p, "b", frequencies)


def fourier_power(weight, p: int) -> np.ndarray:
    """Share of a token-indexed matrix's Fourier energy at each frequency k = 1 .. (p-1)//2.

    Parameters
    ----------
    weight : array (p, d) or (>= p, d)
        Rows indexed by the tokens 0 .. p-1 (e.g. an embedding matrix; extra rows, such as an
        ``=`` token, are ignored).
    p : int
        Modulus.

    Returns
    -------
    ndarray ((p-1)//2,): ``P_k / sum_k P_k`` with ``P_k = sum_d |FFT_k(W[:, d])|^2`` (the k and
    p-k coefficients together; the constant k = 0 is left out). Entries sum to 1.
    """
    p = check_int("p", p, minimum=3)
    w = np.asarray(weight.detach().cpu().numpy() if hasattr(weight, "detach") else weight, dtype=float)
    if w.ndim != 2 or w.shape[0] < p:
        raise ValueError(f"`weight` must be a matrix with at least p={p} rows, got shape {w.shape}")
    spectrum = np.sum(np.abs(np.fft.fft(w[:p], axis=0)) ** 2, axis=1)
    half = spectrum[1 : (p - 1) // 2 + 1]
    total = half.sum()
    if total <= 0:
        raise ValueError("`weight` has no non-constant Fourier component")
    return half / total


class KeyFrequencies(NamedTuple):
    """What :func:`key_frequencies` returns.

    frequencies : sorted ints; power : the share of every frequency 1 .. (p-1)//2; ratio : the
    drop in power just below the key set (largest over smallest kept share, next share);
    clear : whether that drop reaches ``min_ratio``.
    """

    frequencies: list[int]
    power: np.ndarray
    ratio: float
    clear: bool


def key_frequencies(weight, p: int, *, max_keys: int | None = None, min_ratio: float = 2.0) -> KeyFrequencies:
    """The frequencies a modular-arithmetic model uses, from the Fourier spectrum of its embedding.

    The shares of :func:`fourier_power` are sorted in decreasing order and cut at the largest
    ratio between consecutive shares among the first ``max_keys + 1`` (the strongest spectral
    cliff, as :func:`entk_lib.spectrum.find_cliffs` defines it): the frequencies above the cut are
    the key frequencies. Nanda et al. (2023) read them off the same spectrum by eye.

    Parameters
    ----------
    weight : array (>= p, d)
        Token-indexed weights, typically the token embedding ``W_E``.
    max_keys : int, optional
        Most key frequencies to return (default ``(p-1)//4``, half of all frequencies).
    min_ratio : float
        The cut is called ``clear`` when its ratio is at least this.
    """
    power = fourier_power(weight, p)
    n_freq = power.size
    if n_freq < 2:
        raise ValueError(f"`p` must be at least 5 to rank frequencies, got {p}")
    if max_keys is None:
        max_keys = max(1, n_freq // 2)
    max_keys = check_int("max_keys", max_keys, minimum=1, maximum=n_freq - 1)
    min_ratio = check_real("min_ratio", min_ratio, low=1.0)
    order = np.argsort(-power, kind="stable")
    sorted_power = power[order]
    ratios = sorted_power[:max_keys] / np.maximum(sorted_power[1 : max_keys + 1], np.finfo(float).tiny)
    n_keys = int(np.argmax(ratios)) + 1
    freqs = sorted(int(k) + 1 for k in order[:n_keys])
    ratio = float(ratios[n_keys - 1])
    return KeyFrequencies(freqs, power, ratio, ratio >= min_ratio)
