"""Toy Models of Superposition (TMS): the model, its data, the importance-weighted loss, training
(cached), and the closed-form eNTK of the paper's Appendix B.

The model is Elhage et al.'s ReLU-output toy model ``x' = ReLU(Wᵀ W x + b)`` with ``W`` of shape
(m, n): n features squeezed through m <= n hidden dimensions and read back out. The setup follows
the released code of the eNTK paper: a fixed data set of ``n_samples`` points whose features are 0
with probability ``S`` (the sparsity) and Uniform[0, 1] otherwise, each sample scaled to unit L2
norm; the loss is the importance-weighted squared error with ``I_i = base**i``; Adam, full batch.

Training
    :func:`train_tms` trains one model for a :class:`TMSSetup` (everything but the seed) and a
    seed, and caches the run on disk (:func:`entk_lib.cache.cached`) under a hash of the setup,
    the seed and :data:`CODE_VERSION`::

        from entk_lib.models.tms import TMSSetup, train_tms
        run = train_tms(TMSSetup(n_hidden=10, sparsity=0.9), seed=0)   # cached after the first call
        model, data = run.model(), run.data                             # TMS (eval), (N, n)

Closed form (Appendix B). With ``h_a = W x_a`` (m,), ``z_a = Wᵀ h_a + b`` (n,) and the ReLU gate
``g_ai = 1[z_ai > 0]``, output i at sample a has derivatives

    d x'_ai / d W_kj = g_ai (δ_ij h_ak + W_ki x_aj),      d x'_ai / d b_j = g_ai δ_ij,

so the eNTK ``K[(i, a), (j, b)] = Σ_p J[i, a, p] J[j, b, p]`` is

    g_ai g_bj [ δ_ij (h_a·h_b + 1) + x_bi (Wᵀ h_a)_j + x_aj (Wᵀ h_b)_i + (WᵀW)_ij (x_a·x_b) ].

:func:`closed_form_jacobian` and :func:`closed_form_kernel` write both with ``einsum``; the unit
tests check them against :func:`entk_lib.entk_jacobian` / :func:`entk_lib.entk`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..cache import cached
from ..linalg import as_numpy
from ..params import check_int, check_real
from ..training import TrainingRun, single_thread, train

__all__ = [
    "CODE_VERSION",
    "TMS",
    "TMSRun",
    "TMSSetup",
    "check_training_fields",
    "closed_form_jacobian",
    "closed_form_kernel",
    "importance",
    "represented_features",
    "tms_data",
    "tms_loss",
    "train_tms",
]

#: Bump when the data, model or training code changes what a cached run contains
#: (v2: one :class:`TMSRun` per entry; the trained weights are those of v1).
CODE_VERSION = "tms-v2"


class TMS(nn.Module):
    """``x' = ReLU(Wᵀ W x + b)``: n features through an m-dimensional bottleneck.

    Parameters
    ----------
    n_features : int
        n, the input and output dimension.
    n_hidden : int
        m, the bottleneck, ``1 <= m <= n``.

    ``W`` (m, n) is Xavier-normal initialized (std ``sqrt(2 / (m + n))``, drawn from torch's global
    generator: seed it with ``torch.manual_seed``) and ``b`` (n,) starts at zero. Inputs (N, n),
    outputs (N, n).
    """

    def __init__(self, n_features: int, n_hidden: int):
        super().__init__()
        n_features = check_int("n_features", n_features, minimum=1)
        n_hidden = check_int("n_hidden", n_hidden, minimum=1, maximum=n_features)
        self.W = nn.Parameter(torch.empty(n_hidden, n_features))
        self.b = nn.Parameter(torch.zeros(n_features))
        nn.init.xavier_normal_(self.W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x @ self.W.T) @ self.W + self.b)

    def extra_repr(self) -> str:
        m, n = self.W.shape
        return f"n_features={n}, n_hidden={m}"


def importance(n_features: int, base: float = 0.8, dtype=torch.float32) -> torch.Tensor:
    """Feature importances ``I_i = base**i``, i = 0 .. n-1: (n,)."""
    n_features = check_int("n_features", n_features, minimum=1)
    base = check_real("importance_base", base, low=0.0, high=1.0, low_inclusive=False)
    return base ** torch.arange(n_features, dtype=dtype)


def tms_data(n_samples: int, n_features: int, sparsity: float, *, seed: int = 0,
             dtype=torch.float32) -> torch.Tensor:
    """The fixed TMS data set: (n_samples, n_features), rows of unit L2 norm.

    Each feature is 0 with probability ``sparsity`` and Uniform[0, 1] otherwise; an all-zero
    sample is redrawn; then every sample is divided by its L2 norm. Drawn from
    ``numpy.random.default_rng(seed)``.
    """
    n_samples = check_int("n_samples", n_samples, minimum=1)
    n_features = check_int("n_features", n_features, minimum=1)
    sparsity = check_real("sparsity", sparsity, low=0.0, high=1.0, high_inclusive=False)
    rng = np.random.default_rng(seed)
    x = _draw(rng, n_samples, n_features, sparsity)
    zero = ~x.any(axis=1)
    while zero.any():
        x[zero] = _draw(rng, int(zero.sum()), n_features, sparsity)
        zero = ~x.any(axis=1)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return torch.as_tensor(x, dtype=dtype)


def _draw(rng: np.random.Generator, rows: int, n: int, sparsity: float) -> np.ndarray:
    values = rng.uniform(0.0, 1.0, (rows, n))
    return np.where(rng.uniform(0.0, 1.0, (rows, n)) < sparsity, 0.0, values)


def tms_loss(output: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over samples and features of ``I_i (x_i - x'_i)²``; ``weights`` (n,) are the ``I_i``."""
    return ((target - output) ** 2 * weights).mean()


def _fit(model: TMS, data: torch.Tensor, weights: torch.Tensor, *, epochs: int, lr: float,
         progress: bool = False) -> TrainingRun:
    """Adam at learning rate ``lr``, ``epochs`` full-batch steps, autoencoding ``data`` (N, n).

    Runs single-threaded (restoring the thread count afterwards), so that the trained weights do
    not depend on how many cores the machine has.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with single_thread():  # tiny matrices: one thread is as fast, and bitwise reproducible
        return train(model, lambda out, y: tms_loss(out, y, weights), (data, data), optimizer=opt,
                     epochs=epochs, eval_every=max(1, epochs), progress=progress, desc="TMS")


def check_training_fields(params: Any) -> None:
    """Validate, and normalize in place, the fields that :class:`TMSSetup` shares with the
    chapter's parameters: ``n_features`` >= 2, ``importance_base`` in (0, 1], ``n_samples`` >= 2,
    ``epochs`` >= 0 and ``lr`` > 0."""
    fields = {
        "n_features": check_int("n_features", params.n_features, minimum=2),
        "importance_base": check_real("importance_base", params.importance_base, low=0.0, high=1.0,
                                      low_inclusive=False),
        "n_samples": check_int("n_samples", params.n_samples, minimum=2),
        "epochs": check_int("epochs", params.epochs, minimum=0),
        "lr": check_real("lr", params.lr, low=0.0, low_inclusive=False),
    }
    for name, value in fields.items():
        object.__setattr__(params, name, value)


@dataclass(frozen=True)
class TMSSetup:
    """Everything that determines a trained TMS model except the seed (validated on construction).

    Defaults are the first model of the paper's Fig. 1 (its dense ``m = 10`` model): n = 50
    features of importance ``0.8**i``, ``m = 10`` hidden units, sparsity 0.3, N = 500 samples,
    5000 full-batch Adam steps at learning rate 1e-3.
    """

    n_features: int = 50
    n_hidden: int = 10
    sparsity: float = 0.3
    n_samples: int = 500
    importance_base: float = 0.8
    epochs: int = 5000
    lr: float = 1e-3

    def __post_init__(self):
        check_training_fields(self)
        object.__setattr__(self, "n_hidden", check_int("n_hidden", self.n_hidden, minimum=1,
                                                        maximum=self.n_features))
        object.__setattr__(self, "sparsity", check_real("sparsity", self.sparsity, low=0.0, high=1.0,
                                                         high_inclusive=False))

    @property
    def weights(self) -> torch.Tensor:
        """The importances ``I_i = importance_base**i``: (n,)."""
        return importance(self.n_features, self.importance_base)


@dataclass
class TMSRun:
    """A trained TMS model: its setup, seed, loss history and final weights (what the cache holds).

    Attributes
    ----------
    history : dict of lists
        ``epoch`` and ``train_loss`` at the initialization and at the end of training.
    final_state : dict
        The ``state_dict`` after training (``W`` (m, n), ``b`` (n,)).
    """

    setup: TMSSetup
    seed: int
    history: dict[str, list[float]] = field(default_factory=dict)
    final_state: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def data(self) -> torch.Tensor:
        """The training set (N, n) (regenerated from the seed: :func:`tms_data`)."""
        s = self.setup
        return tms_data(s.n_samples, s.n_features, s.sparsity, seed=self.seed)

    @property
    def final_loss(self) -> float:
        """The importance-weighted loss after training."""
        return self.history["train_loss"][-1]

    def model(self) -> TMS:
        """A fresh :class:`TMS` (eval mode) with the trained weights."""
        model = TMS(self.setup.n_features, self.setup.n_hidden)
        model.load_state_dict(self.final_state)
        return model.eval()

    def to_dict(self) -> dict:
        return {"setup": asdict(self.setup), "seed": self.seed, "history": self.history,
                "final_state": self.final_state}

    @classmethod
    def from_dict(cls, d: dict) -> TMSRun:
        return cls(TMSSetup(**d["setup"]), d["seed"], d["history"], d["final_state"])


def _train_fresh(setup: TMSSetup, seed: int, progress: bool) -> dict:
    data = tms_data(setup.n_samples, setup.n_features, setup.sparsity, seed=seed)
    torch.manual_seed(seed)  # the initialization draws from torch's global generator
    model = TMS(setup.n_features, setup.n_hidden)
    run = _fit(model, data, setup.weights, epochs=setup.epochs, lr=setup.lr, progress=progress)
    return TMSRun(setup, seed, run.history, run.final_state).to_dict()


def train_tms(setup: TMSSetup | None = None, seed: int = 0, *, progress: bool = False,
              use_cache: bool = True) -> TMSRun:
    """Train (or load from the cache) one TMS model.

    Parameters
    ----------
    setup : TMSSetup, optional
        Everything but the seed (default: the paper's dense ``m = 10`` model).
    seed : int
        Draws the data set (:func:`tms_data`) and, through ``torch.manual_seed``, the
        initialization.
    progress : bool
        Show a progress bar while training.
    use_cache : bool
        Set False to train without reading or writing the cache.

    Returns
    -------
    TMSRun, identical for identical (setup, seed, CODE_VERSION).
    """
    setup = TMSSetup() if setup is None else setup
    if not isinstance(setup, TMSSetup):
        raise TypeError(f"`setup` must be a TMSSetup, got {type(setup).__name__}")
    seed = check_int("seed", seed, minimum=0)
    if not use_cache:
        return TMSRun.from_dict(_train_fresh(setup, seed, progress))
    key = asdict(setup) | {"seed": seed, "code_version": CODE_VERSION}
    return TMSRun.from_dict(cached("tms", key, lambda: _train_fresh(setup, seed, progress)))


def represented_features(W, threshold: float = 0.75) -> np.ndarray:
    """Indices i with ``(WᵀW)_ii = ||W_{:, i}||² >= threshold`` (the represented features)."""
    return np.flatnonzero((as_numpy(W) ** 2).sum(0) >= threshold)


def _closed_form_parts(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor, output_weights=None):
    h = torch.einsum("kj,aj->ak", W, x)                       # (N, m) hidden
    wth = torch.einsum("ki,ak->ai", W, h)                     # (N, n) Wᵀ h = Wᵀ W x
    gate = (wth + b > 0).to(x.dtype)                          # (N, n) ReLU'(z)
    if output_weights is not None:
        gate = gate * torch.as_tensor(output_weights, dtype=x.dtype)
    return h, wth, gate


def closed_form_jacobian(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor,
                         output_weights=None) -> torch.Tensor:
    """The Jacobian (n, N, m*n + n) of the TMS outputs w.r.t. (W flattened row-major, b).

    ``J[i, a, (k, j)] = g_ai (δ_ij h_ak + W_ki x_aj)``, ``J[i, a, m*n + j] = g_ai δ_ij``, with
    ``g`` the ReLU gate times ``output_weights[i]`` (same order as ``model.named_parameters()``).
    """
    h, _, gate = _closed_form_parts(W, b, x, output_weights)
    eye = torch.eye(W.shape[1], dtype=x.dtype)
    d_w = torch.einsum("ij,ak->iakj", eye, h) + torch.einsum("ki,aj->iakj", W, x)
    d_w = torch.einsum("ai,iakj->iakj", gate, d_w).reshape(W.shape[1], x.shape[0], -1)
    d_b = torch.einsum("ai,ij->iaj", gate, eye)
    return torch.cat([d_w, d_b], dim=2)


def closed_form_kernel(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor,
                       output_weights=None) -> torch.Tensor:
    """The flattened eNTK (n*N, n*N), class-major rows ``i*N + a``, from the closed form.

    ``K = g_ai g_bj [δ_ij (h_a·h_b + 1) + x_bi (WᵀWx_a)_j + x_aj (WᵀWx_b)_i + (WᵀW)_ij x_a·x_b]``.
    """
    h, wth, gate = _closed_form_parts(W, b, x, output_weights)
    n, N = W.shape[1], x.shape[0]
    eye = torch.eye(n, dtype=x.dtype)
    core = torch.einsum("ij,ab->iajb", eye, h @ h.T + 1)
    core = core + torch.einsum("bi,aj->iajb", x, wth) + torch.einsum("aj,bi->iajb", x, wth)
    core = core + torch.einsum("ij,ab->iajb", W.T @ W, x @ x.T)
    kernel = torch.einsum("ai,iajb,bj->iajb", gate, core, gate)
    return kernel.reshape(n * N, n * N)
