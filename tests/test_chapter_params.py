"""One source of defaults, and parameters that work together (every chapter).

The params dataclass is the source of a chapter's defaults; the notebook's parameters cell
repeats them (checked here) and builds its params in one call. Every parameter changed alone to
a small valid value (the class's ``variations``) must validate: parameters that depend on others
are derived from them.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from entk_lib.experiments import PARAMS_CLASSES, params_class
from entk_lib.params import DERIVED

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(PARAMS_CLASSES)


def _cells(chapter: str) -> list[dict]:
    return json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text())["cells"]


def parameters_cell_values(chapter: str) -> dict:
    """Name -> literal value of every assignment in the notebook's parameters cell."""
    (cell,) = [c for c in _cells(chapter) if "parameters" in c.get("metadata", {}).get("tags", [])]
    values = {}
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.AnnAssign):
            values[node.target.id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                values[target.id] = ast.literal_eval(node.value)
    return values


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_parameters_cell_repeats_the_dataclass_defaults(chapter):
    cls = params_class(chapter)
    cell, defaults = parameters_cell_values(chapter), cls.defaults()
    assert set(cell) == set(defaults), (
        f"{chapter}: only in the notebook {sorted(set(cell) - set(defaults))}, "
        f"only in {cls.__name__} {sorted(set(defaults) - set(cell))}")
    drift = {k: (cell[k], defaults[k]) for k in cell if cell[k] != defaults[k]}
    assert not drift, f"{chapter}: notebook vs {cls.__name__} defaults differ: {drift}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebook_builds_its_params_in_one_call(chapter):
    cls = params_class(chapter)
    code = "".join("".join(c["source"]) for c in _cells(chapter) if c["cell_type"] == "code")
    assert f"{cls.__name__}.from_namespace(globals())" in code


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_defaults_validate_and_every_parameter_has_variations(chapter):
    cls = params_class(chapter)
    params = cls()
    assert set(cls.variations) == set(cls.field_names()), (
        f"{cls.__name__}.variations misses {sorted(set(cls.field_names()) - set(cls.variations))}")
    assert all(getattr(params, n) != DERIVED for n in cls.field_names()), "a derived field was left unset"


def _single_changes():
    for chapter in CHAPTERS:
        cls = params_class(chapter)
        for name, values in cls.variations.items():
            for value in values:
                yield pytest.param(chapter, name, value, id=f"{chapter}-{name}={value!r}"[:90])


@pytest.mark.parametrize(("chapter", "name", "value"), list(_single_changes()))
def test_each_parameter_changed_alone_validates(chapter, name, value):
    cls = params_class(chapter)
    assert value != cls.defaults()[name], "a variation must differ from the default"
    params = cls(**{name: value})
    assert all(getattr(params, n) != DERIVED for n in cls.field_names())


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_from_namespace_names_a_missing_parameter(chapter):
    cls = params_class(chapter)
    namespace = cls.defaults()
    dropped = cls.field_names()[0]
    del namespace[dropped]
    with pytest.raises(ValueError, match=dropped):
        cls.from_namespace(namespace)


def _param_files():
    for path in sorted((ROOT / "book" / "params").glob("*.yaml")):
        name = path.name.split(".")[0]
        (chapter,) = [c for c in CHAPTERS if c.split("_", 1)[1] == name]
        yield pytest.param(chapter, path, id=path.name)


@pytest.mark.parametrize(("chapter", "path"), list(_param_files()))
def test_every_parameter_file_validates(chapter, path):
    import yaml

    values = yaml.safe_load(path.read_text())
    cls = params_class(chapter)
    unknown = set(values) - set(cls.field_names())
    assert not unknown, f"{path.name}: unknown parameters {unknown}"
    cls(**values)
