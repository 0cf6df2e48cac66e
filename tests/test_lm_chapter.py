"""The language-model chapter's pipeline, end to end, on a tiny randomly initialised Gemma-3.

No download: the model (3 layers, d = 16), a word-level tokenizer and a dictionary part-of-speech
tagger are built here, with a few stories written from templates. Each step of the chapter runs
as the notebook calls it (labelled windows -> eNTK eigenpairs -> probes and p-values -> layer
sweep -> steering -> claims table and record) in a few seconds; then the parameters' derived
values and misfit errors, and the claims, record and tables on synthetic inputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

transformers = pytest.importorskip("transformers")

from conftest import check_record_well_formed  # noqa: E402
from entk_lib.experiments import language_model as lmx  # noqa: E402
from entk_lib.lm import kernel as lk  # noqa: E402
from entk_lib.lm import probe as lp  # noqa: E402
from entk_lib.params import DERIVED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("eNTK", "PCA", "random")

NOUNS = ["cat", "dog", "mat", "ball", "tree", "car", "bird", "cake", "box", "hat", "sun", "boat"]
VERBS = ["sat", "ran", "saw", "ate", "hid", "got", "had", "made", "took", "fed", "hugged", "found"]
POS = {**{w: "NOUN" for w in NOUNS}, **{w: "VERB" for w in VERBS},
       "the": "DET", "a": "DET", ".": "PUNCT", "and": "CCONJ", "Tom": "PROPN", "it": "PRON"}


# ---- a tiny world: model, tokenizer, tagger, stories -----------------------------------------

class _Token:
    def __init__(self, start: int, text: str):
        self.idx, self.text, self.pos_, self.is_space = start, text, POS.get(text, "X"), False


class DictionaryTagger:
    """A stand-in for a spaCy pipeline: ``pipe`` yields, per text, tokens with ``idx``, ``text``,
    ``pos_`` (from :data:`POS`, "X" for unknown words) and ``is_space``."""

    def pipe(self, texts, batch_size: int = 64):
        for text in texts:
            yield [_Token(m.start(), m.group()) for m in re.finditer(r"\w+|[^\w\s]", text)]


def _stories(n: int = 12, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        sentences = [f"{rng.choice(['the', 'a', 'Tom'])} {rng.choice(NOUNS)} {rng.choice(VERBS)} the "
                     f"{rng.choice(NOUNS)} and {rng.choice(VERBS)} it." for _ in range(6)]
        out.append(" ".join(sentences))
    return out


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<bos>", "<unk>", *POS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", pad_token="<pad>",
                                   unk_token="<unk>")


def _tiny_gemma(vocab_size: int):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=24,
                              num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                              max_position_embeddings=64, sliding_window=4,
                              layer_types=["sliding_attention", "full_attention", "full_attention"],
                              attn_implementation="eager")
    model = Gemma3ForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.3)
    model.requires_grad_(False)
    return model


def _params(**changes) -> lmx.LMParams:
    """The tiny run: 2 tags x 6 windows of 6 tokens, k = 4, main layer 1, sweep over 0 and 1."""
    kw = {"tags": ["NOUN", "VERB"], "per_tag": 6, "context": 6, "k": 4, "layer": 1, "sweep_layers": [0, 1],
          "n_splits": 2, "n_permutations": 50, "batch_size": 16}
    return lmx.LMParams(**{**kw, **changes})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENTK_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))  # the unembedding root
        tok = _tokenizer()
        yield {"model": _tiny_gemma(len(tok)), "tok": tok, "nlp": DictionaryTagger(), "stories": _stories()}


@pytest.fixture(scope="module")
def run(world):
    """The chapter's pipeline at :func:`_params`, step by step as the notebook calls it."""
    model, tok, nlp, stories = world["model"], world["tok"], world["nlp"], world["stories"]
    params = _params()
    lmx.check_model(params, model)
    windows = lmx.build_windows(model, tok, nlp, stories, params)
    acts, labels = windows["acts"], windows["labels"]
    main = lmx.entk_layer(model, acts, params.layer, params, params.lanczos_steps, progress=False)
    probe_out = lmx.probes(main["scores"], acts, labels, params.layer, params)
    pvals = lmx.p_values(probe_out, labels, params)
    sweep = lmx.layer_sweep(model, acts, labels, params, main, progress=False)
    steer = lmx.steering_test(model, tok, nlp, windows, main, probe_out, params, progress=False)
    table = lmx.claims_table(probe_out, pvals, sweep, steer, params)
    rec = lmx.record(windows, main["lanczos"], probe_out, pvals, sweep, steer, params, table)
    return {"params": params, "windows": windows, "main": main, "probe": probe_out, "pvals": pvals,
            "sweep": sweep, "steer": steer, "table": table, "record": rec}


# ---- the pipeline, end to end -----------------------------------------------------------------

def test_windows_are_balanced_and_labelled_by_the_greedy_word(world, run):
    params, w = run["params"], run["windows"]
    labels, n = w["labels"], params.per_tag * len(params.tags)
    assert labels.tolist() == [t for t in params.tags for _ in range(params.per_tag)]
    assert w["ids"].shape == (n, params.context + 1) and (w["ids"][:, 0] == world["tok"].bos_token_id).all()
    assert w["acts"].resid_last.shape == (n, 4, 16) and w["acts"].final_last.shape == (n, 16)
    # the label is the part of speech of the model's greedy next word (which agrees with the true one)
    assert [POS.get(p.strip(), "X") for p in w["predicted"]] == labels.tolist()
    greedy = world["tok"].convert_ids_to_tokens(w["acts"].greedy.tolist())
    assert [p.strip() for p in w["predicted"]] == greedy
    for agreeing, forwarded in w["agreement"].values():
        assert params.per_tag <= agreeing <= forwarded
    # the kept activations (each round keeps only its kept windows') are those of the kept ids
    fresh = lk.capture_windows(world["model"], w["ids"], params.layers, batch_size=len(w["ids"]))
    torch.testing.assert_close(w["acts"].final_last, fresh.final_last)
    for layer in params.layers:
        torch.testing.assert_close(w["acts"].layer_inputs[layer], fresh.layer_inputs[layer])
    assert w["n_forwarded"] >= sum(f for _, f in w["agreement"].values())
    # the window's text ends right where the window's tokens do
    assert all(c.split()[-1] == world["tok"].decode([int(i[-1])]) for c, i in zip(w["contexts"], w["ids"],
                                                                                   strict=True))
    again = lmx.build_windows(world["model"], world["tok"], world["nlp"], world["stories"], params)
    assert torch.equal(again["ids"], w["ids"])  # seeded


def test_entk_eigenpairs_match_the_dense_kernel(run):
    params, main = run["params"], run["main"]
    op, res = main["op"], main["lanczos"]
    n = op.shape[0]
    assert res.values.shape == (params.k,) and res.vectors.shape == (n, params.k)
    assert res.steps == params.lanczos_steps == 2 * params.k
    dense = op.matmat(np.eye(n))
    top = np.sort(np.linalg.eigvalsh(0.5 * (dense + dense.T)))[::-1][:params.k]
    np.testing.assert_allclose(res.values[:2], top[:2], rtol=1e-3)  # 8 steps: the top two converge
    assert np.all(res.values <= top * (1 + 1e-9))  # Ritz values never exceed the true ones
    np.testing.assert_allclose(res.vectors.T @ res.vectors, np.eye(params.k), atol=1e-8)
    scores, dirs = lk.eigenvector_scores(res.vectors, *run["windows"]["acts"].final_last.shape)
    np.testing.assert_array_equal(main["scores"], scores)
    assert main["scores"].shape == (12, params.k) and main["directions"].shape == (params.k, 16)


def test_probes_and_p_values_are_wired_to_the_right_scores(run):
    params, probe_out, w = run["params"], run["probe"], run["windows"]
    labels = w["labels"]
    x = w["acts"].resid_last[:, params.layer + 1].double().numpy()
    pca = probe_out["scores"]["PCA"]
    np.testing.assert_allclose(pca, (x - x.mean(0)) @ probe_out["directions"]["PCA"].T, atol=1e-10)
    assert np.all(np.diff(pca.var(0)) <= 1e-12)  # principal components by decreasing variance
    for m in METHODS:
        r = probe_out["results"][m]
        assert r.ap.shape == (params.n_splits, len(params.tags)) and r.classes == params.tags
        # split 1, tag VERB: the reported AP is the AP of the chosen signed column on the test half
        test, col = r.tests[1], r.direction[1, 1]
        y = labels[test] == "VERB"
        expected = lp.average_precision(r.sign[1, 1] * probe_out["scores"][m][test, col], y)
        assert r.ap[1, 1] == pytest.approx(expected)
    for metric in ("ap", "auroc"):
        per_tag, macro = run["pvals"][metric]
        assert per_tag.shape == (len(params.tags),)
        counts = np.r_[per_tag, macro] * (1 + params.n_permutations)
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)  # (1 + #) / (1 + n)
        direct = lp.paired_permutation_test(probe_out["scores"]["eNTK"], probe_out["results"]["eNTK"],
                                            probe_out["scores"]["PCA"], probe_out["results"]["PCA"], labels,
                                            metric=metric, n_permutations=params.n_permutations,
                                            seed=params.seed)
        np.testing.assert_array_equal(direct, per_tag)


def test_sweep_reuses_the_main_layer_and_solves_the_others(world, run):
    params, sweep = run["params"], run["sweep"]
    assert list(sweep) == params.sweep_layers == [0, 1]
    main_macro = {m: r.macro() for m, r in run["probe"]["results"].items()}
    assert sweep[1] == main_macro
    other = lmx.entk_layer(world["model"], run["windows"]["acts"], 0, params, params.sweep_steps,
                           progress=False)
    assert other["lanczos"].steps == params.sweep_steps == 4
    again = lmx.probes(other["scores"], run["windows"]["acts"], run["windows"]["labels"], 0, params)
    assert sweep[0] == {m: r.macro() for m, r in again["results"].items()}
    other["op"].release()


def test_steering_leaves_the_unchanged_model_on_its_labels(run):
    params, steer, w = run["params"], run["steer"], run["windows"]
    test = run["probe"]["results"]["eNTK"].tests[0]
    np.testing.assert_array_equal(steer["test"], test)
    # without intervention the greedy word is the window's own (agreeing) label
    np.testing.assert_array_equal(steer["base_pos"], w["labels"][test])
    h = w["acts"].resid_last[:, params.layer + 1].double()
    assert steer["alpha"] == pytest.approx(params.steer_scale * float((h - h.mean(0)).norm(dim=-1).mean()))
    for m in METHODS:
        for mode in ("steer", "ablate"):
            values = steer[m][mode]
            assert values.shape == (len(params.tags),) and np.all((values >= 0) & (values <= 1))
            assert np.all(values * test.size * 2 == np.round(values * test.size * 2))  # halves of counts
        assert steer["removed"][m].shape == (len(params.tags),) and np.all(steer["removed"][m] > 0)


def test_claims_and_record_of_the_run(run):
    table = run["table"]
    assert len(table.rows) == 5
    d = run["record"].to_dict()
    check_record_well_formed(d, table, "07_language_model")
    num = {k: v["value"] for k, v in d["numbers"].items()}
    assert num["n_windows"] == 12 and num["windows[NOUN]"] == num["windows[VERB]"] == 6
    assert num["macro.ap.entk"] == pytest.approx(run["probe"]["results"]["eNTK"].macro()["ap"])
    assert num["macro.p.auroc"] == pytest.approx(run["pvals"]["auroc"][1])
    assert num["sweep.ap.pca[layer=0]"] == pytest.approx(run["sweep"][0]["PCA"]["ap"])
    assert d["params"]["lanczos_steps"] == 8 and d["params"]["sweep_steps"] == 4
    macro = run["probe"]["results"]["eNTK"].macro()["ap"], run["probe"]["results"]["PCA"].macro()["ap"]
    assert table.rows[0].verdict == ("not reproduced" if macro[0] <= macro[1] else
                                     "reproduced" if run["pvals"]["ap"][1] < 0.05 else "partly reproduced")


def test_check_model_names_what_the_model_cannot_hold(world):
    model = world["model"]
    lmx.check_model(_params(), model)
    for changes, name in [({"layer": 3}, "`layer`"), ({"sweep_layers": [0, 5]}, "`sweep_layers`"),
                          ({"module": "mlp.gate"}, "`module`"), ({"context": 64}, "`context`"),
                          ({"k": 20, "per_tag": 12}, "`k`")]:
        with pytest.raises(ValueError, match=name):
            lmx.check_model(_params(**changes), model)
    lmx.check_model(_params(module="self_attn.v_proj", context=63), model)


# ---- parameters: derived values and misfits ---------------------------------------------------

def test_steps_follow_k_by_default():
    default = lmx.LMParams()
    assert (default.lanczos_steps, default.sweep_steps) == (50, 30)  # what the chapter executed
    assert set(default.derived_fields) == {"lanczos_steps", "sweep_steps"}
    assert lmx.LMParams.defaults()["lanczos_steps"] == DERIVED
    bigger = lmx.LMParams(k=40)  # a larger budget alone no longer breaks the sweep's steps
    assert (bigger.lanczos_steps, bigger.sweep_steps) == (80, 48)
    explicit = lmx.LMParams(lanczos_steps=30, sweep_steps=25)
    assert (explicit.lanczos_steps, explicit.sweep_steps) == (30, 25)
    assert getattr(explicit, "derived_fields", ()) == ()


@pytest.mark.parametrize("changes, first, second", [
    ({"lanczos_steps": 10}, "`lanczos_steps`", "`k`=25"),
    ({"k": 40, "sweep_steps": 30}, "`sweep_steps`", "`k`=40"),
    ({"k": 300}, "`k`", "`per_tag` \\* len\\(`tags`\\) = 32 \\* 8 = 256"),
    ({"per_tag": 4, "tags": ["NOUN", "VERB"], "k": 9}, "`k`", "`per_tag`"),
])
def test_a_misfit_names_both_parameters(changes, first, second):
    with pytest.raises(ValueError, match=first) as err:
        lmx.LMParams(**changes)
    assert re.search(second, str(err.value)), str(err.value)


@pytest.mark.parametrize("changes, name", [
    ({"n_permutations": 19}, "`n_permutations`"), ({"tags": ["NOUN", "NOUN"]}, "`tags`"),
    ({"module": ""}, "`module`"), ({"tagger": ""}, "`tagger`"),
    ({"lanczos_steps": "many"}, "`lanczos_steps`"),
])
def test_bad_values_name_the_parameter(changes, name):
    with pytest.raises(ValueError, match=name):
        lmx.LMParams(**changes)


def test_permutations_can_reach_the_claims_threshold():
    from entk_lib.experiments.language_model.params import MIN_PERMUTATIONS

    assert 1 / (1 + MIN_PERMUTATIONS) < lmx.CRITERIA["p_value"] <= 1 / MIN_PERMUTATIONS


def test_the_paper_configuration_validates():
    paper = yaml.safe_load((ROOT / "book" / "params" / "language_model.paper.yaml").read_text())
    params = lmx.LMParams(**paper)
    assert (params.lanczos_steps, params.sweep_steps, params.k) == (50, 50, 25)
    assert params.layers == list(range(18))


# ---- claims, record, note and tables on synthetic inputs -------------------------------------

def _synthetic(tags, e_ap=0.5, p_ap=0.4, p_value=0.01, sweep_layers=(14, 16), seed=0):
    rng = np.random.default_rng(seed)
    n = len(tags)

    def result(ap):
        metrics = [np.full((2, n), ap), np.full((2, n), ap + 0.3), rng.uniform(0.1, 0.6, (2, n))]
        return lp.ProbeResult(list(tags), np.zeros((2, n), int), np.ones((2, n)), *metrics, [])

    probe = {"results": {"eNTK": result(e_ap), "PCA": result(p_ap), "random": result(0.2)}}
    pvals = {m: (np.r_[0.01, np.full(n - 1, 0.5)], p_value) for m in ("ap", "auroc")}
    sweep = {layer: {m: {"ap": rng.uniform(0.2, 0.6), "auroc": rng.uniform(0.6, 0.9)} for m in METHODS}
             for layer in sweep_layers}
    steer = {m: {"steer": rng.uniform(0, 1, n), "ablate": rng.uniform(0, 1, n)} for m in METHODS}
    steer["removed"] = {m: rng.uniform(1e3, 2e4, n) for m in METHODS}
    windows = {"labels": np.repeat(tags, 4), "agreement": {t: (4, 10) for t in tags}}
    res = lk.LanczosResult(np.array([4.0, 2.0, 1.0]), np.zeros((3, 3)), np.zeros(3), 6)
    return {"windows": windows, "res": res, "main_probe": probe, "pvals": pvals, "sweep": sweep,
            "steer": steer}


def test_claims_follow_the_threshold_and_an_empty_sweep_drops_its_row():
    params = lmx.LMParams(sweep_layers=[])
    x = _synthetic(params.tags, p_value=lmx.CRITERIA["p_value"], sweep_layers=())
    table = lmx.claims_table(x["main_probe"], x["pvals"], x["sweep"], x["steer"], params)
    assert len(table.rows) == 4 and "sweep" not in " ".join(r.claim for r in table.rows)
    # p equal to the threshold is not below it: ahead of PCA, so only partly
    assert [r.verdict for r in table.rows[:2]] == ["partly reproduced"] * 2
    assert table.rows[0].details == "tags with p < 0.05: 1/8"
    d = lmx.record(**x, params=params, table=table).to_dict()
    check_record_well_formed(d, table, "07_language_model")
    assert not any(k.startswith("sweep.") for k in d["numbers"])
    assert d["numbers"]["eigenvalue_over_largest[2]"]["value"] == 0.25
    assert d["numbers"]["tags_p_below_0.05.ap"]["value"] == 1


def test_closing_note_names_the_measured_outcome():
    params = lmx.LMParams(sweep_layers=[14, 16])
    x = _synthetic(params.tags)
    gaps = {layer: r["eNTK"]["ap"] - r["PCA"]["ap"] for layer, r in x["sweep"].items()}
    best = max(gaps, key=gaps.get)
    note = lmx.closing_note(x["main_probe"], x["pvals"], x["sweep"], x["steer"], params, 61.4)
    assert "macro AP 0.500" in note and "against 0.400" in note
    assert "leads PCA in AP for 8 of 8 tags" in note and "p < 0.05 for PUNCT and p = 0.010" in note
    assert f"largest at layer {best} " in note and note.endswith("The chapter ran in 61 s.")


def test_tables_hold_the_numbers_right_aligned():
    params = lmx.LMParams(sweep_layers=[14, 16])
    x = _synthetic(params.tags)
    per_tag = lmx.per_tag_table(x["main_probe"], x["pvals"], params)
    assert per_tag.header[:4] == ["tag", "AP:eNTK", "AP:PCA", "AP:rand"] and len(per_tag.rows) == 9
    assert per_tag.rows[-1][:3] == ["macro", "0.500", "0.400"] and per_tag.rows[0][-2:] == ["0.010", "0.010"]
    lines = str(per_tag).splitlines()
    assert len({len(line) for line in lines}) == 1 and lines[0].startswith("  tag")  # right-aligned
    sweep = lmx.sweep_table(x["sweep"])
    assert [r[0] for r in sweep.rows] == ["14", "16"]
    assert sweep.rows[1][5] == f"{x['sweep'][16]['PCA']['auroc']:.3f}"
    steer = lmx.steering_table(x["steer"], params)
    assert steer.rows[-1][:4] == ["|h.e| removed", "", "", ""]
    assert steer.rows[-2][1] == f"{x['steer']['eNTK']['steer'].mean():.3f}"
