"""Family rules: a count from a config equals the real checkpoint's, tensor for tensor.

Independent truth: published totals (model cards, the safetensors index totals), the worked Llama formula of
ANALYSIS.md, the bundled sample's real weights, and per-family tensor names as the released files spell them.
"""

from __future__ import annotations

import json
import time
from math import prod
from pathlib import Path

import pytest

from core.architectures import (
    UnknownArchitectureError,
    known_families,
    parameter_counts,
    tensors_from_config,
)
from core.errors import CheckpointError, MalformedFileError
from core.formats import open_checkpoint

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "resources" / "models"
SAMPLE = REPO / "resources" / "samples" / "tiny-llama"

# Published totals (model cards / the safetensors index of each release); active per token for MoE.
PUBLISHED = {
    "llama-3.1-8b": (8_030_261_248, None),
    "llama-3.1-70b": (70_553_706_496, None),
    "llama-3.1-405b": (405_853_388_800, None),
    "mistral-7b-v0.1": (7_241_732_096, None),
    "mixtral-8x7b": (46_702_792_704, 12_879_925_248),
    "qwen2.5-7b": (7_615_616_512, None),
    "qwen2.5-0.5b": (494_032_768, None),
    "qwen3-8b": (8_190_735_360, None),
    "qwen3-30b-a3b": (30_532_122_624, 3_353_032_704),
    "gemma-2b": (2_506_172_416, None),
    "gemma-2-9b": (9_241_705_984, None),
    "gemma-3-1b": (999_885_952, None),
    "phi-3-mini-4k": (3_821_079_552, None),
    "deepseek-v3": (671_026_419_200, 37_552_297_472),
    "gpt2": (124_439_808, None),
    "bert-base-uncased": (109_482_240, None),
}


def config(name: str) -> dict:
    return json.loads((MODELS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_totals(name: str) -> None:
    total, active = PUBLISHED[name]
    counts = parameter_counts(config(name))
    assert counts["total"] == total
    assert counts.get("active") == active
    assert sum(t.elements for t in tensors_from_config(config(name))) == total


def test_active_counts_match_the_model_cards_rounding() -> None:
    assert round(parameter_counts(config("mixtral-8x7b"))["active"] / 1e9, 1) == 12.9
    assert int(parameter_counts(config("qwen3-30b-a3b"))["active"] / 1e8) == 33  # card: "3.3B activated"
    assert int(parameter_counts(config("deepseek-v3"))["active"] / 1e9) == 37


def llama_formula(c: dict) -> int:
    """ANALYSIS.md's worked example, generalised: L x (attention + MLP + 2 norms) + embeddings + norm + head."""
    h, inner, heads = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"]
    kv = c["num_key_value_heads"] * (h // heads)
    block = 2 * h * h + 2 * kv * h + 3 * h * inner + 2 * h
    head = 0 if c.get("tie_word_embeddings") else c["vocab_size"] * h
    return c["num_hidden_layers"] * block + c["vocab_size"] * h + h + head


@pytest.mark.parametrize("shape", [(64, 176, 3, 4, 2, 100, False), (96, 256, 5, 6, 1, 77, True),
                                   (128, 352, 2, 8, 8, 300, False)])
def test_llama_rules_follow_the_formula(shape: tuple) -> None:
    h, inner, layers, heads, kv, vocab, tied = shape
    c = {"model_type": "llama", "hidden_size": h, "intermediate_size": inner, "num_hidden_layers": layers,
         "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab, "tie_word_embeddings": tied}
    assert parameter_counts(c)["total"] == llama_formula(c)
    names = {t.name for t in tensors_from_config(c)}
    assert ("lm_head.weight" in names) is not tied


def test_the_sample_config_lists_exactly_the_sample_weights() -> None:
    """The bundled tiny Llama: names, shapes and dtypes from its config.json equal its real safetensors header."""
    with open_checkpoint(str(SAMPLE)) as weights:
        held = {(t.name, t.shape, t.dtype) for t in weights.tensors}
        assert weights.architecture["config_parameters"] == weights.parameter_count
        assert not any("config.json describes" in w for w in weights.warnings)
    built = {(t.name, t.shape, t.dtype) for t in tensors_from_config(json.loads((SAMPLE / "config.json").read_text()))}
    assert built == held and len(held) == 39


def test_records_are_config_only() -> None:
    tensors = tensors_from_config(config("qwen2.5-0.5b"))
    assert all(t.file == "" and t.offset == 0 and t.nbytes == 2 * prod(t.shape) for t in tensors)
    assert {t.dtype for t in tensors} == {"BF16"}
    assert {t.dtype for t in tensors_from_config(config("gemma-2-9b"))} == {"F32"}  # torch_dtype float32
    # configs from before torch_dtype existed: the released gpt2 and bert-base-uncased weights are fp32
    assert {t.dtype for t in tensors_from_config(config("gpt2"))} == {"F32"}
    assert {t.dtype for t in tensors_from_config(config("bert-base-uncased"))} == {"F32"}
    assert {t.dtype for t in tensors_from_config({**config("gpt2"), "torch_dtype": "float16"})} == {"F16"}
    no_dtype = {k: v for k, v in config("llama-3.1-8b").items() if k != "torch_dtype"}
    assert {t.dtype for t in tensors_from_config(no_dtype)} == {"BF16"}


def layer0(name: str, **changes: object) -> dict[str, tuple[int, ...]]:
    c = {**config(name), **changes}
    return {t.name.split(".layers.0.", 1)[1]: t.shape for t in tensors_from_config(c) if ".layers.0." in t.name}


def test_qwen2_has_qkv_biases_and_ties_small_models() -> None:
    layer = layer0("qwen2.5-7b")
    assert layer["self_attn.q_proj.bias"] == (3584,) and layer["self_attn.k_proj.bias"] == (512,)
    assert layer["self_attn.v_proj.bias"] == (512,) and "self_attn.o_proj.bias" not in layer
    assert "lm_head.weight" not in {t.name for t in tensors_from_config(config("qwen2.5-0.5b"))}
    assert "lm_head.weight" in {t.name for t in tensors_from_config(config("qwen2.5-7b"))}


def test_qwen3_norms_queries_and_keys_per_head() -> None:
    layer = layer0("qwen3-8b")
    assert layer["self_attn.q_norm.weight"] == (128,) and layer["self_attn.k_norm.weight"] == (128,)
    moe = layer0("qwen3-30b-a3b")
    assert moe["mlp.gate.weight"] == (128, 2048)
    assert moe["mlp.experts.127.down_proj.weight"] == (2048, 768) and "mlp.experts.128.up_proj.weight" not in moe
    dense = layer0("qwen3-30b-a3b", mlp_only_layers=[0])
    assert dense["mlp.up_proj.weight"] == (6144, 2048) and "mlp.gate.weight" not in dense


def test_gemma_head_dim_and_sandwich_norms() -> None:
    gemma = layer0("gemma-2b")
    assert gemma["self_attn.q_proj.weight"] == (2048, 2048) and gemma["self_attn.k_proj.weight"] == (256, 2048)
    assert "pre_feedforward_layernorm.weight" not in gemma
    gemma2 = layer0("gemma-2-9b")
    assert gemma2["self_attn.q_proj.weight"] == (4096, 3584)  # 16 heads x 256, not the width 3584
    assert gemma2["pre_feedforward_layernorm.weight"] == gemma2["post_feedforward_layernorm.weight"] == (3584,)
    gemma3 = layer0("gemma-3-1b")
    assert gemma3["self_attn.q_proj.weight"] == (1024, 1152) and gemma3["self_attn.q_norm.weight"] == (256,)
    for name in ("gemma-2b", "gemma-2-9b", "gemma-3-1b"):
        assert "lm_head.weight" not in {t.name for t in tensors_from_config(config(name))}


def test_gemma3_multimodal_counts_its_language_model_and_says_so(tmp_path: Path) -> None:
    text = {"model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34}
    multimodal = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
                  "text_config": text, "vision_config": {"model_type": "siglip_vision_model"},
                  "torch_dtype": "bfloat16"}
    tensors = tensors_from_config(multimodal)
    assert tensors[0].name == "language_model.model.embed_tokens.weight"
    assert tensors[0].shape == (262_208, 2560)  # Gemma3TextConfig's default vocabulary
    q = next(t for t in tensors if t.name == "language_model.model.layers.0.self_attn.q_proj.weight")
    assert q.shape == (8 * 256, 2560)
    (tmp_path / "config.json").write_text(json.dumps(multimodal))
    with open_checkpoint(str(tmp_path / "config.json")) as checkpoint:
        assert any("only the language model is counted" in w for w in checkpoint.warnings)


def test_phi3_fuses_qkv_and_gate_up() -> None:
    layer = layer0("phi-3-mini-4k")
    assert layer["self_attn.qkv_proj.weight"] == (3 * 3072, 3072)
    assert layer["mlp.gate_up_proj.weight"] == (2 * 8192, 3072) and layer["mlp.down_proj.weight"] == (3072, 8192)
    assert "self_attn.q_proj.weight" not in layer


def test_gpt2_conv1d_shapes_and_no_mask_buffers() -> None:
    tensors = {t.name: t.shape for t in tensors_from_config(config("gpt2"))}
    assert tensors["h.0.attn.c_attn.weight"] == (768, 2304) and tensors["h.0.mlp.c_fc.weight"] == (768, 3072)
    assert tensors["h.0.mlp.c_proj.weight"] == (3072, 768) and tensors["wpe.weight"] == (1024, 768)
    assert not any(n.endswith((".attn.bias", ".attn.masked_bias")) for n in tensors)
    assert tensors["h.0.attn.c_attn.bias"] == (2304,)
    assert "lm_head.weight" not in tensors


def test_bert_embeddings_and_pooler() -> None:
    tensors = {t.name: t.shape for t in tensors_from_config(config("bert-base-uncased"))}
    assert tensors["embeddings.position_embeddings.weight"] == (512, 768)
    assert tensors["embeddings.token_type_embeddings.weight"] == (2, 768)
    assert tensors["pooler.dense.weight"] == (768, 768) and tensors["pooler.dense.bias"] == (768,)
    assert tensors["encoder.layer.11.intermediate.dense.weight"] == (3072, 768)


def test_mixtral_routes_among_eight_experts() -> None:
    layer = layer0("mixtral-8x7b")
    assert layer["block_sparse_moe.gate.weight"] == (8, 4096)
    assert layer["block_sparse_moe.experts.7.w2.weight"] == (4096, 14336)
    assert layer["block_sparse_moe.experts.0.w1.weight"] == layer["block_sparse_moe.experts.0.w3.weight"]


def test_deepseek_v3_main_mtp_and_scales_add_up_to_the_released_files() -> None:
    """671,026,419,200 main + 13,463,426,304 MTP + 41,540,496 fp8 scales = the HF index's 684,531,386,000."""
    counts = parameter_counts(config("deepseek-v3"))
    assert counts["total"] == 671_026_419_200
    assert counts["mtp"] == 13_463_426_304
    assert counts["quantization_scales"] == 41_540_496
    assert counts["total"] + counts["mtp"] + counts["quantization_scales"] == 684_531_386_000
    full = {t.name: t for t in tensors_from_config(config("deepseek-v3"), mtp=True, scales=True)}
    assert sum(t.elements for t in full.values()) == 684_531_386_000
    main = tensors_from_config(config("deepseek-v3"))
    assert not any(".layers.61." in t.name or "scale_inv" in t.name for t in main)
    assert full["model.layers.61.eh_proj.weight"].shape == (7168, 14336)
    assert full["model.layers.61.shared_head.head.weight"].shape == (129280, 7168)
    attn = "model.layers.0.self_attn."
    assert full[attn + "q_a_proj.weight"].shape == (1536, 7168) and full[attn + "q_a_proj.weight"].dtype == "F8_E4M3"
    assert full[attn + "q_a_proj.weight_scale_inv"].shape == (12, 56)
    assert full[attn + "q_b_proj.weight"].shape == (128 * 192, 1536)
    assert full[attn + "kv_a_proj_with_mqa.weight"].shape == (576, 7168)
    assert full[attn + "kv_a_layernorm.weight"].shape == (512,)
    assert full[attn + "kv_b_proj.weight"].shape == (128 * 256, 512)
    assert full[attn + "o_proj.weight"].shape == (7168, 128 * 128)
    assert full["model.layers.2.mlp.down_proj.weight"].shape == (7168, 18432)  # dense: first_k_dense_replace 3
    assert "model.layers.3.mlp.gate.e_score_correction_bias" in full
    assert full["model.layers.3.mlp.shared_experts.up_proj.weight"].shape == (2048, 7168)
    assert full["model.layers.60.mlp.experts.255.gate_proj.weight"].shape == (2048, 7168)


def test_deepseek_without_query_compression_has_one_q_proj() -> None:
    c = {**config("deepseek-v3"), "q_lora_rank": None, "num_hidden_layers": 4, "quantization_config": None}
    names = {t.name: t for t in tensors_from_config(c)}
    assert names["model.layers.0.self_attn.q_proj.weight"].shape == (128 * 192, 7168)
    assert not any("q_a_proj" in n for n in names)
    assert {t.dtype for t in names.values()} == {"BF16", "F32"}


@pytest.mark.parametrize("bad", [{}, {"model_type": None}, {"model_type": "internlm2"}, {"model_type": 7}])
def test_unknown_family_is_refused_naming_the_known_ones(bad: dict) -> None:
    with pytest.raises(UnknownArchitectureError) as caught:
        parameter_counts({"hidden_size": 64, **bad})
    message = str(caught.value)
    assert isinstance(caught.value, CheckpointError) and "\n" not in message
    assert all(family in message for family in known_families())
    assert {"llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3",
            "gemma3_text", "phi3", "deepseek_v3", "gpt2", "bert"} <= set(known_families())


@pytest.mark.parametrize("change", [
    {"num_hidden_layers": 10**9}, {"num_hidden_layers": -1}, {"hidden_size": "4096"}, {"hidden_size": True},
    {"vocab_size": 10**30}, {"intermediate_size": 0.5}, {"hidden_size": None}, {"tie_word_embeddings": "yes"},
])
def test_hostile_llama_configs_get_one_line_fast(change: dict) -> None:
    hostile = {k: v for k, v in {**config("llama-3.1-8b"), **change}.items() if v is not None}
    start = time.perf_counter()
    with pytest.raises(MalformedFileError) as caught:
        tensors_from_config(hostile)
    assert time.perf_counter() - start < 0.5
    assert "\n" not in str(caught.value) and "config.json" in str(caught.value)


@pytest.mark.parametrize("change", [{"n_routed_experts": 100_000}, {"num_experts_per_tok": 300},
                                    {"num_hidden_layers": 1000, "n_routed_experts": 1024}])
def test_hostile_expert_counts_are_bounded(change: dict) -> None:
    start = time.perf_counter()
    with pytest.raises(MalformedFileError):
        tensors_from_config({**config("deepseek-v3"), **change})
    assert time.perf_counter() - start < 0.5
