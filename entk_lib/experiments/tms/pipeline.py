"""The TMS chapter's pipeline: train or load each model (:func:`entk_lib.models.tms.train_tms`),
its flattened eNTK spectra per beta, the alignment of their eigenvectors with the features, the
summary over seeds, and the Appendix B check of the engine against the closed form."""

from __future__ import annotations

import copy
from bisect import bisect_right

import numpy as np
import torch
from tqdm.auto import tqdm

from ...alignment import matched_score, random_orthonormal
from ...features import tms_expanded_features
from ...kernel import LowRankKernel, entk, entk_jacobian, entk_lowrank
from ...linalg import as_numpy
from ...models.tms import (
    TMS,
    closed_form_jacobian,
    closed_form_kernel,
    importance,
    represented_features,
    train_tms,
)
from ...params import check_int
from ...spectrum import describe_drops, find_cliffs, top_eigenpairs
from .params import TMSParams

__all__ = [
    "alignment_stats",
    "analyse_run",
    "appendix_b_check",
    "block_indicators",
    "block_scores",
    "chain_cover",
    "feature_view",
    "flattened_spectra",
    "importance_lines",
    "run_all",
    "runs_of",
    "subspace_capture",
    "summarize",
]


# --------------------------------------------------------------------------------------------
# Spectra
# --------------------------------------------------------------------------------------------


def flattened_spectra(model: TMS, data: torch.Tensor, weights: torch.Tensor, betas, top_k: int):
    """Top-``top_k`` eigenpairs of the flattened eNTK (n*N, n*N) for each beta: {beta: Eigenpairs}.

    The Jacobian is computed once (float64, :func:`entk_lowrank`); ``output_weights = I**(beta/2)``
    multiplies output i's rows, so each beta's factor is the unweighted one with rows rescaled.
    ``data`` is (N, n), ``weights`` the importances (n,).
    """
    lowrank = entk_lowrank(copy.deepcopy(model).double(), data.double(), collapse="flattened")
    rows = weights.double().repeat_interleave(data.shape[0])
    out = {}
    for beta in betas:
        factor = lowrank.factor * (rows ** (beta / 2))[:, None]
        out[beta] = top_eigenpairs(LowRankKernel(factor, "flattened"), top_k)
    return out


# --------------------------------------------------------------------------------------------
# Alignment measures
# --------------------------------------------------------------------------------------------


def block_scores(vectors, data) -> dict[str, np.ndarray]:
    """Raw |cos|, block mass share, within-block correlation and feature score: each (k, n).

    Parameters
    ----------
    vectors : array (n*N, k)
        Vectors in the flattened kernel's class-major row space (row ``i*N + a``).
    data : array (N, n)
        The data set; feature i's expanded vector is ``data[:, i]`` inside block i.

    Returns
    -------
    dict with ``raw`` (|cos| with the expanded feature vector), ``mass`` (share of the squared
    norm inside block i), ``corr`` (Pearson correlation with ``data[:, i]`` inside block i, 0 for a
    constant block) and ``score`` = ``sqrt(mass) * |corr|``.
    """
    x = as_numpy(data)
    v = np.asarray(vectors, dtype=float)
    n_samples, n = x.shape
    if v.ndim != 2 or v.shape[0] != n * n_samples:
        raise ValueError(f"`vectors` must have shape ({n * n_samples}, k), got {v.shape}")
    blocks = v.reshape(n, n_samples, -1)                      # (n, N, k)
    total = np.maximum((v**2).sum(0), 1e-300)                 # (k,)
    feats = x.T                                               # (n, N)
    raw = np.abs(np.einsum("iak,ia->ki", blocks, feats))
    raw /= np.sqrt(total)[:, None] * np.maximum(np.linalg.norm(feats, axis=1), 1e-300)[None, :]
    mass = ((blocks**2).sum(1) / total).T                     # (k, n)
    bc = blocks - blocks.mean(1, keepdims=True)
    fc = feats - feats.mean(1, keepdims=True)
    bnorm = np.linalg.norm(bc, axis=1)                        # (n, k)
    fnorm = np.linalg.norm(fc, axis=1)                        # (n,)
    ok = (bnorm > 1e-10 * np.linalg.norm(blocks, axis=1)) & (fnorm[:, None] > 1e-12)
    corr = np.where(ok, np.einsum("iak,ia->ik", bc, fc) / np.where(ok, bnorm * fnorm[:, None], 1.0), 0.0)
    corr = corr.T
    return {"raw": raw, "mass": mass, "corr": corr, "score": np.sqrt(mass) * np.abs(corr)}


def block_indicators(n_features: int, n_samples: int) -> np.ndarray:
    """Unit indicator vectors of the n class blocks (the 'bias directions'): (n*N, n)."""
    out = np.zeros((n_features * n_samples, n_features))
    for i in range(n_features):
        out[i * n_samples : (i + 1) * n_samples, i] = n_samples**-0.5
    return out


def chain_cover(sequence, k: int) -> int:
    """Largest number of entries covered by ``k`` disjoint non-decreasing subsequences.

    Greene's theorem: this is the sum of the first ``k`` row lengths of the sequence's
    Robinson-Schensted-Knuth insertion tableau (``k = 1``: the longest non-decreasing
    subsequence). For distinct values "non-decreasing" is "increasing".
    """
    k = check_int("k", k, minimum=1)
    rows: list[list] = []
    for value in sequence:
        for row in rows:
            pos = bisect_right(row, value)
            if pos == len(row):
                row.append(value)
                break
            row[pos], value = value, row[pos]
        else:
            rows.append([value])
    return sum(len(r) for r in rows[:k])


def importance_lines(score: np.ndarray, n_features: int, threshold: float) -> dict:
    """How the one-to-one eigenvector-feature map orders features (the 'two lines' of Fig. 1).

    The top ``n_features`` eigenvectors are Hungarian-matched to the features on ``score``
    (k, n); pairs scoring above ``threshold`` are kept and ordered by eigenvector index. Returns
    the kept eigenvector and feature indices and the fractions of kept pairs covered by one and
    by two increasing chains (feature index growing with eigenvector index).
    """
    match = matched_score(score[:n_features])
    keep = match.scores > threshold
    eig, feat = match.rows[keep], match.cols[keep]
    order = np.argsort(eig)
    eig, feat = eig[order], feat[order]
    kept = int(keep.sum())
    cover = [chain_cover(feat.tolist(), c) / kept if kept else float("nan") for c in (1, 2)]
    return {"eig": eig, "feat": feat, "kept": kept, "cover1": cover[0], "cover2": cover[1]}


def subspace_capture(vectors, data) -> dict[str, np.ndarray]:
    """Share of each block indicator and of each centred expanded feature inside span(vectors).

    Rotation-invariant within the span, so it does not depend on how a (near-)degenerate
    eigenspace is split into eigenvectors. ``vectors`` is (n*N, k), ``data`` (N, n).

    Returns
    -------
    dict with ``bias`` and ``feature``, each (n,) in [0, 1]: ``||Q^T u_i||^2 / ||u_i||^2`` for the
    unit block indicator ``u_i`` and for feature i's centred values inside block i.
    """
    x = as_numpy(data)
    n_samples, n = x.shape
    q = np.linalg.qr(np.asarray(vectors, dtype=float))[0]
    ind = block_indicators(n, n_samples)
    centred = tms_expanded_features(x - x.mean(0, keepdims=True))
    feat_norm = np.maximum((centred**2).sum(0), 1e-300)
    return {"bias": ((q.T @ ind) ** 2).sum(0), "feature": ((q.T @ centred) ** 2).sum(0) / feat_norm}


def alignment_stats(scores: dict, n_features: int, n_represented: int, threshold: float) -> dict:
    """One-to-one statistics of the first ``n_features`` vectors against the n features.

    ``matched_*``: Hungarian-matched mean; ``count_*``: features whose best score over those
    vectors exceeds ``threshold``; ``top_r_score``: matched mean feature score of the first
    ``n_represented`` vectors against the ``n_represented`` most important features.
    ``scores`` holds ``raw`` and ``score`` maps (k, n) from :func:`block_scores`.
    """
    out = {}
    for name in ("raw", "score"):
        top = scores[name][:n_features]
        out[f"matched_{name}"] = matched_score(top).mean
        out[f"count_{name}"] = int((top.max(0) > threshold).sum())
    r = n_represented
    out["top_r_score"] = matched_score(scores["score"][:r, :r]).mean if r else float("nan")
    return out


def feature_view(scores: dict, represented, n_features: int) -> dict:
    """The per-feature view of a |cos| map (what a column-normalized heatmap shows).

    For every feature: its best raw |cos| and best feature score over all the given vectors, and
    the index of the vector with the best raw |cos|. Returns group means over the represented and
    the unrepresented features, the per-feature arrays (n,), and the fractions of features whose
    best-vector indices (in importance order) are covered by one and by two non-decreasing chains.
    """
    best_raw, best_score = scores["raw"].max(0), scores["score"].max(0)
    argmax = scores["raw"].argmax(0)
    # the map as the author's code normalizes it (each eigenvector's column over the features):
    # the best feature of each of the top n eigenvectors
    eig_argmax = scores["raw"][:n_features].argmax(1)
    rep = np.zeros(n_features, dtype=bool)
    rep[np.asarray(represented, dtype=int)] = True

    def mean(x, mask):
        return float(x[mask].mean()) if mask.any() else float("nan")

    return {
        "best_raw": best_raw, "best_score": best_score, "argmax_raw": argmax,
        "rep_best_raw": mean(best_raw, rep), "unrep_best_raw": mean(best_raw, ~rep),
        "rep_best_score": mean(best_score, rep), "unrep_best_score": mean(best_score, ~rep),
        "argmax_cover1": chain_cover(argmax.tolist(), 1) / n_features,
        "argmax_cover2": chain_cover(argmax.tolist(), 2) / n_features,
        "eig_argmax_cover1": chain_cover(eig_argmax.tolist(), 1) / len(eig_argmax),
        "eig_argmax_cover2": chain_cover(eig_argmax.tolist(), 2) / len(eig_argmax),
        "low_half_best_raw": float(best_raw[n_features - n_features // 2:].mean()),
    }


# --------------------------------------------------------------------------------------------
# One run and all runs
# --------------------------------------------------------------------------------------------


def _beta_measures(pairs, data, params: TMSParams, represented) -> dict:
    """Cliffs and alignment of one beta's eigenpairs (values (top_k,), vectors (n*N, top_k))."""
    n, r = params.n_features, len(represented)
    scores = block_scores(pairs.vectors, data)
    cliffs = find_cliffs(pairs.values, rule=params.rule)
    drops = describe_drops(pairs.values, params.rule)
    ratios = drops.ratio
    # footnote 3: the represented count is the size of one of the two blocks below n, so the
    # other cliff sits at r or at n - r; the strongest drop below n is where a first cliff would be
    below = int(np.nanargmax(ratios[1:n])) + 1 if n > 1 else 0
    capture = subspace_capture(pairs.vectors[:, :n], data)
    return {
        "values": pairs.values, "raw": scores["raw"], "score": scores["score"], "cliffs": cliffs,
        "first_cliff": int(cliffs.min()) if cliffs.size else None,
        "ratio_at_n": float(ratios[n]), "prominence_at_n": float(drops.prominence[n]),
        "below_n_drop": below, "below_n_ratio": float(ratios[below]) if below else float("nan"),
        "below_n_prominence": float(drops.prominence[below]) if below else float("nan"),
        "below_n_cliff": bool(below and drops.cliff[below]),
        "ratio_at_r": float(ratios[r]) if 1 <= r < ratios.size else float("nan"),
        "largest_drop": int(np.nanargmax(ratios)),
        "lines": importance_lines(scores["score"], n, params.match_threshold),
        "bias_capture": float(capture["bias"].mean()),
        "feature_capture": float(capture["feature"].mean()),
        **alignment_stats(scores, n, r, params.match_threshold),
        **feature_view(scores, represented, n),
    }


#: The baselines' group means kept beside their one-to-one statistics.
_GROUP_KEYS = ("rep_best_raw", "unrep_best_raw", "rep_best_score", "unrep_best_score", "low_half_best_raw")


def analyse_run(params: TMSParams, m: int, sparsity: float, seed: int) -> dict:
    """Train (or load) one model and measure its spectra, cliffs and alignments for every beta.

    Returns a dict with the model's ``m``, ``S``, ``seed``, final ``loss``, ``wtw`` (n, n),
    ``represented`` feature indices, and per beta (``res["beta"][beta]``) the top eigenvalues,
    the (top_k, n) raw and feature-score maps and the scalar measurements; ``block`` and
    ``random`` hold the same statistics for the class-block and random baselines.
    """
    run = train_tms(params.setup(m, sparsity), seed)
    model, data = run.model(), run.data
    n = params.n_features
    w = model.W.detach().double()
    represented = represented_features(w, params.represented_threshold)
    r = len(represented)
    res = {"m": m, "S": sparsity, "seed": seed, "loss": run.final_loss, "wtw": (w.T @ w).numpy(),
           "represented": represented, "n_represented": r, "beta": {}}
    spectra = flattened_spectra(model, data, run.setup.weights, params.all_betas, params.top_k)
    for beta, pairs in spectra.items():
        res["beta"][beta] = _beta_measures(pairs, data, params, represented)
    rng = np.random.default_rng(10_000 + seed)
    for name, vecs in (("block", block_indicators(n, params.n_samples)),
                       ("random", random_orthonormal(n * params.n_samples, n, rng))):
        scores = block_scores(vecs, data)
        res[name] = alignment_stats(scores, n, r, params.match_threshold)
        view = feature_view(scores, represented, n)
        res[name] |= {k: view[k] for k in _GROUP_KEYS}
        res[f"{name}_best_raw"] = view["best_raw"]
    return res


def run_all(params: TMSParams, progress: bool = True) -> list[dict]:
    """:func:`analyse_run` for every model and seed (model-major order)."""
    jobs = [(m, s, seed) for m, s in params.models for seed in params.seeds]
    return [analyse_run(params, m, s, seed)
            for m, s, seed in tqdm(jobs, desc="models x seeds", disable=not progress)]


_SCALARS = ("matched_raw", "count_raw", "matched_score", "count_score", "top_r_score",
            "bias_capture", "feature_capture", "ratio_at_n", "ratio_at_r", "largest_drop",
            "rep_best_raw", "unrep_best_raw", "rep_best_score", "unrep_best_score",
            "argmax_cover1", "argmax_cover2", "eig_argmax_cover1", "eig_argmax_cover2",
            "low_half_best_raw", "prominence_at_n", "below_n_drop", "below_n_ratio",
            "below_n_prominence")


def runs_of(results: list[dict], m: int, s: float) -> list[dict]:
    """The runs (one per seed) of the model ``[m, s]``."""
    return [r for r in results if r["m"] == m and r["S"] == s]


def _beta_summary(bs: list[dict], runs: list[dict], n: int) -> dict:
    """One beta's measurements over seeds: arrays (n_seeds,) (``first_cliff`` a list)."""
    r = [run["n_represented"] for run in runs]
    return {key: np.array([b[key] for b in bs], dtype=float) for key in _SCALARS} | {
        "cliff_at_n": np.array([n in b["cliffs"] for b in bs]),
        "first_cliff": [b["first_cliff"] for b in bs],
        "first_is_r": np.array([b["first_cliff"] == ri for b, ri in zip(bs, r, strict=True)]),
        # footnote 3: a cliff (the book's rule) at r or at n - r
        "fn3_cliff": np.array([b["below_n_cliff"] and b["below_n_drop"] in (ri, n - ri)
                               for b, ri in zip(bs, r, strict=True)]),
        "fn3_located": np.array([abs(b["below_n_drop"] - ri) <= 1 or abs(b["below_n_drop"] - (n - ri)) <= 1
                                 for b, ri in zip(bs, r, strict=True)]),
        **{k: np.array([b["lines"][k] for b in bs], dtype=float) for k in ("kept", "cover1", "cover2")},
    }


def summarize(results: list[dict], params: TMSParams) -> list[dict]:
    """Per model: arrays over seeds of every scalar measurement (per beta and per baseline)."""
    out = []
    for m, s in params.models:
        runs = runs_of(results, m, s)
        row = {"m": m, "S": s, "label": f"m={m}, S={s:g}",
               "represented": np.array([r["n_represented"] for r in runs]),
               "loss": np.array([r["loss"] for r in runs]), "beta": {}}
        for base in ("block", "random"):
            row[base] = {k: np.array([r[base][k] for r in runs], dtype=float) for k in runs[0][base]}
        for beta in params.all_betas:
            row["beta"][beta] = _beta_summary([r["beta"][beta] for r in runs], runs, params.n_features)
        out.append(row)
    return out


# --------------------------------------------------------------------------------------------
# Appendix B: the closed form against the engine
# --------------------------------------------------------------------------------------------


def appendix_b_check(params: TMSParams, model_index: int = 0, seed: int | None = None,
                     n_check: int = 40, beta: float | None = None) -> dict:
    """Closed-form Jacobian (all samples) and kernel (first ``n_check`` samples) vs the engine.

    Returns the largest absolute differences relative to the largest entries (float64), for the
    model ``params.models[model_index]`` at ``seed`` (default the first seed), with
    ``output_weights = I**(beta/2)`` (default ``beta = params.betas[0]``).
    """
    m, s = params.models[check_int("model_index", model_index, minimum=0,
                                   maximum=len(params.models) - 1)]
    run = train_tms(params.setup(m, s), params.seeds[0] if seed is None else seed)
    model, data = run.model().double(), run.data.double()
    beta = params.betas[0] if beta is None else beta
    ow = importance(params.n_features, params.importance_base, dtype=torch.float64) ** (beta / 2)
    W, b = model.W.detach(), model.b.detach()
    jac_engine = entk_jacobian(model, data, output_weights=ow)
    jac_closed = closed_form_jacobian(W, b, data, ow)
    sub = data[: check_int("n_check", n_check, minimum=1, maximum=params.n_samples)]
    k_engine = entk(model, sub, collapse="flattened", output_weights=ow)
    k_closed = closed_form_kernel(W, b, sub, ow)
    return {
        "model": f"m={m}, S={s:g}", "beta": beta, "jacobian_shape": tuple(jac_engine.shape),
        "kernel_shape": tuple(k_engine.shape),
        "jacobian_rel_err": float((jac_engine - jac_closed).abs().max() / jac_engine.abs().max()),
        "kernel_rel_err": float((k_engine - k_closed).abs().max() / k_engine.abs().max()),
    }
