"""A training loop with evaluation history and checkpoints, shared by the chapters' models."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .params import check_int

__all__ = ["TrainingRun", "accuracy", "train"]

Metrics = Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, float]]


@dataclass
class TrainingRun:
    """What :func:`train` returns.

    Attributes
    ----------
    history : dict of lists
        ``epoch`` and, for each metric ``m`` of ``metrics``, ``train_m`` and ``test_m``.
    checkpoints : dict epoch -> state_dict
        Parameters after that many epochs (epoch 0 is the initialization).
    final_state : state_dict after the last epoch.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    final_state: dict[str, torch.Tensor] = field(default_factory=dict)

    def model_at(self, model: nn.Module, epoch: int | None = None) -> nn.Module:
        """A copy of ``model`` loaded with the checkpoint at ``epoch`` (None: the final state)."""
        if epoch is not None and epoch not in self.checkpoints:
            raise ValueError(f"`epoch` {epoch} has no checkpoint; available: {sorted(self.checkpoints)}")
        out = copy.deepcopy(model)
        out.load_state_dict(self.final_state if epoch is None else self.checkpoints[epoch])
        return out


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Argmax accuracy; ``targets`` as class indices (N,) or one-hot/score rows (N, C)."""
    labels = targets.argmax(1) if targets.dim() == 2 else targets
    return float((logits.argmax(1) == labels).float().mean())


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    train_data: tuple[torch.Tensor, torch.Tensor],
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    test_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    metrics: Metrics | None = None,
    batch_size: int | None = None,
    eval_every: int = 1,
    checkpoint_epochs: Iterable[int] = (),
    seed: int = 0,
    progress: bool = True,
    desc: str = "training",
) -> TrainingRun:
    """Train ``model`` in place for ``epochs`` passes over ``train_data``.

    Full batch when ``batch_size`` is None, else shuffled minibatches from a generator seeded
    with ``seed``. Every ``eval_every`` epochs (and at epochs 0 and ``epochs``) ``metrics`` (by
    default the loss) is evaluated on the train and test sets in ``eval`` mode.
    """
    epochs = check_int("epochs", epochs, minimum=0)
    eval_every = check_int("eval_every", eval_every, minimum=1)
    x, y = train_data
    n = x.shape[0]
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    wanted = {check_int("checkpoint_epochs", e, minimum=0, maximum=epochs) for e in checkpoint_epochs}
    gen = torch.Generator().manual_seed(seed)
    run = TrainingRun(history={"epoch": []})
    metric_fn = metrics or (lambda m, xb, yb: {"loss": float(loss_fn(m(xb), yb))})

    def evaluate(epoch: int) -> None:
        model.eval()
        with torch.no_grad():
            sets = {"train": (x, y)} | ({"test": test_data} if test_data is not None else {})
            run.history["epoch"].append(epoch)
            for split, (xs, ys) in sets.items():
                for name, value in metric_fn(model, xs, ys).items():
                    run.history.setdefault(f"{split}_{name}", []).append(float(value))
        model.train()

    evaluate(0)
    if 0 in wanted:
        run.checkpoints[0] = _snapshot(model)
    model.train()
    for epoch in tqdm(range(1, epochs + 1), desc=desc, disable=not progress, mininterval=1.0):
        order = torch.randperm(n, generator=gen) if batch_size else None
        for start in range(0, n, batch_size or n):
            idx = order[start : start + batch_size] if batch_size else slice(None)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            optimizer.step()
        if epoch % eval_every == 0 or epoch == epochs:
            evaluate(epoch)
        if epoch in wanted:
            run.checkpoints[epoch] = _snapshot(model)
    model.eval()
    run.final_state = _snapshot(model)
    return run
