"""The claims table that closes every chapter: the paper's claim, where the paper makes it, its
value, ours, a baseline and a verdict.

Every row names its ``source`` in the paper (version and place: section, figure, table,
footnote) and its ``kind``: ``paper`` (a claim the paper makes), ``referee`` (a question a referee
of the paper would ask, answered here) or ``ours`` (an extension beyond the paper). The
``measured`` cell leads with the number the verdict turns on; per-seed spreads and secondary
numbers go in ``details``, which the rendered table shows in a dropdown under the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["KINDS", "VERDICTS", "ClaimsTable", "TextTable", "fmt", "fmt_spread", "verdict"]

VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "inconclusive")

#: What a row is: the paper's claim, a referee's question, or our extension beyond the paper.
KINDS = {"paper": "the paper's claim", "referee": "a referee's question", "ours": "ours, beyond the paper"}


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
class Row:
    claim: str
    source: str
    kind: str
    paper: str
    measured: str
    baseline: str
    verdict: str
    details: str


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class TextTable:
    """Any other table of a chapter: Markdown in the book (``_repr_markdown_``), aligned text
    for nbval and ``print`` (``__str__``; columns padded on the ``align`` side: "left" or
    "right"). ``title`` is optional."""

    def __init__(self, title: str | None, header: list, rows: list[list], *, align: str = "left"):
        if align not in ("left", "right"):
            raise ValueError(f"`align` must be 'left' or 'right', got {align!r}")
        self.title, self.align = title, align
        self.header = [str(h) for h in header]
        self.rows = [[str(c) for c in r] for r in rows]

    def _repr_markdown_(self) -> str:
        lines = ["| " + " | ".join(_md(h) for h in self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(_md(c) for c in r) + " |" for r in self.rows]
        return (f"**{self.title}**\n\n" if self.title else "") + "\n".join(lines) + "\n"

    def __str__(self) -> str:
        cells = [self.header, *self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.header))]
        pad = str.ljust if self.align == "left" else str.rjust
        sep = "  "
        lines = [sep.join(pad(c, w) for c, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(([self.title] if self.title else []) + lines)

    __repr__ = __str__


class ClaimsTable:
    """Rows of (claim, source in the paper, kind, paper reports, measured, baseline, verdict)."""

    columns = ("#", "claim", "where in the paper", "kind", "paper", "measured here", "baseline", "verdict")

    def __init__(self, title: str):
        self.title = title
        self.rows: list[Row] = []

    def add(self, claim: str, paper: str, measured: str, verdict_text: str, *, source: str,
            kind: str = "paper", baseline: str = "", details: str = "") -> ClaimsTable:
        """One row. ``source`` (required) is the version and place in the paper, e.g.
        ``"v1 Sec. 3, fn. 3"``; for rows of kind ``ours`` it names what the row extends."""
        if verdict_text not in VERDICTS:
            raise ValueError(f"`verdict_text` must be one of {VERDICTS}, got {verdict_text!r}")
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {tuple(KINDS)}, got {kind!r}")
        if not source.strip():
            raise ValueError("`source` must name the version and place in the paper, got ''")
        self.rows.append(Row(claim, source, kind, paper, measured, baseline or "—", verdict_text, details))
        return self

    def _cells(self) -> list[tuple[str, ...]]:
        return [(str(i + 1), r.claim, r.source, r.kind, r.paper, r.measured, r.baseline, r.verdict)
                for i, r in enumerate(self.rows)]

    def _repr_markdown_(self) -> str:
        head = "| " + " | ".join(self.columns) + " |\n|" + "---|" * len(self.columns) + "\n"
        body = "".join("| " + " | ".join(_md(c) for c in cells) + " |\n" for cells in self._cells())
        details = [(i + 1, r.details) for i, r in enumerate(self.rows) if r.details]
        out = f"**{self.title}**\n\n" + head + body
        if details:
            items = "\n".join(f"- **{i}.** {text}" for i, text in details)
            summary = "<summary>Details: per-seed values and secondary numbers</summary>"
            out += f"\n<details>{summary}\n\n{items}\n\n</details>\n"
        return out

    def __repr__(self) -> str:
        lines = [self.title]
        for cells, row in zip(self._cells(), self.rows, strict=True):
            lines.append(f"{cells[0]}. {cells[1]} [{row.source}; {row.kind}]")
            lines.append(f"   paper: {cells[4]} | measured: {cells[5]} | baseline: {cells[6]} "
                         f"| verdict: {cells[7]}")
            if row.details:
                lines.append(f"   details: {row.details}")
        return "\n".join(lines)

    def verdict_counts(self) -> dict[str, int]:
        return {v: sum(r.verdict == v for r in self.rows) for v in VERDICTS}
