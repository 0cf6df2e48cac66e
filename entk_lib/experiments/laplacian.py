"""Chapter 5 (Laplacian rotation): from eNTK cliffs to individual Fourier features.

The paper's Appendix C and D (v1) and Fig. 4. For each seed, the cached modular-addition run of
:func:`entk_lib.models.modular.train_modular` is analysed at the end of training:

- the two cliff windows of the ``class_mean`` eNTK (0-based eigenvector indices): the first,
  ``1 .. 2(p-1)``, of the layer-1 kernel (or the total kernel, ``first_kernel``), and the second,
  ``2(p-1)+1 .. 4(p-1)``, of the total kernel;
- each window rotated by the two-stage Rayleigh-Ritz rotation of :mod:`entk_lib.laplacian`
  (axis Laplacians ``L_a``, ``L_b`` on the first, sum/difference Laplacians on the second), with
  the paper's ``n_second = d/2`` and the footnote-11 variant ``d/2 + n_extra``, and a sweep of
  ``n_second``;
- the one-to-one score of :func:`entk_lib.laplacian.pair_match` before and after, against the
  ceiling that the window's span allows (its overlap with the two families, divided by d);
- the compressed spectrum (stage-one Ritz values) against the Laplacian's values on pure
  Fourier modes;
- controls: the same rotation on the untrained network's first window; a graph learned from
  the eNTK (k nearest rows) in place of the torus, and random graphs with the same degrees
  along the same lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from ..alignment import random_orthonormal, subspace_overlap
from ..claims import ClaimsTable, fmt, fmt_spread, verdict
from ..features import cliff_windows, fourier_family
from ..kernel import entk, entk_by_layer
from ..laplacian import (
    LAPLACIAN_PAIRS,
    degree_preserving_shuffle,
    fourier_laplacian_values,
    graph_laplacian,
    knn_graph,
    line_labels,
    pair_families,
    pair_match,
    rayleigh_ritz_rotate,
    restrict_to_lines,
    torus_laplacians,
    two_stage_rotation,
)
from ..models.modular import ModularSetup, check_training_fields, train_modular
from ..params import check_choice, check_int, check_int_list, check_real
from ..plotting import heatmap
from ..record import ChapterRecord
from ..spectrum import top_eigenpairs

__all__ = [
    "LaplacianParams",
    "analyze_cliff",
    "analyze_seed",
    "claims_table",
    "closing_note",
    "key_numbers",
    "learned_graph_scores",
    "plot_graphs",
    "plot_heatmaps",
    "plot_sweep",
    "plot_why",
    "record",
    "run_all",
    "summarize",
]

CLIFFS = ("first", "second")
FIRST_KERNELS = ("fc1", "total")
GRAPH_ROWS = ("cliff", "kernel")


@dataclass
class LaplacianParams:
    """Parameters of the Laplacian-rotation chapter (validated on construction)."""

    p: int = 29
    width: int = 512
    train_fraction: float = 0.7
    lr: float = 0.05
    weight_decay: float = 0.01
    epochs: int = 500
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    first_kernel: str = "fc1"
    first_pair: str = "axis"
    second_pair: str = "diagonal"
    diagonal: str = "coordinate"
    n_second: int = 0
    n_extra: int = 4
    extra_sweep: list[int] = field(default_factory=lambda: [-4, -2, 0, 2, 4, 6, 8, 10, 12])
    knn_k: int = 4
    knn_sweep: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32])
    graph_rows: str = "cliff"
    random_graphs: int = 20
    match_threshold: float = 0.9

    def __post_init__(self):
        check_training_fields(self)
        check_choice("first_kernel", self.first_kernel, FIRST_KERNELS)
        check_choice("first_pair", self.first_pair, tuple(LAPLACIAN_PAIRS))
        check_choice("second_pair", self.second_pair, tuple(LAPLACIAN_PAIRS))
        check_choice("diagonal", self.diagonal, ("coordinate", "lattice"))
        d = self.window
        self.n_second = check_int("n_second", self.n_second, minimum=0, maximum=d)
        half = self.half
        self.n_extra = check_int("n_extra", self.n_extra, minimum=1 - half, maximum=d - half)
        self.extra_sweep = check_int_list("extra_sweep", self.extra_sweep, minimum=1 - half,
                                          maximum=d - half)
        self.knn_k = check_int("knn_k", self.knn_k, minimum=1, maximum=self.p**2 - 1)
        self.knn_sweep = check_int_list("knn_sweep", self.knn_sweep, minimum=1, maximum=self.p**2 - 1,
                                        nonempty=False)
        check_choice("graph_rows", self.graph_rows, GRAPH_ROWS)
        self.random_graphs = check_int("random_graphs", self.random_graphs, minimum=1)
        self.match_threshold = check_real("match_threshold", self.match_threshold, low=0.0, high=1.0,
                                          low_inclusive=False, high_inclusive=False)

    @property
    def setup(self) -> ModularSetup:
        """The training setup (the cache entry shared with the modular-addition chapter)."""
        return ModularSetup.from_params(self)

    @property
    def window(self) -> int:
        """Directions per cliff window, d = 2(p-1)."""
        return 2 * (self.p - 1)

    @property
    def half(self) -> int:
        """The paper's stage-two size: ``n_second`` if set, else d/2 = p-1."""
        return self.n_second or self.window // 2

    def pair_of(self, cliff: str) -> str:
        return self.first_pair if cliff == "first" else self.second_pair


# --------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------


def _window(kernel: torch.Tensor, sl: slice) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors (N, d) of ``kernel`` at the window ``sl`` (0-based, descending)."""
    values, vectors = top_eigenpairs(kernel.double(), sl.stop)
    return np.asarray(values[sl]), np.asarray(vectors[:, sl])


def _families_overlap(u: np.ndarray, p: int, pair: str) -> float:
    """Overlap of span(u) with the union of the pair's two families (they are orthogonal)."""
    return sum(subspace_overlap(u, fourier_family(p, f)) for f in LAPLACIAN_PAIRS[pair]["families"])


def _score(vectors: np.ndarray, pairs: np.ndarray, threshold: float) -> dict:
    m = pair_match(vectors, pairs, threshold=threshold)
    return {"mean": m.mean, "n_above": m.n_above, "projection": m.projection, "assignment": m.assignment}


def learned_graph_scores(u: np.ndarray, rows: np.ndarray, params: LaplacianParams, pair: str,
                         seed: int) -> dict:
    """One-to-one scores of the two-stage rotation with a graph learned from kernel rows.

    The kNN graph ``G`` on ``rows`` is split into the edges that run along the pair's first
    and second direction (:func:`restrict_to_lines`); their Laplacians replace the torus
    Laplacians in the two stages. ``single`` rotates once by the whole of ``G``'s Laplacian (no
    knowledge of the directions). ``random`` repeats the two stages with ``random_graphs``
    degree-preserving shuffles of each direction's graph within its lines.

    Returns ``learned``, ``single`` (scores), ``random_mean`` and ``random_above`` (arrays over
    the random graphs), ``knn_sweep`` (k -> matched mean of the two-stage rotation with the
    learned graph for each k in ``knn_sweep``) and ``edge_fractions`` (the share of ``G``'s
    edges along each torus direction).
    """
    pairs, _ = pair_families(params.p, pair)
    n1, n2 = LAPLACIAN_PAIRS[pair]["laplacians"]
    labels = line_labels(params.p)
    g = knn_graph(rows, params.knn_k, seed=seed)
    g1, g2 = restrict_to_lines(g, labels[n1]), restrict_to_lines(g, labels[n2])
    thr, half = params.match_threshold, params.half
    learned = two_stage_rotation(u, graph_laplacian(g1), graph_laplacian(g2), half)
    single, _ = rayleigh_ritz_rotate(u, graph_laplacian(g))
    rng = np.random.default_rng(1000 + seed)
    rand = []
    for _ in range(params.random_graphs):
        r1 = degree_preserving_shuffle(g1, groups=labels[n1], seed=rng)
        r2 = degree_preserving_shuffle(g2, groups=labels[n2], seed=rng)
        m = pair_match(two_stage_rotation(u, graph_laplacian(r1), graph_laplacian(r2), half).vectors,
                       pairs, threshold=thr)
        rand.append((m.mean, m.n_above))
    n_edges = max(g.nnz, 1)
    sweep = {}
    for k in params.knn_sweep:
        gk = knn_graph(rows, k, seed=seed)
        rk = two_stage_rotation(u, graph_laplacian(restrict_to_lines(gk, labels[n1])),
                                graph_laplacian(restrict_to_lines(gk, labels[n2])), half)
        sweep[k] = pair_match(rk.vectors, pairs, threshold=thr).mean
    return {"learned": _score(learned.vectors, pairs, thr), "single": _score(single, pairs, thr),
            "knn_sweep": sweep,
            "random_mean": np.array([r[0] for r in rand]), "random_above": np.array([r[1] for r in rand]),
            "edge_fractions": {k: float(restrict_to_lines(g, v).nnz / n_edges) for k, v in labels.items()}}


def analyze_cliff(u: np.ndarray, values: np.ndarray, params: LaplacianParams, cliff: str,
                  kernel_rows: np.ndarray | None = None, seed: int = 0) -> dict:
    """Everything the chapter reports for one cliff window ``u`` (N, d) with eigenvalues ``values``.

    ``kernel_rows``: the rows the learned graph is built from (None: the window's own kernel
    ``u diag(values) u^T``, i.e. ``graph_rows = "cliff"``).
    """
    p, thr, half = params.p, params.match_threshold, params.half
    pair = params.pair_of(cliff)
    pairs, labels = pair_families(p, pair)
    lap = torus_laplacians(p, diagonal=params.diagonal)
    l1, l2 = (lap[k] for k in LAPLACIAN_PAIRS[pair]["laplacians"])
    rot = two_stage_rotation(u, l1, l2, half)
    variant = two_stage_rotation(u, l1, l2, half + params.n_extra)
    sweep = {e: pair_match(two_stage_rotation(u, l1, l2, half + e).vectors, pairs, threshold=thr)
             for e in params.extra_sweep}
    fams = LAPLACIAN_PAIRS[pair]["families"]
    pure = np.sort(np.concatenate([np.repeat(fourier_laplacian_values(l1, fourier_family(p, f)), 2)
                                   for f in fams]))
    rand_q = random_orthonormal(p * p, u.shape[1], rng=seed)
    rows = (u * values) @ u.T if kernel_rows is None else kernel_rows
    return {
        "pair": pair, "labels": labels, "values": values,
        "before": _score(u, pairs, thr), "after": _score(rot.vectors, pairs, thr),
        "variant": _score(variant.vectors, pairs, thr),
        "sweep": {e: (m.mean, m.n_above) for e, m in sweep.items()},
        "ceiling": _families_overlap(u, p, pair) / u.shape[1],
        "ritz": rot.first_values, "pure": pure,
        "ritz_random": rayleigh_ritz_rotate(rand_q, l1)[1],
        "graphs": learned_graph_scores(u, rows, params, pair, seed),
    }


def analyze_seed(params: LaplacianParams, seed: int) -> dict:
    """Both cliffs of one seed's trained network, and the first cliff at initialization."""
    run = train_modular(params.setup, seed)
    model, x = run.model_at(), run.inputs
    kernels = entk_by_layer(model, x, collapse="class_mean")
    total = kernels["fc1"] + kernels["fc2"]
    windows = cliff_windows(params.p)
    first_kernel = kernels["fc1"] if params.first_kernel == "fc1" else total
    layers = ["fc1"] if params.first_kernel == "fc1" else None
    init_kernel = entk(run.model_at(0), x, collapse="class_mean", layers=layers)
    out = {"seed": seed}
    for cliff, kern in (("first", first_kernel), ("second", total)):
        vals, u = _window(kern, windows[cliff])
        rows = kern.double().numpy() if params.graph_rows == "kernel" else None
        out[cliff] = analyze_cliff(u, vals, params, cliff, rows, seed)
    u0 = _window(init_kernel, windows["first"])[1]
    pairs, _ = pair_families(params.p, params.first_pair)
    rot0 = two_stage_rotation(u0, *(torus_laplacians(params.p, diagonal=params.diagonal)[k]
                                    for k in LAPLACIAN_PAIRS[params.first_pair]["laplacians"]),
                              params.half)
    out["init"] = {"before": _score(u0, pairs, params.match_threshold),
                   "after": _score(rot0.vectors, pairs, params.match_threshold)}
    return out


def run_all(params: LaplacianParams, progress: bool = True) -> list[dict]:
    """:func:`analyze_seed` for every seed."""
    return [analyze_seed(params, s) for s in tqdm(params.seeds, desc="seeds", disable=not progress)]


# --------------------------------------------------------------------------------------------
# Summary, key numbers, claims
# --------------------------------------------------------------------------------------------


def summarize(results: list[dict], params: LaplacianParams) -> dict:
    """Per-seed arrays (one entry per seed) of every number the tables report."""
    out: dict = {"d": params.window}
    for c in CLIFFS:
        rs = [r[c] for r in results]
        s = {k: np.array([r[k]["mean"] for r in rs]) for k in ("before", "after", "variant")}
        s |= {f"{k}_above": np.array([r[k]["n_above"] for r in rs]) for k in ("before", "after", "variant")}
        s["ceiling"] = np.array([r["ceiling"] for r in rs])
        s["ritz_dev"] = np.array([np.max(np.abs(r["ritz"] - r["pure"])) for r in rs])
        s["ritz_dev_random"] = np.array([np.max(np.abs(r["ritz_random"] - r["pure"])) for r in rs])
        s["sweep"] = {e: np.array([r["sweep"][e] for r in rs]) for e in params.extra_sweep}
        g = [r["graphs"] for r in rs]
        s["learned"] = np.array([x["learned"]["mean"] for x in g])
        s["learned_above"] = np.array([x["learned"]["n_above"] for x in g])
        s["single"] = np.array([x["single"]["mean"] for x in g])
        s["random"] = np.array([x["random_mean"].mean() for x in g])
        s["random_max"] = np.array([x["random_mean"].max() for x in g])
        s["random_above"] = np.array([x["random_above"].mean() for x in g])
        s["knn_sweep"] = {k: np.array([x["knn_sweep"][k] for x in g]) for k in params.knn_sweep}
        s["edge_fractions"] = {k: np.array([x["edge_fractions"][k] for x in g]) for k in line_labels(3)}
        out[c] = s
    out["init"] = {k: np.array([r["init"][k]["mean"] for r in results]) for k in ("before", "after")}
    out["init"] |= {f"{k}_above": np.array([r["init"][k]["n_above"] for r in results])
                    for k in ("before", "after")}
    return out


def _ints(values) -> str:
    return ", ".join(str(int(v)) for v in values)


def key_numbers(summary: dict, params: LaplacianParams) -> str:
    """The rounded numbers that nbval checks, one line per item."""
    d, half = summary["d"], params.half
    lines = []
    for c in CLIFFS:
        s = summary[c]
        lines += [
            f"{c} cliff ({params.pair_of(c)} Laplacians), matched mean before -> after (stage two "
            f"{half}) -> variant ({half + params.n_extra}): {fmt(s['before'].mean())} -> "
            f"{fmt(s['after'].mean())} -> {fmt(s['variant'].mean())}; ceiling {fmt(s['ceiling'].mean())}",
            f"  directions above {params.match_threshold:g} (of {d}) per seed: before "
            f"{_ints(s['before_above'])}; after {_ints(s['after_above'])}; variant "
            f"{_ints(s['variant_above'])}",
            f"  learned graph (k = {params.knn_k}): two-stage {fmt(s['learned'].mean())}, one-stage "
            f"{fmt(s['single'].mean())}; random graphs {fmt(s['random'].mean())} (max "
            f"{fmt(s['random_max'].max())}); max |Ritz - pure| {fmt(s['ritz_dev'].max())}",
        ]
    i = summary["init"]
    lines.append(f"untrained first cliff: before {fmt(i['before'].mean())}, after {fmt(i['after'].mean())}"
                 f" ({_ints(i['after_above'])} of {d} above {params.match_threshold:g})")
    return "\n".join(lines)


def record(summary: dict, params: LaplacianParams, table: ClaimsTable) -> ChapterRecord:
    """The chapter's verdicts and key numbers with their kinds of tolerance.

    Parameters
    ----------
    summary : dict
        Output of :func:`summarize`.
    params : LaplacianParams
        The chapter's parameters.
    table : ClaimsTable
        Output of :func:`claims_table` for the same ``summary``.

    Returns
    -------
    ChapterRecord
        Per cliff (``first``, ``second``) and for the untrained first cliff (``init``), means over
        seeds. Scores: matched means, ceiling, learned / one-stage / random-graph scores (random:
        the max over seeds and graphs too), max and mean |Ritz - pure| and its random-subspace
        value, the learned graph's edge fractions per line family and its matched mean per k of
        ``knn_sweep``. Counts: directions above ``match_threshold`` (thresholded per seed, so not
        exact); the verdicts that turn on them per seed are checked exactly.
    """
    rec = ChapterRecord(chapter="05_laplacian_rotation", params=params).add_claims(table)
    for c in CLIFFS:
        s = summary[c]
        for key in ("before", "after", "variant"):
            rec.add(f"{c}.matched_{key}", s[key].mean(), "score")
            rec.add(f"{c}.above_{key}", s[f"{key}_above"].mean(), "count")
        for key in ("ceiling", "learned", "single", "random"):
            rec.add(f"{c}.{key}", s[key].mean(), "score")
        rec.add(f"{c}.learned_above", s["learned_above"].mean(), "count")
        rec.add(f"{c}.random_max", s["random_max"].max(), "score")
        rec.add(f"{c}.ritz_dev_max", s["ritz_dev"].max(), "score")
        rec.add(f"{c}.ritz_dev_mean", s["ritz_dev"].mean(), "score")
        rec.add(f"{c}.ritz_dev_random", s["ritz_dev_random"].mean(), "score")
        for line, fraction in s["edge_fractions"].items():
            rec.add(f"{c}.edges[{line}]", fraction.mean(), "score")
        for k, matched in s["knn_sweep"].items():
            rec.add(f"{c}.knn[k={k}]", matched.mean(), "score")
    i = summary["init"]
    rec.add("init.matched_before", i["before"].mean(), "score")
    rec.add("init.matched_after", i["after"].mean(), "score")
    rec.add("init.above_after", i["after_above"].mean(), "count")
    return rec


def _one_to_one(s: dict, key: str, d: int) -> tuple[bool, bool]:
    above = s[f"{key}_above"]
    return bool(np.all(above >= 0.9 * d)), bool(np.all(above >= 0.5 * d))


def _rotation_row(summary: dict, params: LaplacianParams, c: str) -> dict:
    """Rows 1 and 2. The paper's words differ by cliff, and so do the rules: the first cliff's
    rotated directions "exactly align" with the a and b families (v1 Intro; "cleanly", Sec. 4.2),
    graded one-to-one (>= 90% of the directions above ``match_threshold``, and not so before the
    rotation); the second cliff "approximately contains" the sum and difference families and
    "the disentanglement is imperfect" (v1 App. D), graded approximately (the rotation raises the
    matched mean in every seed and at least half of the directions pass; partly: it raises it)."""
    s, d = summary[c], summary["d"]
    fams = " and ".join(LAPLACIAN_PAIRS[params.pair_of(c)]["families"])
    measured = (f"{_ints(s['after_above'])} of {d} directions above {params.match_threshold:g} after "
                f"(before: {_ints(s['before_above'])})")
    details = (f"matched mean {fmt_spread(s['before'])} before -> {fmt_spread(s['after'])} after "
               f"(ceiling {fmt(s['ceiling'].mean())}); stage two takes {params.half} directions")
    if c == "first":
        ok, part = _one_to_one(s, "after", d)
        not_before = bool(np.all(s["before_above"] < 0.5 * d))
        return dict(claim=f"The two-stage rotation aligns the first cliff one-to-one with the {fams} "
                          "families",
                    paper='"basis vectors that exactly align with the Fourier features"',
                    measured=measured, verdict_text=verdict(ok and not_before, partial=part),
                    source="v1 Intro, Sec. 4.2, Fig. 4, App. C", details=details,
                    baseline=f"one-stage rotation {fmt(s['single'].mean())}")
    raised = bool(np.all(s["after"] > s["before"]))
    half = bool(np.all(s["after_above"] >= 0.5 * d))
    return dict(claim=f"The two-stage rotation approximately disentangles the second cliff into the {fams} "
                      "families",
                paper='"The disentanglement is imperfect", "clearly approximately correct"',
                measured=measured, verdict_text=verdict(raised and half, partial=raised),
                source="v1 App. D, Fig. 5", details=details,
                baseline=f"one-stage rotation {fmt(s['single'].mean())}")


def claims_table(summary: dict, params: LaplacianParams) -> ClaimsTable:
    """The chapter's claims with verdicts; the criteria are stated in the chapter beforehand."""
    t = ClaimsTable("Laplacian rotation of the eNTK cliffs (v1 Sec. 4.2, App. C, D; Fig. 4, 5)")
    d, thr = summary["d"], params.match_threshold
    t.add(**_rotation_row(summary, params, "first"))
    t.add(**_rotation_row(summary, params, "second"))
    s1, s2 = summary["first"], summary["second"]
    closer = s2["variant"] > s2["after"]
    t.add(f"With the footnote-11 variant (stage two takes {params.half} + {params.n_extra} "
          "directions) the second cliff is closer to one-to-one",
          '"appear closer to 1:1" (plots not shown in the paper)',
          f"matched mean {fmt_spread(s2['after'])} -> {fmt_spread(s2['variant'])}; closer in "
          f"{int(closer.sum())}/{closer.size} seeds",
          verdict(bool(closer.all()), partial=bool(closer.any())), source="v1 App. D, fn. 11",
          details=f"above {thr:g}: {_ints(s2['after_above'])} -> {_ints(s2['variant_above'])} of {d}; on the "
                  f"first cliff {fmt_spread(s1['after'])} -> {fmt_spread(s1['variant'])}")
    dev = np.concatenate([s1["ritz_dev"], s2["ritz_dev"]])
    t.add("Why it works: the Laplacian compressed to a cliff has the spectrum of pure Fourier "
          "modes (p-1 zeros, then rising pairs)",
          '"degenerate near-zero values" ... "this is what we find"',
          f"max |Ritz - pure|: first {fmt_spread(s1['ritz_dev'])}, second {fmt_spread(s2['ritz_dev'])}",
          verdict(bool(np.all(dev <= 0.1)), partial=bool(np.all(dev <= 0.5))),
          source="v1 App. C (last paragraph), fn. 9",
          baseline=f"random subspace {fmt(s1['ritz_dev_random'].mean())}")
    t.add(**_graph_row(summary, params))
    i = summary["init"]
    ok_init = bool(np.all(i["after_above"] >= 0.9 * d))
    t.add("The first-cliff result needs no training: the untrained network's layer-1 cliff rotates to "
          "one-to-one as well",
          'suggested, not tested: "could perhaps have been predicted at initialization"',
          f"untrained: {_ints(i['after_above'])} of {d} directions above {thr:g} after the rotation",
          verdict(ok_init, partial=bool(np.any(i["after_above"] >= 0.9 * d))),
          source="tests v1 Sec. 4.2 (time evolution)", kind="ours",
          details=f"untrained matched mean {fmt_spread(i['before'])} before -> {fmt_spread(i['after'])} "
                  "after")
    return t


def closing_note(summary: dict, params: LaplacianParams) -> str:
    """The chapter's closing paragraph (Markdown), with the measured figures filled in; its
    qualitative phrases follow the same criteria as the claims table."""
    s1, s2, i, d = summary["first"], summary["second"], summary["init"], summary["d"]
    thr = params.match_threshold
    one_to_one = _one_to_one(s1, "after", d)[0]
    init_same = bool(np.all(i["after_above"] >= 0.9 * d))
    beats = all(bool(np.all(summary[c]["learned"] > summary[c]["random_max"])) for c in CLIFFS)
    close = all(summary[c]["learned"].mean() >= 0.9 * summary[c]["after"].mean() for c in CLIFFS)
    return (
        f"**Measured ({len(params.seeds)} seeds, p = {params.p}).** On the first cliff the two-stage "
        f"rotation takes the matched mean from {fmt(s1['before'].mean())} to {fmt(s1['after'].mean())}, "
        f"with {fmt(s1['after_above'].mean(), 1)} of {d} directions above {thr:g}"
        + (": one-to-one, as in the paper's Fig. 4. " if one_to_one
           else " (not one-to-one by our criterion). ")
        + f"The untrained network's first cliff scores {fmt(i['after'].mean())} after the same rotation"
        + (", so this result is a property of the one-hot encoding and of the torus prior, not of "
           "training. " if init_same else ". ")
        + f"On the second cliff the rotation lifts the matched mean from {fmt(s2['before'].mean())} to "
        f"{fmt(s2['after'].mean())} with {params.half} directions in stage two and to "
        f"{fmt(s2['variant'].mean())} with the footnote-11 variant ({params.half + params.n_extra}), "
        f"against a ceiling of {fmt(s2['ceiling'].mean())} set by how much of the window's span the "
        f"sum and difference families fill; {fmt(s2['after_above'].mean(), 1)} and "
        f"{fmt(s2['variant_above'].mean(), 1)} of {d} directions pass {thr:g}. "
        f"A graph learned from the eNTK (k = {params.knn_k}) scores {fmt(s1['learned'].mean())} and "
        f"{fmt(s2['learned'].mean())} on the two cliffs, against {fmt(s1['random'].mean())} and "
        f"{fmt(s2['random'].mean())} for random graphs with the same degrees"
        + (": better than random" if beats else ": no better than random")
        + (", and close to" if close else (", but short of" if beats else ", and short of"))
        + f" the torus prior ({fmt(s1['after'].mean())}, {fmt(s2['after'].mean())}). Its two stages "
        "split the learned graph's edges along the two torus directions, so only the one-stage "
        f"rotation ({fmt(s1['single'].mean())}, {fmt(s2['single'].mean())}) is free of the torus prior."
    )


def _graph_row(summary: dict, params: LaplacianParams) -> dict:
    d = summary["d"]
    parts, ok, beats = [], True, True
    for c in CLIFFS:
        s = summary[c]
        parts.append(f"{c}: torus {fmt(s['after'].mean())}, learned {fmt(s['learned'].mean())} "
                     f"(one-stage {fmt(s['single'].mean())}), random {fmt(s['random'].mean())} "
                     f"(max {fmt(s['random_max'].max())})")
        ok &= bool(np.all(s["learned_above"] >= 0.9 * d))
        beats &= bool(np.all(s["learned"] > s["random_max"]))
    return dict(claim="A kNN graph learned from the eNTK rows can replace the torus prior",
                paper="proposed as an idea, not tested (\"iff their eNTK rows look similar\")",
                measured="matched mean, learned graph: " + ", ".join(
                    f"{c} {fmt(summary[c]['learned'].mean())}" for c in CLIFFS),
                verdict_text=verdict(ok, partial=beats), source="tests v1 Sec. 5, fn. 7", kind="ours",
                baseline="random graphs of the same degrees: " + ", ".join(
                    f"{c} {fmt(summary[c]['random'].mean())}" for c in CLIFFS),
                details=f"k = {params.knn_k}, rows of the {params.graph_rows} kernel (the two stages split "
                        "its "
                        "edges along the torus directions; one-stage: no split); " + "; ".join(parts))


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _pair_ticks(ax, labels: list[str]) -> None:
    ax.set_xticks(np.arange(len(labels)), labels, fontsize=5, rotation=90)


def plot_heatmaps(result: dict, params: LaplacianParams, cliff: str):
    """v1 Fig. 4: squared projection of each direction on each (cos, sin) pair, before the
    rotation, after it, and with the footnote-11 variant."""
    r = result[cliff]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    half = params.half
    panels = [("before", f"eigenvectors (window {cliff_windows(params.p)[cliff].start}-"
                         f"{cliff_windows(params.p)[cliff].stop - 1}), before rotation"),
              ("after", f"after the two-stage rotation (stage two: {half})"),
              ("variant", f"footnote-11 variant (stage two: {half + params.n_extra})")]
    for ax, (key, title) in zip(axes, panels, strict=True):
        heatmap(ax, r[key]["projection"], vmax=1.0, title=f"{title}\nmatched mean "
                f"{r[key]['mean']:.2f}, {r[key]['n_above']} above {params.match_threshold:g}",
                xlabel="(cos, sin) pair (family and frequency k)",
                ylabel="direction (rotated: stage two first)" if key != "before" else "eigenvector",
                cbar_label="squared projection on the pair")
        _pair_ticks(ax, r["labels"])
        ax.title.set_fontsize(9)
    fig.suptitle(f"{cliff} cliff vs the {' and '.join(LAPLACIAN_PAIRS[r['pair']]['families'])} "
                 f"families (seed {result['seed']})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_why(result: dict, params: LaplacianParams):
    """Stage-one Ritz values (the Laplacian compressed to each cliff) against the Laplacian's
    values on pure Fourier modes and on a random subspace of the same dimension."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for ax, c in zip(axes, CLIFFS, strict=True):
        r = result[c]
        name = LAPLACIAN_PAIRS[r["pair"]]["laplacians"][0]
        x = np.arange(1, len(r["pure"]) + 1)
        ax.plot(x, r["pure"], "k.-", lw=0.8, ms=4, label="pure Fourier modes of the two families")
        ax.plot(x, r["ritz"], "o", mfc="none", ms=5, label=f"eNTK {c} cliff (Ritz values)")
        ax.plot(x, r["ritz_random"], "x", ms=4, color="grey", label="random subspace, same dimension")
        ax.axvline(params.half + 0.5, color="C3", ls="--", lw=0.8, label=f"stage-two cut ({params.half})")
        ax.set(title=f"L_{name} compressed to the {c} cliff (seed {result['seed']})",
               xlabel="Ritz index (ascending)", ylabel=f"Rayleigh quotient under L_{name}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_sweep(summary: dict, params: LaplacianParams):
    """Matched mean against the number of directions passed to stage two (mean ± std over seeds)."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    ex = np.array(params.extra_sweep)
    order = np.argsort(ex)
    for c, color in zip(CLIFFS, ("C0", "C1"), strict=True):
        vals = np.array([summary[c]["sweep"][e][:, 0] for e in ex])[order]
        ax.errorbar(params.half + ex[order], vals.mean(1), yerr=vals.std(1), marker="o", capsize=3,
                    color=color, label=f"{c} cliff")
        ax.axhline(summary[c]["ceiling"].mean(), color=color, ls=":", lw=0.8,
                   label=f"{c} cliff: ceiling set by its span")
    ax.axvline(params.half, color="k", ls="--", lw=0.8, label=f"half ({params.half}, the paper)")
    ax.axvline(params.half + 4, color="grey", ls="--", lw=0.8, label="half + 4 (footnote 11)")
    ax.set(title="Directions passed to stage two", xlabel="n_second (directions)",
           ylabel="matched mean (squared projection)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_graphs(summary: dict, params: LaplacianParams):
    """Matched mean with the torus prior, the learned kNN graph and random graphs, per cliff
    (left), and the learned graph's score against k (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(14, 3.8), gridspec_kw={"width_ratios": [1.4, 1]})
    keys = [("before", "no rotation"), ("after", "torus (hand-made)"), ("learned", "learned kNN, two-stage"),
            ("single", "learned kNN, one-stage"), ("random", "random, same degrees")]
    width = 0.38
    xs = np.arange(len(keys))
    for i, c in enumerate(CLIFFS):
        vals = [summary[c][k] for k, _ in keys]
        axes[0].bar(xs + (i - 0.5) * width, [v.mean() for v in vals], width, yerr=[v.std() for v in vals],
                    capsize=3, label=f"{c} cliff")
    axes[0].set_xticks(xs, [label for _, label in keys], fontsize=8)
    axes[0].set(title=f"Which graph rotates the cliffs to Fourier pairs? (k = {params.knn_k})",
                ylabel="matched mean (squared projection)", ylim=(0, 1.05))
    axes[0].legend(fontsize=7)
    ks = sorted(params.knn_sweep)
    for c, color in zip(CLIFFS, ("C0", "C1"), strict=True):
        if ks:
            vals = np.array([summary[c]["knn_sweep"][k] for k in ks])
            axes[1].errorbar(ks, vals.mean(1), yerr=vals.std(1), marker="o", capsize=3, color=color,
                             label=f"{c} cliff, learned graph")
        axes[1].axhline(summary[c]["after"].mean(), color=color, ls="--", lw=0.8, label=f"{c} cliff, torus")
        axes[1].axhline(summary[c]["random"].mean(), color=color, ls=":", lw=0.8,
                        label=f"{c} cliff, random graphs (k = {params.knn_k})")
    axes[1].set_xscale("log", base=2)
    axes[1].set(title="learned graph: neighbours per input", xlabel="k (nearest rows; log2 axis)",
                ylabel="matched mean (squared projection)", ylim=(0, 1.05))
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig
