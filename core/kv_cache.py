"""The KV cache, counted layer by layer: what each layer keeps per token of context.

A decoder keeps every past token's keys and values so it need not recompute them. Per layer and token that is
kv_heads x (key size + value size) elements (grouped-query and multi-query attention have fewer KV heads than
query heads; head_dim may differ from hidden/heads), or, for DeepSeek's multi-head latent attention, one
compressed vector of kv_lora_rank + qk_rope_head_dim. Sliding-window layers keep at most their window.
Encoder-only models (BERT) cache nothing. Sources, in order: config.json, GGUF metadata, architecture facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.architecture import encoder_only
from core.checkpoint import Checkpoint
from core.planner_errors import PlannerInputError

# KV element types: bytes per element as (type size, block size), so block-quantised caches are exact.
KV_DTYPES: dict[str, tuple[int, int]] = {
    "fp32": (4, 1), "bf16": (2, 1), "fp16": (2, 1), "fp8": (1, 1), "q8_0": (34, 32), "q4_0": (18, 32),
}

# Families whose sliding layers follow a fixed pattern when the header names only the window (llama.cpp's
# set_swa_pattern): Gemma 2 and gpt-oss alternate (layer 0 slides), Cohere 2 has one global layer in four,
# Gemma 3 one in six.
_PATTERN_DEFAULTS = {"gemma2": 2, "gpt-oss": 2, "cohere2": 4, "gemma3": 6, "gemma3_text": 6}


@dataclass(frozen=True, slots=True)
class LayerKV:
    """What one layer caches per token: key and value elements (latent attention: all in ``key``)."""

    key: int
    value: int
    window: int | None = None  # tokens kept at most; None keeps the whole context


@dataclass(frozen=True)
class KVLayout:
    """Every layer's cache, and where the figures came from."""

    layers: tuple[LayerKV, ...]
    source: str
    kind: str  # "attention" | "latent attention (MLA)" | "none (encoder-only)"

    def bytes_per_token(self, kv_dtype: str = "fp16") -> int:
        """Bytes one more token of context adds while every layer is still inside its window."""
        return self.bytes_at(1, 1, kv_dtype)

    def bytes_at(self, context: int, batch: int = 1, kv_dtype: str = "fp16") -> int:
        """Bytes for ``batch`` sequences of ``context`` tokens; block-quantised rows round up to whole blocks."""
        size, block = kv_dtype_size(kv_dtype)
        total = 0
        for layer in self.layers:
            tokens = context if layer.window is None else min(context, layer.window)
            row = -(-layer.key // block) * size + -(-layer.value // block) * size
            total += row * tokens
        return total * batch

    @property
    def windowed_layers(self) -> int:
        return sum(1 for layer in self.layers if layer.window is not None)

    def formula(self, kv_dtype: str = "fp16") -> str:
        """The arithmetic in words, grouped by distinct layer shapes."""
        if not self.layers:
            return "encoder-only model: it reads the whole input at once and caches nothing"
        size, block = kv_dtype_size(kv_dtype)
        per = f"{size} bytes" if block == 1 else f"{size}/{block} bytes"
        groups: dict[LayerKV, int] = {}
        for layer in self.layers:
            groups[layer] = groups.get(layer, 0) + 1
        parts = []
        for layer, count in groups.items():
            width = f"{layer.key:,}" if self.kind.startswith("latent") else f"({layer.key:,} + {layer.value:,})"
            tokens = "context" if layer.window is None else f"min(context, {layer.window:,})"
            parts.append(f"{count} layers x {width} values x {tokens}")
        total = parts[0] if len(parts) == 1 else "(" + " + ".join(parts) + ")"
        return f"{total} x batch x {per} per value ({kv_dtype}; from {self.source})"


def kv_dtype_size(kv_dtype: str) -> tuple[int, int]:
    """(type size, block size) of a KV element type; unknown names raise PlannerInputError."""
    found = KV_DTYPES.get(kv_dtype.lower())
    if found is None:
        raise PlannerInputError(f"unknown KV cache type {kv_dtype[:40]!r}; use one of {', '.join(KV_DTYPES)}")
    return found


def kv_layout(checkpoint: Checkpoint) -> KVLayout | None:
    """The checkpoint's KV cache layout, or None when its architecture does not say enough to count it.

    Where the architecture facts record that config.json contradicted the tensors, the corrected layer count,
    KV heads and head size win over the config's claims (and a field dropped as unknowable stays unknown)."""
    facts = checkpoint.architecture or {}
    config = checkpoint.metadata.get("config.json")
    if facts.get("encoder_only"):
        return KVLayout((), "architecture facts", "none (encoder-only)")
    if isinstance(config, dict) and config:
        corrected = facts if facts.get("contradictions") else None
        if corrected is not None and not all(facts.get(k) for k in ("layers", "kv_heads", "head_dim")) \
                and not _has_latent_attention(_text_config(config)):
            return None
        return kv_layout_from_config(config, corrected=corrected)
    if isinstance(checkpoint.metadata.get("general.architecture"), str):
        found = kv_layout_from_gguf(checkpoint.metadata)
        if found is not None:
            return found
    return kv_layout_from_facts(facts)


def kv_layout_from_config(config: dict[str, Any], corrected: dict[str, Any] | None = None) -> KVLayout | None:
    """The layout a Hugging Face config.json describes; None when it lacks layers, heads or widths."""
    if encoder_only(config):
        return KVLayout((), "config.json", "none (encoder-only)")
    source = _text_config(config)
    layers = _first_int(source, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    if corrected and corrected.get("layers"):
        layers = int(corrected["layers"])
    if not layers:
        return None
    if _has_latent_attention(source):
        width = _first_int(source, "kv_lora_rank") + (_first_int(source, "qk_rope_head_dim") or 0)
        return KVLayout(tuple(LayerKV(width, 0) for _ in range(layers)), "config.json", "latent attention (MLA)")
    heads = _first_int(source, "num_attention_heads", "n_head", "num_heads", "n_heads")
    hidden = _first_int(source, "hidden_size", "n_embd", "d_model", "dim")
    kv_heads = _first_int(source, "num_key_value_heads", "n_kv_heads", "num_kv_heads", "multi_query_group_num")
    if kv_heads is None:
        kv_heads = 1 if source.get("multi_query") is True else heads
    head_dim = _first_int(source, "head_dim") or (hidden // heads if hidden and heads else None)
    if corrected:
        kv_heads, head_dim = corrected.get("kv_heads"), corrected.get("head_dim")
    if not (kv_heads and head_dim):
        return None
    value_dim = _first_int(source, "v_head_dim") or head_dim
    windows = _windows(source, layers)
    out = tuple(LayerKV(kv_heads * head_dim, kv_heads * value_dim, windows[i]) for i in range(layers))
    return KVLayout(out, "config.json", "attention")


def kv_layout_from_gguf(meta: dict[str, Any]) -> KVLayout | None:
    """The layout GGUF metadata describes ({arch}.block_count, .attention.head_count_kv, key/value lengths,
    sliding window); per-layer arrays of KV heads are honoured, a layer with 0 KV heads caches nothing."""
    arch = meta.get("general.architecture")
    layers = _int(meta.get(f"{arch}.block_count"))
    if not layers:
        return None
    rank = _int(meta.get(f"{arch}.attention.kv_lora_rank"))
    if rank:
        rope = _int(meta.get(f"{arch}.rope.dimension_count")) or 0
        return KVLayout(tuple(LayerKV(rank + rope, 0) for _ in range(layers)), "GGUF metadata",
                        "latent attention (MLA)")
    heads = meta.get(f"{arch}.attention.head_count")
    kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
    per_layer = _per_layer(kv_heads, layers)
    head_count = _per_layer(heads, layers)
    hidden = _int(meta.get(f"{arch}.embedding_length"))
    key = _int(meta.get(f"{arch}.attention.key_length"))
    value = _int(meta.get(f"{arch}.attention.value_length"))
    if key is None and hidden and head_count and head_count[0]:
        key = hidden // head_count[0]
    value = value or key
    if per_layer is None or not key or not value:
        return None
    window = _int(meta.get(f"{arch}.attention.sliding_window"))
    windows = _pattern_windows(arch, window, layers, meta.get(f"{arch}.attention.sliding_window_pattern"))
    out = tuple(LayerKV(n * key, n * value, windows[i]) for i, n in enumerate(per_layer))
    return KVLayout(out, "GGUF metadata", "attention")


def kv_layout_from_facts(facts: dict[str, Any]) -> KVLayout | None:
    """The plain layout from architecture facts alone: layers x kv_heads x head_dim for keys and for values."""
    if facts.get("encoder_only"):
        return KVLayout((), "architecture facts", "none (encoder-only)")
    layers, kv_heads, head_dim = (_int(facts.get(k)) for k in ("layers", "kv_heads", "head_dim"))
    if not (layers and kv_heads and head_dim):
        return None
    width = kv_heads * head_dim
    return KVLayout(tuple(LayerKV(width, width) for _ in range(layers)), "architecture facts", "attention")


def _windows(config: dict[str, Any], layers: int) -> list[int | None]:
    """Each layer's window from layer_types, a family's fixed pattern, or one window for all layers."""
    window = _int(config.get("sliding_window"))
    if not window or config.get("use_sliding_window") is False:
        return [None] * layers
    types = config.get("layer_types")
    if isinstance(types, list) and len(types) >= layers:
        return [window if str(t).startswith("sliding") else None for t in types[:layers]]
    model_type = config.get("model_type")
    pattern = _int(config.get("sliding_window_pattern"))
    if model_type in _PATTERN_DEFAULTS or pattern:
        return _pattern_windows(str(model_type), window, layers, pattern)
    first_sliding = _int(config.get("max_window_layers")) if config.get("use_sliding_window") is True else None
    start = first_sliding if first_sliding is not None and first_sliding < layers else 0
    return [window if i >= start else None for i in range(layers)]


def _pattern_windows(arch: str, window: int | None, layers: int, pattern: Any) -> list[int | None]:
    """Sliding layers by pattern: every layer but each ``pattern``-th slides (Gemma 2: 2, Gemma 3: 6); a
    per-layer boolean list (newer GGUF) says it directly."""
    if not window:
        return [None] * layers
    if isinstance(pattern, list) and len(pattern) >= layers:
        return [window if flag else None for flag in pattern[:layers]]
    every = _int(pattern) or _PATTERN_DEFAULTS.get(arch)
    if not every:
        return [window] * layers
    return [window if (i + 1) % every else None for i in range(layers)]


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """A multimodal config's language model part (text_config) over the outer fields."""
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, dict) else config


def _has_latent_attention(config: dict[str, Any]) -> bool:
    return bool(_int(config.get("kv_lora_rank")))


def _per_layer(value: Any, layers: int) -> list[int] | None:
    if isinstance(value, list):
        counts = [_int(v) for v in value[:layers]]
        return [c for c in counts if c is not None] if len(counts) == layers and None not in counts else None
    count = _int(value)
    return [count] * layers if count else None


def _first_int(config: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = _int(config.get(key))
        if value is not None:
            return value
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

