"""Top eigenpairs of a kernel (dense, low-rank or matrix-free) and spectral cliffs."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg
import torch
from scipy.sparse.linalg import LinearOperator, eigsh

from .kernel import LowRankKernel
from .params import check_int, check_real

__all__ = ["Eigenpairs", "cliff_ratios", "find_cliffs", "top_eigenpairs"]


class Eigenpairs(NamedTuple):
    """``values`` (k,) in descending order; ``vectors`` (n, k), orthonormal columns."""

    values: np.ndarray
    vectors: np.ndarray


def top_eigenpairs(kernel, k: int, *, tol: float = 0.0, seed: int = 0) -> Eigenpairs:
    """The ``k`` largest eigenpairs of a symmetric PSD kernel.

    Parameters
    ----------
    kernel : Tensor or ndarray (n, n), LowRankKernel, or LinearOperator
        Dense matrices use LAPACK ``eigh`` (only the top k are computed). A
        :class:`~entk_lib.kernel.LowRankKernel` ``F F^T`` is diagonalized through the smaller
        Gram matrix ``F^T F``. A ``LinearOperator`` (e.g. :func:`entk_lib.entk_operator`) uses
        Lanczos (ARPACK ``eigsh``), or a dense fallback when ``k`` is close to ``n``.
    k : int
        Number of eigenpairs, ``1 <= k <= n`` (``<= rank bound`` for a LowRankKernel).
    tol : float
        Lanczos tolerance (0 means machine precision).
    seed : int
        Seed of the Lanczos start vector, for reproducible eigenvectors.

    Returns
    -------
    Eigenpairs with numpy arrays; eigenvector signs are fixed so the largest-magnitude entry of
    each vector is positive.
    """
    if isinstance(kernel, LowRankKernel):
        values, vectors = _lowrank_top(kernel, k)
    elif isinstance(kernel, LinearOperator):
        values, vectors = _operator_top(kernel, k, tol, seed)
    else:
        values, vectors = _dense_top(kernel, k)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    return Eigenpairs(values, _fix_signs(vectors))


def _as_numpy(kernel) -> np.ndarray:
    if isinstance(kernel, torch.Tensor):
        return kernel.detach().cpu().numpy()
    return np.asarray(kernel)


def _check_k(k, n, what="the kernel's dimension"):
    return check_int("k", k, minimum=1, maximum=n) if n >= 1 else k


def _dense_top(kernel, k):
    mat = _as_numpy(kernel)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"`kernel` must be a square matrix, got shape {mat.shape}")
    n = mat.shape[0]
    k = _check_k(k, n)
    scale = np.abs(mat).max() if mat.size else 0.0
    if not np.allclose(mat, mat.T, rtol=0, atol=1e-5 * scale + 1e-30):
        raise ValueError("`kernel` must be symmetric (got an asymmetric matrix)")
    mat = 0.5 * (mat + mat.T)
    values, vectors = scipy.linalg.eigh(mat, subset_by_index=[n - k, n - 1])
    return values, vectors


def _lowrank_top(kernel: LowRankKernel, k):
    factor = kernel.factor.detach().cpu().numpy()
    n, r = factor.shape
    if k > min(n, r) or k < 1:
        raise ValueError(
            f"`k` must be in [1, {min(n, r)}] (the rank bound of this low-rank kernel, "
            f"min(n={n}, P={r})), got {k}"
        )
    if r >= n:
        return _dense_top(factor @ factor.T, k)
    gram = factor.T @ factor
    values, small = scipy.linalg.eigh(gram, subset_by_index=[r - k, r - 1])
    values = np.clip(values, 0.0, None)
    norms = np.sqrt(np.where(values > 0, values, 1.0))
    vectors = factor @ small / norms
    return values, vectors


def _operator_top(op: LinearOperator, k, tol, seed):
    n = op.shape[0]
    k = _check_k(k, n)
    if k >= n - 1:
        dense = op.matmat(np.eye(n, dtype=op.dtype))
        return _dense_top(dense, k)
    v0 = np.random.default_rng(seed).standard_normal(n).astype(op.dtype)
    values, vectors = eigsh(op, k=k, which="LA", tol=tol, v0=v0)
    return values, vectors


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
    if vectors.size == 0:
        return vectors
    idx = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


def cliff_ratios(eigenvalues, *, rtol: float = 1e-10) -> np.ndarray:
    """Drop ratios ``r[k] = lambda[k-1] / lambda[k]`` for k = 1 .. n-1 (``r[0]`` is NaN).

    Eigenvalues are sorted descending first; values below ``rtol * lambda_max`` are clipped to
    that floor, so numerical zeros beyond the rank do not create spurious drops among themselves.
    """
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    if lam.size == 0:
        return lam
    floor = max(rtol * lam[0], np.finfo(float).tiny)
    clipped = np.maximum(lam, floor)
    ratios = np.full(lam.shape, np.nan)
    ratios[1:] = clipped[:-1] / clipped[1:]
    return ratios


def find_cliffs(
    eigenvalues, *, threshold: float = 2.0, rtol: float = 1e-10, return_ratios: bool = False
):
    """Indices of spectral cliffs, strongest first.

    A cliff at index ``k`` means the top ``k`` eigenvalues stand above it: the drop ratio
    ``lambda[k-1] / lambda[k]`` (eigenvalues sorted descending, 0-based) is at least
    ``threshold``, and ``lambda[k-1]`` is above the numerical floor ``rtol * lambda_max`` (see
    :func:`cliff_ratios`). So a spectrum with 50 large eigenvalues and the rest small has a cliff
    at index 50.

    Returns
    -------
    ndarray of int indices sorted by decreasing ratio; with ``return_ratios`` also the ratios.
    """
    threshold = check_real("threshold", threshold, low=1.0, low_inclusive=False)
    ratios = cliff_ratios(eigenvalues, rtol=rtol)
    if ratios.size < 2:
        empty = np.array([], dtype=int)
        return (empty, np.array([])) if return_ratios else empty
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    floor = rtol * lam[0]
    idx = np.array(
        [k for k in range(1, lam.size) if ratios[k] >= threshold and lam[k - 1] > floor], dtype=int
    )
    if idx.size:
        idx = idx[np.argsort(-ratios[idx], kind="stable")]
    return (idx, ratios[idx]) if return_ratios else idx
