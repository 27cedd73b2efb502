"""The layer tree depends on the set of tensors only: not on file order, not on sharding, not on hostile names.

The same model is written as one safetensors file and as 2-4 shards with an index, tensors in random orders
(header order and data order both shuffled); every view must come out identical. Hostile names (deep nesting,
nested short runs, non-ASCII digits, 5,000-digit block numbers) must finish quickly and never crash.
"""

from __future__ import annotations

import json
import random
import struct
import time
from pathlib import Path

import numpy as np
import pytest

import main
from core.formats import open_checkpoint
from core.tree import MAX_DEPTH, TreeNode, build_tree, fold_repeats, natural_key
from tests.llama_shapes import llama_tensor_shapes

SMALL = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 5, "num_attention_heads": 2,
         "num_key_value_heads": 1, "vocab_size": 12, "tie_word_embeddings": False}


def write_safetensors(path: Path, tensors: list[tuple[str, np.ndarray]]) -> None:
    """A safetensors file whose header lists tensors in the given order and whose data lies in another order."""
    data_order = list(range(len(tensors)))
    random.Random(len(tensors) * 7919 + len(str(path))).shuffle(data_order)
    offsets: dict[int, tuple[int, int]] = {}
    blobs: list[bytes] = []
    at = 0
    for i in data_order:
        raw = np.ascontiguousarray(tensors[i][1]).tobytes()
        offsets[i] = (at, at + len(raw))
        blobs.append(raw)
        at += len(raw)
    dtype_names = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64", np.dtype(np.float16): "F16"}
    header = {name: {"dtype": dtype_names[array.dtype], "shape": list(array.shape), "data_offsets": list(offsets[i])}
              for i, (name, array) in enumerate(tensors)}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def model_tensors() -> list[tuple[str, np.ndarray]]:
    """A small Llama with MoE experts inside every block (nested repeats), biases and buffers."""
    rng = np.random.default_rng(0)
    out = [(name, rng.standard_normal(shape).astype(np.float32)) for name, shape in llama_tensor_shapes(SMALL)]
    for layer in range(SMALL["num_hidden_layers"]):
        for expert in range(3):
            out.append((f"model.layers.{layer}.mlp.experts.{expert}.w1.weight", rng.standard_normal((4, 8))
                        .astype(np.float32)))
        out.append((f"model.layers.{layer}.self_attn.q_proj.bias", np.zeros(8, np.float16)))
    out.append(("model.layers.10.odd.weight", np.ones((2, 2), np.float32)))  # a gap and an odd block
    out.append(("model.rotary_emb.inv_freq", np.arange(4, dtype=np.float32)))
    out.append(("model.position_ids", np.arange(16, dtype=np.int64)))
    return out


def write_variant(folder: Path, tensors: list[tuple[str, np.ndarray]], shards: int, seed: int) -> Path:
    """The model in one file (shards=1) or several shards plus index, each in a random tensor order."""
    folder.mkdir()
    order = list(tensors)
    random.Random(seed).shuffle(order)
    if shards == 1:
        path = folder / "model.safetensors"
        write_safetensors(path, order)
        return path
    parts: list[list[tuple[str, np.ndarray]]] = [[] for _ in range(shards)]
    for i, item in enumerate(order):
        parts[(i * 7 + seed) % shards].append(item)
    weight_map = {}
    for i, part in enumerate(parts, 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        write_safetensors(folder / name, part)
        weight_map.update({tensor: name for tensor, _ in part})
    keys = list(weight_map)
    random.Random(seed + 1).shuffle(keys)
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {k: weight_map[k] for k in keys}}))
    return index


def render(root: TreeNode) -> str:
    """Every node, depth first, with every count it carries: two trees are equal when their renderings are."""
    lines = []
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        tensors = ",".join(t.name for t in node.tensors)
        members = ",".join(m.path for m in node.members)
        lines.append(f"{'  ' * depth}{node.name} path={node.path} x{node.repeat} n={node.tensor_count} "
                     f"e={node.elements} b={node.nbytes} kinds={sorted(node.by_kind.items())} "
                     f"dtypes={sorted(node.dtypes.items())} roles={sorted(node.roles.items())} "
                     f"members=[{members}] tensors=[{tensors}]")
        stack.extend((child, depth + 1) for child in reversed(node.children))
    return "\n".join(lines)


def info_text_without_files(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main.main(["info", str(path), "--depth", "6"]) == 0
    kept, skipping = [], False
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("Files") or line.startswith(" " * 12):
            continue  # the file list is the one thing sharding changes
        if line == "Metadata":
            skipping = True  # an index adds its own metadata entry
            continue
        if skipping and not line.startswith("  "):
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def info_json_without_files(path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main.main(["info", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("files", "path", "file_bytes", "metadata"):
        out.pop(key)
    out["tensors"] = sorted(json.dumps({k: v for k, v in t.items() if k not in ("file", "offset")}, sort_keys=True)
                            for t in out["tensors"])
    return out


def test_same_model_in_any_order_and_sharding_gives_identical_views(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    tensors = model_tensors()
    variants = [write_variant(tmp_path / f"v{i}-{shards}", tensors, shards, seed=i)
                for i, shards in enumerate((1, 1, 2, 3, 4, 4))]
    trees, folded, texts, jsons, counts = [], [], [], [], []
    for path in variants:
        with open_checkpoint(str(path)) as cp:
            assert [t.name for t in cp.tensors] != [name for name, _ in tensors]  # really another order
            tree = build_tree(cp.tensors)
            trees.append(render(tree))
            folded.append(render(fold_repeats(tree)))
            counts.append((cp.parameter_count, cp.element_count, cp.by_kind(), cp.by_role(), cp.by_dtype()))
        texts.append(info_text_without_files(path, capsys))
        jsons.append(info_json_without_files(path, capsys))
    for i in range(1, len(variants)):
        assert trees[i] == trees[0]
        assert folded[i] == folded[0]
        assert counts[i] == counts[0]
        assert texts[i] == texts[0]
        assert jsons[i] == jsons[0]
    expected_params = sum(a.size for name, a in tensors if name not in ("model.rotary_emb.inv_freq",
                                                                         "model.position_ids"))
    assert counts[0][0] == expected_params
    assert "  0-4 (x5) path=model.layers.0 x5" in folded[0] and "experts.0-2 (x3)" in folded[0]


def test_folded_group_merges_children_by_name() -> None:
    """Blocks whose tensors were discovered in different orders still merge name with name."""
    tensors = model_tensors()
    names_in_order = [name for name, _ in tensors]
    for seed in range(3):
        order = list(tensors)
        random.Random(seed).shuffle(order)
        from tests.test_tree import tensors_for

        root = fold_repeats(build_tree(tensors_for([(n, a.shape) for n, a in order], "F32")))
        group = next(n for n in root.walk() if n.name == "0-4 (x5)")
        q = next(n for n in group.walk() if n.path == "model.layers.0.self_attn.q_proj.weight")
        assert q.repeat == 5 and sorted(t.name for t in q.tensors) == sorted(
            n for n in names_in_order if n.endswith("self_attn.q_proj.weight"))
        experts = next(n for n in group.walk() if n.name == "experts.0-2 (x3)")
        assert experts.repeat == 15 and experts.tensor_count == 15


def test_natural_order_compares_digit_strings_by_length_then_value() -> None:
    huge = "9" * 5000
    names = ["10", "2", huge + "1", "b", "1" + "0" * 5000, "a2", "a10", "02", "²", "A1"]
    ordered = sorted(names, key=natural_key)
    assert ordered[:3] == ["02", "2", "10"]
    assert ordered.index("1" + "0" * 5000) < ordered.index(huge + "1")  # same length: by value
    assert ordered.index("a2") < ordered.index("a10")


def nested_short_runs(depth: int, root: str = "a") -> list[str]:
    """At every level a run of two identical blocks beside a different third that nests further down."""
    names = []
    prefix = root
    for _ in range(depth):
        names += [f"{prefix}.0.w", f"{prefix}.1.w"]
        prefix = f"{prefix}.2"
    names.append(f"{prefix}.w")
    return names


def write_names(path: Path, names: list[str]) -> Path:
    write_safetensors(path, [(name, np.zeros(1, np.float32)) for name in names])
    return path


@pytest.mark.parametrize("depth", [30, 60])
def test_nested_short_runs_finish_fast(tmp_path: Path, depth: int, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_names(tmp_path / "runs.safetensors", nested_short_runs(depth))
    assert path.stat().st_size > 3600
    start = time.perf_counter()
    assert main.main(["info", str(path)]) == 0
    assert time.perf_counter() - start < 2.0
    assert "0-1 (x2)" in capsys.readouterr().out


def test_wide_and_deep_short_runs_fold_in_near_linear_time() -> None:
    """Thousands of tensors in runs of two at every depth 40-60 deep. Exponential re-folding would need 2**40
    steps; linear folding takes about a second even on a busy machine."""
    from tests.test_tree import tensors_for

    names = [name for i in range(60) for name in nested_short_runs(40 + i % 20, f"b{i}")]
    assert len(set(names)) == len(names) > 5_000
    tensors = tensors_for([(n, (1,)) for n in names], "F32")
    start = time.perf_counter()
    folded = fold_repeats(build_tree(tensors))
    assert time.perf_counter() - start < 5.0
    assert sum(1 for _ in folded.walk()) > 100 and folded.elements == len(tensors)


def test_names_deeper_than_the_limit_keep_their_tail_as_one_leaf(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    deep = ".".join(["p"] * 3000)
    path = write_names(tmp_path / "deep.safetensors", [deep, deep + "x", "q.w"])
    assert main.main(["info", str(path)]) == 0
    assert "q" in capsys.readouterr().out
    assert main.main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tensor_count"] == 3
    with open_checkpoint(str(path)) as cp:
        tree = build_tree(cp.tensors)
    depths = {}
    stack = [(tree, 0)]
    while stack:
        node, d = stack.pop()
        depths[node.path] = d
        stack.extend((c, d + 1) for c in node.children)
    assert max(depths.values()) == MAX_DEPTH
    assert tree.elements == 3 and sorted(t.name for t in tree.all_tensors()) == sorted([deep, deep + "x", "q.w"])
    assert fold_repeats(tree).elements == 3


@pytest.mark.parametrize("names", [
    ["model.²", "model.³.weight", "layers.².weight"],
    ["model.layers." + "1" * 5000 + ".weight", "model.layers." + "1" * 4999 + "2.weight"],
    ["layers." + "9" * 5000 + "0.w", "layers." + "9" * 5000 + "1.w", "layers.٣.w", "layers.3.w"],
], ids=["superscripts", "5000-digit-layers", "huge-consecutive"])
def test_odd_digits_never_crash_a_command(tmp_path: Path, names: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write_names(tmp_path / "odd.safetensors", names)
    assert main.main(["info", str(path)]) == 0
    assert main.main(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{\n"):])["tensor_count"] == len(names)
    with open_checkpoint(str(path)) as cp:
        folded = fold_repeats(build_tree(cp.tensors))
    assert folded.tensor_count == len(names)
