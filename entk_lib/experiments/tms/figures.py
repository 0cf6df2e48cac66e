"""The TMS chapter's figures: ``WᵀW`` (:func:`plot_wtw`), the paper's Fig. 1
(:func:`plot_figure1`), the class-block trap (:func:`plot_trap`) and the alignment counts
(:func:`plot_alignment_summary`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...params import check_choice
from ...plotting import heatmap, spectrum_plot
from .params import TMSParams
from .pipeline import runs_of

__all__ = ["plot_alignment_summary", "plot_figure1", "plot_trap", "plot_wtw"]


def _seed_runs(results: list[dict], params: TMSParams, seed: int | None) -> list[dict]:
    """One run per model (``params.models`` order) at ``seed`` (default the first seed)."""
    seed = params.seeds[0] if seed is None else seed
    return [next(r for r in runs_of(results, m, s) if r["seed"] == seed) for m, s in params.models]


def plot_figure1(results: list[dict], params: TMSParams, *, seed: int | None = None,
                 view: str = "raw", normalize: str | None = "eigenvector"):
    """The paper's Fig. 1: spectra (top row) and eigenvector-feature maps, one row per beta.

    ``view`` is ``"raw"`` (|cos| with the expanded feature vectors, as in the paper) or
    ``"score"`` (the feature score). ``normalize``: ``"eigenvector"`` divides each eigenvector's
    column by its maximum over the features (as the author's released code does; v1 does not
    state a normalization), ``"feature"`` each feature's row by its maximum over the eigenvectors
    (ours: every feature shows its best eigenvector), None draws the values themselves.
    """
    normalize = check_choice("normalize", normalize, ("eigenvector", "feature", None))
    runs = _seed_runs(results, params, seed)
    nrows, ncols = 1 + len(params.betas), len(runs)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.3 * nrows), squeeze=False)
    for col, res in enumerate(runs):
        ax = axes[0, col]
        for beta in params.all_betas:
            values = res["beta"][beta]["values"]
            spectrum_plot(ax, values / values[0], cliffs=res["beta"][beta]["cliffs"],
                          label=f"beta={beta:g}", ylabel="eigenvalue / largest",
                          title=f"m={res['m']}, S={res['S']:g} (r={res['n_represented']})")
        ax.axvline(params.n_features + 0.5, color="k", lw=0.6, ls=":")
        ax.legend(fontsize=7)
        for row, beta in enumerate(params.betas, start=1):
            mat = res["beta"][beta][view].T
            axis = {"eigenvector": 0, "feature": 1}.get(normalize)
            if axis is not None:
                mat = mat / np.maximum(mat.max(axis, keepdims=True), 1e-300)
            what = "|cos|" if view == "raw" else "feature score"
            label = {"eigenvector": f"{what} / max over features (author's code)",
                     "feature": f"{what} / max over eigenvectors (ours)"}.get(normalize, what)
            heatmap(axes[row, col], mat, title=f"beta={beta:g}: {what}",
                    xlabel="eigenvector index (descending eigenvalue)",
                    ylabel=f"feature i (importance {params.importance_base:g}^i)", cbar_label=label)
    fig.tight_layout()
    return fig


def plot_trap(results: list[dict], params: TMSParams, *, beta: float | None = None,
              seed: int | None = None):
    """Per feature: best raw |cos|, the class-block baseline, and the best feature score."""
    beta = params.betas[-1] if beta is None else beta
    runs = _seed_runs(results, params, seed)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.6 * len(runs), 3.4), squeeze=False)
    idx = np.arange(params.n_features)
    for ax, res in zip(axes[0], runs, strict=True):
        b = res["beta"][beta]
        ax.plot(idx, b["best_raw"], "o-", ms=3, lw=0.8, label="eigenvectors: best raw |cos|")
        ax.plot(idx, res["block_best_raw"], "k--", lw=1.0, label="class-block indicator: raw |cos|")
        ax.plot(idx, b["best_score"], "s-", ms=3, lw=0.8, label="eigenvectors: best feature score")
        ax.plot(res["represented"], np.full(res["n_represented"], -0.04), "|", color="C3", ms=8,
                label="represented feature")
        ax.axhline(params.match_threshold, color="0.6", lw=0.6)
        ax.set(title=f"m={res['m']}, S={res['S']:g}, beta={beta:g}", xlabel="feature i",
               ylabel="best over top-k eigenvectors", ylim=(-0.08, 1.02))
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def plot_wtw(results: list[dict], params: TMSParams, *, seed: int | None = None):
    """``WᵀW`` (n, n) of each model (top) and its diagonal with the 'represented' threshold (bottom)."""
    runs = _seed_runs(results, params, seed)
    fig, axes = plt.subplots(2, len(runs), figsize=(4.6 * len(runs), 7.0), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1.3]})
    for col, res in enumerate(runs):
        lim = float(np.abs(res["wtw"]).max())
        heatmap(axes[0, col], res["wtw"], title=f"W^T W, m={res['m']}, S={res['S']:g}",
                xlabel="feature j", ylabel="feature i", cbar_label="(W^T W)_ij",
                vmin=-lim, vmax=lim, cmap="RdBu_r")
        ax = axes[1, col]
        ax.bar(np.arange(params.n_features), np.diag(res["wtw"]), color="C0")
        ax.axhline(params.represented_threshold, color="C3", ls="--", lw=0.8,
                   label=f"threshold {params.represented_threshold:g}")
        ax.set(title=f"||W_i||^2: {res['n_represented']} represented", xlabel="feature i",
               ylabel="(W^T W)_ii")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_alignment_summary(summary: list[dict], params: TMSParams):
    """Features matched above the threshold, by raw |cos| and by feature score, per model and beta."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    x = np.arange(len(summary))
    width = 0.8 / len(params.all_betas)
    for ax, key, title in [(axes[0], "count_raw", "by raw |cos|"),
                           (axes[1], "count_score", "by feature score")]:
        for j, beta in enumerate(params.all_betas):
            vals = np.array([row["beta"][beta][key] for row in summary])
            ax.bar(x + (j - (len(params.all_betas) - 1) / 2) * width, vals.mean(1), width,
                   yerr=vals.std(1), capsize=2, label=f"eNTK, beta={beta:g}")
        base = np.array([row["block"][key].mean() for row in summary])
        ax.plot(x, base, "k_", ms=30, mew=2, label="class-block indicators")
        rand = np.array([row["random"][key].mean() for row in summary])
        ax.plot(x, rand, "_", color="0.5", ms=30, mew=2, label="random orthonormal")
        ax.set(xticks=x, xticklabels=[row["label"] for row in summary],
               title=f"features with best score > {params.match_threshold:g} {title}",
               ylabel=f"features (of {params.n_features})", ylim=(0, params.n_features + 2))
    axes[1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
