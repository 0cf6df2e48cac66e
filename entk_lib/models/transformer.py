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
minibatches each epoch the way ``torch.utils.data.DataLoader(shuffle=True)`` does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..params import check_int, check_prime, check_real

__all__ = [
    "N_CTX",
    "ModularTransformer",
    "TransformerRun",
    "modular_tokens",
    "train_test_split",
    "train_transformer",
]

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
# Training
# --------------------------------------------------------------------------------------------


@dataclass
class TransformerRun:
    """What :func:`train_transformer` returns.

    Attributes
    ----------
    history : dict of lists
        ``epoch``, ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc`` at every evaluated
        epoch (epoch 0 is the initialization; epoch e is after e passes over the training set).
    checkpoints : dict epoch -> state_dict
    final_state : state_dict after the last epoch.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    final_state: dict[str, torch.Tensor] = field(default_factory=dict)


def _evaluate(model, tokens, labels, train_idx, test_idx) -> dict[str, float]:
    with torch.no_grad():
        logits = model(tokens)
        losses = F.cross_entropy(logits, labels, reduction="none")
        correct = (logits.argmax(1) == labels).float()
    out = {}
    for split, idx in (("train", train_idx), ("test", test_idx)):
        out[f"{split}_loss"] = float(losses[idx].mean())
        out[f"{split}_acc"] = float(correct[idx].mean())
    return out


def train_transformer(
    model: ModularTransformer,
    *,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    lr: float,
    weight_decay: float,
    batch_size: int,
    epochs: int,
    generator: torch.Generator,
    eval_every: int = 1,
    checkpoint_epochs=(),
    progress: bool = True,
    desc: str = "training",
) -> TransformerRun:
    """AdamW on the cross-entropy of the training pairs, shuffled minibatches, in place.

    Each epoch draws a fresh permutation of the training set from a generator seeded by one
    64-bit draw from ``generator`` (what ``DataLoader(shuffle=True)`` does with the global
    generator). Metrics on all p^2 pairs are recorded every ``eval_every`` epochs and at epochs
    0 and ``epochs``; state dicts are kept at ``checkpoint_epochs``.
    """
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    eval_every = check_int("eval_every", eval_every, minimum=1)
    wanted = {check_int("checkpoint_epochs", e, minimum=0, maximum=epochs) for e in checkpoint_epochs}
    tokens, labels = modular_tokens(model.p)
    x_train, y_train = tokens[train_idx], labels[train_idx]
    opt = _adamw(model, lr, weight_decay)
    run = TransformerRun(history={"epoch": []})

    def record(epoch: int) -> None:
        model.eval()
        run.history["epoch"].append(epoch)
        for key, value in _evaluate(model, tokens, labels, train_idx, test_idx).items():
            run.history.setdefault(key, []).append(value)
        if epoch in wanted:
            run.checkpoints[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.train()

    record(0)
    n = x_train.shape[0]
    for epoch in tqdm(range(1, epochs + 1), desc=desc, disable=not progress, mininterval=1.0):
        seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
        if epoch % eval_every == 0 or epoch == epochs or epoch in wanted:
            record(epoch)
    model.eval()
    run.final_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return run


def _adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with PyTorch's defaults (betas 0.9/0.999, eps 1e-8), fused kernel where available."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # older torch: no fused CPU kernel
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def check_modulus(p: int) -> int:
    """``p`` must be an odd prime (the Fourier families assume it)."""
    return check_prime("p", p)
