"""Qwen3 and Qwen3-MoE: RMS norms on queries and keys per head; MoE layers route among SwiGLU experts.

A Qwen3-MoE layer is sparse when it is not in ``mlp_only_layers`` and (index + 1) is a multiple of
``decoder_sparse_step``, as in transformers' Qwen3MoeDecoderLayer; other layers keep a dense MLP.
"""

from __future__ import annotations

from core.architectures.layout import (
    MAX_EXPERTS,
    ConfigView,
    Layout,
    attention,
    block_norms,
    check_expert_matrices,
    final_norm_and_head,
    gated_mlp,
)
from core.errors import MalformedFileError

MODEL_TYPES = ("qwen3", "qwen3_moe")


def layout(cfg: ConfigView) -> Layout:
    dtype, hidden, vocab = cfg.dtype(), cfg.size("hidden_size"), cfg.size("vocab_size")
    layers = cfg.layers()
    moe = cfg.config.get("model_type") == "qwen3_moe"
    experts = cfg.size("num_experts", limit=MAX_EXPERTS) if moe else 0
    out = Layout()
    if moe:
        check_expert_matrices(layers, experts)
        out.routed_experts, out.experts_per_token = experts, cfg.size("num_experts_per_tok", limit=experts)
    step = cfg.size("decoder_sparse_step", 1, limit=MAX_EXPERTS) if moe else 0
    dense_only = _mlp_only_layers(cfg) if moe else set()
    out.add("model.embed_tokens.weight", (vocab, hidden), dtype)
    for i in range(layers):
        p = f"model.layers.{i}"
        attention(out, f"{p}.self_attn", cfg, dtype, qkv_bias=cfg.flag("attention_bias", False), qk_norm=True)
        if moe and i not in dense_only and (i + 1) % step == 0:
            inner = cfg.size("moe_intermediate_size")
            out.add(f"{p}.mlp.gate.weight", (experts, hidden), dtype)
            start = len(out.specs)
            gated_mlp(out, f"{p}.mlp.experts.0", hidden, inner, dtype, routed=True)
            out.repeat_expert(start, f"{p}.mlp.experts", experts)
        else:
            gated_mlp(out, f"{p}.mlp", hidden, cfg.size("intermediate_size"), dtype)
        block_norms(out, p, hidden, dtype)
    return final_norm_and_head(out, cfg, vocab, hidden, dtype)


def _mlp_only_layers(cfg: ConfigView) -> set[int]:
    value = cfg.config.get("mlp_only_layers") or []
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise MalformedFileError("config.json 'mlp_only_layers' must be a list of layer numbers")
    return set(value)
