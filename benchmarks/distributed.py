"""Benchmark: eNTK eigenpairs with the products on 1 and on 2 ranks (torchrun, gloo on CPUs).

    python benchmarks/distributed.py            # writes benchmarks/results_distributed.md

Each configuration runs ``tools/distributed_eigenpairs.py`` under ``torchrun --standalone``
(one torch thread per rank), ``--repeats`` times, and reports the median time (operator build and
Lanczos to tolerance), the products, and the largest relative eigenvalue difference from the one-
rank run. One rank with as many threads as the two ranks together is shown for comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "distributed_eigenpairs.py"
CASES = {
    "modular p=29, width 4096, flattened (24389 x 24389), vjp backend, k=20 (products dominate)": [
        "--case", "modular", "--p", "29", "--width", "4096", "--k", "20", "--backend", "vjp"],
    "modular p=17, width 512, flattened (4913 x 4913), structured backend, k=20 (cheap products)": [
        "--case", "modular", "--p", "17", "--width", "512", "--k", "20"],
    "Gemma-3 (random, d=16, 3 layers) logit eNTK of layer 1 down_proj, 256 windows x 12 tokens, "
    "k=10, 30 Lanczos steps": ["--case", "lm", "--windows", "256", "--context", "12", "--layer", "1",
                               "--k", "10", "--steps", "30"],
}


def run(ranks: int, threads: int, args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.npz"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
               str(TOOL), *args, "--out", str(out)]
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                            "ENTK_THREADS_PER_RANK": str(threads)}
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - start
        return dict(np.load(out)) | {"wall": wall}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_distributed.md"))
    args = parser.parse_args(argv)
    lines = ["# Sharded eNTK products: 1 vs 2 ranks", "",
             f"Written by `python benchmarks/distributed.py` on {time.strftime('%Y-%m-%d')}: "
             f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__}, gloo backend, "
             f"median of {args.repeats} launches. `seconds`: operator build + Lanczos inside the ranks; "
             "`launch`: the whole torchrun command (process start, imports, rendezvous).", ""]
    for title, case in CASES.items():
        lines += [f"## {title}", "", "| ranks x threads | seconds | launch (s) | products | speed-up | "
                  "max rel. eigenvalue diff vs 1 rank |", "|---|---|---|---|---|---|"]
        base = None
        for ranks, threads in [(1, 1), (2, 1), (1, 2)]:
            runs = [run(ranks, threads, case) for _ in range(args.repeats)]
            sec = float(np.median([r["seconds"] for r in runs]))
            wall = float(np.median([r["wall"] for r in runs]))
            values = runs[0]["values"]
            base = base or {"sec": sec, "values": values}
            diff = float(np.max(np.abs(values - base["values"]) / np.abs(base["values"])))
            lines.append(f"| {ranks} x {threads} | {sec:.2f} | {wall:.1f} | {int(runs[0]['products'])} | "
                         f"{base['sec'] / sec:.2f}x | {diff:.1e} |")
            print(lines[-1], flush=True)
        lines.append("")
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
