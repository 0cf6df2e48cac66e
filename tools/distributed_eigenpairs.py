"""Top eNTK eigenpairs with the products sharded over ranks (torchrun), for checks and timing.

    torchrun --standalone --nproc_per_node 2 tools/distributed_eigenpairs.py --case modular --out out.npz
    torchrun --standalone --nproc_per_node 2 tools/distributed_eigenpairs.py --case lm --out out.npz

``--case modular``: the flattened eNTK (p^3 x p^3) of the modular-addition MLP at initialization
(``entk_operator(..., group="world")``). ``--case lm``: the logit eNTK of a layer's
``mlp.down_proj`` in a small random Gemma-3 over random token windows (``LMKernelOperator(...,
group="world")``). One process (``--nproc_per_node 1``) computes the same without
``torch.distributed`` collectives. Rank 0 writes the eigenvalues, eigenvectors, products and
seconds to ``--out`` (.npz). Backend: gloo on CPUs, NCCL when CUDA is available; every collective
times out after ``--timeout`` seconds, so a rank that dies (``--fail-rank``, for the tests) makes
the launch fail instead of hang.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

import entk_lib
from entk_lib.params import check_choice, check_int


def modular_operator(args, group):
    from entk_lib.models.modular import ModularMLP, modular_data

    model = ModularMLP(args.p, args.width, generator=torch.Generator().manual_seed(0)).double().eval()
    x = modular_data(args.p, torch.float64)[0]
    return entk_lib.entk_operator(model, x, collapse="flattened", backend=args.backend, group=group)


def lm_operator(args, group):
    from entk_lib.lm import kernel as lmk
    from entk_lib.lm.models import tiny_gemma3, unembedding

    model = tiny_gemma3(0, layers=3)
    ids = torch.randint(3, 48, (args.windows, args.context), generator=torch.Generator().manual_seed(1))
    acts = lmk.capture_windows(model, ids, layers=[args.layer], batch_size=16)
    root = lmk.sqrt_unembedding_gram(unembedding(model))
    return lmk.LMKernelOperator(model, acts, args.layer, "mlp.down_proj", root, group=group)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="modular", help="modular | lm")
    parser.add_argument("--p", type=int, default=7, help="modulus of the modular MLP")
    parser.add_argument("--width", type=int, default=32, help="hidden width of the modular MLP")
    parser.add_argument("--backend", default="auto", help="entk_operator backend (modular case)")
    parser.add_argument("--windows", type=int, default=12, help="windows of the LM case")
    parser.add_argument("--context", type=int, default=6, help="tokens per window (LM case)")
    parser.add_argument("--layer", type=int, default=1, help="layer of the LM case")
    parser.add_argument("--k", type=int, default=8, help="eigenpairs")
    parser.add_argument("--steps", type=int, default=0, help="fixed Lanczos steps (0: to tolerance)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a collective fails")
    parser.add_argument("--fail-rank", type=int, default=-1, help="this rank raises (tests)")
    parser.add_argument("--out", default="", help=".npz written by rank 0")
    args = parser.parse_args(argv)
    check_choice("case", args.case, ("modular", "lm"))
    check_int("k", args.k, minimum=1)
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    group = None
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=args.timeout))
        group = "world"
    rank = dist.get_rank() if world > 1 else 0
    torch.set_num_threads(max(1, int(os.environ.get("ENTK_THREADS_PER_RANK", "1"))))
    try:
        if rank == args.fail_rank:
            raise RuntimeError(f"rank {rank} fails on purpose (--fail-rank {args.fail_rank})")
        start = time.perf_counter()
        op = (modular_operator if args.case == "modular" else lm_operator)(args, group)
        built = time.perf_counter() - start
        pairs = entk_lib.top_eigenpairs(op, args.k, solver="lanczos", steps=args.steps or None, seed=0)
        seconds = time.perf_counter() - start
        if rank == 0:
            print(f"{args.case}: {world} rank(s), operator {op.shape[0]} x {op.shape[1]}, "
                  f"{op.n_products} products, {built:.2f} s to build, {seconds:.2f} s in all; "
                  f"top eigenvalues {np.round(pairs.values[:4], 6)}", flush=True)
            if args.out:
                np.savez(args.out, values=pairs.values, vectors=pairs.vectors, products=op.n_products,
                         seconds=seconds, build_seconds=built, world=world)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
