"""Tests for the modular-addition model, its kernels, the Fourier families and the overlaps."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import entk_lib
from entk_lib.alignment import orthonormal_basis, subspace_overlap
from entk_lib.experiments import modular as mod
from entk_lib.experiments.modular.claims import _flat_row
from entk_lib.features import (
    FOURIER_KINDS,
    cliff_positions,
    cliff_windows,
    fourier_families,
    fourier_family,
    modular_pairs,
)
from entk_lib.models.modular import (
    ModularMLP,
    ModularSetup,
    modular_data,
    rescale_layers,
    train_modular,
    train_test_split,
)

P, WIDTH = 7, 16


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    model = ModularMLP(P, WIDTH, generator=torch.Generator().manual_seed(3)).double()
    x, y = modular_data(P, dtype=torch.float64)
    return model, x, y


# ---- data -----------------------------------------------------------------------------------

def test_data_encoding_matches_pairs_and_targets():
    x, y = modular_data(P)
    a, b = modular_pairs(P)
    assert x.shape == (P * P, 2 * P) and y.shape == (P * P, P)
    assert torch.equal(x[:, :P].argmax(1), torch.as_tensor(a))
    assert torch.equal(x[:, P:].argmax(1), torch.as_tensor(b))
    assert torch.all(x.sum(1) == 2) and torch.all(y.sum(1) == 1)
    assert torch.equal(y.argmax(1), torch.as_tensor((a + b) % P))
    # index = a * p + b, spot check
    idx = 3 * P + 5
    assert x[idx, 3] == 1 and x[idx, P + 5] == 1 and y[idx, (3 + 5) % P] == 1


def test_split_is_seeded_disjoint_and_complete():
    tr, te = train_test_split(49, 0.7, seed=4)
    assert len(tr) == int(0.7 * 49) and len(tr) + len(te) == 49
    assert set(tr.tolist()).isdisjoint(te.tolist())
    tr2, _ = train_test_split(49, 0.7, seed=4)
    tr3, _ = train_test_split(49, 0.7, seed=5)
    assert torch.equal(tr, tr2) and not torch.equal(tr, tr3)


@pytest.mark.parametrize("kwargs, name", [({"p": 15}, "p"), ({"p": 2}, "p"), ({"width": 0}, "width"),
                                          ({"train_fraction": 1.0}, "train_fraction"),
                                          ({"train_fraction": 0.0}, "train_fraction"),
                                          ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr")])
def test_setup_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        ModularSetup(**kwargs)


def test_non_prime_error_says_prime():
    with pytest.raises(ValueError, match="prime"):
        mod.ModularParams(p=21)
    with pytest.raises(ValueError, match="`top_k`"):
        mod.ModularParams(p=7, top_k=5)


@pytest.mark.parametrize("p, top_k, flat_top_k", [(29, 200, 1750), (23, 200, 1100), (5, 25, 100),
                                                  (37, 217, 2800), (3, 9, 26)])
def test_derived_eigenpair_counts_follow_p(p, top_k, flat_top_k):
    """200 (and 1750) at the defaults; every window the chapter reads (6(p-1)+1 eigenvectors)
    fits in ``top_k``; the flattened count reaches past 2p^2 (the widened first cliff) when
    p^3 allows it."""
    params = mod.ModularParams(p=p)
    assert (params.top_k, params.flat_top_k) == (top_k, flat_top_k)
    assert params.top_k >= min(cliff_windows(p)["next"].stop, p * p)
    assert params.flat_top_k > 2 * p * p or params.flat_top_k == p**3 - 1


@pytest.mark.parametrize("kwargs, name", [
    ({"p": 7, "top_k": 30}, "top_k"),            # the control window ends at 6(p-1)+1 = 37
    ({"p": 29, "top_k": 150}, "top_k"),          # ... 169 at p = 29 (150 truncated the window)
    ({"p": 5, "top_k": 26}, "top_k"),            # more than p^2 = 25
    ({"p": 5, "flat_top_k": 125}, "flat_top_k"),  # the flattened kernel has p^3 = 125 rows
])
def test_misfit_of_a_derived_parameter_names_both(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`.*`p`={kwargs['p']}"):
        mod.ModularParams(**kwargs)


# ---- model and kernels ---------------------------------------------------------------------

def test_model_forward_matches_formula(small_model):
    model, x, _ = small_model
    w1, w2 = model.fc1.weight.detach(), model.fc2.weight.detach()
    expected = ((x @ w1.T / math.sqrt(2 * P)) ** 2) @ w2.T / WIDTH
    assert torch.allclose(model(x), expected, atol=1e-12)


def test_init_is_standard_normal_and_seeded():
    a = ModularMLP(29, 512, generator=torch.Generator().manual_seed(0))
    b = ModularMLP(29, 512, generator=torch.Generator().manual_seed(0))
    w = a.fc1.weight.detach()
    assert abs(float(w.mean())) < 0.02 and abs(float(w.std()) - 1) < 0.02
    assert torch.equal(a.fc2.weight, b.fc2.weight)


def test_both_layers_use_structured_backend(small_model):
    model, x, _ = small_model
    text = entk_lib.entk_plan(model, x).describe()
    assert text.count("structured") == 2


def _closed_form_layer_kernels(model, x):
    """class_mean layer kernels from the weights (independent of the engine)."""
    w1, w2 = model.fc1.weight.detach(), model.fc2.weight.detach()
    h = x @ w1.T / math.sqrt(2 * P)                       # (N, width) pre-activations
    a = h**2
    k2 = a @ a.T / WIDTH**2                              # dOut_i/dW2[i,j] = a_j / width
    g = (w2**2).mean(0)                                  # (1/C) sum_i W2[i,j]^2
    k1 = 4 * torch.einsum("j,aj,bj->ab", g, h, h) * (x @ x.T) / (2 * P) / WIDTH**2
    return k1, k2


def test_layer_kernels_match_closed_form(small_model):
    model, x, _ = small_model
    ks = entk_lib.entk_by_layer(model, x, collapse="class_mean")
    k1, k2 = _closed_form_layer_kernels(model, x)
    assert torch.allclose(ks["fc1"], k1, rtol=1e-9, atol=1e-12)
    assert torch.allclose(ks["fc2"], k2, rtol=1e-9, atol=1e-12)


def test_flattened_layer2_is_block_diagonal(small_model):
    model, x, _ = small_model
    flat = entk_lib.entk(model, x, collapse="flattened", layers=["fc2"])
    h = entk_lib.entk(model, x, collapse="class_mean", layers=["fc2"])
    assert torch.allclose(flat, torch.kron(torch.eye(P, dtype=h.dtype), h), atol=1e-12)


@pytest.mark.parametrize("s", [0.5, 3.0])
def test_rescaling_keeps_function_and_scales_layer_kernels(small_model, s):
    model, x, _ = small_model
    other = rescale_layers(model, s)
    assert torch.allclose(other(x), model(x), rtol=1e-10, atol=1e-12)
    before = entk_lib.entk_by_layer(model, x, collapse="class_mean")
    after = entk_lib.entk_by_layer(other, x, collapse="class_mean")
    assert torch.allclose(after["fc1"], before["fc1"] * s**-2, rtol=1e-9)
    assert torch.allclose(after["fc2"], before["fc2"] * s**4, rtol=1e-9)
    total = entk_lib.entk(other, x, collapse="class_mean")
    assert torch.allclose(mod.rescaled_total(before, s), total, rtol=1e-9)


def test_layer1_kernel_at_init_has_the_cliff_in_expectation():
    """At init E[K1] = (M + 2I) / (p^2 width), M[x, x'] = x.x' = [a=a'] + [b=b'] (independent
    N(0, 1) weights), whose spectrum is one leading mode (2p+2), then 2(p-1) eigenvalues p+2,
    then 2: the first cliff is built into the one-hot inputs."""
    p, width = 5, 512
    x, _ = modular_data(p, dtype=torch.float64)
    m = (x @ x.T).numpy()
    expected = (m + 2 * np.eye(p * p)) / (p * p * width)
    models = [ModularMLP(p, width, generator=torch.Generator().manual_seed(s)).double() for s in range(8)]
    mean_k1 = np.mean([entk_lib.entk(m_, x, collapse="class_mean", layers=["fc1"]).numpy()
                       for m_ in models], axis=0)
    assert np.linalg.norm(mean_k1 - expected) < 0.05 * np.linalg.norm(expected)
    eig = np.sort(np.linalg.eigvalsh(m + 2 * np.eye(p * p)))[::-1]
    assert np.isclose(eig[0], 2 * p + 2)
    assert np.allclose(eig[1 : 2 * p - 1], p + 2) and np.allclose(eig[2 * p - 1 :], 2)
    # a leading mode (12 -> 7, a prominent drop of 1.7 on a flat background), then the cliff
    assert list(entk_lib.find_cliffs(eig)) == [2 * (p - 1) + 1, 1]


# ---- Fourier families and overlaps ---------------------------------------------------------

@pytest.mark.parametrize("p", [5, 7, 29])
def test_fourier_families_orthogonal_and_count(p):
    fams = fourier_families(p)
    allcols = np.concatenate([fams[k] for k in FOURIER_KINDS], axis=1)
    assert allcols.shape == (p * p, 4 * (p - 1))
    gram = allcols.T @ allcols
    assert np.allclose(gram, np.eye(4 * (p - 1)) * p * p / 2, atol=1e-8)
    assert np.allclose(allcols.mean(0), 0, atol=1e-12)


def test_overlap_known_cases():
    fa, fb, fs = fourier_family(P, "a"), fourier_family(P, "b"), fourier_family(P, "sum")
    d = P - 1
    assert np.isclose(subspace_overlap(fa, fa), d)
    assert np.isclose(subspace_overlap(fa, fb), 0, atol=1e-10)
    assert np.isclose(subspace_overlap(np.concatenate([fa, fb], 1), fa), d)
    assert np.isclose(subspace_overlap(fa[:, :2], fa), 2)            # one frequency: 2 of d
    q = orthonormal_basis(fa)
    rot = q @ np.linalg.qr(np.random.default_rng(0).standard_normal((d, d)))[0]
    assert np.isclose(subspace_overlap(rot, fa), d)                 # basis-independent
    assert np.isclose(subspace_overlap(np.ones((P * P, 1)), fa), 0, atol=1e-10)
    # a planted tilt: cos^2(theta) of the vector lies in the family
    theta = 0.3
    u = np.cos(theta) * q[:, 0] + np.sin(theta) * orthonormal_basis(fs)[:, 0]
    assert np.isclose(subspace_overlap(u, fa), np.cos(theta) ** 2)


def test_null_overlap_mean_matches_dimension_count():
    params = mod.ModularParams(p=P, top_k=P * P, null_draws=2000)
    null = mod.null_overlaps(params)
    expected = 2 * (P - 1) ** 2 / P**2
    assert abs(null.mean() - expected) < 0.05 * expected


def test_cliff_windows_sizes():
    w = cliff_windows(29)
    assert (w["first"].start, w["first"].stop, w["second"].start, w["second"].stop) == (1, 57, 57, 113)
    assert cliff_positions(29) == (57, 113)


# ---- training, cache, causal test ----------------------------------------------------------

def test_train_modular_caches_and_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    params = SimpleNamespace(p=5, width=8, train_fraction=0.6, lr=0.05, weight_decay=0.01, epochs=20,
                             seeds=[0])
    run = train_modular(params, seed=1)
    assert sorted(run.checkpoints) == [0, 10, 20] and run.setup.checkpoint_every == 10
    assert len(run.history["test_acc"]) == 21
    again = train_modular(ModularSetup(p=5, width=8, train_fraction=0.6, epochs=20), seed=1)
    assert all(torch.equal(run.final_state[k], again.final_state[k]) for k in run.final_state)
    assert len(list(tmp_path.glob("modular_mlp/*.pt"))) == 1
    init = ModularMLP(5, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(run.model_at(0).fc1.weight, init.fc1.weight)
    with pytest.raises(ValueError, match="`epoch`"):
        run.model_at(15)


def test_causal_ablation_of_everything_zeroes_the_output(small_model):
    model, x, y = small_model
    model = model.float()
    test_idx = torch.arange(10)
    eye = np.eye(P * P)
    out = mod.causal_ablation(model, x.float(), y.float(), test_idx, {"all": eye, "none": eye[:, :0]},
                              draws=3)
    loss, acc, energy = out["windows"]["all"]
    assert np.isclose(energy, 1.0) and np.isclose(loss, 1 / P)
    assert np.isclose(out["windows"]["none"][2], 0.0)
    assert out["random"][P * P].shape == (3, 3)


def _tiny_params(**kw):
    base = dict(p=5, width=8, epochs=20, seeds=[0, 1], null_draws=50, scales=[0.5, 1.0],
                flat_top_k=30, flat_seeds=[0])  # top_k derived: p^2 = 25
    return mod.ModularParams(**(base | kw))


def test_flattened_analysis_matches_dense(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    params = _tiny_params()
    flat = mod.flattened_analysis(params, 0)
    model, x = train_modular(params, 0).model_at(), modular_data(5)[0]
    dense = np.linalg.eigvalsh(entk_lib.entk(model, x, collapse="flattened").double().numpy())[::-1]
    assert np.allclose(flat["values"], dense[:30], rtol=1e-4)
    h = entk_lib.entk(model, x, collapse="class_mean", layers=["fc2"]).double().numpy()
    assert np.allclose(flat["layer2_values"], np.repeat(np.linalg.eigvalsh(h)[::-1], 5)[:30])


def test_pipeline_end_to_end_on_a_tiny_network(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    params = _tiny_params()
    assert params.top_k == 25
    results, null = mod.run_all(params, progress=False)
    assert all(r["spectra"]["total"]["values"].shape == (25,) for r in results)
    summary = mod.summarize(results, params, null)
    assert summary["expected_cliffs"] == (9, 17) and null.shape == (50,)
    for key in ("first_a", "second_sum"):  # permutation p-values, counted here independently
        for overlap, pval in zip(summary[key], summary[f"p_{key}"], strict=True):
            assert pval == (1 + sum(v >= overlap for v in null)) / 51
    table = mod.claims_table(summary, params, [mod.flattened_analysis(params, 0)])
    assert len(table.rows) == 12
    assert [r.kind for r in table.rows].count("ours") == 3 and table.rows[9].verdict == "inconclusive"


def _flat(cliffs, k, seed=0):
    return {"seed": seed, "k": k, "cliffs": np.array(cliffs, dtype=int),
            "largest_drops": [(29, 16.9), (1709, 1.1)], "layer2_cliffs": np.array([29])}


@pytest.mark.parametrize("cliffs, k, want", [
    ([29], 1750, "not reproduced"),         # 57, 113 and ~1653 in reach, no cliff at any of them
    ([29], 100, "inconclusive"),            # no candidate of either cliff fully in reach
    ([57, 113], 200, "reproduced"),         # the literal positions
    ([1650, 3270], 3400, "reproduced"),     # widened p-fold (within +-p)
    ([1650], 1750, "partly reproduced"),    # the first one widened, the second out of reach
])
def test_flattened_verdict_uses_every_candidate_in_reach(cliffs, k, want):
    params = mod.ModularParams(flat_top_k=k)
    row = _flat_row([_flat(cliffs, k)], params)
    claim, text, verdict = row["claim"], row["measured"], row["verdict_text"]
    assert verdict == want, text
    assert row["kind"] == "ours"
    assert "57 and 113 or widened p-fold to about 1653 and 3277" in claim
    assert ("beyond the top" in text) == (k < 3277 + 29)
