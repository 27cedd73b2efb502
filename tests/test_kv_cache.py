"""KV cache layer by layer: published references, GQA/MQA, head sizes, latent attention, sliding windows,
encoder-only models, quantised caches, and GGUF headers; every expected figure is hand arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from core.formats import open_checkpoint
from core.kv_cache import kv_layout, kv_layout_from_config
from core.memory import memory_summary
from core.planner_errors import PlannerInputError
from tests.llama_shapes import LLAMA_31_8B, LLAMA_31_405B, write_sparse_sharded_model

LLAMA_31_70B = {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
                "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}
DEEPSEEK_V3 = {"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], "num_hidden_layers": 61,
               "hidden_size": 7168, "num_attention_heads": 128, "num_key_value_heads": 128, "kv_lora_rank": 512,
               "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128, "q_lora_rank": 1536}


@pytest.mark.parametrize(("config", "per_token"), [
    (LLAMA_31_8B, 131_072), (LLAMA_31_70B, 327_680), (LLAMA_31_405B, 516_096),
])
def test_llama_references_from_config(config: dict, per_token: int) -> None:
    layout = kv_layout_from_config({"model_type": "llama", **config})
    assert layout.bytes_per_token("fp16") == per_token
    assert layout.bytes_at(8192, 1, "fp16") == per_token * 8192
    assert layout.bytes_at(8192, 3, "fp8") == per_token // 2 * 8192 * 3


def test_llama_8b_from_a_real_sharded_checkpoint(tmp_path: Path) -> None:
    write_sparse_sharded_model(str(tmp_path / "m"), LLAMA_31_8B, shards=2)
    with open_checkpoint(str(tmp_path / "m")) as ck:
        layout = kv_layout(ck)
        assert layout.bytes_per_token("fp16") == 131_072  # 128 KiB (ANALYSIS.md)
        assert layout.bytes_at(131_072, 1, "fp16") == 16 << 30  # 16 GiB at 128k
        assert memory_summary(ck)["kv_cache_per_token_fp16"] == 131_072


def test_deepseek_v3_latent_attention() -> None:
    layout = kv_layout_from_config(DEEPSEEK_V3)
    assert layout.kind.startswith("latent")
    assert layout.bytes_per_token("bf16") == 70_272 == 61 * (512 + 64) * 2
    # what the same heads would cache without MLA: 61 x 2 x 128 x 128 x 2 = 3,997,696 bytes, 57x more
    assert layout.bytes_per_token("bf16") * 56 < 61 * 2 * 128 * 128 * 2


def test_gqa_mqa_and_plain_multi_head() -> None:
    base = {"model_type": "x", "num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8}
    assert kv_layout_from_config(base).bytes_per_token("fp16") == 4 * 2 * 8 * 64 * 2
    assert kv_layout_from_config({**base, "num_key_value_heads": 2}).bytes_per_token("fp16") == 4 * 2 * 2 * 64 * 2
    falcon = {"model_type": "falcon", "num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8,
              "multi_query": True}
    assert kv_layout_from_config(falcon).bytes_per_token("fp16") == 4 * 2 * 1 * 64 * 2
    gpt2 = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12}
    assert kv_layout_from_config(gpt2).bytes_per_token("fp16") == 12 * 2 * 768 * 2


def test_head_dim_independent_of_hidden_size_and_value_size_apart() -> None:
    gemma_7b = {"model_type": "gemma", "num_hidden_layers": 28, "hidden_size": 3072, "num_attention_heads": 16,
                "num_key_value_heads": 16, "head_dim": 256}
    assert kv_layout_from_config(gemma_7b).bytes_per_token("bf16") == 28 * 2 * 16 * 256 * 2  # not 3072/16 = 192
    uneven = {"model_type": "x", "num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 96, "v_head_dim": 64}
    assert kv_layout_from_config(uneven).bytes_per_token("fp16") == 2 * 2 * (96 + 64) * 2


def test_gemma2_alternates_sliding_and_global_layers() -> None:
    config = {"model_type": "gemma2", "num_hidden_layers": 42, "hidden_size": 3584, "num_attention_heads": 16,
              "num_key_value_heads": 8, "head_dim": 256, "sliding_window": 4096}
    layout = kv_layout_from_config(config)
    per_layer = 2 * 8 * 256 * 2
    assert [layer.window for layer in layout.layers[:4]] == [4096, None, 4096, None]  # layer 0 slides
    assert layout.bytes_per_token("bf16") == 42 * per_layer == 344_064
    assert layout.bytes_at(2048, 1, "bf16") == 42 * per_layer * 2048  # inside the window: every layer grows
    assert layout.bytes_at(8192, 1, "bf16") == 21 * per_layer * 8192 + 21 * per_layer * 4096


def test_gemma3_one_global_layer_in_six_and_layer_types() -> None:
    config = {"model_type": "gemma3_text", "num_hidden_layers": 26, "hidden_size": 1152, "num_attention_heads": 4,
              "num_key_value_heads": 1, "head_dim": 256, "sliding_window": 512, "sliding_window_pattern": 6}
    layout = kv_layout_from_config(config)
    assert [i for i, layer in enumerate(layout.layers) if layer.window is None] == [5, 11, 17, 23]
    per_layer = 2 * 1 * 256 * 2
    assert layout.bytes_at(32_768, 1, "bf16") == 4 * per_layer * 32_768 + 22 * per_layer * 512
    types = ["sliding_attention", "full_attention"] * 13
    by_types = kv_layout_from_config({**config, "model_type": "other", "sliding_window_pattern": None,
                                      "layer_types": types})
    assert [layer.window for layer in by_types.layers[:3]] == [512, None, 512]
    wrapped = kv_layout_from_config({"model_type": "gemma3", "text_config": config})
    assert wrapped.bytes_at(32_768, 1, "bf16") == layout.bytes_at(32_768, 1, "bf16")


def test_mistral_window_applies_to_every_layer_and_qwen_switch_is_honoured() -> None:
    mistral = {"model_type": "mistral", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
               "num_key_value_heads": 8, "sliding_window": 4096}
    layout = kv_layout_from_config(mistral)
    assert layout.bytes_at(32_768, 1, "fp16") == 131_072 * 4096
    qwen = {**mistral, "model_type": "qwen2", "use_sliding_window": False, "sliding_window": 32_768}
    assert kv_layout_from_config(qwen).bytes_at(65_536, 1, "fp16") == 131_072 * 65_536
    partial = {**qwen, "use_sliding_window": True, "sliding_window": 1024, "max_window_layers": 28}
    assert kv_layout_from_config(partial).bytes_at(4096, 1, "fp16") == 4096 * (28 * 4096 + 4 * 1024)


def test_encoder_only_has_no_cache() -> None:
    bert = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "num_hidden_layers": 12,
            "hidden_size": 768, "num_attention_heads": 12}
    layout = kv_layout_from_config(bert)
    assert layout.layers == () and layout.bytes_at(512, 4, "fp16") == 0


def test_quantised_cache_types_round_rows_to_whole_blocks() -> None:
    config = {"model_type": "llama", **LLAMA_31_8B}
    layout = kv_layout_from_config(config)
    assert layout.bytes_per_token("q8_0") == 32 * 2 * (1024 // 32) * 34  # 34 bytes per block of 32
    assert layout.bytes_per_token("q4_0") == 32 * 2 * (1024 // 32) * 18
    odd = kv_layout_from_config({"model_type": "x", "num_hidden_layers": 1, "hidden_size": 40,
                                 "num_attention_heads": 1})
    assert odd.bytes_per_token("q8_0") == 2 * 2 * 34  # 40 values need two blocks
    with pytest.raises(PlannerInputError, match="unknown KV cache type"):
        layout.bytes_per_token("q3_k")


def test_contradicted_config_uses_the_tensors(tmp_path: Path) -> None:
    from tests.conftest import HIDDEN, write_llama

    path, _ = write_llama(tmp_path / "model", layers=2)
    config = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": HIDDEN, "num_attention_heads": 4,
              "num_key_value_heads": 2}
    (path.parent / "config.json").write_text(json.dumps(config))
    with open_checkpoint(str(path)) as ck:
        assert len(kv_layout(ck).layers) == 2  # not the claimed 32


def _write_gguf(path: Path, arch: str, setup) -> str:
    writer = GGUFWriter(str(path), arch)
    setup(writer)
    writer.add_tensor("token_embd.weight", np.zeros((16, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def test_gguf_gemma2_windows_and_key_value_lengths(tmp_path: Path) -> None:
    def setup(w: GGUFWriter) -> None:
        w.add_block_count(4)
        w.add_embedding_length(32)
        w.add_head_count(4)
        w.add_head_count_kv(2)
        w.add_key_length(16)
        w.add_value_length(8)
        w.add_sliding_window(100)

    with open_checkpoint(_write_gguf(tmp_path / "g.gguf", "gemma2", setup)) as ck:
        layout = kv_layout(ck)
    assert layout.source == "GGUF metadata"
    per_layer = 2 * (16 + 8) * 2
    assert [layer.window for layer in layout.layers] == [100, None, 100, None]
    assert layout.bytes_at(1000, 1, "fp16") == 2 * per_layer * 1000 + 2 * per_layer * 100


def test_gguf_per_layer_kv_heads_and_latent_attention(tmp_path: Path) -> None:
    def per_layer(w: GGUFWriter) -> None:
        w.add_block_count(3)
        w.add_embedding_length(32)
        w.add_head_count(4)
        w.add_array("llama.attention.head_count_kv", [2, 0, 4])  # a layer without attention caches nothing
        w.add_key_length(8)
        w.add_value_length(8)

    with open_checkpoint(_write_gguf(tmp_path / "p.gguf", "llama", per_layer)) as ck:
        assert kv_layout(ck).bytes_per_token("fp16") == (2 + 0 + 4) * 2 * 8 * 2

    def latent(w: GGUFWriter) -> None:
        w.add_block_count(61)
        w.add_head_count(128)
        w.add_kv_lora_rank(512)
        w.add_rope_dimension_count(64)

    with open_checkpoint(_write_gguf(tmp_path / "d.gguf", "deepseek2", latent)) as ck:
        assert kv_layout(ck).bytes_per_token("bf16") == 70_272


def test_cohere2_pattern_from_config_and_gpt_oss_from_gguf(tmp_path: Path) -> None:
    cohere2 = {"model_type": "cohere2", "num_hidden_layers": 8, "hidden_size": 256, "num_attention_heads": 4,
               "num_key_value_heads": 1, "sliding_window": 64, "sliding_window_pattern": 4}
    assert [i for i, layer in enumerate(kv_layout_from_config(cohere2).layers) if layer.window is None] == [3, 7]

    def setup(w: GGUFWriter) -> None:
        w.add_block_count(4)
        w.add_embedding_length(32)
        w.add_head_count(4)
        w.add_head_count_kv(1)
        w.add_key_length(8)
        w.add_value_length(8)
        w.add_sliding_window(128)

    with open_checkpoint(_write_gguf(tmp_path / "o.gguf", "gpt-oss", setup)) as ck:
        assert [layer.window for layer in kv_layout(ck).layers] == [128, None, 128, None]
