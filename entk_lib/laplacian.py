"""Graph Laplacians on the modular-arithmetic torus and Rayleigh-Ritz rotation inside a subspace.

The eNTK's cliffs span the right Fourier families, but their individual eigenvectors are
mixtures (any rotation inside a degenerate or near-degenerate eigenspace is as good as another
for the kernel). The paper's Appendix C (v1) picks one basis inside the span with a smoothness
prior: rotate the span so that its directions are, in turn, as smooth as possible under a graph
Laplacian (Rayleigh-Ritz). Because the Laplacians of the input torus are diagonal in the
Fourier basis, with one eigenvalue per (cos, sin) pair, the rotation separates frequencies.

Input ordering (as everywhere in :mod:`entk_lib`): the p^2 inputs are the pairs (a, b), row
``index = a * p + b``.

Laplacians (all returned as ``scipy.sparse.csr_array`` of shape (p^2, p^2); call ``.toarray()``
for a dense copy)

- ``L_p`` (:func:`cyclic_laplacian`): the p x p cyclic second difference, 2 on the diagonal, -1 on
  both neighbouring diagonals and in the two wrap-around corners. Eigenvalues
  ``2 - 2 cos(2 pi k / p)``, eigenvectors ``cos``/``sin(2 pi k x / p)``: 0 for the constant, then
  one value per frequency pair ``k = 1 .. (p-1)/2``, rising with k.
- ``L_a = L_p (x) I_p``: penalizes variation in ``a`` at fixed ``b``; null space = functions of
  ``b`` alone. ``L_b = I_p (x) L_p``: the same with the roles exchanged.
- ``L_sum``: penalizes variation of ``a + b`` at fixed ``a - b`` (edges along the main diagonal);
  null space = functions of ``a - b``. ``L_diff``: variation of ``a - b`` at fixed ``a + b``
  (edges along the anti-diagonal); null space = functions of ``a + b``. With
  ``diagonal="coordinate"`` (default) the neighbours are one step apart in the sum (resp.
  difference) coordinate, ``(a, b) ~ (a + h, b + h)`` with ``h = (p+1)/2`` (``2h = 1 mod p``),
  so ``L_sum`` is ``L_a`` written in the coordinates ``(a+b, a-b)`` and has the eigenvalue
  ``2 - 2 cos(2 pi k / p)`` on the sum family's pair k. With ``diagonal="lattice"`` the
  neighbours are lattice neighbours ``(a, b) ~ (a + 1, b + 1)``, and the sum family's pair k
  gets ``2 - 2 cos(4 pi k / p)`` (the same eigenvectors, other order).

Rotation

- :func:`rayleigh_ritz_rotate` ``(U, L)``: orthonormalize ``U``, diagonalize ``Q^T L Q``, rotate;
  columns sorted from smoothest to roughest.
- :func:`two_stage_rotation` ``(U, L1, L2, n_second)``: rotate by ``L1``; take the
  ``n_second`` smoothest directions (default half) and rotate them by ``L2``. For the first cliff
  (``L_a`` then ``L_b``) the smooth half is the b family (null under ``L_a``) and stage two
  splits it into b pairs; the rough half is already split into a pairs by ``L_a``.

Graphs learned from a kernel (the paper's footnote 7): :func:`knn_graph` (k nearest rows of a
kernel by cosine similarity), :func:`graph_laplacian`, :func:`restrict_to_lines` with
:func:`line_labels` (the edges of a graph that run along one torus direction, for the two
stages), and the null model :func:`degree_preserving_shuffle` (a random graph with exactly the
same degrees, optionally along the same lines).

Scoring: :func:`pair_match` matches rotated directions to (cos, sin) pairs one-to-one.

Example::

    from entk_lib.laplacian import torus_laplacians, two_stage_rotation, pair_match
    from entk_lib.features import fourier_family
    lap = torus_laplacians(29)
    rot = two_stage_rotation(U, lap["a"], lap["b"])         # U: (841, 56) first-cliff vectors
    pairs = np.hstack([fourier_family(29, "a"), fourier_family(29, "b")])
    print(pair_match(rot.vectors, pairs).mean)               # 1.0 when one-to-one
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment

from .alignment import orthonormal_basis, pair_projection
from .features import fourier_family, modular_pairs
from .linalg import fix_signs
from .params import check_choice, check_int, check_real

__all__ = [
    "LAPLACIAN_PAIRS",
    "PairMatch",
    "TwoStageRotation",
    "cyclic_laplacian",
    "degree_preserving_shuffle",
    "fourier_laplacian_values",
    "graph_laplacian",
    "knn_graph",
    "laplacian_pair",
    "line_labels",
    "pair_families",
    "pair_match",
    "rayleigh_ritz_rotate",
    "restrict_to_lines",
    "torus_laplacians",
    "two_stage_rotation",
]

#: The two Laplacian pairs of Appendices C and D: name -> (first-stage, second-stage) keys of
#: :func:`torus_laplacians`, and the Fourier families they separate (smooth half first).
LAPLACIAN_PAIRS = {
    "axis": {"laplacians": ("a", "b"), "families": ("a", "b")},
    "diagonal": {"laplacians": ("sum", "diff"), "families": ("sum", "diff")},
}
DIAGONAL_MODES = ("coordinate", "lattice")


# ------------------------------------------------------------------------------------------
# Laplacians
# ------------------------------------------------------------------------------------------


def cyclic_laplacian(p: int) -> np.ndarray:
    """The p x p cyclic second-difference matrix ``L_p`` (dense).

    ``L_p[i, i] = 2``, ``L_p[i, i +- 1 mod p] = -1``. Symmetric positive semi-definite, null space
    the constant vector, eigenvalues ``2 - 2 cos(2 pi k / p)`` for ``k = 0 .. p-1``.

    Parameters
    ----------
    p : int
        Cycle length, at least 3.

    Returns
    -------
    ndarray (p, p)
    """
    p = check_int("p", p, minimum=3)
    shift = np.roll(np.eye(p), 1, axis=1)
    return 2.0 * np.eye(p) - shift - shift.T


def _shift_laplacian(p: int, step_a: int, step_b: int) -> sp.csr_array:
    """Laplacian of the graph joining ``(a, b)`` to ``(a + step_a, b + step_b) mod p``: a
    disjoint union of p-cycles when the step has order p (p odd), ``2 I - S - S^T``."""
    n = p * p
    a, b = np.divmod(np.arange(n), p)
    target = ((a + step_a) % p) * p + (b + step_b) % p
    shift = sp.csr_array((np.ones(n), (np.arange(n), target)), shape=(n, n))
    return (2.0 * sp.eye_array(n, format="csr") - shift - shift.T).tocsr()


def torus_laplacians(p: int, *, diagonal: str = "coordinate") -> dict[str, sp.csr_array]:
    """Torus Laplacians over the p^2 inputs (index ``a * p + b``): keys ``a``, ``b``, ``sum``, ``diff``.

    Parameters
    ----------
    p : int
        Modulus, odd and at least 3 (so that 2 is invertible mod p).
    diagonal : {"coordinate", "lattice"}
        Neighbours of the diagonal Laplacians: one step in the sum / difference coordinate
        (``(a, b) ~ (a + h, b +- h)``, ``h = (p+1)/2``; default) or lattice neighbours
        (``(a, b) ~ (a + 1, b +- 1)``). See the module docstring.

    Returns
    -------
    dict of scipy.sparse.csr_array (p^2, p^2)
        ``a = L_p (x) I_p`` (null on functions of b), ``b = I_p (x) L_p`` (null on functions of a),
        ``sum`` (null on functions of a - b), ``diff`` (null on functions of a + b). Each is
        symmetric PSD with a null space of dimension p.
    """
    p = check_int("p", p, minimum=3)
    if p % 2 == 0:
        raise ValueError(f"`p` must be odd (2 must be invertible mod p), got {p}")
    check_choice("diagonal", diagonal, DIAGONAL_MODES)
    h = (p + 1) // 2 if diagonal == "coordinate" else 1
    return {"a": _shift_laplacian(p, 1, 0), "b": _shift_laplacian(p, 0, 1),
            "sum": _shift_laplacian(p, h, h), "diff": _shift_laplacian(p, h, -h)}


def laplacian_pair(p: int, pair: str = "axis", *, diagonal: str = "coordinate"):
    """The (first-stage, second-stage) Laplacians of a named pair: ``axis`` -> ``(L_a, L_b)``
    (first cliff, Appendix C), ``diagonal`` -> ``(L_sum, L_diff)`` (second cliff, Appendix D)."""
    check_choice("pair", pair, tuple(LAPLACIAN_PAIRS))
    lap = torus_laplacians(p, diagonal=diagonal)
    first, second = LAPLACIAN_PAIRS[pair]["laplacians"]
    return lap[first], lap[second]


def pair_families(p: int, pair: str = "axis") -> tuple[np.ndarray, list[str]]:
    """The (cos, sin) pairs that a Laplacian pair should recover, and their labels.

    Returns
    -------
    pairs : ndarray (p^2, 2 (p-1))
        Columns ``[cos, sin]`` per frequency, first family then second (e.g. a then b).
    labels : list of str, length p-1
        ``"a1", "a2", ..., "b1", ...`` (family name and frequency k).
    """
    check_choice("pair", pair, tuple(LAPLACIAN_PAIRS))
    fams = LAPLACIAN_PAIRS[pair]["families"]
    nf = (p - 1) // 2
    cols = np.hstack([fourier_family(p, f) for f in fams])
    return cols, [f"{f}{k}" for f in fams for k in range(1, nf + 1)]


def fourier_laplacian_values(laplacian, pairs) -> np.ndarray:
    """Rayleigh quotient of each (cos, sin) pair under a Laplacian: (n_pairs,).

    For a torus Laplacian and a pure Fourier pair both columns are eigenvectors with the same
    eigenvalue, so the value is that eigenvalue (the mean of the two quotients is returned).
    """
    q = _as_array(pairs)
    lq = _apply(laplacian, q)
    quot = np.sum(q * lq, axis=0) / np.sum(q * q, axis=0)
    return quot.reshape(-1, 2).mean(axis=1)


# ------------------------------------------------------------------------------------------
# Rayleigh-Ritz rotation
# ------------------------------------------------------------------------------------------


class TwoStageRotation(NamedTuple):
    """Result of :func:`two_stage_rotation`.

    Attributes
    ----------
    vectors : ndarray (n, d)
        Orthonormal rotated directions: the ``n_second`` stage-two directions (smoothest under
        ``L2`` first), then the remaining ``d - n_second`` stage-one directions (smoothest under
        ``L1`` first).
    values : ndarray (d,)
        Each column's Rayleigh quotient under the Laplacian that fixed it (``L2`` for stage two,
        ``L1`` for stage one).
    stage : ndarray (d,) of int
        2 for the stage-two columns, 1 for the others.
    first_values : ndarray (d,)
        All Ritz values of stage one (eigenvalues of ``Q^T L1 Q``, ascending): the "compressed
        spectrum" of ``L1`` on the span.
    """

    vectors: np.ndarray
    values: np.ndarray
    stage: np.ndarray
    first_values: np.ndarray


def rayleigh_ritz_rotate(vectors, laplacian) -> tuple[np.ndarray, np.ndarray]:
    """Rotate a subspace into the basis that diagonalizes a Laplacian restricted to it.

    Orthonormalize the columns of ``vectors`` (``Q``, by SVD), eigendecompose the compressed
    matrix ``Q^T L Q``, and return ``Q W`` with the Ritz values ascending (smoothest first). Each
    column's sign is fixed so that its largest-magnitude entry is positive.

    Parameters
    ----------
    vectors : array or tensor (n, d)
        Spanning vectors (e.g. a cliff's eigenvectors); need not be orthonormal. Directions
        whose singular value is below ``1e-10`` times the largest are dropped.
    laplacian : ndarray, scipy sparse matrix or LinearOperator (n, n)
        Symmetric; anything that supports ``laplacian @ matrix``.

    Returns
    -------
    rotated : ndarray (n, r)
        Orthonormal, spanning the same subspace, ``r`` the numerical rank.
    values : ndarray (r,)
        Ritz values ``rotated[:, i]^T L rotated[:, i]``, ascending.
    """
    q = orthonormal_basis(_as_array(vectors))
    if q.shape[0] != laplacian.shape[0]:
        raise ValueError(f"`vectors` have {q.shape[0]} rows but `laplacian` is {laplacian.shape}")
    compressed = q.T @ _apply(laplacian, q)
    values, rot = np.linalg.eigh((compressed + compressed.T) / 2)
    return fix_signs(q @ rot), values


def two_stage_rotation(vectors, laplacian_1, laplacian_2, n_second: int | None = None) -> TwoStageRotation:
    """The paper's two-stage rotation (Appendix C): rotate by ``L1``, then the smoothest
    ``n_second`` directions by ``L2``.

    Parameters
    ----------
    vectors : array or tensor (n, d)
        The cliff's eigenvectors (any basis of the span).
    laplacian_1, laplacian_2 : (n, n)
        First- and second-stage Laplacians (e.g. ``L_a`` and ``L_b``, or ``L_sum`` and ``L_diff``).
    n_second : int, optional
        Directions passed to stage two, in ``[1, d]``; default ``d // 2`` (the paper). The
        paper's footnote-11 variant is ``d // 2 + 4``.

    Returns
    -------
    TwoStageRotation
    """
    first, first_values = rayleigh_ritz_rotate(vectors, laplacian_1)
    d = first.shape[1]
    n_second = d // 2 if n_second is None else check_int("n_second", n_second, minimum=1, maximum=d)
    second, second_values = rayleigh_ritz_rotate(first[:, :n_second], laplacian_2)
    out = np.hstack([second, first[:, n_second:]])
    values = np.concatenate([second_values, first_values[n_second:]])
    stage = np.concatenate([np.full(second.shape[1], 2), np.full(d - n_second, 1)])
    return TwoStageRotation(out, values, stage, first_values)


# ------------------------------------------------------------------------------------------
# Learned and random graphs
# ------------------------------------------------------------------------------------------


def knn_graph(kernel, k: int, *, seed: int = 0) -> sp.csr_array:
    """Symmetric k-nearest-neighbour graph on the rows of a kernel (cosine similarity).

    Inputs i and j are joined when j is among the ``k`` rows most similar to row i (excluding
    i itself) or i among those of j. Exact ties are broken in a seeded random order, not by
    index, so that the input ordering (which is the hand-made torus order) cannot leak into
    the learned graph.

    Parameters
    ----------
    kernel : array or tensor (n, n)
        Rows are the inputs' descriptors (e.g. an eNTK over all inputs).
    k : int
        Neighbours per input, in ``[1, n - 1]``.
    seed : int
        Seeds the tie-breaking order.

    Returns
    -------
    scipy.sparse.csr_array (n, n)
        0/1 adjacency, symmetric, zero diagonal; every degree is at least ``k``.
    """
    rows = _as_array(kernel)
    n = rows.shape[0]
    k = check_int("k", k, minimum=1, maximum=n - 1)
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-300)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    perm = np.random.default_rng(seed).permutation(n)
    nbrs = perm[np.argsort(-sim[:, perm], axis=1, kind="stable")[:, :k]]
    adj = sp.csr_array((np.ones(n * k), (np.repeat(np.arange(n), k), nbrs.ravel())), shape=(n, n))
    return sp.csr_array(((adj + adj.T) > 0).astype(float))


def restrict_to_lines(adjacency, labels) -> sp.csr_array:
    """Keep only the edges whose two ends carry the same label (e.g. the same ``b``: edges
    along the a direction), for the per-direction stages of a learned graph.

    Parameters
    ----------
    adjacency : (n, n) matrix
    labels : (n,) int array, the line each vertex lies on.
    """
    w = sp.coo_array(adjacency)
    labels = np.asarray(labels)
    if labels.shape != (w.shape[0],):
        raise ValueError(f"`labels` must have shape ({w.shape[0]},), got {labels.shape}")
    keep = labels[w.row] == labels[w.col]
    return sp.csr_array((w.data[keep], (w.row[keep], w.col[keep])), shape=w.shape)


def line_labels(p: int) -> dict[str, np.ndarray]:
    """For each torus Laplacian, the coordinate that is constant along its edges (p^2,):
    ``a`` -> b, ``b`` -> a, ``sum`` -> (a - b) mod p, ``diff`` -> (a + b) mod p."""
    a, b = modular_pairs(p)
    return {"a": b, "b": a, "sum": (a - b) % p, "diff": (a + b) % p}


def graph_laplacian(adjacency, *, normalized: bool = False) -> sp.csr_array:
    """``L = D - W`` (or ``I - D^-1/2 W D^-1/2`` if ``normalized``) of a symmetric adjacency."""
    w = sp.csr_array(adjacency, dtype=float)
    if w.shape[0] != w.shape[1] or abs(w - w.T).sum() > 1e-12 * max(1.0, abs(w).sum()):
        raise ValueError(f"`adjacency` must be a symmetric square matrix, got shape {w.shape}")
    deg = np.asarray(w.sum(axis=1)).ravel()
    if not normalized:
        return (sp.diags_array(deg) - w).tocsr()
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-300)), 0.0)
    return (sp.eye_array(w.shape[0]) - sp.diags_array(inv) @ w @ sp.diags_array(inv)).tocsr()


def degree_preserving_shuffle(adjacency, *, groups=None, swaps_per_edge: float = 10.0,
                              seed: int | np.random.Generator = 0) -> sp.csr_array:
    """A random simple graph with exactly the same degree sequence (double-edge swaps).

    Repeatedly pick two edges ``(u, v)``, ``(x, y)`` and rewire them to ``(u, y)``, ``(x, v)``
    unless that would create a self-loop or a duplicate edge. ``swaps_per_edge`` times the edge
    count swaps are attempted: the standard null model for "a graph with the same degrees".

    Parameters
    ----------
    adjacency : (n, n) symmetric 0/1 matrix, zero diagonal
    groups : (n,) int array, optional
        Vertex labels (e.g. :func:`line_labels`). If given, every edge must join two vertices
        of the same group, and the shuffle is done within each group separately, so the result
        keeps every vertex's degree *and* every edge inside its group (a random graph along
        the same lines).
    swaps_per_edge : float
        Attempted swaps per edge (> 0).
    seed : int or numpy Generator

    Returns
    -------
    scipy.sparse.csr_array (n, n): symmetric 0/1 adjacency with the same degrees.
    """
    swaps_per_edge = check_real("swaps_per_edge", swaps_per_edge, low=0.0, low_inclusive=False)
    w = sp.triu(sp.csr_array(adjacency), k=1).tocoo()
    edges = np.stack([w.row, w.col], axis=1).astype(np.int64)
    rng = np.random.default_rng(seed)
    n = adjacency.shape[0]
    if groups is None:
        new_edges = _swap_edges(edges, swaps_per_edge, rng)
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,) or np.any(groups[edges[:, 0]] != groups[edges[:, 1]]):
            raise ValueError("`groups` must label every vertex, and every edge must join two "
                             "vertices of the same group")
        g = groups[edges[:, 0]]
        new_edges = np.concatenate([_swap_edges(edges[g == label], swaps_per_edge, rng)
                                    for label in np.unique(g)] or [edges])
    adj = sp.csr_array((np.ones(len(new_edges)), (new_edges[:, 0], new_edges[:, 1])), shape=(n, n))
    return sp.csr_array(adj + adj.T)


def _swap_edges(edges: np.ndarray, swaps_per_edge: float, rng: np.random.Generator) -> np.ndarray:
    """Double-edge swaps on an (m, 2) array of edges ``u < v``; returns the new (m, 2) edges."""
    edges = edges.copy()
    m = len(edges)
    if m < 2:
        return edges
    present = {(int(u), int(v)) for u, v in edges}
    tries = int(swaps_per_edge * m)
    picks, flips = rng.integers(0, m, size=(tries, 2)), rng.integers(0, 2, size=tries)
    for (i, j), flip in zip(picks, flips, strict=True):
        if i == j:
            continue
        u, v = (int(t) for t in edges[i])
        x, y = (int(t) for t in (edges[j] if flip else edges[j][::-1]))
        new1, new2 = (min(u, y), max(u, y)), (min(x, v), max(x, v))
        if u == y or x == v or new1 == new2 or new1 in present or new2 in present:
            continue
        present -= {(min(u, v), max(u, v)), (min(x, y), max(x, y))}
        present |= {new1, new2}
        edges[i], edges[j] = new1, new2
    return edges


# ------------------------------------------------------------------------------------------
# One-to-one scoring
# ------------------------------------------------------------------------------------------


class PairMatch(NamedTuple):
    """One-to-one match of directions to (cos, sin) pairs (:func:`pair_match`).

    Attributes
    ----------
    mean : float
        Mean over directions of the squared projection on the assigned pair (1 = one-to-one).
    n_above : int
        Directions whose assigned pair holds more than ``threshold`` of their squared norm.
    assignment : ndarray (d,) of int
        Pair index assigned to each direction (-1 if none: more directions than 2 * pairs).
    scores : ndarray (d,)
        Squared projection of each direction on its assigned pair (0 if none).
    projection : ndarray (d, n_pairs)
        All squared projections (:func:`entk_lib.alignment.pair_projection`).
    """

    mean: float
    n_above: int
    assignment: np.ndarray
    scores: np.ndarray
    projection: np.ndarray


def pair_match(vectors, pairs, *, threshold: float = 0.9) -> PairMatch:
    """Hungarian one-to-one match of directions to 2-D Fourier pairs, each pair taking two.

    A (cos, sin) pair is a 2-D space, so it can host two orthogonal directions (any phases);
    the matching therefore gives every pair two slots and maximizes the total squared
    projection. One-to-one recovery (each direction inside one pair, two per pair) gives
    ``mean = 1`` and ``n_above = d``; a basis spread over many pairs scores low.

    Parameters
    ----------
    vectors : (n, d) directions (normalized internally).
    pairs : (n, 2 n_pairs), columns ``[cos_1, sin_1, cos_2, sin_2, ...]``.
    threshold : float
        In ``(0, 1)``: the score a direction needs to count in ``n_above``.
    """
    threshold = check_real("threshold", threshold, low=0.0, high=1.0, low_inclusive=False,
                           high_inclusive=False)
    proj = pair_projection(_as_array(vectors), _as_array(pairs))
    d, n_pairs = proj.shape
    slots = np.repeat(proj, 2, axis=1)  # two slots per pair
    rows, cols = linear_sum_assignment(slots, maximize=True)
    assignment = np.full(d, -1)
    assignment[rows] = cols // 2
    scores = np.zeros(d)
    scores[rows] = slots[rows, cols]
    return PairMatch(float(scores.mean()), int(np.sum(scores > threshold)), assignment, scores, proj)


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def _as_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=float)
    return x[:, None] if x.ndim == 1 else x


def _apply(laplacian, q: np.ndarray) -> np.ndarray:
    if isinstance(laplacian, torch.Tensor):
        laplacian = laplacian.detach().cpu().double().numpy()
    return np.asarray(laplacian @ q)

