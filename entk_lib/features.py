"""Ground-truth feature bases: Fourier families for modular arithmetic, TMS feature vectors.

Input ordering for modular arithmetic (used everywhere in this library): the p^2 inputs are the
pairs (a, b) with ``index = a * p + b``, a and b in ``0 .. p-1``. So ``a`` varies slowest, and a
vector over the inputs reshaped to (p, p) has rows indexed by a and columns by b.
"""

from __future__ import annotations

import numpy as np

from .params import check_choice, check_int

__all__ = [
    "FOURIER_KINDS",
    "fourier_families",
    "fourier_family",
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
