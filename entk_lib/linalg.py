"""Small array helpers that several modules and chapters share: conversion to NumPy, the sign
convention of eigenvectors, centring, a dense top-k eigensolver, and permutation p-values.

Each lives here once so that every chapter fixes signs, centres kernels and counts p-values the
same way.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_numpy", "centered", "eigh_top", "empirical_p_value", "fix_signs"]


def as_numpy(x, *, column: bool = False) -> np.ndarray:
    """``x`` (tensor, array or nested list) as a float64 array; ``column=True`` turns a vector
    (n,) into a column (n, 1)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=float)
    return x[:, None] if column and x.ndim == 1 else x


def fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip each column of ``vectors`` (n, k) so that its largest-magnitude entry is positive.

    Eigenvectors are defined up to sign; this makes every solver in the library return the same
    vectors for the same subspace (and nbval-stable figures)."""
    if vectors.size == 0:
        return vectors
    rows = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[rows, np.arange(vectors.shape[1])])
    return vectors * np.where(signs == 0, 1.0, signs)


def centered(mat: np.ndarray) -> np.ndarray:
    """``H K H`` for a square ``K`` (N, N), or ``H Y`` for a tall ``Y`` (N, c), with
    ``H = I - 11^T / N``: mean subtraction, O(N^2), never the O(N^3) product with ``H``."""
    mat = np.asarray(mat, dtype=float)
    out = mat - mat.mean(axis=0, keepdims=True)
    if mat.ndim == 2 and mat.shape[0] == mat.shape[1]:
        out = out - out.mean(axis=1, keepdims=True)
    return out


def eigh_top(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` eigenpairs of a symmetric matrix (N, N) by a full LAPACK ``eigh``, descending,
    signs fixed by :func:`fix_signs`. For N up to a few thousand a full solve is faster than a
    subset or Krylov solve; :func:`entk_lib.top_eigenpairs` picks among them for any size."""
    values, vectors = np.linalg.eigh(matrix)
    return values[::-1][:k], fix_signs(vectors[:, ::-1][:, :k])


def empirical_p_value(observed: float, null_samples) -> float:
    """``(1 + #{null >= observed}) / (1 + draws)``: the one-sided permutation p-value (never 0)."""
    null = np.asarray(null_samples, dtype=float)
    return float((1 + np.sum(null >= observed)) / (1 + null.size))
