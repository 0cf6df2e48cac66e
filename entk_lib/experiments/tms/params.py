"""The TMS chapter's parameters: the one source of its defaults, the rules that derive
``models`` and ``top_k`` from the rest, and their validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...models.tms import TMSSetup, check_training_fields
from ...params import (
    DERIVED,
    ChapterParams,
    check_cliff_fields,
    check_int,
    check_int_list,
    check_list,
    check_real,
    check_real_list,
)
from ...spectrum import CliffRule

__all__ = ["TMSParams"]

#: The paper's three Fig. 1 models as (fifths of n in m, S): at n = 50 they are (10, 0.3),
#: (10, 0.9) and (40, 0.9).
PAPER_MODELS = ((1, 0.3), (1, 0.9), (4, 0.9))

#: Eigenpairs past index n that the derived ``top_k`` keeps: more than the cliff rule's window
#: (:attr:`entk_lib.spectrum.CliffRule.window`, 20), so the drop at n is judged on both sides.
TOP_K_PAST_N = 30


def derived_models(n_features: int) -> list[list]:
    """The paper's models at ``n_features`` = n: ``[[n/5, 0.3], [n/5, 0.9], [4n/5, 0.9]]``, each
    ``m`` rounded half up and at least 1 (distinct for every n >= 2)."""
    return [[max(1, (2 * fifths * n_features + 5) // 10), sparsity] for fifths, sparsity in PAPER_MODELS]


def check_models(models: Any, n_features: int) -> list[list]:
    """``models`` as a list of ``[m, S]`` pairs, ``1 <= m <= n_features`` and ``0 <= S < 1``."""
    models = check_list("models", models, what="[m, S] pairs")
    out = []
    for idx, pair in enumerate(models):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"`models[{idx}]` must be a pair [m, S], got {pair!r}")
        m = check_int(f"models[{idx}] m (hidden size)", pair[0], minimum=1)
        if m > n_features:
            raise ValueError(f"`models[{idx}] m (hidden size)` must be an integer in [1, {n_features}] "
                             f"(at most `n_features`={n_features}), got {m}")
        s = check_real(f"models[{idx}] S (sparsity)", pair[1], low=0.0, high=1.0, high_inclusive=False)
        out.append([m, s])
    return out


@dataclass
class TMSParams(ChapterParams):
    """Parameters of the TMS chapter (validated on construction).

    List parameters may also be given as YAML strings (``papermill -p models "[[10, 0.9]]"``).

    ``models`` is a list of ``[m, S]`` pairs (hidden size ``1 <= m <= n_features``, sparsity
    ``0 <= S < 1``); derived, it is the paper's three models scaled to ``n_features``
    (:func:`derived_models`). ``top_k`` must lie in ``[n_features + 1, rank bound]`` where the rank
    bound is ``min(n_features * n_samples, min_m * n_features + n_features)``; derived, it is
    ``min(n_features + 30, rank bound)`` (the rank bound is at least ``2 n_features``, so this is
    always valid). :meth:`setup` gives the :class:`~entk_lib.models.tms.TMSSetup` of one model.
    """

    n_features: int = 50
    models: Any = DERIVED
    importance_base: float = 0.8
    n_samples: int = 500
    epochs: int = 5000
    lr: float = 1e-3
    betas: list = field(default_factory=lambda: [1.0, 0.3])
    top_k: Any = DERIVED
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    represented_threshold: float = 0.75
    cliff_prominence: float = 5.0
    cliff_min_ratio: float = 1.2
    match_threshold: float = 0.5

    variations: ClassVar[dict[str, list]] = {
        "n_features": [20], "models": [[[10, 0.9]]], "importance_base": [0.7], "n_samples": [100],
        "epochs": [500], "lr": [1e-2], "betas": [[0.5]], "top_k": [60], "seeds": [[0]],
        "represented_threshold": [0.5], "cliff_prominence": [4.0], "cliff_min_ratio": [1.5],
        "match_threshold": [0.6],
    }

    def __post_init__(self):
        check_training_fields(self)
        self.derive("models", lambda: derived_models(self.n_features))
        self.models = check_models(self.models, self.n_features)
        self.betas = check_real_list("betas", self.betas, low=0.0, high=4.0)
        self.seeds = check_int_list("seeds", self.seeds, minimum=0)
        self.derive("top_k", lambda: min(self.n_features + TOP_K_PAST_N, self.rank_bound))
        self._check_top_k()
        self.represented_threshold = check_real("represented_threshold", self.represented_threshold,
                                                low=0.0, low_inclusive=False)
        self.cliff_prominence, self.cliff_min_ratio = check_cliff_fields(self.cliff_prominence,
                                                                         self.cliff_min_ratio)
        self.match_threshold = check_real("match_threshold", self.match_threshold, low=0.0, high=1.0)

    def _check_top_k(self) -> None:
        low, high = self.n_features + 1, self.rank_bound
        try:
            self.top_k = check_int("top_k", self.top_k, minimum=low, maximum=high)
        except ValueError as exc:
            m_min = min(m for m, _ in self.models)
            raise ValueError(f"{exc}: `top_k` must exceed `n_features`={self.n_features} (to see the "
                             f"cliff at n) and stay within the kernel's rank bound min(`n_features` * "
                             f"`n_samples`, min m of `models` * n + n) = {high} (min m = {m_min})"
                             ) from None

    @property
    def rule(self) -> CliffRule:
        """The book's cliff rule (:class:`entk_lib.spectrum.CliffRule`) at these parameters."""
        return CliffRule(min_prominence=self.cliff_prominence, min_ratio=self.cliff_min_ratio)

    @property
    def rank_bound(self) -> int:
        """The largest rank any of the flattened kernels can have (smallest model)."""
        m_min = min(m for m, _ in self.models)
        return min(self.n_features * self.n_samples, m_min * self.n_features + self.n_features)

    @property
    def all_betas(self) -> list[float]:
        """beta = 0 (no rescaling, the comparison) followed by ``betas``."""
        return [0.0] + [b for b in self.betas if b != 0.0]

    def setup(self, m: int, sparsity: float) -> TMSSetup:
        """The :class:`~entk_lib.models.tms.TMSSetup` of the model ``[m, sparsity]``."""
        return TMSSetup(n_features=self.n_features, n_hidden=m, sparsity=sparsity,
                        n_samples=self.n_samples, importance_base=self.importance_base,
                        epochs=self.epochs, lr=self.lr)
