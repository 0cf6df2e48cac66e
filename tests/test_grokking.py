"""Tests for the grokking timing helpers (synthetic curves) and the grokking chapter's pipeline."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from entk_lib.experiments import grokking as gk  # noqa: E402
from entk_lib.experiments.grokking.claims import _jump_at_transition  # noqa: E402
from entk_lib.experiments.grokking.pipeline import _faithfulness, _largest_past  # noqa: E402
from entk_lib.features import cliff_windows  # noqa: E402
from entk_lib.grokking import (  # noqa: E402
    central_difference,
    derivative_peak,
    first_epoch_reaching,
    grokking_onset,
    rise_window,
)
from entk_lib.laplacian import laplacian_pair, pair_families, pair_match, two_stage_rotation  # noqa: E402
from entk_lib.linalg import centered, eigh_top  # noqa: E402
from entk_lib.models.modular import train_modular  # noqa: E402
from entk_lib.params import DERIVED  # noqa: E402
from entk_lib.regression import kernel_regression, kernel_target_alignment  # noqa: E402
from entk_lib.spectrum import describe_drops  # noqa: E402


def _sigmoid(t, center, width):
    return 1.0 / (1.0 + np.exp(-(np.asarray(t, dtype=float) - center) / width))


# ---- onset ------------------------------------------------------------------------------------

def test_onset_of_a_sigmoid_matches_its_closed_form():
    epochs = np.arange(0, 501)
    center, width = 84.3, 6.0
    history = {"epoch": epochs.tolist(), "test_acc": _sigmoid(epochs, center, width).tolist(),
               "train_acc": _sigmoid(epochs, 20.0, 3.0).tolist()}
    onset, done = grokking_onset(history)
    assert onset == int(np.ceil(center))  # acc >= 1/2 from t >= center
    assert done == int(np.ceil(center + width * np.log(19.0)))  # acc >= 0.95
    (memorized,) = grokking_onset(history, (0.95,), key="train_acc")
    assert memorized == int(np.ceil(20.0 + 3.0 * np.log(19.0)))


def test_onset_uses_recorded_epochs_only_and_none_when_never():
    history = {"epoch": [0, 10, 20, 30], "test_acc": [0.0, 0.2, 0.7, 0.9]}
    assert grokking_onset(history) == [20, None]
    assert grokking_onset(history, (0.2,)) == [10]  # reaching the level counts
    assert first_epoch_reaching([0, 1], [0.1, 0.2], 0.5) is None


@pytest.mark.parametrize("levels, match", [((0.0,), "levels"), ((1.5,), "levels")])
def test_onset_rejects_bad_levels(levels, match):
    with pytest.raises(ValueError, match=match):
        grokking_onset({"epoch": [0, 1], "test_acc": [0.0, 1.0]}, levels)


def test_onset_rejects_bad_history():
    with pytest.raises(ValueError, match="test_acc"):
        grokking_onset({"epoch": [0, 1], "acc": [0.0, 1.0]})
    with pytest.raises(ValueError, match="increasing"):
        grokking_onset({"epoch": [0, 2, 1], "test_acc": [0.0, 0.5, 1.0]})
    with pytest.raises(ValueError, match="same length"):
        grokking_onset({"epoch": [0, 1, 2], "test_acc": [0.0, 1.0]})


# ---- central differences --------------------------------------------------------------------

def test_central_difference_is_exact_for_lines_everywhere():
    x = np.array([0.0, 3.0, 4.0, 10.0, 11.5])
    assert np.allclose(central_difference(x, 2.5 * x - 1.0), 2.5)


def test_central_difference_is_exact_for_quadratics_inside_a_nonuniform_grid():
    x = np.array([0.0, 1.0, 3.0, 4.0, 7.0, 8.0])
    y = 0.5 * x**2 - 3 * x + 2
    d = central_difference(x, y)
    assert np.allclose(d[1:-1], x[1:-1] - 3)
    # ends: one-sided first differences
    assert np.isclose(d[0], (y[1] - y[0]) / (x[1] - x[0]))
    assert np.isclose(d[-1], (y[-1] - y[-2]) / (x[-1] - x[-2]))


def test_central_difference_on_a_uniform_grid_is_the_symmetric_quotient():
    x = np.arange(0, 100, 10)
    y = np.random.default_rng(0).standard_normal(x.size)
    d = central_difference(x, y)
    assert np.allclose(d[1:-1], (y[2:] - y[:-2]) / 20.0)


def test_derivative_peak_finds_the_inflection_of_a_sigmoid():
    epochs = np.arange(0, 501, 10)
    overlap = 100 * _sigmoid(epochs, 70.0, 15.0)
    slope, peak = derivative_peak(epochs, overlap)
    assert peak == 70 and slope.shape == epochs.shape
    assert np.isclose(slope.max(), (overlap[8] - overlap[6]) / 20)
    # asymmetric bump: the peak moves with the bump
    _, peak2 = derivative_peak(epochs, 100 * _sigmoid(epochs, 143.0, 12.0))
    assert peak2 in (140, 150)


def test_central_difference_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        central_difference([0.0], [1.0])
    with pytest.raises(ValueError, match="increasing"):
        central_difference([0.0, 0.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        central_difference([0.0, 1.0], [1.0, np.nan])


# ---- rise window ----------------------------------------------------------------------------

def test_rise_window_of_a_sigmoid_and_of_an_exponential():
    epochs = np.arange(0, 1001)
    low, high = rise_window(epochs, _sigmoid(epochs, 400.0, 20.0))
    # from ~0 to ~1: the 10% and 90% crossings at center -/+ width * log(9)
    assert abs(low - (400 - 20 * np.log(9))) <= 1 and abs(high - (400 + 20 * np.log(9))) <= 1
    # exponential growth on [0, 100] then flat: log-rise is linear -> 10% and 90% of the time
    values = np.exp(np.minimum(epochs, 100) / 10.0)
    assert rise_window(epochs, values, log=True) == (10, 90)
    assert rise_window(epochs, -values) is None  # never rises


def test_rise_window_rejects_bad_levels_and_log_of_negative():
    with pytest.raises(ValueError, match="high"):
        rise_window([0, 1], [0.0, 1.0], low=0.5, high=0.4)
    with pytest.raises(ValueError, match="positive"):
        rise_window([0, 1], [0.0, 1.0], log=True)


# ---- chapter pieces ----------------------------------------------------------------------------

def test_second_cliff_uses_the_books_cliff_rule():
    """The chapter's cliff test is entk_lib's rule: a 1.4 drop at c2 on a flat background is a
    cliff (prominent), the same drop among drops like it is not."""
    params = gk.GrokkingParams(p=5, epochs=30, checkpoint_every=10, top_k=25, spectrum_epochs=[0, 30],
                               rotation_epochs=[10])
    c1, c2 = params.cliffs
    rng = np.random.default_rng(0)
    flat = np.concatenate([[1.0], np.cumprod(1 / rng.uniform(1.0, 1.04, 24))])
    flat[c1:] /= 3.0
    flat[c2:] /= 1.4
    busy = np.concatenate([[1.0], np.cumprod(1 / rng.uniform(1.3, 1.5, 24))])
    busy[c2:] *= busy[c2 - 1] / busy[c2] / 1.4
    assert describe_drops(flat, params.rule).cliff[[c1, c2]].all()
    assert not describe_drops(busy, params.rule).cliff[c2]
    assert _largest_past(describe_drops(flat, params.rule), c2, c1 + 1)


def test_params_validation_and_setup():
    with pytest.raises(ValueError, match="`spectrum_epochs`"):
        gk.GrokkingParams(spectrum_epochs=[0, 65])
    with pytest.raises(ValueError, match="`rotation_epochs`"):
        gk.GrokkingParams(checkpoint_every=20, rotation_epochs=[40, 50])
    with pytest.raises(ValueError, match="`top_k`"):
        gk.GrokkingParams(top_k=100)
    with pytest.raises(ValueError, match="`checkpoint_every`"):
        gk.GrokkingParams(checkpoint_every=0)
    with pytest.raises(ValueError, match="`cliff_min_ratio`"):
        gk.GrokkingParams(cliff_min_ratio=1.0)
    with pytest.raises(ValueError, match="`cliff_prominence`"):
        gk.GrokkingParams(cliff_prominence=-1)
    coarse = gk.GrokkingParams(checkpoint_every=20, rotation_epochs=[40, 60, 80, 100, 140, 500])
    assert coarse.setup.checkpoint_every == 10 and coarse.checkpoints()[:3] == [0, 20, 40]
    params = gk.GrokkingParams(p=5, epochs=30, checkpoint_every=7, top_k=19, spectrum_epochs=[0, 30],
                               rotation_epochs=[7])
    assert params.setup.checkpoint_every == 7 and params.checkpoints() == [0, 7, 14, 21, 28, 30]
    assert params.cliffs == (9, 17)


def test_fast_alignment_and_stacked_regression_match_the_library():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((30, 40))
    kernel = f @ f.T / 40
    y = np.eye(5)[rng.integers(0, 5, 30)]
    fast = kernel_target_alignment(centered(kernel), centered(y), center=False)
    assert np.isclose(fast, kernel_target_alignment(kernel, y))
    train, test = np.arange(20), np.arange(20, 30)
    refs = {"a": rng.standard_normal((30, 5)), "b": rng.standard_normal((30, 5))}
    final = rng.standard_normal((30, 5))
    out = _faithfulness(kernel, refs, y, final, train, test)
    for name, f0 in refs.items():
        lin = kernel_regression(kernel[np.ix_(train, train)], y[train], kernel[np.ix_(test, train)],
                                f0_train=f0[train], f0_test=f0[test])
        resid = np.sum((lin - final[test]) ** 2)
        assert np.isclose(out[f"{name}_r2"], 1 - resid / np.sum((final[test] - final[test].mean(0)) ** 2))


def test_the_chapters_eigensolver_matches_top_eigenpairs():
    """The chapter diagonalizes each checkpoint with entk_lib.linalg.eigh_top (a full eigh):
    the same values and sign-fixed vectors as the library's general solver."""
    import entk_lib

    rng = np.random.default_rng(2)
    f = rng.standard_normal((25, 30))
    kernel = f @ f.T
    values, vectors = eigh_top(kernel, 6)
    ref_values, ref_vectors = entk_lib.top_eigenpairs(kernel, 6)
    assert np.allclose(values, ref_values) and np.allclose(vectors, ref_vectors)


def _tiny_params(**kw):
    base = dict(p=5, width=8, epochs=30, checkpoint_every=10, spectrum_epochs=[0, 10, 30],
                rotation_epochs=[10, 30], seeds=[0, 1], top_k=20)
    return gk.GrokkingParams(**(base | kw))


def test_pipeline_end_to_end_on_a_tiny_network(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    params = _tiny_params()
    results = gk.run_all(params, progress=False)
    r = results[0]
    assert list(r["epochs"]) == [0, 10, 20, 30] and r["values"].shape == (4, 20)
    assert r["drift"][0] == 0 and r["drift_normalized"][0] == 0
    for key in ("first_a", "first_b", "second_sum", "second_diff"):
        assert np.all((r[key] >= -1e-9) & (r[key] <= 100 + 1e-9))
    assert sorted(r["second_vectors"]) == [10, 30] and r["second_vectors"][10].shape == (25, 8)
    assert r["vectors"].shape == (4, 25, 17) and "vectors" not in results[1]
    summaries = [gk.summarize_seed(res, params) for res in results]
    table = gk.claims_table(summaries, results, params)
    assert len(table.rows) == 6
    assert len(gk.key_numbers(summaries, results, params).splitlines()) == 16
    numbers = gk.record(summaries, results, params, table).to_dict()["numbers"]
    assert numbers["onset[seed=1]"]["value"] == (None if summaries[1]["onset"] is None
                                                 else float(summaries[1]["onset"]))
    assert np.isclose(numbers["final_overlap.sum[seed=0]"]["value"], r["second_sum"][-1] / 100)
    assert all(n["value"] is None or np.isfinite(n["value"]) for n in numbers.values())
    for fig in (gk.plot_training(results, summaries), gk.plot_spectra(r, summaries[0], params),
                gk.plot_cliff_evolution(results, summaries, params),
                gk.plot_overlap(results, summaries, params), gk.plot_beyond(results, summaries, params),
                gk.plot_explorer_static(r, params)):
        plt.close(fig)
    widget = gk.explorer(r, params)
    assert len(widget.children) == 2
    plt.close("all")


def _summary(seed, onset, peak, **kw):
    base = {"seed": seed, "onset": onset, "complete": onset + 20, "memorized": 30, "first_cliff_init": 4.0,
            "first_visible_init": True, "first_prominence_init": 40.0, "second_first_seen": onset,
            "second_from": onset, "second_largest_from": onset, "second_ratio_final": 1.5,
            "second_prominence_final": 12.0,
            "mag_rise": (onset - 10, onset + 10), "acc_rise": (onset - 10, onset + 10), "mag_gain": 10.0,
            "sum_peak": peak, "peak_gap": peak - onset, "align_peak": onset, "align_gap": 0,
            "faithful_init": None, "faithful_tangent": onset + 30}
    return base | kw


def test_claims_follow_the_stated_criteria():
    params = gk.GrokkingParams()
    good = [_summary(0, 80, 70), _summary(1, 85, 90)]
    verdicts = [row.verdict for row in gk.claims_table(good, [], params).rows]
    assert verdicts == ["reproduced"] * 6
    mixed = [_summary(0, 80, 70, first_visible_init=False, second_first_seen=140, mag_rise=(10, 70),
                      faithful_tangent=60, align_gap=-30),
             _summary(1, 85, 40, second_first_seen=None)]
    verdicts = [row.verdict for row in gk.claims_table(mixed, [], params).rows]
    assert verdicts == ["partly reproduced", "partly reproduced", "partly reproduced", "partly reproduced",
                        "partly reproduced", "partly reproduced"]
    # "at" the transition: a rise that ends where the accuracy's begins is only partly at it
    assert _jump_at_transition((20, 80), (80, 100), 20) == (False, True)
    assert _jump_at_transition((70, 100), (80, 100), 20) == (True, True)
    rotation = gk.rotation_row([{40: {"score": 0.9}, 100: {"score": 0.9}}] * 2, good, np.array([0.01]),
                               params)
    table = gk.claims_table(good, [], params, rotation_row=rotation)
    assert len(table.rows) == 7 and [r.kind for r in table.rows][-2:] == ["ours", "ours"]


def _record_inputs(**changes):
    """Synthetic summaries, results, rotations and null of two seeds (``changes`` edit seed 0)."""
    summaries = [_summary(0, 80, 70, **changes), _summary(1, 85, 90, faithful_init=None, mag_rise=None)]
    results = [{"seed": s["seed"], "second_sum": np.array([10.0, 94.4]), "second_diff": np.array([5.0, 88.7])}
               for s in summaries]
    rotations = [{40: {"score": 0.1}, 100: {"score": 0.7}}, {40: {"score": 0.2}, 100: {"score": 0.6}}]
    return summaries, results, rotations, np.array([0.01, 0.012])


def test_record_holds_verdicts_and_key_numbers():
    from entk_lib.record import KINDS, compare_records

    params = gk.GrokkingParams()
    summaries, results, rotations, null = _record_inputs()
    table = gk.claims_table(summaries, results, params, rotation_row=gk.rotation_row(
        rotations, summaries, null, params))
    rec = gk.record(summaries, results, params, table, rotations, null)
    d = rec.to_dict()
    assert d["chapter"] == "04_grokking" and len(d["verdicts"]) == len(table.rows) == 7
    assert all(n["kind"] in KINDS for n in d["numbers"].values())
    assert all(n["value"] is None or np.isfinite(n["value"]) for n in d["numbers"].values())
    assert d["numbers"]["onset[seed=0]"] == {"value": 80.0, "kind": "epoch"}
    assert d["numbers"]["faithful_init[seed=0]"]["value"] is None  # "never"
    assert d["numbers"]["mag_rise.end[seed=1]"]["value"] is None
    assert np.isclose(d["numbers"]["final_overlap.sum[seed=0]"]["value"], 0.944)
    assert d["numbers"]["rotation_score[seed=1,epoch=100]"] == {"value": 0.6, "kind": "score"}
    assert compare_records(d, rec.to_dict()) == []
    # the same table with one number moved beyond its tolerance: exactly that number is reported
    for change, name in (({"mag_gain": 10.0 * 1.2}, "mag_gain[seed=0]"),
                         ({"complete": 100 + 20 + 15 + 1}, "complete[seed=0]"),
                         ({"second_from": 200}, "second_from[seed=0]")):
        moved = gk.record(*_record_inputs(**change)[:2], params, table, rotations, null).to_dict()
        problems = compare_records(d, moved)
        assert len(problems) == 1 and problems[0].startswith(f"{name}:"), problems
    # within tolerance: no report
    near = gk.record(*_record_inputs(memorized=45, mag_gain=11.0)[:2], params, table, rotations, null)
    assert compare_records(d, near.to_dict()) == []


# ---- derived parameters ------------------------------------------------------------------------

def test_derived_parameters_at_the_defaults_are_the_papers():
    params = gk.GrokkingParams()
    assert params.checkpoint_every == 10 and params.top_k == 200
    assert params.spectrum_epochs == [0, 60, 80, 100, 500]
    assert params.rotation_epochs == [40, 60, 80, 100, 150, 500]
    assert set(params.derived_fields) == {"checkpoint_every", "spectrum_epochs", "rotation_epochs", "top_k"}
    assert gk.GrokkingParams.defaults()["spectrum_epochs"] == DERIVED


@pytest.mark.parametrize("change, spectrum, rotation", [
    ({"checkpoint_every": 20}, [0, 60, 80, 100, 500], [40, 60, 80, 100, 140, 500]),  # 150: tie -> 140
    ({"checkpoint_every": 7}, [0, 63, 77, 98, 500], [42, 63, 77, 98, 147, 500]),
    ({"epochs": 100}, [0, 60, 80, 100], [40, 60, 80, 100]),
    ({"epochs": 155, "checkpoint_every": 20}, [0, 60, 80, 100, 155], [40, 60, 80, 100, 155]),
    ({"epochs": 12}, [0, 12], [12]),
])
def test_derived_epochs_follow_epochs_and_checkpoint_every(change, spectrum, rotation):
    """The papermill runs of issue 14 (-p checkpoint_every 20 / 7, -p epochs 100) validate:
    the paper's epochs move to the nearest analysed checkpoint, the last epoch is kept."""
    params = gk.GrokkingParams(**change)
    assert params.spectrum_epochs == spectrum and params.rotation_epochs == rotation
    grid = set(params.checkpoints())
    assert set(spectrum) <= grid and set(rotation) <= grid


def test_derived_checkpoint_every_and_top_k():
    assert gk.GrokkingParams(epochs=12).checkpoint_every == 6  # at most epochs // 2
    assert gk.GrokkingParams(p=5).top_k == 25  # p^2
    assert gk.GrokkingParams(p=53).top_k == 4 * 52 + 3  # past the second cliff
    assert gk.GrokkingParams(p=23).top_k == 200


def test_snap_to_checkpoints():
    grid = [0, 20, 40, 60]
    assert gk.snap_to_checkpoints([9, 10, 11, 50, 60, 70], grid, 60) == [0, 20, 40, 60]
    assert gk.snap_to_checkpoints([], grid, 60) == [60]


@pytest.mark.parametrize("change, names", [
    ({"epochs": 100, "spectrum_epochs": [0, 60, 500]}, ("`spectrum_epochs`", "`epochs`=100")),
    ({"checkpoint_every": 7, "spectrum_epochs": [0, 60]}, ("`spectrum_epochs`", "`checkpoint_every`=7")),
    ({"checkpoint_every": 20, "rotation_epochs": [40, 150]}, ("`rotation_epochs`", "`checkpoint_every`=20")),
    ({"epochs": 100, "rotation_epochs": [150]}, ("`rotation_epochs`", "`epochs`=100")),
    ({"epochs": 10, "checkpoint_every": 10}, ("`checkpoint_every`", "`epochs`=10")),
    ({"p": 5, "top_k": 200}, ("`top_k`", "`p`=5")),
    ({"top_k": 100}, ("`top_k`", "`p`=29")),
])
def test_explicit_misfits_name_both_parameters(change, names):
    with pytest.raises(ValueError) as info:
        gk.GrokkingParams(**change)
    assert all(name in str(info.value) for name in names), str(info.value)


# ---- the Appendix D rotation ---------------------------------------------------------------------

@pytest.mark.parametrize("p", [7, 11])
def test_rotation_recovers_a_planted_sum_diff_span(p):
    """A random basis of the span of the sum and diff (cos, sin) pairs: unrotated it matches the
    pairs poorly; the two-stage rotation recovers every pair one-to-one (score 1), while random
    subspaces of the same dimension (the null) stay far below."""
    pairs, _ = pair_families(p, "diagonal")
    rng = np.random.default_rng(0)
    d = 2 * (p - 1)
    basis = np.linalg.qr(pairs)[0] @ np.linalg.qr(rng.standard_normal((d, d)))[0]
    before = pair_match(basis, pairs).mean
    rot = gk.rotate_second_cliff({0: basis}, p)[0]
    assert before < 0.5 and rot["score"] > 1 - 1e-9 and rot["n_above"] == d
    assert rot["projection"].shape == (d, p - 1)
    assert np.array_equal(np.bincount(rot["assignment"], minlength=p - 1), np.full(p - 1, 2))
    null = gk.rotation_null(gk.GrokkingParams(p=p, rotation_null_draws=4))
    assert null.shape == (4,) and null.max() < 0.2


def _class_mean_entk_by_hand(model, x: torch.Tensor) -> np.ndarray:
    """(N, N) mean over outputs of J_i J_i^T, J from torch.autograd (independent of the engine)."""
    names, values = zip(*[(n, w.detach()) for n, w in model.named_parameters()], strict=True)

    def outputs(*weights):
        return torch.func.functional_call(model, dict(zip(names, weights, strict=True)), (x,))

    jac = torch.autograd.functional.jacobian(outputs, tuple(v.double() for v in values))
    flat = torch.cat([j.reshape(x.shape[0], -1, j[0, 0].numel()) for j in jac], dim=2)  # (N, C, P)
    return torch.einsum("aip,bip->ab", flat, flat).numpy() / flat.shape[1]


def test_rotation_end_to_end_on_a_tiny_network(tmp_path, monkeypatch):
    """Train p = 7 for 40 epochs (one seed), take the second-cliff windows at two epochs and
    rotate them: the windows span the same space as an eigendecomposition of a hand-built eNTK,
    and the scores equal those of rotating that independent basis."""
    monkeypatch.setenv("ENTK_CACHE_DIR", str(tmp_path))
    p = 7
    params = gk.GrokkingParams(p=p, width=32, epochs=40, seeds=[0], rotation_epochs=[20, 40])
    result = gk.analyze_seed(params, 0)
    rotations = gk.rotate_second_cliff(result["second_vectors"], p)
    assert list(rotations) == [20, 40]
    run = train_modular(params.setup, 0)
    l_sum, l_diff = laplacian_pair(p, "diagonal")
    pairs, _ = pair_families(p, "diagonal")
    for epoch in (20, 40):
        window = result["second_vectors"][epoch]
        assert window.shape == (p * p, 2 * (p - 1))
        model = run.model_at(epoch).double()
        kernel = _class_mean_entk_by_hand(model, run.inputs.double())
        vectors = np.linalg.eigh(kernel)[1][:, ::-1][:, cliff_windows(p)["second"]]
        assert np.allclose(window @ window.T, vectors @ vectors.T, atol=1e-6)
        score = pair_match(two_stage_rotation(vectors, l_sum, l_diff).vectors, pairs).mean
        assert np.isclose(rotations[epoch]["score"], score, atol=1e-6)
        assert 0 < score <= 1 and rotations[epoch]["projection"].shape == (2 * (p - 1), p - 1)
