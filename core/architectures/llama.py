"""Llama and Mistral (same layout): grouped-query attention, SwiGLU MLP, RMS norms, optional tied head."""

from __future__ import annotations

from core.architectures.layout import ConfigView, Layout, attention, block_norms, final_norm_and_head, gated_mlp

MODEL_TYPES = ("llama", "mistral")


def layout(cfg: ConfigView) -> Layout:
    out = Layout()
    dtype, hidden, vocab = cfg.dtype(), cfg.size("hidden_size"), cfg.size("vocab_size")
    inner = cfg.size("intermediate_size")
    attention_bias, mlp_bias = cfg.flag("attention_bias", False), cfg.flag("mlp_bias", False)
    out.add("model.embed_tokens.weight", (vocab, hidden), dtype)
    for i in range(cfg.layers()):
        p = f"model.layers.{i}"
        attention(out, f"{p}.self_attn", cfg, dtype, qkv_bias=attention_bias, o_bias=attention_bias)
        gated_mlp(out, f"{p}.mlp", hidden, inner, dtype, bias=mlp_bias)
        block_norms(out, p, hidden, dtype)
    return final_norm_and_head(out, cfg, vocab, hidden, dtype)
