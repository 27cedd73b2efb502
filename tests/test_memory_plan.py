"""The memory planner: exact weight bytes, GGUF block arithmetic, training items, and fits / max_context /
min_gpus against arithmetic done here by hand, independently of the planner's own search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.checkpoint import Checkpoint
from core.formats import open_checkpoint
from core.gpus import CATALOG, GIB, find_gpu
from core.memory_plan import CUDA_CONTEXT_BYTES, PREFILL_CHUNK, compare, lora_parameters, plan
from core.memory_words import explain
from core.planner_errors import PlannerInputError
from core.weight_bytes import bits_per_weight, weight_bytes
from tests.llama_shapes import LLAMA_31_8B, LLAMA_31_8B_PARAMETERS, write_sparse_sharded_model

LLAMA_31_70B = {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
                "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}
LLAMA_31_70B_PARAMETERS = 70_553_706_496


@pytest.fixture(scope="module")
def llama_8b(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    folder = tmp_path_factory.mktemp("l8") / "llama-8b"
    write_sparse_sharded_model(str(folder), LLAMA_31_8B, shards=2)
    with open_checkpoint(str(folder)) as ck:
        yield ck


@pytest.fixture(scope="module")
def llama_70b(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    folder = tmp_path_factory.mktemp("l70") / "llama-70b"
    write_sparse_sharded_model(str(folder), LLAMA_31_70B, shards=3)
    with open_checkpoint(str(folder)) as ck:
        yield ck


def test_exact_weight_bytes(llama_70b: Checkpoint, llama_8b: Checkpoint) -> None:
    assert llama_70b.parameter_count == LLAMA_31_70B_PARAMETERS
    assert weight_bytes(llama_70b, "bf16").bytes == 141_107_412_992 == weight_bytes(llama_70b, "stored").bytes
    assert weight_bytes(llama_70b, "fp32").bytes == 4 * LLAMA_31_70B_PARAMETERS
    assert weight_bytes(llama_70b, "int4").bytes == LLAMA_31_70B_PARAMETERS // 2
    assert weight_bytes(llama_8b, "FP8").bytes == LLAMA_31_8B_PARAMETERS
    result = plan(llama_70b, gpu_memory_bytes=80 * GIB, context=8192, weights="bf16")
    assert result.item("weights").bytes == 141_107_412_992 and result.item("weights").exact
    assert result.item("KV cache").bytes == 327_680 // 2 * 2 * 8192 and result.item("KV cache").exact
    assert not result.item("activations").exact and not result.item("runtime overhead").exact


def test_gguf_bits_per_weight_from_block_sizes() -> None:
    assert bits_per_weight("Q4_K") == 4.5
    assert bits_per_weight("Q8_0") == 8.5
    assert bits_per_weight("Q6_K") == 6.5625
    assert bits_per_weight("Q4_0") == 4.5 and bits_per_weight("Q2_K") == 2.625


def test_gguf_weight_bytes_tensor_by_tensor(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"model.layers.0.mlp.up_proj.weight": np.zeros((64, 512), np.float16),
               "model.layers.0.mlp.odd_proj.weight": np.zeros((8, 100), np.float16),
               "model.norm.weight": np.zeros(512, np.float16)}, str(path))
    with open_checkpoint(str(path)) as ck:
        norm = 512 * 4  # llama.cpp keeps 1-D tensors in F32
        odd = 800 * 2  # rows of 100 are not whole blocks: F16
        assert weight_bytes(ck, "Q4_K").bytes == 64 * 512 * 144 // 256 + odd + norm  # 144 bytes per 256
        assert weight_bytes(ck, "q8_0").bytes == 64 * 512 * 34 // 32 + 8 * 100 * 2 + norm  # 34 bytes per 32
        assert weight_bytes(ck, "Q6_K").bytes == 64 * 512 * 210 // 256 + odd + norm


def test_q4_k_m_of_llama_8b_matches_the_published_size(llama_8b: Checkpoint) -> None:
    found = weight_bytes(llama_8b, "Q4_K_M")
    assert round(found.bytes * 8 / LLAMA_31_8B_PARAMETERS, 2) == 4.89  # ANALYSIS.md: 4.89 bpw, 4.58 GiB
    assert round(found.bytes / GIB, 2) == 4.58
    assert not found.exact and "estimate" in found.formula


def test_unknown_weight_precision_is_refused(llama_8b: Checkpoint) -> None:
    with pytest.raises(PlannerInputError, match="unknown weight precision 'int3'"):
        plan(llama_8b, gpu_memory_bytes=GIB, weights="int3", context=10)


def _inference_total(weights: int, kv_per_token: int, context: int, hidden: int, inter: int, gpus: int = 1) -> int:
    """The planner's inference total, re-derived: weights + KV + one chunk's activations, 5% fragmentation,
    512 MiB per GPU."""
    activations = min(context, PREFILL_CHUNK) * (4 * hidden + 2 * inter) * 2
    rest = weights + kv_per_token * context + activations
    return rest + int(rest * 0.05) + gpus * CUDA_CONTEXT_BYTES


def test_fits_and_max_context_by_arithmetic(llama_8b: Checkpoint) -> None:
    weights = 2 * LLAMA_31_8B_PARAMETERS
    gpu = find_gpu("rtx 4090 24gb").memory_bytes
    result = plan(llama_8b, gpu_memory_bytes=gpu, context=8192, weights="bf16")
    assert result.total_bytes == _inference_total(weights, 131_072, 8192, 4096, 14336)
    assert result.fits is True and result.min_gpus == 1
    # solve weights + kv x c + chunk (c >= 2048) under the capacity by hand, to within the int() rounding
    chunk = PREFILL_CHUNK * (4 * 4096 + 2 * 14336) * 2
    by_hand = int(((gpu - CUDA_CONTEXT_BYTES) / 1.05 - weights - chunk) // 131_072)
    assert abs(result.max_context - by_hand) <= 1
    assert _inference_total(weights, 131_072, result.max_context, 4096, 14336) <= gpu
    assert _inference_total(weights, 131_072, result.max_context + 1, 4096, 14336) > gpu
    assert plan(llama_8b, gpu_memory_bytes=gpu, context=result.max_context + 1, weights="bf16").fits is False


def test_max_context_capped_at_the_models_and_none_when_nothing_fits(llama_8b: Checkpoint) -> None:
    assert plan(llama_8b, gpu_memory_bytes=141 * GIB, weights="bf16").max_context == 131_072
    tiny = plan(llama_8b, gpu_memory_bytes=8 * GIB, weights="bf16", context=4096)
    assert tiny.fits is False and tiny.max_context is None
    assert tiny.min_gpus == 3  # 1.05 x 17.4 GB of weights and cache + 0.5 GiB per card: 2 cards fall short
    assert _inference_total(2 * LLAMA_31_8B_PARAMETERS, 131_072, 4096, 4096, 14336, gpus=2) > 2 * 8 * GIB
    assert _inference_total(2 * LLAMA_31_8B_PARAMETERS, 131_072, 4096, 4096, 14336, gpus=3) <= 3 * 8 * GIB


def test_min_gpus_for_70b_on_h100(llama_70b: Checkpoint) -> None:
    result = plan(llama_70b, gpu_memory_bytes=find_gpu("H100 80GB").memory_bytes, context=8192, weights="bf16")
    rest = 141_107_412_992 + 327_680 * 8192 + PREFILL_CHUNK * (4 * 8192 + 2 * 28672) * 2
    per_card = 80 * GIB - CUDA_CONTEXT_BYTES
    expected = -(-int(rest * 1.05) // per_card)
    assert result.fits is False and result.min_gpus == expected == 2
    two = plan(llama_70b, gpu_memory_bytes=80 * GIB, gpus=2, context=8192, weights="bf16")
    assert two.fits is True and two.item("runtime overhead").bytes == 2 * CUDA_CONTEXT_BYTES + int(rest * 0.05)


def test_full_fine_tuning_bytes_per_parameter(llama_8b: Checkpoint) -> None:
    p = LLAMA_31_8B_PARAMETERS
    mixed = plan(llama_8b, gpu_memory_bytes=None, mode="full", weights="bf16", context=2048)
    assert (mixed.item("weights").bytes, mixed.item("gradients").bytes) == (2 * p, 2 * p)
    assert mixed.item("optimizer states").bytes == 12 * p  # 2 + 2 + 12 = 16 bytes per parameter (ZeRO)
    eight_bit = plan(llama_8b, gpu_memory_bytes=None, mode="full", optimizer="adam8bit", weights="bf16", context=2048)
    assert eight_bit.item("optimizer states").bytes == 6 * p
    fp32 = plan(llama_8b, gpu_memory_bytes=None, mode="full", weights="fp32", context=2048)
    assert fp32.item("weights").bytes + fp32.item("gradients").bytes + fp32.item("optimizer states").bytes == 16 * p
    activations = fp32.item("activations").bytes
    assert activations == 32 * 2048 * 4096 * 2 + 34 * 2048 * 4096 + 2048 * 128256 * 6  # checkpointed layers
    with pytest.raises(PlannerInputError, match="full fine-tuning needs float weights"):
        plan(llama_8b, gpu_memory_bytes=None, mode="full", weights="int4", context=2048)


def test_lora_adapters_rank_16_on_attention(llama_8b: Checkpoint) -> None:
    assert lora_parameters(llama_8b) == 13_631_488  # what PEFT prints for r=16 on q,k,v,o of Llama-3-8B
    result = plan(llama_8b, gpu_memory_bytes=24 * GIB, mode="lora", weights="int4", context=1024)
    assert result.item("LoRA adapters").bytes == 4 * 13_631_488
    assert result.item("optimizer states").bytes == 8 * 13_631_488
    assert result.item("KV cache").bytes == 0  # training caches nothing: keys and values are activations
    assert "rank 16" in result.item("LoRA adapters").formula and not result.item("LoRA adapters").exact


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"context": -1}, "context length must be"),
    ({"context": 0}, "context length must be"),
    ({"gpus": 0}, "number of GPUs"),
    ({"batch": 0}, "batch size"),
    ({"kv": "int2"}, "unknown KV cache type"),
    ({"mode": "pretrain"}, "unknown workload"),
    ({"optimizer": "sgd"}, "unknown optimizer"),
    ({"gpu_memory_bytes": -5}, "GPU memory"),
])
def test_bad_choices_are_refused(llama_8b: Checkpoint, kwargs: dict, needle: str) -> None:
    args = {"gpu_memory_bytes": GIB, "context": 128, **kwargs}
    with pytest.raises(PlannerInputError, match=needle):
        plan(llama_8b, **args)


def test_json_keys(llama_8b: Checkpoint) -> None:
    doc = json.loads(json.dumps(plan(llama_8b, gpu_memory_bytes=24 * GIB, context=4096).to_json()))
    for key in ("model", "parameters", "active_parameters", "mode", "items", "total_bytes", "gpu_bytes", "gpus",
                "fits", "max_context", "min_gpus"):
        assert key in doc
    assert doc["total_bytes"] == sum(item["bytes"] for item in doc["items"])
    assert {tuple(item) for item in doc["items"]} == {("name", "bytes", "formula", "exact")}
    assert doc["model"] == "llama-8b" and doc["gpu_bytes"] == 24 * GIB


def test_compare_side_by_side(llama_8b: Checkpoint, llama_70b: Checkpoint) -> None:
    rows = compare([llama_8b, llama_70b], context=8192)
    assert [r["parameters"] for r in rows] == [LLAMA_31_8B_PARAMETERS, LLAMA_31_70B_PARAMETERS]
    assert [r["bytes"]["bf16"] for r in rows] == [16_060_522_496, 141_107_412_992]
    assert [r["kv_bytes_per_token"] for r in rows] == [131_072, 327_680]
    assert [r["kv_bytes_at_context"] for r in rows] == [131_072 * 8192, 327_680 * 8192]
    for r in rows:
        need = _inference_total(r["bytes"]["bf16"], r["kv_bytes_per_token"], 8192, *(
            (4096, 14336) if r["parameters"] == LLAMA_31_8B_PARAMETERS else (8192, 28672)))
        assert r["fits_on"] == [g.name for g in CATALOG if g.memory_bytes >= need]
    assert "RTX 4090 24GB" in rows[0]["fits_on"] and "RTX 4060 Ti 16GB" not in rows[0]["fits_on"]
    assert "H100 80GB" not in rows[1]["fits_on"] and "B200 192GB" in rows[1]["fits_on"]


def test_a_model_without_context_length_gets_a_stated_assumption(tmp_path: Path) -> None:
    path = tmp_path / "bare.safetensors"
    save_file({"model.layers.0.mlp.up_proj.weight": np.zeros((64, 512), np.float16)}, str(path))
    with open_checkpoint(str(path)) as ck:
        result = plan(ck, gpu_memory_bytes=GIB)
    assert result.context == 4096 and result.model_context is None
    assert result.notes[0].startswith("the model does not say its context length: 4,096 tokens assumed")
    assert result.max_context == 1 << 24  # no KV cache counted, activations capped by the chunk: all fits


def test_encoder_only_plan_has_no_cache(tmp_path: Path) -> None:
    folder = tmp_path / "bert"
    folder.mkdir()
    save_file({"bert.embeddings.word_embeddings.weight": np.zeros((100, 16), np.float32)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"],
                                                    "num_hidden_layers": 2, "hidden_size": 16,
                                                    "num_attention_heads": 2, "max_position_embeddings": 512}))
    with open_checkpoint(str(folder)) as ck:
        result = plan(ck, gpu_memory_bytes=GIB)
    assert result.item("KV cache").bytes == 0 and result.kv_bytes_per_token == 0 and result.context == 512
    assert "keeps no KV cache" in explain(result)


def test_find_gpu() -> None:
    assert find_gpu("h100 80gb").memory_bytes == 80 * GIB
    assert find_gpu("  RTX4090 ").name == "RTX 4090 24GB"
    assert find_gpu("apple 192GB").memory_bytes == 192 * GIB
    assert find_gpu("MI300X").memory_bytes == 192 * GIB and find_gpu("H200").memory_bytes == 141 * GIB
    with pytest.raises(PlannerInputError, match="could be any of A100 40GB, A100 80GB"):
        find_gpu("A100")
    with pytest.raises(PlannerInputError, match=r"unknown GPU 'GTX 9999'.*H100 80GB"):
        find_gpu("GTX 9999")


def test_words_follow_the_numbers(llama_70b: Checkpoint) -> None:
    result = plan(llama_70b, gpu_memory_bytes=80 * GIB, context=8192, weights="bf16")
    words = explain(result, "H100 80GB")
    assert "In bf16 a number takes 2 bytes, so 70.6 billion parameters take 141 GB (131 GiB)" in words
    assert "Each token of context adds 320 KiB in bf16, so 8,192 tokens take 2.68 GB (2.50 GiB)" in words
    assert "it does not fit; it needs at least 2 of them" in words
    trained = explain(plan(llama_70b, gpu_memory_bytes=None, mode="full", weights="bf16", context=1024))
    assert "gradient (141 GB" in trained
