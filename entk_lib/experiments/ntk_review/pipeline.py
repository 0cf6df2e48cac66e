"""The NTK-review chapter's pipeline: train one MLP per (width, seed), its kernels at
initialization and at the end of training, the linearized predictors of Eq. (1) and Eq. (3), and
the summary over seeds."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ...kernel import entk
from ...models.mlp import MLP, two_moons
from ...regression import faithfulness, kernel_drift, kernel_regression
from ...training import train
from .params import ReviewParams

__all__ = ["run_width", "summarize", "width_sweep"]


def run_width(params: ReviewParams, width: int, seed: int) -> dict:
    """Train one network and measure its kernels and linearized predictors (test split).

    Returns a dict with the kernel ``drift``, the final ``train_loss``, the network's test
    accuracy, the faithfulness (:func:`entk_lib.regression.faithfulness`) of the Eq. (1) (``k0``)
    and Eq. (3) (``kt``) predictors, the descending eigenvalues ``eig_0`` and ``eig_t`` (N,) of
    both kernels, ``truncation_r2`` (len(ranks),) and, for plots, the network's and the Eq. (1)
    predictor's test outputs (n_test,) and the test inputs ``x_test`` (n_test, 2).
    """
    x_tr, y_tr = two_moons(params.n_train, noise=params.noise, seed=1000 + seed)
    x_te, y_te = two_moons(params.n_test, noise=params.noise, seed=2000 + seed)
    torch.manual_seed(seed)
    model = MLP(2, width, params.depth, 1, activation=params.activation)

    def kernels():
        return (entk(model, x_tr, collapse="class_mean").double(),
                entk(model, x_te, x_tr, collapse="class_mean").double())

    k0, k0_x = kernels()
    with torch.no_grad():
        f0_tr, f0_te = model(x_tr), model(x_te)
    opt = torch.optim.SGD(model.parameters(), lr=params.lr)
    run = train(model, lambda out, y: ((out - y) ** 2).mean(), (x_tr, y_tr), optimizer=opt,
                epochs=params.steps, eval_every=params.steps, progress=False)
    kt, kt_x = kernels()
    with torch.no_grad():
        net_te = model(x_te)
    gd = {"steps": params.steps, "step_size": 2 * params.lr / params.n_train, "f0_train": f0_tr,
          "f0_test": f0_te}
    lin0 = kernel_regression(k0, y_tr, k0_x, **gd)
    lin_t = kernel_regression(kt, y_tr, kt_x, **gd)
    truncated = [faithfulness(kernel_regression(kt, y_tr, kt_x, rank=r, **gd), net_te, y_te)["r2"]
                 for r in params.ranks]
    eig_t = np.linalg.eigvalsh(kt.numpy())[::-1]
    return {
        "width": width, "seed": seed, "drift": kernel_drift(kt, k0),
        "train_loss": run.history["train_loss"][-1],
        "net_test_acc": float((torch.sign(net_te) == y_te).float().mean()),
        "k0": faithfulness(lin0, net_te, y_te), "kt": faithfulness(lin_t, net_te, y_te),
        "eig_0": np.linalg.eigvalsh(k0.numpy())[::-1], "eig_t": eig_t,
        "truncation_r2": np.array(truncated),
        "net_test": net_te.numpy().ravel(), "lin0_test": lin0.ravel(), "x_test": x_te.numpy(),
    }


def width_sweep(params: ReviewParams, progress: bool = True) -> list[dict]:
    """:func:`run_width` for every (width, seed)."""
    jobs = [(w, s) for w in params.widths for s in params.seeds]
    return [run_width(params, w, s) for w, s in tqdm(jobs, desc="widths x seeds", disable=not progress)]


def summarize(results: list[dict], params: ReviewParams) -> dict[str, np.ndarray]:
    """Per-width means over seeds of the scalar measurements (each (len(widths),)), the
    truncated R^2 (len(widths), len(ranks)) and the drift's log-log slope."""
    widths = np.array(params.widths)

    def mean_of(get):
        return np.array([np.mean([get(r) for r in results if r["width"] == w]) for w in widths])

    out = {
        "width": widths,
        "drift": mean_of(lambda r: r["drift"]),
        "r2_k0": mean_of(lambda r: r["k0"]["r2"]),
        "r2_kt": mean_of(lambda r: r["kt"]["r2"]),
        "loss_ratio_k0": mean_of(lambda r: r["k0"]["loss_ratio"]),
        "loss_ratio_kt": mean_of(lambda r: r["kt"]["loss_ratio"]),
        "acc_gap_k0": mean_of(lambda r: r["k0"]["acc_gap"]),
        "acc_gap_kt": mean_of(lambda r: r["kt"]["acc_gap"]),
        "top10_share": mean_of(lambda r: r["eig_t"][:10].sum() / r["eig_t"].sum()),
        "train_loss": mean_of(lambda r: r["train_loss"]),
    }
    out["truncation_r2"] = np.stack([
        np.mean([r["truncation_r2"] for r in results if r["width"] == w], axis=0) for w in widths
    ])
    out["drift_slope"] = float(np.polyfit(np.log(widths), np.log(out["drift"]), 1)[0])
    return out
