"""Matrix-free operator, low-rank route and eigensolvers against dense computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import entk_lib
from entk_lib import CliffRule, describe_drops, entk, entk_lowrank, entk_operator, find_cliffs, top_eigenpairs
from entk_lib.alignment import principal_cosines
from entk_lib.spectrum import cliff_ratios


@pytest.mark.parametrize("backend", ["structured", "jacobian", "vjp", "vjp-no-reuse"])
@pytest.mark.parametrize("collapse", ["flattened", "class_mean", "sum_logits"])
@pytest.mark.parametrize("fixture", ["small_mlp", "two_heads", "tiny_seq"])
def test_operator_products_equal_dense(fixture, collapse, backend, request):
    model, x = request.getfixturevalue(fixture)
    dense = entk(model, x, collapse=collapse).numpy()
    op = entk_operator(model, x, collapse=collapse, chunk_size=2, column_block=2,
                       backend=backend.removesuffix("-no-reuse"),
                       reuse_forward=not backend.endswith("no-reuse"))
    expected = "VjpOperator" if backend.startswith("vjp") else "FactoredOperator"
    assert type(op).__name__ == expected
    v = np.random.default_rng(0).standard_normal((dense.shape[0], 3))
    np.testing.assert_allclose(op.matmat(v), dense @ v, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(op.matvec(v[:, 0]), dense @ v[:, 0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["structured", "jacobian", "vjp"])
def test_operator_with_layers_and_weights(tiny_seq, backend):
    model, x = tiny_seq
    w = [1.0, 0.3, 2.0, 0.7, 1.5]
    for layers in (["tok"], ["mix.bias", "pos"], "unembed"):
        dense = entk(model, x, collapse="flattened", layers=layers, output_weights=w).numpy()
        op = entk_operator(model, x, collapse="flattened", layers=layers, output_weights=w,
                           backend=backend)
        v = np.random.default_rng(1).standard_normal((dense.shape[0], 2))
        np.testing.assert_allclose(op.matmat(v), dense @ v, rtol=1e-10, atol=1e-10)


def test_auto_operator_backend_follows_the_memory_budget(small_mlp):
    model, x = small_mlp
    assert type(entk_operator(model, x)).__name__ == "FactoredOperator"
    assert type(entk_operator(model, x, memory_budget=100)).__name__ == "VjpOperator"


def assert_same_eigenpairs(got, want, k, rtol=1e-6):
    np.testing.assert_allclose(got.values, want.values, rtol=rtol)
    # compare subspaces (robust to sign and to rotations inside degenerate eigenspaces)
    cos = principal_cosines(got.vectors[:, :k], want.vectors[:, :k])
    assert cos.min() > 1 - 1e-6


def test_lanczos_on_operator_agrees_with_dense_eigh():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    x = torch.randn(30, 4, dtype=torch.float64)
    k = 8
    dense = top_eigenpairs(entk(model, x, collapse="flattened"), k)
    lanczos = top_eigenpairs(entk_operator(model, x, collapse="flattened"), k)
    assert_same_eigenpairs(lanczos, dense, k)
    full = np.linalg.eigvalsh(entk(model, x, collapse="flattened").numpy())[::-1][:k]
    np.testing.assert_allclose(dense.values, full, rtol=1e-10)


@pytest.mark.parametrize("k", [5, 40, 90])
def test_block_krylov_agrees_with_dense_eigh(k):
    """Float64 block Krylov against LAPACK to 1e-6 relative, including a planted degenerate cluster."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.Tanh(), torch.nn.Linear(12, 4)).double()
    x = torch.randn(40, 4, dtype=torch.float64)
    dense_k = entk(model, x, collapse="flattened")
    op = entk_operator(model, x, collapse="flattened")
    got = top_eigenpairs(op, k, solver="block", block_size=8)
    want = top_eigenpairs(dense_k, k)
    assert_same_eigenpairs(got, want, k)


def test_block_krylov_on_a_clustered_spectrum():
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.standard_normal((300, 300)))[0]
    lam = np.concatenate([[50.0], np.full(30, 10.0), np.full(30, 1.0), np.geomspace(1e-2, 1e-6, 239)])
    mat = (q * lam) @ q.T
    vals, vecs = entk_lib.spectrum.block_krylov_eigsh(lambda v: mat @ v, 300, 61, block_size=16)
    np.testing.assert_allclose(np.sort(vals)[::-1], lam[:61], rtol=1e-8)
    cos = principal_cosines(vecs[:, 1:31], q[:, 1:31])
    assert cos.min() > 1 - 1e-8


def test_lowrank_route_agrees_with_dense():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 5)).double()
    x = torch.randn(20, 3, dtype=torch.float64)  # P = 41 < C*N = 100: rank-deficient kernel
    lowrank = entk_lowrank(model, x, collapse="flattened")
    dense = entk(model, x, collapse="flattened")
    torch.testing.assert_close(lowrank.dense(), dense)
    k = 10
    assert_same_eigenpairs(top_eigenpairs(lowrank, k), top_eigenpairs(dense, k), k)
    for collapse in ("class_mean", "sum_logits"):
        torch.testing.assert_close(entk_lowrank(model, x, collapse=collapse).dense(),
                                   entk(model, x, collapse=collapse))
    with pytest.raises(ValueError, match=r"`k` must be in \[1, 41\].*rank bound"):
        top_eigenpairs(lowrank, 42)


def test_eigenpairs_are_sorted_orthonormal_with_fixed_signs(small_mlp):
    model, x = small_mlp
    pairs = top_eigenpairs(entk(model, x, collapse="flattened"), 6)
    assert np.all(np.diff(pairs.values) <= 0)
    np.testing.assert_allclose(pairs.vectors.T @ pairs.vectors, np.eye(6), atol=1e-10)
    idx = np.abs(pairs.vectors).argmax(0)
    assert np.all(pairs.vectors[idx, np.arange(6)] > 0)


def test_k_out_of_range_and_bad_kernels(small_mlp):
    model, x = small_mlp
    k = entk(model, x, collapse="class_mean")
    with pytest.raises(ValueError, match=r"`k` must be an integer in \[1, 5\]"):
        top_eigenpairs(k, 6)
    with pytest.raises(ValueError, match=r"`k` must be an integer in \[1, 5\]"):
        top_eigenpairs(entk_operator(model, x, collapse="class_mean"), 0)
    with pytest.raises(ValueError, match="square"):
        top_eigenpairs(np.zeros((3, 4)), 1)
    with pytest.raises(ValueError, match="symmetric"):
        top_eigenpairs(np.triu(np.ones((3, 3))), 1)
    with pytest.raises(ValueError, match="`collapse` must be one of"):
        entk_operator(model, x, collapse="full")
    with pytest.raises(ValueError, match="`solver` must be one of"):
        top_eigenpairs(entk_operator(model, x), 2, solver="arnoldi")
    with pytest.raises(ValueError, match="`backend` must be one of"):
        entk_operator(model, x, backend="dense")


def test_operator_dense_fallback_for_large_k(small_mlp):
    model, x = small_mlp
    dense = top_eigenpairs(entk(model, x, collapse="class_mean"), 5)
    via_op = top_eigenpairs(entk_operator(model, x, collapse="class_mean"), 5)
    np.testing.assert_allclose(via_op.values, dense.values, rtol=1e-10)


# ---------------------------------------------------------------------------------------------
# cliffs
# ---------------------------------------------------------------------------------------------


def test_find_cliffs_on_a_planted_spectrum():
    lam = np.concatenate([[100.0], np.full(56, 10.0), np.full(56, 1.0), np.full(100, 0.01)])
    lam = lam * (1 + 0.01 * np.random.default_rng(0).standard_normal(lam.size))
    cliffs, ratios = find_cliffs(lam, return_ratios=True)
    assert list(cliffs) == [113, 1, 57]  # strongest first: 1/0.01, then 100/10 and 10/1
    assert ratios[0] > 50 and np.all(np.diff(ratios) <= 0)


def _planted(rng, n, low, high, at=None, drop=None):
    """A descending spectrum of n eigenvalues whose drop ratios ``lam[k-1] / lam[k]`` are uniform
    in [low, high], except ``drop`` at index ``at``."""
    ratios = rng.uniform(low, high, n - 1)
    if at is not None:
        ratios[at - 1] = drop
    return np.concatenate([[1.0], np.cumprod(1 / ratios)])


def test_a_modest_drop_on_a_flat_background_is_a_cliff():
    lam = _planted(np.random.default_rng(1), 200, 1.00, 1.05, at=60, drop=1.4)
    drops = describe_drops(lam)
    assert list(find_cliffs(lam)) == [60]
    assert drops.rank[60] == 1 and np.isclose(drops.ratio[60], 1.4)
    assert drops.prominence[60] > 10  # about 17: (log 1.4 - 0.025) / 0.019
    assert np.nanmax(np.delete(drops.prominence, 60)) < CliffRule().min_prominence


def test_the_same_drop_among_many_like_it_is_not_a_cliff():
    lam = _planted(np.random.default_rng(2), 200, 1.3, 1.5, at=60, drop=1.4)
    drops = describe_drops(lam)
    assert np.isclose(drops.ratio[60], 1.4)
    assert abs(drops.prominence[60]) < 2 and not drops.cliff[60]
    assert find_cliffs(lam).size == 0


def test_an_order_of_magnitude_drop_is_always_a_cliff():
    lam = _planted(np.random.default_rng(3), 30, 1.5, 6.0, at=15, drop=10.0)
    rule = CliffRule(rtol=0.0)  # the planted spectrum spans 1e-16: no numerical floor
    drops = describe_drops(lam, rule)
    assert drops.prominence[15] < rule.min_prominence  # a wild background hides it
    assert 15 in find_cliffs(lam, rule=rule)
    assert 15 not in find_cliffs(lam, rule=CliffRule(rtol=0.0, always_ratio=20.0))


def test_the_ratio_is_a_parameter_not_the_definition():
    lam = _planted(np.random.default_rng(4), 200, 1.00, 1.05, at=60, drop=1.15)
    assert describe_drops(lam).prominence[60] > CliffRule().min_prominence
    assert 60 not in find_cliffs(lam)  # below the default min_ratio 1.2
    assert list(find_cliffs(lam, rule=CliffRule(min_ratio=1.1))) == [60]


def test_find_cliffs_ignores_numerical_zeros_beyond_the_rank():
    lam = np.concatenate([np.linspace(5, 4, 10), [1e-14, 1e-17, 1e-20]])
    assert list(find_cliffs(lam)) == [10]
    assert np.isnan(cliff_ratios(lam)[0])
    drops = describe_drops(lam)
    assert not drops.cliff[11:].any() and (drops.rank[11:] == 0).all()


def test_cliff_rule_validates_its_parameters():
    with pytest.raises(ValueError, match="`min_ratio` must be a number in \\(1"):
        CliffRule(min_ratio=0.5)
    with pytest.raises(ValueError, match="`window`"):
        CliffRule(window=0)
    with pytest.raises(TypeError, match="`rule` must be a CliffRule"):
        find_cliffs([3.0, 1.0], rule=2.0)
    assert find_cliffs([1.0]).size == 0 and describe_drops([]).ratio.size == 0


def test_public_api_is_importable():
    for name in entk_lib.__all__:
        assert hasattr(entk_lib, name)


def test_large_dense_kernel_uses_block_krylov_and_agrees_with_lapack(monkeypatch):
    """Above the full-eigh size, top-k of a dense matrix runs block Krylov on BLAS products."""
    from entk_lib import spectrum

    rng = np.random.default_rng(3)
    n, k = 600, 30
    q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    lam = np.sort(rng.uniform(0, 1, n))[::-1] * np.r_[np.full(10, 50.0), np.ones(n - 10)]
    mat = (q * lam) @ q.T
    monkeypatch.setattr(spectrum, "_TORCH_EIGH_MAX", 100)
    calls = []
    real = spectrum.block_krylov_eigsh
    monkeypatch.setattr(spectrum, "block_krylov_eigsh", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    values, vectors = entk_lib.top_eigenpairs(mat, k)
    assert calls, "the Krylov route was not taken"
    np.testing.assert_allclose(values, np.sort(lam)[::-1][:k], rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(vectors * (mat @ vectors), 0)), values, rtol=1e-9)
    # many eigenpairs: LAPACK on one symmetrized working copy, same answer
    values_all, _ = entk_lib.top_eigenpairs(mat, 200)
    np.testing.assert_allclose(values_all, np.sort(lam)[::-1][:200], rtol=1e-9)
    bad = mat.copy()
    bad[5, 400] += 1.0
    with pytest.raises(ValueError, match="symmetric"):
        entk_lib.top_eigenpairs(bad, k)


def test_lowrank_route_beyond_the_rank_returns_orthonormal_null_vectors():
    rng = np.random.default_rng(0)
    factor = torch.from_numpy(rng.standard_normal((40, 3)))
    lowrank = entk_lib.LowRankKernel(factor, "flattened")
    values, vectors = entk_lib.top_eigenpairs(lowrank, 3)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-12)
    # a rank-2 factor asked for 3 pairs: the third is a unit vector of the null space
    factor2 = factor.clone()
    factor2[:, 2] = factor2[:, 0] + factor2[:, 1]
    values, vectors = entk_lib.top_eigenpairs(entk_lib.LowRankKernel(factor2, "flattened"), 3)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-10)
    assert values[2] == 0.0
    np.testing.assert_allclose((factor2 @ factor2.T).numpy() @ vectors, vectors * values, atol=1e-9)


def test_entk_eigenpairs_picks_a_route_by_size_and_all_routes_agree(small_mlp, capsys):
    """Dense when the kernel fits, low-rank when P < n, matrix-free otherwise; same eigenpairs."""
    model, x = small_mlp  # N = 5, C = 4, P = 83: flattened n = 20 < P; class_mean width C*P
    dense = entk_lib.top_eigenpairs(entk_lib.entk(model, x, collapse="flattened"), 6)
    routes = {}
    for budget in (2**30, 400):  # dense fits / nothing fits
        route = entk_lib.choose_route(model, x, collapse="flattened", memory_budget=budget)
        got = entk_lib.entk_eigenpairs(model, x, 6, collapse="flattened", memory_budget=budget,
                                       verbose=True)
        routes[route.kind] = got
        np.testing.assert_allclose(got.values, dense.values, rtol=1e-8)
        np.testing.assert_allclose(np.abs(got.vectors.T @ dense.vectors), np.eye(6), atol=1e-6)
    assert set(routes) == {"dense", "matrix_free"}
    assert "entk_eigenpairs: dense: the kernel takes" in capsys.readouterr().out
    # many samples, few parameters: the Gram route
    wide = torch.randn(60, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    route = entk_lib.choose_route(model, wide, collapse="flattened")
    assert route.kind == "lowrank" and "rank <= 83" in route.reason
    low = entk_lib.entk_eigenpairs(model, wide, 10, collapse="flattened")
    ref = entk_lib.top_eigenpairs(entk_lib.entk(model, wide, collapse="flattened"), 10)
    np.testing.assert_allclose(low.values, ref.values, rtol=1e-8)
    with pytest.raises(ValueError, match="`collapse` must be one of"):
        entk_lib.choose_route(model, x, collapse="per_class")


def test_block_krylov_keeps_growing_on_a_flat_float32_spectrum():
    """The layer-1 flattened kernel of the modular MLP has a flat, clustered top spectrum. The
    Krylov continuation of a residual block then lies mostly inside the basis; dropping such
    directions too eagerly (a 1e-2 relative threshold in float32) made the solver restart from the
    same space: at p = 29 it stalled, here at p = 13 it needed twice the products (2,691)."""
    from entk_lib.models.modular import ModularMLP, modular_data

    model = ModularMLP(13, 512, generator=torch.Generator().manual_seed(0))
    x, _ = modular_data(13)
    op = entk_lib.entk_operator(model, x, collapse="flattened", layers=["fc1"])
    values, vectors = entk_lib.top_eigenpairs(op, 200)
    assert op.n_products <= 2000, op.n_products
    resid = np.linalg.norm(op.matmat(vectors.astype(np.float32)) - vectors * values, axis=0)
    assert resid.max() <= 2e-5 * values[0]
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(200), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# one strategy switch: backends, routes, solvers; the plan built once
# ---------------------------------------------------------------------------------------------


_FORCED = [("dense", "structured"), ("dense", "jacobian"), ("lowrank", "structured"), ("lowrank", "jacobian"),
           ("matrix_free", "structured"), ("matrix_free", "jacobian"), ("matrix_free", "vjp")]


@pytest.mark.parametrize("collapse", ["flattened", "class_mean", "sum_logits"])
@pytest.mark.parametrize("fixture", ["small_mlp", "tiny_seq"])
def test_forced_routes_and_backends_give_the_same_eigenpairs(fixture, collapse, request):
    """Every (route, backend) pair, forced, against the dense kernel's LAPACK eigenpairs."""
    model, x = request.getfixturevalue(fixture)
    w = None if fixture == "small_mlp" else [1.0, 0.3, 2.0, 0.7, 1.5]
    k = 4
    want = top_eigenpairs(entk(model, x, collapse=collapse, output_weights=w, backend="jacobian"), k)
    for route, backend in _FORCED:
        got = entk_lib.entk_eigenpairs(model, x, k, collapse=collapse, output_weights=w, route=route,
                                       backend=backend)
        np.testing.assert_allclose(got.values, want.values, rtol=1e-8, err_msg=f"{route}/{backend}")
        cos = principal_cosines(got.vectors, want.vectors)
        assert cos.min() > 1 - 1e-8, (route, backend)


def test_solvers_agree_and_report_what_they_did():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.Tanh(), torch.nn.Linear(12, 4)).double()
    x = torch.randn(40, 4, dtype=torch.float64)
    op = entk_operator(model, x, collapse="flattened")
    want = top_eigenpairs(entk(model, x, collapse="flattened"), 6)
    seen = []
    for kw in ({"solver": "lanczos"}, {"solver": "block", "block_size": 8}, {"steps": 60}):
        before = op.n_products
        got, info = top_eigenpairs(op, 6, return_info=True, progress=seen.append, **kw)
        assert_same_eigenpairs(got, want, 6)
        assert info.n_products == op.n_products - before == sum(seen) > 0
        assert info.solver == kw.get("solver", "lanczos")
        seen.clear()
    assert info.n_products == 60 and info.residuals.shape == (6,)
    assert np.all(info.residuals < 1e-6 * got.values[0])
    dense, info = top_eigenpairs(entk(model, x, collapse="flattened"), 6, return_info=True)
    assert info == ("dense", 0, None)
    # the fixed-step Lanczos on a dense matrix, a tensor or a low-rank kernel: the same answer
    mat = entk(model, x, collapse="flattened")
    for kernel in (mat, mat.numpy(), entk_lowrank(model, x, collapse="flattened")):
        assert_same_eigenpairs(top_eigenpairs(kernel, 6, steps=80), want, 6)
    with pytest.raises(ValueError, match="`steps` must be an integer in \\[6, 160\\]"):
        top_eigenpairs(op, 6, steps=5)
    with pytest.raises(ValueError, match="needs solver 'lanczos'"):
        top_eigenpairs(op, 6, solver="block", steps=20)
    with pytest.raises(TypeError, match="`progress`"):
        top_eigenpairs(op, 6, progress=3)


def _count_plan_builds(monkeypatch):
    """Counters of plan builds and of their costly parts (pilot passes, the JVP check)."""
    from entk_lib import _plan

    counts = {"make_plan": 0, "pilot": 0, "jvp_check": 0}
    for name, key in (("make_plan", "make_plan"), ("_structured_modules", "pilot"),
                      ("_verify_structured", "jvp_check")):
        real = getattr(_plan, name)

        def counted(*a, _real=real, _key=key, **kw):
            counts[_key] += 1
            return _real(*a, **kw)

        monkeypatch.setattr(_plan, name, counted)
    return counts


@pytest.mark.parametrize("route", ["auto", "dense", "lowrank", "matrix_free"])
@pytest.mark.parametrize("collapse", ["flattened", "sum_logits"])
def test_the_plan_is_built_once(tiny_seq, route, collapse, monkeypatch):
    model, x = tiny_seq
    counts = _count_plan_builds(monkeypatch)
    got = entk_lib.entk_eigenpairs(model, x, 3, collapse=collapse, route=route)
    assert counts == {"make_plan": 1, "pilot": 1, "jvp_check": 1}
    # a route chosen beforehand carries its plan: computing the spectrum builds nothing more
    chosen = entk_lib.choose_route(model, x, collapse=collapse, route=route)
    assert isinstance(chosen.plan, entk_lib.KernelPlan) and chosen.plan.sum_outputs is False
    again = entk_lib.entk_eigenpairs(model, x, 3, collapse=collapse, route=chosen)
    assert counts == {"make_plan": 2, "pilot": 2, "jvp_check": 2}
    assert chosen.plan.sum_outputs is False  # the sum_logits copy did not change the carried plan
    np.testing.assert_allclose(again.values, got.values, rtol=1e-10)


def test_entry_points_accept_a_prebuilt_plan(tiny_seq, monkeypatch):
    model, x = tiny_seq
    w = [1.0, 0.3, 2.0, 0.7, 1.5]
    plan = entk_lib.entk_plan(model, x, layers=["tok", "mix"], output_weights=w)
    counts = _count_plan_builds(monkeypatch)
    for collapse in ("flattened", "class_mean", "sum_logits"):
        want = entk(model, x, collapse=collapse, layers=["tok", "mix"], output_weights=w)
        counts.update(dict.fromkeys(counts, 0))
        torch.testing.assert_close(entk(model, x, collapse=collapse, plan=plan), want)
        torch.testing.assert_close(entk_lowrank(model, x, collapse=collapse, plan=plan).dense(), want)
        v = np.random.default_rng(0).standard_normal((want.shape[0], 2))
        for backend in ("auto", "structured", "vjp"):
            op = entk_operator(model, x, collapse=collapse, plan=plan, backend=backend)
            np.testing.assert_allclose(op.matmat(v), want.numpy() @ v, rtol=1e-10, atol=1e-10)
        assert counts == {"make_plan": 0, "pilot": 0, "jvp_check": 0}
    assert plan.sum_outputs is False
    torch.testing.assert_close(entk_lib.entk_jacobian(model, x, plan=plan),
                               entk_lib.entk_jacobian(model, x, layers=["tok", "mix"], output_weights=w))
    with pytest.raises(ValueError, match="part of `plan`"):
        entk(model, x, plan=plan, layers=["tok"])
    with pytest.raises(ValueError, match="another model"):
        entk(type(model)().double(), x, plan=plan)
    with pytest.raises(ValueError, match="backend='jacobian' needs a plan built with backend='jacobian'"):
        entk(model, x, plan=plan, backend="jacobian")
    with pytest.raises(TypeError, match="KernelPlan"):
        entk(model, x, plan="structured")


def test_jacobian_shape_is_outputs_inputs_parameters(two_heads):
    model, x = two_heads
    jac = entk_lib.entk_jacobian(model, x)
    n, c, p = x.shape[0], model(x).shape[1], sum(q.numel() for q in model.parameters())
    assert jac.shape == (c, n, p)
    flat = entk(model, x, collapse="flattened")
    torch.testing.assert_close(flat, jac.reshape(c * n, p) @ jac.reshape(c * n, p).T)


def test_old_spellings_still_work_with_a_deprecation_warning(small_mlp):
    model, x = small_mlp
    v = np.random.default_rng(0).standard_normal((20, 2))
    with pytest.warns(DeprecationWarning, match="backend='factored' is deprecated"):
        old = entk_operator(model, x, backend="factored")
    np.testing.assert_array_equal(old.matmat(v), entk_operator(model, x, backend="structured").matmat(v))
    op = entk_operator(model, x, collapse="flattened")
    with pytest.warns(DeprecationWarning, match="method=...\\) is deprecated"):
        old = top_eigenpairs(op, 3, method="lanczos")
    new = top_eigenpairs(op, 3, solver="lanczos")
    np.testing.assert_array_equal(old.values, new.values)
    with pytest.warns(DeprecationWarning, match="route='operator' is deprecated"):
        old = entk_lib.entk_eigenpairs(model, x, 3, route="operator")
    np.testing.assert_allclose(old.values, new.values, rtol=1e-8)
    assert entk_lib.choose_route(model, x, route="matrix_free").kind == "matrix_free"


def test_strategy_errors_name_the_choices(small_mlp):
    model, x = small_mlp
    with pytest.raises(ValueError, match="`backend` must be one of.*'vjp' is matrix-free"):
        entk(model, x, backend="vjp")
    with pytest.raises(ValueError, match="`route` must be one of"):
        entk_lib.entk_eigenpairs(model, x, 3, route="sparse")
    with pytest.raises(ValueError, match="backend='vjp' is matrix-free"):
        entk_lib.choose_route(model, x, route="dense", backend="vjp")
    assert entk_lib.choose_route(model, x, backend="vjp").kind == "matrix_free"
    with pytest.raises(entk_lib.KernelTooLargeError):  # a forced dense route keeps the budget
        entk_lib.entk_eigenpairs(model, x, 3, route="dense", memory_budget=400)
