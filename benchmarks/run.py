"""Time the eNTK engine against the usual ways of computing it; write ``benchmarks/results.md``.

    python benchmarks/run.py              # every case (about 25-40 minutes on 2 CPU cores)
    python benchmarks/run.py --quick      # small sizes only: a smoke test of the harness
    python benchmarks/run.py --cases mlp-cm-fc1 tms-flat

Every (case, method) runs in a fresh subprocess, so that its peak memory (resident set size above
the process's size before the method started) is its own. Times are medians over repeats. Each
method's top-k eigenvalues are compared with a float64 reference of the same kernel (largest
relative difference). Methods:

1. ``tutorial``: ``vmap(jacrev)`` Jacobians + ``einsum`` (the PyTorch tutorial's and the paper
   code's method), see ``baselines.py``;
2. ``ntk-vp``: vjp/jvp NTK-vector products against identity blocks;
3. ``ours-generic``: ``entk_lib.entk(..., backend="jacobian")`` (chunked ``vmap(jacrev)``);
4. ``ours-structured``: ``entk_lib.entk`` (structured Linear/Embedding backend);
5. ``ours-matfree``: ``entk_lib.top_eigenpairs(entk_lib.entk_operator(...), k)`` (factored
   operator, block Krylov), never forming the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from baselines import ntk_vector_products, tutorial_jacobian  # noqa: E402

import entk_lib  # noqa: E402

METHODS = ("tutorial", "ntk-vp", "ours-generic", "ours-structured", "ours-matfree")
GiB = 1024**3


@dataclass
class Case:
    """One benchmark problem: a model, a collapse, layers, how many eigenpairs to compare."""

    name: str
    model: str  # "mlp", "tms", "transformer"
    collapse: str
    k: int
    dtype: str = "float32"
    layers: list[str] | None = None
    per_tensor: bool = False
    width: int = 512
    p: int = 29
    methods: tuple[str, ...] = METHODS
    repeats: int = 3
    note: str = ""
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------


def build(case: Case):
    """(model, inputs) for a case, trained where the chapter trains it (cached by the library)."""
    dtype = getattr(torch, case.dtype)
    if case.model == "mlp":
        from entk_lib.models.modular import ModularMLP, modular_data, train_modular

        if case.width == 512 and case.p == 29:
            model = train_modular(seed=0).model_at()
        else:
            model = ModularMLP(case.p, case.width, generator=torch.Generator().manual_seed(0))
        x, _ = modular_data(case.p)
        return model.to(dtype).eval(), x.to(dtype)
    if case.model == "tms":  # the chapter's first model (n=50, m=10, S=0.3), trained 5000 epochs
        from entk_lib.models.tms import TMSSetup, train_tms

        run = train_tms(TMSSetup(), seed=0)
        return run.model().to(dtype).eval(), run.data.to(dtype)
    if case.model == "transformer":  # at initialization: the kernel's cost does not depend on training
        from entk_lib.models.transformer import ModularTransformer, modular_tokens

        model = ModularTransformer(29, generator=torch.Generator().manual_seed(2))
        return model.to(dtype).eval(), modular_tokens(29)[0]
    raise ValueError(case.model)


def tensor_names(model, case: Case) -> list[list[str]] | list[None]:
    if case.per_tensor:
        return [[n] for n, _ in model.named_parameters()]
    return [case.layers]


# ----------------------------------------------------------------------------------------------
# one method on one case (runs in a worker process)
# ----------------------------------------------------------------------------------------------


def kernels_by(method: str, model, x, case: Case):
    """The kernel(s) of a case by one of the dense methods: list over tensor groups."""
    out = []
    for layers in tensor_names(model, case):
        if method == "tutorial":
            out.append(tutorial_jacobian(model, x, case.collapse, layers))
        elif method == "ntk-vp":
            out.append(ntk_vector_products(model, x, case.collapse, layers))
        else:
            backend = "jacobian" if method == "ours-generic" else "auto"
            # the default memory budget (4 GiB): what a user gets
            out.append(entk_lib.entk(model, x, collapse=case.collapse, layers=layers, backend=backend))
    return out


def top_values(kernel, k: int) -> np.ndarray:
    """Top-k eigenvalues of a dense kernel, the same solver for every dense method:
    :func:`entk_lib.top_eigenpairs` (full LAPACK up to n = 4096, block Krylov on BLAS products
    above when k <= n/8)."""
    return entk_lib.top_eigenpairs(kernel, k).values


def run_method(case: Case, method: str) -> dict:
    model, x = build(case)
    _warm_up(case, method, model, x[:4])
    base_rss = _current_rss()
    t0 = time.perf_counter()
    if method == "ours-matfree":
        values = []
        for layers in tensor_names(model, case):
            if case.model == "tms" and case.collapse == "flattened":
                kern = entk_lib.entk_lowrank(model, x, collapse=case.collapse, layers=layers)
            else:
                kern = entk_lib.entk_operator(model, x, collapse=case.collapse, layers=layers)
            values.append(entk_lib.top_eigenpairs(kern, case.k).values)
        t_kernel, t_eig = float("nan"), time.perf_counter() - t0
    else:
        kernels = kernels_by(method, model, x, case)
        t_kernel = time.perf_counter() - t0
        values = [top_values(k.double() if case.dtype == "float64" else k, case.k) for k in kernels]
        t_eig = time.perf_counter() - t0 - t_kernel
    peak = max(0, _peak_rss() - base_rss)
    return {"t_kernel": t_kernel, "t_eig": t_eig, "peak_mib": peak / 2**20,
            "values": [v.tolist() for v in values]}


def _warm_up(case: Case, method: str, model, x_small) -> None:
    """One untimed call on 4 inputs, so that one-time setup (vmap tracing, thread pools) is not
    charged to the measured call."""
    layers = tensor_names(model, case)[0]
    if method == "ours-matfree":
        if case.model == "tms" and case.collapse == "flattened":
            entk_lib.entk_lowrank(model, x_small, collapse=case.collapse, layers=layers)
        else:
            op = entk_lib.entk_operator(model, x_small, collapse=case.collapse, layers=layers)
            op.matmat(np.ones((op.shape[0], 2), dtype=op.dtype))
    else:
        kernels_by(method, model, x_small, Case(**{**case.__dict__, "per_tensor": False}))


def reference_values(case: Case) -> list[np.ndarray]:
    """Float64 top-k eigenvalues of the same kernel(s), for the accuracy column."""
    ref_case = Case(**{**case.__dict__, "dtype": "float64"})
    model, x = build(ref_case)
    values = []
    for layers in tensor_names(model, ref_case):
        if case.collapse == "flattened" and case.model == "tms":
            kern = entk_lib.entk_lowrank(model, x, collapse="flattened", layers=layers)
            values.append(entk_lib.top_eigenpairs(kern, case.k).values)
        elif case.collapse == "flattened":
            op = entk_lib.entk_operator(model, x, collapse="flattened", layers=layers)
            values.append(entk_lib.top_eigenpairs(op, case.k, tol=1e-12).values)
        else:
            kern = entk_lib.entk(model, x, collapse=case.collapse, layers=layers)
            values.append(entk_lib.top_eigenpairs(kern, case.k).values)
    return values


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ----------------------------------------------------------------------------------------------
# cases and the driver
# ----------------------------------------------------------------------------------------------


def all_cases(quick: bool) -> list[Case]:
    if quick:
        return [
            Case("quick-mlp-cm", "mlp", "class_mean", k=20, width=64, p=11, dtype="float64", repeats=1),
            Case("quick-mlp-flat", "mlp", "flattened", k=20, width=64, p=11, repeats=1),
        ]
    cases = [
        Case(f"mlp-cm-{name}", "mlp", "class_mean", k=200, dtype="float64", layers=layers,
             note="modular MLP (p=29, width 512, 841 inputs), class_mean, float64")
        for name, layers in [("fc1", ["fc1"]), ("fc2", ["fc2"]), ("all", None)]
    ]
    cases += [
        Case("mlp-flat-200", "mlp", "flattened", k=200,
             note="modular MLP, flattened 24,389 x 24,389, float32, top 200"),
        Case("mlp-flat-1750", "mlp", "flattened", k=1750, methods=("ours-matfree",),
             note="modular MLP, flattened, top 1,750 (the modular chapter's default)"),
        Case("mlp-flat-p13-exact", "mlp", "flattened", k=400, p=13, dtype="float64",
             methods=("ours-structured", "ours-matfree"),
             note="p=13 (2,197 x 2,197), float64: matrix-free top 400 against dense LAPACK"),
        Case("tms-flat", "tms", "flattened", k=80,
             note="TMS (n=50, m=10, 500 samples), flattened 25,000 x 25,000, top 80; "
                  "ours-matfree is the low-rank route (P=550)"),
        Case("tf-sl-per-tensor", "transformer", "sum_logits", k=40, per_tensor=True,
             note="1-layer Transformer (p=29, 841 inputs), sum_logits per parameter tensor, top 40"),
    ]
    # ntk-vp (N*C vjp/jvp passes per kernel) takes over 6 minutes from width 512 on: run below it
    cases += [
        Case(f"mlp-cm-w{w}", "mlp", "class_mean", k=100, width=w,
             methods=METHODS if w < 512 else tuple(m for m in METHODS if m != "ntk-vp"),
             note=f"width sweep: modular MLP width {w}, class_mean, float32")
        for w in (128, 256, 512, 1024, 2048)
    ]
    return cases


def predicted_gib(case: Case, method: str) -> float:
    """Memory the Jacobian-materializing baseline would need (to skip hopeless runs): the
    per-sample Jacobian of the selected parameters, about twice over during the contraction."""
    if method != "tutorial" or case.model != "mlp":
        return 0.0
    n, c, w = case.p**2, case.p, case.width
    sizes = {"fc1": 2 * case.p * w, "fc2": w * case.p}
    params = sum(sizes[name] for name in (case.layers or sizes))
    item = 8 if case.dtype == "float64" else 4
    return 2 * n * c * params * item / GiB


def worker(case_name: str, method: str, quick: bool) -> None:
    case = {c.name: c for c in all_cases(quick)}[case_name]
    result = reference_values(case) if method == "reference" else run_method(case, method)
    if method == "reference":
        result = {"values": [v.tolist() for v in result]}
    print("RESULT " + json.dumps(result))


def spawn(case: Case, method: str, quick: bool, limit_gib: float) -> dict:
    need = predicted_gib(case, method)
    if need > limit_gib:
        return {"skipped": f"needs ~{need:.0f} GiB"}
    cmd = [sys.executable, __file__, "--worker", case.name, method] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"skipped": f"failed: {tail[0][:80]}"}
    return json.loads(lines[-1][len("RESULT "):])


def measure(case: Case, method: str, quick: bool, limit_gib: float) -> dict:
    """Median over ``case.repeats`` runs (a single run when the first takes over 30 s)."""
    runs = [spawn(case, method, quick, limit_gib)]
    if "skipped" in runs[0]:
        return runs[0]
    if runs[0]["t_eig"] + np.nan_to_num(runs[0]["t_kernel"]) < 30:
        runs += [spawn(case, method, quick, limit_gib) for _ in range(case.repeats - 1)]
    if any("skipped" in r for r in runs):
        return next(r for r in runs if "skipped" in r)
    return {
        "t_kernel": statistics.median(r["t_kernel"] for r in runs),
        "t_eig": statistics.median(r["t_eig"] for r in runs),
        "peak_mib": max(r["peak_mib"] for r in runs),
        "values": runs[0]["values"],
        "repeats": len(runs),
    }


def max_rel_diff(values, reference) -> float:
    pairs = zip(values, reference, strict=True)
    return max(float(np.max(np.abs(np.asarray(v) - r) / np.abs(r))) for v, r in pairs)


def table(case: Case, results: dict[str, dict], reference) -> list[str]:
    lines = [f"## `{case.name}`", "", case.note, "",
             "| method | runs | kernel (s) | top-k (s) | total (s) | peak extra memory (MiB) | "
             "max rel. eigenvalue diff | speed-up vs (1) |", "|---|---|---|---|---|---|---|---|"]
    base = results.get("tutorial", {})
    base_total = base.get("t_kernel", np.nan) + base.get("t_eig", 0.0) if "t_kernel" in base else np.nan
    for i, method in enumerate(METHODS, start=1):
        if method not in results:
            continue
        r = results[method]
        if "skipped" in r:
            lines.append(f"| ({i}) {method} | – | – | – | – | – | – | {r['skipped']} |")
            continue
        kern = r["t_kernel"]
        total = (0.0 if np.isnan(kern) else kern) + r["t_eig"]
        speed = base_total / total if np.isfinite(base_total) else np.nan
        lines.append(
            f"| ({i}) {method} | {r['repeats']} | {'–' if np.isnan(kern) else f'{kern:.2f}'} | "
            f"{r['t_eig']:.2f} | "
            f"{total:.2f} | {r['peak_mib']:.0f} | {max_rel_diff(r['values'], reference):.1e} | "
            f"{'–' if np.isnan(speed) else f'{speed:.1f}x'} |")
    return lines + [""]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, smoke test")
    parser.add_argument("--cases", nargs="*", help="only these case names")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--limit-gib", type=float, default=14.0, help="skip baselines needing more")
    parser.add_argument("--out", default=str(HERE / "results.md"))
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker, args.quick)
        return 0
    cases = [c for c in all_cases(args.quick) if not args.cases or c.name in args.cases]
    start = time.perf_counter()
    out = [
        "# eNTK engine benchmark", "",
        f"Written by `python benchmarks/run.py{' --quick' if args.quick else ''}` on "
        f"{time.strftime('%Y-%m-%d')}: {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, Python "
        f"{platform.python_version()}. Times are medians over the runs shown (3, or 1 when a "
        "run takes over 30 s), each in a fresh process after an untimed warm-up call on 4 "
        "inputs; peak "
        "memory is the resident set above the worker's size before the method started. The "
        "accuracy column compares each method's top-k eigenvalues with a float64 reference of "
        "the same kernel.", "",
    ]
    for case in cases:
        print(f"== {case.name}", flush=True)
        reference = [np.asarray(v) for v in spawn(case, "reference", args.quick, 1e9)["values"]]
        results = {}
        for method in case.methods:
            results[method] = measure(case, method, args.quick, args.limit_gib)
            print(f"   {method}: {_brief(results[method])}", flush=True)
        out += table(case, results, reference)
    out.append(f"Total benchmark wall time: {time.perf_counter() - start:.0f} s.")
    text = "\n".join(out) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


def _brief(r: dict) -> str:
    if "skipped" in r:
        return r["skipped"]
    return f"kernel {r['t_kernel']:.2f}s eig {r['t_eig']:.2f}s peak {r['peak_mib']:.0f} MiB"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
