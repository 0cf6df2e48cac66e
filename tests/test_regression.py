"""The kernel-linearized predictor against explicit linear dynamics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import entk_lib
from entk_lib.regression import faithfulness, kernel_drift, kernel_regression, kernel_target_alignment


def spd(n, seed=0):
    a = np.random.default_rng(seed).standard_normal((n, n + 3))
    return a @ a.T


def test_converged_regression_interpolates_training_targets():
    k = spd(8)
    y = np.random.default_rng(1).standard_normal((8, 2))
    f0 = np.random.default_rng(2).standard_normal((8, 2))
    np.testing.assert_allclose(kernel_regression(k, y, f0_train=f0), y, atol=1e-8)


def test_finite_time_equals_iterated_linear_gradient_descent():
    rng = np.random.default_rng(3)
    n, m, c = 7, 4, 2
    a = rng.standard_normal((n + m, 12))
    kall = a @ a.T
    k, kx = kall[:n, :n], kall[n:, :n]
    y, f0, f0x = rng.standard_normal((n, c)), rng.standard_normal((n, c)), rng.standard_normal((m, c))
    eta, steps = 0.01, 37
    # linear model in parameter space: f = f0 + A theta, loss sum over (f - y)^2 * eta/2 scaling
    theta = np.zeros((12, c))
    for _ in range(steps):
        resid = f0 + a[:n] @ theta - y
        theta -= eta * a[:n].T @ resid
    explicit = f0x + a[n:] @ theta
    got = kernel_regression(k, y, kx, f0_train=f0, f0_test=f0x, steps=steps, step_size=eta)
    np.testing.assert_allclose(got, explicit, rtol=1e-9, atol=1e-9)


def test_flattened_kernel_with_block_diagonal_structure_matches_shared_kernel():
    k = spd(5)
    y = np.random.default_rng(4).standard_normal((5, 3))
    flat = np.kron(np.eye(3), k)  # class-major flattened kernel with identical diagonal blocks
    np.testing.assert_allclose(kernel_regression(flat, y, ridge=0.1), kernel_regression(k, y, ridge=0.1))


def test_rank_truncation_and_ridge():
    k = spd(6)
    y = np.random.default_rng(5).standard_normal(6)
    lam, vec = np.linalg.eigh(k)
    top = vec[:, -2:]
    np.testing.assert_allclose(kernel_regression(k, y, rank=2), top @ (top.T @ y), atol=1e-10)
    big_ridge = kernel_regression(k, y, ridge=1e6)
    assert np.abs(big_ridge).max() < 1e-4
    with pytest.raises(ValueError, match="`ridge`"):
        kernel_regression(k, y, ridge=-1.0)
    with pytest.raises(ValueError, match="`rank` must be an integer in \\[0, 6\\]"):
        kernel_regression(k, y, rank=7)
    with pytest.raises(ValueError, match="`k_train` must be"):
        kernel_regression(np.eye(4), y)


def test_linearized_model_matches_a_network_trained_with_tiny_steps():
    """At small step size a wide net follows its linearization: Eq. (1) at finite time."""
    torch.manual_seed(0)
    from entk_lib.models.mlp import MLP

    model = MLP(2, 256, 1, 1).double()
    x = torch.randn(10, 2, dtype=torch.float64)
    y = torch.randn(10, 1, dtype=torch.float64)
    xt = torch.randn(5, 2, dtype=torch.float64)
    k, kx = entk_lib.entk(model, x, collapse="class_mean"), entk_lib.entk(model, xt, x, collapse="class_mean")
    with torch.no_grad():
        f0, f0t = model(x), model(xt)
    lr, steps = 0.002, 50
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    lin = kernel_regression(k, y, kx, f0_train=f0, f0_test=f0t, steps=steps, step_size=2 * lr / 10)
    with torch.no_grad():
        net = model(xt).numpy()
    np.testing.assert_allclose(lin, net, rtol=0, atol=2e-3 * np.abs(net - f0t.numpy()).max() + 1e-6)


def test_metrics():
    y = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    net = np.array([[0.9], [-0.8], [0.7], [-1.1]])
    m = faithfulness(net, net, y)
    assert m == {"r2": 1.0, "loss_ratio": 1.0, "acc_gap": 0.0}
    flipped = faithfulness(-net, net, y)
    assert flipped["acc_gap"] == 1.0 and flipped["r2"] < 0
    assert kernel_drift(np.eye(3) * 2, np.eye(3)) == pytest.approx(1.0)
    yy = np.array([1.0, 1.0, -1.0, -1.0])
    assert kernel_target_alignment(np.outer(yy, yy), yy) == pytest.approx(1.0)


def test_bad_arguments_are_clear_errors():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    k = a @ a.T
    y = rng.standard_normal((6, 2))
    with pytest.raises(ValueError, match="`ridge` and `steps` exclude each other"):
        kernel_regression(k, y, ridge=0.1, steps=10, step_size=0.01)
    with pytest.raises(ValueError, match=r"`k_test_train` must be \(M, 6\), got \(3, 5\)"):
        kernel_regression(k, y, rng.standard_normal((3, 5)))
    with pytest.raises(ValueError, match="`k_train` must be"):
        kernel_regression(k[:5, :5], y)
