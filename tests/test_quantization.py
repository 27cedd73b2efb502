"""Quantisation explained: llama.cpp file types by name, bits per weight by arithmetic on a GGUF written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

import main
from core.formats import open_checkpoint
from core.quantization import (
    LLAMA_FILE_TYPES,
    bits_per_weight,
    describe_type,
    file_type_name,
    headline,
    quantization_summary,
)

Q4_K, Q6_K = GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K


def write_mixed_gguf(path: Path, file_type: int | None = 15) -> str:
    """Two blocks: attn_v Q6_K in block 0 and Q4_K in block 1 (a Q4_K_M recipe), ffn Q4_K, norms F32."""
    writer = GGUFWriter(str(path), "llama")
    if file_type is not None:
        writer.add_file_type(file_type)
    rng = np.random.default_rng(0)

    def blocks(qtype: GGMLQuantizationType, rows: int, cols: int) -> np.ndarray:
        block, size = GGML_QUANT_SIZES[qtype]
        return rng.integers(0, 0x3C, size=(rows, cols // block * size), dtype=np.uint8)

    for i, v_type in enumerate((Q6_K, Q4_K)):
        writer.add_tensor(f"blk.{i}.attn_v.weight", blocks(v_type, 64, 256), raw_dtype=v_type)
        writer.add_tensor(f"blk.{i}.ffn_down.weight", blocks(Q4_K, 256, 512), raw_dtype=Q4_K)
        writer.add_tensor(f"blk.{i}.attn_norm.weight", rng.standard_normal(256).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


@pytest.mark.parametrize(("value", "name"), [(15, "Q4_K_M"), (7, "Q8_0"), (0, "F32"), (1, "F16"), (10, "Q2_K"),
                                             (18, "Q6_K"), (23, "IQ3_XXS"), (32, "BF16"), (1024, "GUESSED")])
def test_file_type_names_follow_llama_cpp(value: int, name: str) -> None:
    assert file_type_name(value) == name


def test_file_type_table_agrees_with_gguf_package() -> None:
    for member in LlamaFileType:
        if member.value in LLAMA_FILE_TYPES:
            assert LLAMA_FILE_TYPES[member.value] == member.name.removeprefix("MOSTLY_").removeprefix("ALL_")


@pytest.mark.parametrize("value", [None, "15", 15.0, True, [15]])
def test_file_type_that_is_not_an_integer_is_no_name(value: object) -> None:
    assert file_type_name(value) is None


def test_unknown_file_type_says_so() -> None:
    assert file_type_name(999_999) == "unknown file type 999999"


def test_bits_per_weight_per_type_from_block_sizes() -> None:
    assert bits_per_weight("Q4_K") == 4.5  # 144 bytes for 256 weights
    assert bits_per_weight("Q6_K") == 6.5625  # 210 bytes for 256
    assert bits_per_weight("Q8_0") == 8.5  # 34 bytes for 32
    assert bits_per_weight("F32") == 32.0
    assert bits_per_weight("NOPE") is None


def test_mixed_gguf_summary_is_exact(tmp_path: Path) -> None:
    path = write_mixed_gguf(tmp_path / "mixed.gguf")
    with open_checkpoint(path) as checkpoint:
        summary = quantization_summary(checkpoint)
    assert summary is not None and summary["file_type"] == "Q4_K_M"
    q4_params = 64 * 256 + 2 * 256 * 512  # block 1's attn_v and both ffn_down
    q6_params = 64 * 256
    f32_params = 2 * 256
    q4_bytes = q4_params // 256 * 144
    q6_bytes = q6_params // 256 * 210
    assert summary["by_type"] == {
        "Q4_K": {"tensors": 3, "parameters": q4_params, "bytes": q4_bytes, "bits_per_weight": 4.5},
        "Q6_K": {"tensors": 1, "parameters": q6_params, "bytes": q6_bytes, "bits_per_weight": 6.5625},
        "F32": {"tensors": 2, "parameters": f32_params, "bytes": 4 * f32_params, "bits_per_weight": 32.0},
    }
    expected = 8 * (q4_bytes + q6_bytes + 4 * f32_params) / (q4_params + q6_params + f32_params)
    assert summary["bits_per_weight"] == pytest.approx(expected, rel=1e-15)
    assert headline(summary) == f"Q4_K_M mix · {expected:.2f} bits per weight"


def test_quantised_file_without_file_type_is_still_summarised(tmp_path: Path) -> None:
    with open_checkpoint(write_mixed_gguf(tmp_path / "m.gguf", file_type=None)) as checkpoint:
        summary = quantization_summary(checkpoint)
    assert summary is not None and summary["file_type"] is None
    assert headline(summary).startswith("quantised mix · ")


def test_float_checkpoint_has_no_quantization() -> None:
    with open_checkpoint("resources/samples/tiny-llama") as checkpoint:
        assert quantization_summary(checkpoint) is None


def test_info_json_and_text_carry_quantization(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_mixed_gguf(tmp_path / "mixed.gguf")
    assert main.main(["info", "--json", path]) == 0
    quantization = json.loads(capsys.readouterr().out)["quantization"]
    assert quantization["file_type"] == "Q4_K_M"
    assert quantization["by_type"]["Q6_K"] == {"tensors": 1, "parameters": 16384, "bytes": 13440,
                                               "bits_per_weight": 6.5625}
    assert main.main(["info", path]) == 0
    out = capsys.readouterr().out
    assert f"Stored as   Q4_K_M mix · {quantization['bits_per_weight']:.2f} bits per weight" in out
    assert "blk.0-1 (x2) (mixed quantisation)" in out and "[64, 256] Q6_K / Q4_K" in out
    assert "  Q6_K             1 tensor     16.4 K" in out
    assert main.main(["info", "--json", "resources/samples/tiny-llama"]) == 0
    assert json.loads(capsys.readouterr().out)["quantization"] is None


def test_every_quant_type_is_described_with_its_block() -> None:
    for qtype, (block, size) in GGML_QUANT_SIZES.items():
        name = GGMLQuantizationType(qtype).name
        text = describe_type(name)
        assert text.startswith(f"{name}: ")
        if block > 1:
            assert f"blocks of {block} weights in {size} bytes" in text
            assert f"{8 * size / block:g} bits per weight" in text
    assert "\"K\" marks" in describe_type("Q4_K") and "\"K\"" not in describe_type("Q8_0")
