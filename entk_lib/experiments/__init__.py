"""The book's chapters, one package each, all laid out the same way:

``params.py``
    the chapter's parameter dataclass (a :class:`entk_lib.params.ChapterParams`): the one source
    of its defaults, the rules that derive parameters from others, and their validation;
``pipeline.py``
    train-or-load (cached), the analysis of each run, and the summary over seeds;
``claims.py``
    the verdict rules (criteria) and the claims-table rows, and the chapter's record
    (:mod:`entk_lib.record`);
``figures.py``
    plots and widgets.

Each package's ``__init__`` re-exports the names its notebook calls. Science that two chapters
use lives in the library below them (:mod:`entk_lib.spectrum`, :mod:`entk_lib.features`,
:mod:`entk_lib.linalg`, ...); no chapter imports another chapter's package.
"""

from __future__ import annotations

import importlib

#: Notebook (without ``.ipynb``) -> "module:class" of its parameter dataclass.
PARAMS_CLASSES = {
    "01_ntk_review": "entk_lib.experiments.ntk_review:ReviewParams",
    "02_tms": "entk_lib.experiments.tms:TMSParams",
    "03_modular_addition": "entk_lib.experiments.modular:ModularParams",
    "04_grokking": "entk_lib.experiments.grokking:GrokkingParams",
    "05_laplacian_rotation": "entk_lib.experiments.laplacian:LaplacianParams",
    "06_transformer": "entk_lib.experiments.transformer:TransformerParams",
    "07_language_model": "entk_lib.experiments.language_model:LMParams",
}


def params_class(chapter: str) -> type:
    """The parameter dataclass of a chapter (``"04_grokking"``)."""
    module, name = PARAMS_CLASSES[chapter].split(":")
    return getattr(importlib.import_module(module), name)
