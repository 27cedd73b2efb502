"""Llama-family tensor layouts and sparse safetensors shards, for tests and benchmarks.

A sparse shard has a real header and a data section made with truncate(), so a
model of hundreds of GB costs almost no disk: only headers are ever read.
"""

from __future__ import annotations

import json
import os
import struct

LLAMA_31_405B = {
    "hidden_size": 16384, "intermediate_size": 53248, "num_hidden_layers": 126, "num_attention_heads": 128,
    "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
}
LLAMA_31_405B_PARAMETERS = 405_853_388_800
LLAMA_31_8B = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False,
}
LLAMA_31_8B_PARAMETERS = 8_030_261_248


def llama_tensor_shapes(config: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Hugging Face Llama tensor names and shapes, in the order the converters write them."""
    h, inter = config["hidden_size"], config["intermediate_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    kv_dim = h // heads * kv
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (config["vocab_size"], h))]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}"
        out += [
            (f"{p}.self_attn.q_proj.weight", (h, h)),
            (f"{p}.self_attn.k_proj.weight", (kv_dim, h)),
            (f"{p}.self_attn.v_proj.weight", (kv_dim, h)),
            (f"{p}.self_attn.o_proj.weight", (h, h)),
            (f"{p}.mlp.gate_proj.weight", (inter, h)),
            (f"{p}.mlp.up_proj.weight", (inter, h)),
            (f"{p}.mlp.down_proj.weight", (h, inter)),
            (f"{p}.input_layernorm.weight", (h,)),
            (f"{p}.post_attention_layernorm.weight", (h,)),
        ]
    out.append(("model.norm.weight", (h,)))
    if not config.get("tie_word_embeddings"):
        out.append(("lm_head.weight", (config["vocab_size"], h)))
    return out


def write_sparse_safetensors(path: str, tensors: list[tuple[str, tuple[int, ...]]], dtype: str = "BF16",
                             itemsize: int = 2) -> int:
    """A valid safetensors file whose data is a hole; returns its apparent size."""
    header: dict[str, object] = {}
    offset = 0
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n * itemsize]}
        offset += n * itemsize
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return 8 + len(raw) + offset


def write_sparse_sharded_model(folder: str, config: dict, shards: int, dtype: str = "BF16") -> list[str]:
    """A sharded Hugging Face model folder (index + shards + config.json), all data sparse."""
    os.makedirs(folder, exist_ok=True)
    tensors = llama_tensor_shapes(config)
    n = len(tensors)
    groups = [tensors[i * n // shards:(i + 1) * n // shards] for i in range(shards)]
    weight_map: dict[str, str] = {}
    paths = []
    total = 0
    for i, group in enumerate(groups, start=1):
        name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        total += write_sparse_safetensors(os.path.join(folder, name), group, dtype=dtype)
        weight_map.update({t: name for t, _ in group})
        paths.append(os.path.join(folder, name))
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "max_position_embeddings": 131072,
                   "torch_dtype": "bfloat16", **config}, f)
    return paths
