"""Blocks that differ only in quantised type fold together, marked and explained; other differences still split."""

from __future__ import annotations

from pathlib import Path

from core.checkpoint import TensorInfo
from core.formats import open_checkpoint
from core.tree import MIXED_QUANTISATION, build_tree, fold_repeats
from tests.test_quantization import write_mixed_gguf


def tensor(name: str, dtype: str, shape: tuple[int, ...] = (4, 256)) -> TensorInfo:
    n = shape[0] * shape[1]
    return TensorInfo(name, shape, dtype, n, n, "f", 0, "weight", "other")


def test_gguf_blocks_of_mixed_quant_types_fold_with_a_note(tmp_path: Path) -> None:
    with open_checkpoint(write_mixed_gguf(tmp_path / "m.gguf")) as checkpoint:
        tree = fold_repeats(build_tree(checkpoint.tensors))
        total = checkpoint.parameter_count
    [group] = tree.children
    assert group.name == f"blk.0-1 (x2) {MIXED_QUANTISATION}" and group.repeat == 2
    assert group.differences == ["attn_v.weight: Q6_K in block 0; Q4_K in block 1"]
    assert group.parameters == total and group.dtypes == {"Q6_K": 64 * 256, "Q4_K": 64 * 256 + 2 * 256 * 512,
                                                          "F32": 512}


def test_identical_blocks_carry_no_note_and_float_differences_do_not_fold() -> None:
    same = [tensor(f"h.{i}.w", "Q4_K") for i in range(3)]
    [group] = fold_repeats(build_tree(same)).children
    assert group.name == "h.0-2 (x3)" and group.differences == []
    floats = [tensor("h.0.w", "F16"), tensor("h.1.w", "BF16")]
    assert [c.name for c in fold_repeats(build_tree(floats)).children[0].children] == ["0", "1"]
    quant_vs_float = [tensor("h.0.w", "Q4_K"), tensor("h.1.w", "F16")]
    assert [c.name for c in fold_repeats(build_tree(quant_vs_float)).children[0].children] == ["0", "1"]
    shapes = [tensor("h.0.w", "Q4_K"), tensor("h.1.w", "Q6_K", (8, 256))]
    assert [c.name for c in fold_repeats(build_tree(shapes)).children[0].children] == ["0", "1"]


def test_many_differing_blocks_are_listed_briefly() -> None:
    tensors = [tensor(f"h.{i}.w", "Q6_K" if i % 3 == 0 else "Q4_K") for i in range(40)]
    [group] = fold_repeats(build_tree(tensors)).children
    [line] = group.differences
    assert line.startswith("w: Q4_K in blocks 1, 2, 4, 5, 7, 8, 10, 11, 13, 14 and 16 more; Q6_K in blocks 0, 3, 6")
    assert line.endswith("and 4 more")


def test_fold_tooltip_says_what_differs_and_one_block_times_n(qtbot, tmp_path: Path) -> None:
    from gui.tree_model import COL_NAME, LayerTreeModel

    with open_checkpoint(write_mixed_gguf(tmp_path / "m.gguf")) as checkpoint:
        tree = fold_repeats(build_tree(checkpoint.tensors))
    model = LayerTreeModel(tree, "m.gguf")
    root = model.index(0, COL_NAME)
    group = model.index(0, COL_NAME, root)
    from PySide6.QtCore import Qt

    tip = model.data(group, Qt.ItemDataRole.ToolTipRole)
    per_block = tree.children[0].parameters // 2
    assert "2 similar blocks" in tip and f"one block = {per_block / 1000:.4g} thousand × 2" in tip
    assert "attn_v.weight: Q6_K in block 0; Q4_K in block 1" in tip
