"""Kernel regression with the eNTK: the linearized model of the paper's Eq. (1) and Eq. (3).

``f_lin(x) = f_0(x) + K(x, X) K(X, X)^{-1} (Y - f_0(X))`` is the function a network trained to
convergence by gradient flow on the squared loss computes when its kernel stays fixed at ``K``.
With ``K = K_0`` (initialization) this is the lazy/NTK limit; with the kernel at the end of
training, ``K_T``, it is the "after kernel" predictor.
"""

from __future__ import annotations

import numpy as np

from .linalg import as_numpy, centered
from .params import check_int, check_real

__all__ = [
    "faithfulness",
    "kernel_drift",
    "kernel_regression",
    "kernel_target_alignment",
]


_np = as_numpy


def kernel_regression(
    k_train,
    y_train,
    k_test_train=None,
    *,
    f0_train=None,
    f0_test=None,
    ridge: float = 0.0,
    rank: int | None = None,
    steps: int | None = None,
    step_size: float | None = None,
):
    """Predictions of the kernel-linearized model.

    Parameters
    ----------
    k_train : (M, M) kernel on the training inputs (N x N shared by all outputs, or a flattened
        (C*N, C*N) kernel with class-major ordering).
    y_train : (N, C) or (N,) targets.
    k_test_train : (M', M) kernel between test and training inputs; if None, predict on train.
    f0_train, f0_test : outputs of the network at the reference parameters (default 0).
    ridge : float >= 0
        Added to the eigenvalues as ``ridge * mean(eigenvalues)`` (scale-free regularization).
    rank : int, optional
        Keep only the top ``rank`` eigenpairs of ``k_train`` (spectral truncation).
    steps, step_size : optional
        Finite-time gradient descent instead of convergence: the training residual shrinks by
        ``(1 - step_size * lambda)^steps`` along each eigenvector. For mean-squared loss averaged
        over N samples and C outputs with learning rate ``lr``, ``step_size = 2 * lr / (N * C)``.

    Returns
    -------
    ndarray shaped like ``y_train`` (for N' test inputs: (N', C)).
    """
    k = _np(k_train)
    y = _np(y_train)
    squeeze = y.ndim == 1
    y2 = y[:, None] if squeeze else y
    n, c = y2.shape
    flattened = k.shape[0] == n * c and c > 1
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] not in (n, n * c):
        raise ValueError(f"`k_train` must be ({n}, {n}) or ({n * c}, {n * c}), got {k.shape}")
    ridge = check_real("ridge", ridge, low=0.0)
    if steps is not None and ridge > 0:
        raise ValueError("`ridge` and `steps` exclude each other: finite-time gradient descent "
                         "(steps) already regularizes; pass ridge=0 with steps, or steps=None")
    f0 = np.zeros_like(y2) if f0_train is None else _np(f0_train).reshape(y2.shape)
    resid = _vec(y2 - f0, flattened)
    lam, vec = np.linalg.eigh(0.5 * (k + k.T))
    coeff = vec.T @ resid
    weight = _spectral_weights(lam, ridge, rank, steps, step_size)
    alpha = vec @ (weight[:, None] * coeff if coeff.ndim == 2 else weight * coeff)
    if k_test_train is None:
        kx, base = k, f0
    else:
        kx = _np(k_test_train)
        per = c if flattened else 1
        if kx.ndim != 2 or kx.shape[1] != k.shape[0] or kx.shape[0] % per:
            raise ValueError(f"`k_test_train` must be (M, {k.shape[0]})"
                             + (f" with M a multiple of C = {c}" if flattened else "")
                             + f", got {kx.shape}")
        m = kx.shape[0] // per
        base = np.zeros((m, c)) if f0_test is None else _np(f0_test).reshape(m, c)
    pred = base + _unvec(kx @ alpha, flattened, c)
    return pred[:, 0] if squeeze else pred


def _vec(r: np.ndarray, flattened: bool) -> np.ndarray:
    return r.T.reshape(-1) if flattened else r


def _unvec(v: np.ndarray, flattened: bool, c: int) -> np.ndarray:
    return v.reshape(c, -1).T if flattened else v


def _spectral_weights(lam, ridge, rank, steps, step_size) -> np.ndarray:
    """Per-eigenvalue weights w(lambda) with alpha = V diag(w) V^T (Y - f0)."""
    lam = np.clip(lam, 0.0, None)
    floor = 1e-12 * max(lam.max(), 1e-300)
    reg = lam + ridge * lam.mean()
    weight = np.where(reg > floor, 1.0 / np.maximum(reg, floor), 0.0)
    if steps is not None:
        steps = check_int("steps", steps, minimum=0)
        step_size = check_real("step_size", step_size, low=0.0, low_inclusive=False)
        decay = (1.0 - step_size * lam) ** steps
        weight = np.where(lam > floor, (1.0 - decay) / np.maximum(lam, floor), step_size * steps)
    if rank is not None:
        rank = check_int("rank", rank, minimum=0, maximum=lam.size)
        keep = np.zeros(lam.size, dtype=bool)
        keep[np.argsort(lam)[::-1][:rank]] = True
        weight = np.where(keep, weight, 0.0)
    return weight


def faithfulness(pred_lin, pred_net, y_true) -> dict[str, float]:
    """How closely a linearized prediction matches the trained network on the same inputs.

    Returns ``r2`` (of the network's outputs by the linearized ones), ``loss_ratio`` (MSE of the
    linearized model over MSE of the network, against the targets) and ``acc_gap`` (accuracy of
    the network minus that of the linearized model; argmax for C > 1, sign for one output).
    """
    lin, net, y = _np(pred_lin), _np(pred_net), _np(y_true)
    resid = np.sum((lin - net) ** 2)
    total = np.sum((net - net.mean(axis=0)) ** 2)
    r2 = 1.0 - resid / max(total, 1e-300)
    loss_ratio = np.mean((lin - y) ** 2) / max(np.mean((net - y) ** 2), 1e-300)
    return {"r2": float(r2), "loss_ratio": float(loss_ratio), "acc_gap": _acc(net, y) - _acc(lin, y)}


def _acc(pred: np.ndarray, y: np.ndarray) -> float:
    if pred.ndim == 1 or pred.shape[1] == 1:
        return float(np.mean(np.sign(pred.ravel()) == np.sign(y.ravel())))
    return float(np.mean(pred.argmax(1) == y.argmax(1)))


def kernel_drift(k_t, k_0) -> float:
    """Relative change ``||K_t - K_0||_F / ||K_0||_F``."""
    a, b = _np(k_t), _np(k_0)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def kernel_target_alignment(k, y, *, center: bool = True) -> float:
    """``<K, Y Y^T>_F / (||K||_F ||Y Y^T||_F)``, on centred kernels by default (Cortes et al.)."""
    kk, yy = _np(k), _np(y)
    yy = yy[:, None] if yy.ndim == 1 else yy
    target = yy @ yy.T
    if center:
        kk, target = centered(kk), centered(target)
    return float(np.sum(kk * target) / max(np.linalg.norm(kk) * np.linalg.norm(target), 1e-300))
