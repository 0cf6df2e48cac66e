"""The language-model chapter's tables and figures: per-tag probe metrics, the layer sweep,
steering (aligned text tables, :class:`entk_lib.claims.TextTable`) and their bar and line plots."""

from __future__ import annotations

import numpy as np

from ...claims import TextTable, fmt
from .params import LMParams
from .pipeline import METHODS

__all__ = ["per_tag_table", "plot_per_tag", "plot_sweep", "steering_table", "sweep_table"]

#: Short method names in table headers.
_HEAD = ("eNTK", "PCA", "rand")


def per_tag_table(probe_out: dict, pvals: dict, params: LMParams) -> TextTable:
    """Per tag (and macro): test AP / AUROC / precision at quota of eNTK, PCA and random, and
    the p-values of eNTK > PCA (:func:`~.pipeline.probes`, :func:`~.pipeline.p_values`)."""
    res = probe_out["results"]
    metrics = ("ap", "auroc", "precision_at_quota")
    rows = [[tag] + [fmt(res[m].per_class(k)[c], 3) for k in metrics for m in METHODS]
            + [fmt(pvals["ap"][0][c], 3), fmt(pvals["auroc"][0][c], 3)]
            for c, tag in enumerate(params.tags)]
    macro = {m: r.macro() for m, r in res.items()}
    rows.append(["macro"] + [fmt(macro[m][k], 3) for k in metrics for m in METHODS]
                + [fmt(pvals["ap"][1], 3), fmt(pvals["auroc"][1], 3)])
    heads = [f"{k}:{m}" for k in ("AP", "AUROC", "P@q") for m in _HEAD]
    return TextTable(None, ["tag"] + heads + ["p(AP)", "p(AUROC)"], rows, align="right")


def sweep_table(sweep: dict) -> TextTable:
    """Per layer: macro AP and AUROC of eNTK, PCA and random (:func:`~.pipeline.layer_sweep`)."""
    rows = [[layer] + [fmt(r[m][k], 3) for k in ("ap", "auroc") for m in METHODS]
            for layer, r in sweep.items()]
    return TextTable(None, ["layer"] + [f"{k}:{m}" for k in ("AP", "AUROC") for m in _HEAD], rows,
                     align="right")


def steering_table(steer: dict, params: LMParams) -> TextTable:
    """Per tag: fraction of test windows whose next word changes POS (steer +-alpha, ablate),
    their means, and the mean ``|h.e|`` an ablation removes (:func:`~.pipeline.steering_test`)."""
    modes = ("steer", "ablate")
    rows = [[tag] + [fmt(steer[m][mode][c], 3) for mode in modes for m in METHODS]
            for c, tag in enumerate(params.tags)]
    rows.append(["mean"] + [fmt(steer[m][mode].mean(), 3) for mode in modes for m in METHODS])
    rows.append(["|h.e| removed"] + [""] * 3 + [fmt(steer["removed"][m].mean(), 0) for m in METHODS])
    heads = [f"{mode}:{m}" for mode in modes for m in _HEAD]
    return TextTable(None, ["tag", *heads], rows, align="right")


def plot_per_tag(ax, probe_out: dict, params: LMParams, metric: str = "ap"):
    """Grouped bars: per-tag test metric of eNTK, PCA and random directions."""
    x = np.arange(len(params.tags))
    for i, m in enumerate(METHODS):
        ax.bar(x + (i - 1) * 0.27, probe_out["results"][m].per_class(metric), 0.27, label=m)
    labels = np.asarray(probe_out.get("labels", []))
    if labels.size:
        ax.plot(x, [np.mean(labels == t) for t in params.tags], "k_", ms=14, label="chance (base rate)")
    ax.set_xticks(x, params.tags)
    ax.set(xlabel="part of speech of the next word", ylabel=f"test {metric.upper()} (mean over splits)",
           title=f"Best single direction per tag, layer {params.layer}")
    ax.legend(fontsize=8)


def plot_sweep(axes, sweep: dict):
    """Macro AP and AUROC against layer for eNTK, PCA and random (two axes)."""
    layers = list(sweep)
    for ax, k in zip(axes, ("ap", "auroc"), strict=True):
        for m, style in (("eNTK", "o-"), ("PCA", "s-"), ("random", "^--")):
            ax.plot(layers, [sweep[layer][m][k] for layer in layers], style, label=m)
        ax.set(xlabel="layer (0-based) of mlp.down_proj / activations", ylabel=f"macro test {k.upper()}",
               title=f"Layer sweep: macro {k.upper()} over 8 tags")
        ax.set_xticks(layers)
        ax.legend(fontsize=8)
