"""Torus Laplacians, Rayleigh-Ritz rotation, the two-stage rotation on planted Fourier bases,
learned and random graphs, and the one-to-one pair score."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from entk_lib import laplacian as lp
from entk_lib.alignment import random_orthonormal
from entk_lib.features import fourier_family, modular_pairs


def _dense(m) -> np.ndarray:
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def _normalized(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=0, keepdims=True)


# ---------------------------------------------------------------------------- Laplacians


@pytest.mark.parametrize("p", [3, 7, 10])
def test_cyclic_laplacian_structure_and_spectrum(p):
    L = lp.cyclic_laplacian(p)
    np.testing.assert_array_equal(np.diag(L), 2.0)
    assert L[0, -1] == L[-1, 0] == L[0, 1] == -1.0
    np.testing.assert_allclose(L, L.T)
    np.testing.assert_allclose(L.sum(axis=1), 0.0)
    expected = np.sort(2 - 2 * np.cos(2 * np.pi * np.arange(p) / p))
    np.testing.assert_allclose(np.linalg.eigvalsh(L), expected, atol=1e-12)


@pytest.mark.parametrize("diagonal", ["coordinate", "lattice"])
def test_torus_laplacians_symmetric_psd_with_expected_null_spaces(diagonal):
    p = 7
    lap = {k: _dense(v) for k, v in lp.torus_laplacians(p, diagonal=diagonal).items()}
    a, b = modular_pairs(p)
    # functions that each Laplacian must annihilate: indicators of one coordinate's level sets
    null_coord = {"a": b, "b": a, "sum": (a - b) % p, "diff": (a + b) % p}
    for name, L in lap.items():
        np.testing.assert_allclose(L, L.T, err_msg=name)
        vals = np.linalg.eigvalsh(L)
        assert vals.min() > -1e-12, name
        assert np.sum(np.abs(vals) < 1e-10) == p, name  # null space dimension p
        indicators = np.stack([(null_coord[name] == c).astype(float) for c in range(p)], axis=1)
        np.testing.assert_allclose(L @ indicators, 0.0, atol=1e-12, err_msg=name)


def test_axis_laplacians_are_kronecker_products():
    p = 5
    lap = lp.torus_laplacians(p)
    Lp, I = lp.cyclic_laplacian(p), np.eye(p)
    np.testing.assert_allclose(_dense(lap["a"]), np.kron(Lp, I))
    np.testing.assert_allclose(_dense(lap["b"]), np.kron(I, Lp))


@pytest.mark.parametrize("diagonal, factor", [("coordinate", 1), ("lattice", 2)])
def test_fourier_modes_are_eigenvectors_with_closed_form_values(diagonal, factor):
    p = 11
    lap = lp.torus_laplacians(p, diagonal=diagonal)
    ks = np.arange(1, (p - 1) // 2 + 1)
    smooth = 2 - 2 * np.cos(2 * np.pi * ks / p)
    for name in ("a", "b"):
        fam = fourier_family(p, name)
        np.testing.assert_allclose(lap[name] @ fam, fam * np.repeat(smooth, 2), atol=1e-12)
    diag = 2 - 2 * np.cos(2 * np.pi * factor * ks / p)
    for name, null in (("sum", "diff"), ("diff", "sum")):
        fam = fourier_family(p, name)
        np.testing.assert_allclose(lap[name] @ fam, fam * np.repeat(diag, 2), atol=1e-12)
        np.testing.assert_allclose(lap[name] @ fourier_family(p, null), 0.0, atol=1e-12)
        np.testing.assert_allclose(lp.fourier_laplacian_values(lap[name], fam), diag, atol=1e-12)


def test_laplacian_errors_name_the_parameter():
    with pytest.raises(ValueError, match="`p`"):
        lp.cyclic_laplacian(2)
    with pytest.raises(ValueError, match="`p` must be odd"):
        lp.torus_laplacians(8)
    with pytest.raises(ValueError, match="`diagonal`"):
        lp.torus_laplacians(7, diagonal="both")
    with pytest.raises(ValueError, match="`pair`"):
        lp.laplacian_pair(7, "sumdiff")


# ---------------------------------------------------------------------------- rotation


def test_rayleigh_ritz_keeps_the_span_and_diagonalizes():
    rng = np.random.default_rng(0)
    L = lp.torus_laplacians(7)["a"]
    u = rng.standard_normal((49, 6))
    rot, vals = lp.rayleigh_ritz_rotate(torch.tensor(u), L)
    np.testing.assert_allclose(rot.T @ rot, np.eye(6), atol=1e-12)
    q = np.linalg.qr(u)[0]
    np.testing.assert_allclose(rot @ rot.T, q @ q.T, atol=1e-12)  # same subspace
    compressed = rot.T @ (L @ rot)
    np.testing.assert_allclose(compressed, np.diag(vals), atol=1e-12)
    assert np.all(np.diff(vals) >= -1e-12)
    np.testing.assert_allclose(vals, np.linalg.eigvalsh(q.T @ (L @ q)), atol=1e-12)
    with pytest.raises(ValueError, match="rows"):
        lp.rayleigh_ritz_rotate(u[:10], L)


def test_rayleigh_ritz_on_the_whole_space_gives_the_spectrum():
    L = lp.cyclic_laplacian(9)
    _, vals = lp.rayleigh_ritz_rotate(np.eye(9), L)
    np.testing.assert_allclose(vals, np.linalg.eigvalsh(L), atol=1e-12)


@pytest.mark.parametrize("pair", ["axis", "diagonal"])
@pytest.mark.parametrize("p", [11, 29])
def test_planted_two_stage_rotation_recovers_the_families(pair, p):
    """Exact Fourier pairs mixed by a random orthogonal matrix are recovered to 1e-8."""
    pairs, labels = lp.pair_families(p, pair)
    d = pairs.shape[1]
    mixed = _normalized(pairs) @ random_orthonormal(d, d, rng=p)
    before = lp.pair_match(mixed, pairs)
    assert before.mean < 0.5  # the mixed basis is not one-to-one
    L1, L2 = lp.laplacian_pair(p, pair)
    rot = lp.two_stage_rotation(mixed, L1, L2)
    after = lp.pair_match(rot.vectors, pairs)
    assert after.mean == pytest.approx(1.0, abs=1e-8)
    assert after.scores.min() > 1 - 1e-8
    assert after.n_above == d
    np.testing.assert_array_equal(np.bincount(after.assignment, minlength=d // 2), 2)
    # as vectors, to 1e-8: each rotated direction minus its projection on its matched pair's plane
    planes = _normalized(pairs).reshape(pairs.shape[0], d // 2, 2)
    for j, pair_index in enumerate(after.assignment):
        v, plane = rot.vectors[:, j], planes[:, pair_index]
        assert np.linalg.norm(v - plane @ (plane.T @ v)) < 1e-8
    nf = (p - 1) // 2
    # stage two holds the second family (null under L1), stage one the first family,
    # each sorted by frequency (coordinate Laplacians: smoothness rises with k)
    np.testing.assert_array_equal(after.assignment[: d // 2], nf + np.repeat(np.arange(nf), 2))
    np.testing.assert_array_equal(after.assignment[d // 2 :], np.repeat(np.arange(nf), 2))
    np.testing.assert_array_equal(rot.stage, np.repeat([2, 1], d // 2))
    assert labels[nf] == ("b1" if pair == "axis" else "diff1")
    np.testing.assert_allclose(rot.first_values[: d // 2], 0.0, atol=1e-12)


def test_planted_footnote_11_variant_mixes_only_the_extra_directions():
    """Bottom half plus 4: the 4 extra directions (a pairs k = 1, 2) are all null under L_b, a
    degenerate 4-dim eigenspace, so stage two may mix the two pairs; everything else stays exact."""
    p = 13
    pairs, _ = lp.pair_families(p, "axis")
    d = pairs.shape[1]
    mixed = _normalized(pairs) @ random_orthonormal(d, d, rng=1)
    rot = lp.two_stage_rotation(mixed, *lp.laplacian_pair(p, "axis"), n_second=d // 2 + 4)
    match = lp.pair_match(rot.vectors, pairs)
    nf = (p - 1) // 2
    np.testing.assert_allclose(rot.values[:4], 0.0, atol=1e-12)
    np.testing.assert_allclose(match.projection[:4, :2].sum(axis=1), 1.0, atol=1e-8)  # in a1 + a2
    assert match.scores[4:].min() > 1 - 1e-8
    assert np.all(match.assignment[4 : d // 2 + 4] >= nf)  # then the b pairs
    np.testing.assert_array_equal(match.assignment[d // 2 + 4 :], np.repeat(np.arange(2, nf), 2))


def test_two_stage_errors():
    pairs, _ = lp.pair_families(7, "axis")
    with pytest.raises(ValueError, match="`n_second`"):
        lp.two_stage_rotation(pairs, *lp.laplacian_pair(7), n_second=pairs.shape[1] + 1)


# ---------------------------------------------------------------------------- scoring


def test_pair_match_known_cases():
    p = 11
    pairs, _ = lp.pair_families(p, "axis")
    q = _normalized(pairs)
    assert lp.pair_match(q, pairs).mean == pytest.approx(1.0)
    # rotating inside one pair changes nothing; mixing two pairs halves the score
    c, s = np.cos(0.4), np.sin(0.4)
    inside = np.stack([c * q[:, 0] + s * q[:, 1], -s * q[:, 0] + c * q[:, 1]], axis=1)
    assert lp.pair_match(inside, pairs).mean == pytest.approx(1.0)
    across = (q[:, [0]] + q[:, [2]]) / np.sqrt(2)
    m = lp.pair_match(across, pairs)
    assert m.mean == pytest.approx(0.5) and m.n_above == 0
    # three directions in one pair: only two slots, so one of them is matched elsewhere
    three = np.stack([q[:, 0], q[:, 1], (q[:, 0] + q[:, 1]) / np.sqrt(2)], axis=1)
    assert np.bincount(lp.pair_match(three, pairs).assignment).max() == 2
    with pytest.raises(ValueError, match="`threshold`"):
        lp.pair_match(q, pairs, threshold=1.0)


# ---------------------------------------------------------------------------- graphs


def test_knn_graph_of_a_smooth_circulant_kernel_is_the_cycle():
    n = 12
    i = np.arange(n)
    dist = np.minimum(np.abs(i[:, None] - i[None, :]), n - np.abs(i[:, None] - i[None, :]))
    kernel = np.exp(-dist / 2.0)
    adj = lp.knn_graph(kernel, 2)
    np.testing.assert_allclose(_dense(lp.graph_laplacian(adj)), lp.cyclic_laplacian(n))
    with pytest.raises(ValueError, match="`k`"):
        lp.knn_graph(kernel, n)


def test_graph_laplacian_properties():
    rng = np.random.default_rng(0)
    w = np.triu((rng.random((20, 20)) < 0.3).astype(float), 1)
    w = w + w.T
    L = _dense(lp.graph_laplacian(w))
    np.testing.assert_allclose(L.sum(axis=1), 0.0, atol=1e-12)
    assert np.linalg.eigvalsh(L).min() > -1e-10
    vals = np.linalg.eigvalsh(_dense(lp.graph_laplacian(w, normalized=True)))
    assert vals.min() > -1e-10 and vals.max() < 2 + 1e-10
    with pytest.raises(ValueError, match="symmetric"):
        lp.graph_laplacian(np.triu(w))


def test_degree_preserving_shuffle_keeps_degrees_and_changes_edges():
    kernel = np.exp(-np.abs(np.subtract.outer(np.arange(60.0), np.arange(60.0))) / 3.0)
    adj = lp.knn_graph(kernel, 4)
    rnd = lp.degree_preserving_shuffle(adj, seed=3)
    dense, rd = _dense(adj), _dense(rnd)
    np.testing.assert_array_equal(rd, rd.T)
    assert np.all(np.diag(rd) == 0) and set(np.unique(rd)) <= {0.0, 1.0}
    np.testing.assert_array_equal(rd.sum(axis=1), dense.sum(axis=1))
    assert np.sum(rd * dense) < 0.5 * dense.sum()  # most edges rewired
    np.testing.assert_array_equal(_dense(lp.degree_preserving_shuffle(adj, seed=3)), rd)
    with pytest.raises(ValueError, match="`swaps_per_edge`"):
        lp.degree_preserving_shuffle(adj, swaps_per_edge=0)


def test_restrict_to_lines_splits_the_torus_graph_into_its_directions():
    p = 7
    lap = lp.torus_laplacians(p)
    labels = lp.line_labels(p)
    for pair in (("a", "b"), ("sum", "diff")):
        adj = -(lap[pair[0]] + lap[pair[1]])  # off-diagonal part: both directions' edges
        adj.setdiag(0)
        adj.eliminate_zeros()
        for name in pair:
            got = lp.graph_laplacian(lp.restrict_to_lines(adj, labels[name]))
            np.testing.assert_allclose(_dense(got), _dense(lap[name]), err_msg=name)
    with pytest.raises(ValueError, match="`labels`"):
        lp.restrict_to_lines(adj, labels["a"][:5])


def test_grouped_shuffle_keeps_degrees_and_lines():
    p = 11
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((p * p, p * p))
    labels = lp.line_labels(p)["a"]
    adj = lp.restrict_to_lines(lp.knn_graph(kernel @ kernel.T, 6), labels)
    rnd = lp.degree_preserving_shuffle(adj, groups=labels, seed=1)
    dense, rd = _dense(adj), _dense(rnd)
    np.testing.assert_array_equal(rd, rd.T)
    np.testing.assert_array_equal(rd.sum(axis=1), dense.sum(axis=1))
    i, j = np.nonzero(rd)
    assert np.all(labels[i] == labels[j])  # every edge stays on its line
    assert np.sum(rd * dense) < dense.sum()
    with pytest.raises(ValueError, match="`groups`"):
        lp.degree_preserving_shuffle(adj, groups=lp.line_labels(p)["b"])


def test_knn_ties_are_broken_without_the_index_order():
    """A kernel with all off-diagonal similarities equal: the neighbours must not be the
    index neighbours (which would leak the torus order into a 'learned' graph)."""
    n = 40
    kernel = np.eye(n) + 0.5
    a1, a2 = _dense(lp.knn_graph(kernel, 2, seed=0)), _dense(lp.knn_graph(kernel, 2, seed=1))
    assert not np.array_equal(a1, a2)
    assert np.sum(np.diag(a1, 1)) < n / 2


# ---------------------------------------------------------------------------- chapter pipeline


@pytest.mark.parametrize("kwargs, name", [
    ({"first_pair": "torus"}, "first_pair"), ({"n_second": 57}, "n_second"), ({"n_extra": 40}, "n_extra"),
    ({"extra_sweep": [-30]}, "extra_sweep"), ({"knn_k": 0}, "knn_k"), ({"graph_rows": "all"}, "graph_rows"),
    ({"match_threshold": 1.0}, "match_threshold"), ({"first_kernel": "fc2"}, "first_kernel"),
    ({"p": 15}, "p"), ({"random_graphs": 0}, "random_graphs"),
])
def test_chapter_params_reject_bad_values(kwargs, name):
    from entk_lib.experiments.laplacian import LaplacianParams

    with pytest.raises(ValueError, match=f"`{name}"):
        LaplacianParams(**kwargs)


@pytest.mark.parametrize("kwargs, n_extra, extra_sweep, knn_sweep", [
    ({}, 4, [-4, -2, 0, 2, 4, 6, 8, 10, 12], [2, 4, 8, 16, 32]),   # the defaults (p = 29)
    ({"p": 5}, 4, [-2, 0, 2, 4], [2, 4, 8, 16]),                    # d = 8, half 4, 24 other inputs
    ({"p": 3}, 2, [0, 2], [2, 4, 8]),                               # d = 4, half 2
    ({"n_second": 56}, 0, [-4, -2, 0], [2, 4, 8, 16, 32]),          # stage two takes the whole window
    ({"n_second": 1}, 4, [0, 2, 4, 6, 8, 10, 12], [2, 4, 8, 16, 32]),
])
def test_derived_stage_two_sizes_and_k_sweep_follow_p_and_n_second(kwargs, n_extra, extra_sweep, knn_sweep):
    from entk_lib.experiments.laplacian import LaplacianParams

    params = LaplacianParams(**kwargs)
    assert (params.n_extra, params.extra_sweep, params.knn_sweep) == (n_extra, extra_sweep, knn_sweep)
    d = params.window
    assert all(1 <= params.half + e <= d for e in [params.n_extra, *params.extra_sweep])


@pytest.mark.parametrize("kwargs, names", [
    ({"n_second": 50, "n_extra": 10}, ("n_extra", "n_second", "p")),        # 50 + 10 > 2(p-1) = 56
    ({"n_second": 2, "extra_sweep": [-4, 0]}, ("extra_sweep", "n_second", "p")),  # 2 - 4 < 1
    ({"p": 5, "knn_sweep": [2, 32]}, ("knn_sweep", "p")),                   # only 24 other inputs
    ({"p": 5, "knn_k": 25}, ("knn_k", "p")),
    ({"p": 5, "n_second": 9}, ("n_second", "p")),                           # d = 8
])
def test_misfit_of_a_dependent_parameter_names_both(kwargs, names):
    from entk_lib.experiments.laplacian import LaplacianParams

    with pytest.raises(ValueError) as err:
        LaplacianParams(**kwargs)
    message = str(err.value)
    assert message.startswith(f"`{names[0]}`")
    values = {"p": 29, "n_second": 0} | kwargs
    assert all(f"`{n}`={values[n]}" in message for n in names[1:]), message


def test_analyze_cliff_on_a_planted_window():
    """A window that spans exactly the a and b families: rotation one-to-one, ceiling 1, Ritz
    values equal to the pure-mode values, and the learned-graph outputs well formed."""
    from entk_lib.experiments.laplacian import LaplacianParams, analyze_cliff

    p = 11
    params = LaplacianParams(p=p, random_graphs=2, knn_sweep=[2], extra_sweep=[0, 2])
    pairs, _ = lp.pair_families(p, "axis")
    u = _normalized(pairs) @ random_orthonormal(2 * (p - 1), 2 * (p - 1), rng=0)
    values = np.linspace(2.0, 1.0, u.shape[1])
    r = analyze_cliff(u, values, params, "first", seed=0)
    assert r["before"]["mean"] < 0.5
    assert r["after"]["mean"] == pytest.approx(1.0, abs=1e-8) and r["after"]["n_above"] == u.shape[1]
    assert r["ceiling"] == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(r["ritz"], r["pure"], atol=1e-10)
    assert r["sweep"][2][0] == pytest.approx(1.0, abs=1e-8)  # one extra pair: still exact
    g = r["graphs"]
    assert g["random_mean"].shape == (2,) and set(g["knn_sweep"]) == {2}
    assert all(0.0 <= v <= 1.0 for v in g["edge_fractions"].values())


def test_pipeline_end_to_end_on_a_tiny_network(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    from entk_lib.experiments import laplacian as ch

    params = ch.LaplacianParams(p=7, width=16, epochs=20, seeds=[0, 1], random_graphs=2, knn_sweep=[2],
                                extra_sweep=[0, 2])
    results = ch.run_all(params, progress=False)
    summary = ch.summarize(results, params)
    table = ch.claims_table(summary, params)
    assert len(table.rows) == 6 and summary["d"] == 12
    assert set(summary["second"]["sweep"]) == {0, 2} and set(summary["first"]["knn_sweep"]) == {2}
    # the untrained layer-1 cliff spans the a and b families exactly in expectation; with a
    # finite width it still does to within the window's ceiling
    assert summary["init"]["after"].min() > summary["init"]["before"].max()
    # the variant row: stage two with half + n_extra = 6 + 4 directions, closer in some seeds or not
    closer = summary["second"]["variant"] > summary["second"]["after"]
    want = "reproduced" if closer.all() else ("partly reproduced" if closer.any() else "not reproduced")
    assert table.rows[2].verdict == want
    for fig in (ch.plot_why(results[0], params), ch.plot_heatmaps(results[0], params, "second"),
                ch.plot_sweep(summary, params), ch.plot_graphs(summary, params)):
        assert fig.axes
    import matplotlib.pyplot as plt

    plt.close("all")


def test_record_of_the_tiny_pipeline(tmp_path, monkeypatch):
    import copy

    from conftest import check_record_well_formed

    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    from entk_lib.experiments import laplacian as ch
    from entk_lib.record import compare_records

    params = ch.LaplacianParams(p=7, width=16, epochs=20, seeds=[0, 1], random_graphs=2, knn_sweep=[2],
                                extra_sweep=[0, 2])
    summary = ch.summarize(ch.run_all(params, progress=False), params)
    table = ch.claims_table(summary, params)
    r = ch.record(summary, params, table).to_dict()
    check_record_well_formed(r, table, "05_laplacian_rotation")
    assert {"first.matched_after", "second.above_variant", "second.edges[diff]", "first.knn[k=2]",
            "init.above_after"} <= set(r["numbers"])
    moved = copy.deepcopy(r)
    moved["numbers"]["second.matched_after"]["value"] += 0.04  # within the score tolerance (0.05)
    moved["numbers"]["first.above_after"]["value"] += 1.5  # within the count tolerance (2)
    assert compare_records(r, moved) == []
    moved["numbers"]["second.matched_after"]["value"] += 0.02
    problems = compare_records(r, moved)
    assert len(problems) == 1 and problems[0].startswith("second.matched_after:")
