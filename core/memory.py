"""What it costs to hold or train a model, from its parameter count and architecture.

Formulas from ANALYSIS.md: weights = parameters x bytes per parameter; KV cache
= layers x 2 x kv_heads x head_dim x bytes per token; Adam training about 16
bytes per parameter (weights, gradients and two optimizer moments) before
activations.
"""

from __future__ import annotations

from typing import Any

from core.checkpoint import Checkpoint

PRECISIONS = {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}
ADAM_BYTES_PER_PARAM = 16


def stored_parameter_bytes(checkpoint: Checkpoint) -> int:
    """Bytes the learned tensors take as stored in the file (quant blocks included)."""
    return sum(t.nbytes for t in checkpoint.tensors if t.is_parameter)


def weight_memory(checkpoint: Checkpoint) -> dict[str, int]:
    """Bytes the parameters need at their stored dtype and at common precisions."""
    params = checkpoint.parameter_count
    out = {"stored": stored_parameter_bytes(checkpoint)}
    for name, per_param in PRECISIONS.items():
        out[name] = int(params * per_param)
    return out


def kv_cache_bytes_per_token(architecture: dict[str, Any], bytes_per_element: int = 2) -> int | None:
    """KV cache per token of context, or None when the architecture is not known well enough or has no KV cache
    (encoder-only). describe() drops or corrects a field config.json claimed against the tensors, so a
    contradicted claim never reaches this figure."""
    if architecture.get("encoder_only"):
        return None
    layers = architecture.get("layers")
    kv_heads = architecture.get("kv_heads")
    head_dim = architecture.get("head_dim")
    if not (layers and kv_heads and head_dim):
        return None
    return int(layers) * 2 * int(kv_heads) * int(head_dim) * bytes_per_element


def training_bytes(checkpoint: Checkpoint) -> int:
    """Adam training footprint before activations (weights + gradients + 2 moments)."""
    return checkpoint.parameter_count * ADAM_BYTES_PER_PARAM


def memory_summary(checkpoint: Checkpoint) -> dict[str, Any]:
    """Everything a 'what does it cost' panel or report shows, as plain numbers."""
    summary: dict[str, Any] = {"weights": weight_memory(checkpoint), "training_adam": training_bytes(checkpoint)}
    per_token = kv_cache_bytes_per_token(checkpoint.architecture)
    if per_token is not None:
        summary["kv_cache_per_token_fp16"] = per_token
        context = checkpoint.architecture.get("context_length")
        if context:
            summary["kv_cache_full_context_fp16"] = per_token * int(context)
    return summary
