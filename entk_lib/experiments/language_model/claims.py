"""The language-model chapter's claims: verdict rules, table rows, the closing note, the record.

Rows (v4 Section 5, Table 3, and the review of v4): the eNTK's best direction per tag beats PCA
of the same budget in macro AP and in macro AUROC; the best sweep layer's eNTK beats the best
PCA; both beat random directions; steering along the eNTK direction changes the next word's
part of speech more than along PCA or random directions of the same norm.
"""

from __future__ import annotations

import numpy as np

from ...claims import ClaimsTable, fmt, verdict
from ...lm.kernel import LanczosResult
from ...record import ChapterRecord
from .params import OFFLINE_MODEL, LMParams
from .pipeline import METHODS

__all__ = ["CRITERIA", "claims_table", "closing_note", "record"]

#: The claims table's threshold, fixed before the runs (stated in the chapter text). Rows 1-2
#: are reproduced when the eNTK's macro metric is above PCA's and the one-sided paired
#: permutation p-value of the difference is below ``p_value`` (partly: only above). Row 3:
#: reproduced when the best eNTK AP beats the best PCA AP and the eNTK leads at every sweep layer
#: (partly: at one at least). Row 4: both above random. Row 5: steering along the eNTK direction
#: changes more than along PCA and random (partly: more than random only).
CRITERIA = {"p_value": 0.05}


def claims_table(main_probe: dict, pvals: dict, sweep: dict, steer: dict, params: LMParams) -> ClaimsTable:
    """The chapter's claims with verdicts (rules: :data:`CRITERIA`).

    Parameters
    ----------
    main_probe, pvals, sweep, steer : dict
        :func:`~.pipeline.probes`, :func:`~.pipeline.p_values`, :func:`~.pipeline.layer_sweep`
        and :func:`~.pipeline.steering_test` (only their macro metrics, p-values and steering
        fractions are read).
    params : LMParams
    """
    model = ("Gemma-3-270m dequantized from its Q4_K_M GGUF" if params.model == OFFLINE_MODEL
             else params.model)
    table = ClaimsTable(
        "eNTK features in a pretrained LM (v4 Gemma-3 section, Table 3): claims and measurements. This run: "
        f"{model}, {params.corpus} corpus, {params.per_tag * len(params.tags)} windows of "
        f"{params.context} tokens, {params.module} of layer {params.layer}; the paper: Gemma-3-270m "
        "in float32, TinyStories, 1024 windows of 64 tokens")
    macro = {m: r.macro() for m, r in main_probe["results"].items()}
    _add_probe_rows(table, macro, pvals, params)
    if sweep:
        _add_sweep_row(table, sweep)
    r = macro["random"]["ap"]
    table.add("Both beat random directions of the same budget (macro AP)",
              "not tested", f"eNTK {fmt(macro['eNTK']['ap'], 3)}, PCA {fmt(macro['PCA']['ap'], 3)}",
              verdict(bool(macro["eNTK"]["ap"] > r and macro["PCA"]["ap"] > r)),
              source="extends v4 Table 3 (random baselines asked for in the review)", kind="ours",
              baseline=f"random {fmt(r, 3)}")
    _add_steering_row(table, steer)
    return table


def _add_probe_rows(table: ClaimsTable, macro: dict, pvals: dict, params: LMParams) -> None:
    """Rows 1-2: the eNTK beats PCA at ``params.layer`` in macro AP, then macro AUROC."""
    for metric, paper in (("ap", "0.523 vs 0.409"), ("auroc", "0.827 vs 0.745")):
        e, p = macro["eNTK"][metric], macro["PCA"][metric]
        per_tag, p_macro = pvals[metric]
        table.add(f"eNTK eigendirections beat PCA of the same budget (macro {metric.upper()}, 8 POS tags)",
                  f"Gemma-3-270m layer 16: {paper}",
                  f"layer {params.layer}: {fmt(e, 3)} vs {fmt(p, 3)}; permutation p = {fmt(p_macro, 3)}",
                  verdict(bool(e > p and p_macro < CRITERIA["p_value"]), partial=bool(e > p)),
                  source="v4 abstract (\"outperforms a same-budget baseline of PCA\"), Table 3",
                  baseline=f"random {fmt(macro['random'][metric], 3)}",
                  details=f"tags with p < {CRITERIA['p_value']}: "
                          f"{int(np.sum(per_tag < CRITERIA['p_value']))}/{len(per_tag)}")


def _add_sweep_row(table: ClaimsTable, sweep: dict) -> None:
    """Row 3: the best sweep layer's eNTK AP beats the best PCA AP (the eNTK ahead at every layer)."""
    layers = list(sweep)
    best_e = max(layers, key=lambda layer: sweep[layer]["eNTK"]["ap"])
    best_p = max(layers, key=lambda layer: sweep[layer]["PCA"]["ap"])
    wins = sum(sweep[layer]["eNTK"]["ap"] > sweep[layer]["PCA"]["ap"] for layer in layers)
    lead = max(layers, key=lambda layer: sweep[layer]["eNTK"]["ap"] - sweep[layer]["PCA"]["ap"])
    e, p = sweep[best_e]["eNTK"]["ap"], sweep[best_p]["PCA"]["ap"]
    table.add("Best layer of the sweep: eNTK above PCA",
              "best layer of all 18 (sweep not released); layer 16 in the text",
              f"best eNTK AP {fmt(e, 3)} (layer {best_e}) vs best PCA {fmt(p, 3)} (layer {best_p}); "
              f"eNTK ahead at {wins}/{len(layers)} layers",
              verdict(bool(e > p and wins == len(layers)), partial=bool(wins > 0)), source="v4 Table 3",
              details=f"layers {layers}; eNTK ahead by the most at layer {lead} "
                      f"({fmt(sweep[lead]['eNTK']['ap'] - sweep[lead]['PCA']['ap'], 3)})")


def _add_steering_row(table: ClaimsTable, steer: dict) -> None:
    """Row 5: steering along the eNTK direction changes the POS more than PCA and random."""
    se, sp, sr = (steer[m]["steer"].mean() for m in METHODS)
    ae, ap_, ar = (steer[m]["ablate"].mean() for m in METHODS)
    # the verdict uses steering only: it moves the activations by the same norm along each
    # direction; an ablation removes |h . e|, which differs between directions (shown, not judged)
    removed = {m: float(np.mean(steer["removed"][m])) for m in METHODS}
    # partly only when it beats random: a direction that random ones outdo shows nothing specific
    table.add("Steering along the eNTK direction changes the next word's POS more than along PCA/random "
              "of the same norm",
              "not tested (causal tests asked for in the review)",
              f"POS changed by steering: eNTK {fmt(se, 3)}, PCA {fmt(sp, 3)}",
              verdict(bool(se > sp and se > sr), partial=bool(se > sr)),
              source="review of v4 (referee question)", kind="referee", baseline=f"random {fmt(sr, 3)}",
              details=f"ablate (not norm-matched) eNTK {fmt(ae, 3)}, PCA {fmt(ap_, 3)}, random {fmt(ar, 3)}; "
                      f"the eNTK ablation removes {fmt(removed['eNTK'] / removed['PCA'], 1)}x the mean |h.e| "
                      "of the PCA one")


def closing_note(main_probe: dict, pvals: dict, sweep: dict, steer: dict, params: LMParams,
                 seconds: float) -> str:
    """A Markdown paragraph that states the measured outcome (generated from the numbers)."""
    macro = {m: r.macro() for m, r in main_probe["results"].items()}
    e, p = macro["eNTK"], macro["PCA"]
    ahead = [t for t, a, b in zip(params.tags, main_probe["results"]["eNTK"].per_class("ap"),
                                  main_probe["results"]["PCA"].per_class("ap"), strict=True) if a > b]
    sig = [t for t, q in zip(params.tags, pvals["ap"][0], strict=True) if q < CRITERIA["p_value"]]
    lines = [
        f"**Measured.** At layer {params.layer}, the eNTK's best single direction per tag reaches "
        f"macro AP {fmt(e['ap'], 3)} and AUROC {fmt(e['auroc'], 3)}, against {fmt(p['ap'], 3)} and "
        f"{fmt(p['auroc'], 3)} "
        f"for PCA and {fmt(macro['random']['ap'], 3)} / {fmt(macro['random']['auroc'], 3)} for random "
        f"directions (paper, Gemma-3-270m layer 16 on TinyStories: 0.523 / 0.827 against 0.409 / 0.745). "
        f"The eNTK leads PCA in AP for {len(ahead)} of {len(params.tags)} tags "
        f"({', '.join(ahead) or 'none'}); the permutation test gives p < {CRITERIA['p_value']} for "
        f"{', '.join(sig) or 'no tag'} and p = {fmt(pvals['ap'][1], 3)} "
        f"for the macro difference.",
    ]
    if sweep:
        best = max(sweep, key=lambda layer: sweep[layer]["eNTK"]["ap"] - sweep[layer]["PCA"]["ap"])
        gap = sweep[best]["eNTK"]["ap"] - sweep[best]["PCA"]["ap"]
        lines.append(f"Across layers {list(sweep)}, the eNTK-minus-PCA macro AP gap is largest at "
                     f"layer {best} ({fmt(gap, 3)}).")
    pct = {(m, mode): fmt(100 * steer[m][mode].mean(), 0) for m in METHODS for mode in ("steer", "ablate")}
    lines.append(f"Steering with the same norm changes the next word's part of speech in "
                 f"{pct['eNTK', 'steer']}% of test windows along the eNTK direction, "
                 f"{pct['PCA', 'steer']}% along PCA's and {pct['random', 'steer']}% along a random one; "
                 f"ablation changes {pct['eNTK', 'ablate']}%, {pct['PCA', 'ablate']}% "
                 f"and {pct['random', 'ablate']}%.")
    lines.append(f"The chapter ran in {seconds:.0f} s.")
    return " ".join(lines)


# ---- the chapter record ---------------------------------------------------------------------

#: Short names of the methods and metrics in record names.
_SHORT = {"eNTK": "entk", "PCA": "pca", "random": "random", "ap": "ap", "auroc": "auroc",
          "precision_at_quota": "p@q"}


def record(windows: dict, res: LanczosResult, main_probe: dict, pvals: dict, sweep: dict, steer: dict,
           params: LMParams, table: ClaimsTable) -> ChapterRecord:
    """The chapter's verdicts and key numbers with their kinds of tolerance.

    Parameters
    ----------
    windows : dict
        :func:`~.pipeline.build_windows` (its ``agreement`` and ``labels``).
    res : LanczosResult
        The main layer's eigenpairs (``entk_layer(...)["lanczos"]``).
    main_probe, pvals, sweep, steer : dict
        :func:`~.pipeline.probes`, :func:`~.pipeline.p_values`, :func:`~.pipeline.layer_sweep`
        and :func:`~.pipeline.steering_test`.
    params : LMParams
        The chapter's parameters.
    table : ClaimsTable
        :func:`claims_table` for the same inputs.

    Returns
    -------
    ChapterRecord
        Exact: the number of windows and the windows per tag. Counts: per tag, the forwarded
        windows and those whose greedy word agrees (greedy decoding can flip with rounding); tags
        with p < 0.05; sweep layers where the eNTK leads PCA. Scores: the top eigenvalues over the
        largest, per-tag and macro AP / AUROC / precision at quota of each method, the sweep's
        macro AP / AUROC and its best values, the fractions of changed POS per tag and their means.
        P-values: per tag and macro. Ratios: the mean ``|h.e|`` an ablation removes, per method,
        and eNTK over PCA.
    """
    rec = ChapterRecord(chapter="07_language_model", params=params).add_claims(table)
    labels = np.asarray(windows["labels"])
    rec.add("n_windows", labels.size, "exact")
    for tag, (n_ok, n_all) in windows["agreement"].items():
        rec.add(f"agreeing[{tag}]", n_ok, "count").add(f"forwarded[{tag}]", n_all, "count")
    rec.add_many({f"windows[{t}]": int(np.sum(labels == t)) for t in params.tags}, "exact")
    values = np.asarray(res.values, dtype=float)
    rec.add("eigenvalue_over_largest", values[:8] / values[0], "score")
    _record_probes(rec, main_probe, pvals, params)
    _record_sweep(rec, sweep)
    _record_steering(rec, steer, params)
    return rec


def _record_probes(rec: ChapterRecord, probe_out: dict, pvals: dict, params: LMParams) -> None:
    """Per-tag and macro probe metrics (scores) and permutation p-values of the per-tag table."""
    res = probe_out["results"]
    for metric in ("ap", "auroc", "precision_at_quota"):
        for m, r in res.items():
            key = f"{_SHORT[metric]}.{_SHORT[m]}"
            rec.add_many({f"[{t}]": v for t, v in zip(params.tags, r.per_class(metric), strict=True)},
                         "score", prefix=key)
            rec.add(f"macro.{key}", r.macro()[metric], "score")
    for metric in ("ap", "auroc"):
        per_tag, macro = pvals[metric]
        rec.add_many({f"[{t}]": v for t, v in zip(params.tags, per_tag, strict=True)}, "pvalue",
                     prefix=f"p.{metric}")
        rec.add(f"macro.p.{metric}", macro, "pvalue")
        below = int(np.sum(np.asarray(per_tag) < CRITERIA["p_value"]))
        rec.add(f"tags_p_below_0.05.{metric}", below, "count")


def _record_sweep(rec: ChapterRecord, sweep: dict) -> None:
    """Macro AP / AUROC per sweep layer, and the numbers claim 3 turns on."""
    for layer, r in sweep.items():
        for metric in ("ap", "auroc"):
            for m in METHODS:
                rec.add(f"sweep.{metric}.{_SHORT[m]}[layer={layer}]", r[m][metric], "score")
    if sweep:
        rows = list(sweep.values())
        rec.add("sweep.best.ap.entk", max(r["eNTK"]["ap"] for r in rows), "score")
        rec.add("sweep.best.ap.pca", max(r["PCA"]["ap"] for r in rows), "score")
        rec.add("sweep.largest_gap.ap", max(r["eNTK"]["ap"] - r["PCA"]["ap"] for r in rows), "score")
        rec.add("sweep.layers_entk_ahead", sum(r["eNTK"]["ap"] > r["PCA"]["ap"] for r in rows), "count")


def _record_steering(rec: ChapterRecord, steer: dict, params: LMParams) -> None:
    """Fractions of changed POS per tag and their means (scores); ``|h.e|`` removed (ratios)."""
    for mode in ("steer", "ablate"):
        for m in METHODS:
            values = steer[m][mode]
            rec.add_many({f"[{t}]": v for t, v in zip(params.tags, values, strict=True)}, "score",
                         prefix=f"{mode}.{_SHORT[m]}")
            rec.add(f"mean.{mode}.{_SHORT[m]}", np.mean(values), "score")
    removed = {m: float(np.mean(steer["removed"][m])) for m in METHODS}
    rec.add_many({_SHORT[m]: v for m, v in removed.items()}, "ratio", prefix="removed_h.e.")
    rec.add("removed_h.e.entk_over_pca", removed["eNTK"] / removed["PCA"], "ratio")
