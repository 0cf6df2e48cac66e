"""The Laplacian-rotation chapter's parameters: the one source of its defaults, the rules that
derive the stage-two sizes and the k sweep from ``p`` (and ``n_second``), and their validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...laplacian import LAPLACIAN_PAIRS
from ...models.modular import ModularTraining
from ...params import DERIVED, check_choice, check_int, check_int_list, check_real

__all__ = ["CLIFFS", "FIRST_KERNELS", "GRAPH_ROWS", "LaplacianParams"]

CLIFFS = ("first", "second")
FIRST_KERNELS = ("fc1", "total")
GRAPH_ROWS = ("cliff", "kernel")
#: Footnote 11 of v1: stage two takes "4 more" directions than half the cliff.
PAPER_EXTRA = 4
#: Offsets of the stage-two sweep (directions beyond ``half``) when the window allows them.
EXTRA_SWEEP = tuple(range(-4, 13, 2))
#: Neighbours per input of the learned-graph sweep when ``p^2 - 1`` allows them.
KNN_SWEEP = (2, 4, 8, 16, 32)


@dataclass
class LaplacianParams(ModularTraining):
    """Parameters of the Laplacian-rotation chapter (validated on construction).

    The six training fields are :class:`~entk_lib.models.modular.ModularTraining`'s (the
    cached runs of the modular-addition chapter are reused). A cliff window holds
    ``d = 2(p-1)`` directions; stage two of the rotation takes ``half`` of them (``n_second``,
    0 meaning the paper's ``p-1``), so a stage-two size ``half + e`` must lie in ``[1, d]``.
    Derived fields (default ``"derived"``):

    - ``n_extra``: the paper's 4 (v1 fn. 11), at most ``d - half``;
    - ``extra_sweep``: the even offsets -4 .. 12 with ``1 <= half + e <= d``;
    - ``knn_sweep``: 2, 4, 8, 16, 32, those below ``p^2`` (the number of inputs).

    At the defaults (p = 29) they are 4, [-4, -2, ..., 12] and [2, 4, 8, 16, 32]. An explicit
    value that does not fit ``p`` and ``n_second`` is an error naming them.
    """

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    first_kernel: str = "fc1"
    first_pair: str = "axis"
    second_pair: str = "diagonal"
    diagonal: str = "coordinate"
    n_second: int = 0
    n_extra: int | str = DERIVED
    extra_sweep: list[int] | str = DERIVED
    knn_k: int = 4
    knn_sweep: list[int] | str = DERIVED
    graph_rows: str = "cliff"
    random_graphs: int = 20
    match_threshold: float = 0.9

    variations: ClassVar[dict[str, list]] = ModularTraining.variations | {
        "p": [23, 5], "seeds": [[0]], "first_kernel": ["total"], "first_pair": ["diagonal"],
        "second_pair": ["axis"], "diagonal": ["lattice"], "n_second": [20, 56], "n_extra": [2],
        "extra_sweep": [[0, 2]], "knn_k": [8], "knn_sweep": [[2], []], "graph_rows": ["kernel"],
        "random_graphs": [2], "match_threshold": [0.8],
    }

    def __post_init__(self):
        super().__post_init__()
        check_choice("first_kernel", self.first_kernel, FIRST_KERNELS)
        check_choice("first_pair", self.first_pair, tuple(LAPLACIAN_PAIRS))
        check_choice("second_pair", self.second_pair, tuple(LAPLACIAN_PAIRS))
        check_choice("diagonal", self.diagonal, ("coordinate", "lattice"))
        self._resolve_stage_two()
        self._resolve_graphs()
        check_choice("graph_rows", self.graph_rows, GRAPH_ROWS)
        self.random_graphs = check_int("random_graphs", self.random_graphs, minimum=1)
        self.match_threshold = check_real("match_threshold", self.match_threshold, low=0.0, high=1.0,
                                          low_inclusive=False, high_inclusive=False)

    def _resolve_stage_two(self) -> None:
        d = self.window
        n_second = check_int("n_second", self.n_second, minimum=0)
        if n_second > d:
            raise ValueError(f"`n_second` must be in [0, {d}] (a cliff window holds 2(p-1) = {d} "
                             f"directions for `p`={self.p}; 0 means p-1), got {n_second}")
        self.n_second = n_second
        half = self.half
        low, high = 1 - half, d - half
        self.derive("n_extra", lambda: min(PAPER_EXTRA, high))
        self.derive("extra_sweep", lambda: [e for e in EXTRA_SWEEP if low <= e <= high])
        where = (f"(stage two takes `n_second` + e of the 2(p-1) = {d} directions of a window, with "
                 f"`p`={self.p} and `n_second`={n_second}, i.e. {half})")
        n_extra = check_int("n_extra", self.n_extra, minimum=None)
        if not low <= n_extra <= high:
            raise ValueError(f"`n_extra` must be in [{low}, {high}] {where}, got {n_extra}")
        self.n_extra = n_extra
        sweep = check_int_list("extra_sweep", self.extra_sweep, minimum=None)
        off = [e for e in sweep if not low <= e <= high]
        if off:
            raise ValueError(f"`extra_sweep` entries must be in [{low}, {high}] {where}, got {off}")
        self.extra_sweep = sweep

    def _resolve_graphs(self) -> None:
        n = self.p**2
        self.derive("knn_sweep", lambda: [k for k in KNN_SWEEP if k <= n - 1])
        where = f"(neighbours among the p^2 = {n} inputs for `p`={self.p})"
        knn_k = check_int("knn_k", self.knn_k, minimum=1)
        if knn_k > n - 1:
            raise ValueError(f"`knn_k` must be in [1, {n - 1}] {where}, got {knn_k}")
        self.knn_k = knn_k
        sweep = check_int_list("knn_sweep", self.knn_sweep, minimum=1, nonempty=False)
        off = [k for k in sweep if k > n - 1]
        if off:
            raise ValueError(f"`knn_sweep` entries must be in [1, {n - 1}] {where}, got {off}")
        self.knn_sweep = sweep

    @property
    def window(self) -> int:
        """Directions per cliff window, d = 2(p-1)."""
        return 2 * (self.p - 1)

    @property
    def half(self) -> int:
        """The paper's stage-two size: ``n_second`` if set, else d/2 = p-1."""
        return self.n_second or self.window // 2

    def pair_of(self, cliff: str) -> str:
        """The Laplacian pair (a key of :data:`entk_lib.laplacian.LAPLACIAN_PAIRS`) of ``cliff``."""
        return self.first_pair if cliff == "first" else self.second_pair
