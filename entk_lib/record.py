"""A chapter's key numbers and verdicts as data, checked on re-execution by what they mean.

Training on a CPU is deterministic on one machine but not across processors: another instruction
set or BLAS code path rounds differently, and chaotic training (grokking) amplifies the rounding.
Comparing stored notebook outputs digit by digit therefore fails on any machine but the one that
executed them. Instead, every chapter ends with a :class:`ChapterRecord`:

* the **verdicts** of its claims table, which must be equal;
* its **key numbers**, each with a *kind* (:data:`KINDS`) that states how far a re-execution may
  move it: exact integers (cliff positions, key frequencies) must be equal, a drop ratio or an
  epoch may move by its kind's tolerance.

The record is written to ``book/claims/<chapter>.json`` when a chapter is executed to be committed
(``tools/execute_chapters.py`` sets ``ENTK_RECORD_CLAIMS=1``). On any other execution at the same
parameters (nbval, a user's re-run) :meth:`ChapterRecord.check` compares this run with the
committed record and prints one line when everything agrees, or every disagreement otherwise, so
that nbval, which checks that printed line, fails with a readable list.

The tolerances below were chosen from measured spreads: the chapters' stored outputs from the
machine that first executed them against the same chapters executed on a 2-core AMD EPYC (AVX2,
MKL), and, on that machine, against a second CPU code path
(``MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default``, ``tools/perturbed_run.py``); each is at
least twice the largest change seen for its kind (given in each kind's ``why`` text).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cache import params_hash
from .claims import ClaimsTable
from .resources import run_cost

__all__ = ["KINDS", "PERTURBED_CHAPTERS", "PERTURBED_ENV", "ChapterRecord", "Tolerance", "claims_dir",
           "compare_records"]

#: Environment variable that makes :meth:`ChapterRecord.check` write the committed record.
RECORD_ENV = "ENTK_RECORD_CLAIMS"
#: Environment variable naming a folder where every executed chapter also writes its record
#: (used by ``tools/perturbed_run.py`` to measure spreads).
OUT_ENV = "ENTK_CLAIMS_OUT"


#: Chapters whose training amplifies rounding (long Adam runs, grokking): the test suite re-executes
#: them under :data:`PERTURBED_ENV` (``tools/perturbed_run.py``).
PERTURBED_CHAPTERS = ("02_tms", "03_modular_addition", "06_transformer")
#: Another CPU code path on the same machine: torch's kernels without vectorization and MKL's
#: conditional-numerical-reproducibility path. It moves the chapters' numbers by as much as another
#: processor does (measured in the chapters' records).
PERTURBED_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


@dataclass(frozen=True)
class Tolerance:
    """``|new - old| <= abs + rel * |old|``; ``why`` says what it was measured from."""

    abs: float = 0.0
    rel: float = 0.0
    why: str = ""

    def allows(self, old: float, new: float) -> bool:
        return abs(new - old) <= self.abs + self.rel * abs(old) + 1e-12

    def text(self) -> str:
        if self.abs == 0 and self.rel == 0:
            return "exact"
        parts = ([f"±{self.abs:g}"] if self.abs else []) + ([f"±{100 * self.rel:g}%"] if self.rel else [])
        return " + ".join(parts)


#: Tolerance per kind of number (see the module docstring for how they were chosen).
KINDS: dict[str, Tolerance] = {
    "exact": Tolerance(why="integers that define a result (cliff positions, key frequencies, "
                           "represented-feature counts, verdict counts): no change seen"),
    "ratio": Tolerance(rel=0.10, why="eigenvalue drop ratios lambda_k/lambda_(k+1) and kernel drifts: "
                                     "largest change seen 1.7% (TMS ratio at r, 1.20 -> 1.18)"),
    "overlap": Tolerance(abs=0.5, why="subspace overlaps (sum of squared projections, out of a family "
                                      "dimension of 4-28): largest change seen 0.02"),
    "score": Tolerance(abs=0.05, why="numbers in [0, 1]: |cos|, matched scores, R^2, AP, AUROC, "
                                     "fractions of features or windows: largest change seen 0.02"),
    "accuracy": Tolerance(abs=0.15, why="test accuracies (and their gaps), means over seeds: largest "
                                        "change seen 0.067 (accuracy after ablating W2's top singular "
                                        "directions, a network near collapse: 0.10 -> 0.036)"),
    "count": Tolerance(abs=2.0, why="mean counts over seeds of features or directions above a "
                                    "threshold: largest change seen 0.7 (11.0 -> 11.7)"),
    "epoch": Tolerance(abs=20, rel=0.15, why="epochs of training events, checkpointed every 10-20 "
                                             "epochs: largest change seen 120 of 1440 (8%)"),
    "pvalue": Tolerance(abs=0.02, why="permutation and null-draw p-values: no change seen (they rest on "
                                      "seeded draws)"),
    "loose": Tolerance(rel=1.0, why="numbers reported for context only, that rounding moves by up to "
                                    "half (the Transformer's key-frequency energy ratio 83 -> 56, a "
                                    "ratio to the small non-key powers); their verdicts are exact"),
}


def claims_dir() -> Path:
    """Where committed records live: ``$ENTK_CLAIMS_DIR``, else ``book/claims`` of the checkout
    this package was installed from (editable install), else ``./claims``."""
    if os.environ.get("ENTK_CLAIMS_DIR"):
        return Path(os.environ["ENTK_CLAIMS_DIR"])
    repo_claims = Path(__file__).resolve().parents[1] / "book" / "claims"
    return repo_claims if repo_claims.parent.is_dir() else Path("claims")


def _plain(value: Any) -> Any:
    """JSON-safe version of a parameter value (numpy scalars, tuples, dataclasses)."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _number(value: Any) -> float | None:
    """A finite float, or None for "never" / missing / NaN."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


@dataclass
class ChapterRecord:
    """Verdicts and key numbers of one chapter's execution.

    Parameters
    ----------
    chapter : str
        The notebook's name without ``.ipynb`` (``"02_tms"``); names the record file.
    params : dataclass or dict
        The chapter's validated parameters: a record is only compared with one made at the same
        parameters.
    """

    chapter: str
    params: Any
    verdicts: list[dict] = field(default_factory=list)
    numbers: dict[str, dict] = field(default_factory=dict)
    #: wall time and peak memory of the execution (:func:`entk_lib.resources.run_cost`), set by
    #: :meth:`check`; saved with the record but never compared
    cost: dict | None = None

    def __post_init__(self):
        self.params = _plain(self.params)

    # -- building ------------------------------------------------------------------------------
    def add_claims(self, table: ClaimsTable) -> ChapterRecord:
        """The verdict of every row of a claims table (rows keyed by their number)."""
        for i, row in enumerate(table.rows, start=1):
            self.verdicts.append({"row": i, "claim": row.claim, "source": row.source, "kind": row.kind,
                                  "verdict": row.verdict})
        return self

    def add(self, name: str, value: Any, kind: str) -> ChapterRecord:
        """One number (or None for "never"); a list adds ``name[i]`` for each entry."""
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {sorted(KINDS)}, got {kind!r}")
        if isinstance(value, (list, tuple, np.ndarray)):
            for i, v in enumerate(np.asarray(value, dtype=object).ravel().tolist()):
                self.add(f"{name}[{i}]", v, kind)
            return self
        if name in self.numbers:
            raise ValueError(f"number {name!r} was added twice")
        self.numbers[name] = {"value": _number(value), "kind": kind}
        return self

    def add_many(self, values: dict[str, Any], kind: str, prefix: str = "") -> ChapterRecord:
        for name, value in values.items():
            self.add(f"{prefix}{name}", value, kind)
        return self

    # -- storage -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {"chapter": self.chapter, "params_hash": params_hash(self.params), "params": self.params,
               "verdicts": self.verdicts, "numbers": self.numbers}
        if self.cost is not None:
            out["cost"] = self.cost
        return out

    def save(self, path: Path) -> Path:
        """Write atomically (temporary file, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            text = _dumps(self.to_dict())
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def path(self) -> Path:
        return claims_dir() / f"{self.chapter}.json"

    # -- checking ------------------------------------------------------------------------------
    def check(self) -> str:
        """Compare with the committed record (or write it, under ``ENTK_RECORD_CLAIMS=1``) and
        return the text to print: one line when all agree, every disagreement otherwise."""
        self.cost = run_cost()  # kept with the record, never compared (it depends on the machine)
        fresh = self.to_dict()
        if os.environ.get(OUT_ENV):
            self.save(Path(os.environ[OUT_ENV]) / f"{self.chapter}.json")
        if os.environ.get(RECORD_ENV) == "1":
            self.save(self.path())
        if not self.path().exists():
            return f"no committed record at {self.path()}: nothing to compare"
        stored = json.loads(self.path().read_text())
        if stored["params_hash"] != fresh["params_hash"]:
            return (f"this run's parameters differ from those of the committed record "
                    f"{self.path().name}: nothing to compare")
        problems = compare_records(stored, fresh)
        n_exact = sum(v["kind"] == "exact" for v in fresh["numbers"].values())
        if problems:
            return f"re-execution disagrees with {self.path().name}:\n" + "\n".join(problems)
        return (f"re-execution agrees with {self.path().name}: {len(fresh['verdicts'])} verdicts equal, "
                f"{len(fresh['numbers'])} key numbers within their tolerances ({n_exact} exact)")


def _dumps(record: dict) -> str:
    """JSON with one verdict and one number per line (readable diffs)."""
    parts = []
    for key, value in record.items():
        if isinstance(value, dict) and key == "numbers":
            inner = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            parts.append(f' "numbers": {{\n{inner}\n }}')
        elif isinstance(value, list):
            inner = ",\n".join(f"  {json.dumps(v)}" for v in value)
            parts.append(f' {json.dumps(key)}: [\n{inner}\n ]')
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def compare_records(stored: dict, fresh: dict) -> list[str]:
    """Every disagreement between two records, as readable lines (empty if they agree)."""
    problems = []
    old_v = {v["row"]: v for v in stored["verdicts"]}
    new_v = {v["row"]: v for v in fresh["verdicts"]}
    for row in sorted(set(old_v) | set(new_v)):
        a, b = old_v.get(row), new_v.get(row)
        if a is None or b is None or a["claim"] != b["claim"]:
            problems.append(f"claim {row}: rows differ ({a and a['claim']!r} vs {b and b['claim']!r})")
        elif a["verdict"] != b["verdict"]:
            problems.append(f"claim {row} ({a['claim'][:60]}): verdict {a['verdict']!r} -> {b['verdict']!r}")
    old_n, new_n = stored["numbers"], fresh["numbers"]
    for name in sorted(set(old_n) - set(new_n)):
        problems.append(f"{name}: missing from this run")
    for name in sorted(set(new_n) - set(old_n)):
        problems.append(f"{name}: not in the committed record")
    for name in [n for n in new_n if n in old_n]:
        a, b = old_n[name], new_n[name]
        tol = KINDS[b["kind"]]
        if a["kind"] != b["kind"]:
            problems.append(f"{name}: kind {a['kind']} -> {b['kind']}")
        elif a["value"] is None or b["value"] is None:
            if a["value"] is not b["value"]:
                problems.append(f"{name}: {a['value']} -> {b['value']}")
        elif not tol.allows(a["value"], b["value"]):
            problems.append(f"{name}: {a['value']:.6g} -> {b['value']:.6g} "
                            f"(kind {b['kind']}, tolerance {tol.text()})")
    return problems


SUMMARY_HEADER = """# What reproduces: every claim of the book

Every chapter ends with a table of the paper's claims against what its execution measured. This
page gathers those verdicts in one place. It is generated from the records that the chapters'
executions write (`book/claims/<chapter>.json`, by `python tools/execute_chapters.py`), and a test
checks that it matches them, so it cannot drift from the chapters. The rules that decide each
verdict are stated in each chapter before its results; the measured values, baselines and details
are in the chapter's own table.

*Kind*: **paper**, a claim the paper makes (the place in the paper is given: v1 is the text of
version 1; v4 places come from a reading of version 4); **referee**, a question a referee would ask
and the chapter answers; **ours**, an extension beyond the paper.
"""


def summary_markdown(directory: Path | None = None) -> str:
    """The reproduction summary page (``book/summary.md``) from every chapter record in
    ``directory`` (default :func:`claims_dir`): counts of verdicts per chapter, then every claim."""
    from .claims import VERDICTS

    directory = claims_dir() if directory is None else Path(directory)
    records = [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]
    if not records:
        raise FileNotFoundError(f"no chapter records (*.json) in {directory}")
    head = "| chapter | " + " | ".join(VERDICTS) + " | claims |\n|---|" + "---|" * (len(VERDICTS) + 1)
    lines = [SUMMARY_HEADER, "## Verdicts by chapter", "", head]
    totals = dict.fromkeys(VERDICTS, 0)
    for rec in records:
        counts = {v: sum(r["verdict"] == v for r in rec["verdicts"]) for v in VERDICTS}
        for v in VERDICTS:
            totals[v] += counts[v]
        lines.append(f"| [{rec['chapter']}]({rec['chapter']}.ipynb) | "
                     + " | ".join(str(counts[v]) for v in VERDICTS) + f" | {len(rec['verdicts'])} |")
    lines.append("| **all** | " + " | ".join(f"**{totals[v]}**" for v in VERDICTS)
                 + f" | **{sum(totals.values())}** |")
    lines += ["", "Of the paper's own claims only (kind *paper*):", "",
              "| " + " | ".join(VERDICTS) + " |", "|" + "---|" * len(VERDICTS)]
    paper = [r for rec in records for r in rec["verdicts"] if r.get("kind", "paper") == "paper"]
    lines.append("| " + " | ".join(str(sum(r["verdict"] == v for r in paper)) for v in VERDICTS) + " |")
    lines += ["", "## What each chapter costs", "",
              "Measured by the execution that wrote each record (`entk_lib.resources.run_cost`): wall time "
              "of the notebook's kernel from its start, its peak resident memory and that of its largest "
              "subprocess, the torch threads it used, and how many model-cache entries it read and "
              "computed (`?`: not counted by that execution). Wall times depend on the machine, the "
              "threads, the cache and on what else ran beside the chapter, so read them as rough "
              "figures; the memory peaks hold across machines. A chapter prints the same line for your "
              "own run at its end.", "",
              "| chapter | wall time | peak resident memory | largest subprocess | torch threads "
              "| cache read / computed | machine |",
              "|---|---|---|---|---|---|---|"]
    for rec in records:
        c = rec.get("cost")
        if c:
            lines.append(f"| {rec['chapter']} | {c['wall_s'] / 60:.1f} min | {c['peak_rss_gib']:.2f} GiB | "
                         f"{c['child_peak_rss_gib']:.2f} GiB | {c.get('threads') or '?'} | "
                         f"{c.get('cache_hits', '?')} / {c.get('cache_misses', '?')} | {c['machine']} |")
        else:
            lines.append(f"| {rec['chapter']} | not measured | | | | | |")
    lines += ["", "## Every claim", "", "| chapter | # | where in the paper | kind | claim | verdict |",
              "|---|---|---|---|---|---|"]
    for rec in records:
        for r in rec["verdicts"]:
            claim = r["claim"].replace("|", "\\|")
            lines.append(f"| {rec['chapter']} | {r['row']} | {r.get('source', '')} | {r.get('kind', '')} "
                         f"| {claim} | {r['verdict']} |")
    return "\n".join(lines) + "\n"
