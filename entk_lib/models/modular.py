"""Modular addition with a one-hidden-layer quadratic MLP (Gromov 2023), trained once and cached.

Data
    All p^2 pairs (a, b) in the library's input order, ``index = a * p + b`` (see
    :mod:`entk_lib.features`). An input is the concatenation of the one-hot vectors of a and b
    (length 2p); its target is the one-hot vector of ``(a + b) mod p`` (length p).

Model
    ``fc1``: Linear(2p -> width, no bias), times ``1/sqrt(2p)``, squared elementwise, ``fc2``:
    Linear(width -> p, no bias), times ``1/width``; weights N(0, 1). The fixed factors live in
    separate :class:`~entk_lib.models.mlp.Scale` modules, so both linear layers use the kernel
    engine's structured backend.

Training
    Full-batch AdamW on the mean squared error to the one-hot targets, on a seeded random
    split of the pairs, with parameter checkpoints every ``checkpoint_every`` epochs.
    :func:`train_modular` caches the run on disk (:func:`entk_lib.cache.cached`) under a hash of
    every setting, the seed and :data:`CODE_VERSION`, so the chapters that reuse this model
    (modular addition, grokking, Laplacian rotation) train it once::

        from entk_lib.models.modular import ModularSetup, train_modular
        run = train_modular(ModularSetup(p=29), seed=0)     # cached after the first call
        model = run.model_at(120)                            # the network after 120 epochs
        x, y = run.inputs, run.targets                       # all p^2 inputs, (p^2, 2p) and (p^2, p)
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..cache import cached
from ..params import ChapterParams, check_int, check_int_list, check_prime, check_real
from ..training import accuracy, train
from .mlp import Scale

__all__ = [
    "CODE_VERSION",
    "ModularMLP",
    "ModularRun",
    "ModularSetup",
    "ModularTraining",
    "Square",
    "modular_data",
    "rescale_layers",
    "train_modular",
    "train_test_split",
]

#: Bump when the data, model or training code changes what a cached run contains.
CODE_VERSION = "modular-mlp-v1"


class Square(nn.Module):
    """Elementwise square, the quadratic activation of Gromov's network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class ModularMLP(nn.Module):
    """``fc2(square(fc1(x) / sqrt(2p))) / width``: inputs (N, 2p) -> logits (N, p).

    Parameters
    ----------
    p : int
        Modulus (an odd prime).
    width : int
        Hidden units.
    generator : torch.Generator, optional
        Source of the N(0, 1) initial weights (the global RNG if None).
    """

    def __init__(self, p: int, width: int, *, generator: torch.Generator | None = None):
        super().__init__()
        p = check_prime("p", p)
        width = check_int("width", width, minimum=1)
        self.p, self.width = p, width
        self.fc1 = nn.Linear(2 * p, width, bias=False)
        self.scale1 = Scale(1.0 / math.sqrt(2 * p))
        self.act = Square()
        self.fc2 = nn.Linear(width, p, bias=False)
        self.scale2 = Scale(1.0 / width)
        for linear in (self.fc1, self.fc2):
            nn.init.normal_(linear.weight, mean=0.0, std=1.0, generator=generator)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Post-activations (N, width): ``(fc1(x) / sqrt(2p))**2``."""
        return self.act(self.scale1(self.fc1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale2(self.fc2(self.hidden(x)))


def rescale_layers(model: ModularMLP, s: float) -> ModularMLP:
    """A copy with ``W1 -> s W1`` and ``W2 -> W2 / s^2``: the same function, other kernels.

    The hidden post-activations scale by ``s^2`` and ``fc2`` divides them back, so the outputs
    are unchanged, while the layer-1 eNTK scales by ``s^-2`` and the layer-2 eNTK by ``s^4``.
    """
    s = check_real("s", s, low=0.0, low_inclusive=False)
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.fc1.weight.mul_(s)
        out.fc2.weight.div_(s * s)
    return out


def modular_data(p: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """All p^2 inputs and targets, row ``a * p + b``.

    Returns
    -------
    x : Tensor (p^2, 2p)
        ``[one_hot(a), one_hot(b)]``.
    y : Tensor (p^2, p)
        ``one_hot((a + b) mod p)``.
    """
    p = check_prime("p", p)
    a, b = torch.div(torch.arange(p * p), p, rounding_mode="floor"), torch.arange(p * p) % p
    x = torch.cat([F.one_hot(a, p), F.one_hot(b, p)], dim=1).to(dtype)
    y = F.one_hot((a + b) % p, p).to(dtype)
    return x, y


def train_test_split(n: int, train_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of ``range(n)``: ``int(train_fraction * n)`` training indices.

    Returns the sorted train and test index tensors (int64).
    """
    n = check_int("n", n, minimum=2)
    train_fraction = check_real("train_fraction", train_fraction, low=0.0, high=1.0,
                                low_inclusive=False, high_inclusive=False)
    n_train = int(train_fraction * n)
    if not 1 <= n_train < n:
        raise ValueError(f"`train_fraction` {train_fraction} leaves {n_train} of {n} pairs for "
                         "training; it must leave at least one pair in each split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:n_train].sort().values, perm[n_train:].sort().values


def check_training_fields(params: Any) -> None:
    """Validate, and normalize in place, the training fields every modular chapter shares:
    ``p`` (odd prime), ``width``, ``train_fraction`` in (0, 1), ``lr`` > 0, ``weight_decay`` >= 0,
    ``epochs`` >= 1, and ``seeds`` (a list of non-negative integers) where present."""
    fields = {
        "p": check_prime("p", params.p),
        "width": check_int("width", params.width, minimum=1),
        "train_fraction": check_real("train_fraction", params.train_fraction, low=0.0, high=1.0,
                                     low_inclusive=False, high_inclusive=False),
        "lr": check_real("lr", params.lr, low=0.0, low_inclusive=False),
        "weight_decay": check_real("weight_decay", params.weight_decay, low=0.0),
        "epochs": check_int("epochs", params.epochs, minimum=1),
    }
    if hasattr(params, "seeds"):
        fields["seeds"] = check_int_list("seeds", params.seeds, minimum=0)
    for name, value in fields.items():
        object.__setattr__(params, name, value)


@dataclass(frozen=True)
class ModularSetup:
    """Everything that determines a trained run except the seed (validated on construction).

    Defaults are the paper's (from the author's released code): p = 29, width 512, 70% of the
    pairs for training, AdamW with lr 0.05 and weight decay 0.01, 500 full-batch epochs.
    """

    p: int = 29
    width: int = 512
    train_fraction: float = 0.7
    lr: float = 0.05
    weight_decay: float = 0.01
    epochs: int = 500
    checkpoint_every: int = 10

    def __post_init__(self):
        check_training_fields(self)
        object.__setattr__(self, "checkpoint_every",
                           check_int("checkpoint_every", self.checkpoint_every, minimum=1))

    @classmethod
    def from_params(cls, params: Any, **overrides) -> ModularSetup:
        """Build from any object (e.g. a chapter's parameter dataclass) with these attribute
        names; attributes it lacks take the defaults (``checkpoint_every`` stays 10, so all
        chapters share one cache entry)."""
        if isinstance(params, cls) and not overrides:
            return params
        names = [f for f in cls.__dataclass_fields__ if f != "checkpoint_every"]
        values = {k: getattr(params, k) for k in names if hasattr(params, k)}
        return cls(**(values | overrides))

    def checkpoint_epochs(self) -> list[int]:
        """``0, checkpoint_every, 2 checkpoint_every, ...`` and the last epoch."""
        return sorted(set(range(0, self.epochs + 1, self.checkpoint_every)) | {self.epochs})


@dataclass
class ModularTraining(ChapterParams):
    """The training settings that the modular chapters (modular addition, grokking, Laplacian
    rotation) share, declared once: their parameter dataclasses extend it, so equal settings
    mean one cached run per seed (:func:`train_modular`). Defaults as :class:`ModularSetup`."""

    p: int = 29
    width: int = 512
    train_fraction: float = 0.7
    lr: float = 0.05
    weight_decay: float = 0.01
    epochs: int = 500

    variations: ClassVar[dict[str, list]] = {
        "p": [23], "width": [64], "train_fraction": [0.5], "lr": [0.02], "weight_decay": [0.0],
        "epochs": [100],
    }

    def __post_init__(self):
        check_training_fields(self)

    @property
    def setup(self) -> ModularSetup:
        """The :class:`ModularSetup` of these settings (checkpoints every 10 epochs)."""
        return ModularSetup.from_params(self)

    def resolve_top_k(self, needed: int, why: str, default: int = 200) -> None:
        """Derive or check the field ``top_k`` (eigenpairs per N x N kernel, N = p^2): derived as
        ``min(p^2, max(default, needed))``; an explicit value must lie in
        ``[min(needed, p^2), p^2]``, else an error naming ``top_k`` and ``p`` (``why`` says
        what the ``needed`` eigenvectors are)."""
        n = self.p**2
        self.derive("top_k", lambda: min(n, max(default, needed)))
        low = min(needed, n)
        top_k = check_int("top_k", self.top_k, minimum=None)
        if not low <= top_k <= n:
            raise ValueError(f"`top_k` must be in [{low}, {n}] for `p`={self.p} ({why}; at most p^2), "
                             f"got {top_k}")
        self.top_k = top_k


@dataclass
class ModularRun:
    """A trained run: its setup, seed, split, history and checkpoints (what the cache holds).

    Attributes
    ----------
    history : dict of lists
        ``epoch``, ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc`` after every epoch
        (epoch 0 is the initialization; losses are the MSE, accuracies in [0, 1]).
    checkpoints : dict epoch -> state_dict
        At :meth:`ModularSetup.checkpoint_epochs`.
    """

    setup: ModularSetup
    seed: int
    train_idx: torch.Tensor
    test_idx: torch.Tensor
    history: dict[str, list[float]] = field(default_factory=dict)
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    final_state: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def inputs(self) -> torch.Tensor:
        """All p^2 inputs (p^2, 2p), row ``a * p + b``."""
        return modular_data(self.setup.p)[0]

    @property
    def targets(self) -> torch.Tensor:
        """All p^2 one-hot targets (p^2, p)."""
        return modular_data(self.setup.p)[1]

    def model_at(self, epoch: int | None = None) -> ModularMLP:
        """A fresh :class:`ModularMLP` (eval mode) with the weights after ``epoch`` epochs
        (``None``: the end of training; 0: the initialization)."""
        if epoch is not None and epoch not in self.checkpoints:
            raise ValueError(f"`epoch` {epoch} has no checkpoint; available: {sorted(self.checkpoints)}")
        model = ModularMLP(self.setup.p, self.setup.width)
        model.load_state_dict(self.final_state if epoch is None else self.checkpoints[epoch])
        return model.eval()

    def to_dict(self) -> dict:
        return {"setup": asdict(self.setup), "seed": self.seed, "train_idx": self.train_idx,
                "test_idx": self.test_idx, "history": self.history, "checkpoints": self.checkpoints,
                "final_state": self.final_state}

    @classmethod
    def from_dict(cls, d: dict) -> ModularRun:
        return cls(ModularSetup(**d["setup"]), d["seed"], d["train_idx"], d["test_idx"],
                   d["history"], d["checkpoints"], d["final_state"])


def _mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, target)


def _metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    out = model(x)
    return {"loss": float(_mse(out, y)), "acc": accuracy(out, y)}


def _train_fresh(setup: ModularSetup, seed: int, progress: bool) -> dict:
    x, y = modular_data(setup.p)
    train_idx, test_idx = train_test_split(setup.p**2, setup.train_fraction, seed)
    model = ModularMLP(setup.p, setup.width, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=setup.lr, weight_decay=setup.weight_decay)
    run = train(model, _mse, (x[train_idx], y[train_idx]), optimizer=opt, epochs=setup.epochs,
                test_data=(x[test_idx], y[test_idx]), metrics=_metrics,
                checkpoint_epochs=setup.checkpoint_epochs(), seed=seed, progress=progress,
                desc=f"modular p={setup.p} seed={seed}")
    return ModularRun(setup, seed, train_idx, test_idx, run.history, run.checkpoints,
                      run.final_state).to_dict()


def train_modular(params: Any = None, seed: int = 0, *, progress: bool = False,
                  use_cache: bool = True) -> ModularRun:
    """Train (or load from the cache) the modular-addition MLP for one seed.

    Parameters
    ----------
    params : ModularSetup or any object with its attribute names, optional
        The setup (default: the paper's). Chapter parameter objects are accepted as they are;
        ``checkpoint_every`` is always 10 unless a ``ModularSetup`` says otherwise.
    seed : int
        Seeds the initialization and the train/test split.
    progress : bool
        Show a progress bar while training.
    use_cache : bool
        Set False to train without reading or writing the cache.

    Returns
    -------
    ModularRun, identical for identical (setup, seed, CODE_VERSION).
    """
    setup = ModularSetup() if params is None else ModularSetup.from_params(params)
    seed = check_int("seed", seed, minimum=0)
    key = asdict(setup) | {"seed": seed, "code_version": CODE_VERSION}
    if not use_cache:
        return ModularRun.from_dict(_train_fresh(setup, seed, progress))
    return ModularRun.from_dict(cached("modular_mlp", key, lambda: _train_fresh(setup, seed, progress)))

