"""The layer tree: counts at every node and folding of repeated blocks."""

from __future__ import annotations

from core.checkpoint import TensorInfo
from core.taxonomy import classify
from core.tree import build_tree, fold_repeats
from tests.llama_shapes import llama_tensor_shapes

SMALL = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 4, "num_attention_heads": 2,
         "num_key_value_heads": 1, "vocab_size": 10, "tie_word_embeddings": False}


def tensors_for(shapes: list[tuple[str, tuple[int, ...]]], dtype: str = "BF16") -> list[TensorInfo]:
    out = []
    for name, shape in shapes:
        n = 1
        for d in shape:
            n *= d
        kind, role = classify(name, shape, dtype)
        out.append(TensorInfo(name, shape, dtype, n, 2 * n, "f", 0, kind, role))
    return out


def test_counts_aggregate_up_the_tree() -> None:
    tensors = tensors_for(llama_tensor_shapes(SMALL))
    root = build_tree(tensors)
    total = sum(t.elements for t in tensors)
    assert root.elements == total and root.tensor_count == len(tensors)
    layer = root.find("model.layers.2")
    # q 8x8, k 4x8, v 4x8, o 8x8, gate/up 16x8, down 8x16, two norms of 8
    assert layer.elements == 64 + 32 + 32 + 64 + 3 * 128 + 16
    assert layer.by_kind == {"weight": layer.elements}
    assert root.by_kind["embedding"] == 80
    assert root.find("model.layers").children[-1].name == "3"


def test_numbered_children_sort_numerically() -> None:
    names = [(f"layers.{i}.w", (2,)) for i in (0, 1, 2, 10, 11, 3)]
    root = build_tree(tensors_for(names))
    assert [c.name for c in root.find("layers").children] == ["0", "1", "2", "3", "10", "11"]


def test_identical_blocks_fold_into_one_group() -> None:
    tensors = tensors_for(llama_tensor_shapes(SMALL))
    folded = fold_repeats(build_tree(tensors))
    model = next(c for c in folded.children if c.name == "model")
    group = next(c for c in model.children if c.members)
    assert group.name == "layers.0-3 (x4)"
    assert group.repeat == 4 and len(group.members) == 4
    assert group.elements == build_tree(tensors).find("model.layers").elements
    q = next(c for c in next(c for c in group.children if c.name == "self_attn").children if c.name == "q_proj")
    assert q.elements == 4 * 64 and len(q.children[0].tensors) == 4
    assert len(group.all_tensors()) == 4 * 9


def test_runs_that_differ_fold_separately() -> None:
    shapes = [(f"layers.{i}.mlp.weight", (4, 4) if i < 3 else (8, 4)) for i in range(6)]
    folded = fold_repeats(build_tree(tensors_for(shapes)))
    layers = folded.children[0]
    assert [c.name for c in layers.children] == ["0-2 (x3)", "3-5 (x3)"]
    assert layers.elements == 3 * 16 + 3 * 32


def test_a_single_odd_block_stays_unfolded() -> None:
    shapes = [(f"h.{i}.w", (4,)) for i in range(3)] + [("h.3.w", (5,))]
    layers = fold_repeats(build_tree(tensors_for(shapes))).children[0]
    assert [c.name for c in layers.children] == ["0-2 (x3)", "3"]
