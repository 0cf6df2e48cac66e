"""Alignment measures and feature bases on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from entk_lib import alignment as al
from entk_lib import features as ft


def test_abs_cosine_known_values():
    v = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    f = np.array([[1.0], [1.0], [0.0]])
    np.testing.assert_allclose(al.abs_cosine(v, f), [[1 / np.sqrt(2)], [1 / np.sqrt(2)]])
    np.testing.assert_allclose(al.abs_cosine(-v, f), al.abs_cosine(v, f))
    with pytest.raises(ValueError, match="same number of rows"):
        al.abs_cosine(v, np.ones((4, 1)))


def test_subspace_overlap_known_subspaces():
    rng = np.random.default_rng(0)
    q = al.random_orthonormal(50, 10, rng)
    inside = q[:, :4] @ rng.standard_normal((4, 4))  # a 4-dim family inside span(q)
    assert al.subspace_overlap(q, inside, center_family=False) == pytest.approx(4.0, abs=1e-10)
    outside = al.random_orthonormal(50, 50, rng)[:, :]  # whole space
    orth = outside - q @ (q.T @ outside)
    orth = al.orthonormal_basis(orth)[:, :3]  # 3 directions orthogonal to span(q)
    assert al.subspace_overlap(q, orth, center_family=False) == pytest.approx(0.0, abs=1e-10)
    # half-in, half-out: one direction at 45 degrees to span(q) contributes cos^2 = 1/2
    mixed = (q[:, :1] + orth[:, :1]) / np.sqrt(2)
    assert al.subspace_overlap(q, mixed, center_family=False) == pytest.approx(0.5, abs=1e-10)


def test_centering_removes_the_constant_direction():
    const = np.ones((10, 1))
    ramp = np.arange(10.0)[:, None]
    assert al.orthonormal_basis(np.hstack([const, ramp]), center=True).shape[1] == 1
    q = const / np.sqrt(10)
    overlap = al.subspace_overlap(q, np.hstack([const + ramp]), center_family=True)
    assert overlap == pytest.approx(0.0, abs=1e-12)


def test_random_subspace_overlap_mean_is_dim_times_dim_over_n():
    fam = ft.fourier_family(11, "sum")  # 10 columns over 121 inputs
    null = al.random_subspace_overlaps(121, 20, fam, draws=400, seed=0)
    assert null.mean() == pytest.approx(20 * 10 / 121, rel=0.08)
    assert al.empirical_p_value(null.max() + 1, null) == pytest.approx(1 / 401)
    assert al.empirical_p_value(-1.0, null) == 1.0


def test_pair_projection_is_phase_insensitive():
    p = 13
    fam = ft.fourier_family(p, "a")
    a, _ = ft.modular_pairs(p)
    shifted = np.cos(2 * np.pi * 3 * a / p + 0.7)  # frequency 3 with an arbitrary phase
    proj = al.pair_projection(shifted, fam)
    assert proj[0, 2] == pytest.approx(1.0, abs=1e-12)
    assert np.delete(proj[0], 2).max() < 1e-12
    with pytest.raises(ValueError, match="even number of columns"):
        al.pair_projection(shifted, fam[:, :3])


def test_matched_score_hungarian():
    scores = np.array([[0.9, 0.8], [0.85, 0.1]])  # greedy row-wise would take 0.9 then 0.1
    res = al.matched_score(scores)
    assert res.mean == pytest.approx((0.8 + 0.85) / 2)
    assert list(res.cols) == [1, 0]


def test_fourier_families_orthogonal_and_counted():
    for p in (5, 7, 29):
        fams = ft.fourier_families(p)
        assert sum(f.shape[1] for f in fams.values()) == 4 * (p - 1)
        for f in fams.values():
            assert f.shape == (p * p, p - 1)
            np.testing.assert_allclose(f.T @ f, (p * p / 2) * np.eye(p - 1), atol=1e-8)
            np.testing.assert_allclose(f.mean(0), 0.0, atol=1e-12)
        # a and b families are orthogonal to each other; sum and diff too
        np.testing.assert_allclose(fams["a"].T @ fams["b"], 0.0, atol=1e-8)
        np.testing.assert_allclose(fams["sum"].T @ fams["diff"], 0.0, atol=1e-8)


def test_input_ordering_is_a_times_p_plus_b():
    a, b = ft.modular_pairs(5)
    assert (a[7], b[7]) == (1, 2)
    fam = ft.fourier_family(5, "b", frequencies=[1])
    assert fam[7, 0] == pytest.approx(np.cos(2 * np.pi * 2 / 5))
    with pytest.raises(ValueError, match="`kind` must be one of"):
        ft.fourier_family(5, "prod")
    with pytest.raises(ValueError, match="`frequencies`"):
        ft.fourier_family(5, "a", frequencies=[7])


def test_tms_expanded_features_layout():
    x = np.arange(6.0).reshape(3, 2)  # 3 samples, 2 features
    e = ft.tms_expanded_features(x)
    assert e.shape == (6, 2)
    np.testing.assert_array_equal(e[:3, 0], x[:, 0])
    np.testing.assert_array_equal(e[3:, 1], x[:, 1])
    assert e[3:, 0].sum() == 0 and e[:3, 1].sum() == 0
