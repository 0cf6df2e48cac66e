"""Tests for the TMS model, data, closed-form eNTK (Appendix B) and the chapter's alignment measures."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch

import entk_lib
from entk_lib.alignment import abs_cosine
from entk_lib.experiments import tms as exp
from entk_lib.features import tms_expanded_features
from entk_lib.models import tms


def _model(n=6, m=3, seed=0, bias_std=0.3, dtype=torch.float64):
    torch.manual_seed(seed)
    model = tms.TMS(n, m).to(dtype)
    with torch.no_grad():
        model.b.normal_(0.0, bias_std)
    return model


# ----------------------------------------------------------------------------- model and data


def test_model_forward_is_relu_wtw_x_plus_b():
    model = _model()
    x = torch.rand(5, 6, dtype=torch.float64)
    W, b = model.W.detach(), model.b.detach()
    expected = torch.clamp(x @ W.T @ W + b, min=0)
    assert torch.allclose(model(x), expected)


def test_model_init_xavier_normal_and_zero_bias():
    torch.manual_seed(0)
    model = tms.TMS(400, 100)
    assert model.W.shape == (100, 400) and torch.equal(model.b, torch.zeros(400))
    std = float(model.W.detach().std())
    assert abs(std - (2 / 500) ** 0.5) < 0.05 * (2 / 500) ** 0.5


@pytest.mark.parametrize("n, m, name", [(5, 6, "n_hidden"), (5, 0, "n_hidden"), (0, 1, "n_features")])
def test_model_rejects_bad_sizes(n, m, name):
    with pytest.raises(ValueError, match=name):
        tms.TMS(n, m)


def test_data_unit_norm_sparsity_and_determinism():
    x = tms.tms_data(4000, 20, 0.7, seed=3)
    assert x.shape == (4000, 20) and x.dtype == torch.float32
    assert torch.allclose(x.norm(dim=1), torch.ones(4000), atol=1e-6)
    assert (x >= 0).all()
    assert abs(float((x == 0).float().mean()) - 0.7) < 0.02
    assert torch.equal(x, tms.tms_data(4000, 20, 0.7, seed=3))
    assert not torch.equal(x, tms.tms_data(4000, 20, 0.7, seed=4))


def test_data_redraws_all_zero_samples():
    x = tms.tms_data(300, 2, 0.95, seed=0)  # most raw draws are all-zero
    assert (x.abs().sum(1) > 0).all()
    assert torch.allclose(x.norm(dim=1), torch.ones(300), atol=1e-6)


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5])
def test_data_rejects_bad_sparsity(sparsity):
    with pytest.raises(ValueError, match=r"sparsity.*\[0, 1\)"):
        tms.tms_data(10, 5, sparsity)


def test_importance_and_loss():
    w = tms.importance(4, 0.5)
    assert torch.allclose(w, torch.tensor([1.0, 0.5, 0.25, 0.125]))
    out, target = torch.rand(3, 4), torch.rand(3, 4)
    manual = sum(w[i] * (target[a, i] - out[a, i]) ** 2 for a in range(3) for i in range(4)) / 12
    assert torch.allclose(tms.tms_loss(out, target, w), manual)
    with pytest.raises(ValueError, match="importance_base"):
        tms.importance(4, 0.0)


def _tiny_setup(**kw):
    return tms.TMSSetup(**({"n_features": 8, "n_hidden": 3, "sparsity": 0.5, "n_samples": 64, "epochs": 200,
                            "lr": 1e-2} | kw))


def test_training_lowers_loss_and_is_deterministic():
    runs = [tms.train_tms(_tiny_setup(), seed=1, use_cache=False) for _ in range(2)]
    loss = runs[0].history["train_loss"]
    assert loss[-1] < 0.5 * loss[0] and runs[0].final_loss == loss[-1]
    assert all(torch.equal(runs[0].final_state[k], runs[1].final_state[k]) for k in runs[0].final_state)


def test_train_tms_equals_a_hand_written_adam_loop():
    # independent recipe: data from the seed, torch.manual_seed(seed) before the model, plain Adam
    setup, seed = _tiny_setup(epochs=50), 3
    x = tms.tms_data(setup.n_samples, setup.n_features, setup.sparsity, seed=seed)
    weights = tms.importance(setup.n_features, setup.importance_base)
    torch.manual_seed(seed)
    model = tms.TMS(setup.n_features, setup.n_hidden)
    opt = torch.optim.Adam(model.parameters(), lr=setup.lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(setup.epochs):
            opt.zero_grad()
            (((x - model(x)) ** 2) * weights).mean().backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    run = tms.train_tms(setup, seed, use_cache=False)
    assert torch.equal(run.data, x)
    assert torch.equal(run.model().W, model.W) and torch.equal(run.model().b, model.b)


def test_train_tms_cache_round_trip(tmp_path, monkeypatch):
    from entk_lib import cache

    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    setup = _tiny_setup(epochs=20)
    misses, hits = cache.STATS["misses"], cache.STATS["hits"]
    first = tms.train_tms(setup, seed=0)
    assert cache.STATS["misses"] == misses + 1 and len(list((tmp_path / "tms").glob("*.pt"))) == 1
    second = tms.train_tms(setup, seed=0)
    assert cache.STATS["hits"] == hits + 1 and cache.STATS["misses"] == misses + 1
    assert second.setup == setup and second.seed == 0 and second.history == first.history
    assert all(torch.equal(first.final_state[k], second.final_state[k]) for k in first.final_state)
    other = tms.train_tms(setup, seed=1)     # another seed: another entry, other weights
    assert cache.STATS["misses"] == misses + 2
    assert not torch.equal(other.final_state["W"], first.final_state["W"])
    fresh = tms.train_tms(setup, seed=0, use_cache=False)
    assert torch.equal(fresh.final_state["W"], first.final_state["W"])


@pytest.mark.parametrize("kwargs, pattern", [
    ({"n_hidden": 9}, r"`n_hidden` must be an integer in \[1, 8\]"),
    ({"sparsity": 1.0}, r"`sparsity`"),
    ({"epochs": -1}, r"`epochs`"),
    ({"n_features": 1}, r"`n_features`"),
])
def test_setup_rejects_bad_values(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        _tiny_setup(**kwargs)
    with pytest.raises(TypeError, match="TMSSetup"):
        tms.train_tms({"n_features": 8}, 0)


def test_represented_features_counts_column_norms():
    W = np.zeros((2, 4))
    W[:, 0] = [1.0, 0.0]
    W[:, 2] = [0.6, 0.6]   # ||.||^2 = 0.72 < 0.75
    W[:, 3] = [0.7, 0.6]   # 0.85
    assert tms.represented_features(W).tolist() == [0, 3]
    assert tms.represented_features(torch.tensor(W), threshold=0.7).tolist() == [0, 2, 3]


# ----------------------------------------------------------------------------- Appendix B


def test_closed_form_jacobian_matches_engine_and_finite_differences():
    model = _model()
    x = tms.tms_data(7, 6, 0.4, seed=1, dtype=torch.float64)
    ow = torch.rand(6, dtype=torch.float64) + 0.1
    closed = tms.closed_form_jacobian(model.W.detach(), model.b.detach(), x, ow)
    engine = entk_lib.entk_jacobian(model, x, output_weights=ow)
    assert closed.shape == (6, 7, 3 * 6 + 6)
    assert torch.allclose(closed, engine, atol=1e-12)
    # independent check: central finite differences of the outputs w.r.t. every parameter
    theta = torch.cat([model.W.detach().ravel(), model.b.detach()])

    def outputs(t):
        W, b = t[:18].reshape(3, 6), t[18:]
        return torch.relu(x @ W.T @ W + b).T * ow[:, None]   # (n, N)

    eps = 1e-6
    fd = torch.stack([(outputs(theta + eps * e) - outputs(theta - eps * e)) / (2 * eps)
                      for e in torch.eye(theta.numel(), dtype=torch.float64)], dim=2)
    assert torch.allclose(closed, fd, atol=1e-6)


def test_closed_form_kernel_matches_engine_and_jjt():
    model = _model(n=5, m=2, seed=2)
    x = tms.tms_data(6, 5, 0.3, seed=2, dtype=torch.float64)
    ow = tms.importance(5, 0.8, dtype=torch.float64) ** 0.5
    W, b = model.W.detach(), model.b.detach()
    closed = tms.closed_form_kernel(W, b, x, ow)
    jac = tms.closed_form_jacobian(W, b, x, ow).reshape(5 * 6, -1)
    assert closed.shape == (30, 30)
    assert torch.allclose(closed, jac @ jac.T, atol=1e-12)
    engine = entk_lib.entk(model, x, collapse="flattened", output_weights=ow)
    assert torch.allclose(closed, engine, atol=1e-12)


def test_lowrank_row_rescaling_equals_output_weights_and_dense_spectrum():
    model = _model(n=5, m=2, seed=4)
    x = tms.tms_data(8, 5, 0.5, seed=4, dtype=torch.float64)
    w = tms.importance(5, 0.8, dtype=torch.float64)
    beta = 0.3
    weighted = entk_lib.entk_lowrank(model, x, output_weights=w ** (beta / 2)).factor
    rows = w.repeat_interleave(8) ** (beta / 2)
    plain = entk_lib.entk_lowrank(model, x).factor
    assert torch.allclose(weighted, plain * rows[:, None], atol=1e-14)
    pairs = exp.flattened_spectra(model.float(), x.float(), w.float(), [beta], 10)[beta]
    dense = tms.closed_form_kernel(model.W.detach().double(), model.b.detach().double(), x,
                                   w ** (beta / 2))
    top = np.sort(np.linalg.eigvalsh(dense.numpy()))[::-1][:10]
    assert np.allclose(pairs.values, top, rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------- alignment measures


def _data(N=40, n=4, seed=0):
    return tms.tms_data(N, n, 0.3, seed=seed, dtype=torch.float64).numpy()


def test_block_scores_planted_vectors():
    x = _data()
    N, n = x.shape
    feats = tms_expanded_features(x)
    affine = np.zeros(n * N)
    affine[2 * N : 3 * N] = 3.0 - 2.0 * x[:, 2]             # affine in feature 2, in block 2
    half = np.zeros(n * N)
    half[N : 2 * N] = x[:, 1] - x[:, 1].mean()
    half[3 * N : 4 * N] = np.random.default_rng(0).standard_normal(N)
    half[3 * N : 4 * N] *= np.linalg.norm(half[N : 2 * N]) / np.linalg.norm(half[3 * N : 4 * N])
    vecs = np.column_stack([feats[:, 0], affine, half, exp.block_indicators(n, N)[:, 3]])
    s = exp.block_scores(vecs, x)
    assert np.allclose(s["raw"], abs_cosine(vecs, feats))
    assert s["score"][0, 0] == pytest.approx(1.0) and s["score"][1, 2] == pytest.approx(1.0)
    assert s["score"][2, 1] == pytest.approx(0.5**0.5)          # half the mass, perfect correlation
    assert s["mass"][2, 1] == pytest.approx(0.5)
    # the block indicator: raw |cos| = mean / rms of the feature, feature score exactly 0
    assert s["raw"][3, 3] == pytest.approx(x[:, 3].mean() / np.sqrt((x[:, 3] ** 2).mean()))
    assert s["score"][3].max() == 0.0
    assert np.all(s["score"] <= 1 + 1e-12)


def test_block_scores_rejects_wrong_shape():
    with pytest.raises(ValueError, match="vectors"):
        exp.block_scores(np.zeros((7, 2)), _data())


def test_subspace_capture_separates_bias_and_feature_directions():
    x = _data()
    N, n = x.shape
    centred = tms_expanded_features(x - x.mean(0))
    cap = exp.subspace_capture(centred, x)
    assert np.allclose(cap["feature"], 1) and np.allclose(cap["bias"], 0, atol=1e-12)
    cap = exp.subspace_capture(exp.block_indicators(n, N), x)
    assert np.allclose(cap["bias"], 1) and np.allclose(cap["feature"], 0, atol=1e-12)


def _brute_cover(seq, k):
    best = 0
    for labels in itertools.product(range(k + 1), repeat=len(seq)):   # label k = not covered
        ok = all(all(a <= b for a, b in itertools.pairwise([s for s, lab in zip(seq, labels, strict=True)
                                                                if lab == c]))
                 for c in range(k))
        if ok:
            best = max(best, sum(lab < k for lab in labels))
    return best


def test_chain_cover_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(25):
        seq = rng.integers(0, 6, rng.integers(1, 8)).tolist()
        for k in (1, 2):
            assert exp.chain_cover(seq, k) == _brute_cover(seq, k), (seq, k)


def test_importance_lines_on_two_planted_lines():
    n = 10
    # eigenvector j matches feature f(j): two interleaved increasing lines (0..4 and 5..9)
    f = [0, 5, 1, 6, 2, 7, 3, 8, 4, 9]
    score = np.full((12, n), 0.01)
    score[np.arange(n), f] = 0.9
    lines = exp.importance_lines(score, n, 0.5)
    assert lines["kept"] == n and lines["feat"].tolist() == f
    assert lines["cover1"] == pytest.approx(0.6) and lines["cover2"] == pytest.approx(1.0)
    assert exp.two_lines_pass(lines, n)
    diag = exp.importance_lines(np.eye(12, n), n, 0.5)
    assert diag["cover1"] == 1.0 and not exp.two_lines_pass(diag, n)


def test_alignment_stats_planted():
    n = 5
    perm = np.random.default_rng(1).permutation(n)
    raw = np.full((8, n), 0.1)
    raw[np.arange(n), perm] = 0.8
    score = np.eye(8, n) * 0.7
    stats = exp.alignment_stats({"raw": raw, "score": score}, n, 3, 0.5)
    assert stats["matched_raw"] == pytest.approx(0.8) and stats["count_raw"] == n
    assert stats["matched_score"] == pytest.approx(0.7) and stats["top_r_score"] == pytest.approx(0.7)


# ----------------------------------------------------------------------------- parameters, pipeline


@pytest.mark.parametrize("kwargs, pattern", [
    ({"models": [[10, 1.0]]}, r"models\[0\] S \(sparsity\).*\[0, 1\)"),
    ({"models": [[10, -0.2]]}, r"models\[0\] S"),
    ({"models": [[10]]}, r"models\[0\].*pair"),
    ({"models": []}, r"models"),
    ({"n_samples": 0}, r"n_samples"),
    ({"n_features": 0}, r"n_features"),
    ({"top_k": 50}, r"top_k"),
    ({"betas": [-1.0]}, r"betas\[0\]"),
    ({"seeds": []}, r"seeds"),
    ({"lr": 0.0}, r"lr"),
    ({"epochs": -1}, r"epochs"),
    ({"importance_base": 1.5}, r"importance_base"),
])
def test_params_reject_bad_values(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        exp.TMSParams(**kwargs)


def test_params_derive_models_and_top_k():
    p = exp.TMSParams()
    assert p.models == [[10, 0.3], [10, 0.9], [40, 0.9]] and p.top_k == 80   # today's defaults
    assert set(p.derived_fields) == {"models", "top_k"}
    small = exp.TMSParams(n_features=20)
    assert small.models == [[4, 0.3], [4, 0.9], [16, 0.9]] and small.top_k == 50
    tiny = exp.TMSParams(n_features=6, models=[[2, 0.3]], n_samples=20)
    assert tiny.rank_bound == 18 and tiny.top_k == 18        # n + 30 capped by the rank bound
    for n in range(2, 60):
        q = exp.TMSParams(n_features=n, n_samples=2)
        assert all(1 <= m <= n for m, _ in q.models) and n < q.top_k <= q.rank_bound
    setup = p.setup(40, 0.9)
    assert (setup.n_features, setup.n_hidden, setup.sparsity, setup.n_samples, setup.epochs) == (50, 40, 0.9,
                                                                                                 500, 5000)


@pytest.mark.parametrize("kwargs, names", [
    ({"models": [[60, 0.5]]}, [r"models\[0\] m \(hidden size\)`.*\[1, 50\]", "`n_features`=50"]),
    ({"n_features": 20, "models": [[40, 0.9]]}, [r"models\[0\] m", "`n_features`=20"]),
    ({"top_k": 600}, [r"`top_k`.*\[51, 550\]", "`n_features`=50", "`models`", "`n_samples`"]),
    ({"n_features": 20, "top_k": 80, "models": [[2, 0.9]]}, ["`top_k`.*60", "`n_features`=20", "`models`"]),
])
def test_params_misfit_of_a_derived_parameter_names_both(kwargs, names):
    with pytest.raises(ValueError) as err:
        exp.TMSParams(**kwargs)
    for name in names:
        assert re.search(name, str(err.value)), (name, str(err.value))


def test_params_rank_bound_and_betas():
    p = exp.TMSParams()
    assert p.rank_bound == 550 and p.all_betas == [0.0, 1.0, 0.3]
    assert exp.TMSParams(models=[[40, 0.9]], top_k=2050).rank_bound == 2050


def test_pipeline_end_to_end_small(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    p = exp.TMSParams(n_features=6, models=[[2, 0.3], [2, 0.9]], n_samples=20, epochs=30,
                      top_k=10, seeds=[0, 1])
    results = exp.run_all(p, progress=False)
    assert len(results) == 4
    res = results[0]
    assert res["beta"][0.3]["raw"].shape == (10, 6) and res["wtw"].shape == (6, 6)
    summary = exp.summarize(results, p)
    assert summary[0]["beta"][1.0]["count_score"].shape == (2,)
    table = exp.claims_table(summary, p)
    assert len(table.rows) == 7
    assert table.rows[2].claim.startswith("beta=1:") and table.rows[3].claim.startswith("beta=0.3:")
    assert [r.kind for r in table.rows] == ["paper"] * 4 + ["ours", "paper", "paper"]
    assert all(r.source.startswith(("v1", "extends v1")) for r in table.rows)
    swapped = exp.TMSParams(**(p.as_dict() | {"betas": [0.3, 1.0]}))  # order must not matter
    assert [r.claim for r in exp.claims_table(summary, swapped).rows] == [r.claim for r in table.rows]
    # one line per model, per (model, beta) and per (model, beta or baseline), and 4 headers
    assert len(exp.key_numbers(summary, p).splitlines()) == 4 + 2 + 2 * 3 + 2 * (3 + 2)
    check = exp.appendix_b_check(p, n_check=5)
    assert check["jacobian_rel_err"] < 1e-10 and check["kernel_rel_err"] < 1e-10
    again = exp.run_all(p, progress=False)   # cached training: identical results
    assert np.array_equal(again[0]["beta"][1.0]["values"], res["beta"][1.0]["values"])


def test_params_accept_yaml_strings_from_papermill():
    p = exp.TMSParams(models="[[10, 0.9]]", betas="[1.0]", seeds="[3, 4]")
    assert p.models == [[10, 0.9]] and p.betas == [1.0] and p.seeds == [3, 4]
    with pytest.raises(ValueError, match=r"models\[0\] S"):
        exp.TMSParams(models="[[10, 1.0]]")
