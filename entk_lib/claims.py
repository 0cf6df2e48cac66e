"""The claims table that closes every chapter: the paper's claim, its value, ours, a verdict.

The table renders as Markdown in the book and as fixed-width text for nbval, which compares both
representations on re-execution; put only rounded, seeded numbers in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["VERDICTS", "ClaimsTable", "fmt", "fmt_spread", "verdict"]

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "inconclusive")


def verdict(ok: bool | None, *, partial: bool = False) -> str:
    """``reproduced`` if ok, ``partly reproduced`` if only ``partial``, else ``not reproduced``;
    ``inconclusive`` when ``ok`` is None."""
    if ok is None:
        return "inconclusive"
    if ok:
        return "reproduced"
    return "partly reproduced" if partial else "not reproduced"


def fmt(x, digits: int = 2) -> str:
    """A number rounded to ``digits`` decimals (integers stay integers); -0.00 prints as 0.00."""
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    value = round(float(x), digits)
    return f"{0.0 if value == 0 else value:.{digits}f}"


def fmt_spread(values, digits: int = 2) -> str:
    """``mean ± std`` over seeds (population std), e.g. ``26.47 ± 0.31 (n=3)``."""
    arr = np.asarray(values, dtype=float)
    return f"{fmt(arr.mean(), digits)} ± {fmt(arr.std(), digits)} (n={arr.size})"


@dataclass
class _Row:
    claim: str
    paper: str
    measured: str
    verdict: str


class ClaimsTable:
    """Rows of (claim, paper reports, this run measured, verdict)."""

    columns = ("#", "claim", "paper", "measured here", "verdict")

    def __init__(self, title: str):
        self.title = title
        self.rows: list[_Row] = []

    def add(self, claim: str, paper: str, measured: str, verdict_text: str) -> ClaimsTable:
        if verdict_text not in VERDICTS:
            raise ValueError(f"`verdict_text` must be one of {VERDICTS}, got {verdict_text!r}")
        self.rows.append(_Row(claim, paper, measured, verdict_text))
        return self

    def _cells(self) -> list[tuple[str, ...]]:
        return [(str(i + 1), r.claim, r.paper, r.measured, r.verdict) for i, r in enumerate(self.rows)]

    def _repr_markdown_(self) -> str:
        head = "| " + " | ".join(self.columns) + " |\n|" + "---|" * len(self.columns) + "\n"
        body = "".join("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n"
                       for cells in self._cells())
        return f"**{self.title}**\n\n" + head + body

    def __repr__(self) -> str:
        lines = [self.title]
        for cells in self._cells():
            lines.append(f"{cells[0]}. {cells[1]}")
            lines.append(f"   paper: {cells[2]} | measured: {cells[3]} | verdict: {cells[4]}")
        return "\n".join(lines)

    def verdict_counts(self) -> dict[str, int]:
        return {v: sum(r.verdict == v for r in self.rows) for v in VERDICTS}
