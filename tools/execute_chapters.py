"""Execute chapter notebooks in place at their default parameters and report the wall time.

This is how the committed outputs are produced, with each chapter's record of verdicts and key
numbers (``book/claims/<chapter>.json``, see :mod:`entk_lib.record`), and then the reproduction
summary page built from those records (``book/summary.md``):

    python tools/execute_chapters.py                 # every chapter listed in _toc.yml
    python tools/execute_chapters.py 01_ntk_review   # some chapters
    python tools/execute_chapters.py --summary       # only rewrite book/summary.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import nbformat
import papermill
import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [Path(f).name for f in files if (ROOT / f"{f}.ipynb").exists()]


def source_digest(notebook: dict) -> str:
    """SHA-256 of the notebook's code-cell sources: what its stored outputs were computed from."""
    code = [c["source"] for c in notebook["cells"] if c["cell_type"] == "code"]
    text = json.dumps(["".join(s) if isinstance(s, list) else s for s in code])
    return hashlib.sha256(text.encode()).hexdigest()


def stamp(path: Path) -> None:
    """Record the code digest in the notebook's metadata (tests/test_book.py checks it)."""
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata.setdefault("entk_book", {})["executed_code_sha256"] = source_digest(notebook)
    nbformat.write(notebook, path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="notebook names without .ipynb (default: all)")
    parser.add_argument("--summary", action="store_true",
                        help="only rewrite book/summary.md from the committed records")
    args = parser.parse_args(argv)
    if args.summary:
        write_summary()
        return 0
    names = args.chapters or toc_chapters()
    # the chapters' last cell writes book/claims/<chapter>.json (entk_lib.record) instead of checking it
    os.environ["ENTK_RECORD_CLAIMS"] = "1"
    total = 0.0
    for name in names:
        path = ROOT / "book" / f"{name.removesuffix('.ipynb')}.ipynb"
        start = time.perf_counter()
        papermill.execute_notebook(path, path, cwd=path.parent, kernel_name="python3",
                                   progress_bar=False)
        stamp(path)
        elapsed = time.perf_counter() - start
        total += elapsed
        print(f"{path.name:<40} {elapsed:8.1f} s", flush=True)
    print(f"{'total':<40} {total:8.1f} s")
    write_summary()
    return 0


def write_summary() -> None:
    """book/summary.md from book/claims/*.json (tests/test_book.py checks they agree)."""
    from entk_lib.record import summary_markdown

    path = ROOT / "book" / "summary.md"
    path.write_text(summary_markdown(ROOT / "book" / "claims"))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
