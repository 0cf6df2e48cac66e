"""The modular-addition chapter's parameters: the one source of its defaults, the rules that
derive the eigenpair counts from ``p``, and their validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ...features import cliff_windows
from ...models.modular import ModularTraining
from ...params import DERIVED, check_cliff_fields, check_int, check_int_list, check_real_list
from ...spectrum import CliffRule

__all__ = ["ModularParams", "derived_flat_top_k"]

#: Eigenpairs of each N x N kernel when ``p`` allows it (the derived ``top_k``).
PAPER_TOP_K = 200
#: The derived ``flat_top_k`` is rounded up to a multiple of this.
FLAT_ROUND = 50


def _last_read(p: int) -> int:
    """Eigenvectors the chapter reads: the leading mode, the two cliff windows and the control
    window ``next`` of :func:`entk_lib.features.cliff_windows`, ``6(p-1)+1`` (169 at p = 29)."""
    return cliff_windows(p)["next"].stop


def derived_flat_top_k(p: int) -> int:
    """``flat_top_k`` at modulus ``p``: past the farthest position of the first cliff widened
    p-fold, ``p * (2(p-1)+1) + p = 2 p^2`` (the claims row accepts a cliff within ``+-p`` of
    ``p`` times the literal one), plus the cliff rule's window (20 drops, so that the drops
    there are judged against neighbours on both sides), rounded up to a multiple of 50 and at
    most ``p^3 - 1``: 1750 at p = 29 (past the flattened spectrum's drop near 1709), 1100 at
    p = 23, 100 at p = 5."""
    reach = 2 * p * p + CliffRule().window
    return min(p**3 - 1, FLAT_ROUND * math.ceil(reach / FLAT_ROUND))


@dataclass
class ModularParams(ModularTraining):
    """Parameters of the modular-addition chapter (validated on construction).

    The six training fields (``p``, ``width``, ``train_fraction``, ``lr``, ``weight_decay``,
    ``epochs``) are :class:`~entk_lib.models.modular.ModularTraining`'s, so this chapter shares
    one cached run per seed with the other modular chapters. Derived fields (default
    ``"derived"``), computed from ``p``:

    - ``top_k`` (:meth:`~entk_lib.models.modular.ModularTraining.resolve_top_k`): 200, at least
      ``6(p-1)+1``, at most ``p^2`` (200 at p = 23 and 29, 25 at p = 5);
    - ``flat_top_k`` (:func:`derived_flat_top_k`): ``2 p^2 + 20`` rounded up to a multiple of 50,
      at most ``p^3 - 1``.

    At the defaults (p = 29) they are 200 and 1750. An explicit value must fit ``p``: ``top_k``
    in ``[6(p-1)+1, p^2]`` (so that the control window is whole), ``flat_top_k`` in
    ``[2, p^3 - 1]``.
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    top_k: int | str = DERIVED
    cliff_prominence: float = 5.0
    cliff_min_ratio: float = 1.2
    null_draws: int = 1000
    scales: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.71, 1.0, 1.41, 2.0, 4.0])
    flat_top_k: int | str = DERIVED
    flat_seeds: list[int] = field(default_factory=lambda: [0])

    variations: ClassVar[dict[str, list]] = ModularTraining.variations | {
        "p": [23, 5], "seeds": [[0]], "top_k": [300], "cliff_prominence": [3.0],
        "cliff_min_ratio": [1.5], "null_draws": [50], "scales": [[0.5, 1.0, 2.0]],
        "flat_top_k": [100], "flat_seeds": [[]],
    }

    def __post_init__(self):
        super().__post_init__()
        self._resolve_top_k()
        self.cliff_prominence, self.cliff_min_ratio = check_cliff_fields(self.cliff_prominence,
                                                                         self.cliff_min_ratio)
        self.null_draws = check_int("null_draws", self.null_draws, minimum=1)
        self.scales = check_real_list("scales", self.scales, low=0.0, low_inclusive=False)
        self._resolve_flat_top_k()
        self.flat_seeds = check_int_list("flat_seeds", self.flat_seeds, minimum=0, nonempty=False)

    def _resolve_top_k(self) -> None:
        self.resolve_top_k(_last_read(self.p), "the leading mode, the two cliff windows and the control "
                           "window: 6(p-1)+1 eigenvectors", PAPER_TOP_K)

    def _resolve_flat_top_k(self) -> None:
        high = self.p**3 - 1
        self.derive("flat_top_k", lambda: derived_flat_top_k(self.p))
        flat_top_k = check_int("flat_top_k", self.flat_top_k, minimum=None)
        if not 2 <= flat_top_k <= high:
            raise ValueError(f"`flat_top_k` must be in [2, {high}] for `p`={self.p} (fewer than the "
                             f"p^3 rows of the flattened kernel), got {flat_top_k}")
        self.flat_top_k = flat_top_k

    @property
    def rule(self) -> CliffRule:
        """The book's cliff rule (:class:`entk_lib.spectrum.CliffRule`) at these parameters."""
        return CliffRule(min_prominence=self.cliff_prominence, min_ratio=self.cliff_min_ratio)
