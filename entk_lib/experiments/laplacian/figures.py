"""The Laplacian-rotation chapter's figures: the pair heatmaps before and after the rotation
(v1 Fig. 4), why it works (stage-one Ritz values), the stage-two sweep and the learned graphs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...features import cliff_windows
from ...laplacian import LAPLACIAN_PAIRS
from ...plotting import heatmap
from .params import CLIFFS, LaplacianParams

__all__ = ["plot_graphs", "plot_heatmaps", "plot_sweep", "plot_why"]


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
