"""Architecture facts (family, layers, widths, heads, vocabulary) from whatever the file tells us.

Sources in order of trust: ``config.json`` beside the weights (Hugging Face),
GGUF metadata (``{arch}.block_count`` ...), then what tensor names and shapes
imply. Each fact records nothing it cannot back up: missing stays missing.

A config.json is a claim made next to the weights, not a fact about them: where it
contradicts what the tensors show (layer count, hidden size, vocabulary rows, key/value
width), the tensors win and ``contradictions`` says so in one line per claim, so no
memory or KV-cache figure is ever computed from a contradicted field.
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


MAX_FAMILY_CHARS = 200
# Hugging Face model types whose attention sees the whole input at once: no KV cache to size.
ENCODER_ONLY_TYPES = frozenset({
    "bert", "roberta", "xlm-roberta", "xlm-roberta-xl", "distilbert", "electra", "deberta", "deberta-v2", "albert",
    "camembert", "mpnet", "ernie", "modernbert", "nomic_bert", "esm", "layoutlm", "layoutlmv2", "layoutlmv3",
    "longformer", "funnel", "mobilebert", "squeezebert", "canine", "data2vec-text", "ibert", "megatron-bert",
    "rembert", "luke", "convbert", "nystromformer", "yoso", "mra", "splinter", "bros", "lilt", "markuplm",
    "new", "jina_bert",
})
_ENCODER_HEADS = ("ForMaskedLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering",
                  "ForMultipleChoice", "ForPreTraining", "Model")
_DECODER_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
_MULTIMODAL_KEYS = ("text_config", "vision_config", "audio_config", "speech_config")


def describe(checkpoint: Checkpoint, config: dict[str, Any] | None) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    claims: dict[str, Any] = {}
    if config:
        claims = _from_config(config)
        facts.update(claims)
        facts["source"] = "config.json"
    elif "general.architecture" in checkpoint.metadata:
        facts.update(_from_gguf(checkpoint.metadata))
        facts["source"] = "GGUF metadata"
    inferred = _from_tensors(checkpoint)
    for key, value in inferred.items():
        facts.setdefault(key, value)
    if facts and "source" not in facts:
        facts["source"] = "tensor names and shapes"
    checkable = bool(config) and checkpoint.format != "gguf" and not any(k in config for k in _MULTIMODAL_KEYS)
    contradictions = _check_shape_claims(facts, claims, inferred, config or {}, checkpoint) if checkable else []
    if "head_dim" not in facts and facts.get("hidden_size") and facts.get("heads"):
        facts["head_dim"] = facts["hidden_size"] // facts["heads"]
    if checkable:
        contradictions += _check_kv_width(facts, claims, checkpoint, config or {})
    if "kv_heads" not in facts and "heads" in facts and facts.get("source") != "tensor names and shapes" \
            and "kv_heads" not in claims:
        facts["kv_heads"] = facts["heads"]
    if config and encoder_only(config):
        facts["encoder_only"] = True
    out = {k: facts[k] for k in (*FACTS, "encoder_only", "source") if k in facts}
    if contradictions:
        out["contradictions"] = contradictions
    return out


def encoder_only(config: dict[str, Any]) -> bool:
    """True for BERT-style models (no causal attention, so no KV cache): by model type or task heads."""
    if config.get("is_decoder") is True:
        return False
    archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    if any(a.endswith(_DECODER_HEADS) for a in archs):
        return False
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type.lower() in ENCODER_ONLY_TYPES:
        return True
    return bool(archs) and any(a.endswith("ForMaskedLM") for a in archs) \
        and all(a.endswith(_ENCODER_HEADS) for a in archs)


def _check_shape_claims(facts: dict[str, Any], claims: dict[str, Any], inferred: dict[str, Any],
                        config: dict[str, Any], checkpoint: Checkpoint) -> list[str]:
    """Layers, hidden size and vocabulary claimed by config.json against the tensors; the tensors win."""
    found: list[str] = []
    layers = claims.get("layers")
    extra = _int(config.get("num_nextn_predict_layers")) or 0  # DeepSeek's multi-token-prediction layers
    if layers is not None and "layers" in inferred and inferred["layers"] not in (layers, layers + extra):
        found.append(f"config.json says {layers:,} layers; the tensors have {inferred['layers']:,}")
        facts["layers"] = inferred["layers"]
    hidden = claims.get("hidden_size")
    seen_hidden = _hidden_from_tensors(checkpoint, inferred, config)
    if hidden is not None and seen_hidden is not None and hidden != seen_hidden:
        found.append(f"config.json says hidden size {hidden:,}; the tensors are {seen_hidden:,} wide")
        facts["hidden_size"] = seen_hidden
        if "head_dim" not in claims:
            facts.pop("head_dim", None)
    vocab = claims.get("vocab_size")
    if vocab is not None and "vocab_size" in inferred and vocab != inferred["vocab_size"]:
        found.append(f"config.json says a vocabulary of {vocab:,}; the embedding has {inferred['vocab_size']:,} rows")
        facts["vocab_size"] = inferred["vocab_size"]
    return found


def _check_kv_width(facts: dict[str, Any], claims: dict[str, Any], checkpoint: Checkpoint,
                    config: dict[str, Any]) -> list[str]:
    """Key/value heads x head size must equal the key projection's rows; else the rows decide the KV width."""
    if "kv_lora_rank" in config:  # DeepSeek's latent attention has no per-head key projection to compare
        return []
    key = _first_projection(checkpoint, ("k_proj.weight", ".self.key.weight"))
    kv_heads = facts.get("kv_heads", facts.get("heads") if "kv_heads" not in claims else None)
    head_dim = facts.get("head_dim")
    if key is None or not kv_heads or not head_dim:
        return []
    rows = key.shape[0]
    if rows == kv_heads * head_dim:
        return []
    what = "key/value heads" if "kv_heads" in claims else "attention heads"
    if rows % head_dim == 0:
        facts["kv_heads"] = rows // head_dim
    else:
        facts.pop("kv_heads", None)
        facts.pop("head_dim", None)
    return [f"config.json says {kv_heads:,} {what} of size {head_dim:,} ({kv_heads * head_dim:,} key projection "
            f"rows); the tensors have {rows:,} rows"]


def _first_projection(checkpoint: Checkpoint, suffixes: tuple[str, ...]) -> Any:
    """The lowest layer's 2-D projection weight ending in one of ``suffixes`` (nn.Linear: rows out, columns in)."""
    found = [(layer_index(t.name), t) for t in checkpoint.tensors
             if len(t.shape) == 2 and t.name.endswith(suffixes) and layer_index(t.name) is not None]
    return min(found, key=lambda pair: pair[0])[1] if found else None


def _hidden_from_tensors(checkpoint: Checkpoint, inferred: dict[str, Any], config: dict[str, Any]) -> int | None:
    """The model width the weights show: a key/query projection's input columns, else the embedding's width
    (unless the config factorises the embedding, as ALBERT and OPT-350m do)."""
    projection = _first_projection(checkpoint, ("q_proj.weight", "k_proj.weight", ".self.query.weight",
                                                ".self.key.weight"))
    if projection is not None:
        return int(projection.shape[1])
    if any(k in config for k in ("embedding_size", "word_embed_proj_dim", "project_in")):
        return None
    return inferred.get("hidden_size")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _from_config(config: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else None
    source = {**config, **text_config} if text_config else config
    family = source.get("model_type") or config.get("model_type")
    archs = config.get("architectures")
    if isinstance(family, str):
        facts["family"] = family[:MAX_FAMILY_CHARS]
    elif isinstance(archs, list) and archs and isinstance(archs[0], str):
        facts["family"] = archs[0][:MAX_FAMILY_CHARS]
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
