"""The chapter's parameters (the one source of their defaults) and the model's parameter tensors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from ...models.transformer import TransformerSetup, check_checkpoint_every
from ...params import DERIVED, ChapterParams, check_int, check_int_list, check_prime

__all__ = ["TENSORS", "TransformerParams"]

#: Parameter tensors of the model, in the order of the paper's Table 2, with short labels.
TENSORS = {
    "embed.weight": "W_E (token embedding)",
    "pos_embed.weight": "W_pos (position embedding)",
    "attn.W_Q.weight": "W_Q",
    "attn.W_K.weight": "W_K",
    "attn.W_V.weight": "W_V",
    "attn.W_O.weight": "W_O",
    "mlp.W_in.weight": "W_in (MLP)",
    "mlp.W_out.weight": "W_out (MLP)",
    "unembed.weight": "W_U (unembedding)",
}

#: The paper's schedule: checkpoints (and all nine eNTKs) every 20 epochs; eigenpairs kept.
PAPER_CHECKPOINT_EVERY = 20
PAPER_TOP_K = 40


@dataclass
class TransformerParams(ChapterParams):
    """Parameters of the Transformer chapter (validated on construction).

    The training fields are those of :class:`~entk_lib.models.transformer.TransformerSetup`
    (:attr:`setup`). Derived when left ``"derived"``:

    * ``checkpoint_every = min(20, epochs)``: the paper's 20 epochs, or one checkpoint at the
      end of a run shorter than that;
    * ``full_every = checkpoint_every``: all nine tensors at every checkpoint (the paper's);
    * ``top_k = min(40, p^2)``: 40 eigenpairs, or all of them when there are fewer inputs.

    An explicit value that does not fit (``checkpoint_every`` above ``epochs``, ``full_every``
    not a multiple of ``checkpoint_every``, ``top_k`` above ``p^2``) is an error naming both.
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
    checkpoint_every: int | str = DERIVED
    full_every: int | str = DERIVED
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    top_k: int | str = DERIVED
    split_seed: int = 0
    tracked: list[str] = field(default_factory=lambda: ["unembed.weight"])
    baseline_draws: int = 1000

    variations: ClassVar[dict[str, list]] = {
        "p": [23, 5], "d_model": [32], "n_heads": [2], "d_mlp": [128], "train_fraction": [0.3],
        "lr": [1e-3], "weight_decay": [0.5], "batch_size": [32], "epochs": [10, 100, 450],
        "checkpoint_every": [7, 50], "full_every": [40, 100], "seeds": [[2], [0, 1, 2]],
        "top_k": [20], "split_seed": [1], "tracked": [["unembed.weight", "embed.weight"]],
        "baseline_draws": [100],
    }

    def __post_init__(self):
        self.p = check_prime("p", self.p)
        if self.p < 5:
            raise ValueError(f"`p` must be an odd prime >= 5, got {self.p}")
        self.epochs = check_int("epochs", self.epochs, minimum=1)
        self.derive("checkpoint_every", lambda: min(PAPER_CHECKPOINT_EVERY, self.epochs))
        self.derive("full_every", lambda: self.checkpoint_every)
        self.derive("top_k", lambda: min(PAPER_TOP_K, self.p**2))
        self.checkpoint_every = check_checkpoint_every(self.checkpoint_every, self.epochs)
        self.full_every = check_int("full_every", self.full_every, minimum=1)
        if self.full_every % self.checkpoint_every:
            raise ValueError(f"`full_every` must be a multiple of `checkpoint_every` "
                             f"({self.checkpoint_every}), got {self.full_every}")
        self.top_k = check_int("top_k", self.top_k, minimum=1)
        if self.top_k > self.p**2:
            raise ValueError(f"`top_k` must be at most p^2 = {self.p**2} (`p` = {self.p}), got {self.top_k}")
        self.seeds = check_int_list("seeds", self.seeds, minimum=0)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must be distinct, got {self.seeds}")
        if isinstance(self.tracked, str) or any(t not in TENSORS for t in self.tracked):
            raise ValueError(f"`tracked` must be a list of names from {list(TENSORS)}, got {self.tracked!r}")
        self.baseline_draws = check_int("baseline_draws", self.baseline_draws, minimum=10)
        for name, value in asdict(self.setup).items():  # the training fields, validated
            setattr(self, name, value)

    @property
    def setup(self) -> TransformerSetup:
        """The training setup of these parameters (validated)."""
        return TransformerSetup.from_params(self)

    def checkpoint_epochs(self) -> list[int]:
        """Epochs 0, checkpoint_every, 2*checkpoint_every, ..., and the last epoch."""
        return self.setup.checkpoint_epochs()

    def full_epochs(self) -> list[int]:
        """Epochs at which every tensor's eNTK is diagonalized (and the last epoch)."""
        return sorted(set(range(0, self.epochs + 1, self.full_every)) | {self.epochs})
