"""Mixture-of-experts: GGUF's merged expert tensors against Hugging Face's per-expert tensors, slice by slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

import main
from core.diff import metrics, run

EXPERTS, HIDDEN, FFN = 4, 32, 64
HF_NAMES = {"qwen": {"gate": "mlp.experts.{e}.gate_proj", "up": "mlp.experts.{e}.up_proj",
                     "down": "mlp.experts.{e}.down_proj", "router": "mlp.gate"},
            "mixtral": {"gate": "block_sparse_moe.experts.{e}.w1", "up": "block_sparse_moe.experts.{e}.w3",
                        "down": "block_sparse_moe.experts.{e}.w2", "router": "block_sparse_moe.gate"}}
SHAPES = {"gate": (FFN, HIDDEN), "up": (FFN, HIDDEN), "down": (HIDDEN, FFN)}


def moe_weights(rng: np.random.Generator, layers: int = 2) -> dict[tuple[int, str, int], np.ndarray]:
    """(layer, gate|up|down, expert) -> an expert's matrix, values F16 holds exactly; expert -1: the router."""
    out = {}
    for n in range(layers):
        for role, shape in SHAPES.items():
            for e in range(EXPERTS):
                out[(n, role, e)] = rng.normal(size=shape).astype(np.float16).astype(np.float32)
        out[(n, "router", -1)] = rng.normal(size=(EXPERTS, HIDDEN)).astype(np.float32)
    return out


def write_hf(path: Path, weights: dict, names: str = "qwen", drop: tuple | None = None) -> None:
    tensors = {}
    for (n, role, e), w in weights.items():
        if (n, role, e) != drop:
            tensors[f"model.layers.{n}.{HF_NAMES[names][role].format(e=e)}.weight"] = w
    save_file(tensors, str(path))


def write_gguf(path: Path, weights: dict, quant: GGMLQuantizationType | None = None) -> dict[str, np.ndarray]:
    """llama.cpp's layout: one (experts, rows, cols) tensor per layer and role; returns what it stored (decoded)."""
    writer = GGUFWriter(str(path), "qwen2moe")
    writer.add_block_count(2)
    stored = {}
    layers = sorted({n for n, _, _ in weights})
    for n in layers:
        writer.add_tensor(f"blk.{n}.ffn_gate_inp.weight", weights[(n, "router", -1)])
        for role in SHAPES:
            merged = np.stack([weights[(n, role, e)] for e in range(EXPERTS)])
            name = f"blk.{n}.ffn_{role}_exps.weight"
            if quant is None:
                writer.add_tensor(name, merged.astype(np.float16))
                stored[name] = merged
            else:
                raw = quantize(merged, quant)
                writer.add_tensor(name, raw, raw_dtype=quant)
                stored[name] = dequantize(raw, quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return stored


@pytest.mark.parametrize("names", ["qwen", "mixtral"])
@pytest.mark.parametrize("gguf_is_a", [False, True])
def test_each_expert_slice_pairs_with_its_expert(tmp_path: Path, names: str, gguf_is_a: bool) -> None:
    weights = moe_weights(np.random.default_rng(4))
    write_gguf(tmp_path / "moe.gguf", weights)
    moved = dict(weights)
    moved[(1, "up", 2)] = weights[(1, "up", 2)] * np.float32(2)  # the fine-tune moved one expert only
    write_hf(tmp_path / "moe.safetensors", moved, names)
    a, b = (tmp_path / "moe.gguf", tmp_path / "moe.safetensors")
    result = run(*((a, b) if gguf_is_a else (b, a)), chunk_elements=100)
    assert result.only_in_a == [] and result.only_in_b == [] and result.notes == []
    assert len(result.tensors) == 2 * (3 * EXPERTS + 1)
    changed = {n for n, td in result.tensors.items() if metrics(td.sums)["rel_change"] != 0}
    hf_name = f"model.layers.1.{HF_NAMES[names]['up'].format(e=2)}.weight"
    assert changed == {"blk.1.ffn_up_exps.weight[2]" if gguf_is_a else hf_name}
    td = result.tensors["blk.1.ffn_up_exps.weight[2]" if gguf_is_a else hf_name]
    assert {td.a.name, td.b.name} == {"blk.1.ffn_up_exps.weight[2]", hf_name}
    want = 1.0 if gguf_is_a else 0.5  # |2w - w| / |w|, or |w - 2w| / |2w|
    assert metrics(td.sums)["rel_change"] == pytest.approx(want, rel=1e-12)
    assert td.a.shape == td.b.shape == SHAPES["up"]


def test_quantised_expert_slices_read_their_own_blocks(tmp_path: Path) -> None:
    weights = moe_weights(np.random.default_rng(5), layers=1)
    write_hf(tmp_path / "moe.safetensors", weights)
    stored = write_gguf(tmp_path / "moe.Q8_0.gguf", weights, GGMLQuantizationType.Q8_0)
    result = run(tmp_path / "moe.safetensors", tmp_path / "moe.Q8_0.gguf", chunk_elements=96)
    for e in range(EXPERTS):
        for role in SHAPES:
            w = weights[(0, role, e)].astype(np.float64)
            back = stored[f"blk.0.ffn_{role}_exps.weight"][e].astype(np.float64)
            got = metrics(result.tensors[f"model.layers.0.mlp.experts.{e}.{role}_proj.weight"].sums)
            assert got["rel_change"] == pytest.approx(np.linalg.norm(back - w) / np.linalg.norm(w), rel=1e-12)
            assert got["snr_db"] == pytest.approx(10 * np.log10(np.sum(w * w) / np.sum((back - w) ** 2)), rel=1e-12)
            assert 0 < got["rel_change"] < 0.01  # Q8_0 noise, not another expert's values


def test_missing_or_misshapen_experts_pair_nothing_and_say_why(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    weights = moe_weights(np.random.default_rng(6), layers=1)
    write_gguf(tmp_path / "moe.gguf", weights)
    write_hf(tmp_path / "partial.safetensors", weights, drop=(0, "gate", 3))
    result = run(tmp_path / "partial.safetensors", tmp_path / "moe.gguf")
    assert "blk.0.ffn_gate_exps.weight" in result.only_in_b
    assert sum(".gate_proj." in n for n in result.only_in_a) == EXPERTS - 1
    assert not any("gate_exps" in n or "gate_proj" in n for n in result.tensors)
    assert result.notes == ["blk.0.ffn_gate_exps.weight not compared with the per-expert tensors of layer 0: "
                            "it holds 4 experts, 3 per-expert gate tensors were found"]
    assert "blk.0.ffn_up_exps.weight[3]" in {td.b.name for td in result.tensors.values()}  # the others still pair
    transposed = dict(weights)
    transposed[(0, "down", 1)] = weights[(0, "down", 1)].T.copy()
    write_hf(tmp_path / "odd.safetensors", transposed)
    result = run(tmp_path / "odd.safetensors", tmp_path / "moe.gguf")
    assert result.notes == ["blk.0.ffn_down_exps.weight not compared with the per-expert tensors of layer 0: "
                            "an expert slice is [32, 64], model.layers.0.mlp.experts.1.down_proj.weight is [64, 32]"]
    assert main.main(["diff", str(tmp_path / "odd.safetensors"), str(tmp_path / "moe.gguf"), "--no-cache"]) == 0
    assert "blk.0.ffn_down_exps.weight not compared" in capsys.readouterr().out
