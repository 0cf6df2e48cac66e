"""The grokking chapter's parameters: the one source of its defaults, the rules that derive the
analysed epochs from the training length and checkpoint interval, and their validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...features import cliff_positions
from ...models.modular import ModularSetup, ModularTraining
from ...params import DERIVED, check_cliff_fields, check_int, check_int_list, check_real
from ...spectrum import CliffRule

__all__ = ["GrokkingParams", "snap_to_checkpoints"]

#: The epochs of the paper's figures (v1 Fig. 3 spectra, v1 Fig. 5 rotations) before the last
#: epoch, which is always added: the derived ``spectrum_epochs`` and ``rotation_epochs``.
PAPER_SPECTRUM_EPOCHS = (0, 60, 80, 100)
PAPER_ROTATION_EPOCHS = (40, 60, 80, 100, 150)
#: Checkpoint interval (epochs) of the paper's analysis and of the shared cache entry.
PAPER_CHECKPOINT_EVERY = 10
#: Eigenpairs kept per checkpoint when ``p^2`` allows it (the derived ``top_k``).
PAPER_TOP_K = 200


def snap_to_checkpoints(wanted, checkpoints: list[int], epochs: int) -> list[int]:
    """``wanted`` epochs moved onto the analysed ``checkpoints``: those at or past ``epochs``
    are dropped, the others snapped to the nearest checkpoint (ties to the earlier one), then
    ``epochs`` (the end of training) added; sorted, without duplicates.

    >>> snap_to_checkpoints([40, 60, 150], [0, 20, 40, 60, 80, 100, 120, 140, 160, 180, 200], 200)
    [40, 60, 140, 200]
    """
    grid = sorted(checkpoints)
    snapped = {min(grid, key=lambda c: (abs(c - e), c)) for e in wanted if e < epochs}
    return sorted(snapped | {epochs})


@dataclass
class GrokkingParams(ModularTraining):
    """Parameters of the grokking chapter (validated on construction).

    The six training fields (``p``, ``width``, ``train_fraction``, ``lr``, ``weight_decay``,
    ``epochs``) are :class:`~entk_lib.models.modular.ModularTraining`'s, so this chapter shares
    one cached run per seed with the other modular chapters when they agree. Derived fields
    (default ``"derived"``):

    - ``checkpoint_every``: 10, or ``epochs // 2`` for runs shorter than 20 epochs;
    - ``spectrum_epochs``: 0, 60, 80, 100 (the paper's v1 Fig. 3) and ``epochs``;
    - ``rotation_epochs``: 40, 60, 80, 100, 150 (v1 Fig. 5) and ``epochs``; both moved to the
      nearest analysed checkpoint and dropped at or past ``epochs`` (:func:`snap_to_checkpoints`);
    - ``top_k``: 200, at least ``4(p-1)+3`` (past the second cliff), at most ``p^2``.

    At the defaults they are the paper's: every 10 epochs, [0, 60, 80, 100, 500],
    [40, 60, 80, 100, 150, 500] and 200.
    """

    checkpoint_every: int | str = DERIVED
    spectrum_epochs: list[int] | str = DERIVED
    rotation_epochs: list[int] | str = DERIVED
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    top_k: int | str = DERIVED
    cliff_prominence: float = 5.0
    cliff_min_ratio: float = 1.2
    tolerance_epochs: int = 20
    faithful_r2: float = 0.9
    faithful_acc_gap: float = 0.05
    rotation_score: float = 0.5
    rotation_null_draws: int = 20

    variations: ClassVar[dict[str, list]] = ModularTraining.variations | {
        "p": [*ModularTraining.variations["p"], 7],  # p = 7: p^2 = 49 < 200 eigenpairs, top_k follows
        "checkpoint_every": [7, 20], "spectrum_epochs": [[0, 100, 500]],
        "rotation_epochs": [[60, 100, 500]], "seeds": [[0]], "top_k": [150],
        "cliff_prominence": [3.0], "cliff_min_ratio": [1.5], "tolerance_epochs": [10],
        "faithful_r2": [0.8], "faithful_acc_gap": [0.1], "rotation_score": [0.6],
        "rotation_null_draws": [5],
    }

    def __post_init__(self):
        super().__post_init__()
        self.epochs = check_int("epochs", self.epochs, minimum=2)
        self._resolve_checkpoint_every()
        self._resolve_analysed_epochs()
        self._resolve_top_k()
        self.cliff_prominence, self.cliff_min_ratio = check_cliff_fields(self.cliff_prominence,
                                                                         self.cliff_min_ratio)
        self.tolerance_epochs = check_int("tolerance_epochs", self.tolerance_epochs, minimum=0)
        self.faithful_r2 = check_real("faithful_r2", self.faithful_r2, low=0.0, high=1.0)
        self.faithful_acc_gap = check_real("faithful_acc_gap", self.faithful_acc_gap, low=0.0, high=1.0)
        self.rotation_score = check_real("rotation_score", self.rotation_score, low=0.0, high=1.0,
                                         low_inclusive=False)
        self.rotation_null_draws = check_int("rotation_null_draws", self.rotation_null_draws, minimum=1)

    def _resolve_checkpoint_every(self) -> None:
        self.derive("checkpoint_every", lambda: min(PAPER_CHECKPOINT_EVERY, self.epochs // 2))
        every = check_int("checkpoint_every", self.checkpoint_every, minimum=1)
        if every > self.epochs // 2:
            raise ValueError(f"`checkpoint_every` must be at most `epochs` // 2 = {self.epochs // 2} "
                             f"(at least three analysed checkpoints) for `epochs`={self.epochs}, got {every}")
        self.checkpoint_every = every

    def _resolve_analysed_epochs(self) -> None:
        grid = self.checkpoints()
        self.derive("spectrum_epochs", lambda: snap_to_checkpoints(PAPER_SPECTRUM_EPOCHS, grid, self.epochs))
        self.derive("rotation_epochs", lambda: snap_to_checkpoints(PAPER_ROTATION_EPOCHS, grid, self.epochs))
        self.seeds = check_int_list("seeds", self.seeds, minimum=0)
        on_grid = set(grid)
        for name in ("spectrum_epochs", "rotation_epochs"):
            values = check_int_list(name, getattr(self, name), minimum=0)
            off = [e for e in values if e not in on_grid]
            if off:
                raise ValueError(f"`{name}` must be analysed checkpoints (multiples of `checkpoint_every`="
                                 f"{self.checkpoint_every} up to `epochs`={self.epochs}, or `epochs` "
                                 f"itself); got {off} (leave it \"derived\" to follow them)")
            setattr(self, name, values)

    def _resolve_top_k(self) -> None:
        self.resolve_top_k(4 * (self.p - 1) + 3, "past the second cliff, 4(p-1)+3", PAPER_TOP_K)

    @property
    def setup(self) -> ModularSetup:
        """The training setup: the shared cache entry (checkpoints every 10 epochs) whenever
        ``checkpoint_every`` is a multiple of 10, else a run with checkpoints at that interval."""
        every = 10 if self.checkpoint_every % 10 == 0 else self.checkpoint_every
        return ModularSetup.from_params(self, checkpoint_every=every)

    def checkpoints(self) -> list[int]:
        """The analysed epochs: ``0, checkpoint_every, ...`` and the last epoch."""
        return sorted(set(range(0, self.epochs + 1, self.checkpoint_every)) | {self.epochs})

    @property
    def rule(self) -> CliffRule:
        """The book's cliff rule (:class:`entk_lib.spectrum.CliffRule`) at these parameters."""
        return CliffRule(min_prominence=self.cliff_prominence, min_ratio=self.cliff_min_ratio)

    @property
    def cliffs(self) -> tuple[int, int]:
        """0-based indices of the drops that end the first and second cliffs: 2(p-1)+1, 4(p-1)+1."""
        return cliff_positions(self.p)
