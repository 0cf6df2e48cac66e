"""Train-or-load and the eNTK analysis of each seed (cached), the seeds in parallel processes,
and Table 2 over seeds.

Each seed's run comes from :func:`entk_lib.models.transformer.train_transformer` (cached). The
analysis (:func:`analyze_seed`) reads the key frequencies off the token embedding's Fourier
spectrum and diagonalizes the per-tensor ``sum_logits`` eNTKs on all p^2 inputs at the
checkpoints: the ``tracked`` tensors at every checkpoint, all nine at the ``full_every`` epochs
and at the end. The overlaps of eigenvector windows with the sum and axis-sum families at the
key frequencies are measured against random subspaces of the same dimension.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
from dataclasses import asdict

import numpy as np
from tqdm.auto import tqdm

from ...alignment import orthonormal_basis, random_subspace_overlaps, subspace_overlap
from ...cache import cached
from ...features import axis_sum_family, fourier_family, key_frequencies
from ...grokking import COMPLETE_LEVEL, ONSET_LEVEL, RISE_LEVEL, grokking_onset
from ...kernel import entk_by_layer
from ...linalg import empirical_p_value
from ...models.transformer import (
    CODE_VERSION,
    ModularTransformer,
    TransformerRun,
    modular_tokens,
    train_transformer,
)
from ...params import check_int
from ...spectrum import top_eigenpairs
from ...training import load_average, single_thread
from .params import TENSORS, TransformerParams

__all__ = [
    "ANALYSIS_VERSION",
    "GROK_LEVELS",
    "GROK_NAMES",
    "analyze_seed",
    "build_model",
    "capture_rank",
    "family_weights",
    "run_all",
    "table2",
    "time_full_set",
    "windows",
]

#: Version of the analysis code (part of the analysis cache key).
ANALYSIS_VERSION = "transformer-analysis-v4"

#: Test-accuracy levels of the grokking epochs reported here: the first rise (10%), the onset
#: (50%) and the completion (95%), the book's definitions (:mod:`entk_lib.grokking`).
GROK_LEVELS = (RISE_LEVEL, ONSET_LEVEL, COMPLETE_LEVEL)
GROK_NAMES = ("first rise", "onset", "complete")


def build_model(params: TransformerParams, state: dict) -> ModularTransformer:
    """A :class:`ModularTransformer` of these parameters' sizes with the weights ``state`` (eval)."""
    model = ModularTransformer(params.p, params.d_model, params.n_heads, params.d_mlp)
    model.load_state_dict(state)
    return model.eval()


def windows(n_keys: int) -> tuple[slice, slice]:
    """The sum window (eigenvectors 0 .. 2K) and the axis-sum window (2K+1 .. 4K), 0-based."""
    return slice(0, 2 * n_keys + 1), slice(2 * n_keys + 1, 4 * n_keys + 1)


def family_weights(vectors: np.ndarray, family: np.ndarray) -> np.ndarray:
    """Squared norm of each orthonormal eigenvector's projection on the (centred) family: (k,).

    Their partial sums are the overlaps of the top-m eigenspaces with the family.
    """
    basis = orthonormal_basis(family, center=True)
    return np.sum((basis.T @ vectors) ** 2, axis=0)


def capture_rank(vectors: np.ndarray, family: np.ndarray, level: float = 0.9) -> int | None:
    """Smallest m such that the top-m eigenvectors hold ``level`` of the family's dimension.

    ``vectors`` (n, k) must be orthonormal (eigenvectors); None when the top k never do.
    """
    weights = family_weights(vectors, family)
    dim = orthonormal_basis(family, center=True).shape[1]
    hits = np.flatnonzero(np.cumsum(weights) >= level * dim)
    return int(hits[0]) + 1 if hits.size else None


def _overlaps(vectors: np.ndarray, fams: dict[str, np.ndarray], n_keys: int) -> dict[str, float]:
    """Overlaps of the two windows of ``vectors`` (p^2, k) with their families (p^2, 2K), and the
    capture rank of each family (NaN for a window that does not fit in k)."""
    w_sum, w_axis = windows(n_keys)
    k = vectors.shape[1]
    out = {"sum_window": subspace_overlap(vectors[:, w_sum], fams["sum"]) if w_sum.stop <= k else np.nan,
           "axis_window": (subspace_overlap(vectors[:, w_axis], fams["axis_sum"])
                           if w_axis.stop <= k else np.nan)}
    for name, fam in fams.items():
        out[f"{name}_capture"] = capture_rank(vectors, fam)
    return out


def _per_tensor(model, tokens, names, top_k) -> tuple[dict, tuple[float, float]]:
    """Top-k eigenpairs of each named tensor's sum_logits eNTK (p^2, p^2) on ``tokens`` (p^2, 3),
    and the (wall, CPU) seconds taken."""
    start, cpu = time.perf_counter(), time.process_time()
    kernels = entk_by_layer(model, tokens, collapse="sum_logits", by="parameter", layers=names)
    pairs = {name: top_eigenpairs(kernels[name], top_k) for name in names}
    return pairs, (time.perf_counter() - start, time.process_time() - cpu)


def _analyze(params: TransformerParams, run: TransformerRun, progress: bool) -> dict:
    """Key frequencies of the final embedding, then the per-tensor eNTK spectra and window
    overlaps at every checkpoint (``track[tensor][quantity]``: one entry per analysed epoch)."""
    seed = run.seed
    tokens, _ = modular_tokens(params.p)
    final = run.model_at()
    keys = key_frequencies(final.embed.weight, params.p)
    fams = {"sum": fourier_family(params.p, "sum", keys.frequencies),
            "axis_sum": axis_sum_family(params.p, keys.frequencies)}
    full_epochs = set(params.full_epochs())
    track: dict[str, dict[str, list]] = {}
    cost: dict[str, list] = {"tracked": [], "full": []}
    for epoch in tqdm(sorted(run.checkpoints), desc=f"eNTKs seed {seed}", disable=not progress):
        model = run.model_at(epoch)
        names = list(TENSORS) if epoch in full_epochs else params.tracked
        pairs, seconds = _per_tensor(model, tokens, names, params.top_k)
        cost["full" if epoch in full_epochs else "tracked"].append(seconds)
        for name, (values, vectors) in pairs.items():
            row = track.setdefault(name, {"epoch": [], "eigenvalues": []})
            row["epoch"].append(epoch)
            row["eigenvalues"].append(values)
            for key, value in _overlaps(vectors, fams, len(keys.frequencies)).items():
                row.setdefault(key, []).append(value)
        if epoch == params.epochs:
            final_pairs = pairs
    n_vec = 4 * len(keys.frequencies) + 1
    load = load_average()
    return {"seed": seed, "keys": keys._asdict(), "track": track,
            "final_vectors": {n: v.vectors[:, :n_vec] for n, v in final_pairs.items()},
            "final_values": {n: v.values for n, v in final_pairs.items()},
            "cost": {**{k: np.mean(v, axis=0).tolist() if v else [np.nan, np.nan] for k, v in cost.items()},
                     "load": load},
            "baselines": _baselines(params, fams, len(keys.frequencies))}


def _baselines(params: TransformerParams, fams: dict, n_keys: int) -> dict:
    """Null overlaps (``baseline_draws``,) of random subspaces with the window sizes (for p-values)."""
    w_sum, w_axis = windows(n_keys)
    n = params.p**2
    return {"sum_window": random_subspace_overlaps(n, w_sum.stop - w_sum.start, fams["sum"],
                                                   draws=params.baseline_draws, seed=1),
            "axis_window": random_subspace_overlaps(n, w_axis.stop - w_axis.start, fams["axis_sum"],
                                                    draws=params.baseline_draws, seed=2)}


def analyze_seed(params: TransformerParams, seed: int, progress: bool = True) -> dict:
    """Train (or load) one seed and run the eNTK analysis (cached): see the module docstring.

    Returns
    -------
    dict
        ``seed``; ``keys`` (key frequencies: ``frequencies``, ``power`` (p//2,), ``ratio``,
        ``clear``); ``track[tensor]`` with ``epoch``, ``eigenvalues`` (top_k,) per epoch,
        ``sum_window``, ``axis_window`` (overlaps, out of 2K), ``sum_capture``,
        ``axis_sum_capture``; ``final_vectors[tensor]`` (p^2, 4K+1) and ``final_values[tensor]``
        (top_k,) at the end; ``baselines`` (null overlaps per window); ``cost`` (eNTK seconds);
        ``history``, ``grok`` (epochs at :data:`GROK_LEVELS`), ``final_state`` and the training's
        ``train_seconds``, ``train_cpu_seconds``, ``load``.
    """
    run = train_transformer(params.setup, seed, progress=progress)
    key = {**asdict(run.setup), "seed": seed, "train_version": CODE_VERSION, "top_k": params.top_k,
           "full_every": params.full_every, "tracked": sorted(params.tracked),
           "baseline_draws": params.baseline_draws, "analysis": ANALYSIS_VERSION}
    with single_thread():
        result = cached("transformer_analysis", key, lambda: _analyze(params, run, progress))
    grok = grokking_onset(run.history, GROK_LEVELS)
    timing = {k: run.cost[k] for k in ("train_seconds", "train_cpu_seconds", "load")}
    return {**result, **timing, "history": run.history, "grok": grok, "final_state": run.final_state}


def run_all(params: TransformerParams, progress: bool = True, processes: int | None = None) -> list[dict]:
    """:func:`analyze_seed` for every seed, the seeds in parallel processes.

    Every seed trains and is analysed on one thread, so running ``processes`` seeds at once
    (default: as many as there are seeds and CPU cores) gives the same numbers as running them one
    after the other, in about half the time on two cores. ``processes=1`` runs them in this process.
    """
    cores = os.cpu_count() or 1
    processes = min(len(params.seeds), cores) if processes is None else check_int(
        "processes", processes, minimum=1, maximum=max(cores, 1) * 4)
    if processes == 1 or len(params.seeds) == 1:
        return [analyze_seed(params, s, progress) for s in params.seeds]
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [pool.submit(analyze_seed, params, s, False) for s in params.seeds]
        return [f.result() for f in tqdm(futures, desc=f"seeds ({processes} processes)",
                                         disable=not progress)]


def table2(results: list[dict]) -> list[dict]:
    """Rows (tensor, seed): window overlaps, family dimension, p-values, capture ranks (final)."""
    rows = []
    for res in results:
        n_keys = len(res["keys"]["frequencies"])
        for name, label in TENSORS.items():
            if name not in res["track"]:
                continue
            tr = res["track"][name]
            i = tr["epoch"].index(max(tr["epoch"]))
            row = {"tensor": label, "name": name, "seed": res["seed"], "dim": 2 * n_keys}
            for key in ("sum_window", "axis_window"):
                row[key] = float(tr[key][i])
                row[f"{key}_p"] = empirical_p_value(row[key], res["baselines"][key])
                row[f"{key}_null"] = float(np.mean(res["baselines"][key]))
            row["sum_capture"] = tr["sum_capture"][i]
            row["axis_capture"] = tr["axis_sum_capture"][i]
            rows.append(row)
    return rows


def time_full_set(params: TransformerParams, res: dict) -> tuple[float, float]:
    """(wall, CPU) seconds for the nine per-tensor eNTKs and their top-k eigenpairs, final model."""
    tokens, _ = modular_tokens(params.p)
    with single_thread():
        _, seconds = _per_tensor(build_model(params, res["final_state"]), tokens, list(TENSORS), params.top_k)
    return seconds

