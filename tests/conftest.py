"""Shared fixtures: small float64 models of several kinds, and their inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

torch.set_default_dtype(torch.float32)


class TwoHeads(nn.Module):
    """Two input heads on the halves of the input, merged; one head has a non-Linear module."""

    def __init__(self):
        super().__init__()
        self.left = nn.Linear(3, 5)
        self.right = nn.Conv1d(1, 2, kernel_size=2)  # generic (vmap/jacrev) path
        self.gain = nn.Parameter(torch.randn(5))  # a raw parameter owned by the root module
        self.out = nn.Linear(5 + 2 * 2, 4)

    def forward(self, x):
        h1 = torch.tanh(self.left(x[:, :3])) * self.gain
        h2 = torch.relu(self.right(x[:, None, 3:])).flatten(1)
        return self.out(torch.cat([h1, h2], dim=1))


class TinySeq(nn.Module):
    """A sequence model: token + position embeddings, a Linear applied at every position,
    attention-like mixing, logits at the last position (structured path with T > 1)."""

    def __init__(self, vocab=7, length=3, d=6, c=5, padding_idx=None):
        super().__init__()
        self.tok = nn.Embedding(vocab, d, padding_idx=padding_idx)
        self.pos = nn.Embedding(length, d)
        self.mix = nn.Linear(d, d)
        self.unembed = nn.Linear(d, c, bias=False)
        self.register_buffer("positions", torch.arange(length))

    def forward(self, ids):
        h = self.tok(ids) + self.pos(self.positions)[None]
        h = h + torch.tanh(self.mix(h))
        att = torch.softmax(h @ h.transpose(1, 2) / h.shape[-1] ** 0.5, dim=-1)
        h = att @ h
        return self.unembed(h[:, -1])


class TiedUnembed(nn.Module):
    """An embedding whose weight is reused directly (outside the module) as the unembedding."""

    def __init__(self, vocab=6, d=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.mix = nn.Linear(d, d)

    def forward(self, ids):
        h = torch.tanh(self.mix(self.emb(ids).mean(1)))
        return h @ self.emb.weight.T


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 5), nn.GELU(), nn.Linear(5, 4)).double()


@pytest.fixture
def small_mlp():
    model = mlp()
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model, x


@pytest.fixture
def two_heads():
    torch.manual_seed(0)
    model = TwoHeads().double()
    x = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return model, x


@pytest.fixture
def tiny_seq():
    torch.manual_seed(0)
    model = TinySeq().double()
    ids = torch.randint(0, 7, (5, 3), generator=torch.Generator().manual_seed(3))
    return model, ids


def finite_difference_jacobian(model, x, eps=1e-6):
    """J (C, N, P) by central differences over every parameter, in named_parameters order."""
    params = [p for _, p in model.named_parameters()]
    cols = []
    with torch.no_grad():
        for p in params:
            flat = p.view(-1)
            for k in range(flat.numel()):
                old = flat[k].item()
                flat[k] = old + eps
                up = model(x)
                flat[k] = old - eps
                down = model(x)
                flat[k] = old
                cols.append((up - down) / (2 * eps))
    jac = torch.stack(cols, dim=-1)  # (N, C, P)
    return jac.transpose(0, 1)


def check_record_well_formed(record: dict, table, chapter: str) -> None:
    """A chapter record (``ChapterRecord.to_dict()``): its chapter, one verdict per claims row,
    known kinds, finite or None values, and no disagreement with itself."""
    import math

    from entk_lib.record import KINDS, compare_records

    assert record["chapter"] == chapter and len(record["verdicts"]) == len(table.rows)
    assert all(n["kind"] in KINDS for n in record["numbers"].values())
    assert all(n["value"] is None or math.isfinite(n["value"]) for n in record["numbers"].values())
    assert compare_records(record, record) == []
