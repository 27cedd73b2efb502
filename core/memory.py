"""What it costs to hold or train a model, from its parameter count and architecture.

Formulas from ANALYSIS.md: weights = parameters x bytes per parameter; KV cache
counted layer by layer by core.kv_cache (per token: layers x 2 x kv_heads x head_dim x bytes); Adam training about 16
bytes per parameter (weights, gradients and two optimizer moments) before
activations.
"""

from __future__ import annotations

from typing import Any

from core.checkpoint import Checkpoint
from core.kv_cache import kv_layout, kv_layout_from_facts

PRECISIONS = {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}
ADAM_BYTES_PER_PARAM = 16


def stored_parameter_bytes(checkpoint: Checkpoint) -> int:
    """Bytes the learned tensors take as stored in the file (quant blocks included)."""
    return checkpoint.parameter_bytes


def weight_memory(checkpoint: Checkpoint) -> dict[str, int]:
    """Bytes the parameters need at their stored dtype and at common precisions."""
    params = checkpoint.parameter_count
    out = {"stored": stored_parameter_bytes(checkpoint)}
    for name, per_param in PRECISIONS.items():
        out[name] = int(params * per_param)
    return out


def kv_cache_bytes_per_token(architecture: dict[str, Any], bytes_per_element: int = 2) -> int | None:
    """KV cache per token from architecture facts alone (layers x 2 x kv_heads x head_dim), or None when they do
    not say enough or the model is encoder-only. describe() drops or corrects a field config.json claimed against
    the tensors, so a contradicted claim never reaches this figure. memory_summary counts layer by layer."""
    layout = kv_layout_from_facts(architecture)
    if layout is None or not layout.layers:
        return None
    return layout.bytes_per_token("fp16") // 2 * bytes_per_element


def training_bytes(checkpoint: Checkpoint) -> int:
    """Adam training footprint before activations (weights + gradients + 2 moments)."""
    return checkpoint.parameter_count * ADAM_BYTES_PER_PARAM


def memory_summary(checkpoint: Checkpoint) -> dict[str, Any]:
    """Everything a 'what does it cost' panel or report shows, as plain numbers."""
    summary: dict[str, Any] = {"weights": weight_memory(checkpoint), "training_adam": training_bytes(checkpoint)}
    layout = kv_layout(checkpoint)  # layer by layer: latent attention, sliding windows, per-layer KV heads
    if layout is not None and layout.layers:
        summary["kv_cache_per_token_fp16"] = layout.bytes_per_token("fp16")
        context = checkpoint.architecture.get("context_length")
        if context:
            summary["kv_cache_full_context_fp16"] = layout.bytes_at(int(context), 1, "fp16")
    return summary
