"""The language-model chapter's pipeline: load, label windows, kernel, probes, sweep, steering.

stories -> part-of-speech labelled windows (:func:`build_windows`) -> the logit eNTK of one
module and its top eigenpairs (:func:`entk_layer`) -> one score per window per eigenvector ->
probes against PCA and random directions of the same budget (:func:`probes`, :func:`p_values`)
-> the same at every sweep layer (:func:`layer_sweep`) -> steering and ablation along the chosen
directions (:func:`steering_test`). The pretrained model is loaded, not trained: nothing here
is cached but the model's own files and the unembedding root (:mod:`entk_lib.lm.models`,
:func:`entk_lib.lm.kernel.cached_sqrt_unembedding_gram`).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ...linalg import as_numpy
from ...lm import data as lmd
from ...lm import kernel as lmk
from ...lm import probe as lmp
from ...lm import steering as lms
from ...lm.models import load_hub_model, load_offline_gemma, unembedding
from ...spectrum import top_eigenpairs
from .params import OFFLINE_MODEL, LMParams, check_model

__all__ = ["build_windows", "entk_layer", "layer_sweep", "load", "p_values", "probes", "steering_test"]

#: The three kinds of directions, each with the same budget ``k``.
METHODS = ("eNTK", "PCA", "random")


def load(params: LMParams):
    """(model, tokenizer, spaCy tagger, stories) for the parameters.

    The model is checked against the parameters (:func:`~.params.check_model`: layers, module,
    context length, ``k`` against the width) before anything else is loaded.
    """
    model, tok = load_offline_gemma() if params.model == OFFLINE_MODEL else load_hub_model(params.model)
    model = model.to(params.device)
    check_model(params, model)
    nlp = lmd.load_tagger(params.tagger)
    if params.corpus == "tinystories":
        stories = lmd.load_tinystories(params.n_stories, seed=params.seed)
    else:
        stories = lmd.load_story_corpus(None if params.corpus == "bundled" else params.corpus)
    return model, tok, nlp, stories


# ---- labelled windows ------------------------------------------------------------------------

def _continuation(tok, window: list[int], token: int) -> str:
    """The text the greedy token adds to the window (with its leading space, if any)."""
    base = tok.decode(window)
    full = tok.decode(window + [token])
    return full[len(base):] if full.startswith(base) else " " + tok.decode([token]).strip()


def _label_round(model, tok, nlp, stories, tokens, cands, params):
    """Forward one round of candidates: activations, POS of the true and the greedy next word."""
    ids = lmd.window_ids(tokens, cands, params.context, tok.bos_token_id)
    acts = lmk.capture_windows(model, ids, params.layers, batch_size=params.batch_size)
    ctx = lmd.window_texts(stories, tokens, cands, params.context)
    true_next = [stories[c.story][int(tokens[c.story][1][c.end, 1]): c.word_end] for c in cands]
    pred_next = [_continuation(tok, row[1:], g) for row, g in zip(ids.tolist(), acts.greedy.tolist(),
                                                                   strict=True)]
    pos_true = lmd.next_word_pos(nlp, ctx, true_next)
    pos_pred = lmd.next_word_pos(nlp, ctx, pred_next)
    return acts, pos_true, pos_pred, pred_next, ids, ctx


def build_windows(model, tok, nlp, stories, params: LMParams, max_rounds: int = 6) -> dict:
    """Balanced labelled windows: ``per_tag`` per tag where the greedy and true next word agree.

    Candidates are drawn per tag of the true next word (seeded), in rounds until every tag has
    ``per_tag`` agreeing windows (or the corpus runs out). Returns the windows' activations
    (:class:`~entk_lib.lm.kernel.WindowActivations` of N windows), ``labels`` (N,), ``ids``
    (N, context + 1), ``contexts`` and ``predicted`` (N texts), ``agreement`` (per tag of the
    true next word, tagged after the window: (agreeing, forwarded)) and ``n_forwarded``.
    """
    rng = np.random.default_rng(params.seed)
    tokens = lmd.tokenize_stories(stories, tok)
    pool = lmd.find_candidates(stories, tokens, lmd.tag_stories(stories, nlp), params.context, params.tags)
    counts = lmd.balanced_counts(params.tags, params.per_tag, params.oversample)
    kept = {t: [] for t in params.tags}
    tried, stats = set(), {t: [0, 0] for t in params.tags}
    parts = []
    for _ in range(max_rounds):
        cands = lmd.sample_candidates(pool, counts, rng, exclude=tried)
        if not cands:
            break
        tried.update(cands)
        acts, pos_true, pos_pred, pred, ids, ctx = _label_round(model, tok, nlp, stories, tokens, cands,
                                                                 params)
        for i, (pt, pp) in enumerate(zip(pos_true, pos_pred, strict=True)):
            if pt not in kept:
                continue
            stats[pt][0] += 1
            if pt == pp:
                stats[pt][1] += 1
                if len(kept[pt]) < params.per_tag:
                    kept[pt].append((len(parts), i))
        # keep the activations of this round's kept windows only: a round's capture of every
        # analysed layer is ~5 MB per window at the paper's size (64 tokens, 6 layers)
        mine = sorted(i for v in kept.values() for r, i in v if r == len(parts))
        position = {i: j for j, i in enumerate(mine)}
        parts.append((cands, acts.subset(mine), pos_true, pos_pred, pred, ids, ctx, position))
        del acts
        missing = {t: params.per_tag - len(v) for t, v in kept.items() if len(v) < params.per_tag}
        if not missing:
            break
        rate = {t: max(stats[t][1] / max(stats[t][0], 1), 0.1) for t in missing}
        counts = {t: int(np.ceil(m / rate[t] * 1.2)) for t, m in missing.items()}
    return _assemble(parts, kept, stats, params)


def _assemble(parts, kept, stats, params):
    """The kept windows of every round, in tag order (``per_tag`` per tag, or fewer if the
    corpus ran out; at least 2)."""
    if any(len(v) < 2 for v in kept.values()):
        raise ValueError(f"too few agreeing windows for some tags: { {t: len(v) for t, v in kept.items()} }; "
                         "use a larger corpus or fewer/other `tags`")
    offsets = np.cumsum([0] + [len(p[0]) for p in parts])
    order = [(tag, r, i) for tag in params.tags for r, i in kept[tag]]
    compact = np.cumsum([0] + [len(p[7]) for p in parts])  # rounds keep only their kept windows
    acts = _concat_acts([p[1] for p in parts]).subset([compact[r] + parts[r][7][i] for _, r, i in order])
    return {
        "acts": acts,
        "labels": np.array([tag for tag, _, _ in order]),
        "ids": torch.cat([p[5] for p in parts])[[offsets[r] + i for _, r, i in order]],
        "contexts": [parts[r][6][i] for _, r, i in order],
        "predicted": [parts[r][4][i] for _, r, i in order],
        "agreement": {t: (s[1], s[0]) for t, s in stats.items()},
        "n_forwarded": int(offsets[-1]),
    }


def _concat_acts(parts: list[lmk.WindowActivations]) -> lmk.WindowActivations:
    """The activations of several rounds as one (windows concatenated in round order)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return lmk.WindowActivations(
        torch.cat([p.greedy for p in parts]), torch.cat([p.resid_last for p in parts]),
        torch.cat([p.final_last for p in parts]),
        {k: torch.cat([p.layer_inputs[k] for p in parts]) for k in first.layer_inputs},
        {k: torch.cat([p.down_inputs[k] for p in parts]) for k in first.down_inputs},
        {k: torch.cat([p.resid_mid[k] for p in parts]) for k in first.resid_mid},
        {k: lmk._cat_kwargs([p.kwargs[k] for p in parts]) for k in first.kwargs},
    )


# ---- the kernel and the probes ---------------------------------------------------------------

def entk_layer(model, acts, layer: int, params: LMParams, steps: int, root=None,
               progress: bool = True) -> dict:
    """The logit eNTK of ``params.module`` at ``layer``: top-k eigenpairs and per-window scores.

    Returns ``op`` (the :class:`~entk_lib.lm.kernel.LMKernelOperator`, (N*d, N*d)), ``lanczos``
    (its top ``params.k`` eigenpairs from ``steps`` Lanczos steps), ``scores`` (N, k),
    ``directions`` (k, d) and ``seconds``.
    """
    root = lmk.cached_sqrt_unembedding_gram(unembedding(model)) if root is None else root
    start = time.perf_counter()
    op = lmk.LMKernelOperator(model, acts, layer, params.module, root)
    with tqdm(total=steps, desc=f"Lanczos, layer {layer}", disable=not progress) as bar:
        pairs, info = top_eigenpairs(op, params.k, solver="lanczos", steps=steps, seed=params.seed,
                                     progress=bar, return_info=True)
    res = lmk.LanczosResult(pairs.values, pairs.vectors, info.residuals, info.n_products)
    op.drop_tape()  # the tape only serves the products: free it now (steering uses pull alone)
    scores, directions = lmk.eigenvector_scores(res.vectors, *acts.final_last.shape)
    return {"op": op, "lanczos": res, "scores": scores, "directions": directions,
            "seconds": time.perf_counter() - start}


def probes(entk_scores, acts, labels, layer: int, params: LMParams) -> dict:
    """eNTK, PCA and random-direction probes (same budget ``k``) at one layer.

    ``entk_scores`` (N, k); the PCA and random scores come from the last-token residuals (N, d)
    at the layer's output. Returns ``labels``, ``scores`` and ``results``
    (:class:`~entk_lib.lm.probe.ProbeResult`) per method, and the PCA and random ``directions``
    (k, d).
    """
    x = as_numpy(acts.resid_last[:, layer + 1])
    pca, pca_dirs = lmp.pca_scores(x, params.k)
    rand, rand_dirs = lmp.random_direction_scores(x, params.k, seed=params.seed)
    kw = {"classes": params.tags, "n_splits": params.n_splits, "seed": params.seed}
    return {"labels": np.asarray(labels), "scores": {"eNTK": entk_scores, "PCA": pca, "random": rand},
            "directions": {"PCA": pca_dirs, "random": rand_dirs},
            "results": {name: lmp.probe(s, labels, **kw) for name, s in
                        [("eNTK", entk_scores), ("PCA", pca), ("random", rand)]}}


def p_values(probe_out: dict, labels, params: LMParams) -> dict[str, tuple[np.ndarray, float]]:
    """One-sided permutation p-values for eNTK > PCA: {metric: (per tag (n_tags,), macro)}."""
    s, r = probe_out["scores"], probe_out["results"]
    return {m: lmp.paired_permutation_test(s["eNTK"], r["eNTK"], s["PCA"], r["PCA"], labels, metric=m,
                                           n_permutations=params.n_permutations, seed=params.seed,
                                           return_macro=True)
            for m in ("ap", "auroc")}


def layer_sweep(model, acts, labels, params: LMParams, main: dict | None = None,
                progress: bool = True) -> dict:
    """Macro AP / AUROC / precision at quota of eNTK, PCA and random at every sweep layer:
    {layer: {method: {metric: value}}}. The main layer reuses ``main`` (``lanczos_steps``); the
    others take ``sweep_steps`` Lanczos steps, and each operator is freed at once."""
    root = lmk.cached_sqrt_unembedding_gram(unembedding(model))
    rows = {}
    for layer in params.sweep_layers:
        if main is not None and layer == params.layer:  # reuse the main result (lanczos_steps)
            scores = main["scores"]
        else:
            out = entk_layer(model, acts, layer, params, params.sweep_steps, root, progress)
            scores = out["scores"]
            out["op"].release()  # its closures refer back to it: free them now, not at the next gc
        res = probes(scores, acts, labels, layer, params)["results"]
        rows[layer] = {name: r.macro() for name, r in res.items()}
    return rows


# ---- steering and ablation -------------------------------------------------------------------

def steering_test(model, tok, nlp, windows: dict, main: dict, probe_out: dict, params: LMParams,
                  progress: bool = True) -> dict:
    """Steer (+-alpha) and ablate layer ``params.layer``'s output along each tag's chosen direction.

    Directions: the (direction, sign) each method chose for each tag on split 0's train half.
    Evaluated on split 0's test windows: the fraction whose greedy next word changes part of
    speech, per tag and method. ``alpha = steer_scale * mean |h - mean h|`` over the last-token
    residuals ``h`` at the layer's output (their typical spread, not their large common offset).

    Returns ``alpha``, ``base_pos`` (n_test,) and ``test`` (n_test,) indices; ``removed``: per
    method the mean ``|h.e|`` an ablation removes, per tag (n_tags,); per method ``steer`` (the
    mean of +alpha and -alpha) and ``ablate``, the fractions of changed POS per tag (n_tags,).
    """
    acts, op, layer = windows["acts"], main["op"], params.layer
    res = probe_out["results"]
    test = res["eNTK"].tests[0]
    sub = acts.subset(test)
    chosen = {m: res[m].direction[0] for m in METHODS}
    dirs = _steering_directions(op, main, probe_out, chosen)
    with torch.no_grad():
        base = lmk.layer_output(model, sub, layer, params.module, op.params)
    h = acts.resid_last[:, layer + 1].double()
    alpha = params.steer_scale * float((h - h.mean(0)).norm(dim=-1).mean())
    jobs = [(m, j, mode, a) for m in chosen for j in np.unique(chosen[m])
            for mode, a in (("steer", alpha), ("steer", -alpha), ("ablate", 0.0))]
    greedy = [lms.greedy_after(model, sub, layer, base)]
    for m, j, mode, a in tqdm(jobs, desc="interventions", disable=not progress):
        greedy.append(lms.greedy_after(model, sub, layer, lms.intervene(base, dirs[m][j], mode, a)))
    pos = _greedy_pos(tok, nlp, windows, test, greedy)
    changed = {job: float(np.mean(pos[i + 1] != pos[0])) for i, job in enumerate(jobs)}
    out = {"alpha": alpha, "base_pos": pos[0], "test": test,
           "removed": {m: _removed(base, dirs[m], chosen[m]) for m in chosen}}
    for m in chosen:
        both = [0.5 * (changed[(m, j, "steer", alpha)] + changed[(m, j, "steer", -alpha)]) for j in chosen[m]]
        out[m] = {"steer": np.array(both),
                  "ablate": np.array([changed[(m, j, "ablate", 0.0)] for j in chosen[m]])}
    return out


def _steering_directions(op, main: dict, probe_out: dict, chosen: dict) -> dict[str, dict]:
    """Per method, {direction index: residual-stream direction (d,)}: the eNTK ones (only those
    chosen) from the eigenvectors through the operator, PCA and random as they are."""
    uniq = np.unique(chosen["eNTK"])
    entk = lms.entk_residual_directions(op, main["lanczos"].vectors[:, uniq])
    return {"eNTK": dict(zip(uniq, entk, strict=True)),
            "PCA": dict(enumerate(probe_out["directions"]["PCA"])),
            "random": dict(enumerate(probe_out["directions"]["random"]))}


def _greedy_pos(tok, nlp, windows: dict, test, greedy: list) -> np.ndarray:
    """POS (n_runs, n_test) of the greedy next word of each run (unchanged model first)."""
    ids, ctx = windows["ids"][test].tolist(), [windows["contexts"][i] for i in test]
    cont = [_continuation(tok, row[1:], g) for gr in greedy for row, g in zip(ids, gr.tolist(), strict=True)]
    return np.array(lmd.next_word_pos(nlp, ctx * len(greedy), cont)).reshape(len(greedy), len(test))


def _removed(base: torch.Tensor, dirs: dict, chosen) -> np.ndarray:
    """Mean ``|h . e|`` over windows and positions for each tag's chosen direction (n_tags,):
    what an ablation removes from the layer's output ``base`` (n_test, T, d)."""
    units = {j: torch.as_tensor(d / np.linalg.norm(d), dtype=base.dtype, device=base.device)
             for j, d in dirs.items() if j in set(chosen.tolist())}
    return np.array([float((base @ units[j]).abs().mean()) for j in chosen])
