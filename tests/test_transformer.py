"""Tests of the 1-layer Transformer chapter: data, model, training protocol, kernels, key
frequencies, families, derived parameters, and the pipeline end to end on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import BatchSampler, RandomSampler

import entk_lib
from entk_lib.alignment import subspace_overlap
from entk_lib.cache import STATS
from entk_lib.experiments import transformer as tx
from entk_lib.features import axis_sum_family, fourier_family, fourier_power, key_frequencies, modular_pairs
from entk_lib.grokking import derivative_maxima, derivative_peak, grokking_onset
from entk_lib.models.transformer import (
    ModularTransformer,
    TransformerSetup,
    modular_tokens,
    train_test_split,
    train_transformer,
)
from entk_lib.record import compare_records
from entk_lib.training import single_thread


def tiny(seed=0, p=5, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    model = ModularTransformer(p, d_model=8, n_heads=2, d_mlp=16, generator=gen)
    return model.to(dtype).eval()


# ---------------------------------------------------------------- data


def test_tokens_follow_library_order():
    p = 7
    tokens, labels = modular_tokens(p)
    a, b = modular_pairs(p)
    assert tokens.shape == (p * p, 3) and tokens.dtype == torch.long
    np.testing.assert_array_equal(tokens[:, 0].numpy(), a)
    np.testing.assert_array_equal(tokens[:, 1].numpy(), b)
    assert (tokens[:, 2] == p).all()  # the "=" token
    np.testing.assert_array_equal(labels.numpy(), (a + b) % p)
    assert tokens[3 * p + 5].tolist() == [3, 5, p]


def test_split_is_a_deterministic_partition():
    tr, te = train_test_split(29, 0.5, 0)
    assert len(tr) == int(0.5 * 29 * 29) and len(te) == 29 * 29 - len(tr)
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(29 * 29))
    tr2, _ = train_test_split(29, 0.5, 0)
    np.testing.assert_array_equal(tr, tr2)
    assert not np.array_equal(tr, train_test_split(29, 0.5, 1)[0])
    with pytest.raises(ValueError, match="train_fraction"):
        train_test_split(29, 1.5)


# ---------------------------------------------------------------- model


def test_output_shape_and_causal_reference():
    model = tiny()
    tokens, _ = modular_tokens(5)
    logits = model(tokens)
    assert logits.shape == (25, 5)
    full = model.forward_all_positions(tokens)
    assert full.shape == (25, 3, 5)
    torch.testing.assert_close(logits, full[:, -1])
    # causality: the first position's logits do not depend on the later tokens
    changed = tokens.clone()
    changed[:, 1] = (changed[:, 1] + 1) % 5
    torch.testing.assert_close(model.forward_all_positions(changed)[:, 0], full[:, 0])


def test_initialization_is_seeded_and_has_the_reference_scales():
    a, b = tiny(3), tiny(3)
    for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, msg=n)
    gen = torch.Generator().manual_seed(0)
    big = ModularTransformer(29, d_model=256, n_heads=4, d_mlp=1024, generator=gen)
    expected = {"embed.weight": 256, "attn.W_Q.weight": 256, "mlp.W_in.weight": 1024,
                "mlp.W_out.weight": 256, "unembed.weight": 30}
    for name, fan in expected.items():
        std = dict(big.named_parameters())[name].std().item()
        assert abs(std * fan**0.5 - 1) < 0.05, name


def test_bad_model_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="n_heads"):
        ModularTransformer(5, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="p"):
        tx.TransformerParams(p=30)
    with pytest.raises(ValueError, match="tracked"):
        tx.TransformerParams(tracked=["fc1.weight"])
    with pytest.raises(ValueError, match="seeds"):
        tx.TransformerParams(seeds=[])


# ---------------------------------------------------------------- kernels


def test_every_tensor_uses_the_structured_backend_and_matches_the_generic_one():
    model = tiny(1)
    tokens, _ = modular_tokens(5)
    plan = entk_lib.entk_plan(model, tokens)
    assert {p.backend for p in plan.params.values()} == {"structured"}
    assert set(plan.params) == set(tx.TENSORS)
    for collapse in ("sum_logits", "flattened"):
        fast = entk_lib.entk_by_layer(model, tokens, collapse=collapse, by="parameter")
        slow = entk_lib.entk_by_layer(model, tokens, collapse=collapse, by="parameter", backend="jacobian")
        for name in tx.TENSORS:
            torch.testing.assert_close(fast[name], slow[name], rtol=1e-9, atol=1e-10, msg=name)
        total = entk_lib.entk(model, tokens, collapse=collapse)
        torch.testing.assert_close(sum(fast.values()), total, rtol=1e-9, atol=1e-10)


def test_unembedding_kernel_is_the_gram_matrix_of_the_final_residual():
    # F_i = W_U[i] . r  =>  sum_logits kernel (1/C) sum_ij dF_i . dF_j = r_a . r_b
    model = tiny(2)
    tokens, _ = modular_tokens(5)
    kernel = entk_lib.entk(model, tokens, collapse="sum_logits", layers="unembed")
    captured = {}
    model.unembed.register_forward_hook(lambda m, args, out: captured.setdefault("r", args[0]))
    model(tokens)
    resid = captured["r"]
    torch.testing.assert_close(kernel, resid @ resid.T, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- features


def test_axis_sum_family_closed_form():
    p, ks = 11, [2, 5]
    fam = axis_sum_family(p, ks)
    a, b = modular_pairs(p)
    assert fam.shape == (p * p, 4)
    np.testing.assert_allclose(fam[:, 2], np.cos(2 * np.pi * 5 * a / p) + np.cos(2 * np.pi * 5 * b / p))
    np.testing.assert_allclose(fam[:, 1], np.sin(2 * np.pi * 2 * a / p) + np.sin(2 * np.pi * 2 * b / p))
    # sum and axis-sum modes at the same frequency are orthogonal over the full grid
    assert abs(subspace_overlap(fam, fourier_family(p, "sum", ks))) < 1e-10


def planted_embedding(p, freqs, d=32, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    x = np.arange(p)[:, None]
    w = noise * rng.standard_normal((p + 1, d))
    for k in freqs:
        w[:p] += np.cos(2 * np.pi * k * x / p) * rng.standard_normal(d)
        w[:p] += np.sin(2 * np.pi * k * x / p) * rng.standard_normal(d)
    return w


@pytest.mark.parametrize("freqs", [[1, 12], [3], [2, 7, 11], [4, 5, 6, 13]])
def test_planted_key_frequencies_are_found(freqs):
    w = planted_embedding(29, freqs, seed=len(freqs))
    found = key_frequencies(torch.as_tensor(w), 29)
    assert found.frequencies == sorted(freqs)
    assert found.clear and found.ratio > 5
    np.testing.assert_allclose(found.power.sum(), 1.0)


def test_fourier_power_folds_k_and_p_minus_k():
    p = 29
    x = np.arange(p)[:, None]
    w = np.cos(2 * np.pi * 20 * x / p) * np.ones((1, 3))  # frequency 20 == 29 - 9
    power = fourier_power(w, p)
    assert power.shape == (14,) and int(np.argmax(power)) + 1 == 9
    np.testing.assert_allclose(power[8], 1.0)
    with pytest.raises(ValueError, match="weight"):
        fourier_power(np.ones((3, 2)), p)


def test_family_weights_partial_sums_are_subspace_overlaps():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((121, 9)))
    fam = fourier_family(11, "sum", [1, 3])
    q[:, :4] = np.linalg.qr(np.c_[fam - fam.mean(0), q[:, 4:]])[0][:, :4]  # family in the top 4
    q = np.linalg.qr(q)[0]
    weights = tx.family_weights(q, fam)
    for m in range(1, 10):
        assert abs(weights[:m].sum() - subspace_overlap(q[:, :m], fam)) < 1e-9
    assert tx.capture_rank(q, fam) == 4


# ---------------------------------------------------------------- training and summaries


def test_training_follows_the_reference_protocol():
    """``train_transformer`` (the shared loop) equals, bit for bit, the protocol written out with
    torch's own ``RandomSampler``: one generator seeded with the model seed draws the weights,
    then seeds each epoch's permutation; fused AdamW on minibatches; metrics on all p^2 pairs."""
    setup = TransformerSetup(p=5, d_model=8, n_heads=2, d_mlp=16, train_fraction=0.6, lr=1e-2,
                             weight_decay=0.1, batch_size=4, epochs=6, checkpoint_every=2)
    run = train_transformer(setup, seed=3, use_cache=False)
    tr, te = train_test_split(5, 0.6, 0)
    gen = torch.Generator().manual_seed(3)
    model = ModularTransformer(5, 8, 2, 16, generator=gen)
    tokens, labels = modular_tokens(5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    test_loss, global_state = [], torch.get_rng_state()
    torch.set_rng_state(gen.get_state())  # RandomSampler seeds each epoch from the global generator
    try:
        with single_thread():
            for epoch in range(7):
                for batch in BatchSampler(RandomSampler(range(len(tr))), 4, False) if epoch else []:
                    opt.zero_grad()
                    F.cross_entropy(model(tokens[tr][batch]), labels[tr][batch]).backward()
                    opt.step()
                if epoch % 2 == 0:
                    with torch.no_grad():
                        losses = F.cross_entropy(model(tokens), labels, reduction="none")
                    test_loss.append(float(losses[te].mean()))
    finally:
        torch.set_rng_state(global_state)
    assert run.history["epoch"] == [0, 2, 4, 6] and sorted(run.checkpoints) == [0, 2, 4, 6]
    assert run.history["test_loss"] == test_loss  # exactly
    for name, value in model.state_dict().items():
        assert torch.equal(run.final_state[name], value), name
    assert run.history["train_loss"][-1] < run.history["train_loss"][0]
    assert torch.equal(run.model_at(0).embed.weight, ModularTransformer(
        5, 8, 2, 16, generator=torch.Generator().manual_seed(3)).embed.weight)
    with pytest.raises(ValueError, match="`epoch` 5 has no checkpoint"):
        run.model_at(5)


# ---------------------------------------------------------------- parameters


def test_derived_parameters_follow_epochs_and_p():
    default = tx.TransformerParams()
    assert (default.checkpoint_every, default.full_every, default.top_k) == (20, 20, 40)
    assert set(default.derived_fields) == {"checkpoint_every", "full_every", "top_k"}
    short = tx.TransformerParams(epochs=10)  # failed before these parameters were derived
    assert (short.checkpoint_every, short.full_every) == (10, 10)
    assert short.checkpoint_epochs() == [0, 10] and short.full_epochs() == [0, 10]
    assert tx.TransformerParams(epochs=50).checkpoint_epochs() == [0, 20, 40, 50]
    assert tx.TransformerParams(checkpoint_every=7).full_every == 7
    assert tx.TransformerParams(p=5).top_k == 25
    assert tx.TransformerParams(full_every=100).checkpoint_every == 20


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"epochs": 10, "checkpoint_every": 20}, ("checkpoint_every", "epochs")),
    ({"checkpoint_every": 20, "full_every": 50}, ("full_every", "checkpoint_every")),
    ({"checkpoint_every": 7, "full_every": 20}, ("full_every", "checkpoint_every")),
    ({"p": 5, "top_k": 40}, ("top_k", "p")),
])
def test_a_misfit_explicit_value_names_both_parameters(kwargs, names):
    with pytest.raises(ValueError) as err:
        tx.TransformerParams(**kwargs)
    for name in names:
        assert f"`{name}`" in str(err.value), (name, str(err.value))


# ---------------------------------------------------------------- the pipeline end to end


TINY = dict(p=7, d_model=16, n_heads=2, d_mlp=32, batch_size=8, lr=1e-2, epochs=12, checkpoint_every=4,
            full_every=8, seeds=[1], baseline_draws=50)


def _unembed_input(model, tokens) -> np.ndarray:
    """The final residual stream (N, d_model) that the unembedding reads, in float64."""
    captured = {}
    handle = model.unembed.register_forward_hook(lambda m, args, out: captured.setdefault("r", args[0]))
    with torch.no_grad():
        model(tokens)
    handle.remove()
    return captured["r"].double().numpy()


def test_pipeline_end_to_end_on_a_tiny_transformer(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    params = tx.TransformerParams(**TINY)
    (res,) = tx.run_all(params, progress=False)
    hits = STATS["hits"]
    run = train_transformer(params.setup, 1)
    assert STATS["hits"] == hits + 1  # the run came from the cache
    assert res["history"] == run.history and res["history"]["epoch"] == [0, 4, 8, 12]
    assert res["track"]["unembed.weight"]["epoch"] == [0, 4, 8, 12]  # tracked: every checkpoint
    assert res["track"]["embed.weight"]["epoch"] == [0, 8, 12]  # the others: every full_every
    # the tracked spectrum: the W_U eNTK is the Gram matrix of the final residual stream
    tokens, _ = modular_tokens(7)
    for i, epoch in enumerate(res["track"]["unembed.weight"]["epoch"]):
        resid = _unembed_input(run.model_at(epoch), tokens)
        expected = np.linalg.eigvalsh(resid @ resid.T)[::-1][: params.top_k]
        got = np.asarray(res["track"]["unembed.weight"]["eigenvalues"][i])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * expected[0])
    # Table 2's W_U row: window overlaps from the final eigenvectors, p-values from the null draws
    n_keys = len(res["keys"]["frequencies"])
    rows = tx.table2([res])
    assert len(rows) == len(tx.TENSORS)  # the last epoch is a full set
    row = next(r for r in rows if r["name"] == "unembed.weight")
    vectors = res["final_vectors"]["unembed.weight"]
    assert vectors.shape == (49, 4 * n_keys + 1) and row["dim"] == 2 * n_keys
    family = fourier_family(7, "sum", res["keys"]["frequencies"])
    basis = np.linalg.qr(family - family.mean(0))[0]
    np.testing.assert_allclose(row["sum_window"], np.sum((basis.T @ vectors[:, : 2 * n_keys + 1]) ** 2),
                               rtol=1e-6)
    null = res["baselines"]["sum_window"]
    assert len(null) == 50
    assert row["sum_window_p"] == (1 + np.sum(null >= row["sum_window"])) / 51
    # the chapter's closing pieces run on it
    table = tx.claims_table([res], params)
    assert len(table.rows) == 7
    rec = tx.record([res], params, table).to_dict()
    assert rec["numbers"]["seed=1.final_test_acc"]["value"] == run.history["test_acc"][-1]
    assert len(tx.key_numbers([res], params).rows) == 1


def test_a_run_shortened_to_ten_epochs_goes_through(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    params = tx.TransformerParams(p=5, d_model=16, n_heads=2, d_mlp=32, epochs=10, seeds=[2],
                                  baseline_draws=20)
    (res,) = tx.run_all(params, progress=False)
    assert res["track"]["unembed.weight"]["epoch"] == [0, 10]
    assert len(res["track"]["unembed.weight"]["eigenvalues"][-1]) == 25  # top_k = p^2
    assert len(tx.claims_table([res], params).rows) == 7


def test_grokking_epochs_and_derivative_peak():
    epochs = np.arange(0, 1001, 20)
    acc = 1 / (1 + np.exp(-(epochs - 500) / 50))
    history = {"epoch": epochs, "test_acc": acc}
    onset, half, done = grokking_onset(history, (0.1, 0.5, 0.95))
    assert (onset, half, done) == (400, 500, 660)
    assert grokking_onset({"epoch": epochs, "test_acc": acc * 0.5}, (0.9,)) == [None]
    _, peak = derivative_peak(epochs, acc)
    assert peak == 500


def fake_result(seed, keys, sum_final, axis_final, grok, peak_epoch):
    epochs = list(range(0, 1001, 20))
    ramp = np.clip((np.asarray(epochs) - peak_epoch) / 200 + 0.5, 0, 1)  # steepest at peak_epoch
    dim = 2 * len(keys)
    track = {"epoch": epochs, "sum_window": list(sum_final * ramp), "axis_window": list(axis_final * ramp),
             "eigenvalues": [np.linspace(1, 0.01, 40)] * len(epochs)}
    acc = np.interp(epochs, [0, grok[0], grok[1], grok[2], 1000], [0, 0.1, 0.5, 0.95, 1.0])
    return {"seed": seed, "keys": {"frequencies": keys, "ratio": 10.0, "clear": True},
            "track": {"unembed.weight": track}, "grok": grok,
            "history": {"epoch": epochs, "test_acc": list(acc)}, "dim": dim}


def test_claims_follow_the_stated_criteria():
    params = tx.TransformerParams(epochs=1000, seeds=[1, 2])
    good = [fake_result(1, [2, 3, 7], 5.7, 5.6, [200, 400, 600], 300),
            fake_result(2, [1, 12], 3.9, 3.8, [200, 400, 600], 300)]
    table = tx.claims_table(good, params)
    assert [r.verdict for r in table.rows] == ["reproduced"] * 6 + ["inconclusive"]
    assert "not computed" in table.rows[-1].measured  # the fakes track W_U only
    bad = [fake_result(1, [1, 12], 3.0, 2.0, [200, 400, 600], 700),
           fake_result(2, [1, 5], 3.9, 3.8, [200, 400, None], 300)]
    verdicts = [r.verdict for r in tx.claims_table(bad, params).rows]
    assert verdicts == ["partly reproduced", "partly reproduced", "reproduced", "partly reproduced",
                        "partly reproduced", "partly reproduced", "inconclusive"]


def _two_rises(epochs, first_at, second_at, second_height):
    """An overlap that rises twice: slopes peaking at ``first_at`` and ``second_at``."""
    ep = np.asarray(epochs, dtype=float)
    return 1 / (1 + np.exp(-(ep - first_at) / 40)) + second_height / (1 + np.exp(-(ep - second_at) / 40))


def test_derivative_maxima_lists_competing_peaks_largest_first():
    epochs = np.arange(0, 1001, 20)
    maxima = derivative_maxima(epochs, _two_rises(epochs, 200, 700, 0.8))
    assert [e for e, _ in maxima] == [200, 700] and maxima[0][1] == 1.0 and 0.7 < maxima[1][1] < 0.9
    assert [e for e, _ in derivative_maxima(epochs, _two_rises(epochs, 200, 700, 0.3))] == [200]
    assert derivative_maxima(epochs, -epochs) == []
    with pytest.raises(ValueError, match="rel_height"):
        derivative_maxima(epochs, epochs, rel_height=0.0)


def test_a_seed_with_competing_peaks_on_both_sides_of_the_onset_is_partly():
    params = tx.TransformerParams(epochs=1000, seeds=[1, 2])
    ambiguous = fake_result(1, [2, 3, 7], 5.7, 5.6, [200, 400, 600], 300)
    overlap = 5.7 * _two_rises(ambiguous["track"]["unembed.weight"]["epoch"], 300, 800, 0.9) / 1.9
    ambiguous["track"]["unembed.weight"]["sum_window"] = list(overlap)
    good = fake_result(2, [1, 12], 3.9, 3.8, [200, 400, 600], 300)
    summary = tx.seed_summary(ambiguous, params.checkpoint_every)
    assert summary["peak_ambiguous"] and [e for e, _ in summary["maxima"]] == [300, 800]
    rows = tx.claims_table([ambiguous, good], params).rows
    assert rows[5].verdict == "partly reproduced" and "ambiguous" in rows[5].measured
    assert tx.claims_table([good], params.__class__(epochs=1000, seeds=[2])).rows[5].verdict == "reproduced"


def test_record_of_fake_results_checks_keys_exactly():
    params = tx.TransformerParams(epochs=1000, seeds=[1, 2])
    results = [fake_result(1, [2, 3, 7], 5.7, 5.6, [200, 400, 600], 300),
               fake_result(2, [1, 12], 3.9, 3.8, [200, 400, 600], 300)]
    for r in results:
        r["baselines"] = {"sum_window": np.full(50, 0.1), "axis_window": np.full(50, 0.1)}
        r["history"]["test_acc"][-1] = 1.0
    rec = tx.record(results, params, tx.claims_table(results, params)).to_dict()
    assert len(rec["verdicts"]) == 7 and rec["numbers"]["seed=2.key_frequencies[1]"]["value"] == 12
    assert compare_records(rec, rec) == []
    moved = json.loads(json.dumps(rec))
    moved["numbers"]["seed=2.key_frequencies[1]"]["value"] = 11
    assert [p.split(":")[0] for p in compare_records(rec, moved)] == ["seed=2.key_frequencies[1]"]
