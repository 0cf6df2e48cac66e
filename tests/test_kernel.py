"""The dense eNTK engine against independent computations."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import entk_lib
from conftest import TiedUnembed, TinySeq, finite_difference_jacobian, mlp
from entk_lib import COLLAPSES, entk, entk_by_layer, entk_jacobian


def full_from_jacobian(jac):
    """K[a, b, i, j] from J (C, N, P), written independently of the engine."""
    return torch.einsum("iap,jbp->abij", jac, jac)


def collapse_from_full(full, collapse):
    n, _, c, _ = full.shape
    if collapse == "full":
        return full
    if collapse == "flattened":
        return full.permute(2, 0, 3, 1).reshape(c * n, c * n)
    if collapse == "per_class":
        return torch.stack([full[:, :, i, i] for i in range(c)])
    if collapse == "class_mean":
        return sum(full[:, :, i, i] for i in range(c)) / c
    return full.sum(dim=(2, 3)) / c


@pytest.mark.parametrize("fixture", ["small_mlp", "two_heads"])
def test_kernel_matches_finite_differences(fixture, request):
    model, x = request.getfixturevalue(fixture)
    reference = full_from_jacobian(finite_difference_jacobian(model, x))
    for collapse in COLLAPSES:
        got = entk(model, x, collapse=collapse)
        want = collapse_from_full(reference, collapse)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-8)


def test_jacobian_matches_finite_differences(two_heads):
    model, x = two_heads
    jac = entk_jacobian(model, x)
    assert jac.shape[:2] == (model(x).shape[1], x.shape[0])  # (C, N, P), as documented
    torch.testing.assert_close(jac, finite_difference_jacobian(model, x), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(entk_jacobian(model, x, backend="jacobian"), jac)


def test_sequence_model_with_embeddings_matches_finite_differences(tiny_seq):
    model, ids = tiny_seq
    plan = entk_lib.entk_plan(model, ids)
    backends = {p.name: p.backend for p in plan.params.values()}
    assert backends["tok.weight"] == "structured" and backends["mix.weight"] == "structured"
    assert backends["pos.weight"] == "jacobian"  # called on positions, not on the batch
    reference = full_from_jacobian(finite_difference_jacobian(model, ids))
    torch.testing.assert_close(entk(model, ids, collapse="full"), reference, rtol=1e-6, atol=1e-8)


def test_collapses_are_slices_and_sums_of_full(small_mlp):
    model, x = small_mlp
    full = entk(model, x, collapse="full")
    n, _, c, _ = full.shape
    flat = entk(model, x, collapse="flattened")
    for i in range(c):
        for j in range(c):
            torch.testing.assert_close(flat[i * n:(i + 1) * n, j * n:(j + 1) * n], full[:, :, i, j])
    per_class = entk(model, x, collapse="per_class")
    torch.testing.assert_close(per_class, torch.diagonal(full, dim1=2, dim2=3).permute(2, 0, 1))
    torch.testing.assert_close(entk(model, x, collapse="class_mean"), per_class.mean(0))
    torch.testing.assert_close(entk(model, x, collapse="sum_logits"), full.sum((2, 3)) / c)


@pytest.mark.parametrize("collapse", COLLAPSES)
@pytest.mark.parametrize("fixture", ["small_mlp", "two_heads", "tiny_seq"])
def test_structured_equals_generic(fixture, collapse, request):
    model, x = request.getfixturevalue(fixture)
    auto = entk(model, x, collapse=collapse)
    torch.testing.assert_close(auto, entk(model, x, collapse=collapse, backend="jacobian"))
    assert torch.equal(auto, entk(model, x, collapse=collapse, backend="structured"))  # "auto" is it


@pytest.mark.parametrize("layers", [["0"], ["2.weight"], ["0", "4.bias"], "4"])
def test_layer_selection_structured_equals_generic(small_mlp, layers):
    model, x = small_mlp
    for collapse in ("flattened", "class_mean"):
        torch.testing.assert_close(entk(model, x, collapse=collapse, layers=layers),
                                   entk(model, x, collapse=collapse, layers=layers, backend="jacobian"))


@pytest.mark.parametrize("by", ["module", "parameter"])
@pytest.mark.parametrize("fixture", ["small_mlp", "two_heads", "tiny_seq"])
def test_layerwise_kernels_sum_to_total(fixture, by, request):
    model, x = request.getfixturevalue(fixture)
    for collapse in ("flattened", "sum_logits"):
        parts = entk_by_layer(model, x, collapse=collapse, by=by)
        n_groups = len({n.rpartition(".")[0] for n, _ in model.named_parameters()})
        assert len(parts) == (n_groups if by == "module" else len(list(model.parameters())))
        torch.testing.assert_close(sum(parts.values()), entk(model, x, collapse=collapse))


def test_layer_kernel_equals_jacobian_of_that_layer(small_mlp):
    model, x = small_mlp
    jac = finite_difference_jacobian(model, x)
    sizes = [p.numel() for p in model.parameters()]
    start = sum(sizes[:2])  # parameters of module "2" come after module "0"'s weight and bias
    sub = jac[:, :, start:start + sizes[2] + sizes[3]]
    torch.testing.assert_close(entk(model, x, collapse="full", layers="2"), full_from_jacobian(sub),
                               rtol=1e-6, atol=1e-8)


def test_symmetric_psd_and_permutation_invariant(two_heads):
    model, x = two_heads
    k = entk(model, x, collapse="flattened")
    torch.testing.assert_close(k, k.T)
    assert torch.linalg.eigvalsh(k).min() > -1e-10 * k.diagonal().max()
    perm = torch.tensor([2, 0, 3, 1])
    full, full_p = entk(model, x, collapse="full"), entk(model, x[perm], collapse="full")
    torch.testing.assert_close(full_p, full[perm][:, perm])


def test_cross_kernel_is_a_block_of_the_joint_kernel(small_mlp):
    model, x = small_mlp
    x2 = torch.randn(3, 3, dtype=torch.float64)
    joint = entk(model, torch.cat([x, x2]), collapse="full")
    for collapse in ("full", "per_class", "class_mean"):
        got = entk(model, x, x2, collapse=collapse)
        want = collapse_from_full(joint[:5, 5:].contiguous(), collapse) if collapse != "per_class" \
            else torch.diagonal(joint[:5, 5:], dim1=2, dim2=3).permute(2, 0, 1)
        torch.testing.assert_close(got, want)


def test_output_weights_scale_rows(small_mlp):
    model, x = small_mlp
    w = torch.tensor([1.0, 0.5, 2.0, 0.1], dtype=torch.float64)
    full = entk(model, x, collapse="full")
    torch.testing.assert_close(entk(model, x, collapse="full", output_weights=w),
                               full * w[None, None, :, None] * w[None, None, None, :])
    torch.testing.assert_close(entk(model, x, collapse="class_mean", output_weights=w),
                               (torch.diagonal(full, dim1=2, dim2=3) * w**2).mean(-1))


def test_chunked_blocks_equal_all_at_once(tiny_seq):
    model, ids = tiny_seq
    ids = torch.randint(0, 7, (23, 3), generator=torch.Generator().manual_seed(5))
    for collapse in ("flattened", "per_class", "class_mean"):
        big = entk(model, ids, collapse=collapse)
        # budgets that hold the kernel but force chunks of two inputs (all factors kept), and the
        # block-pair path with chunks of two inputs (factors ~2.8 kB per input)
        for extra in (150_000, 60_000):
            budget = big.numel() * 8 + extra
            torch.testing.assert_close(entk(model, ids, collapse=collapse, memory_budget=budget), big)
            cross = entk(model, ids[:9], ids[9:], collapse=collapse, memory_budget=budget)
            torch.testing.assert_close(cross, entk(model, ids[:9], ids[9:], collapse=collapse))


def test_padding_row_is_excluded_like_in_training():
    """autograd never moves ``Embedding.weight[padding_idx]``, so its kernel terms are dropped
    (finite differences of the forward pass would see them: zero those columns)."""
    torch.manual_seed(0)
    model = TinySeq(padding_idx=0).double()
    ids = torch.tensor([[0, 1, 2], [3, 0, 0], [4, 5, 6], [0, 0, 1]])
    jac = finite_difference_jacobian(model, ids)
    jac[:, :, : model.tok.embedding_dim] = 0.0  # tok.weight[0] comes first in parameter order
    reference = full_from_jacobian(jac)
    torch.testing.assert_close(entk(model, ids, collapse="full", backend="jacobian"), reference,
                               rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(entk(model, ids, collapse="full"), reference, rtol=1e-6, atol=1e-8)


def test_weight_used_outside_its_module_falls_back_to_generic():
    torch.manual_seed(0)
    model = TiedUnembed().double()
    ids = torch.randint(0, 6, (4, 3), generator=torch.Generator().manual_seed(0))
    plan = entk_lib.entk_plan(model, ids)
    assert plan.params["emb.weight"].backend == "jacobian"
    assert plan.params["mix.weight"].backend == "structured"
    reference = full_from_jacobian(finite_difference_jacobian(model, ids))
    torch.testing.assert_close(entk(model, ids, collapse="full"), reference, rtol=1e-6, atol=1e-8)


def test_tied_weight_is_caught_in_a_model_too_large_for_an_explicit_check(caplog):
    """The structured path is cross-checked by Jacobian-vector products, whatever the size: here
    the explicit pilot Jacobian would hold 2 x 600 x 42,560 = 51M entries (the old check skipped
    models above 32M entries and would have used the wrong, untied kernel)."""
    torch.manual_seed(0)
    model = TiedUnembed(vocab=600, d=64)
    ids = torch.randint(0, 600, (3, 5), generator=torch.Generator().manual_seed(0))
    with caplog.at_level("WARNING", logger="entk_lib"):
        plan = entk_lib.entk_plan(model, ids)
    assert plan.params["emb.weight"].backend == "jacobian"
    assert plan.params["mix.weight"].backend == "structured"
    assert "'emb' is used outside its forward" in caplog.text


def test_float32_model_gives_float32_kernel():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(6, 4)
    k = entk(model, x, collapse="class_mean")
    assert k.dtype == torch.float32
    ref = entk(model.double(), x.double(), collapse="class_mean")
    torch.testing.assert_close(k.double(), ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_wrong_input_shape_is_a_clear_error(small_mlp):
    model, _ = small_mlp
    with pytest.raises(ValueError, match=r"`inputs` of shape \(4, 7\) could not be passed"):
        entk(model, torch.randn(4, 7, dtype=torch.float64))


def test_output_must_be_two_dimensional():
    model = nn.Linear(3, 2).double()
    with pytest.raises(ValueError, match=r"outputs \(N, C\)"):
        entk(lambda_model(model), torch.randn(4, 3, dtype=torch.float64))


def lambda_model(inner):
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x).sum(1)  # (N,), not (N, C)

    return Flat()


def test_unknown_layer_lists_valid_names(small_mlp):
    model, x = small_mlp
    with pytest.raises(ValueError, match=r"'fc9'.*Valid names.*'0'.*'2.weight'"):
        entk(model, x, layers=["fc9"])


def test_unknown_collapse_and_backend(small_mlp):
    model, x = small_mlp
    with pytest.raises(ValueError, match="`collapse` must be one of"):
        entk(model, x, collapse="trace")
    with pytest.raises(ValueError, match="`backend` must be"):
        entk(model, x, backend="magic")


def test_bad_output_weights(small_mlp):
    model, x = small_mlp
    with pytest.raises(ValueError, match="`output_weights` must be 4 finite numbers"):
        entk(model, x, output_weights=[1.0, 2.0])


def test_too_large_kernel_names_size_and_operator(small_mlp):
    model, x = small_mlp
    with pytest.raises(entk_lib.KernelTooLargeError, match=r"GiB.*entk_operator"):
        entk(model, x, collapse="full", memory_budget=1000)
    with pytest.raises(ValueError):  # also a ValueError, for callers that catch bad input
        entk(model, x, collapse="full", memory_budget=1000)


def test_non_tensor_inputs():
    with pytest.raises(ValueError, match="must be a torch.Tensor"):
        entk(mlp(), np.zeros((3, 3)))


def test_small_budget_takes_the_block_pair_path(tiny_seq, monkeypatch):
    from entk_lib import kernel as kernel_module

    model, _ = tiny_seq
    ids = torch.randint(0, 7, (23, 3), generator=torch.Generator().manual_seed(5))
    calls = []
    original = kernel_module._chunk_pairs
    monkeypatch.setattr(kernel_module, "_chunk_pairs", lambda *a: calls.append(1) or original(*a))
    size = 23 * 23 * 8
    entk(model, ids, collapse="class_mean", memory_budget=size + 60_000)
    assert calls, "the block-pair path was not taken"


_PEAK_SCRIPT = r"""
import resource, sys, torch
from torch import nn
import entk_lib
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).double()
x = torch.randn(int(sys.argv[1]), 8, dtype=torch.float64)
budget = int(sys.argv[2])
entk_lib.entk(model, x[:64], collapse="class_mean")  # warm-up: kernels, thread pools
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
k = entk_lib.entk(model, x, collapse="class_mean", memory_budget=budget)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(after - before, k.numel() * k.element_size())
"""


def test_dense_kernel_peak_memory_stays_within_the_budget():
    """Peak resident memory of a dense kernel (measured in a fresh process) stays within
    ``memory_budget``: the kernel is contracted in row blocks and accumulated in place, so the
    four per-parameter terms of this MLP never coexist with each other or with the result (the
    engine before that change peaked at 7x the result here)."""
    n = 5000
    result = n * n * 8  # 200 MB float64
    budget = int(1.5 * result)
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(n), str(budget)],
                         capture_output=True, text=True, check=True)
    peak, size = map(int, out.stdout.split())
    assert size == result
    mib = 2**20
    assert peak <= budget + 40 * mib, f"peak {peak / mib:.0f} MiB above the budget {budget / mib:.0f} MiB"


@pytest.mark.parametrize(("raw", "expected"), [
    (None, 4 * 1024**3), ("", 4 * 1024**3), ("6GiB", 6 * 1024**3), (" 1.5 GiB ", int(1.5 * 1024**3)),
    ("512MiB", 512 * 1024**2), ("8GB", 8 * 10**9), ("500MB", 500 * 10**6), ("123456", 123456),
])
def test_default_memory_budget_parses_the_environment(monkeypatch, raw, expected):
    from entk_lib.kernel import default_memory_budget

    if raw is None:
        monkeypatch.delenv("ENTK_MEMORY_BUDGET", raising=False)
    else:
        monkeypatch.setenv("ENTK_MEMORY_BUDGET", raw)
    assert default_memory_budget() == expected


@pytest.mark.parametrize("raw", ["lots", "6 TiB", "-1GiB", "0", "nan", "GiB"])
def test_default_memory_budget_rejects_what_it_cannot_read(monkeypatch, raw):
    from entk_lib.kernel import default_memory_budget

    monkeypatch.setenv("ENTK_MEMORY_BUDGET", raw)
    with pytest.raises(ValueError, match="ENTK_MEMORY_BUDGET"):
        default_memory_budget()
