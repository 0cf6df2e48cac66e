"""Test-session hooks for the whole repository (unit tests under tests/, nbval over book/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from entk_lib.record import PERTURBED_CHAPTERS


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected what they do
def pytest_collection_modifyitems(config, items):
    """When the perturbed re-execution test is selected, it re-executes the chaotic chapters
    (``PERTURBED_CHAPTERS``) under another CPU code path and checks them against their records;
    their plain nbval items are then left out, so that each chapter runs once per test session.
    ``pytest book/02_tms.ipynb`` (or ``-m "not perturbed"``) still re-executes them plainly."""
    if not any(item.get_closest_marker("perturbed") for item in items):
        return
    chaotic = {f"{name}.ipynb" for name in PERTURBED_CHAPTERS}
    dropped = [item for item in items if Path(str(item.fspath)).name in chaotic]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]
