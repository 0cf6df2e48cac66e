"""The NTK-review chapter's figures: the kernel's drift with width (:func:`plot_drift`), the
faithfulness of the linearized models (:func:`plot_faithfulness`), their predictions on the test
points (:func:`plot_predictions`), and the spectra with their truncations (:func:`plot_spectra`).

Each takes the outputs of :func:`~.pipeline.width_sweep` / :func:`~.pipeline.summarize` and
returns the figure."""

from __future__ import annotations

import matplotlib.pyplot as plt

from ...plotting import spectrum_plot
from .claims import CRITERIA
from .params import ReviewParams

__all__ = ["plot_drift", "plot_faithfulness", "plot_predictions", "plot_spectra"]


def _narrow_and_wide(results: list[dict], params: ReviewParams) -> list[dict]:
    """The first seed's run at the narrowest and at the widest width."""
    return [results[0], results[-len(params.seeds)]]


def plot_drift(summary: dict):
    """Relative kernel drift ``||K_T - K_0|| / ||K_0||`` against width (log-log), with a
    ``width^-1/2`` guide through the first point."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(summary["width"], summary["drift"], "o-", label="measured (mean over seeds)")
    guide = summary["drift"][0] * (summary["width"] / summary["width"][0]) ** -0.5
    ax.loglog(summary["width"], guide, "k--", lw=0.8, label=r"$\propto$ width$^{-1/2}$")
    ax.set(title="eNTK drift during training", xlabel="hidden width (units)",
           ylabel=r"$\|K_T-K_0\|_F/\|K_0\|_F$ (relative)")
    ax.legend()
    return fig


def plot_faithfulness(summary: dict):
    """Test R^2, loss ratio and accuracy gap of Eq. (1) (K_0) and Eq. (3) (K_T) against width."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for key, label in [("k0", "$K_0$ (Eq. 1)"), ("kt", "$K_T$ (Eq. 3)")]:
        for ax, metric in zip(axes, ["r2", "loss_ratio", "acc_gap"], strict=True):
            ax.semilogx(summary["width"], summary[f"{metric}_{key}"], "o-", label=label)
    for ax, title, ylabel in zip(axes, ["$R^2$ (linearized vs network)", "test-loss ratio", "accuracy gap"],
                                 ["$R^2$ (dimensionless)", "MSE(lin) / MSE(net)", "acc(net) - acc(lin)"],
                                 strict=True):
        ax.set(title=title, xlabel="hidden width (units)", ylabel=ylabel)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_predictions(results: list[dict], params: ReviewParams):
    """The network's and the Eq. (1) predictor's outputs on the test points, at the narrowest
    and the widest width (first seed)."""
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4), sharey=True, constrained_layout=True)
    for col, res in enumerate(_narrow_and_wide(results, params)):
        for row, (key, name) in enumerate([("net_test", "network"), ("lin0_test", "$K_0$ linearized")]):
            ax = axes[2 * col + row]
            sc = ax.scatter(*res["x_test"].T, c=res[key], cmap="coolwarm", vmin=-1.5, vmax=1.5, s=8)
            ax.set(title=f"width {res['width']}: {name}", xlabel="$x_1$ (standardized units)")
    axes[0].set_ylabel("$x_2$ (standardized units)")
    fig.colorbar(sc, ax=axes, label="output $f(x)$ (label units)")
    return fig


def plot_spectra(results: list[dict], summary: dict, params: ReviewParams):
    """Left: the K_0 and K_T spectra at the narrowest and the widest width (first seed). Right:
    test R^2 of the rank-k truncation of K_T against k, per width."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for res in _narrow_and_wide(results, params):
        spectrum_plot(axes[0], res["eig_0"], label=f"$K_0$, width {res['width']}")
        spectrum_plot(axes[0], res["eig_t"], label=f"$K_T$, width {res['width']}",
                      title="eNTK spectrum on the training points")
    axes[0].legend(fontsize=8)
    for w, row in zip(summary["width"], summary["truncation_r2"], strict=True):
        axes[1].semilogx(params.ranks, row, "o-", label=f"width {w}")
    axes[1].axhline(CRITERIA["truncation_r2"], color="k", lw=0.8, ls="--")
    axes[1].set(title="rank-$k$ truncation of $K_T$", xlabel="rank $k$ (eigenpairs kept)",
                ylabel="test $R^2$ vs network", ylim=(-0.1, 1.02))
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig
