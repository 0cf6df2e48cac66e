"""A multilayer perceptron in NTK or standard parametrization, and the two-moons data set."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..params import check_choice, check_int, check_real

__all__ = ["MLP", "Scale", "two_moons"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}


class Scale(nn.Module):
    """Multiply by a fixed constant (kept outside ``nn.Linear`` so the kernel engine's
    structured backend still recognizes the linear layer that follows)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x):
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:.4g}"


def _ntk_linear(fan_in: int, fan_out: int) -> list[nn.Module]:
    """``y = W (x / sqrt(fan_in)) + b`` with ``W, b ~ N(0, 1)`` (NTK parametrization)."""
    linear = nn.Linear(fan_in, fan_out)
    nn.init.normal_(linear.weight)
    nn.init.normal_(linear.bias)
    return [Scale(1.0 / math.sqrt(fan_in)), linear]


class MLP(nn.Module):
    """Fully connected network ``d_in -> width x depth -> d_out``.

    Parameters
    ----------
    parametrization : {"ntk", "standard"}
        ``ntk``: weights and biases N(0, 1), each layer's input scaled by 1/sqrt(fan_in), so the
        kernel has a finite infinite-width limit and training becomes lazy as width grows.
        ``standard``: PyTorch's default initialization.
    """

    def __init__(self, d_in: int, width: int, depth: int, d_out: int, *, activation="tanh",
                 parametrization="ntk"):
        super().__init__()
        d_in = check_int("d_in", d_in)
        width = check_int("width", width)
        depth = check_int("depth", depth)
        d_out = check_int("d_out", d_out)
        check_choice("activation", activation, _ACTIVATIONS)
        check_choice("parametrization", parametrization, ("ntk", "standard"))
        dims = [d_in] + [width] * depth + [d_out]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers += _ntk_linear(a, b) if parametrization == "ntk" else [nn.Linear(a, b)]
            if i < depth:
                layers.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def two_moons(n: int, *, noise: float = 0.1, seed: int = 0, dtype=torch.float32):
    """``n`` points of two interleaved half circles in 2-D, standardized, labels +-1.

    Returns
    -------
    x : Tensor (n, 2)
    y : Tensor (n, 1), +1 for the upper moon and -1 for the lower one.
    """
    n = check_int("n", n, minimum=2)
    noise = check_real("noise", noise, low=0.0)
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    t = rng.uniform(0, np.pi, n)
    x = np.where(label[:, None] == 0,
                 np.stack([np.cos(t), np.sin(t)], 1),
                 np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
    x = x + noise * rng.standard_normal((n, 2))
    x = (x - np.array([0.5, 0.25])) / np.array([0.87, 0.5])
    y = np.where(label == 0, 1.0, -1.0)[:, None]
    return torch.as_tensor(x, dtype=dtype), torch.as_tensor(y, dtype=dtype)
