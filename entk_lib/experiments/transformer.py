"""Chapter 6 (1-layer Transformer on modular addition): the paper's Section 4, Fig. 3 and Table 2.

For each seed a :class:`~entk_lib.models.transformer.ModularTransformer` is trained (cached on
disk), its key frequencies are read off the Fourier spectrum of its token embedding
(:func:`entk_lib.features.key_frequencies`), and the per-parameter-tensor eNTKs (``sum_logits``
collapse, all p^2 inputs) are diagonalized:

* at every ``checkpoint_every`` epochs for the ``tracked`` tensors (the unembedding, as in the
  paper's Fig. 3), and for every tensor at every ``full_every`` epochs and at the end;
* the overlap (:func:`entk_lib.alignment.subspace_overlap`) of eigenvector windows with the sum
  modes ``cos/sin(2 pi k (a+b)/p)`` and the axis-sum modes ``cos/sin(2 pi k a/p) + (same in b)``
  at the K key frequencies is measured against random subspaces of the same dimension.

Windows (fixed from the paper's seed-2 analysis, where K = 2): the *sum window* is eigenvectors
``1 .. 2K+1`` (the paper's "top five"), the *axis-sum window* the next ``2K`` (its "5-8").
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..alignment import empirical_p_value, orthonormal_basis, random_subspace_overlaps, subspace_overlap
from ..cache import cached
from ..claims import ClaimsTable, fmt, verdict
from ..features import axis_sum_family, fourier_family, key_frequencies
from ..grokking import (
    COMPLETE_LEVEL,
    ONSET_LEVEL,
    RISE_LEVEL,
    derivative_maxima,
    derivative_peak,
    grokking_onset,
)
from ..kernel import entk_by_layer
from ..models.transformer import ModularTransformer, train_test_split, train_transformer
from ..models.transformer import modular_tokens as _tokens
from ..params import check_int, check_int_list, check_prime, check_real
from ..record import ChapterRecord
from ..spectrum import top_eigenpairs

__all__ = [
    "GROK_LEVELS",
    "GROK_NAMES",
    "PAPER",
    "TENSORS",
    "TransformerParams",
    "analyze_seed",
    "claims_table",
    "record",
    "run_all",
    "table2",
    "train_seed",
]

#: Version of the training code (part of the cache key: bump when training changes).
TRAIN_VERSION = "transformer-train-v2"
#: Version of the analysis code (part of the analysis cache key).
ANALYSIS_VERSION = "transformer-analysis-v4"

#: Test-accuracy levels of the grokking epochs reported here: the first rise (10%), the onset
#: (50%) and the completion (95%), the book's definitions (:mod:`entk_lib.grokking`).
GROK_LEVELS = (RISE_LEVEL, ONSET_LEVEL, COMPLETE_LEVEL)
GROK_NAMES = ("first rise", "onset", "complete")
#: Maxima of the overlap's derivative at least this fraction of the largest compete with it: a
#: seed whose competing maxima fall both near and away from the onset is graded as ambiguous
#: (partly), since rounding on another CPU can swap which one is the largest.
PEAK_REL_HEIGHT = 0.5

#: Parameter tensors of the model, in the order of the paper's Table 2, with short labels.
TENSORS = {
    "embed.weight": "W_E (token embedding)",
    "pos_embed.weight": "W_pos (position embedding)",
    "attn.W_Q.weight": "W_Q",
    "attn.W_K.weight": "W_K",
    "attn.W_V.weight": "W_V",
    "attn.W_O.weight": "W_O",
    "mlp.W_in.weight": "W_in (MLP)",
    "mlp.W_out.weight": "W_out (MLP)",
    "unembed.weight": "W_U (unembedding)",
}

#: What the paper reports (v4, Section 4; the author's released notebook for the seed-2 run).
PAPER = {
    "seed": 2,
    "key_frequencies": [1, 12],
    "grok_marks": (150, 1900),
    "unembed_sum_top5": 3.96,
    "unembed_axis_5to8": 3.94,
}


@dataclass
class TransformerParams:
    """Parameters of the Transformer chapter (validated on construction)."""

    p: int = 29
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 256
    train_fraction: float = 0.5
    lr: float = 3e-4
    weight_decay: float = 1.0
    batch_size: int = 64
    epochs: int = 4000
    checkpoint_every: int = 20
    full_every: int = 20
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    top_k: int = 40
    split_seed: int = 0
    tracked: list[str] = field(default_factory=lambda: ["unembed.weight"])
    baseline_draws: int = 1000

    def __post_init__(self):
        self.p = check_prime("p", self.p)
        if self.p < 5:
            raise ValueError(f"`p` must be an odd prime >= 5, got {self.p}")
        self.d_model = check_int("d_model", self.d_model, minimum=1, maximum=4096)
        self.n_heads = check_int("n_heads", self.n_heads, minimum=1, maximum=self.d_model)
        if self.d_model % self.n_heads:
            raise ValueError(f"`n_heads` must divide `d_model` ({self.d_model}), got {self.n_heads}")
        self.d_mlp = check_int("d_mlp", self.d_mlp, minimum=1, maximum=16384)
        self.train_fraction = check_real("train_fraction", self.train_fraction, low=0.0, high=1.0,
                                         low_inclusive=False, high_inclusive=False)
        self.lr = check_real("lr", self.lr, low=0.0, high=1.0, low_inclusive=False)
        self.weight_decay = check_real("weight_decay", self.weight_decay, low=0.0)
        self.batch_size = check_int("batch_size", self.batch_size, minimum=1)
        self.epochs = check_int("epochs", self.epochs, minimum=1)
        self.checkpoint_every = check_int("checkpoint_every", self.checkpoint_every, minimum=1,
                                          maximum=self.epochs)
        self.full_every = check_int("full_every", self.full_every, minimum=self.checkpoint_every)
        if self.full_every % self.checkpoint_every:
            raise ValueError(f"`full_every` must be a multiple of `checkpoint_every` "
                             f"({self.checkpoint_every}), got {self.full_every}")
        self.seeds = check_int_list("seeds", self.seeds, minimum=0)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must be distinct, got {self.seeds}")
        self.top_k = check_int("top_k", self.top_k, minimum=1, maximum=self.p**2)
        self.split_seed = check_int("split_seed", self.split_seed, minimum=0)
        if isinstance(self.tracked, str) or any(t not in TENSORS for t in self.tracked):
            raise ValueError(f"`tracked` must be a list of names from {list(TENSORS)}, got {self.tracked!r}")
        self.baseline_draws = check_int("baseline_draws", self.baseline_draws, minimum=10)
        train_test_split(self.p, self.train_fraction, self.split_seed)  # non-empty splits

    def checkpoint_epochs(self) -> list[int]:
        """Epochs 0, checkpoint_every, 2*checkpoint_every, ..., and the last epoch."""
        return sorted(set(range(0, self.epochs + 1, self.checkpoint_every)) | {self.epochs})

    def full_epochs(self) -> list[int]:
        """Epochs at which every tensor's eNTK is diagonalized (and the last epoch)."""
        return sorted(set(range(0, self.epochs + 1, self.full_every)) | {self.epochs})

    def training_key(self, seed: int) -> dict:
        keys = ("p", "d_model", "n_heads", "d_mlp", "train_fraction", "lr", "weight_decay",
                "batch_size", "epochs", "checkpoint_every", "split_seed")
        return {**{k: getattr(self, k) for k in keys}, "seed": seed, "version": TRAIN_VERSION}


# --------------------------------------------------------------------------------------------
# Training (cached)
# --------------------------------------------------------------------------------------------


@contextmanager
def single_thread():
    """Run torch on one thread inside the block (same floating-point reductions on every machine;
    these small kernels gain little from more threads and lose much when cores are oversubscribed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train(params: TransformerParams, seed: int, progress: bool) -> dict:
    train_idx, test_idx = train_test_split(params.p, params.train_fraction, params.split_seed)
    gen = torch.Generator().manual_seed(seed)
    model = ModularTransformer(params.p, params.d_model, params.n_heads, params.d_mlp, generator=gen)
    with single_thread():
        start, cpu_start, load = time.perf_counter(), time.process_time(), _load()
        run = train_transformer(model, train_idx=train_idx, test_idx=test_idx, lr=params.lr,
                                weight_decay=params.weight_decay, batch_size=params.batch_size,
                                epochs=params.epochs, generator=gen, eval_every=params.checkpoint_every,
                                checkpoint_epochs=params.checkpoint_epochs(), progress=progress,
                                desc=f"seed {seed}")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"history": run.history, "checkpoints": run.checkpoints, "final_state": run.final_state,
            "train_seconds": seconds, "train_cpu_seconds": cpu, "load": (load + _load()) / 2, "threads": 1}


def _load() -> float:
    """The 1-minute load average (NaN where the OS does not report it)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return float("nan")


def train_seed(params: TransformerParams, seed: int, progress: bool = True) -> dict:
    """The trained run of one seed (from the cache when present): history, checkpoints, timing."""
    return cached("transformer_runs", params.training_key(seed), lambda: _train(params, seed, progress))


def build_model(params: TransformerParams, state: dict) -> ModularTransformer:
    model = ModularTransformer(params.p, params.d_model, params.n_heads, params.d_mlp)
    model.load_state_dict(state)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Analysis of one seed (cached)
# --------------------------------------------------------------------------------------------


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
    w_sum, w_axis = windows(n_keys)
    k = vectors.shape[1]
    out = {"sum_window": subspace_overlap(vectors[:, w_sum], fams["sum"]) if w_sum.stop <= k else np.nan,
           "axis_window": (subspace_overlap(vectors[:, w_axis], fams["axis_sum"])
                           if w_axis.stop <= k else np.nan)}
    for name, fam in fams.items():
        out[f"{name}_capture"] = capture_rank(vectors, fam)
    return out


def _per_tensor(model, tokens, names, top_k) -> tuple[dict, tuple[float, float]]:
    """Top-k eigenpairs of each named tensor's sum_logits eNTK, and (wall, CPU) seconds taken."""
    start, cpu = time.perf_counter(), time.process_time()
    kernels = entk_by_layer(model, tokens, collapse="sum_logits", by="parameter", layers=names)
    pairs = {name: top_eigenpairs(kernels[name], top_k) for name in names}
    return pairs, (time.perf_counter() - start, time.process_time() - cpu)


def _analyze(params: TransformerParams, seed: int, run: dict, progress: bool) -> dict:
    tokens, _ = _tokens(params.p)
    final = build_model(params, run["final_state"])
    keys = key_frequencies(final.embed.weight, params.p)
    fams = {"sum": fourier_family(params.p, "sum", keys.frequencies),
            "axis_sum": axis_sum_family(params.p, keys.frequencies)}
    full_epochs = set(params.full_epochs())
    track: dict[str, dict[str, list]] = {}
    cost: dict[str, list] = {"tracked": [], "full": []}
    for epoch in tqdm(sorted(run["checkpoints"]), desc=f"eNTKs seed {seed}", disable=not progress):
        model = build_model(params, run["checkpoints"][epoch])
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
    load = _load()
    return {"seed": seed, "keys": keys._asdict(), "track": track,
            "final_vectors": {n: v.vectors[:, :n_vec] for n, v in final_pairs.items()},
            "final_values": {n: v.values for n, v in final_pairs.items()},
            "cost": {**{k: np.mean(v, axis=0).tolist() if v else [np.nan, np.nan] for k, v in cost.items()},
                     "load": load},
            "baselines": _baselines(params, fams, len(keys.frequencies))}


def _baselines(params: TransformerParams, fams: dict, n_keys: int) -> dict:
    """Null overlaps of random subspaces with the window sizes (for p-values)."""
    w_sum, w_axis = windows(n_keys)
    n = params.p**2
    return {"sum_window": random_subspace_overlaps(n, w_sum.stop - w_sum.start, fams["sum"],
                                                   draws=params.baseline_draws, seed=1),
            "axis_window": random_subspace_overlaps(n, w_axis.stop - w_axis.start, fams["axis_sum"],
                                                    draws=params.baseline_draws, seed=2)}


def analyze_seed(params: TransformerParams, seed: int, progress: bool = True) -> dict:
    """Train (or load) one seed and run the eNTK analysis (cached): see the module docstring."""
    run = train_seed(params, seed, progress)
    key = {**params.training_key(seed), "top_k": params.top_k, "full_every": params.full_every,
           "tracked": sorted(params.tracked), "baseline_draws": params.baseline_draws,
           "analysis": ANALYSIS_VERSION}
    with single_thread():
        result = cached("transformer_analysis", key, lambda: _analyze(params, seed, run, progress))
    grok = grokking_onset(run["history"], GROK_LEVELS)
    timing = {k: run[k] for k in ("train_seconds", "train_cpu_seconds", "load")}
    return {**result, **timing, "history": run["history"], "grok": grok, "final_state": run["final_state"]}


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


# --------------------------------------------------------------------------------------------
# Summaries: Fig. 3, Table 2, claims
# --------------------------------------------------------------------------------------------


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


def seed_summary(res: dict, checkpoint_every: int) -> dict:
    """Key numbers of one seed: key frequencies, grokking epochs, unembedding overlaps, peak."""
    tr = res["track"]["unembed.weight"]
    dim = 2 * len(res["keys"]["frequencies"])
    deriv, peak = derivative_peak(tr["epoch"], np.asarray(tr["sum_window"]) / dim)
    hist = res["history"]
    acc_at_peak = float(np.interp(peak, hist["epoch"], hist["test_acc"]))
    rise, onset, _ = res["grok"]

    def in_window(epoch) -> bool:
        return rise is not None and onset is not None and rise - checkpoint_every <= epoch <= onset

    maxima = derivative_maxima(tr["epoch"], np.asarray(tr["sum_window"]) / dim, PEAK_REL_HEIGHT)
    lam = tr["eigenvalues"][tr["epoch"].index(peak)]
    edge = 2 * len(res["keys"]["frequencies"])  # 0-based index of the window's last eigenvalue
    edge_gap = float((lam[edge] - lam[edge + 1]) / lam[edge]) if edge + 1 < len(lam) else float("nan")
    return {"seed": res["seed"], "keys": res["keys"]["frequencies"], "ratio": res["keys"]["ratio"],
            "clear": res["keys"]["clear"], "grok": res["grok"], "final_test_acc": hist["test_acc"][-1],
            "sum_window": tr["sum_window"][-1], "axis_window": tr["axis_window"][-1], "dim": dim,
            "peak": peak, "acc_at_peak": acc_at_peak, "peak_near_onset": in_window(peak),
            "maxima": maxima, "peak_ambiguous": len({in_window(e) for e, _ in maxima}) > 1,
            "peak_minus_onset": None if onset is None else peak - onset,
            "edge_gap": edge_gap}


def _fmt_keys(summaries) -> str:
    return "; ".join(f"seed {s['seed']}: k = {', '.join(map(str, s['keys']))}" for s in summaries)


def claims_table(results: list[dict], params: TransformerParams) -> ClaimsTable:
    """The chapter's claims with verdicts (criteria fixed in the chapter text beforehand)."""
    sums = [seed_summary(r, params.checkpoint_every) for r in results]
    table = ClaimsTable("1-layer Transformer on modular addition (v4 Fig. 3, Table 2): claims and "
                        "measurements")
    done = [s["grok"][2] for s in sums]
    table.add("The Transformer groks modular addition (test accuracy -> ~100%)",
              f"seed 2 marked at epochs {PAPER['grok_marks'][0]} and {PAPER['grok_marks'][1]}",
              "; ".join(f"seed {s['seed']}: first rise/onset/complete (10/50/95% test acc) at epochs "
                        f"{'/'.join(str(g) if g is not None else 'never' for g in s['grok'])}, final "
                        f"{fmt(100 * s['final_test_acc'], 1)}%" for s in sums),
              verdict(all(d is not None for d in done), partial=any(d is not None for d in done)),
              source="v4 Fig. 3 (grokking marks); abstract")
    seed2 = [s for s in sums if s["seed"] == PAPER["seed"]]
    table.add("Key frequencies of seed 2 (found by hand in the paper, automatically here)",
              "k = 1, 12", _fmt_keys(seed2) if seed2 else "seed 2 not run",
              verdict(seed2[0]["keys"] == PAPER["key_frequencies"], partial=bool(
                  set(seed2[0]["keys"]) & set(PAPER["key_frequencies"]))) if seed2 else verdict(None),
              source="v4 Table 2 (Transformer section)")
    distinct = len({tuple(s["keys"]) for s in sums}) == len(sums)
    table.add("The key frequencies depend on the seed", '"seed-dependent frequencies"', _fmt_keys(sums),
              verdict(distinct) if len(sums) > 1 else verdict(None), source="v4 abstract (per the review)")
    ok_sum = [s["sum_window"] >= 0.9 * s["dim"] for s in sums]
    table.add("W_U eNTK: top 2K+1 eigenvectors contain the sum modes at the key frequencies",
              f"{PAPER['unembed_sum_top5']} / 4 (K = 2, top 5)",
              "; ".join(f"seed {s['seed']}: {fmt(s['sum_window'])} / {s['dim']}" for s in sums),
              verdict(all(ok_sum), partial=any(ok_sum)), source="v4 Table 2 (W_U row)")
    ok_axis = [s["axis_window"] >= 0.9 * s["dim"] for s in sums]
    table.add("W_U eNTK: the next 2K eigenvectors contain the axis-sum modes",
              f"{PAPER['unembed_axis_5to8']} / 4 (K = 2, eigenvectors 5-8)",
              "; ".join(f"seed {s['seed']}: {fmt(s['axis_window'])} / {s['dim']}" for s in sums),
              verdict(all(ok_axis), partial=any(ok_axis)), source="v4 Table 2 (W_U row)")
    near = [s["peak_near_onset"] and not s["peak_ambiguous"] for s in sums]
    far = [not s["peak_near_onset"] and not s["peak_ambiguous"] for s in sums]
    table.add("The derivative of the W_U sum-mode overlap peaks near the onset of grokking",
              '"first derivative peaking near the onset of grokking" (epoch ~150 for seed 2)',
              "; ".join(f"seed {s['seed']}: peak at epoch {s['peak']} ({_gap_text(s)}"
                        f"{'; ambiguous: competing maxima' if s['peak_ambiguous'] else ''})" for s in sums),
              "reproduced" if all(near) else "not reproduced" if all(far) else "partly reproduced",
              source="v4 Fig. 3; abstract",
              details="; ".join(f"seed {s['seed']}: test acc at the peak {fmt(100 * s['acc_at_peak'], 0)}%"
                                f"{_maxima_text(s)}" for s in sums))
    table.add(**_other_tensors_row(results))
    return table


def _other_tensors_row(results: list[dict]) -> dict:
    """Table 2's rows for the eight tensors other than W_U. Neither the shared reading of v4 nor
    the author's released notebook (which computes only W_U and says to substitute the other
    layers' names) gives their values, so there is nothing to grade against: inconclusive, with
    what we measured (windows of near-degenerate eigenvalues, so not recorded as numbers)."""
    rows = table2([r | {"track": {k: v for k, v in r["track"].items() if k != "unembed.weight"}}
                   for r in results])
    parts = []
    for res in results:
        mine = [r for r in rows if r["seed"] == res["seed"]]
        sig = [r["tensor"].split(" ")[0] for r in mine if r["sum_window_p"] <= 0.01]
        parts.append(f"seed {res['seed']}: sum window above every random draw (p <= 0.01) for "
                     f"{len(sig)}/{len(mine)} tensors ({', '.join(sig) or 'none'})" if mine
                     else f"seed {res['seed']}: not computed")
    return dict(claim="Table 2 for the other eight tensors (W_E ... W_out): their top 2K+1 / next 2K "
                      "eigenvectors against the sum / axis-sum modes",
                paper="values not available here (not in the shared reading of v4; the author's "
                      "released notebook computes only W_U)",
                measured="; ".join(parts), verdict_text="inconclusive", source="v4 Table 2",
                details="the full table, with overlaps and capture ranks per tensor and seed, is in the "
                        "Table 2 section above")


def _maxima_text(summary: dict) -> str:
    """The competing maxima of the derivative, when there are several."""
    if len(summary["maxima"]) < 2:
        return ""
    listed = ", ".join(f"{e} ({fmt(h)})" for e, h in summary["maxima"])
    return (f", maxima within {PEAK_REL_HEIGHT:g} of it: {listed}"
            + (": ambiguous (some near the onset, some not)" if summary["peak_ambiguous"] else ""))


def record(results: list[dict], params: TransformerParams, table: ClaimsTable) -> ChapterRecord:
    """The chapter's verdicts and per-seed key numbers with their kinds of tolerance.

    Exact: the key frequencies (and whether their drop is clear). Epochs: the grokking epochs.
    The derivative's peak epoch is not recorded: where two maxima have similar heights (seed 1:
    epochs 180 and 2840) rounding decides which is the largest; the claim's verdict takes every
    maximum within ``PEAK_REL_HEIGHT`` of the largest into account and is recorded instead.
    Overlaps and p-values: the unembedding's windows,
    the paper's Table 2 row. The other tensors' Table 2 overlaps are shown in the chapter but not
    recorded: their windows end inside near-degenerate eigenvalue pairs, so which eigenvector falls
    inside moves with rounding (they are not graded either).
    """
    rec = ChapterRecord("06_transformer", params).add_claims(table)
    for res in results:
        s = seed_summary(res, params.checkpoint_every)
        tag = f"seed={s['seed']}"
        rec.add(f"{tag}.key_frequencies", s["keys"], "exact")
        rec.add(f"{tag}.key_clear", int(s["clear"]), "exact")
        rec.add(f"{tag}.key_ratio", s["ratio"], "loose")  # energy ratio to small non-key powers
        rec.add(f"{tag}.grok[rise, onset, complete]", s["grok"], "epoch")
        rec.add(f"{tag}.final_test_acc", s["final_test_acc"], "accuracy")
        for w in ("sum_window", "axis_window"):
            rec.add(f"{tag}.W_U.{w}", s[w], "overlap")
            rec.add(f"{tag}.W_U.{w}.p_value", empirical_p_value(s[w], res["baselines"][w]), "pvalue")
    return rec


def _gap_text(summary: dict) -> str:
    gap = summary["peak_minus_onset"]
    return "onset never reached" if gap is None else f"{gap:+d} epochs from the onset"


def params_dict(params: TransformerParams) -> dict:
    return asdict(params)


# --------------------------------------------------------------------------------------------
# Tables and figures of the chapter
# --------------------------------------------------------------------------------------------


class TextTable:
    """A small table that renders as Markdown in the book and as aligned text for nbval."""

    def __init__(self, title: str, header: list[str], rows: list[list[str]]):
        self.title, self.header, self.rows = title, header, rows

    def _repr_markdown_(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return f"**{self.title}**\n\n" + "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        widths = [max(len(str(r[i])) for r in [self.header, *self.rows]) for i in range(len(self.header))]
        fmt_row = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join([self.title, fmt_row.format(*self.header)] + [fmt_row.format(*r) for r in self.rows])


def table2_view(results: list[dict]) -> TextTable:
    """Table 2 at the end of training: per tensor and seed, window overlaps and capture ranks."""
    rows = table2(results)
    seeds = [r["seed"] for r in results]
    header = ["tensor"]
    for s in seeds:
        header += [f"s{s} sum (top 2K+1)", f"s{s} axis-sum (next 2K)", f"s{s} 90% rank sum/axis"]
    body = []
    for name, label in TENSORS.items():
        line = [label]
        for s in seeds:
            r = next(x for x in rows if x["name"] == name and x["seed"] == s)
            ranks = "/".join(str(v) if v is not None else ">k" for v in (r["sum_capture"], r["axis_capture"]))
            line += [f"{fmt(r['sum_window'])} / {r['dim']}", f"{fmt(r['axis_window'])} / {r['dim']}", ranks]
        body.append(line)
    null = ["random subspace (mean)"]
    for s in seeds:
        r = next(x for x in rows if x["seed"] == s)
        null += [f"{fmt(r[f'{w}_null'], 3)} / {r['dim']}" for w in ("sum_window", "axis_window")] + ["-"]
    body.append(null)
    return TextTable("Table 2 (end of training): overlaps of per-tensor eNTK eigenvectors with the "
                     "families at the key frequencies", header, body)


def plot_training(ax, res: dict) -> None:
    """Train and test accuracy against epoch, grokking epochs as vertical lines."""
    h = res["history"]
    ax.plot(h["epoch"], 100 * np.asarray(h["train_acc"]), label="train")
    ax.plot(h["epoch"], 100 * np.asarray(h["test_acc"]), label="test")
    for name, level, epoch, style in zip(GROK_NAMES, GROK_LEVELS, res["grok"], ("--", "-.", ":"),
                                         strict=True):
        if epoch is not None:
            ax.axvline(epoch, color="k", ls=style, lw=0.8,
                       label=f"{name}: test acc {100 * level:.0f}% (epoch {epoch})")
    ax.set(title=f"seed {res['seed']}: accuracy", xlabel="epoch", ylabel="accuracy (%)", ylim=(-2, 102))
    ax.legend(fontsize=7)


def plot_fourier(ax, res: dict) -> None:
    """Share of the token embedding's Fourier energy per frequency; key frequencies highlighted."""
    power = np.asarray(res["keys"]["power"])
    freqs = np.arange(1, power.size + 1)
    colors = ["C3" if k in res["keys"]["frequencies"] else "C0" for k in freqs]
    ax.bar(freqs, 100 * power, color=colors)
    ax.set(title=f"seed {res['seed']}: Fourier spectrum of W_E (key: red)", xlabel="frequency k",
           ylabel="share of Fourier energy (%)", xticks=freqs)


def plot_fig3(ax, res: dict, *, window: str = "sum_window", label: str = "sum modes") -> None:
    """The paper's Fig. 3: W_U window overlap (% of the family) and its derivative against epoch."""
    tr = res["track"]["unembed.weight"]
    dim = 2 * len(res["keys"]["frequencies"])
    frac = 100 * np.asarray(tr[window]) / dim
    deriv, peak = derivative_peak(tr["epoch"], frac)
    ax.plot(tr["epoch"], frac, label=f"overlap with {label} (% of {dim})")
    ax2 = ax.twinx()
    ax2.plot(tr["epoch"], deriv, color="C1", lw=0.8, label="derivative (right axis)")
    ax2.set_ylabel("d overlap / d epoch (% per epoch)")
    for epoch, style in zip(res["grok"], ("--", "-.", ":"), strict=True):
        if epoch is not None:
            ax.axvline(epoch, color="k", ls=style, lw=0.8)
    ax.axvline(peak, color="C1", lw=0.8, alpha=0.6)
    ax.set(title=f"seed {res['seed']}: W_U eNTK vs {label}", xlabel="epoch", ylabel="overlap (% of family)",
           ylim=(-2, 102))
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="center right")


def tensor_timeline(res: dict, window: str = "sum_window") -> tuple[np.ndarray, np.ndarray]:
    """(epochs, overlap fraction (tensors, epochs)) at the epochs where every tensor was analysed."""
    epochs = res["track"]["embed.weight"]["epoch"]
    dim = 2 * len(res["keys"]["frequencies"])
    grid = np.array([[res["track"][n][window][res["track"][n]["epoch"].index(e)] / dim for e in epochs]
                     for n in TENSORS])
    return np.asarray(epochs), grid


def plot_eigenvectors(axes, res: dict, tensor: str = "unembed.weight") -> None:
    """The first eigenvectors of a tensor's final eNTK as p x p images over (a, b)."""
    vecs = res["final_vectors"][tensor]
    p = int(round(np.sqrt(vecs.shape[0])))
    for i, ax in enumerate(axes):
        v = vecs[:, i].reshape(p, p)
        lim = np.abs(v).max()
        ax.imshow(v, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
        ax.set(title=f"eigenvector {i + 1}", xlabel="b", ylabel="a", xticks=[], yticks=[])


class Note:
    """Generated prose that renders as Markdown in the book (plain text elsewhere)."""

    def __init__(self, text: str):
        self.text = text

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def time_full_set(params: TransformerParams, res: dict) -> tuple[float, float]:
    """(wall, CPU) seconds for the nine per-tensor eNTKs and their top-k eigenpairs, final model."""
    tokens, _ = _tokens(params.p)
    with single_thread():
        _, seconds = _per_tensor(build_model(params, res["final_state"]), tokens, list(TENSORS), params.top_k)
    return seconds


def cost_view(results: list[dict], params: TransformerParams) -> TextTable:
    """Measured costs per seed, wall / CPU, and the extrapolation to the paper's schedule.

    Everything runs on one thread, so the CPU seconds are close to what an idle core takes; the
    wall seconds also count waiting for a busy machine (its load average is in the last column).
    """
    n_paper = params.epochs // 20 + 1
    live = time_full_set(params, results[0])

    def pair(wall, cpu, scale=1.0, digits=1):
        return f"{scale * wall:.{digits}f} / {scale * cpu:.{digits}f}"

    rows = []
    for res in results:
        tracked, full = res["cost"]["tracked"], res["cost"]["full"]
        paper = [res["train_seconds"] + n_paper * full[0], res["train_cpu_seconds"] + n_paper * full[1]]
        # with full_every == checkpoint_every every checkpoint is a full set: no W_U-only timing
        only_wu = "- (in the full sets)" if np.isnan(tracked[0]) else pair(*tracked, scale=1000, digits=0)
        rows.append([str(res["seed"]), pair(res["train_seconds"], res["train_cpu_seconds"], digits=0),
                     only_wu, pair(*full, digits=2), pair(*paper, digits=0),
                     f"{res['load']:.1f} / {res['cost']['load']:.1f}"])
    rows.append([f"now (seed {results[0]['seed']})", "-", "-", pair(*live, digits=2), "-", f"{_load():.1f}"])
    header = ["seed", "training (s)", "W_U eNTK + eigenpairs (ms)", "all 9 eNTKs + eigenpairs (s)",
              f"training + {n_paper} full sets (s)", "load avg (train / eNTK)"]
    return TextTable(f"Measured cost, wall / CPU ({params.epochs} epochs, {params.p ** 2} inputs, "
                     f"top {params.top_k}, one thread, {os.cpu_count()} cores)", header, rows)


def key_numbers(results: list[dict], params: TransformerParams) -> TextTable:
    """Rounded per-seed results checked by nbval."""
    rows = []
    for res in results:
        s = seed_summary(res, params.checkpoint_every)
        p_sum, p_axis = (_p_text(s[w], res["baselines"][w]) for w in ("sum_window", "axis_window"))
        rows.append([str(s["seed"]), ",".join(map(str, s["keys"])),
                     "/".join(str(g) if g is not None else "never" for g in s["grok"]),
                     fmt(100 * s["final_test_acc"], 1), f"{fmt(s['sum_window'])} / {s['dim']}",
                     f"{fmt(s['axis_window'])} / {s['dim']}", p_sum, p_axis,
                     str(s["peak"]) + ("" if len(s["maxima"]) < 2 else
                                       " (also " + ", ".join(str(e) for e, _ in s["maxima"][1:]) + ")"),
                     fmt(s["edge_gap"], 3)])
    header = ["seed", "key k", "rise/onset/complete epochs", "final test %", "W_U sum window",
              "W_U axis window", "p (sum)", "p (axis)", "derivative peak epoch", "edge gap at peak"]
    return TextTable("Key numbers (end of training; p-values against random subspaces)", header, rows)


def _p_text(observed: float, null) -> str:
    """The permutation p-value, as a bound when no null sample reaches the observation."""
    value = empirical_p_value(observed, null)
    return f"< {1 / len(null):.0e}" if value <= 1 / (len(null) + 1) else f"{value:.3f}"


def closing_note(results: list[dict], params: TransformerParams, elapsed: float) -> Note:
    """A short generated summary of what ran and how long it took."""
    sums = [seed_summary(r, params.checkpoint_every) for r in results]
    train = ", ".join(f"seed {r['seed']}: {r['train_seconds']:.0f} s wall, {r['train_cpu_seconds']:.0f} s CPU"
                      for r in results)
    keys = "; ".join(f"seed {s['seed']}: k = {', '.join(map(str, s['keys']))}" for s in sums)
    return Note(
        f"**What ran.** {len(results)} seed{'s' if len(results) > 1 else ''} × {params.epochs} epochs "
        f"(training {train}, one CPU "
        f"thread, timed when first computed), the unembedding's eNTK at "
        f"{len(params.checkpoint_epochs())} checkpoints per seed and all nine tensors' at "
        f"{len(params.full_epochs())}; this execution of the notebook spent {elapsed:.0f} s on "
        f"training and analysis (about a second means both came from the cache). Key frequencies: {keys}. "
        "Figures: training curves, Fourier spectra of the embeddings, Table 2, Fig. 3 (overlaps and "
        "derivatives), the per-tensor overlap timeline and the unembedding eigenvectors over (a, b)."
    )
