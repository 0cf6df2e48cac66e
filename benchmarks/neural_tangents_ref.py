"""Optional reference point: neural-tangents' three empirical-NTK implementations on the modular MLP.

Not part of the project's install (it needs JAX). Two steps, two environments:

    # 1. in the project's venv: export the trained model, its inputs and float64 reference
    #    eigenvalues computed by entk_lib
    .venv/bin/python benchmarks/neural_tangents_ref.py --export /tmp/modular_mlp.npz

    # 2. in a separate venv with neural-tangents 0.6.5 (its structured-derivatives path fails on
    #    jax 0.5.x with "module 'jax.interpreters.ad' has no attribute 'source_info_util'";
    #    jax 0.4.23 runs all three implementations):
    python3 -m venv /tmp/ntvenv
    /tmp/ntvenv/bin/pip install "jax==0.4.23" "jaxlib==0.4.23" "numpy<2" "scipy<1.13" frozendict
    /tmp/ntvenv/bin/pip install --no-deps neural-tangents==0.6.5
    /tmp/ntvenv/bin/python benchmarks/neural_tangents_ref.py /tmp/modular_mlp.npz

Step 2 writes ``benchmarks/results_neural_tangents.md``: for the class_mean kernel of each layer
(and both), each implementation's wall time (the first call, which includes JAX's compilation,
and the median of 3 later calls), the growth of the resident set, and the largest relative
difference of its top-200 eigenvalues from entk_lib's float64 reference. Every (case,
implementation) runs in a fresh process. ``neural_tangents.experimental`` imports TensorFlow;
it is stubbed out before the import, as the project's toolchain notes describe.
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
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CASES = {"fc1": ("w1",), "fc2": ("w2",), "all": ("w1", "w2")}
IMPLEMENTATIONS = ("JACOBIAN_CONTRACTION", "NTK_VECTOR_PRODUCTS", "STRUCTURED_DERIVATIVES")
K = 200


def export(path: str) -> None:
    """Project venv: the chapter's trained model (p = 29, width 512, seed 0) and references."""
    import torch

    import entk_lib
    from entk_lib.models.modular import modular_data, train_modular

    model = train_modular(seed=0).model_at().double()
    x, _ = modular_data(29, dtype=torch.float64)
    refs = {}
    for case, layers in (("fc1", ["fc1"]), ("fc2", ["fc2"]), ("all", None)):
        kernel = entk_lib.entk(model, x, collapse="class_mean", layers=layers)
        refs[f"ref_{case}"] = entk_lib.top_eigenpairs(kernel, K).values
    np.savez(path, w1=model.fc1.weight.detach().numpy(), w2=model.fc2.weight.detach().numpy(),
             x=x.numpy(), **refs)
    print(f"wrote {path}")


def _nt():
    sys.modules.setdefault("neural_tangents.experimental", types.ModuleType("neural_tangents.experimental"))
    import jax

    jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt

    return jax, nt


def worker(path: str, case: str, impl: str) -> dict:
    """NT venv, fresh process: time one implementation on one case."""
    jax, nt = _nt()
    jnp = jax.numpy
    data = np.load(path)
    params = {k: jnp.asarray(data[k]) for k in ("w1", "w2")}
    x = jnp.asarray(data["x"])
    p = data["w2"].shape[0]
    width = data["w1"].shape[0]
    trainable = CASES[case]

    def f(sel, xs):
        full = {**params, **sel}
        hidden = (xs @ full["w1"].T / jnp.sqrt(2.0 * p)) ** 2
        return hidden @ full["w2"].T / width

    sel = {k: params[k] for k in trainable}
    fn = jax.jit(nt.empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=0,
                                     implementation=getattr(nt.NtkImplementation, impl)))
    base = _rss()
    t0 = time.perf_counter()
    kernel = np.asarray(fn(x, None, sel).block_until_ready())  # trace_axes: mean over outputs
    first = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn(x, None, sel).block_until_ready()
        times.append(time.perf_counter() - t0)
    peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
    values = np.linalg.eigvalsh(0.5 * (kernel + kernel.T))[::-1][:K]
    ref = data[f"ref_{case}"]
    return {"first": first, "median": statistics.median(times), "peak_mib": peak / 2**20,
            "rel": float(np.max(np.abs(values - ref) / np.abs(ref))), "jax": jax.__version__}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="the .npz written by --export")
    parser.add_argument("--export", metavar="PATH", help="write the model and references (project venv)")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(HERE / "results_neural_tangents.md"))
    args = parser.parse_args(argv)
    if args.export:
        export(args.export)
        return 0
    if not args.data:
        parser.error("give the .npz written by --export (see the module docstring)")
    if args.worker:
        print("RESULT " + json.dumps(worker(args.data, *args.worker)))
        return 0
    rows, jax_version = [], "?"
    for case in CASES:
        for impl in IMPLEMENTATIONS:
            proc = subprocess.run([sys.executable, __file__, args.data, "--worker", case, impl],
                                  capture_output=True, text=True)
            found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not found:
                lines = (proc.stderr or proc.stdout).strip().splitlines()
                errors = [ln for ln in lines if "Error" in ln] or lines[-1:] or ["?"]
                rows.append(f"| {case} | {impl} | – | – | – | – | failed: {errors[0].strip()[:110]} |")
                print(rows[-1], flush=True)
                continue
            r = json.loads(found[-1][len("RESULT "):])
            jax_version = r["jax"]
            rows.append(f"| {case} | {impl} | {r['first']:.2f} | {r['median']:.2f} | {r['peak_mib']:.0f} | "
                        f"{r['rel']:.1e} | |")
            print(rows[-1], flush=True)
    text = "\n".join([
        "# neural-tangents reference (optional run)", "",
        f"Written by `benchmarks/neural_tangents_ref.py` on {time.strftime('%Y-%m-%d')}: "
        f"{os.cpu_count()} CPU cores ({platform.machine()}), neural-tangents 0.6.5, jax {jax_version} "
        "(CPU, float64). Modular MLP of the book (p = 29, width 512, seed 0, trained 500 epochs), "
        "class_mean kernel over all 841 inputs; `first` includes JAX's compilation, `median` is "
        "over 3 further calls; memory is the resident-set growth in a fresh process; the last "
        "column compares the top 200 eigenvalues with entk_lib's float64 kernel. Compare with the "
        "`mlp-cm-*` tables of `results.md`.", "",
        "| layers | implementation | first call (s) | median (s) | peak extra memory (MiB) | "
        "max rel. eigenvalue diff | note |", "|---|---|---|---|---|---|---|", *rows, ""])
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
