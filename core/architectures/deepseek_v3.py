"""DeepSeek-V3: multi-head latent attention, dense first layers, shared + routed experts, MTP layers after.

Attention (MLA): queries through a low-rank ``q_a_proj`` / ``q_a_layernorm`` / ``q_b_proj`` (or one ``q_proj``
when ``q_lora_rank`` is null); keys and values through ``kv_a_proj_with_mqa`` (latent + rope dims),
``kv_a_layernorm`` and ``kv_b_proj``. Layers before ``first_k_dense_replace`` have a dense MLP; the rest route
among ``n_routed_experts`` and always run the shared experts. The ``num_nextn_predict_layers``
multi-token-prediction layers follow the main stack (``model.layers.61`` in V3) with their own embedding,
norms, ``eh_proj`` and head; they are flagged so the main count is the published one (671B).
A config with fp8 ``quantization_config`` lists what the released files hold: F8_E4M3 projection weights,
each with a ``weight_scale_inv`` of one F32 per weight block (flagged: scales are not parameters).
"""

from __future__ import annotations

import math

from core.architectures.layout import MAX_EXPERTS, ConfigView, Layout, check_expert_matrices
from core.errors import MalformedFileError

MODEL_TYPES = ("deepseek_v3",)


def layout(cfg: ConfigView) -> Layout:
    layers, experts = cfg.layers(), cfg.size("n_routed_experts", limit=MAX_EXPERTS)
    extra = cfg.size("num_nextn_predict_layers", 0, limit=16, minimum=0)
    check_expert_matrices(layers + extra, experts)
    out = Layout(routed_experts=experts, experts_per_token=cfg.size("num_experts_per_tok", limit=experts))
    writer = _Writer(cfg, out)
    dtype, hidden, vocab = writer.dtype, cfg.size("hidden_size"), cfg.size("vocab_size")
    out.add("model.embed_tokens.weight", (vocab, hidden), dtype)
    for i in range(layers):
        writer.decoder_layer(i)
    out.add("model.norm.weight", (hidden,), dtype)
    out.add("lm_head.weight", (vocab, hidden), dtype)
    for i in range(layers, layers + extra):
        p = f"model.layers.{i}"
        writer.mtp = True
        out.add(f"{p}.embed_tokens.weight", (vocab, hidden), dtype, mtp=True)
        out.add(f"{p}.enorm.weight", (hidden,), dtype, mtp=True)
        out.add(f"{p}.hnorm.weight", (hidden,), dtype, mtp=True)
        out.add(f"{p}.eh_proj.weight", (hidden, 2 * hidden), dtype, mtp=True)
        writer.decoder_layer(i)
        out.add(f"{p}.shared_head.norm.weight", (hidden,), dtype, mtp=True)
        out.add(f"{p}.shared_head.head.weight", (vocab, hidden), dtype, mtp=True)
    if extra:
        mtp = sum(math.prod(s.shape) for s in out.specs if s.mtp and not s.scale)
        out.notes.append(f"multi-token-prediction layers (model.layers.{layers}{'...' if extra > 1 else ''}, "
                         f"{mtp:,} parameters) are kept apart: not in the tensor list or the total, as in the "
                         "published count")
    return out


class _Writer:
    """Adds one decoder layer's tensors; knows the fp8 block layout when the config declares one."""

    def __init__(self, cfg: ConfigView, out: Layout) -> None:
        self.cfg, self.out, self.mtp = cfg, out, False
        self.dtype = cfg.dtype()
        self.block = _fp8_block(cfg)

    def linear(self, name: str, rows: int, cols: int, *, bias: bool = False, routed: bool = False) -> None:
        """A projection: F8_E4M3 plus its block scales in an fp8 release, else the model's dtype."""
        flags = {"routed": routed, "mtp": self.mtp}
        if self.block:
            self.out.add(f"{name}.weight", (rows, cols), "F8_E4M3", **flags)
            scale_shape = (math.ceil(rows / self.block[0]), math.ceil(cols / self.block[1]))
            self.out.add(f"{name}.weight_scale_inv", scale_shape, "F32", mtp=self.mtp, scale=True)
        else:
            self.out.add(f"{name}.weight", (rows, cols), self.dtype, **flags)
        if bias:
            self.out.add(f"{name}.bias", (rows,), self.dtype, **flags)

    def norm(self, name: str, width: int) -> None:
        self.out.add(f"{name}.weight", (width,), self.dtype, mtp=self.mtp)

    def decoder_layer(self, i: int) -> None:
        cfg, p = self.cfg, f"model.layers.{i}"
        hidden, heads = cfg.size("hidden_size"), cfg.size("num_attention_heads")
        nope, rope = cfg.size("qk_nope_head_dim"), cfg.size("qk_rope_head_dim")
        v_dim, kv_rank = cfg.size("v_head_dim"), cfg.size("kv_lora_rank")
        bias = cfg.flag("attention_bias", False)
        a = f"{p}.self_attn"
        if cfg.has("q_lora_rank"):
            q_rank = cfg.size("q_lora_rank")
            self.linear(f"{a}.q_a_proj", q_rank, hidden, bias=bias)
            self.norm(f"{a}.q_a_layernorm", q_rank)
            self.linear(f"{a}.q_b_proj", heads * (nope + rope), q_rank)
        else:
            self.linear(f"{a}.q_proj", heads * (nope + rope), hidden)
        self.linear(f"{a}.kv_a_proj_with_mqa", kv_rank + rope, hidden, bias=bias)
        self.norm(f"{a}.kv_a_layernorm", kv_rank)
        self.linear(f"{a}.kv_b_proj", heads * (nope + v_dim), kv_rank)
        self.linear(f"{a}.o_proj", hidden, heads * v_dim, bias=bias)
        freq = cfg.size("moe_layer_freq", 1, limit=1024)
        if i >= cfg.size("first_k_dense_replace", 0, limit=1024, minimum=0) and i % freq == 0:
            self.moe(f"{p}.mlp", hidden)
        else:
            self.mlp(f"{p}.mlp", hidden, cfg.size("intermediate_size"))
        self.norm(f"{p}.input_layernorm", hidden)
        self.norm(f"{p}.post_attention_layernorm", hidden)

    def mlp(self, prefix: str, hidden: int, inner: int, routed: bool = False) -> None:
        self.linear(f"{prefix}.gate_proj", inner, hidden, routed=routed)
        self.linear(f"{prefix}.up_proj", inner, hidden, routed=routed)
        self.linear(f"{prefix}.down_proj", hidden, inner, routed=routed)

    def moe(self, prefix: str, hidden: int) -> None:
        cfg = self.cfg
        experts, inner = self.out.routed_experts, cfg.size("moe_intermediate_size")
        self.out.add(f"{prefix}.gate.weight", (experts, hidden), self.dtype, mtp=self.mtp)
        if cfg.config.get("topk_method", "noaux_tc") == "noaux_tc":
            self.out.add(f"{prefix}.gate.e_score_correction_bias", (experts,), "F32", mtp=self.mtp)
        start = len(self.out.specs)
        self.mlp(f"{prefix}.experts.0", hidden, inner, routed=True)
        self.out.repeat_expert(start, f"{prefix}.experts", experts)
        shared = cfg.size("n_shared_experts", 0, limit=MAX_EXPERTS, minimum=0)
        if shared:
            self.mlp(f"{prefix}.shared_experts", hidden, inner * shared)


def _fp8_block(cfg: ConfigView) -> tuple[int, int] | None:
    """(rows, columns) of one fp8 weight block, or None when the weights are stored unquantised."""
    quant = cfg.config.get("quantization_config")
    if not isinstance(quant, dict) or quant.get("quant_method") != "fp8":
        return None
    block = quant.get("weight_block_size")
    if not (isinstance(block, list) and len(block) == 2
            and all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 1 << 16 for b in block)):
        raise MalformedFileError("config.json fp8 'weight_block_size' must be two whole numbers")
    return block[0], block[1]
