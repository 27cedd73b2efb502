"""Mixtral: Mistral attention with a sparse MoE block of SwiGLU experts (w1 gate, w3 up, w2 down) per layer."""

from __future__ import annotations

from core.architectures.layout import (
    MAX_EXPERTS,
    ConfigView,
    Layout,
    attention,
    block_norms,
    check_expert_matrices,
    final_norm_and_head,
)

MODEL_TYPES = ("mixtral",)


def layout(cfg: ConfigView) -> Layout:
    dtype, hidden, vocab = cfg.dtype(), cfg.size("hidden_size"), cfg.size("vocab_size")
    inner, layers = cfg.size("intermediate_size"), cfg.layers()
    experts = cfg.size("num_local_experts", limit=MAX_EXPERTS)
    check_expert_matrices(layers, experts)
    out = Layout(routed_experts=experts, experts_per_token=cfg.size("num_experts_per_tok", limit=experts))
    out.add("model.embed_tokens.weight", (vocab, hidden), dtype)
    for i in range(layers):
        p = f"model.layers.{i}"
        attention(out, f"{p}.self_attn", cfg, dtype)
        out.add(f"{p}.block_sparse_moe.gate.weight", (experts, hidden), dtype)
        for e in range(experts):
            q = f"{p}.block_sparse_moe.experts.{e}"
            out.add(f"{q}.w1.weight", (inner, hidden), dtype, routed=True)
            out.add(f"{q}.w2.weight", (hidden, inner), dtype, routed=True)
            out.add(f"{q}.w3.weight", (inner, hidden), dtype, routed=True)
        block_norms(out, p, hidden, dtype)
    return final_norm_and_head(out, cfg, vocab, hidden, dtype)
