"""The modular-addition chapter's pipeline: the cached run of each seed
(:func:`entk_lib.models.modular.train_modular`), its analysis at the end of training
(:func:`analyze_seed`, :func:`flattened_analysis`) and the summary over seeds (:func:`summarize`)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

from ...alignment import orthonormal_basis, pair_projection, random_subspace_overlaps, subspace_overlap
from ...features import FOURIER_KINDS, cliff_positions, cliff_windows, fourier_families, fourier_family
from ...grokking import grokking_onset
from ...kernel import entk, entk_by_layer
from ...linalg import empirical_p_value
from ...models.modular import ModularMLP, train_modular
from ...operator import entk_operator
from ...params import check_int
from ...spectrum import CliffRule, cliff_ratios, describe_drops, find_cliffs, top_eigenpairs
from .params import ModularParams

__all__ = [
    "analyze_seed",
    "causal_ablation",
    "flattened_analysis",
    "null_overlaps",
    "per_class_cliffs",
    "reparam_sweep",
    "rescaled_total",
    "run_all",
    "summarize",
]


# --------------------------------------------------------------------------------------------
# Spectra, cliffs and overlaps of one kernel
# --------------------------------------------------------------------------------------------


def _spectrum(kernel: torch.Tensor, k: int, rule: CliffRule) -> dict:
    """Top ``k`` eigenpairs of ``kernel`` (N, N): ``values`` (k,), ``vectors`` (N, k), and per
    drop ``ratios``, ``prominence``, ``rank`` (k,) and the sorted ``cliffs``."""
    values, vectors = top_eigenpairs(kernel.double(), k)
    drops = describe_drops(values, rule)
    return {"values": values, "vectors": vectors, "ratios": drops.ratio, "prominence": drops.prominence,
            "rank": drops.rank, "cliffs": np.sort(find_cliffs(values, rule=rule))}


def _overlaps(vectors: np.ndarray, p: int) -> dict[str, dict[str, float]]:
    """Overlap of each cliff window of ``vectors`` (p^2, >= 4(p-1)+1) with each (mean-centred)
    family: window -> family -> value in [0, p-1]."""
    fams = fourier_families(p)
    return {w: {f: subspace_overlap(vectors[:, sl], fams[f]) for f in FOURIER_KINDS}
            for w, sl in cliff_windows(p).items() if w in ("first", "second")}


def per_class_cliffs(kernels: torch.Tensor, k: int, rule: CliffRule) -> dict:
    """Cliffs of each per-class kernel (C, N, N) from its top ``k`` eigenvalues.

    Returns ``cliffs`` (list of C sorted index arrays), ``ratios`` and ``prominence`` (C, k), as
    :func:`entk_lib.describe_drops`. The eigenvalues come from LAPACK's subset solver
    (``scipy.linalg.eigh``, values only): cheaper than the full eigenpairs of
    :func:`entk_lib.linalg.eigh_top`, whose values differ in the last digits.
    """
    cliffs, ratios, prominence = [], [], []
    for kc in kernels.double().numpy():
        n = kc.shape[0]
        values = scipy.linalg.eigh(kc, eigvals_only=True, subset_by_index=[n - k, n - 1])[::-1]
        drops = describe_drops(values, rule)
        cliffs.append(np.sort(np.flatnonzero(drops.cliff)))
        ratios.append(drops.ratio)
        prominence.append(drops.prominence)
    return {"cliffs": cliffs, "ratios": np.array(ratios), "prominence": np.array(prominence)}


def rescaled_total(kernels: dict[str, torch.Tensor], s: float) -> torch.Tensor:
    """Total kernel (N, N) of the rescaled network ``W1 -> s W1, W2 -> W2 / s^2`` from the layer
    kernels of the original one: ``s^-2 K_fc1 + s^4 K_fc2`` (checked against
    :func:`entk_lib.models.modular.rescale_layers` in the tests)."""
    return kernels["fc1"] / s**2 + kernels["fc2"] * s**4


def reparam_sweep(kernels: dict[str, torch.Tensor], params: ModularParams) -> list[dict]:
    """Spectrum, cliffs and window overlaps of the total kernel for each scale ``s``."""
    out = []
    for s in params.scales:
        spec = _spectrum(rescaled_total(kernels, s), params.top_k, params.rule)
        out.append({"s": s, "values": spec["values"], "cliffs": spec["cliffs"],
                    "ratios": spec["ratios"], "overlaps": _overlaps(spec["vectors"], params.p)})
    return out


# --------------------------------------------------------------------------------------------
# Causal test and null sample
# --------------------------------------------------------------------------------------------


def _ablation_evaluator(model: ModularMLP, hidden: np.ndarray, y: torch.Tensor, test_idx: torch.Tensor):
    """``evaluate(basis)``: (test loss, test accuracy, fraction of ``W2``'s squared norm removed)
    after removing the hidden directions ``basis`` (width, d) from the readout (None: intact)."""
    w2 = model.fc2.weight.detach().double().numpy()
    yt = y[test_idx].double().numpy()
    h_test = hidden[test_idx.numpy()]

    def evaluate(basis: np.ndarray | None) -> tuple[float, float, float]:
        removed = np.zeros_like(w2) if basis is None else (w2 @ basis) @ basis.T
        out = h_test @ (w2 - removed).T / model.width
        loss = float(np.mean((out - yt) ** 2))
        acc = float(np.mean(out.argmax(1) == yt.argmax(1)))
        return loss, acc, float(np.sum(removed**2) / np.sum(w2**2))

    return evaluate, w2


def causal_ablation(model: ModularMLP, x: torch.Tensor, y: torch.Tensor, test_idx: torch.Tensor,
                    windows: dict[str, np.ndarray], *, draws: int = 1000, seed: int = 0) -> dict:
    """Ablate, in the readout ``W2``, the hidden directions that windows of eigenvectors induce.

    For a window ``U`` (p^2, d) of kernel eigenvectors over the inputs, the hidden-space
    directions are ``V = orth(A^T U)`` (width, d), ``A`` (p^2, width) the hidden
    post-activations over all inputs (``A^T u`` is ``u`` pulled back through layer 2's
    Jacobian). The ablated readout is ``W2 (I - V V^T)``. Three controls of the same dimension
    d: ``draws`` Haar-random subspaces of the hidden space (``random``); ``draws`` random windows
    of input-space vectors pulled back the same way, ``orth(A^T R)`` with R Gaussian (``pulled``:
    they favour high-activation directions exactly as the eigenvector windows do, so a window
    that beats them is special for its eigenvectors, not for the pull-back); and the top d right
    singular vectors of ``W2`` (``svd``: the most readout energy d directions can remove).

    Parameters
    ----------
    windows : dict name -> ndarray (p^2, d)
        Eigenvector windows to ablate (one random control per distinct d).

    Returns
    -------
    dict with ``base`` (test loss, test accuracy) of the intact network; ``windows``: name ->
    (test loss, test accuracy, fraction of ``W2``'s squared norm removed); ``random`` and
    ``pulled``: d -> array (draws, 3) of the same three numbers for the random ablations;
    ``svd``: d -> the three numbers for the top-d singular directions.
    """
    with torch.no_grad():
        hidden = model.hidden(x).double().numpy()
    evaluate, w2 = _ablation_evaluator(model, hidden, y, test_idx)
    rng = np.random.default_rng(seed)
    random, pulled, svd = {}, {}, {}
    right = np.linalg.svd(w2, full_matrices=False)[2].T  # (width, rank), by singular value
    for d in sorted({u.shape[1] for u in windows.values()}):
        random[d] = np.array([evaluate(np.linalg.qr(rng.standard_normal((model.width, d)))[0])
                              for _ in range(draws)])
        pulled[d] = np.array([evaluate(orthonormal_basis(hidden.T @ rng.standard_normal((len(x), d))))
                              for _ in range(draws)])
        svd[d] = evaluate(right[:, :d])
    return {"base": evaluate(None)[:2],
            "windows": {w: evaluate(orthonormal_basis(hidden.T @ u)) for w, u in windows.items()},
            "random": random, "pulled": pulled, "svd": svd}


def null_overlaps(params: ModularParams, seed: int = 12345) -> np.ndarray:
    """Overlaps (null_draws,) of random 2(p-1)-dimensional subspaces of R^{p^2} with a family.

    By rotation invariance the distribution depends only on the dimensions (p^2, 2(p-1), p-1),
    not on which family, so one sample serves all four; its mean is about 2(p-1)^2 / p^2.
    """
    return random_subspace_overlaps(params.p**2, 2 * (params.p - 1), fourier_family(params.p, "a"),
                                    draws=params.null_draws, seed=seed)


# --------------------------------------------------------------------------------------------
# One seed, all seeds, the flattened kernel
# --------------------------------------------------------------------------------------------


def analyze_seed(params: ModularParams, seed: int, null: np.ndarray | None = None) -> dict:
    """Everything the chapter reports for one seed (see the package docstring): ``history``,
    ``spectra`` (total, fc1, fc2, fc1_init; without eigenvectors), ``overlaps``,
    ``first_vs_layer1``, ``per_class_cliffs``, ``pair_projection`` (2(p-1), p-1), ``reparam``,
    ``causal`` and, given the ``null`` sample, ``p_values`` ((window, family) -> p)."""
    run = train_modular(params.setup, seed)
    model, x, y = run.model_at(), run.inputs, run.targets
    kernels = entk_by_layer(model, x, collapse="class_mean")
    total = kernels["fc1"] + kernels["fc2"]
    init_l1 = entk(run.model_at(0), x, collapse="class_mean", layers=["fc1"])
    k, thr = params.top_k, params.rule
    spectra = {"total": _spectrum(total, k, thr), "fc1": _spectrum(kernels["fc1"], k, thr),
               "fc2": _spectrum(kernels["fc2"], k, thr), "fc1_init": _spectrum(init_l1, k, thr)}
    per_class = entk_by_layer(model, x, collapse="per_class")
    windows = cliff_windows(params.p)
    vec_total, vec_l1 = spectra["total"]["vectors"], spectra["fc1"]["vectors"]
    overlaps = {name: _overlaps(spectra[name]["vectors"], params.p) for name in ("total", "fc1", "fc2")}
    fam_a, fam_b = fourier_family(params.p, "a"), fourier_family(params.p, "b")
    first_l1 = vec_l1[:, windows["first"]]
    result = {
        "seed": seed, "history": run.history,
        "spectra": {n: {kk: v for kk, v in s.items() if kk != "vectors"} for n, s in spectra.items()},
        "overlaps": overlaps,
        "first_vs_layer1": subspace_overlap(vec_total[:, windows["first"]], first_l1, center_family=False),
        "per_class_cliffs": per_class_cliffs(per_class["fc1"] + per_class["fc2"], k, thr),
        "pair_projection": np.concatenate([pair_projection(first_l1, fam_a),
                                           pair_projection(first_l1, fam_b)], axis=1),
        "reparam": reparam_sweep(kernels, params),
        "causal": causal_ablation(model, x, y, run.test_idx,
                                  {w: vec_total[:, sl] for w, sl in windows.items()},
                                  draws=params.null_draws, seed=seed),
    }
    if null is not None:
        result["p_values"] = {(w, f): empirical_p_value(overlaps["total"][w][f], null)
                              for w in ("first", "second") for f in FOURIER_KINDS}
    return result


def run_all(params: ModularParams, progress: bool = True) -> tuple[list[dict], np.ndarray]:
    """:func:`analyze_seed` for every seed, with the shared random-subspace null sample
    (null_draws,)."""
    null = null_overlaps(params)
    results = [analyze_seed(params, s, null) for s in tqdm(params.seeds, desc="seeds", disable=not progress)]
    return results, null


def flattened_analysis(params: ModularParams, seed: int, k: int | None = None) -> dict:
    """Top ``k`` eigenvalues of the flattened (p^3 x p^3) total eNTK, matrix-free, and its cliffs.

    The layer-2 part of the flattened kernel is ``I_p (x) H`` (H the layer-2 class_mean kernel),
    so its spectrum is H's, each eigenvalue repeated p times: a cliff of H at index j appears at
    ``p * j``. That prediction (``layer2_values`` (k,), ``layer2_cliffs``) is returned beside the
    measured spectrum (``values``, ``ratios`` (k,), ``cliffs``) of the total flattened kernel as
    a cross-check. ``largest_drops`` lists the five largest drops ``(index, ratio)`` of the
    measured spectrum, whatever the threshold. The eigenpairs come from the factored matrix-free
    operator and block Krylov (:func:`entk_lib.top_eigenpairs` defaults: residuals below 1e-5 of
    the top eigenvalue). ``k`` defaults to ``params.flat_top_k``.
    """
    k = params.flat_top_k if k is None else check_int("k", k, minimum=2, maximum=params.p**3 - 1)
    run = train_modular(params.setup, seed)
    model, x = run.model_at(), run.inputs
    values, _ = top_eigenpairs(entk_operator(model, x, collapse="flattened"), k)
    h = entk(model, x, collapse="class_mean", layers=["fc2"]).double().numpy()
    layer2 = np.repeat(np.linalg.eigvalsh(h)[::-1], params.p)[:k]
    thr = params.rule
    ratios = cliff_ratios(values)
    order = np.argsort(-np.nan_to_num(ratios, nan=-np.inf), kind="stable")[:5]
    return {"seed": seed, "k": k, "values": values, "ratios": ratios,
            "largest_drops": [(int(i), float(ratios[i])) for i in order],
            "cliffs": np.sort(find_cliffs(values, rule=thr)),
            "layer2_values": layer2, "layer2_cliffs": np.sort(find_cliffs(layer2, rule=thr))}


# --------------------------------------------------------------------------------------------
# Summary over seeds
# --------------------------------------------------------------------------------------------


def _onset_or_minus_one(history: dict) -> int:
    """The grokking onset (:func:`entk_lib.grokking.grokking_onset`), -1 if never reached."""
    (onset,) = grokking_onset(history, (0.5,))
    return -1 if onset is None else onset


def _drop_rank(ratios: np.ndarray, index: int) -> int:
    """1-based rank of the drop at ``index`` among all drops of the spectrum (1 = largest)."""
    finite = np.nan_to_num(ratios, nan=-np.inf)
    return int(np.sum(finite > finite[index]) + 1)


def _has(cliffs, c: int) -> bool:
    return bool(np.isin(c, cliffs))


def _spectra_summary(results: list[dict], c1: int, c2: int) -> dict:
    """Per-seed arrays of the class_mean and per-class cliff numbers."""

    def per_seed(get) -> np.ndarray:
        return np.array([get(r) for r in results])

    def total(r) -> dict:
        return r["spectra"]["total"]

    return {
        "cm_cliffs": [total(r)["cliffs"] for r in results],
        "cm_has": per_seed(lambda r: (_has(total(r)["cliffs"], c1), _has(total(r)["cliffs"], c2))),
        "cm_ratios": per_seed(lambda r: total(r)["ratios"][[1, c1, c2]]),
        "cm_drop_rank": per_seed(lambda r: [_drop_rank(total(r)["ratios"], c) for c in (c1, c2)]),
        "cm_prominence": per_seed(lambda r: total(r)["prominence"][[1, c1, c2]]),
        "pc_prominence": np.concatenate([r["per_class_cliffs"]["prominence"][:, [c1, c2]] for r in results]),
        "l2_cliff": per_seed(lambda r: _has(r["spectra"]["fc2"]["cliffs"], c1)),
        "layers_c2_prominence": per_seed(lambda r: [r["spectra"][n]["prominence"][c2]
                                                    for n in ("total", "fc1", "fc2")]),
        "layers_c2_has": per_seed(lambda r: [_has(r["spectra"][n]["cliffs"], c2)
                                             for n in ("total", "fc1", "fc2")]),
        "pc_has": np.array([[_has(c, c1), _has(c, c2)] for r in results
                            for c in r["per_class_cliffs"]["cliffs"]]),
        "pc_ratios": np.concatenate([r["per_class_cliffs"]["ratios"][:, [c1, c2]] for r in results]),
        "l1_final": per_seed(lambda r: _has(r["spectra"]["fc1"]["cliffs"], c1)),
        "l1_init": per_seed(lambda r: _has(r["spectra"]["fc1_init"]["cliffs"], c1)),
        "l2_ratio": per_seed(lambda r: r["spectra"]["fc2"]["ratios"][c1]),
    }


def summarize(results: list[dict], params: ModularParams, null: np.ndarray) -> dict:
    """Per-seed arrays (one entry per seed; per-class ones per (seed, class)) of the numbers the
    claims table and the key-numbers cell report, with the null sample's mean and max."""
    c1, c2 = cliff_positions(params.p)
    out = {
        "expected_cliffs": (c1, c2),
        "grok_epoch": np.array([_onset_or_minus_one(r["history"]) for r in results]),
        "final_test_acc": np.array([r["history"]["test_acc"][-1] for r in results]),
        **_spectra_summary(results, c1, c2),
        "first_vs_layer1": np.array([r["first_vs_layer1"] for r in results]),
        "null_mean": float(null.mean()), "null_max": float(null.max()),
        "null_expected": 2 * (params.p - 1) ** 2 / params.p**2,
    }
    for w in ("first", "second"):
        for f in FOURIER_KINDS:
            values = np.array([r["overlaps"]["total"][w][f] for r in results])
            out[f"{w}_{f}"] = values
            out[f"p_{w}_{f}"] = np.array([empirical_p_value(v, null) for v in values])
    out["reparam"] = _reparam_summary(results, params)
    out["causal"] = _causal_summary(results, params)
    return out


def _reparam_summary(results: list[dict], params: ModularParams) -> dict:
    """(scales, seeds) arrays of the window overlaps and cliff flags of the rescaled networks."""
    c1, c2 = cliff_positions(params.p)
    out = {"s": np.array(params.scales)}
    for w, fams in (("first", ("a", "b")), ("second", ("sum", "diff"))):
        for f in fams:
            out[f"{w}_{f}"] = np.array([[r["reparam"][i]["overlaps"][w][f] for r in results]
                                        for i in range(len(params.scales))])
    out["has_c1"] = np.array([[_has(r["reparam"][i]["cliffs"], c1) for r in results]
                              for i in range(len(params.scales))])
    out["has_c2"] = np.array([[_has(r["reparam"][i]["cliffs"], c2) for r in results]
                              for i in range(len(params.scales))])
    return out


def _causal_summary(results: list[dict], params: ModularParams) -> dict:
    """Per-seed arrays of the ablation losses, accuracies, energies and p-values (each window
    against the mean of its random controls of dimension 2(p-1))."""
    d = 2 * (params.p - 1)
    out = {"base_loss": np.array([r["causal"]["base"][0] for r in results]),
           "base_acc": np.array([r["causal"]["base"][1] for r in results]),
           "random_loss": np.array([r["causal"]["random"][d][:, 0].mean() for r in results]),
           "random_acc": np.array([r["causal"]["random"][d][:, 1].mean() for r in results]),
           "random_energy": np.array([r["causal"]["random"][d][:, 2].mean() for r in results]),
           "pulled_acc": np.array([r["causal"]["pulled"][d][:, 1].mean() for r in results]),
           "pulled_energy": np.array([r["causal"]["pulled"][d][:, 2].mean() for r in results]),
           "svd_acc": np.array([r["causal"]["svd"][d][1] for r in results]),
           "svd_energy": np.array([r["causal"]["svd"][d][2] for r in results])}
    for w in ("first", "second", "next"):
        vals = np.array([r["causal"]["windows"][w] for r in results])
        out[f"{w}_loss"], out[f"{w}_acc"], out[f"{w}_energy"] = vals[:, 0], vals[:, 1], vals[:, 2]
        for control, suffix in (("random", "p"), ("pulled", "p_pulled")):
            out[f"{w}_{suffix}"] = np.array([
                empirical_p_value(r["causal"]["windows"][w][0], r["causal"][control][d][:, 0])
                for r in results])
    return out
