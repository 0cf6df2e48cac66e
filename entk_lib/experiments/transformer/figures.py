"""The chapter's figures and tables: training curves, Fourier spectra, Fig. 3, the per-tensor
timeline, eigenvector images, Table 2, the key numbers, the measured cost and the closing note."""

from __future__ import annotations

import os

import numpy as np

from ...claims import TextTable, fmt
from ...grokking import derivative_peak
from ...linalg import empirical_p_value
from ...training import load_average
from .claims import seed_summary
from .params import PAPER_CHECKPOINT_EVERY, TENSORS, TransformerParams
from .pipeline import GROK_LEVELS, GROK_NAMES, table2, time_full_set

__all__ = [
    "Note",
    "closing_note",
    "cost_view",
    "key_numbers",
    "plot_eigenvectors",
    "plot_fig3",
    "plot_fourier",
    "plot_training",
    "table2_view",
    "tensor_timeline",
]


def plot_training(ax, res: dict) -> None:
    """Train and test accuracy against epoch, grokking epochs as vertical lines."""
    h = res["history"]
    ax.plot(h["epoch"], 100 * np.asarray(h["train_acc"]), label="train")
    ax.plot(h["epoch"], 100 * np.asarray(h["test_acc"]), label="test")
    for name, level, epoch, style in zip(GROK_NAMES, GROK_LEVELS, res["grok"], ("--", "-.", ":"),
                                         strict=True):
        if epoch is not None:
            ax.axvline(epoch, color="k", ls=style, lw=0.8,
                       label=f"{name}: test acc {100 * level:.0f}% (epoch {epoch})")
    ax.set(title=f"seed {res['seed']}: accuracy", xlabel="epoch", ylabel="accuracy (%)", ylim=(-2, 102))
    ax.legend(fontsize=7)


def plot_fourier(ax, res: dict) -> None:
    """Share of the token embedding's Fourier energy per frequency; key frequencies highlighted."""
    power = np.asarray(res["keys"]["power"])
    freqs = np.arange(1, power.size + 1)
    colors = ["C3" if k in res["keys"]["frequencies"] else "C0" for k in freqs]
    ax.bar(freqs, 100 * power, color=colors)
    ax.set(title=f"seed {res['seed']}: Fourier spectrum of W_E (key: red)", xlabel="frequency k",
           ylabel="share of Fourier energy (%)", xticks=freqs)


def plot_fig3(ax, res: dict, *, window: str = "sum_window", label: str = "sum modes") -> None:
    """The paper's Fig. 3: W_U window overlap (% of the family) and its derivative against epoch."""
    tr = res["track"]["unembed.weight"]
    dim = 2 * len(res["keys"]["frequencies"])
    frac = 100 * np.asarray(tr[window]) / dim
    deriv, peak = derivative_peak(tr["epoch"], frac)
    ax.plot(tr["epoch"], frac, label=f"overlap with {label} (% of {dim})")
    ax2 = ax.twinx()
    ax2.plot(tr["epoch"], deriv, color="C1", lw=0.8, label="derivative (right axis)")
    ax2.set_ylabel("d overlap / d epoch (% per epoch)")
    for epoch, style in zip(res["grok"], ("--", "-.", ":"), strict=True):
        if epoch is not None:
            ax.axvline(epoch, color="k", ls=style, lw=0.8)
    ax.axvline(peak, color="C1", lw=0.8, alpha=0.6)
    ax.set(title=f"seed {res['seed']}: W_U eNTK vs {label}", xlabel="epoch", ylabel="overlap (% of family)",
           ylim=(-2, 102))
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="center right")


def tensor_timeline(res: dict, window: str = "sum_window") -> tuple[np.ndarray, np.ndarray]:
    """(epochs, overlap fraction (tensors, epochs)) at the epochs where every tensor was analysed."""
    epochs = res["track"]["embed.weight"]["epoch"]
    dim = 2 * len(res["keys"]["frequencies"])
    grid = np.array([[res["track"][n][window][res["track"][n]["epoch"].index(e)] / dim for e in epochs]
                     for n in TENSORS])
    return np.asarray(epochs), grid


def plot_eigenvectors(axes, res: dict, tensor: str = "unembed.weight") -> None:
    """The first eigenvectors of a tensor's final eNTK as p x p images over (a, b)."""
    vecs = res["final_vectors"][tensor]
    p = int(round(np.sqrt(vecs.shape[0])))
    for i, ax in enumerate(axes):
        v = vecs[:, i].reshape(p, p)
        lim = np.abs(v).max()
        ax.imshow(v, cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
        ax.set(title=f"eigenvector {i + 1}", xlabel="b", ylabel="a", xticks=[], yticks=[])


def table2_view(results: list[dict]) -> TextTable:
    """Table 2 at the end of training: per tensor and seed, window overlaps and capture ranks."""
    rows = table2(results)
    seeds = [r["seed"] for r in results]
    header = ["tensor"]
    for s in seeds:
        header += [f"s{s} sum (top 2K+1)", f"s{s} axis-sum (next 2K)", f"s{s} 90% rank sum/axis"]
    body = []
    for name, label in TENSORS.items():
        line = [label]
        for s in seeds:
            r = next(x for x in rows if x["name"] == name and x["seed"] == s)
            ranks = "/".join(str(v) if v is not None else ">k" for v in (r["sum_capture"], r["axis_capture"]))
            line += [f"{fmt(r['sum_window'])} / {r['dim']}", f"{fmt(r['axis_window'])} / {r['dim']}", ranks]
        body.append(line)
    null = ["random subspace (mean)"]
    for s in seeds:
        r = next(x for x in rows if x["seed"] == s)
        null += [f"{fmt(r[f'{w}_null'], 3)} / {r['dim']}" for w in ("sum_window", "axis_window")] + ["-"]
    body.append(null)
    return TextTable("Table 2 (end of training): overlaps of per-tensor eNTK eigenvectors with the "
                     "families at the key frequencies", header, body)


def key_numbers(results: list[dict], params: TransformerParams) -> TextTable:
    """Rounded per-seed results checked by nbval."""
    rows = []
    for res in results:
        s = seed_summary(res, params.checkpoint_every)
        p_sum, p_axis = (_p_text(s[w], res["baselines"][w]) for w in ("sum_window", "axis_window"))
        rows.append([str(s["seed"]), ",".join(map(str, s["keys"])),
                     "/".join(str(g) if g is not None else "never" for g in s["grok"]),
                     fmt(100 * s["final_test_acc"], 1), f"{fmt(s['sum_window'])} / {s['dim']}",
                     f"{fmt(s['axis_window'])} / {s['dim']}", p_sum, p_axis,
                     str(s["peak"]) + ("" if len(s["maxima"]) < 2 else
                                       " (also " + ", ".join(str(e) for e, _ in s["maxima"][1:]) + ")"),
                     fmt(s["edge_gap"], 3)])
    header = ["seed", "key k", "rise/onset/complete epochs", "final test %", "W_U sum window",
              "W_U axis window", "p (sum)", "p (axis)", "derivative peak epoch", "edge gap at peak"]
    return TextTable("Key numbers (end of training; p-values against random subspaces)", header, rows)


def _p_text(observed: float, null) -> str:
    """The permutation p-value, as a bound when no null sample reaches the observation."""
    value = empirical_p_value(observed, null)
    return f"< {1 / len(null):.0e}" if value <= 1 / (len(null) + 1) else f"{value:.3f}"


def cost_view(results: list[dict], params: TransformerParams) -> TextTable:
    """Measured costs per seed, wall / CPU, and the extrapolation to the paper's schedule.

    Everything runs on one thread, so the CPU seconds are close to what an idle core takes; the
    wall seconds also count waiting for a busy machine (its load average is in the last column).
    """
    n_paper = params.epochs // PAPER_CHECKPOINT_EVERY + 1
    live = time_full_set(params, results[0])

    def pair(wall, cpu, scale=1.0, digits=1):
        return f"{scale * wall:.{digits}f} / {scale * cpu:.{digits}f}"

    rows = []
    for res in results:
        tracked, full = res["cost"]["tracked"], res["cost"]["full"]
        paper = [res["train_seconds"] + n_paper * full[0], res["train_cpu_seconds"] + n_paper * full[1]]
        # with full_every == checkpoint_every every checkpoint is a full set: no W_U-only timing
        only_wu = "- (in the full sets)" if np.isnan(tracked[0]) else pair(*tracked, scale=1000, digits=0)
        rows.append([str(res["seed"]), pair(res["train_seconds"], res["train_cpu_seconds"], digits=0),
                     only_wu, pair(*full, digits=2), pair(*paper, digits=0),
                     f"{res['load']:.1f} / {res['cost']['load']:.1f}"])
    rows.append([f"now (seed {results[0]['seed']})", "-", "-", pair(*live, digits=2), "-",
                 f"{load_average():.1f}"])
    header = ["seed", "training (s)", "W_U eNTK + eigenpairs (ms)", "all 9 eNTKs + eigenpairs (s)",
              f"training + {n_paper} full sets (s)", "load avg (train / eNTK)"]
    return TextTable(f"Measured cost, wall / CPU ({params.epochs} epochs, {params.p ** 2} inputs, "
                     f"top {params.top_k}, one thread, {os.cpu_count()} cores)", header, rows)


class Note:
    """Generated prose that renders as Markdown in the book (plain text elsewhere)."""

    def __init__(self, text: str):
        self.text = text

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def closing_note(results: list[dict], params: TransformerParams, elapsed: float) -> Note:
    """A short generated summary of what ran and how long it took."""
    sums = [seed_summary(r, params.checkpoint_every) for r in results]
    train = ", ".join(f"seed {r['seed']}: {r['train_seconds']:.0f} s wall, {r['train_cpu_seconds']:.0f} s CPU"
                      for r in results)
    keys = "; ".join(f"seed {s['seed']}: k = {', '.join(map(str, s['keys']))}" for s in sums)
    return Note(
        f"**What ran.** {len(results)} seed{'s' if len(results) > 1 else ''} × {params.epochs} epochs "
        f"(training {train}, one CPU "
        f"thread, timed when first computed), the unembedding's eNTK at "
        f"{len(params.checkpoint_epochs())} checkpoints per seed and all nine tensors' at "
        f"{len(params.full_epochs())}; this execution of the notebook spent {elapsed:.0f} s on "
        f"training and analysis (about a second means both came from the cache). Key frequencies: {keys}. "
        "Figures: training curves, Fourier spectra of the embeddings, Table 2, Fig. 3 (overlaps and "
        "derivatives), the per-tensor overlap timeline and the unembedding eigenvectors over (a, b)."
    )

