"""A training loop with evaluation history and checkpoints, shared by the chapters' models.

:func:`train` runs full-batch or minibatch training; the order of the minibatches (``shuffle``,
e.g. :func:`dataloader_order`) and what is recorded at each evaluation (``evaluate``) can be
supplied by the model's module, so that every model trains through this one loop.
:func:`single_thread` and :func:`load_average` describe the conditions a run is timed under.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .params import check_int

__all__ = ["TrainingRun", "accuracy", "dataloader_order", "load_average", "single_thread", "train"]

Metrics = Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, float]]
#: ``n -> permutation of range(n)`` (a LongTensor (n,)), called once per epoch.
Shuffle = Callable[[int], torch.Tensor]
#: ``model -> {history key: value}``, called in eval mode without gradients.
Evaluate = Callable[[nn.Module], dict[str, float]]


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


def dataloader_order(generator: torch.Generator) -> Shuffle:
    """Per-epoch permutations drawn as ``torch.utils.data.RandomSampler`` draws them from the
    global generator: each epoch seeds a fresh generator with one int64 draw from ``generator``
    (which may have drawn the initial weights before), then takes ``randperm(n)`` from it.

    (A ``DataLoader(shuffle=True)`` also draws a worker base seed from the same generator before
    each epoch's permutation; that draw is not made here.)"""

    def order(n: int) -> torch.Tensor:
        seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))

    return order


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (restored afterwards): the same floating-point
    reductions on every machine, and no oversubscription when runs go in parallel processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def load_average() -> float:
    """The 1-minute load average (NaN where the OS does not report it)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return float("nan")


def _seeded_order(seed: int) -> Shuffle:
    """Per-epoch ``randperm(n)`` from one generator seeded with ``seed`` (the default order)."""
    gen = torch.Generator().manual_seed(seed)
    return lambda n: torch.randperm(n, generator=gen)


def _split_metrics(metric_fn: Metrics, train_data: tuple, test_data: tuple | None) -> Evaluate:
    """An :data:`Evaluate` recording ``train_m`` and ``test_m`` for each metric ``m``."""
    sets = {"train": train_data} | ({"test": test_data} if test_data is not None else {})

    def evaluate(model: nn.Module) -> dict[str, float]:
        out = {}
        for split, (xs, ys) in sets.items():
            out |= {f"{split}_{name}": value for name, value in metric_fn(model, xs, ys).items()}
        return out

    return evaluate


def train(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    train_data: tuple[torch.Tensor, torch.Tensor],
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    test_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    metrics: Metrics | None = None,
    evaluate: Evaluate | None = None,
    batch_size: int | None = None,
    shuffle: Shuffle | None = None,
    eval_every: int = 1,
    checkpoint_epochs: Iterable[int] = (),
    seed: int = 0,
    progress: bool = True,
    desc: str = "training",
) -> TrainingRun:
    """Train ``model`` in place for ``epochs`` passes over ``train_data`` (x (N, ...), y (N, ...)).

    Full batch when ``batch_size`` is None, else minibatches of ``batch_size`` rows in the order
    ``shuffle(N)`` gives each epoch (default: ``randperm`` from a generator seeded with ``seed``).
    Every ``eval_every`` epochs (and at epochs 0 and ``epochs``) the model is evaluated in
    ``eval`` mode without gradients: ``evaluate(model)`` gives the history entries when given,
    else ``metrics`` (by default the loss) on the train and test sets gives ``train_m`` and
    ``test_m``. Parameters are kept at ``checkpoint_epochs``.
    """
    epochs = check_int("epochs", epochs, minimum=0)
    eval_every = check_int("eval_every", eval_every, minimum=1)
    x, y = train_data
    n = x.shape[0]
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    wanted = {check_int("checkpoint_epochs", e, minimum=0, maximum=epochs) for e in checkpoint_epochs}
    shuffle = shuffle or _seeded_order(seed)
    run = TrainingRun(history={"epoch": []})
    measure = evaluate or _split_metrics(
        metrics or (lambda m, xb, yb: {"loss": float(loss_fn(m(xb), yb))}), (x, y), test_data)

    def record(epoch: int) -> None:
        model.eval()
        with torch.no_grad():
            run.history["epoch"].append(epoch)
            for name, value in measure(model).items():
                run.history.setdefault(name, []).append(float(value))
        model.train()

    record(0)
    if 0 in wanted:
        run.checkpoints[0] = _snapshot(model)
    model.train()
    for epoch in tqdm(range(1, epochs + 1), desc=desc, disable=not progress, mininterval=1.0):
        order = shuffle(n) if batch_size else None
        for start in range(0, n, batch_size or n):
            idx = order[start : start + batch_size] if batch_size else slice(None)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            optimizer.step()
        if epoch % eval_every == 0 or epoch == epochs:
            record(epoch)
        if epoch in wanted:
            run.checkpoints[epoch] = _snapshot(model)
    model.eval()
    run.final_state = _snapshot(model)
    return run
