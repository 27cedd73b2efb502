"""Phi-3: fused projections, ``qkv_proj`` (q rows, then k and v rows) and ``gate_up_proj`` (2 x inner rows)."""

from __future__ import annotations

from core.architectures.layout import ConfigView, Layout, block_norms, final_norm_and_head

MODEL_TYPES = ("phi3",)


def layout(cfg: ConfigView) -> Layout:
    out = Layout()
    dtype, hidden, vocab = cfg.dtype(), cfg.size("hidden_size"), cfg.size("vocab_size")
    inner, heads = cfg.size("intermediate_size"), cfg.size("num_attention_heads")
    kv_heads, head_dim = cfg.size("num_key_value_heads", heads), cfg.head_dim()
    out.add("model.embed_tokens.weight", (vocab, hidden), dtype)
    for i in range(cfg.layers()):
        p = f"model.layers.{i}"
        out.add(f"{p}.self_attn.qkv_proj.weight", ((heads + 2 * kv_heads) * head_dim, hidden), dtype)
        out.add(f"{p}.self_attn.o_proj.weight", (hidden, heads * head_dim), dtype)
        out.add(f"{p}.mlp.gate_up_proj.weight", (2 * inner, hidden), dtype)
        out.add(f"{p}.mlp.down_proj.weight", (hidden, inner), dtype)
        block_norms(out, p, hidden, dtype)
    return final_norm_and_head(out, cfg, vocab, hidden, dtype)
