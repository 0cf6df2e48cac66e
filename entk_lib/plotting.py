"""Plot helpers with titles, axis labels and units, shared by the chapters."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["heatmap", "spectrum_plot"]


def spectrum_plot(ax, eigenvalues, *, cliffs=(), label=None, title="eNTK spectrum",
                  ylabel="eigenvalue (output units²)", color=None, marker_cliffs=True):
    """Eigenvalues in descending order on a log scale, with detected cliffs as dashed lines.

    A cliff at index k (k eigenvalues above it) is drawn between eigenvalue k and k+1
    (1-based positions on the x axis).
    """
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    x = np.arange(1, lam.size + 1)
    (line,) = ax.semilogy(x, np.maximum(lam, np.finfo(float).tiny), ".-", ms=3, lw=0.8,
                          label=label, color=color)
    if marker_cliffs:
        for k in cliffs:
            ax.axvline(k + 0.5, ls="--", lw=0.8, color=line.get_color(), alpha=0.7)
    ax.set_title(title)
    ax.set_xlabel("eigenvalue index (descending)")
    ax.set_ylabel(ylabel)
    return ax


def heatmap(ax, matrix, *, title, xlabel, ylabel, cbar_label="|cos|", vmin=0.0, vmax=1.0,
            cmap="viridis"):
    """A matrix as an image with a labelled colour bar; rows on y, columns on x."""
    im = ax.imshow(np.asarray(matrix, dtype=float), aspect="auto", interpolation="nearest",
                   vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    cbar = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label(cbar_label)
    return im
