"""The bundled sample model: three formats, one set of trained weights, counts that add up.

Truth comes from outside the readers under test: config.json and a closed-form
Llama parameter count, the safetensors library's own loader, the Q8_0 error
bound, and a float64 numpy forward pass that must actually predict the text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from core.formats import open_checkpoint
from resources import resource_path, sample_model_path
from tests.llama_shapes import llama_tensor_shapes

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"
CONFIG = json.loads((SAMPLES / "tiny-llama" / "config.json").read_text())
TRAINING = json.loads((SAMPLES / "training.json").read_text())

GGUF_NAMES = {
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight", "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}


def llama_parameter_count(c: dict) -> int:
    """Closed form for a Llama decoder: embeddings, L blocks (attention, SwiGLU, two norms), final norm, head."""
    h, inter, layers, vocab = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    kv_dim = h // c["num_attention_heads"] * c["num_key_value_heads"]
    block = 2 * h * h + 2 * h * kv_dim + 3 * h * inter + 2 * h
    return vocab * h + layers * block + h + (0 if c["tie_word_embeddings"] else vocab * h)


def gguf_name(hf: str) -> str:
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    parts = hf.split(".")
    return f"blk.{parts[2]}.{GGUF_NAMES['.'.join(parts[3:])]}"


def unpermute_rope(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's converter permutation of q/k rows (interleaved pairs back to rotate-half)."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """The safetensors weights as the safetensors library itself loads them."""
    return load_file(str(SAMPLES / "tiny-llama" / "model.safetensors"))


def test_resource_paths_point_at_the_sample() -> None:
    assert Path(sample_model_path()) == SAMPLES / "tiny-llama"
    assert Path(sample_model_path("gguf")).is_file() and Path(sample_model_path("pytorch")).is_file()
    assert Path(resource_path("samples", "corpus.txt")).is_file()
    with pytest.raises(ValueError):
        sample_model_path("onnx")


def test_config_is_a_hugging_face_llama_config() -> None:
    assert CONFIG["architectures"] == ["LlamaForCausalLM"] and CONFIG["model_type"] == "llama"
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "vocab_size", "max_position_embeddings", "tie_word_embeddings", "rms_norm_eps", "torch_dtype"):
        assert key in CONFIG, key
    assert CONFIG["vocab_size"] == 256  # byte-level
    assert CONFIG["intermediate_size"] % 32 == 0 and CONFIG["hidden_size"] % 32 == 0  # whole Q8_0 blocks


def test_sample_is_small() -> None:
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total < 10 << 20


def test_safetensors_sample(reference: dict[str, np.ndarray]) -> None:
    expected = llama_tensor_shapes(CONFIG)
    with open_checkpoint(sample_model_path("safetensors")) as ckpt:
        assert ckpt.format == "safetensors"
        assert sorted((t.name, t.shape) for t in ckpt.tensors) == sorted(expected)
        assert ckpt.parameter_count == llama_parameter_count(CONFIG) == sum(v.size for v in reference.values())
        assert {t.dtype for t in ckpt.tensors} == {"F32"}
        for t in ckpt.tensors:
            np.testing.assert_array_equal(ckpt.read_tensor(t), reference[t.name])


def test_pytorch_sample_holds_the_same_weights(reference: dict[str, np.ndarray]) -> None:
    with open_checkpoint(sample_model_path("pytorch")) as ckpt:
        assert ckpt.format == "pytorch"
        assert sorted(t.name for t in ckpt.tensors) == sorted(reference)
        assert ckpt.parameter_count == llama_parameter_count(CONFIG)
        for t in ckpt.tensors:
            np.testing.assert_array_equal(ckpt.read_tensor(t), reference[t.name])


def test_gguf_sample_is_the_same_model_in_q8_0(reference: dict[str, np.ndarray]) -> None:
    with open_checkpoint(sample_model_path("gguf")) as ckpt:
        assert ckpt.format == "gguf"
        assert sorted(t.name for t in ckpt.tensors) == sorted(gguf_name(n) for n in reference)
        assert ckpt.parameter_count == llama_parameter_count(CONFIG)
        for name, want in reference.items():
            t = ckpt.tensor(gguf_name(name))
            assert t.shape == want.shape, name
            assert t.dtype == ("Q8_0" if want.ndim == 2 else "F32"), name
            got = ckpt.read_tensor(t).astype(np.float64)
            if name.endswith("q_proj.weight"):
                got = unpermute_rope(got, CONFIG["num_attention_heads"])
            elif name.endswith("k_proj.weight"):
                got = unpermute_rope(got, CONFIG["num_key_value_heads"])
            if want.ndim == 1:
                np.testing.assert_array_equal(got, want)
                continue
            # Q8_0: 32 values share a scale d = amax/127 stored as fp16; q = round(x/d) costs half a step,
            # and decoding |q| <= 127 with the fp16-rounded scale adds 127 * |d16 - d|.
            blocks = want.reshape(-1, 32).astype(np.float64)
            d = np.abs(blocks).max(axis=1, keepdims=True) / 127
            bound = d / 2 + 127 * np.abs(d.astype(np.float16).astype(np.float64) - d) + 1e-7
            assert np.all(np.abs(got.reshape(-1, 32) - blocks) <= bound), name
        meta = json.dumps(ckpt.metadata, default=str)
        assert "llama" in meta


def test_training_lowered_the_loss() -> None:
    assert abs(TRAINING["initial_val_loss"] - math.log(256)) < 0.3  # an untrained model knows nothing
    assert TRAINING["final_val_loss"] < 2.0
    assert TRAINING["initial_val_loss"] - TRAINING["final_val_loss"] > 3.0


def test_weights_are_trained_not_random(reference: dict[str, np.ndarray]) -> None:
    # RMSNorm weights start at exactly 1.0; training moves them.
    norms = [k for k in reference if k.endswith("norm.weight")]
    assert len(norms) == 2 * CONFIG["num_hidden_layers"] + 1
    for k in norms:
        assert np.abs(reference[k] - 1.0).max() > 0.05, k
    # Rows of bytes that occur in the corpus were trained; rows of bytes that never occur only decayed.
    corpus = np.frombuffer((SAMPLES / "corpus.txt").read_bytes(), dtype=np.uint8)
    seen = np.zeros(256, dtype=bool)
    seen[np.unique(corpus)] = True
    assert 40 < seen.sum() < 128
    row_norms = np.linalg.norm(reference["model.embed_tokens.weight"].astype(np.float64), axis=1)
    assert row_norms[seen].mean() > 2 * row_norms[~seen].mean()


def forward_loss(w: dict[str, np.ndarray], tokens: np.ndarray) -> float:
    """Mean next-byte cross-entropy of a Hugging Face Llama, in float64 numpy (independent of torch)."""
    c = CONFIG
    h, heads, kv_heads = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd, eps = h // heads, c["rms_norm_eps"]
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x_ids, y_ids = tokens[:, :-1], tokens[:, 1:]
    b, t = x_ids.shape
    inv = 1.0 / (c.get("rope_theta", 10000.0) ** (np.arange(0, hd, 2) / hd))
    ang = np.outer(np.arange(t), inv)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rms(v: np.ndarray, g: np.ndarray) -> np.ndarray:
        return g * v / np.sqrt((v * v).mean(-1, keepdims=True) + eps)

    def rope(v: np.ndarray) -> np.ndarray:
        half = hd // 2
        return v * cos + np.concatenate([-v[..., half:], v[..., :half]], -1) * sin

    mask = np.triu(np.full((t, t), -np.inf), 1)
    x = w["model.embed_tokens.weight"][x_ids]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = rms(x, w[p + "input_layernorm.weight"])
        q = (a @ w[p + "self_attn.q_proj.weight"].T).reshape(b, t, heads, hd).transpose(0, 2, 1, 3)
        k = (a @ w[p + "self_attn.k_proj.weight"].T).reshape(b, t, kv_heads, hd).transpose(0, 2, 1, 3)
        v = (a @ w[p + "self_attn.v_proj.weight"].T).reshape(b, t, kv_heads, hd).transpose(0, 2, 1, 3)
        k, v = np.repeat(rope(k), heads // kv_heads, axis=1), np.repeat(v, heads // kv_heads, axis=1)
        s = rope(q) @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        y = (s / s.sum(-1, keepdims=True)) @ v
        x = x + y.transpose(0, 2, 1, 3).reshape(b, t, h) @ w[p + "self_attn.o_proj.weight"].T
        m = rms(x, w[p + "post_attention_layernorm.weight"])
        gate, up = m @ w[p + "mlp.gate_proj.weight"].T, m @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    logits = rms(x, w["model.norm.weight"]) @ head.T
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, y_ids[..., None], -1).mean())


def held_out_windows(count: int = 6) -> np.ndarray:
    """Fixed windows from the last 5% of the corpus, which training never saw."""
    data = np.frombuffer((SAMPLES / "corpus.txt").read_bytes(), dtype=np.uint8).astype(np.int64)
    start, n = int(len(data) * 0.95), CONFIG["max_position_embeddings"] + 1
    offsets = np.linspace(start, len(data) - n, count).astype(int)
    return np.stack([data[o:o + n] for o in offsets])


def test_model_predicts_held_out_text(reference: dict[str, np.ndarray]) -> None:
    windows = held_out_windows()
    loss = forward_loss(reference, windows)
    assert loss < 2.0  # a random model scores about ln(256) = 5.55
    assert abs(loss - TRAINING["final_val_loss"]) < 0.35
    shuffled = {k: np.random.default_rng(0).permutation(v.ravel()).reshape(v.shape) for k, v in reference.items()}
    assert forward_loss(shuffled, windows) > loss + 1.5  # same value distributions, no structure: no skill


def test_gguf_weights_predict_as_well(reference: dict[str, np.ndarray]) -> None:
    windows = held_out_windows()
    weights: dict[str, np.ndarray] = {}
    with open_checkpoint(sample_model_path("gguf")) as ckpt:
        for name in reference:
            got = ckpt.read_tensor(gguf_name(name))
            if name.endswith("q_proj.weight"):
                got = unpermute_rope(got, CONFIG["num_attention_heads"])
            elif name.endswith("k_proj.weight"):
                got = unpermute_rope(got, CONFIG["num_key_value_heads"])
            weights[name] = got
    assert abs(forward_loss(weights, windows) - forward_loss(reference, windows)) < 0.05
