"""The grokking chapter's pipeline: the cached run of each seed, the eNTK analysis at every
analysed checkpoint, the per-seed timing summary, and the Appendix D rotation of the second
cliff."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ...alignment import random_orthonormal, subspace_overlap
from ...features import cliff_windows, fourier_families
from ...grokking import COMPLETE_LEVEL, ONSET_LEVEL, derivative_peak, grokking_onset, rise_window
from ...kernel import entk
from ...laplacian import laplacian_pair, pair_families, pair_match, two_stage_rotation
from ...linalg import centered, eigh_top
from ...models.modular import ModularRun, train_modular
from ...regression import faithfulness, kernel_drift, kernel_regression, kernel_target_alignment
from ...spectrum import Drops, describe_drops
from .params import GrokkingParams

__all__ = [
    "analyze_checkpoint",
    "analyze_seed",
    "rotate_second_cliff",
    "rotation_null",
    "run_all",
    "summarize_seed",
]


# --------------------------------------------------------------------------------------------
# One checkpoint, one seed
# --------------------------------------------------------------------------------------------


def _percent_overlaps(vectors: np.ndarray, p: int, families: dict[str, np.ndarray]) -> dict[str, float]:
    """Overlaps (in % of p-1) of the first window with a, b and of the second with sum, diff.

    ``vectors`` (p^2, k) are the top eigenvectors (k > 4(p-1)); ``families`` name -> (p^2, p-1).
    """
    win = cliff_windows(p)
    out = {}
    for w, fams in (("first", ("a", "b")), ("second", ("sum", "diff"))):
        for f in fams:
            out[f"{w}_{f}"] = 100.0 * subspace_overlap(vectors[:, win[w]], families[f]) / (p - 1)
    return out


def _faithfulness(kernel: np.ndarray, refs: dict[str, np.ndarray], y: np.ndarray, net_final: np.ndarray,
                  train: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Converged kernel-regression predictors started from each of ``refs`` (name -> outputs
    (N, C)), on the test split, against the final network: ``<name>_<measure>`` for the
    measures of :func:`entk_lib.regression.faithfulness`.

    One call of :func:`~entk_lib.regression.kernel_regression` fits the residuals of all
    references at once (columns side by side), so the training kernel is diagonalized once.
    """
    names = list(refs)
    resid = np.concatenate([y[train] - refs[n][train] for n in names], axis=1)
    fit = kernel_regression(kernel[np.ix_(train, train)], resid, kernel[np.ix_(test, train)])
    c = y.shape[1]
    out = {}
    for i, name in enumerate(names):
        lin = refs[name][test] + fit[:, i * c:(i + 1) * c]
        out |= {f"{name}_{k}": v for k, v in faithfulness(lin, net_final[test], y[test]).items()}
    return out


def analyze_checkpoint(kernel: np.ndarray, outputs: np.ndarray, ref: dict, params: GrokkingParams) -> dict:
    """Everything measured on one checkpoint's ``class_mean`` kernel (N, N), float64.

    Parameters
    ----------
    kernel : ndarray (N, N)
        The eNTK at this checkpoint.
    outputs : ndarray (N, C)
        The network's outputs at this checkpoint.
    ref : dict
        ``k0`` (N, N) kernel at initialization, ``f0`` (N, C) outputs at initialization,
        ``final`` (N, C) outputs at the end of training, ``y`` (N, C) targets and ``y_centered``
        (the same, mean-centred over inputs), ``train`` and
        ``test`` index arrays, ``families`` (:func:`entk_lib.features.fourier_families`).

    Returns
    -------
    dict with ``values`` (top_k,), ``vectors`` (N, top_k), window means ``mag_first``,
    ``mag_second``, drop ratios ``ratio_first``, ``ratio_second``, the overlaps of
    :func:`_percent_overlaps`, ``drift``, ``drift_normalized`` (the drift of ``K / ||K||_F``,
    blind to the kernel's overall scale), ``alignment``, and ``init_<m>``/``tangent_<m>`` for
    the faithfulness measures ``m`` of the two linearized predictors.
    """
    values, vectors = eigh_top(kernel, params.top_k)
    win = cliff_windows(params.p)
    c1, c2 = params.cliffs
    out = {"values": values, "vectors": vectors,
           "mag_first": float(values[win["first"]].mean()),
           "mag_second": float(values[win["second"]].mean()),
           "ratio_first": float(values[c1 - 1] / values[c1]),
           "ratio_second": float(values[c2 - 1] / values[c2]),
           "drift": kernel_drift(kernel, ref["k0"]),
           "drift_normalized": kernel_drift(kernel / np.linalg.norm(kernel),
                                            ref["k0"] / np.linalg.norm(ref["k0"])),
           "alignment": kernel_target_alignment(centered(kernel), ref["y_centered"], center=False)}
    out |= _percent_overlaps(vectors, params.p, ref["families"])
    out |= _faithfulness(kernel, {"init": ref["f0"], "tangent": outputs}, ref["y"], ref["final"],
                         ref["train"], ref["test"])
    return out


def _kernel_and_outputs(run: ModularRun, epoch: int | None, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The symmetrized ``class_mean`` eNTK (N, N) and the outputs (N, C) after ``epoch``, float64."""
    model = run.model_at(epoch)
    kernel = entk(model, x, collapse="class_mean").double().numpy()
    with torch.no_grad():
        outputs = model(x).double().numpy()
    return 0.5 * (kernel + kernel.T), outputs


def _references(run: ModularRun, params: GrokkingParams, x: torch.Tensor) -> dict:
    """The ``ref`` dict of :func:`analyze_checkpoint` for one run."""
    y = run.targets.double().numpy()
    k0, f0 = _kernel_and_outputs(run, 0, x)
    with torch.no_grad():
        final = run.model_at().double()(x.double()).numpy()
    return {"k0": k0, "f0": f0, "final": final, "y": y, "y_centered": centered(y),
            "train": run.train_idx.numpy(), "test": run.test_idx.numpy(),
            "families": fourier_families(params.p)}


def analyze_seed(params: GrokkingParams, seed: int, *, keep_vectors: bool = False,
                 progress: bool = False) -> dict:
    """:func:`analyze_checkpoint` at every analysed epoch of one seed's cached run.

    Returns a dict with ``seed``, ``history`` (per-epoch training curves), ``epochs`` (T,),
    ``values`` (T, top_k), one array (T,) per scalar of :func:`analyze_checkpoint`,
    ``second_vectors`` (epoch -> (N, 2(p-1)) second-window eigenvectors at ``rotation_epochs``)
    and, if ``keep_vectors``, ``vectors`` (T, N, 4(p-1)+1) float32 (for the explorer).
    """
    run = train_modular(params.setup, seed)
    x = run.inputs
    ref = _references(run, params, x)
    epochs = params.checkpoints()
    records, second, kept = [], {}, []
    win = cliff_windows(params.p)
    for epoch in tqdm(epochs, desc=f"checkpoints, seed {seed}", disable=not progress, leave=False):
        kernel, outputs = (ref["k0"], ref["f0"]) if epoch == 0 else _kernel_and_outputs(run, epoch, x)
        rec = analyze_checkpoint(kernel, outputs, ref, params)
        vectors = rec.pop("vectors")
        if epoch in params.rotation_epochs:
            second[epoch] = vectors[:, win["second"]].copy()
        if keep_vectors:
            kept.append(vectors[:, : params.cliffs[1]].astype(np.float32))
        records.append(rec)
    out = {"seed": seed, "history": run.history, "epochs": np.array(epochs),
           "second_vectors": second}
    out |= {k: np.array([r[k] for r in records]) for k in records[0]}
    if keep_vectors:
        out["vectors"] = np.stack(kept)
    return out


def run_all(params: GrokkingParams, progress: bool = True) -> list[dict]:
    """:func:`analyze_seed` for every seed (eigenvectors kept for the first one, the explorer's)."""
    return [analyze_seed(params, s, keep_vectors=i == 0, progress=progress)
            for i, s in enumerate(tqdm(params.seeds, desc="seeds", disable=not progress))]


# --------------------------------------------------------------------------------------------
# Per-seed timing summary
# --------------------------------------------------------------------------------------------


def _largest_past(drops: Drops, index: int, start: int) -> bool:
    """Whether the drop at ``index`` is the largest among the drops ``start .. end``."""
    return bool(drops.ratio[index] >= np.nanmax(drops.ratio[start:]))


def _at_checkpoints(history: dict, key: str, epochs: np.ndarray) -> np.ndarray:
    """``history[key]`` (T,) at the analysed ``epochs`` (T,)."""
    hist_epochs = np.asarray(history["epoch"])
    return np.asarray(history[key], dtype=float)[np.searchsorted(hist_epochs, epochs)]


def _first_true(epochs: np.ndarray, flags: np.ndarray):
    """The first epoch whose flag is True (None if none)."""
    hit = np.nonzero(flags)[0]
    return int(epochs[hit[0]]) if hit.size else None


def _persistent_from(epochs: np.ndarray, flags: np.ndarray):
    """The first epoch from which ``flags`` stays True to the end (None if the last is False)."""
    if not flags[-1]:
        return None
    off = np.nonzero(~flags)[0]
    return int(epochs[off[-1] + 1]) if off.size else int(epochs[0])


def summarize_seed(result: dict, params: GrokkingParams) -> dict:
    """Onsets, cliff detection, rise windows, derivative peaks and faithfulness epochs of a seed.

    All epochs are ints (or None when the event never happens); see the chapter for the
    criteria.
    """
    ep, hist = result["epochs"], result["history"]
    c1, c2 = params.cliffs
    onset, complete = grokking_onset(hist, (ONSET_LEVEL, COMPLETE_LEVEL))
    (memorized,) = grokking_onset(hist, (COMPLETE_LEVEL,), key="train_acc")
    drops = [describe_drops(v, params.rule) for v in result["values"]]
    visible = np.array([d.cliff[c2] for d in drops])
    largest = np.array([_largest_past(d, c2, c1 + 1) for d in drops])
    slope, peak = derivative_peak(ep, result["second_sum"])
    align_slope, align_peak = derivative_peak(ep, result["alignment"])
    faithful = {name: (result[f"{name}_r2"] >= params.faithful_r2)
                & (np.abs(result[f"{name}_acc_gap"]) <= params.faithful_acc_gap)
                for name in ("init", "tangent")}
    return {
        "seed": result["seed"], "onset": onset, "complete": complete, "memorized": memorized,
        "first_cliff_init": float(result["ratio_first"][0]),
        "first_prominence_init": float(drops[0].prominence[c1]),
        "first_visible_init": bool(drops[0].cliff[c1]),
        "second_visible": visible, "second_first_seen": _first_true(ep, visible),
        "second_from": _persistent_from(ep, visible), "second_largest_from": _persistent_from(ep, largest),
        "second_ratio_final": float(result["ratio_second"][-1]),
        "second_prominence_final": float(drops[-1].prominence[c2]),
        "mag_rise": rise_window(ep, result["mag_second"], log=True),
        "acc_rise": rise_window(ep, _at_checkpoints(hist, "test_acc", ep)),
        "mag_gain": float(result["mag_second"].max() / result["mag_second"][0]),
        "sum_slope": slope, "sum_peak": peak, "peak_gap": None if onset is None else peak - onset,
        "align_slope": align_slope, "align_peak": align_peak,
        "align_gap": None if onset is None else align_peak - onset,
        "faithful_init": _persistent_from(ep, faithful["init"]),
        "faithful_tangent": _persistent_from(ep, faithful["tangent"]),
    }


# --------------------------------------------------------------------------------------------
# Appendix D: the sum/difference Laplacian rotation of the second cliff
# --------------------------------------------------------------------------------------------


def rotate_second_cliff(second_vectors: dict[int, np.ndarray], p: int) -> dict[int, dict]:
    """The two-stage rotation (``L_sum``, then ``L_diff`` on the smoothest half) of the
    second-cliff window at each epoch, scored one-to-one against the sum and diff pairs.

    Parameters
    ----------
    second_vectors : dict epoch -> ndarray (p^2, 2(p-1))
        The second-cliff eigenvectors (:func:`analyze_seed`'s ``second_vectors``).

    Returns
    -------
    dict epoch -> ``{"score", "n_above", "projection", "assignment"}``: the mean one-to-one
    score (:func:`entk_lib.laplacian.pair_match`; 1 = every rotated direction inside one sum or
    diff pair), how many directions hold more than 90% of their norm in their pair, the
    squared projections (2(p-1), p-1) on the pairs (sum k = 1..(p-1)/2, then diff), and the
    assigned pair of each direction (2(p-1),).
    """
    l_sum, l_diff = laplacian_pair(p, "diagonal")
    pairs, _ = pair_families(p, "diagonal")
    out = {}
    for epoch, vectors in sorted(second_vectors.items()):
        rotated = two_stage_rotation(vectors, l_sum, l_diff).vectors
        match = pair_match(rotated, pairs)
        out[epoch] = {"score": match.mean, "n_above": match.n_above, "projection": match.projection,
                      "assignment": match.assignment}
    return out


def rotation_null(params: GrokkingParams, seed: int = 12345) -> np.ndarray:
    """One-to-one scores (rotation_null_draws,) of Haar-random 2(p-1)-dimensional subspaces
    after the same rotation (the baseline for :func:`rotate_second_cliff`)."""
    rng = np.random.default_rng(seed)
    d = 2 * (params.p - 1)
    draws = {i: random_orthonormal(params.p**2, d, rng) for i in range(params.rotation_null_draws)}
    return np.array([r["score"] for r in rotate_second_cliff(draws, params.p).values()])
