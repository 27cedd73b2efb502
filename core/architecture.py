"""Architecture facts (family, layers, widths, heads, vocabulary) from whatever the file tells us.

Sources in order of trust: ``config.json`` beside the weights (Hugging Face),
GGUF metadata (``{arch}.block_count`` ...), then what tensor names and shapes
imply. Each fact records nothing it cannot back up: missing stays missing.
"""

from __future__ import annotations

from typing import Any

from core.checkpoint import Checkpoint
from core.taxonomy import layer_index

FACTS = ("family", "layers", "hidden_size", "heads", "kv_heads", "head_dim", "intermediate_size", "vocab_size",
         "context_length", "tied_embeddings")

_HF_KEYS = {
    "layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "kv_heads": ("num_key_value_heads", "n_kv_heads", "num_kv_heads", "multi_query_group_num"),
    "intermediate_size": ("intermediate_size", "n_inner", "d_ff", "ffn_dim", "ffn_hidden_size"),
    "vocab_size": ("vocab_size", "n_vocab", "padded_vocab_size"),
    "context_length": ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"),
    "head_dim": ("head_dim",),
}


def describe(checkpoint: Checkpoint, config: dict[str, Any] | None) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    if config:
        facts.update(_from_config(config))
        facts["source"] = "config.json"
    elif "general.architecture" in checkpoint.metadata:
        facts.update(_from_gguf(checkpoint.metadata))
        facts["source"] = "GGUF metadata"
    inferred = _from_tensors(checkpoint)
    for key, value in inferred.items():
        facts.setdefault(key, value)
    if facts and "source" not in facts:
        facts["source"] = "tensor names and shapes"
    if "head_dim" not in facts and facts.get("hidden_size") and facts.get("heads"):
        facts["head_dim"] = facts["hidden_size"] // facts["heads"]
    if "kv_heads" not in facts and "heads" in facts and facts.get("source") != "tensor names and shapes":
        facts["kv_heads"] = facts["heads"]
    return {k: facts[k] for k in (*FACTS, "source") if k in facts}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _from_config(config: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else None
    source = {**config, **text_config} if text_config else config
    family = source.get("model_type") or config.get("model_type")
    archs = config.get("architectures")
    if isinstance(family, str):
        facts["family"] = family
    elif isinstance(archs, list) and archs and isinstance(archs[0], str):
        facts["family"] = archs[0]
    for fact, keys in _HF_KEYS.items():
        for key in keys:
            value = _int(source.get(key))
            if value is not None:
                facts[fact] = value
                break
    tied = source.get("tie_word_embeddings")
    if isinstance(tied, bool):
        facts["tied_embeddings"] = tied
    return facts


def _from_gguf(meta: dict[str, Any]) -> dict[str, Any]:
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        return {}
    facts: dict[str, Any] = {"family": arch}
    keys = {
        "layers": f"{arch}.block_count",
        "hidden_size": f"{arch}.embedding_length",
        "heads": f"{arch}.attention.head_count",
        "kv_heads": f"{arch}.attention.head_count_kv",
        "intermediate_size": f"{arch}.feed_forward_length",
        "context_length": f"{arch}.context_length",
        "head_dim": f"{arch}.attention.key_length",
    }
    for fact, key in keys.items():
        value = _int(meta.get(key))
        if value is not None:
            facts[fact] = value
    vocab = _int(meta.get(f"{arch}.vocab_size"))
    tokens = meta.get("tokenizer.ggml.tokens")
    if vocab is None and isinstance(tokens, dict):
        vocab = _int(tokens.get("count"))
    elif vocab is None and isinstance(tokens, list):
        vocab = len(tokens)
    if vocab is not None:
        facts["vocab_size"] = vocab
    return facts


def _from_tensors(checkpoint: Checkpoint) -> dict[str, Any]:
    """What names and shapes imply when no config says so."""
    facts: dict[str, Any] = {}
    indices = [i for t in checkpoint.tensors if (i := layer_index(t.name)) is not None]
    if indices:
        facts["layers"] = max(indices) + 1
    token_tables = [t for t in checkpoint.tensors if t.kind == "embedding" and len(t.shape) == 2
                    and any(k in t.name for k in ("embed_tokens", "wte", "word_embeddings", "token_embd",
                                                  "tok_embeddings", "shared", "embed_in"))]
    if token_tables:
        table = token_tables[0]
        rows, cols = table.shape
        facts["vocab_size"], facts["hidden_size"] = (rows, cols) if rows >= cols else (cols, rows)
        has_head = any(t.role == "head" and len(t.shape) == 2 for t in checkpoint.tensors)
        facts["tied_embeddings"] = not has_head
    return facts
