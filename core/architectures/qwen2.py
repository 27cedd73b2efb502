"""Qwen2 / Qwen2.5: Llama layout with biases on q, k and v (not o); the small models tie the head."""

from __future__ import annotations

from core.architectures.layout import ConfigView, Layout, attention, block_norms, final_norm_and_head, gated_mlp

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
        block_norms(out, p, hidden, dtype)
    return final_norm_and_head(out, cfg, vocab, hidden, dtype)
