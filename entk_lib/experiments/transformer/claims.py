"""The chapter's claims: what the paper reports (:data:`PAPER`), the per-seed summary the
verdicts read (:func:`seed_summary`), the claims table with its criteria, and the record."""

from __future__ import annotations

import numpy as np

from ...claims import ClaimsTable, fmt, verdict
from ...grokking import derivative_maxima, derivative_peak
from ...linalg import empirical_p_value
from ...record import ChapterRecord
from .params import TransformerParams
from .pipeline import table2

__all__ = ["PAPER", "PEAK_REL_HEIGHT", "claims_table", "record", "seed_summary"]

#: What the paper reports (v4, Section 4; the author's released notebook for the seed-2 run).
PAPER = {
    "seed": 2,
    "key_frequencies": [1, 12],
    "grok_marks": (150, 1900),
    "unembed_sum_top5": 3.96,
    "unembed_axis_5to8": 3.94,
}

#: Maxima of the overlap's derivative at least this fraction of the largest compete with it: a
#: seed whose competing maxima fall both near and away from the onset is graded as ambiguous
#: (partly), since rounding on another CPU can swap which one is the largest.
PEAK_REL_HEIGHT = 0.5


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


def _gap_text(summary: dict) -> str:
    gap = summary["peak_minus_onset"]
    return "onset never reached" if gap is None else f"{gap:+d} epochs from the onset"


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

