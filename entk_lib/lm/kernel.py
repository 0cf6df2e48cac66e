"""The logit eNTK of one module of a pretrained causal LM, matrix-free.

Setting (the paper's Section 5). ``N`` context windows, ``h_n`` the final hidden state (after the
final norm) at the last position of window ``n``, ``d`` its width, ``U`` (V, d) the unembedding so
that the next-token logits are ``U h_n``. ``J_r`` (N*d, P_r) is the Jacobian of the stacked
``h_n`` with respect to the ``P_r`` parameters of one module (e.g. layer 16 ``mlp.down_proj``).
The logit eNTK ``(U ⊗ I) J_r J_r^T (U ⊗ I)^T`` lives in V*N dimensions; its nonzero spectrum is
that of

    K = S^{1/2} J_r J_r^T S^{1/2},   S = U^T U ⊗ I_N,

which lives in N*d dimensions. We never form ``J_r`` or ``K``: a product ``K v`` is one
vector-Jacobian product (``torch.func.vjp``, its forward pass computed once and reused) and one
Jacobian-vector product (``torch.func.jvp``). Vectors of ``K``'s space are ordered window-major:
entry ``n*d + i`` is window ``n``, hidden unit ``i`` (reshape ``(N, d)``).

Its top eigenpairs come from the library's one eigensolver entry point, as in the paper a fixed
number of Lanczos steps with full re-orthogonalization::

    op = LMKernelOperator(model, acts, layer, "mlp.down_proj", root)
    pairs = entk_lib.top_eigenpairs(op, k, solver="lanczos", steps=50, seed=0, progress=bar)

Only the part of the network above the module is re-run in the products, from activations
captured once (:func:`capture_windows`). Two exact shortcuts make this cheap on a CPU, both
checked against the plain path in the tests: for Gemma-3 layers, (i) a perturbation of
``mlp.down_proj`` enters the residual stream through ``post_feedforward_layernorm`` alone, so
the layer is not re-run; (ii) in the last layer only the last position's output matters, so its
queries, attention output and MLP are computed for that position only (keys and values still
for every position). Other architectures and modules use the plain path (the whole layer, via
``torch.func.functional_call``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn
from torch.func import functional_call, jvp, linearize, vjp, vmap

from ..params import check_int
from ..spectrum import top_eigenpairs

__all__ = [
    "LMKernelOperator",
    "WindowActivations",
    "cached_sqrt_unembedding_gram",
    "capture_windows",
    "eigenvector_scores",
    "lanczos_top",
    "sqrt_unembedding_gram",
    "forward_from",
    "layer_output",
    "upper_forward",
]

_DROP_KWARGS = ("hidden_states", "past_key_values", "use_cache", "cache_position", "output_attentions")


def _layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, "model", model)
    if not hasattr(base, "layers") or not hasattr(base, "norm"):
        raise ValueError("model must be a Hugging Face decoder-only LM with `.model.layers` and "
                         "`.model.norm`")
    return base.layers


def _is_gemma3(layer: nn.Module) -> bool:
    return type(layer).__name__ == "Gemma3DecoderLayer"


@dataclass
class WindowActivations:
    """What one forward pass over the windows records.

    Attributes
    ----------
    greedy : LongTensor (N,) -- the model's greedy next token for each window.
    resid_last : Tensor (N, n_layers + 1, d) -- residual stream at the last position: index 0 the
        (scaled) embeddings, index ``l + 1`` the output of layer ``l``.
    final_last : Tensor (N, d) -- final hidden state (after the final norm) at the last position.
    layer_inputs : {layer: Tensor (N, T, d)} -- input of each captured layer, all positions.
    down_inputs : {layer: Tensor (N, T, m)} -- input of that layer's ``mlp.down_proj``.
    resid_mid : {layer: Tensor (N, T, d)} -- Gemma-3 only: residual after the attention block.
    kwargs : {layer: dict} -- the keyword arguments each layer was called with (masks, rotary
        embeddings), batch-indexed tensors concatenated over batches.
    """

    greedy: torch.Tensor
    resid_last: torch.Tensor
    final_last: torch.Tensor
    layer_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    down_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    resid_mid: dict[int, torch.Tensor] = field(default_factory=dict)
    kwargs: dict[int, dict] = field(default_factory=dict)

    def subset(self, index) -> WindowActivations:
        """The same record restricted to windows ``index`` (array of ints)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long, device=self.greedy.device)
        n = self.greedy.shape[0]
        return WindowActivations(
            self.greedy[idx], self.resid_last[idx], self.final_last[idx],
            {k: v[idx] for k, v in self.layer_inputs.items()},
            {k: v[idx] for k, v in self.down_inputs.items()},
            {k: v[idx] for k, v in self.resid_mid.items()},
            {k: _index_kwargs(kw, idx, n) for k, kw in self.kwargs.items()},
        )


def _index_kwargs(kwargs: dict, idx: torch.Tensor, n: int) -> dict:
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n and n > 1:
            out[key] = value[idx]
        else:
            out[key] = value
    return out


def _cat_kwargs(parts: list[dict]) -> dict:
    out = {}
    for key, value in parts[0].items():
        batched = isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] > 1
        out[key] = torch.cat([p[key] for p in parts]) if batched else value
    return out


def capture_windows(model: nn.Module, ids: torch.Tensor, layers, batch_size: int = 64) -> WindowActivations:
    """Run the model over windows ``ids`` (N, T) and record what the eNTK and baselines need.

    ``layers``: the layers whose module kernels will be computed; the inputs of those layers and
    the call arguments of every layer from the lowest of them up are recorded.
    """
    blocks = _layers(model)
    layers = sorted({int(layer) for layer in layers})
    if layers and not 0 <= layers[0] <= layers[-1] < len(blocks):
        raise ValueError(f"`layers` must lie in [0, {len(blocks) - 1}], got {layers}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    records: dict[str, list] = {"greedy": [], "resid": [], "final": []}
    per_layer: dict[tuple[str, int], list] = {}
    for start in range(0, ids.shape[0], batch_size):
        _capture_batch(model, blocks, ids[start:start + batch_size], layers, records, per_layer)
    lo = layers[0] if layers else len(blocks)
    out = WindowActivations(torch.cat(records["greedy"]), torch.cat(records["resid"]),
                            torch.cat(records["final"]))
    for layer in range(lo, len(blocks)):
        out.kwargs[layer] = _cat_kwargs(per_layer[("kwargs", layer)])
    for layer in layers:
        out.layer_inputs[layer] = torch.cat(per_layer[("input", layer)])
        out.down_inputs[layer] = torch.cat(per_layer[("down", layer)])
        if ("mid", layer) in per_layer:
            out.resid_mid[layer] = torch.cat(per_layer[("mid", layer)])
    return out


def _capture_batch(model, blocks, ids, layers, records, per_layer):
    lo = layers[0] if layers else len(blocks)
    resid: list[torch.Tensor] = []
    handles = []

    def keep(key):
        return lambda value: per_layer.setdefault(key, []).append(
            value.detach() if isinstance(value, torch.Tensor) else value)

    def pre_hook(layer):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            if layer in layers:
                keep(("input", layer))(hidden)
            keep(("kwargs", layer))({k: v for k, v in kwargs.items() if k not in _DROP_KWARGS})
        return hook

    for layer, block in enumerate(blocks):
        handles.append(block.register_forward_hook(
            lambda m, a, out: resid.append((out[0] if isinstance(out, tuple) else out)[:, -1].detach())))
        if layer >= lo:
            handles.append(block.register_forward_pre_hook(pre_hook(layer), with_kwargs=True))
        if layer in layers:
            handles.append(block.mlp.down_proj.register_forward_pre_hook(
                lambda m, a, layer=layer: keep(("down", layer))(a[0])))
            if _is_gemma3(block):
                handles.append(block.pre_feedforward_layernorm.register_forward_pre_hook(
                    lambda m, a, layer=layer: keep(("mid", layer))(a[0])))
    base = getattr(model, "model", model)
    handles.append(base.embed_tokens.register_forward_hook(
        lambda m, a, out: resid.insert(0, out[:, -1].detach())))
    try:
        with torch.no_grad():
            ids = ids.to(base.embed_tokens.weight.device)
            final = base(input_ids=ids, use_cache=False).last_hidden_state[:, -1]
            logits = model.get_output_embeddings()(final)
    finally:
        for h in handles:
            h.remove()
    records["greedy"].append(logits.argmax(-1))
    records["resid"].append(torch.stack(resid, dim=1))
    records["final"].append(final)


# --------------------------------------------------------------------------------------------
# The network above a module, as a function of the module's parameters
# --------------------------------------------------------------------------------------------

def _gemma3_last_position(layer: nn.Module, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """Output of a Gemma-3 decoder layer at the last position only: (N, T, d) -> (N, 1, d).

    Keys and values are computed for every position, queries and the MLP for the last one; this
    is exactly ``layer(hidden, **kwargs)[:, -1:]`` (checked in the tests).
    """
    from transformers.models.gemma3.modeling_gemma3 import eager_attention_forward, rotate_half

    attn = layer.self_attn
    n, t, _ = hidden.shape
    normed = layer.input_layernorm(hidden)
    q = attn.q_proj(normed[:, -1:]).view(n, 1, -1, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(normed).view(n, t, -1, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(normed).view(n, t, -1, attn.head_dim).transpose(1, 2)
    q, k = attn.q_norm(q), attn.k_norm(k)
    cos, sin = kwargs["position_embeddings"]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    q = q * cos[:, :, -1:] + rotate_half(q) * sin[:, :, -1:]
    k = k * cos + rotate_half(k) * sin
    mask = kwargs.get("attention_mask")
    mask = mask[:, :, -1:, :] if mask is not None else None
    out, _ = eager_attention_forward(attn, q, k, v, mask, dropout=0.0, scaling=attn.scaling,
                                     softcap=getattr(attn, "attn_logit_softcapping", None))
    out = attn.o_proj(out.reshape(n, 1, -1))
    resid = hidden[:, -1:] + layer.post_attention_layernorm(out)
    mlp = layer.mlp(layer.pre_feedforward_layernorm(resid))
    return resid + layer.post_feedforward_layernorm(mlp)


def layer_output(model: nn.Module, acts: WindowActivations, layer: int, module: str, params: dict,
                 *, fast: bool = True) -> torch.Tensor:
    """Output of layer ``layer`` (N, T, d) with the module's parameters replaced by ``params``.

    ``params`` maps names inside the module (e.g. ``{"weight": W}``) to tensors. For the top layer
    with ``fast`` and a Gemma-3 model only the last position is computed: (N, 1, d).
    """
    blocks = _layers(model)
    top, block = len(blocks) - 1, blocks[layer]
    sub = {f"{module}.{k}": v for k, v in params.items()}
    if fast and module == "mlp.down_proj" and _is_gemma3(block) and set(params) == {"weight"}:
        a, mid = acts.down_inputs[layer], acts.resid_mid[layer]
        if layer == top:
            a, mid = a[:, -1:], mid[:, -1:]
        return mid + block.post_feedforward_layernorm(a @ params["weight"].T)
    if fast and layer == top and _is_gemma3(block):
        return functional_call(_LastPosition(block), {f"block.{k}": v for k, v in sub.items()},
                               (acts.layer_inputs[layer], acts.kwargs[layer]), strict=False)
    return functional_call(block, sub, (acts.layer_inputs[layer],), acts.kwargs[layer], strict=False)


def forward_from(model: nn.Module, acts: WindowActivations, layer: int, hidden: torch.Tensor,
                 *, fast: bool = True) -> torch.Tensor:
    """Final hidden state at the last position (N, d) from the output ``hidden`` of layer ``layer``."""
    blocks = _layers(model)
    top = len(blocks) - 1
    for upper in range(layer + 1, top + 1):
        if fast and upper == top and _is_gemma3(blocks[upper]):
            hidden = _gemma3_last_position(blocks[upper], hidden, acts.kwargs[upper])
        else:
            hidden = blocks[upper](hidden, **acts.kwargs[upper])
    base = getattr(model, "model", model)
    return base.norm(hidden[:, -1])


def upper_forward(model: nn.Module, acts: WindowActivations, layer: int, module: str, params: dict,
                  *, fast: bool = True) -> torch.Tensor:
    """Final hidden state at the last position (N, d) as a function of one module's parameters.

    The layer is re-run from its recorded input (or, for Gemma-3 ``mlp.down_proj`` with ``fast``,
    only from the module's recorded input), then every layer above it, then the final norm.
    """
    hidden = layer_output(model, acts, layer, module, params, fast=fast)
    return forward_from(model, acts, layer, hidden, fast=fast)


class _LastPosition(nn.Module):
    """A Gemma-3 layer evaluated at the last position (so ``functional_call`` can swap its parameters)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, hidden, kwargs):
        return _gemma3_last_position(self.block, hidden, kwargs)


# --------------------------------------------------------------------------------------------
# The operator
# --------------------------------------------------------------------------------------------

def sqrt_unembedding_gram(unembed: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """``(U^T U)^{1/2}`` (d, d) in float64, accumulated in chunks of vocabulary rows."""
    d = unembed.shape[1]
    gram = torch.zeros(d, d, dtype=torch.float64, device=unembed.device)
    for start in range(0, unembed.shape[0], chunk):
        block = unembed[start:start + chunk].float()
        gram += (block.T @ block).double()
    values, vectors = torch.linalg.eigh(gram)
    return ((vectors * values.clamp_min(0).sqrt()) @ vectors.T).cpu()


def cached_sqrt_unembedding_gram(unembed: torch.Tensor) -> torch.Tensor:
    """:func:`sqrt_unembedding_gram`, cached on disk under a fingerprint of ``unembed``."""
    from ..cache import cached

    # float64 sums without a float64 copy of U (1.3 GB for a 262k x 640 vocabulary)
    key = {"v": 1, "shape": list(unembed.shape), "sum": float(unembed.sum(dtype=torch.float64)),
           "abs": float(unembed[::97].abs().sum(dtype=torch.float64)), "first": unembed[0, :8].tolist()}
    return cached("lm-unembedding-root", key, lambda: sqrt_unembedding_gram(unembed))


class LMKernelOperator(LinearOperator):
    """``K = S^{1/2} J_r J_r^T S^{1/2}`` (N*d, N*d) as a ``LinearOperator`` (window-major order).

    Parameters
    ----------
    model : the causal LM (float32, eval mode).
    acts : :class:`WindowActivations` of the N windows (from :func:`capture_windows`).
    layer, module : the module whose parameters define ``J_r`` (e.g. ``16``, ``"mlp.down_proj"``).
    sqrt_gram : (d, d) tensor ``(U^T U)^{1/2}`` (:func:`sqrt_unembedding_gram`), or None for the
        hidden-state eNTK ``J_r J_r^T`` itself.
    chunk : vectors per batched (vmap) vjp/jvp.
    fast : use the exact Gemma-3 shortcuts (see the module docstring).
    linearize : trace the tangent map once (``torch.func.linearize``) so later products skip the
        primal computation (about 2x faster per product), at the price of holding every
        intermediate of the upper network for all N windows; ``False`` recomputes it in each
        ``jvp``. ``None`` (default) linearizes only when :meth:`tape_bytes` is at most
        ``linearize_budget`` bytes (default 1 GiB): measured on a Gemma-3 stack, the traced tape
        holds about 48 floats per (window, position, MLP unit) of every layer it re-runs in full,
        e.g. 2.4 GB per layer for Gemma-3-270m at N = 256, T = 25, which made the chapter's layer
        sweep peak at 17 GB when every lower layer kept its tape.

    group : a ``torch.distributed`` process group or ``"world"``: each rank keeps its shard of the
        windows and the products all-reduce / all-gather over the group (:mod:`entk_lib.distributed`);
        every rank passes the same ``acts`` and sees the same operator.

    Call :meth:`release` when done (the sweep does): the stored closures refer back to the
    operator, so without it the memory waits for Python's cycle collector.
    """

    #: Floats the linearized tape holds per (window, position, MLP unit) of a fully re-run layer.
    TAPE_FLOATS_PER_UNIT = 48

    def __init__(self, model, acts: WindowActivations, layer: int, module: str = "mlp.down_proj",
                 sqrt_gram: torch.Tensor | None = None, *, chunk: int = 4, fast: bool = True,
                 linearize: bool | None = None, linearize_budget: int = 2**30, group=None):
        self.n_windows, self.d_model = acts.final_last.shape
        self._sharded = None
        if group is not None:  # this rank keeps its shard of the windows (entk_lib.distributed)
            from ..distributed import ShardedProducts, resolve_group, shard_slice

            group, rank, world = resolve_group(group)
            mine = shard_slice(self.n_windows, rank, world)
            acts = acts.subset(np.arange(mine.start, mine.stop))
            self._sharded = ShardedProducts(self._pull_local, self._push_local, self.n_windows, group)
        self.model, self.acts, self.layer, self.module, self.fast = model, acts, layer, module, fast
        owner = _layers(model)[layer].get_submodule(module)
        self.params = {k: v.detach() for k, v in owner.named_parameters(recurse=False)}
        if not self.params:
            raise ValueError(f"module `{module}` of layer {layer} has no parameters")
        self.root = None if sqrt_gram is None else sqrt_gram.to(acts.final_last)
        self.chunk = check_int("chunk", chunk, minimum=1)
        self.n_products = 0
        self.n_params = sum(v.numel() for v in self.params.values())
        if linearize not in (None, True, False):
            raise ValueError(f"`linearize` must be True, False or None (auto), got {linearize!r}")
        self.linearize_budget = check_int("linearize_budget", linearize_budget, minimum=0)
        auto = self.tape_bytes() <= self.linearize_budget
        self._linear = None if (linearize if linearize is not None else auto) else False
        out, self._pull = vjp(self._f, self.params)
        self.output = out.detach()
        size = self.n_windows * self.d_model
        super().__init__(dtype=np.dtype("float64"), shape=(size, size))

    def tape_bytes(self) -> int:
        """Estimated size of the linearized tape: :attr:`TAPE_FLOATS_PER_UNIT` float32 values per
        (window, position, MLP unit) of each layer re-run in full (the module's own layer unless
        the Gemma-3 ``down_proj`` shortcut applies; the last layer is cheap under ``fast``)."""
        blocks = _layers(self.model)
        top = len(blocks) - 1
        full = [u for u in range(self.layer + 1, top + 1)
                if not (self.fast and u == top and _is_gemma3(blocks[u]))]
        own_short = self.fast and self.module == "mlp.down_proj" and _is_gemma3(blocks[self.layer])
        if not own_short and not (self.fast and self.layer == top and _is_gemma3(blocks[self.layer])):
            full.append(self.layer)
        n, t = self.acts.layer_inputs[self.layer].shape[:2] if self.layer in self.acts.layer_inputs \
            else (self.n_windows, 1)
        width = getattr(getattr(self.model, "config", None), "intermediate_size", None) or 4 * self.d_model
        return int(self.TAPE_FLOATS_PER_UNIT * 4 * n * t * width * len(full))

    def drop_tape(self) -> None:
        """Free the linearized tape; later products (if any) recompute the primal in each jvp."""
        self._linear = False

    def release(self) -> None:
        """Drop the stored vjp closure and linearized tape (the operator can no longer multiply)."""
        self.drop_tape()
        self._pull = None
        self._sharded = None  # its bound methods refer back to the operator

    def _f(self, params):
        return upper_forward(self.model, self.acts, self.layer, self.module, params, fast=self.fast)

    def _push(self, tangent):
        if self._linear is None:
            try:  # trace the tangent map once: later products skip the primal computation
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    self._linear = linearize(self._f, self.params)[1]
            except Exception:  # noqa: BLE001 - not every model traces; jvp always works
                self._linear = False
        if self._linear is False:
            return jvp(self._f, (self.params,), (tangent,))[1]
        return self._linear(tangent)

    def _root(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.root is None else x @ self.root

    def pull(self, cotangents: torch.Tensor) -> dict:
        """``J_r^T`` on a batch (b, N, d) of output-space blocks -> {name: (b, *shape)} (summed
        over the ranks' shards when the operator is sharded)."""
        return self._sharded.pull_all(cotangents) if self._sharded else self._pull_local(cotangents)

    def push(self, tangents: dict) -> torch.Tensor:
        """``J_r`` on a batch of parameter-space tangents {name: (b, *shape)} -> (b, N, d)."""
        return self._sharded.push_all(tangents) if self._sharded else self._push_local(tangents)

    def _pull_local(self, cotangents: torch.Tensor) -> dict:
        if cotangents.shape[0] == 1:
            return {k: v[None] for k, v in self._pull(cotangents[0])[0].items()}
        return vmap(self._pull)(cotangents)[0]

    def _push_local(self, tangents: dict) -> torch.Tensor:
        batch = next(iter(tangents.values())).shape[0]
        return torch.stack([self._push({k: v[i] for k, v in tangents.items()}) for i in range(batch)])

    def parameter_directions(self, vectors: np.ndarray) -> dict:
        """``J_r^T S^{1/2} v`` for eigenvectors ``v`` (N*d, k): the parameter-space directions."""
        blocks = torch.as_tensor(np.asarray(vectors).T, dtype=self.output.dtype, device=self.output.device)
        blocks = self._root(blocks.reshape(-1, self.n_windows, self.d_model))
        return self.pull(blocks)

    def _matmat(self, v):
        v_t = torch.as_tensor(np.asarray(v).T, dtype=self.output.dtype, device=self.output.device)
        blocks = self._root(v_t.reshape(-1, self.n_windows, self.d_model))
        outs = []
        for start in range(0, blocks.shape[0], self.chunk):
            outs.append(self._root(self.push(self.pull(blocks[start:start + self.chunk]))))
        self.n_products += blocks.shape[0]
        return torch.cat(outs).reshape(blocks.shape[0], -1).T.double().cpu().numpy()

    def _matvec(self, v):
        return self._matmat(np.asarray(v).reshape(-1, 1))[:, 0]

    def _rmatvec(self, v):
        return self._matvec(v)

    def _adjoint(self):
        return self


# --------------------------------------------------------------------------------------------
# The old Lanczos entry point (deprecated), and the per-window scores of an eigenvector
# --------------------------------------------------------------------------------------------

@dataclass
class LanczosResult:
    """Top Ritz pairs: ``values`` (k,) descending, ``vectors`` (n, k) orthonormal, ``residuals``
    (k,) the Ritz residual norms ``|beta_m s_{m,i}|`` (a small value means a converged pair),
    ``steps`` the Lanczos steps (operator products) made."""

    values: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray
    steps: int


def lanczos_top(op, k: int, steps: int, *, seed: int = 0, progress=None) -> LanczosResult:
    """Deprecated: use ``entk_lib.top_eigenpairs(op, k, solver="lanczos", steps=steps, seed=seed,
    progress=progress)`` (with ``return_info=True`` for the residuals).

    A thin wrapper of exactly that call: ``steps`` Lanczos steps with full re-orthogonalization
    in float64 (:func:`entk_lib.spectrum.lanczos_eigsh`), eigenvector signs fixed as everywhere
    in the library (the largest-magnitude entry positive).
    """
    warnings.warn("entk_lib.lm.kernel.lanczos_top is deprecated; use entk_lib.top_eigenpairs(op, k, "
                  "solver='lanczos', steps=steps, seed=seed, progress=progress)",
                  DeprecationWarning, stacklevel=2)
    pairs, info = top_eigenpairs(op, k, solver="lanczos", steps=steps, seed=seed,
                                 progress=False if progress is None else progress, return_info=True)
    return LanczosResult(pairs.values, pairs.vectors, info.residuals, info.n_products)


def eigenvector_scores(vectors: np.ndarray, n_windows: int, d_model: int) -> tuple[np.ndarray, np.ndarray]:
    """One score per window for each eigenvector: its leading singular direction.

    Each column of ``vectors`` (N*d, k), reshaped (N, d) window-major, is reduced to
    ``sigma_1 u_1`` (N,), its leading left singular vector times the singular value; the sign
    is fixed so that the scores sum to a non-negative number (the probes try both signs).

    Returns
    -------
    scores : (N, k); directions : (k, d) the leading right singular vectors (output space).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    scores = np.zeros((n_windows, vectors.shape[1]))
    directions = np.zeros((vectors.shape[1], d_model))
    for j in range(vectors.shape[1]):
        u, s, vt = np.linalg.svd(vectors[:, j].reshape(n_windows, d_model), full_matrices=False)
        sign = 1.0 if u[:, 0].sum() >= 0 else -1.0
        scores[:, j] = sign * s[0] * u[:, 0]
        directions[j] = sign * vt[0]
    return scores, directions
