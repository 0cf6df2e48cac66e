"""The language-model chapter at the paper's size, offline: cost per layer and the layer-16 result.

    python benchmarks/lm_paper_size.py          # writes benchmarks/results_lm_paper_size.{md,json}

Parameters: ``book/params/language_model.paper_size.yaml`` (the offline Gemma-3-270m, the bundled
corpus, N = 8 tags x 128 windows of 64 tokens, layer 16 ``mlp.down_proj``, k = 25, 50 Lanczos
steps). Steps, each timed with the peak resident set sampled every 20 ms:

1. labelled windows (the chapter's :func:`build_windows`);
2. layer 16: the operator, a profile of one product (torch.profiler: which operations take the
   time), the 50 Lanczos steps, and the probes (eNTK vs PCA vs random, the chapter's p-values);
3. every layer of ``--layers``: the operator and ``--products`` timed products (no eigenpairs),
   from which the cost of a full sweep (``sweep_steps`` products per layer) is estimated.

The same numbers at the chapter's defaults are in ``book/claims/07_language_model.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


class PeakRSS:
    """Peak resident set (GiB) of this process while the block runs, sampled every 20 ms."""

    def __enter__(self):
        self.peak, self._stop = _rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.start = time.perf_counter()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def product_profile(op, seed: int = 0) -> list[tuple[str, float]]:
    """Self CPU time share of the top operations in one kernel-vector product."""
    from torch.profiler import ProfilerActivity, profile

    v = np.random.default_rng(seed).normal(size=(op.shape[0], 1))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        op @ v
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    return [(e.key, e.self_cpu_time_total / total) for e in top]


def main(argv: list[str]) -> int:
    from entk_lib.experiments import language_model as lmx
    from entk_lib.lm import kernel as lmk
    from entk_lib.lm.models import unembedding
    from entk_lib.spectrum import top_eigenpairs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(ROOT / "book" / "params" / "language_model.paper_size.yaml"))
    parser.add_argument("--layers", default="12,13,14,15,17", help="layers timed by a few products")
    parser.add_argument("--products", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=1, help="vectors per batched vjp (memory x chunk)")
    parser.add_argument("--sweep-layers", default="", help="override the file's sweep_layers (captured)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_lm_paper_size"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args(argv)
    values = yaml.safe_load(Path(args.params).read_text())
    if args.sweep_layers:
        values["sweep_layers"] = [int(x) for x in args.sweep_layers.split(",")]
    params = lmx.LMParams(**values)
    if args.report_only:
        out = json.loads(Path(args.out + ".json").read_text())
        out["layers"] = {int(k): v for k, v in out["layers"].items()}
        Path(args.out + ".md").write_text(report(out, params))
        return 0
    out: dict = {"params": params.as_dict(), "threads": torch.get_num_threads(), "layers": {}}
    torch.manual_seed(params.seed)
    with PeakRSS() as cost:
        model, tok, nlp, stories = lmx.load(params)
        windows = lmx.build_windows(model, tok, nlp, stories, params)
    out["windows"] = {"seconds": cost.seconds, "peak_gib": cost.peak, "n": int(len(windows["labels"])),
                      "per_tag": {t: int(np.sum(windows["labels"] == t)) for t in params.tags}}
    print("windows", out["windows"], flush=True)
    root = lmk.cached_sqrt_unembedding_gram(unembedding(model))
    acts, labels = windows["acts"], windows["labels"]
    with PeakRSS() as cost:
        op = lmk.LMKernelOperator(model, acts, params.layer, params.module, root, chunk=args.chunk)
        built = time.perf_counter() - cost.start
        out["profile"] = product_profile(op)
        start = time.perf_counter()
        pairs = top_eigenpairs(op, params.k, solver="lanczos", steps=params.lanczos_steps, seed=params.seed)
        lanczos = time.perf_counter() - start
    scores, _ = lmk.eigenvector_scores(pairs.vectors, *acts.final_last.shape)
    main_res = {"scores": scores}
    out["layers"][params.layer] = {"build_s": built, "lanczos_s": lanczos, "products": params.lanczos_steps,
                                   "peak_gib": cost.peak, "products_per_s": params.lanczos_steps / lanczos,
                                   "tape_gib": op.tape_bytes() / 2**30, "chunk": args.chunk}
    op.release()
    print("layer", params.layer, out["layers"][params.layer], flush=True)
    with PeakRSS() as cost:
        probe = lmx.probes(main_res["scores"], acts, labels, params.layer, params)
        pvals = lmx.p_values(probe, labels, params)
    macro = {m: r.macro() for m, r in probe["results"].items()}
    out["probes"] = {"seconds": cost.seconds, "macro": macro,
                     "p_ap": float(pvals["ap"][1]), "p_auroc": float(pvals["auroc"][1])}
    print("probes", out["probes"], flush=True)
    for layer in [int(x) for x in args.layers.split(",") if x]:
        with PeakRSS() as cost:
            op = lmk.LMKernelOperator(model, acts, layer, params.module, root)
            built = time.perf_counter() - cost.start
            v = np.random.default_rng(0).normal(size=(op.shape[0], 1))
            times = []
            for _ in range(args.products):
                start = time.perf_counter()
                op @ v
                times.append(time.perf_counter() - start)
        out["layers"][layer] = {"build_s": built, "product_s": times, "peak_gib": cost.peak,
                                "tape_gib": op.tape_bytes() / 2**30}
        op.release()
        print("layer", layer, out["layers"][layer], flush=True)
    Path(args.out + ".json").write_text(json.dumps(out, indent=1, default=float))
    Path(args.out + ".md").write_text(report(out, params))
    print(f"wrote {args.out}.md")
    return 0


def report(out: dict, params) -> str:
    w = out["windows"]
    lines = ["# The language-model chapter at the paper's size (offline)", "",
             f"Written by `python benchmarks/lm_paper_size.py` on {time.strftime('%Y-%m-%d')}, "
             f"{os.cpu_count()} CPU cores, {out['threads']} torch threads; parameters "
             "`book/params/language_model.paper_size.yaml`.", "",
             f"Windows: N = {w['n']} ({w['per_tag']} per tag) of {params.context} tokens, built in "
             f"{w['seconds']:.0f} s (peak {w['peak_gib']:.2f} GiB, model load included).", "",
             "| layer | operator build (s) | time per product (s) | products / s | peak RSS (GiB) | "
             "est. sweep layer with "
             f"{params.sweep_steps} products (min) |", "|---|---|---|---|---|---|"]
    total = 0.0
    for layer in sorted(out["layers"]):
        r = out["layers"][layer]
        per = r["lanczos_s"] / r["products"] if "lanczos_s" in r else float(np.median(r["product_s"]))
        minutes = (r["build_s"] + per * params.sweep_steps) / 60
        total += minutes
        lines.append(f"| {layer} | {r['build_s']:.1f} | {per:.2f} | {1 / per:.3f} | {r['peak_gib']:.2f} "
                     f"| {minutes:.1f} |")
    p = out["probes"]
    m = p["macro"]
    lines += ["", f"Sweep over the layers above: about {total:.0f} min here.", "",
              f"Layer {params.layer}, {params.lanczos_steps} Lanczos steps: macro AP eNTK "
              f"{m['eNTK']['ap']:.3f}, PCA {m['PCA']['ap']:.3f}, random {m['random']['ap']:.3f} "
              f"(p = {p['p_ap']:.3f}, eNTK > PCA); macro AUROC eNTK {m['eNTK']['auroc']:.3f}, "
              f"PCA {m['PCA']['auroc']:.3f} (p = {p['p_auroc']:.3f}).", "", _versus_defaults(m, p), "",
              "One product at layer 16, share of self CPU time by operation (torch.profiler):", "",
              "| operation | share |", "|---|---|"]
    lines += [f"| `{name}` | {share:.1%} |" for name, share in out["profile"]]
    return "\n".join(lines) + "\n"


def _versus_defaults(m: dict, p: dict) -> str:
    """The layer-16 comparison against the chapter's defaults (its committed record), and whether
    the chapter's first two claims (eNTK above PCA in AP and in AUROC, p < 0.05) read the same."""
    rec = json.loads((ROOT / "book" / "claims" / "07_language_model.json").read_text())["numbers"]
    d = {k: rec[k]["value"] for k in ("macro.ap.entk", "macro.ap.pca", "macro.p.ap", "macro.auroc.entk",
                                      "macro.auroc.pca", "macro.p.auroc")}
    same = [(m["eNTK"][k] > m["PCA"][k] and p[f"p_{k}"] < 0.05)
            == (d[f"macro.{k}.entk"] > d[f"macro.{k}.pca"] and d[f"macro.p.{k}"] < 0.05)
            for k in ("ap", "auroc")]
    return (f"At the chapter's defaults (256 windows of 24 tokens): AP eNTK {d['macro.ap.entk']:.3f} vs PCA "
            f"{d['macro.ap.pca']:.3f} (p = {d['macro.p.ap']:.3f}), AUROC {d['macro.auroc.entk']:.3f} vs "
            f"{d['macro.auroc.pca']:.3f} (p = {d['macro.p.auroc']:.3f}). The verdict of \"eNTK above PCA "
            f"(p < 0.05)\" is {'the same' if same[0] else 'different'} for AP and "
            f"{'the same' if same[1] else 'different'} for AUROC at the paper's size.")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
