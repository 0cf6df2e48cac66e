"""The grokking chapter's figures and its eigenvector explorer (an ipywidgets widget, paired
with a static figure for the rendered book).

Inputs throughout: ``results`` the per-seed dicts of :func:`.pipeline.analyze_seed` (arrays over
the T analysed checkpoints: ``epochs`` (T,), ``values`` (T, top_k), ``second_sum`` (T,), ...;
``vectors`` (T, p^2, 4(p-1)+1) for the first seed), ``summaries`` those of
:func:`.pipeline.summarize_seed`, ``rotation(s)`` those of :func:`.pipeline.rotate_second_cliff`.
Every function returns its figure (or widget).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...grokking import COMPLETE_LEVEL, ONSET_LEVEL
from ...plotting import heatmap, spectrum_plot
from .params import GrokkingParams

__all__ = [
    "explorer",
    "plot_beyond",
    "plot_cliff_evolution",
    "plot_explorer_static",
    "plot_overlap",
    "plot_rotation",
    "plot_rotation_scores",
    "plot_spectra",
    "plot_training",
]


def _mark_onsets(ax, summaries: list[dict], colors=None) -> None:
    """Onset (dashed) and completion (dotted) of grokking, one colour per seed."""
    for i, s in enumerate(summaries):
        color = f"C{i}" if colors is None else colors[i]
        for key, style in (("onset", "--"), ("complete", ":")):
            if s[key] is not None:
                ax.axvline(s[key], color=color, ls=style, lw=0.8, alpha=0.7)


def plot_training(results: list[dict], summaries: list[dict]):
    """Train/test accuracy and loss against epoch, one colour per seed; onsets marked."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for i, r in enumerate(results):
        h, color = r["history"], f"C{i}"
        axes[0].plot(h["epoch"], 100 * np.array(h["train_acc"]), color=color, lw=1,
                     label=f"train, seed {r['seed']}")
        axes[0].plot(h["epoch"], 100 * np.array(h["test_acc"]), color=color, lw=1, ls="--",
                     label=f"test, seed {r['seed']}")
        axes[1].semilogy(h["epoch"], h["train_loss"], color=color, lw=1)
        axes[1].semilogy(h["epoch"], h["test_loss"], color=color, lw=1, ls="--")
    for ax in axes:
        _mark_onsets(ax, summaries)
    axes[0].set(title="accuracy (solid: train, dashed: test)", xlabel="epoch", ylabel="accuracy (%)")
    axes[1].set(title="MSE loss (solid: train, dashed: test)", xlabel="epoch",
                ylabel="loss (MSE to one-hot targets, log scale)")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"vertical lines: onset (test accuracy {ONSET_LEVEL:.0%}, dashed) and completion "
                 f"({COMPLETE_LEVEL:.0%}, dotted) of grokking, per seed", fontsize=9)
    fig.tight_layout()
    return fig


def plot_spectra(result: dict, summary: dict, params: GrokkingParams):
    """v1 Fig. 3: the spectrum at ``spectrum_epochs`` beside the accuracy curve (one seed)."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
    h = result["history"]
    axes[0].plot(h["epoch"], 100 * np.array(h["train_acc"]), "k", lw=1, label="train")
    axes[0].plot(h["epoch"], 100 * np.array(h["test_acc"]), "k--", lw=1, label="test")
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(params.spectrum_epochs)))
    for epoch, color in zip(params.spectrum_epochs, colors, strict=True):
        axes[0].axvline(epoch, color=color, lw=2, alpha=0.8)
        values = result["values"][list(result["epochs"]).index(epoch)]
        spectrum_plot(axes[1], values, label=f"epoch {epoch}", color=color, marker_cliffs=False,
                      title=f"class_mean eNTK spectrum (seed {result['seed']})",
                      ylabel="eigenvalue (logit² units)")
        spectrum_plot(axes[2], values / values[0], label=f"epoch {epoch}", color=color, marker_cliffs=False,
                      title="the same, divided by the largest eigenvalue", ylabel="eigenvalue / largest")
    _mark_onsets(axes[0], [summary], colors=["grey"])
    axes[0].set(title=f"accuracy, seed {result['seed']} (coloured: the epochs shown)", xlabel="epoch",
                ylabel="accuracy (%)")
    axes[0].legend(fontsize=7)
    for ax in axes[1:]:
        for c in params.cliffs:
            ax.axvline(c + 0.5, color="grey", lw=0.6, ls=":")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_cliff_evolution(results: list[dict], summaries: list[dict], params: GrokkingParams):
    """Magnitude of the cliff windows' eigenvalues and the two drop ratios against epoch."""
    c1, c2 = params.cliffs
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
    for i, r in enumerate(results):
        color, ep = f"C{i}", r["epochs"]
        axes[0].semilogy(ep, r["mag_second"], color=color, lw=1.2, label=f"second cliff, seed {r['seed']}")
        axes[0].semilogy(ep, r["mag_first"], color=color, lw=0.8, ls="-.")
        axes[0].semilogy(ep, r["values"][:, 0], color=color, lw=0.8, ls=":")
        axes[1].plot(ep, r["mag_second"] / r["values"][:, 0], color=color, lw=1.2, label=f"seed {r['seed']}")
        axes[2].plot(ep, r["ratio_second"], color=color, lw=1.2, label=f"at {c2}, seed {r['seed']}")
        axes[2].plot(ep, r["ratio_first"], color=color, lw=0.8, ls="-.")
    for ax in axes:
        _mark_onsets(ax, summaries)
    axes[0].set(title="mean eigenvalue: 2nd cliff (solid), 1st (dash-dot), largest (dotted)",
                xlabel="epoch", ylabel="eigenvalue (logit² units)")
    axes[1].set(title="second-cliff mean / largest eigenvalue", xlabel="epoch",
                ylabel="ratio (dimensionless)")
    axes[2].axhline(params.cliff_min_ratio, color="k", lw=0.8, ls="--", label="cliff_min_ratio")
    axes[2].set(title=f"sharpness: drop at {c2} (solid), at {c1} (dash-dot)", xlabel="epoch",
                ylabel="lambda[k-1] / lambda[k]")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_overlap(results: list[dict], summaries: list[dict], params: GrokkingParams):
    """v4 Fig. 2: second-cliff overlap with the sum family (%) and its derivative, per seed."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.9))
    twin = axes[1].twinx()
    for i, (r, s) in enumerate(zip(results, summaries, strict=True)):
        color, h = f"C{i}", r["history"]
        axes[0].plot(h["epoch"], 100 * np.array(h["train_acc"]), color=color, lw=1)
        axes[0].plot(h["epoch"], 100 * np.array(h["test_acc"]), color=color, lw=1, ls="--",
                     label=f"seed {r['seed']}")
        axes[1].plot(r["epochs"], r["second_sum"], color=color, lw=1.4,
                     label=f"sum overlap, seed {r['seed']}")
        axes[1].plot(r["epochs"], r["second_diff"], color=color, lw=0.8, ls="-.")
        twin.plot(r["epochs"], s["sum_slope"], color=color, lw=1, ls=":", marker=".", ms=3)
        twin.plot([s["sum_peak"]], [s["sum_slope"].max()], color=color, marker="v", ms=7)
    for ax in axes:
        _mark_onsets(ax, summaries)
        ax.set_xlim(0, min(params.epochs, 300))
    axes[0].set(title="accuracy (solid: train, dashed: test)", xlabel="epoch", ylabel="accuracy (%)")
    axes[0].legend(fontsize=7)
    axes[1].set(title="second cliff vs sum family (solid; dash-dot: diff); dotted: derivative",
                xlabel="epoch (first 300 shown)", ylabel=f"overlap (% of {params.p - 1})")
    twin.set_ylabel("d overlap / d epoch (% per epoch; ▼ peak)")
    axes[1].legend(fontsize=7, loc="center right")
    fig.tight_layout()
    return fig


def plot_beyond(results: list[dict], summaries: list[dict], params: GrokkingParams):
    """Kernel drift, kernel-target alignment and the linearized models' faithfulness."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for i, r in enumerate(results):
        color, ep = f"C{i}", r["epochs"]
        axes[0].semilogy(ep[1:], r["drift"][1:], color=color, lw=1.2, label=f"seed {r['seed']}")
        axes[0].semilogy(ep[1:], r["drift_normalized"][1:], color=color, lw=0.8, ls="-.")
        axes[1].plot(ep, r["alignment"], color=color, lw=1.2, label=f"seed {r['seed']}")
        axes[2].plot(ep, r["tangent_r2"], color=color, lw=1.2, label=f"tangent at t, seed {r['seed']}")
        axes[2].plot(ep, r["init_r2"], color=color, lw=0.8, ls="-.")
        axes[3].plot(ep, 100 * r["tangent_acc_gap"], color=color, lw=1.2,
                     label=f"tangent at t, seed {r['seed']}")
        axes[3].plot(ep, 100 * r["init_acc_gap"], color=color, lw=0.8, ls="-.")
    for ax in axes:
        _mark_onsets(ax, summaries)
        ax.set_xlim(0, min(params.epochs, 300))
        ax.legend(fontsize=7)
    axes[0].set(title="drift ||K_t-K_0||/||K_0|| (dash-dot: of K/||K||)",
                xlabel="epoch", ylabel="relative change (log scale)")
    axes[1].set(title="kernel-target alignment (centred)", xlabel="epoch", ylabel="alignment (cosine)")
    axes[2].axhline(params.faithful_r2, color="k", lw=0.8, ls="--")
    axes[2].set(title="linearized vs final network: test R² (dash-dot: from init)", xlabel="epoch",
                ylabel="R² (dimensionless)", ylim=(-0.5, 1.05))
    axes[3].axhline(100 * params.faithful_acc_gap, color="k", lw=0.8, ls="--")
    axes[3].set(title="test accuracy: final network minus linearized", xlabel="epoch",
                ylabel="accuracy gap (percentage points)")
    fig.tight_layout()
    return fig


def _grid(vector: np.ndarray, p: int) -> np.ndarray:
    """A vector over the p^2 inputs as a (p, p) image: rows a, columns b."""
    return np.asarray(vector).reshape(p, p)


def _draw_explorer_row(axes, result: dict, params: GrokkingParams, epoch: int, indices) -> None:
    """Spectrum (index markers) and eigenvectors as p x p images at one epoch, on ``axes``."""
    t = list(result["epochs"]).index(epoch)
    values = result["values"][t]
    spectrum_plot(axes[0], values, marker_cliffs=False, title=f"epoch {epoch}: spectrum",
                  ylabel="eigenvalue (logit² units)")
    for c in params.cliffs:
        axes[0].axvline(c + 0.5, color="grey", lw=0.6, ls=":")
    for ax, k in zip(axes[1:], indices, strict=True):
        axes[0].plot([k + 1], [values[k]], "rv", ms=5)
        vec = _grid(result["vectors"][t][:, k], params.p)
        lim = float(np.abs(vec).max())
        ax.imshow(vec, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set(title=f"eigenvector {k}", xlabel="b", ylabel="a", xticks=[], yticks=[])


def plot_explorer_static(result: dict, params: GrokkingParams, epochs=None, indices=None):
    """The explorer's content at fixed epochs: a spectrum and four eigenvectors (p x p) per row.

    Default: ``spectrum_epochs``; eigenvectors 1 and 2 (first cliff) and the first two of the
    second cliff, ``2(p-1)+1`` and ``2(p-1)+2``.
    """
    epochs = params.spectrum_epochs if epochs is None else epochs
    c1 = params.cliffs[0]
    indices = [1, 2, c1, c1 + 1] if indices is None else list(indices)
    size = (3.2 * (1 + len(indices)), 2.9 * len(epochs))
    fig, axes = plt.subplots(len(epochs), 1 + len(indices), figsize=size, squeeze=False,
                             gridspec_kw={"width_ratios": [1.8] + [1] * len(indices)})
    for row, epoch in zip(axes, epochs, strict=True):
        _draw_explorer_row(row, result, params, epoch, indices)
    fig.suptitle(f"seed {result['seed']}: eigenvectors over the inputs, reshaped to p x p (rows a, "
                 "columns b; red positive, blue negative)", fontsize=9)
    fig.tight_layout()
    return fig


def explorer(result: dict, params: GrokkingParams):
    """An ipywidgets explorer: a slider over the checkpoints and one over the eigenvector index,
    showing the spectrum and four consecutive eigenvectors reshaped to p x p.

    Needs ``result["vectors"]`` (:func:`analyze_seed` with ``keep_vectors``). The figure is an
    ``Image`` widget redrawn on every change, not an ``Output`` widget: a notebook client
    executing without a frontend (papermill's nbclient) can wait forever on an ``Output``
    widget's captured figure (jupyter/nbclient#312; seen here with ``checkpoint_every=7``). In a
    static page (the rendered book) it shows its state when the notebook was executed; pair it
    with :func:`plot_explorer_static`.
    """
    import io

    import ipywidgets as widgets

    epochs = [int(e) for e in result["epochs"]]
    n_vectors = result["vectors"].shape[2]
    epoch = widgets.SelectionSlider(options=epochs, value=epochs[-1], description="epoch")
    first = widgets.IntSlider(min=0, max=n_vectors - 4, value=params.cliffs[0], description="eigenvector")
    image = widgets.Image(format="png")

    def draw(*_):
        fig, axes = plt.subplots(1, 5, figsize=(17, 3.2), gridspec_kw={"width_ratios": [1.8, 1, 1, 1, 1]})
        _draw_explorer_row(axes, result, params, epoch.value, range(first.value, first.value + 4))
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=72)
        plt.close(fig)
        image.value = buffer.getvalue()

    epoch.observe(draw, "value")
    first.observe(draw, "value")
    draw()
    return widgets.VBox([widgets.HBox([epoch, first]), image])


# --------------------------------------------------------------------------------------------
# Appendix D: the rotated second cliff
# --------------------------------------------------------------------------------------------


def plot_rotation(rotation: dict[int, dict], params: GrokkingParams, seed: int):
    """Fig. 5: squared projections of the rotated second-cliff directions on the sum and diff
    pairs, one panel per epoch."""
    epochs = list(rotation)
    cols = min(3, len(epochs))
    rows = -(-len(epochs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    nf = (params.p - 1) // 2
    for ax, epoch in zip(axes.flat, epochs, strict=False):
        r = rotation[epoch]
        heatmap(ax, r["projection"], title=f"epoch {epoch}: score {r['score']:.2f}",
                xlabel=f"(cos, sin) pair: sum k = 1..{nf}, then diff k = 1..{nf}",
                ylabel="rotated direction", cbar_label="squared projection")
        ax.axvline(nf - 0.5, color="w", lw=0.8)
    for ax in list(axes.flat)[len(epochs):]:
        ax.axis("off")
    fig.suptitle(f"seed {seed}: second-cliff span after the two-stage L_sum / L_diff rotation "
                 "(rows: stage-two directions, then stage-one)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_rotation_scores(rotations: list[dict], summaries: list[dict], null: np.ndarray,
                         params: GrokkingParams):
    """One-to-one score after rotation against epoch, per seed, with the random baseline."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (rot, s) in enumerate(zip(rotations, summaries, strict=True)):
        ax.plot(list(rot), [r["score"] for r in rot.values()], "o-", color=f"C{i}", label=f"seed {s['seed']}")
    _mark_onsets(ax, summaries)
    ax.axhline(params.rotation_score, color="k", ls="--", lw=0.8, label="rotation_score")
    ax.axhline(null.max(), color="r", ls=":", lw=0.8, label="random subspaces (max)")
    ax.set(title="second cliff after the L_sum / L_diff rotation", xlabel="epoch",
           ylabel="one-to-one score with sum/diff pairs (0-1)", ylim=(0, 1.02))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
