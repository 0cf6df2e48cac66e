"""Test-session hooks for the whole repository (unit tests under tests/, nbval over book/)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from entk_lib.record import PERTURBED_CHAPTERS

ROOT = Path(__file__).resolve().parent


def start_perturbed_run() -> dict:
    """Launch ``tools/perturbed_run.py`` in the background; its output goes to a log file."""
    work = Path(tempfile.mkdtemp(prefix="entk-perturbed-"))
    log = (work / "log.txt").open("w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "perturbed_run.py"), "--keep", str(work)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return {"proc": proc, "log": work / "log.txt", "work": work}


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected what they do
def pytest_collection_modifyitems(config, items):
    """When the perturbed re-execution test is selected, it re-executes the chaotic chapters
    (``PERTURBED_CHAPTERS``) under another CPU code path and checks them against their records;
    their plain nbval items are then left out, so that each chapter runs once per session, and the
    test runs last. (It does not run beside the other notebooks: two torch processes with a thread
    per core each made both several times slower on two cores, the OpenMP threads spinning.)
    ``pytest book/02_tms.ipynb`` (or ``-m "not perturbed"``) still re-executes them plainly."""
    perturbed = [item for item in items if item.get_closest_marker("perturbed")]
    if not perturbed:
        return
    chaotic = {f"{name}.ipynb" for name in PERTURBED_CHAPTERS}
    dropped = [item for item in items if Path(str(item.fspath)).name in chaotic]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = [item for item in items if item not in dropped and item not in perturbed] + perturbed


def pytest_configure(config):
    config.entk_perturbed_run = None  # tests/test_perturbed.py reads it
    config.entk_start_perturbed_run = start_perturbed_run


def pytest_unconfigure(config):
    run = getattr(config, "entk_perturbed_run", None)
    if run is not None and run["proc"].poll() is None:  # interrupted session: do not leave it running
        run["proc"].kill()
