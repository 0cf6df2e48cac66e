"""The NTK-review chapter's parameters: the one source of its defaults, the rule that derives
``ranks`` from ``n_train``, and their validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...params import DERIVED, ChapterParams, check_choice, check_int, check_int_list, check_real

__all__ = ["ReviewParams", "derived_ranks"]


def derived_ranks(n_train: int) -> list[int]:
    """The truncation ranks tested for ``n_train`` = N training points: 1, 2, 3, 5, then 10, 20,
    50, 100, 200, 500, ... (1-2-5 per decade) while below N / 2, and N itself (the full kernel).
    At N = 128: [1, 2, 3, 5, 10, 20, 50, 128]."""
    grid, decade = [1, 2, 3, 5], 10
    while True:
        grid += [decade, 2 * decade, 5 * decade]
        if 5 * decade >= n_train / 2:
            break
        decade *= 10
    return [r for r in grid if r < n_train / 2] + [n_train]


@dataclass
class ReviewParams(ChapterParams):
    """Parameters of the NTK-review chapter (validated on construction).

    ``ranks`` (spectral truncations of K_T) must lie in [1, ``n_train``] (the kernel on the
    training points is N x N); derived, it is :func:`derived_ranks` of ``n_train``.
    """

    widths: list[int] = field(default_factory=lambda: [32, 128, 512, 2048])
    depth: int = 2
    activation: str = "tanh"
    n_train: int = 128
    n_test: int = 512
    noise: float = 0.15
    lr: float = 0.25
    steps: int = 2000
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    ranks: Any = DERIVED

    variations: ClassVar[dict[str, list]] = {
        "widths": [[16, 64]], "depth": [1], "activation": ["relu"], "n_train": [64], "n_test": [128],
        "noise": [0.1], "lr": [0.1], "steps": [200], "seeds": [[0]], "ranks": [[1, 10]],
    }

    def __post_init__(self):
        self.widths = check_int_list("widths", self.widths, minimum=1)
        self.depth = check_int("depth", self.depth, minimum=1, maximum=8)
        check_choice("activation", self.activation, ("tanh", "relu", "gelu"))
        self.n_train = check_int("n_train", self.n_train, minimum=4)
        self.n_test = check_int("n_test", self.n_test, minimum=1)
        self.noise = check_real("noise", self.noise, low=0.0)
        self.lr = check_real("lr", self.lr, low=0.0, low_inclusive=False)
        self.steps = check_int("steps", self.steps, minimum=1)
        self.seeds = check_int_list("seeds", self.seeds, minimum=0)
        self.derive("ranks", lambda: derived_ranks(self.n_train))
        self.ranks = check_int_list("ranks", self.ranks, minimum=1)
        for i, r in enumerate(self.ranks):
            if r > self.n_train:
                raise ValueError(f"`ranks[{i}]` must be an integer in [1, {self.n_train}] (a truncation "
                                 f"of the N x N kernel keeps at most `n_train`={self.n_train} "
                                 f"eigenpairs), got {r}")
