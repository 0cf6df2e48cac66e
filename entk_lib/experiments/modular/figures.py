"""The modular-addition chapter's figures: training curves, spectra (v1 Fig. 2), overlaps,
the layer-1 cliff against Fourier pairs (v1 Fig. 4), rescaling, the causal test, the flattened
spectrum and the per-class drop ratios."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ...features import FOURIER_KINDS, cliff_positions, cliff_windows
from ...plotting import heatmap, spectrum_plot
from .params import ModularParams

__all__ = [
    "plot_causal",
    "plot_flattened",
    "plot_overlaps",
    "plot_pair_projection",
    "plot_per_class_ratios",
    "plot_reparam",
    "plot_spectra",
    "plot_training",
]


def plot_training(results: list[dict]):
    """Train and test loss (log scale) and accuracy against epoch, one line per seed."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for r in results:
        h, s = r["history"], r["seed"]
        (line,) = axes[0].semilogy(h["epoch"], h["train_loss"], lw=1, label=f"train, seed {s}")
        axes[0].semilogy(h["epoch"], h["test_loss"], "--", lw=1, color=line.get_color(),
                         label=f"test, seed {s}")
        axes[1].plot(h["epoch"], 100 * np.array(h["train_acc"]), lw=1, color=line.get_color())
        axes[1].plot(h["epoch"], 100 * np.array(h["test_acc"]), "--", lw=1, color=line.get_color())
    axes[0].set(title="MSE loss", xlabel="epoch", ylabel="loss (MSE to one-hot targets)")
    axes[1].set(title="accuracy (solid: train, dashed: test)", xlabel="epoch", ylabel="accuracy (%)")
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_spectra(result: dict, params: ModularParams):
    """The paper's Fig. 2: class_mean spectra of the total kernel, each layer, and layer 1 at init."""
    panels = [("total", "total (both layers)"), ("fc1", "layer 1 (fc1)"), ("fc2", "layer 2 (fc2)"),
              ("fc1_init", "layer 1 at initialization")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (name, title) in zip(axes, panels, strict=True):
        spec = result["spectra"][name]
        spectrum_plot(ax, spec["values"], cliffs=spec["cliffs"], title=f"{title}, seed {result['seed']}",
                      ylabel="eigenvalue (logit² units)")
        for c in cliff_positions(params.p):
            ax.axvline(c + 0.5, color="grey", lw=0.6, ls=":")
    fig.suptitle("class_mean eNTK spectra at the end of training (dashed: detected cliffs; dotted: "
                 "expected at 2(p-1)+1 and 4(p-1)+1)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_overlaps(summary: dict, params: ModularParams):
    """Overlap of each cliff window with each family (mean ± std over seeds), against random."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.38
    xs = np.arange(len(FOURIER_KINDS))
    for i, w in enumerate(("first", "second")):
        vals = np.array([summary[f"{w}_{f}"] for f in FOURIER_KINDS])
        ax.bar(xs + (i - 0.5) * width, vals.mean(1), width, yerr=vals.std(1), capsize=3,
               label=f"{w} cliff (eigenvectors {cliff_windows(params.p)[w].start}-"
                     f"{cliff_windows(params.p)[w].stop - 1})")
    ax.axhline(params.p - 1, color="k", lw=0.8, ls="--", label=f"family dimension {params.p - 1}")
    ax.axhline(summary["null_max"], color="r", lw=0.8, ls=":", label="largest random-subspace overlap")
    ax.set_xticks(xs, [f"{f} family" for f in FOURIER_KINDS])
    ax.set(title="Subspace overlap of the cliffs with the Fourier families (total kernel)",
           ylabel="overlap (sum of cos² of principal angles)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_pair_projection(result: dict, params: ModularParams):
    """v1 Fig. 4 (left): each layer-1 cliff eigenvector's squared projection on each (cos, sin) pair."""
    fig, ax = plt.subplots(figsize=(8, 5))
    nf = (params.p - 1) // 2
    heatmap(ax, result["pair_projection"], vmax=None,
            title=f"Layer-1 cliff eigenvectors vs Fourier pairs (seed {result['seed']}, before rotation)",
            xlabel=f"(cos, sin) pair: a-family k = 1..{nf}, then b-family k = 1..{nf}",
            ylabel="eigenvector index (1 = first after the leading mode)",
            cbar_label="squared projection (dimensionless)")
    ticks = np.arange(2 * nf)
    ax.set_xticks(ticks, [f"a{k}" for k in range(1, nf + 1)] + [f"b{k}" for k in range(1, nf + 1)],
                  fontsize=6, rotation=90)
    rows = result["pair_projection"].shape[0]
    ax.set_yticks(np.arange(0, rows, 5), np.arange(1, rows + 1, 5))
    fig.tight_layout()
    return fig


def plot_reparam(results: list[dict], summary: dict, params: ModularParams):
    """Total-kernel spectra (seed 0) and window overlaps (all seeds) against the scale s."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(params.scales)))
    for item, color in zip(results[0]["reparam"], colors, strict=True):
        spectrum_plot(axes[0], item["values"] / item["values"][0], label=f"s = {item['s']:g}",
                      color=color, marker_cliffs=False, ylabel="eigenvalue / largest",
                      title=f"total class_mean spectrum after W1->sW1, W2->W2/s² (seed {results[0]['seed']})")
    for c in cliff_positions(params.p):
        axes[0].axvline(c + 0.5, color="grey", lw=0.6, ls=":")
    axes[0].legend(fontsize=7, ncol=2)
    rep = summary["reparam"]
    for key, label in (("first_a", "first window vs a"), ("first_b", "first window vs b"),
                       ("second_sum", "second window vs sum"), ("second_diff", "second window vs diff")):
        axes[1].errorbar(rep["s"], rep[key].mean(1), yerr=rep[key].std(1), marker="o", capsize=3,
                         label=label)
    axes[1].set_xscale("log", base=2)
    axes[1].axhline(params.p - 1, color="k", lw=0.8, ls="--")
    axes[1].set(title="overlaps of the eigenvector windows with the families",
                xlabel="scale s (log₂ axis; s = 1 is the trained network)",
                ylabel=f"overlap (of {params.p - 1})")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_causal(results: list[dict], summary: dict, params: ModularParams):
    """Test loss after ablating cliff directions in W2, against random ablations (seed 0), and
    test accuracies over seeds."""
    d = 2 * (params.p - 1)
    r0 = results[0]["causal"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    axes[0].hist(r0["random"][d][:, 0], bins=40, color="grey", alpha=0.7,
                 label=f"{params.null_draws} Haar-random {d}-dim ablations")
    axes[0].hist(r0["pulled"][d][:, 0], bins=40, color="C4", alpha=0.5,
                 label=f"{params.null_draws} pulled-back random windows")
    for w, color in (("first", "C0"), ("second", "C1"), ("next", "C2")):
        axes[0].axvline(r0["windows"][w][0], color=color, lw=1.5, label=f"{w} window")
    axes[0].axvline(r0["base"][0], color="k", ls="--", lw=1, label="intact network")
    axes[0].set(xscale="log", title=f"test loss after ablation in W2 (seed {results[0]['seed']})",
                xlabel="test MSE (log scale)", ylabel="count (random draws)")
    axes[0].legend(fontsize=7)
    cz = summary["causal"]
    names = ["intact", "first", "second", "next", "Haar\n(mean)", "pulled-back\n(mean)", "top SVD\nof W2"]
    accs = [cz["base_acc"], cz["first_acc"], cz["second_acc"], cz["next_acc"], cz["random_acc"],
            cz["pulled_acc"], cz["svd_acc"]]
    axes[1].bar(names, [100 * a.mean() for a in accs], yerr=[100 * a.std() for a in accs], capsize=3,
                color=["k", "C0", "C1", "C2", "grey", "C4", "C5"])
    axes[1].set(title="test accuracy after ablation (mean ± std over seeds)", ylabel="accuracy (%)",
                xlabel="ablated directions in W2")
    fig.tight_layout()
    return fig


def plot_flattened(flat: dict, params: ModularParams):
    """Top of the flattened spectrum, with the layer-2 part's p-fold prediction."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    spectrum_plot(ax, flat["values"], cliffs=flat["cliffs"], label="total flattened (Lanczos)",
                  title=f"flattened eNTK, top {flat['k']} of {params.p ** 3} (seed {flat['seed']})",
                  ylabel="eigenvalue (logit² units)")
    spectrum_plot(ax, flat["layer2_values"], label="layer 2 only: eig(H), each repeated p times",
                  marker_cliffs=False, title=ax.get_title(), ylabel=ax.get_ylabel())
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_per_class_ratios(summary: dict, params: ModularParams):
    """Histogram, over (class, seed) kernels, of the drop ratios at the two expected cliffs."""
    c1, c2 = summary["expected_cliffs"]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ratios = summary["pc_ratios"]
    bins = np.linspace(1.0, max(2.5, float(ratios.max()) + 0.05), 40)
    ax.hist(ratios[:, 0], bins=bins, alpha=0.7, label=f"drop at {c1} (end of the first cliff)")
    ax.hist(ratios[:, 1], bins=bins, alpha=0.7, label=f"drop at {c2} (end of the second cliff)")
    ax.axvline(params.cliff_min_ratio, color="k", ls="--", lw=1, label="cliff_min_ratio")
    ax.set(title=f"per-class kernels: drop ratios ({len(ratios)} (class, seed) kernels)",
           xlabel="lambda[k-1] / lambda[k] (dimensionless)", ylabel="number of kernels")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
