"""Qwen2 / Qwen2.5: Llama layout with biases on q, k and v (not o); the small models tie the head."""

from __future__ import annotations

from core.architectures.layout import ConfigView, Layout, attention, gated_mlp

MODEL_TYPES = ("qwen2",)


def layout(cfg: ConfigView) -> Layout:
    out = Layout()
    dtype, hidden, vocab = cfg.dtype(), cfg.size("hidden_size"), cfg.size("vocab_size")
    inner = cfg.size("intermediate_size")
    out.add("model.embed_tokens.weight", (vocab, hidden), dtype)
    for i in range(cfg.layers()):
        p = f"model.layers.{i}"
        attention(out, f"{p}.self_attn", cfg, dtype, qkv_bias=True)
        gated_mlp(out, f"{p}.mlp", hidden, inner, dtype)
        out.add(f"{p}.input_layernorm.weight", (hidden,), dtype)
        out.add(f"{p}.post_attention_layernorm.weight", (hidden,), dtype)
    out.add("model.norm.weight", (hidden,), dtype)
    if not cfg.flag("tie_word_embeddings", False):
        out.add("lm_head.weight", (vocab, hidden), dtype)
    return out
