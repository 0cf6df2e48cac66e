"""Data-parallel eNTK products (entk_lib.distributed): two gloo ranks under torchrun give the
eigenpairs of one process, and a rank that fails makes the launch fail instead of hang."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from entk_lib.distributed import resolve_group, shard_slice

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "distributed_eigenpairs.py"


def launch(ranks: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([*torchrun, str(TOOL), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)


def eigenpairs(tmp_path, ranks: int, *args: str) -> dict:
    out = tmp_path / f"{ranks}.npz"
    run = launch(ranks, *args, "--out", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(np.load(out))


def min_principal_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.svd(a.T @ b, compute_uv=False).min())


@pytest.mark.parametrize("case", [
    ["--case", "modular", "--p", "7", "--width", "32", "--k", "8"],
    ["--case", "lm", "--windows", "12", "--context", "6", "--layer", "1", "--k", "6", "--steps", "40"],
], ids=["modular-flattened", "lm-gemma3"])
def test_two_ranks_give_the_single_process_eigenpairs(tmp_path, case):
    one, two = eigenpairs(tmp_path, 1, *case), eigenpairs(tmp_path, 2, *case)
    assert int(two["world"]) == 2 and int(one["world"]) == 1
    np.testing.assert_allclose(two["values"], one["values"], rtol=1e-6)
    # subspaces, not single vectors: the vectors of (near-)equal eigenvalues may rotate
    assert min_principal_cosine(one["vectors"], two["vectors"]) > 1 - 1e-6
    gaps = -np.diff(one["values"]) / one["values"][:-1]
    well_separated = np.flatnonzero(gaps > 1e-3)
    cosines = np.abs(np.sum(one["vectors"] * two["vectors"], axis=0))
    assert np.all(cosines[well_separated] > 1 - 1e-5)


def test_a_failing_rank_makes_the_launch_fail_not_hang():
    run = launch(2, "--case", "modular", "--fail-rank", "1", "--timeout", "20", timeout=240)
    assert run.returncode != 0
    assert "fails on purpose" in run.stderr + run.stdout


def test_shards_cover_the_inputs_in_order():
    for n, world in [(10, 1), (10, 3), (49, 2), (5, 5)]:
        shards = [shard_slice(n, r, world) for r in range(world)]
        assert [i for s in shards for i in range(s.start, s.stop)] == list(range(n))
        sizes = [s.stop - s.start for s in shards]
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="cannot be sharded"):
        shard_slice(2, 0, 3)


def test_a_group_needs_an_initialised_torch_distributed():
    assert resolve_group(None) == (None, 0, 1)
    with pytest.raises(ValueError, match="`group`"):
        resolve_group("world")
