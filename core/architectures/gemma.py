"""Gemma 1, 2 and 3: head_dim independent of the width, embeddings always tied (no lm_head in the file).

Gemma 2 and 3 add norms before and after the feed-forward block; Gemma 3 adds q/k norms. A multimodal
Gemma 3 config (``text_config`` + ``vision_config``) is counted for its language model only, under the
``language_model.model.`` names its checkpoint uses; unstated text sizes take Gemma3TextConfig's defaults,
as transformers does.
"""

from __future__ import annotations

from typing import Any

from core.architectures.layout import ConfigView, Layout, attention, gated_mlp
from core.errors import MalformedFileError

MODEL_TYPES = ("gemma", "gemma2", "gemma3", "gemma3_text")
GEMMA3_TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 262_208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
}


def layout(cfg: ConfigView) -> Layout:
    model_type = cfg.config.get("model_type")
    prefix, notes = "model", []
    if model_type == "gemma3" or isinstance(cfg.config.get("text_config"), dict):
        text = cfg.config.get("text_config")
        if not isinstance(text, dict):
            raise MalformedFileError("config.json of a multimodal Gemma 3 has no 'text_config' object")
        inherited = {k: cfg.config[k] for k in ("torch_dtype", "dtype") if k in cfg.config and k not in text}
        cfg = ConfigView({**text, **inherited}, GEMMA3_TEXT_DEFAULTS)
        prefix = "language_model.model"
        notes.append("multimodal model: only the language model is counted (vision tower and projector not listed)")
        model_type = "gemma3_text"
    out = Layout(notes=notes, partial=prefix != "model")
    dtype, hidden, vocab = cfg.dtype(), cfg.size("hidden_size"), cfg.size("vocab_size")
    inner = cfg.size("intermediate_size")
    sandwich = model_type in ("gemma2", "gemma3_text")
    out.add(f"{prefix}.embed_tokens.weight", (vocab, hidden), dtype)
    for i in range(cfg.layers()):
        p = f"{prefix}.layers.{i}"
        attention(out, f"{p}.self_attn", cfg, dtype, qkv_bias=cfg.flag("attention_bias", False),
                  o_bias=cfg.flag("attention_bias", False), qk_norm=model_type == "gemma3_text")
        gated_mlp(out, f"{p}.mlp", hidden, inner, dtype)
        out.add(f"{p}.input_layernorm.weight", (hidden,), dtype)
        out.add(f"{p}.post_attention_layernorm.weight", (hidden,), dtype)
        if sandwich:
            out.add(f"{p}.pre_feedforward_layernorm.weight", (hidden,), dtype)
            out.add(f"{p}.post_feedforward_layernorm.weight", (hidden,), dtype)
    out.add(f"{prefix}.norm.weight", (hidden,), dtype)
    if not cfg.flag("tie_word_embeddings", True):
        out.add("lm_head.weight", (vocab, hidden), dtype)
    return out
