"""A 1-layer Transformer on modular addition (the paper's Section 4, after Nanda et al. 2023).

Data: every pair ``(a, b)`` with ``a, b in 0 .. p-1`` becomes the token sequence ``(a, b, =)``
where ``=`` is token ``p`` (vocabulary ``p + 1``); the label is ``(a + b) mod p``. Rows follow
the library's input order, ``index = a * p + b`` (:func:`entk_lib.features.modular_pairs`).

Model: learned token and position embeddings, one causal attention layer (``n_heads`` heads of
width ``d_model // n_heads``), a ReLU MLP, an unembedding; no LayerNorm, no biases; logits are
read at the last position. Every weight is an ``nn.Embedding`` or a bias-free ``nn.Linear``, so
:func:`entk_lib.entk` computes every per-tensor kernel with its structured (fast) backend.

The training protocol follows the author's released code (``jylin04/mi-ntk``,
``modular_arithmetic_transformer_v4.ipynb``): the train/test split shuffles the pairs with
Python's ``random.Random(split_seed)``; the weights are drawn in the order and with the scales
of that code from a generator seeded with the model seed, which then also shuffles the
minibatches each epoch the way ``torch.utils.data.RandomSampler`` does (a fresh generator per
epoch, seeded by one draw: :func:`entk_lib.training.dataloader_order`). AdamW on the
cross-entropy, through the shared loop :func:`entk_lib.training.train`, on one thread.
:func:`train_transformer` caches the run on disk under a hash of its :class:`TransformerSetup`,
the seed and :data:`CODE_VERSION`::

    from entk_lib.models.transformer import TransformerSetup, train_transformer
    run = train_transformer(TransformerSetup(p=29, epochs=4000), seed=2)  # cached after the first call
    model = run.model_at(1000)                                           # the network after 1000 epochs
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..cache import cached
from ..params import check_int, check_real
from ..training import dataloader_order, load_average, single_thread, train

__all__ = [
    "CODE_VERSION",
    "N_CTX",
    "ModularTransformer",
    "TransformerRun",
    "TransformerSetup",
    "check_checkpoint_every",
    "modular_tokens",
    "train_test_split",
    "train_transformer",
]

#: Bump when the data, model or training code changes what a cached run contains.
CODE_VERSION = "transformer-train-v3"

#: Sequence length: the tokens ``a``, ``b`` and ``=``.
N_CTX = 3


def modular_tokens(p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All p^2 inputs as token ids and their labels, in the library's order (index = a*p + b).

    Returns
    -------
    tokens : LongTensor (p^2, 3)
        Rows ``(a, b, p)``; token ``p`` is ``=``.
    labels : LongTensor (p^2,)
        ``(a + b) mod p``.
    """
    p = check_int("p", p, minimum=2)
    a, b = np.divmod(np.arange(p * p), p)
    tokens = torch.as_tensor(np.stack([a, b, np.full_like(a, p)], axis=1), dtype=torch.long)
    labels = torch.as_tensor((a + b) % p, dtype=torch.long)
    return tokens, labels


def train_test_split(p: int, train_fraction: float, split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into :func:`modular_tokens`) of the training and test pairs.

    The pairs in order ``index = a*p + b`` are shuffled with ``random.Random(split_seed)`` and
    the first ``int(train_fraction * p^2)`` are the training set, as in the author's code.

    Returns
    -------
    train_idx, test_idx : int arrays, disjoint, together ``0 .. p^2 - 1``.
    """
    p = check_int("p", p, minimum=2)
    train_fraction = check_real("train_fraction", train_fraction, low=0.0, high=1.0,
                                low_inclusive=False, high_inclusive=False)
    order = list(range(p * p))
    random.Random(check_int("split_seed", split_seed, minimum=0)).shuffle(order)
    n_train = int(train_fraction * p * p)
    if n_train < 1 or n_train >= p * p:
        raise ValueError(f"`train_fraction` {train_fraction} leaves an empty train or test set for p={p}")
    return np.array(order[:n_train]), np.array(order[n_train:])


class Attention(nn.Module):
    """Multi-head attention read at the last position (all earlier positions are visible).

    The causal mask only matters for queries at earlier positions, whose outputs never reach the
    logits of a 1-layer model; so only the last position's query is computed.
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.W_Q = nn.Linear(d_model, d_model, bias=False)
        self.W_K = nn.Linear(d_model, d_model, bias=False)
        self.W_V = nn.Linear(d_model, d_model, bias=False)
        self.W_O = nn.Linear(d_model, d_model, bias=False)

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        """(N, T, d_model) -> (N, d_model): the attention output at position T-1."""
        n, t, _ = resid.shape
        q = self.W_Q(resid[:, -1]).view(n, self.n_heads, 1, self.d_head)
        k = self.W_K(resid).view(n, t, self.n_heads, self.d_head).transpose(1, 2)
        v = self.W_V(resid).view(n, t, self.n_heads, self.d_head).transpose(1, 2)
        pattern = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d_head), dim=-1)
        z = (pattern @ v).reshape(n, self.n_heads * self.d_head)
        return self.W_O(z)


class MLP(nn.Module):
    """``W_out relu(W_in x)``, bias-free."""

    def __init__(self, d_model: int, d_mlp: int):
        super().__init__()
        self.W_in = nn.Linear(d_model, d_mlp, bias=False)
        self.W_out = nn.Linear(d_mlp, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.W_out(F.relu(self.W_in(x)))


class ModularTransformer(nn.Module):
    """1-layer, attention + MLP, no LayerNorm, no biases; maps tokens (N, 3) to logits (N, p).

    Parameters
    ----------
    p : int
        Modulus (odd prime); the vocabulary is ``p + 1`` (token ``p`` is ``=``), the outputs ``p``.
    d_model, n_heads, d_mlp : int
        Residual width, number of heads (``d_model`` must be divisible by it), MLP width.
    generator : torch.Generator, optional
        Source of the initial weights (see :meth:`reset_parameters`).

    Parameter tensors (the per-tensor eNTKs of the chapter): ``embed.weight``,
    ``pos_embed.weight``, ``attn.W_Q/W_K/W_V/W_O.weight``, ``mlp.W_in/W_out.weight``,
    ``unembed.weight``.
    """

    def __init__(self, p: int = 29, d_model: int = 64, n_heads: int = 4, d_mlp: int = 256, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.p = check_int("p", p, minimum=2)
        d_model = check_int("d_model", d_model, minimum=1)
        self.n_heads = check_int("n_heads", n_heads, minimum=1, maximum=d_model)
        if d_model % n_heads:
            raise ValueError(f"`n_heads` must divide `d_model` ({d_model}), got {n_heads}")
        d_mlp = check_int("d_mlp", d_mlp, minimum=1)
        self.embed = nn.Embedding(p + 1, d_model)
        self.pos_embed = nn.Embedding(N_CTX, d_model)
        self.attn = Attention(d_model, n_heads)
        self.mlp = MLP(d_model, d_mlp)
        self.unembed = nn.Linear(d_model, p, bias=False)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Gaussian weights in the order and with the scales of the author's code.

        ``W_E``, ``W_pos``, ``W_Q``, ``W_K``, ``W_V``, ``W_O`` ~ N(0, 1/d_model); ``W_in`` ~
        N(0, 1/d_mlp); ``W_out`` ~ N(0, 1/d_model); ``W_U`` ~ N(0, 1/(p+1)). (The reference
        stores ``W_in``, ``W_out``, ``W_U`` transposed; we draw them in that layout.)
        """
        d, m, v = self.embed.embedding_dim, self.mlp.W_in.out_features, self.p + 1

        def draw(*shape, scale):
            return torch.randn(*shape, generator=generator) / math.sqrt(scale)

        self.embed.weight.copy_(draw(v, d, scale=d))
        self.pos_embed.weight.copy_(draw(N_CTX, d, scale=d))
        for lin in (self.attn.W_Q, self.attn.W_K, self.attn.W_V):
            lin.weight.copy_(draw(self.n_heads, d // self.n_heads, d, scale=d).reshape(d, d))
        self.attn.W_O.weight.copy_(draw(d, d, scale=d))
        self.mlp.W_in.weight.copy_(draw(d, m, scale=m).T)
        self.mlp.W_out.weight.copy_(draw(m, d, scale=d).T)
        self.unembed.weight.copy_(draw(d, v, scale=v).T[: self.p])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (N, 3) -> logits (N, p) at the last position."""
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        resid = self.embed(tokens) + self.pos_embed(positions)  # (N, 3, d_model)
        last = resid[:, -1] + self.attn(resid)
        last = last + self.mlp(last)
        return self.unembed(last)

    def forward_all_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Reference forward with a causal mask over every position: logits (N, 3, p).

        Its last position equals :meth:`forward` (a test checks it); it is not used otherwise.
        """
        n, t = tokens.shape
        attn = self.attn
        positions = torch.arange(t, device=tokens.device).expand_as(tokens)
        resid = self.embed(tokens) + self.pos_embed(positions)

        def heads(x):
            return x.view(n, t, attn.n_heads, attn.d_head).transpose(1, 2)

        q, k, v = heads(attn.W_Q(resid)), heads(attn.W_K(resid)), heads(attn.W_V(resid))
        scores = q @ k.transpose(-1, -2) / math.sqrt(attn.d_head)
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=tokens.device), diagonal=1)
        pattern = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        z = (pattern @ v).transpose(1, 2).reshape(n, t, -1)
        resid = resid + attn.W_O(z)
        resid = resid + self.mlp(resid)
        return self.unembed(resid)


# --------------------------------------------------------------------------------------------
# Training (cached)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerSetup:
    """Everything that determines a trained run except the model seed (validated on construction).

    Defaults are the paper's (the author's released code): p = 29, d_model 64, 4 heads, d_mlp
    256, half the pairs for training (split seed 0), AdamW with lr 3e-4 and weight decay 1,
    minibatches of 64, 4000 epochs; metrics and parameters kept every ``checkpoint_every`` epochs.
    """

    p: int = 29
    d_model: int = 64
    n_heads: int = 4
    d_mlp: int = 256
    train_fraction: float = 0.5
    lr: float = 3e-4
    weight_decay: float = 1.0
    batch_size: int = 64
    epochs: int = 4000
    checkpoint_every: int = 20
    split_seed: int = 0

    def __post_init__(self):
        values = {
            "p": check_int("p", self.p, minimum=2),
            "d_model": check_int("d_model", self.d_model, minimum=1),
            "n_heads": check_int("n_heads", self.n_heads, minimum=1),
            "d_mlp": check_int("d_mlp", self.d_mlp, minimum=1),
            "train_fraction": check_real("train_fraction", self.train_fraction, low=0.0, high=1.0,
                                         low_inclusive=False, high_inclusive=False),
            "lr": check_real("lr", self.lr, low=0.0, low_inclusive=False),
            "weight_decay": check_real("weight_decay", self.weight_decay, low=0.0),
            "batch_size": check_int("batch_size", self.batch_size, minimum=1),
            "epochs": check_int("epochs", self.epochs, minimum=1),
            "split_seed": check_int("split_seed", self.split_seed, minimum=0),
        }
        if values["d_model"] % values["n_heads"]:
            raise ValueError(f"`n_heads` must divide `d_model` ({values['d_model']}), got {self.n_heads}")
        values["checkpoint_every"] = check_checkpoint_every(self.checkpoint_every, values["epochs"])
        for name, value in values.items():
            object.__setattr__(self, name, value)
        train_test_split(self.p, self.train_fraction, self.split_seed)  # non-empty splits

    @classmethod
    def from_params(cls, params: Any) -> TransformerSetup:
        """Build from any object (e.g. the chapter's parameters) with these attribute names."""
        return params if isinstance(params, cls) else cls(
            **{k: getattr(params, k) for k in cls.__dataclass_fields__ if hasattr(params, k)})

    def checkpoint_epochs(self) -> list[int]:
        """Epochs ``0, checkpoint_every, 2 checkpoint_every, ...`` and the last epoch."""
        return sorted(set(range(0, self.epochs + 1, self.checkpoint_every)) | {self.epochs})


def check_checkpoint_every(checkpoint_every: Any, epochs: int) -> int:
    """``checkpoint_every`` as an int in ``[1, epochs]``, or an error naming both parameters."""
    value = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if value > epochs:
        raise ValueError(f"`checkpoint_every` must be at most `epochs` ({epochs}), got {value}; "
                         "leave it 'derived' to follow `epochs`")
    return value


@dataclass
class TransformerRun:
    """A trained run: its setup, seed, split, history, checkpoints and cost (what the cache holds).

    Attributes
    ----------
    history : dict of lists
        ``epoch``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc`` at
        :meth:`TransformerSetup.checkpoint_epochs` (epoch 0 is the initialization; epoch e is
        after e passes over the training set; losses are the cross-entropy, accuracies in [0, 1]).
    checkpoints : dict epoch -> state_dict
        At :meth:`TransformerSetup.checkpoint_epochs`.
    final_state : state_dict after the last epoch.
    cost : dict
        ``train_seconds`` and ``train_cpu_seconds`` (wall and CPU, when first computed),
        ``load`` (the load average around the run) and ``threads`` (always 1).
    """

    setup: TransformerSetup
    seed: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    history: dict[str, list[float]] = field(default_factory=dict)
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    final_state: dict[str, torch.Tensor] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)

    def model_at(self, epoch: int | None = None) -> ModularTransformer:
        """A fresh :class:`ModularTransformer` (eval mode) with the weights after ``epoch``
        epochs (``None``: the end of training; 0: the initialization)."""
        if epoch is not None and epoch not in self.checkpoints:
            raise ValueError(f"`epoch` {epoch} has no checkpoint; available: {sorted(self.checkpoints)}")
        s = self.setup
        model = ModularTransformer(s.p, s.d_model, s.n_heads, s.d_mlp)
        model.load_state_dict(self.final_state if epoch is None else self.checkpoints[epoch])
        return model.eval()

    def to_dict(self) -> dict:
        """Plain containers (what the cache stores): the setup as a dict, the rest as they are."""
        return {"setup": asdict(self.setup), "seed": self.seed, "train_idx": self.train_idx,
                "test_idx": self.test_idx, "history": self.history, "checkpoints": self.checkpoints,
                "final_state": self.final_state, "cost": self.cost}

    @classmethod
    def from_dict(cls, d: dict) -> TransformerRun:
        """The inverse of :meth:`to_dict`."""
        return cls(TransformerSetup(**d["setup"]), d["seed"], d["train_idx"], d["test_idx"],
                   d["history"], d["checkpoints"], d["final_state"], d["cost"])


def _evaluate(model, tokens, labels, train_idx, test_idx) -> dict[str, float]:
    """Loss and accuracy on the train and test pairs, from one forward pass over all p^2."""
    logits = model(tokens)
    losses = F.cross_entropy(logits, labels, reduction="none")
    correct = (logits.argmax(1) == labels).float()
    out = {}
    for split, idx in (("train", train_idx), ("test", test_idx)):
        out[f"{split}_loss"] = float(losses[idx].mean())
        out[f"{split}_acc"] = float(correct[idx].mean())
    return out


def _adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with PyTorch's defaults (betas 0.9/0.999, eps 1e-8), fused kernel where available."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # older torch: no fused CPU kernel
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def _train_fresh(setup: TransformerSetup, seed: int, progress: bool) -> dict:
    """Train one seed on one thread (the split, then the weights and every epoch's minibatch
    order from one generator seeded with ``seed``); the run as a dict, with its cost."""
    train_idx, test_idx = train_test_split(setup.p, setup.train_fraction, setup.split_seed)
    gen = torch.Generator().manual_seed(seed)
    model = ModularTransformer(setup.p, setup.d_model, setup.n_heads, setup.d_mlp, generator=gen)
    tokens, labels = modular_tokens(setup.p)
    with single_thread():
        start, cpu_start, load = time.perf_counter(), time.process_time(), load_average()
        run = train(model, F.cross_entropy, (tokens[train_idx], labels[train_idx]),
                    optimizer=_adamw(model, setup.lr, setup.weight_decay), epochs=setup.epochs,
                    evaluate=lambda m: _evaluate(m, tokens, labels, train_idx, test_idx),
                    batch_size=setup.batch_size, shuffle=dataloader_order(gen),
                    eval_every=setup.checkpoint_every, checkpoint_epochs=setup.checkpoint_epochs(),
                    progress=progress, desc=f"seed {seed}")
        cost = {"train_seconds": time.perf_counter() - start,
                "train_cpu_seconds": time.process_time() - cpu_start,
                "load": (load + load_average()) / 2, "threads": 1}
    return TransformerRun(setup, seed, train_idx, test_idx, run.history, run.checkpoints,
                          run.final_state, cost).to_dict()


def train_transformer(setup: Any = None, seed: int = 0, *, progress: bool = False,
                      use_cache: bool = True) -> TransformerRun:
    """Train (or load from the cache) the modular-addition Transformer for one seed.

    Parameters
    ----------
    setup : TransformerSetup or any object with its attribute names, optional
        The setup (default: the paper's); the chapter's parameters are accepted as they are.
    seed : int
        Seeds the initial weights and the minibatch order (the split has its own ``split_seed``).
    progress : bool
        Show a progress bar while training.
    use_cache : bool
        Set False to train without reading or writing the cache.

    Returns
    -------
    TransformerRun, identical for identical (setup, seed, CODE_VERSION) on one machine.
    """
    setup = TransformerSetup() if setup is None else TransformerSetup.from_params(setup)
    seed = check_int("seed", seed, minimum=0)
    if not use_cache:
        return TransformerRun.from_dict(_train_fresh(setup, seed, progress))
    key = asdict(setup) | {"seed": seed, "code_version": CODE_VERSION}
    run = cached("transformer_runs", key, lambda: _train_fresh(setup, seed, progress))
    return TransformerRun.from_dict(run)
