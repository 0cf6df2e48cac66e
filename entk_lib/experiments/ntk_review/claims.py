"""The NTK-review chapter's verdict rules (:data:`CRITERIA`, fixed before the runs), its claims
table and its record."""

from __future__ import annotations

import numpy as np

from ...claims import ClaimsTable, fmt, verdict
from ...record import ChapterRecord
from .params import ReviewParams

__all__ = ["CRITERIA", "claims_table", "criteria_text", "record", "smallest_rank"]

#: The claims table's thresholds, fixed before the runs (stated in the chapter by
#: :func:`criteria_text`, used by :func:`claims_table`).
CRITERIA = {
    "r2_exact": 0.99,       # Eq. (1) reproduces the widest network: test R^2 at least this
    "r2_tolerance": 1e-3,   # K_T "at least as faithful" as K_0: R^2 not lower by more than this
    "top10_share": 0.9,     # anisotropic: the top 10 eigenvalues hold this share of the trace
    "truncation_r2": 0.95,  # "most of the function": the truncated predictor reaches this R^2 ...
    "rank_fraction": 10,    # ... with at most N / this eigenpairs
}


def smallest_rank(summary: dict, ranks: list[int], level: float = CRITERIA["truncation_r2"]
                  ) -> list[int | None]:
    """Per width, the smallest rank whose truncated predictor reaches R^2 >= ``level``."""
    out = []
    for row in summary["truncation_r2"]:
        ok = [r for r, v in zip(ranks, row, strict=True) if v >= level]
        out.append(min(ok) if ok else None)
    return out


def criteria_text(params: ReviewParams) -> str:
    """The verdict criteria of :func:`claims_table`, in words, from :data:`CRITERIA`."""
    c = CRITERIA
    return (f"Drift must fall at every step in width; Eq. (1) counts as reproducing the widest "
            f"network at test R^2 >= {c['r2_exact']}; K_T must be at least as faithful as K_0 (to "
            f"{c['r2_tolerance']:g} in R^2) at every width; 'anisotropic' means the top 10 of the "
            f"N = {params.n_train} eigenvalues hold at least {100 * c['top10_share']:.0f}% of the trace; "
            f"'most of the function' means R^2 >= {c['truncation_r2']} with at most "
            f"N/{c['rank_fraction']} = {params.n_train // c['rank_fraction']} eigenpairs, at every width.")


def _faithfulness_text(summary: dict, params: ReviewParams, key: str) -> str:
    """Test loss ratio and accuracy gap of one linearized predictor, per width."""
    return "; ".join(
        f"w={w}: loss ratio {fmt(lr_, 2)}, acc gap {fmt(100 * gap, 1)}%"
        for w, lr_, gap in zip(params.widths, summary[f"loss_ratio_{key}"], summary[f"acc_gap_{key}"],
                               strict=True))


def claims_table(summary: dict, params: ReviewParams) -> ClaimsTable:
    """The chapter's claims with verdicts (thresholds: :data:`CRITERIA`)."""
    c = CRITERIA
    table = ClaimsTable("NTK review (Appendix A): claims and measurements")
    drift = summary["drift"]
    table.add("Kernel drift ||K_T-K_0||/||K_0|| falls with width (lazy limit)",
              "-> 0 as width -> inf; theory: ~ width^-1/2",
              f"{fmt(drift[0], 3)} at width {params.widths[0]} -> {fmt(drift[-1], 3)} at "
              f"{params.widths[-1]}; log-log slope {fmt(summary['drift_slope'])}",
              verdict(bool(np.all(np.diff(drift) < 0))),
              source="v1 Intro, App. A (background: \"time independent in the lazy limit\")",
              baseline="theory: slope -0.5")
    r0 = summary["r2_k0"]
    table.add("Eq. (1) with K_0 reproduces the trained network at large width",
              "exact in the infinite-width limit",
              "test R^2: " + ", ".join(f"w={w}: {fmt(v, 3)}" for w, v in zip(params.widths, r0, strict=True))
              + "; " + _faithfulness_text(summary, params, "k0"),
              verdict(bool(r0[-1] >= c["r2_exact"] and r0[-1] >= r0[0])),
              source="v1 Intro, App. A (background: \"a provably good approximation\" in the lazy limit)")
    rt = summary["r2_kt"]
    better = rt >= r0 - c["r2_tolerance"]
    table.add("Eq. (3) with K_T is at least as faithful as K_0 at every width",
              "the end-of-training eNTK describes the trained network",
              "test R^2 K_T vs K_0: " + ", ".join(f"w={w}: {fmt(a, 3)} vs {fmt(b, 3)}"
                                                 for w, a, b in zip(params.widths, rt, r0, strict=True))
              + "; K_T " + _faithfulness_text(summary, params, "kt"),
              verdict(bool(better.all()), partial=bool(better.any())),
              source="extends v1 Intro (the eNTK hypothesis \"can at times be a good approximation\")",
              kind="ours")
    share = summary["top10_share"]
    table.add("The eNTK spectrum is strongly anisotropic",
              "a few eigendirections dominate",
              f"top-10 of {params.n_train} eigenvalues hold {fmt(100 * share.min(), 1)}-"
              f"{fmt(100 * share.max(), 1)}% of the trace",
              verdict(bool(share.min() >= c["top10_share"])),
              source="v1 Sec. 2 (\"often very anisotropic\")",
              baseline=f"isotropic: {fmt(100 * 10 / params.n_train, 1)}%")
    ranks = smallest_rank(summary, params.ranks)
    ok = [r is not None and r <= params.n_train // c["rank_fraction"] for r in ranks]
    table.add("A low-rank truncation of K_T reproduces most of the function",
              "top eigenspace carries the learned function",
              f"smallest rank with R^2 >= {c['truncation_r2']}: " + ", ".join(
                  f"w={w}: {r if r is not None else '>' + str(params.ranks[-1])}"
                  for w, r in zip(params.widths, ranks, strict=True)),
              verdict(all(ok), partial=any(ok)),
              source="v1 Sec. 2 (a motivating argument, untested there: a truncation \"should in turn be a "
                     "good approximation\")")
    return table


def record(summary: dict, params: ReviewParams, table: ClaimsTable) -> ChapterRecord:
    """The chapter's verdicts and key numbers (means over seeds, per width) with their kinds.

    Parameters
    ----------
    summary : dict
        Output of :func:`summarize`.
    params : ReviewParams
        The chapter's parameters.
    table : ClaimsTable
        Output of :func:`claims_table` for the same ``summary``.

    Returns
    -------
    ChapterRecord
        Ratios: kernel drift, its log-log slope and the test-loss ratios. Accuracy: the accuracy
        gaps (network minus linearized model). Scores: test R^2 of Eq. (1) and Eq. (3), the
        top-10 share of the trace, and per width the best truncated R^2 within the allowed rank
        ``N / rank_fraction`` (None: no rank of ``ranks`` is that small). Loose: the smallest
        rank reaching R^2 >= ``truncation_r2`` (None: none), a threshold crossing on the ``ranks``
        grid, allowed to halve or double; the verdict it decides is checked exactly.
    """
    rec = ChapterRecord(chapter="01_ntk_review", params=params).add_claims(table)
    rec.add("drift_slope", summary["drift_slope"], "ratio")
    kinds = {"drift": "ratio", "r2_k0": "score", "r2_kt": "score", "loss_ratio_k0": "ratio",
             "loss_ratio_kt": "ratio", "acc_gap_k0": "accuracy", "acc_gap_kt": "accuracy",
             "top10_share": "score"}
    limit = params.n_train // CRITERIA["rank_fraction"]
    allowed = [i for i, r in enumerate(params.ranks) if r <= limit]
    ranks = smallest_rank(summary, params.ranks)
    for key, kind in kinds.items():
        for w, value in zip(params.widths, summary[key], strict=True):
            rec.add(f"{key}[w={w}]", value, kind)
    for w, row, rank in zip(params.widths, summary["truncation_r2"], ranks, strict=True):
        rec.add(f"truncation_r2[w={w},rank<={limit}]", np.max(row[allowed]) if allowed else None, "score")
        rec.add(f"smallest_rank[w={w}]", rank, "loose")
    return rec
