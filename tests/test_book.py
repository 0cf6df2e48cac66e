"""Structure of the book: every chapter in the table of contents is a well-formed notebook."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = [c["file"] for part in TOC["parts"] for c in part["chapters"]
            if (ROOT / f"{c['file']}.ipynb").exists()]
PAGES = [c["file"] for part in TOC["parts"] for c in part["chapters"]]


def test_every_page_in_the_toc_exists():
    for page in PAGES:
        assert (ROOT / f"{page}.ipynb").exists() or (ROOT / f"{page}.md").exists(), page
    assert len(CHAPTERS) == 7


def load(chapter: str) -> dict:
    return json.loads((ROOT / f"{chapter}.ipynb").read_text())


def tagged(nb: dict, tag: str) -> list[dict]:
    return [c for c in nb["cells"] if tag in c.get("metadata", {}).get("tags", [])]


def parameter_names(nb: dict) -> set[str]:
    (cell,) = tagged(nb, "parameters")
    tree = ast.parse("".join(cell["source"]))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_is_well_formed(chapter):
    nb = load(chapter)
    first = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown" and first.startswith("# "), "needs a # Title cell"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
    assert len(tagged(nb, "parameters")) == 1
    assert tagged(nb, "nbval-check-output"), "nothing for nbval to check"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("outputs") is not None for c in code)
    assert any(c.get("outputs") for c in code), "committed without outputs"
    assert "colab.research.google.com" in json.dumps(nb["cells"][:4]), "no Colab badge"


@pytest.mark.parametrize("chapter", [c for c in CHAPTERS if not c.endswith("01_ntk_review")])
def test_paper_parameters_exist_and_name_real_parameters(chapter):
    name = Path(chapter).name.split("_", 1)[1]
    path = ROOT / "book" / "params" / f"{name}.paper.yaml"
    assert path.exists(), f"missing {path.relative_to(ROOT)}"
    paper = yaml.safe_load(path.read_text())
    unknown = set(paper) - parameter_names(load(chapter))
    assert not unknown, f"{path.name} sets parameters the notebook does not have: {unknown}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_papermill_sees_every_parameter(chapter):
    """`papermill --help-notebook` lists, and `-p` accepts without an "unknown parameter" warning,
    only what papermill's own parser reads: one `=` per line, so no `=` in a parameter's comment."""
    from papermill.translators import PythonTranslator

    nb = load(chapter)
    (cell,) = tagged(nb, "parameters")
    seen = {p.name for p in PythonTranslator.inspect({"source": "".join(cell["source"])})}
    missing = parameter_names(nb) - seen
    assert not missing, f"papermill cannot parse the parameters {sorted(missing)} of {chapter}"


def _executor():
    spec = importlib.util.spec_from_file_location("execute_chapters", ROOT / "tools" / "execute_chapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_stored_outputs_come_from_the_current_code(chapter):
    """A code cell edited after the chapter was executed leaves outputs nbval cannot reproduce
    (a changed default in the parameters cell, say): tools/execute_chapters.py stamps the digest
    of the code it ran, and it must match the code committed now."""
    nb = load(chapter)
    stamped = nb["metadata"].get("entk_book", {}).get("executed_code_sha256")
    assert stamped == _executor().source_digest(nb), (
        f"{chapter}.ipynb was edited after it was executed: "
        f"python tools/execute_chapters.py {Path(chapter).name}"
    )


def _stored_claims_verdicts(nb: dict) -> list[str]:
    """Verdicts of the claims table as stored in the notebook's outputs (its plain-text form)."""
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text = "".join(out.get("data", {}).get("text/plain", ""))
            if "| verdict: " in text:
                return [line.rsplit("| verdict: ", 1)[1].strip() for line in text.splitlines()
                        if "| verdict: " in line]
    return []


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_committed_record_matches_the_stored_claims_table(chapter):
    """book/claims/<chapter>.json is written by the execution that made the stored outputs: same
    verdicts, parameters equal to the notebook's defaults, and a last cell that checks it."""
    name = Path(chapter).name
    path = ROOT / "book" / "claims" / f"{name}.json"
    assert path.exists(), f"missing {path.relative_to(ROOT)}: python tools/execute_chapters.py {name}"
    record = json.loads(path.read_text())
    nb = load(chapter)
    stored = _stored_claims_verdicts(nb)
    assert stored and [v["verdict"] for v in record["verdicts"]] == stored
    last = [c for c in nb["cells"] if c["cell_type"] == "code"][-1]
    assert ".check()" in "".join(last["source"]) and "nbval-check-output" in last["metadata"]["tags"]
    printed = "".join("".join(o.get("text", "")) for o in last["outputs"])
    assert printed.startswith(f"re-execution agrees with {name}.json"), printed


def test_summary_page_matches_the_chapter_records():
    """book/summary.md is generated from book/claims/*.json and listed in the toc."""
    from entk_lib.record import summary_markdown

    page = ROOT / "book" / "summary.md"
    assert page.exists() and page.read_text() == summary_markdown(ROOT / "book" / "claims"), (
        "book/summary.md is stale: python tools/execute_chapters.py --summary")
    assert "book/summary" in (ROOT / "_toc.yml").read_text()
