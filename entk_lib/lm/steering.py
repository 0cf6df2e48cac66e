"""Do the directions matter causally? Steering and ablating a layer's output along a direction.

Directions live in the residual stream at the output of the kernel's layer. A PCA (or random)
direction is already there. An eNTK eigenvector ``v`` (N*d) corresponds to the parameter-space
direction ``g = J_r^T S^{1/2} v`` of the module's weights; moving the weights along ``g`` moves
the layer's output by ``Delta = d(layer output)/dW . g`` (N, T, d). Its leading right singular
vector ``e`` (d,) is the eNTK direction in the residual stream.

Interventions on every position of the layer's output ``h``: *steering* ``h + s * alpha * e``
(``s = +-1``, the same ``alpha`` for every method) and *ablation* ``h - (h.e) e``. The effect is
read off the model's greedy next token at the last position (and the part of speech of the word
it starts).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import jvp

from ..linalg import as_numpy
from .kernel import LMKernelOperator, WindowActivations, forward_from, layer_output

__all__ = ["entk_residual_directions", "greedy_after", "intervene"]


def entk_residual_directions(op: LMKernelOperator, vectors: np.ndarray) -> np.ndarray:
    """Residual-stream directions (k, d) of eNTK eigenvectors ``vectors`` (N*d, k) of ``op``.

    Each is the leading right singular vector of the layer-output perturbation induced by moving
    the module's weights along ``J_r^T S^{1/2} v``; signed so that it correlates positively with
    that perturbation summed over positions.
    """
    grads = op.parameter_directions(vectors)
    out = np.zeros((vectors.shape[1], op.d_model))
    for j in range(vectors.shape[1]):
        tangent = {k: v[j] for k, v in grads.items()}
        _, delta = jvp(lambda p: layer_output(op.model, op.acts, op.layer, op.module, p, fast=op.fast),
                       (op.params,), (tangent,))
        flat = as_numpy(delta.reshape(-1, delta.shape[-1]))
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        e = vt[0]
        out[j] = e if flat.sum(0) @ e >= 0 else -e
    return out


def intervene(hidden: torch.Tensor, direction: np.ndarray, mode: str, alpha: float = 0.0) -> torch.Tensor:
    """``hidden`` (N, T, d) steered (``mode="steer"``: ``+ alpha * e``) or ablated (``"ablate"``)."""
    e = torch.as_tensor(direction / np.linalg.norm(direction), dtype=hidden.dtype, device=hidden.device)
    if mode == "steer":
        return hidden + alpha * e
    if mode == "ablate":
        return hidden - (hidden @ e)[..., None] * e
    raise ValueError(f"`mode` must be 'steer' or 'ablate', got {mode!r}")


def greedy_after(model, acts: WindowActivations, layer: int, hidden: torch.Tensor,
                 chunk: int = 64) -> np.ndarray:
    """Greedy next token (N,) when layer ``layer`` outputs ``hidden`` (N, T or 1, d)."""
    head = model.get_output_embeddings()
    out = []
    with torch.no_grad():
        for start in range(0, hidden.shape[0], chunk):
            sub = acts.subset(np.arange(start, min(start + chunk, hidden.shape[0])))
            final = forward_from(model, sub, layer, hidden[start:start + chunk])
            out.append(head(final).argmax(-1))
    return torch.cat(out).cpu().numpy()
