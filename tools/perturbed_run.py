"""Re-execute chapters under another CPU code path and compare them with their committed records.

Training is deterministic on one machine, but another processor rounds differently and grokking
amplifies the difference. This tool makes such a machine on this one: torch's kernels without
vectorization (``ATEN_CPU_CAPABILITY=default``) and MKL's conditional-numerical-reproducibility
path (``MKL_CBWR=COMPATIBLE``), a fresh model cache, and then nbval over the chapters, whose last
cell compares verdicts and key numbers with ``book/claims/<chapter>.json`` within the tolerances
of :data:`entk_lib.record.KINDS`. It then prints, for every recorded number that moved, how far
it moved against its tolerance (the spreads the tolerances are chosen from).

    python tools/perturbed_run.py                      # the chapters whose training is chaotic
    python tools/perturbed_run.py 04_grokking --keep /tmp/perturbed   # keep cache and records

Exit status 0 when every chapter agrees (verdicts equal, numbers within tolerance).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from entk_lib.record import KINDS, OUT_ENV, PERTURBED_CHAPTERS, PERTURBED_ENV, RECORD_ENV, claims_dir

ROOT = Path(__file__).resolve().parents[1]



def spreads(stored: dict, fresh: dict) -> list[tuple[str, str, float, float, float]]:
    """(name, kind, stored, fresh, |change| / tolerance) for every number that changed."""
    rows = []
    for name, new in fresh["numbers"].items():
        old = stored["numbers"].get(name)
        if old is None or old["value"] is None or new["value"] is None or old["value"] == new["value"]:
            continue
        tol = KINDS[new["kind"]]
        allowed = tol.abs + tol.rel * abs(old["value"])
        change = abs(new["value"] - old["value"])
        ratio = change / allowed if allowed else float("inf")
        rows.append((name, new["kind"], old["value"], new["value"], ratio))
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", default=list(PERTURBED_CHAPTERS),
                        help="notebook names without .ipynb")
    parser.add_argument("--keep", type=Path, help="folder for the model cache and fresh records (kept)")
    parser.add_argument("--timeout", type=int, default=3000, help="seconds for the whole run")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="entk-perturbed-"))
    env = {**os.environ, **PERTURBED_ENV, "ENTK_CACHE_DIR": str(work / "cache"),
           OUT_ENV: str(work / "claims")}
    env.pop(RECORD_ENV, None)
    notebooks = [f"book/{c.removesuffix('.ipynb')}.ipynb" for c in args.chapters]
    cmd = [sys.executable, "-m", "pytest", *notebooks, "-q", "-p", "no:cacheprovider"]
    print("running:", *[f"{k}={v}" for k, v in PERTURBED_ENV.items()], *cmd, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=args.timeout)
    for chapter in args.chapters:
        name = chapter.removesuffix(".ipynb")
        fresh_path, stored_path = work / "claims" / f"{name}.json", claims_dir() / f"{name}.json"
        if not fresh_path.exists() or not stored_path.exists():
            print(f"{name}: no record to compare ({fresh_path} or {stored_path} missing)")
            continue
        rows = spreads(json.loads(stored_path.read_text()), json.loads(fresh_path.read_text()))
        print(f"{name}: {len(rows)} numbers moved (name, kind, committed, perturbed, change/tolerance)")
        for row in sorted(rows, key=lambda r: -r[4]):
            print(f"  {row[0]:<55} {row[1]:<8} {row[2]:>12.6g} {row[3]:>12.6g} {row[4]:6.2f}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
