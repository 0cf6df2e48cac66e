"""How well eigenvectors (or a span of them) line up with ground-truth feature vectors.

All functions take numpy arrays or tensors whose *columns* are vectors over the same index set
(inputs, or class-major input/output pairs for a flattened kernel).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from .linalg import as_numpy, empirical_p_value
from .params import check_int

__all__ = [
    "MatchResult",
    "abs_cosine",
    "empirical_p_value",
    "matched_score",
    "orthonormal_basis",
    "pair_projection",
    "principal_cosines",
    "random_orthonormal",
    "random_subspace_overlaps",
    "subspace_overlap",
]


def _np(x) -> np.ndarray:
    return as_numpy(x, column=True)


def abs_cosine(vectors, features) -> np.ndarray:
    """``|cos|`` between every column of ``vectors`` (n, k) and of ``features`` (n, f): (k, f)."""
    v, f = _np(vectors), _np(features)
    _check_rows(v, f)
    vn = v / np.maximum(np.linalg.norm(v, axis=0, keepdims=True), 1e-300)
    fn = f / np.maximum(np.linalg.norm(f, axis=0, keepdims=True), 1e-300)
    return np.abs(vn.T @ fn)


def orthonormal_basis(vectors, *, center: bool = False, rtol: float = 1e-10) -> np.ndarray:
    """An orthonormal basis (n, r) of the span of the columns, optionally mean-centred first.

    Directions with singular value below ``rtol * s_max`` are dropped, so ``r`` is the numerical
    rank (a centred family of cos/sin columns keeps its full rank; a constant column vanishes).
    """
    x = _np(vectors)
    if center:
        x = x - x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return u[:, :0]
    return u[:, s > rtol * s[0]]


def principal_cosines(a, b, *, center_b: bool = False) -> np.ndarray:
    """Cosines of the principal angles between span(a) and span(b), descending."""
    qa, qb = orthonormal_basis(a), orthonormal_basis(b, center=center_b)
    _check_rows(qa, qb)
    return np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)


def subspace_overlap(subspace, family, *, center_family: bool = True) -> float:
    """Overlap of two spans: the sum of squared principal cosines, in ``[0, min(dims)]``.

    ``subspace`` (e.g. a cliff's eigenvectors) and the feature ``family`` are orthonormalized
    (the family mean-centred first by default); the overlap is ``||Q_s^T Q_f||_F^2``. If the
    family lies inside the subspace, the overlap equals the family's dimension.
    """
    return float(np.sum(principal_cosines(subspace, family, center_b=center_family) ** 2))


def pair_projection(vectors, pairs) -> np.ndarray:
    """Squared projection of each unit vector onto each 2-D (cos, sin) pair: (k, n_pairs).

    ``pairs`` is (n, 2*n_pairs) with columns ``[cos_1, sin_1, cos_2, sin_2, ...]``. The value is
    the best phase-shifted match ``max_phi cos^2(v, cos(.+phi))`` = ``||Q_pair^T v||^2``.
    """
    v = _np(vectors)
    v = v / np.maximum(np.linalg.norm(v, axis=0, keepdims=True), 1e-300)
    p = _np(pairs)
    if p.shape[1] % 2:
        raise ValueError(f"`pairs` must have an even number of columns, got {p.shape[1]}")
    out = np.empty((v.shape[1], p.shape[1] // 2))
    for j in range(p.shape[1] // 2):
        q = orthonormal_basis(p[:, 2 * j : 2 * j + 2])
        out[:, j] = np.sum((q.T @ v) ** 2, axis=0)
    return out


class MatchResult(NamedTuple):
    """One-to-one (Hungarian) match of rows to columns of a score matrix."""

    mean: float
    rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray


def matched_score(scores) -> MatchResult:
    """Maximum-weight one-to-one matching of rows (e.g. eigenvectors) to columns (features)."""
    s = _np(scores)
    rows, cols = linear_sum_assignment(s, maximize=True)
    matched = s[rows, cols]
    return MatchResult(float(matched.mean()), rows, cols, matched)


def random_orthonormal(n: int, k: int, rng: np.random.Generator | int = 0) -> np.ndarray:
    """A Haar-random orthonormal basis (n, k)."""
    n = check_int("n", n, minimum=1)
    k = check_int("k", k, minimum=1, maximum=n)
    rng = np.random.default_rng(rng)
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))


def random_subspace_overlaps(n: int, dim: int, family, *, draws: int = 1000, seed: int = 0,
                             center_family: bool = True) -> np.ndarray:
    """Overlaps of ``draws`` random ``dim``-dimensional subspaces with ``family`` (null samples).

    The expected value is ``dim * dim(family) / n``.
    """
    draws = check_int("draws", draws, minimum=1)
    qf = orthonormal_basis(family, center=center_family)
    rng = np.random.default_rng(seed)
    out = np.empty(draws)
    for t in range(draws):
        q = random_orthonormal(n, dim, rng)
        out[t] = np.sum(np.linalg.svd(q.T @ qf, compute_uv=False) ** 2)
    return out


def _check_rows(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"vectors and features must have the same number of rows, got {a.shape[0]} and {b.shape[0]}"
        )
