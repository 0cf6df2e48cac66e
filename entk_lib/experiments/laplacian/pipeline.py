"""The Laplacian-rotation chapter's pipeline: the cached modular-addition run of each seed
(:func:`entk_lib.models.modular.train_modular`), the rotation of its two cliff windows and the
controls (:func:`analyze_seed`, :func:`analyze_cliff`, :func:`learned_graph_scores`), and the
summary over seeds (:func:`summarize`)."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ...alignment import random_orthonormal, subspace_overlap
from ...features import cliff_windows, fourier_family
from ...kernel import entk, entk_by_layer
from ...laplacian import (
    LAPLACIAN_PAIRS,
    degree_preserving_shuffle,
    fourier_laplacian_values,
    graph_laplacian,
    knn_graph,
    line_labels,
    pair_families,
    pair_match,
    rayleigh_ritz_rotate,
    restrict_to_lines,
    torus_laplacians,
    two_stage_rotation,
)
from ...models.modular import train_modular
from ...spectrum import top_eigenpairs
from .params import CLIFFS, LaplacianParams

__all__ = ["analyze_cliff", "analyze_seed", "learned_graph_scores", "run_all", "summarize"]


def _window(kernel: torch.Tensor, sl: slice) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (d,) and eigenvectors (N, d) of ``kernel`` (N, N) at the window ``sl``
    (0-based, descending)."""
    values, vectors = top_eigenpairs(kernel.double(), sl.stop)
    return np.asarray(values[sl]), np.asarray(vectors[:, sl])


def _pair_laplacians(params: LaplacianParams, pair: str):
    """The two torus Laplacians (p^2, p^2) of ``pair``, stage one's first."""
    lap = torus_laplacians(params.p, diagonal=params.diagonal)
    return tuple(lap[k] for k in LAPLACIAN_PAIRS[pair]["laplacians"])


def _families_overlap(u: np.ndarray, p: int, pair: str) -> float:
    """Overlap of span(u) (u: (p^2, d)) with the union of the pair's two families (they are
    orthogonal), in [0, 2(p-1)]."""
    return sum(subspace_overlap(u, fourier_family(p, f)) for f in LAPLACIAN_PAIRS[pair]["families"])


def _score(vectors: np.ndarray, pairs: np.ndarray, threshold: float) -> dict:
    """:func:`entk_lib.laplacian.pair_match` of ``vectors`` (N, d) as a dict: ``mean``,
    ``n_above``, ``projection`` (d, pairs) and ``assignment`` (d,)."""
    m = pair_match(vectors, pairs, threshold=threshold)
    return {"mean": m.mean, "n_above": m.n_above, "projection": m.projection, "assignment": m.assignment}


def learned_graph_scores(u: np.ndarray, rows: np.ndarray, params: LaplacianParams, pair: str,
                         seed: int) -> dict:
    """One-to-one scores of the two-stage rotation of ``u`` (N, d) with a graph learned from
    kernel ``rows`` (N, N).

    The kNN graph ``G`` on ``rows`` is split into the edges that run along the pair's first
    and second direction (:func:`restrict_to_lines`); their Laplacians replace the torus
    Laplacians in the two stages. ``single`` rotates once by the whole of ``G``'s Laplacian (no
    knowledge of the directions). ``random`` repeats the two stages with ``random_graphs``
    degree-preserving shuffles of each direction's graph within its lines.

    Returns ``learned``, ``single`` (scores), ``random_mean`` and ``random_above`` (arrays
    (random_graphs,)), ``knn_sweep`` (k -> matched mean of the two-stage rotation with the
    learned graph for each k in ``knn_sweep``) and ``edge_fractions`` (the share of ``G``'s
    edges along each torus direction).
    """
    pairs, _ = pair_families(params.p, pair)
    n1, n2 = LAPLACIAN_PAIRS[pair]["laplacians"]
    labels = line_labels(params.p)
    g = knn_graph(rows, params.knn_k, seed=seed)
    g1, g2 = restrict_to_lines(g, labels[n1]), restrict_to_lines(g, labels[n2])
    thr, half = params.match_threshold, params.half
    learned = two_stage_rotation(u, graph_laplacian(g1), graph_laplacian(g2), half)
    single, _ = rayleigh_ritz_rotate(u, graph_laplacian(g))
    rng = np.random.default_rng(1000 + seed)
    rand = []
    for _ in range(params.random_graphs):
        r1 = degree_preserving_shuffle(g1, groups=labels[n1], seed=rng)
        r2 = degree_preserving_shuffle(g2, groups=labels[n2], seed=rng)
        m = pair_match(two_stage_rotation(u, graph_laplacian(r1), graph_laplacian(r2), half).vectors,
                       pairs, threshold=thr)
        rand.append((m.mean, m.n_above))
    n_edges = max(g.nnz, 1)
    sweep = {}
    for k in params.knn_sweep:
        gk = knn_graph(rows, k, seed=seed)
        rk = two_stage_rotation(u, graph_laplacian(restrict_to_lines(gk, labels[n1])),
                                graph_laplacian(restrict_to_lines(gk, labels[n2])), half)
        sweep[k] = pair_match(rk.vectors, pairs, threshold=thr).mean
    return {"learned": _score(learned.vectors, pairs, thr), "single": _score(single, pairs, thr),
            "knn_sweep": sweep,
            "random_mean": np.array([r[0] for r in rand]), "random_above": np.array([r[1] for r in rand]),
            "edge_fractions": {k: float(restrict_to_lines(g, v).nnz / n_edges) for k, v in labels.items()}}


def analyze_cliff(u: np.ndarray, values: np.ndarray, params: LaplacianParams, cliff: str,
                  kernel_rows: np.ndarray | None = None, seed: int = 0) -> dict:
    """Everything the chapter reports for one cliff window ``u`` (N, d) with eigenvalues
    ``values`` (d,): the scores ``before`` and ``after`` the two-stage rotation and with the
    ``variant`` (stage two ``half + n_extra``), the ``sweep`` over ``extra_sweep``, the span's
    ``ceiling``, stage one's Ritz values (``ritz``, ``ritz_random``) against the ``pure`` Fourier
    values, and the learned-graph scores (``graphs``).

    ``kernel_rows``: the rows (N, N) the learned graph is built from (None: the window's own
    kernel ``u diag(values) u^T``, i.e. ``graph_rows = "cliff"``).
    """
    p, thr, half = params.p, params.match_threshold, params.half
    pair = params.pair_of(cliff)
    pairs, labels = pair_families(p, pair)
    l1, l2 = _pair_laplacians(params, pair)
    rot = two_stage_rotation(u, l1, l2, half)
    variant = two_stage_rotation(u, l1, l2, half + params.n_extra)
    sweep = {e: pair_match(two_stage_rotation(u, l1, l2, half + e).vectors, pairs, threshold=thr)
             for e in params.extra_sweep}
    fams = LAPLACIAN_PAIRS[pair]["families"]
    pure = np.sort(np.concatenate([np.repeat(fourier_laplacian_values(l1, fourier_family(p, f)), 2)
                                   for f in fams]))
    rand_q = random_orthonormal(p * p, u.shape[1], rng=seed)
    rows = (u * values) @ u.T if kernel_rows is None else kernel_rows
    return {
        "pair": pair, "labels": labels, "values": values,
        "before": _score(u, pairs, thr), "after": _score(rot.vectors, pairs, thr),
        "variant": _score(variant.vectors, pairs, thr),
        "sweep": {e: (m.mean, m.n_above) for e, m in sweep.items()},
        "ceiling": _families_overlap(u, p, pair) / u.shape[1],
        "ritz": rot.first_values, "pure": pure,
        "ritz_random": rayleigh_ritz_rotate(rand_q, l1)[1],
        "graphs": learned_graph_scores(u, rows, params, pair, seed),
    }


def analyze_seed(params: LaplacianParams, seed: int) -> dict:
    """Both cliffs of one seed's trained network (``first``, ``second``: :func:`analyze_cliff`),
    and the first cliff at initialization (``init``: scores before and after the rotation)."""
    run = train_modular(params.setup, seed)
    model, x = run.model_at(), run.inputs
    kernels = entk_by_layer(model, x, collapse="class_mean")
    total = kernels["fc1"] + kernels["fc2"]
    windows = cliff_windows(params.p)
    first_kernel = kernels["fc1"] if params.first_kernel == "fc1" else total
    layers = ["fc1"] if params.first_kernel == "fc1" else None
    init_kernel = entk(run.model_at(0), x, collapse="class_mean", layers=layers)
    out = {"seed": seed}
    for cliff, kern in (("first", first_kernel), ("second", total)):
        vals, u = _window(kern, windows[cliff])
        rows = kern.double().numpy() if params.graph_rows == "kernel" else None
        out[cliff] = analyze_cliff(u, vals, params, cliff, rows, seed)
    u0 = _window(init_kernel, windows["first"])[1]
    pairs, _ = pair_families(params.p, params.first_pair)
    rot0 = two_stage_rotation(u0, *_pair_laplacians(params, params.first_pair), params.half)
    out["init"] = {"before": _score(u0, pairs, params.match_threshold),
                   "after": _score(rot0.vectors, pairs, params.match_threshold)}
    return out


def run_all(params: LaplacianParams, progress: bool = True) -> list[dict]:
    """:func:`analyze_seed` for every seed."""
    return [analyze_seed(params, s) for s in tqdm(params.seeds, desc="seeds", disable=not progress)]


def _cliff_summary(rs: list[dict], params: LaplacianParams) -> dict:
    """Per-seed arrays (seeds,) of one cliff's numbers; ``sweep`` and ``knn_sweep`` map each
    value of the sweep to such an array, ``edge_fractions`` each line family."""
    s = {k: np.array([r[k]["mean"] for r in rs]) for k in ("before", "after", "variant")}
    s |= {f"{k}_above": np.array([r[k]["n_above"] for r in rs]) for k in ("before", "after", "variant")}
    s["ceiling"] = np.array([r["ceiling"] for r in rs])
    s["ritz_dev"] = np.array([np.max(np.abs(r["ritz"] - r["pure"])) for r in rs])
    s["ritz_dev_random"] = np.array([np.max(np.abs(r["ritz_random"] - r["pure"])) for r in rs])
    s["sweep"] = {e: np.array([r["sweep"][e] for r in rs]) for e in params.extra_sweep}
    g = [r["graphs"] for r in rs]
    s["learned"] = np.array([x["learned"]["mean"] for x in g])
    s["learned_above"] = np.array([x["learned"]["n_above"] for x in g])
    s["single"] = np.array([x["single"]["mean"] for x in g])
    s["random"] = np.array([x["random_mean"].mean() for x in g])
    s["random_max"] = np.array([x["random_mean"].max() for x in g])
    s["random_above"] = np.array([x["random_above"].mean() for x in g])
    s["knn_sweep"] = {k: np.array([x["knn_sweep"][k] for x in g]) for k in params.knn_sweep}
    s["edge_fractions"] = {k: np.array([x["edge_fractions"][k] for x in g]) for k in line_labels(3)}
    return s


def summarize(results: list[dict], params: LaplacianParams) -> dict:
    """Per-seed arrays (one entry per seed) of every number the tables report: ``d``, one dict
    per cliff (:func:`_cliff_summary`) and ``init``."""
    out: dict = {"d": params.window}
    for c in CLIFFS:
        out[c] = _cliff_summary([r[c] for r in results], params)
    out["init"] = {k: np.array([r["init"][k]["mean"] for r in results]) for k in ("before", "after")}
    out["init"] |= {f"{k}_above": np.array([r["init"][k]["n_above"] for r in results])
                    for k in ("before", "after")}
    return out
