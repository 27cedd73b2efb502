"""The layer tree in the window: counts equal core's, filtering, folding, sorting, tooltips."""

from __future__ import annotations

import fnmatch
import re

import pytest
from PySide6.QtCore import QModelIndex, Qt

from core.formats import open_checkpoint
from core.tree import build_tree, fold_repeats
from gui.tree_model import (
    COL_BIASES,
    COL_BYTES,
    COL_EMBEDDINGS,
    COL_NAME,
    COL_PARAMS,
    COL_WEIGHTS,
    NODE_ROLE,
    SORT_ROLE,
    LayerTreeModel,
)
from tests.conftest import LAYERS


@pytest.fixture
def view(make_window, open_model, tiny_llama):
    window = make_window(auto_analyse=False)
    return open_model(window, tiny_llama[0])


def rows(model, parent=QModelIndex()):
    for r in range(model.rowCount(parent)):
        index = model.index(r, 0, parent)
        yield index
        yield from rows(model, index)


def test_tree_counts_equal_core(view, tiny_llama):
    path, tensors = tiny_llama
    with open_checkpoint(str(path)) as cp:
        core_tree = build_tree(cp.tensors)
        total = cp.parameter_count
    model = view.tree_model
    view.set_folded(False)
    root = model.index(0, 0)
    assert model.data(root.siblingAtColumn(COL_PARAMS), SORT_ROLE) == total == sum(a.size for a in tensors.values())
    by_path = {n.path: n for n in core_tree.walk()}
    seen = 0
    for index in rows(model):
        node = model.data(index, NODE_ROLE)
        if node is model.root:
            continue
        core_node = by_path[node.path]
        seen += 1
        assert model.data(index.siblingAtColumn(COL_PARAMS), SORT_ROLE) == core_node.parameters
        assert model.data(index.siblingAtColumn(COL_WEIGHTS), SORT_ROLE) == core_node.by_kind.get("weight", 0)
        assert model.data(index.siblingAtColumn(COL_BIASES), SORT_ROLE) == core_node.by_kind.get("bias", 0)
        assert model.data(index.siblingAtColumn(COL_EMBEDDINGS), SORT_ROLE) == core_node.by_kind.get("embedding", 0)
        assert model.data(index.siblingAtColumn(COL_BYTES), SORT_ROLE) == core_node.nbytes
        if not core_node.children:  # a tensor: its count is its numpy size
            assert core_node.parameters == tensors[core_node.path].size
    assert seen == len(by_path) - 1
    leaves = [i for i in rows(model) if not model.data(i, NODE_ROLE).children]
    assert len(leaves) == len(tensors)


def test_tooltips_explain_in_plain_words(view):
    model = view.tree_model
    header_tip = model.headerData(COL_WEIGHTS, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "connection strengths" in header_tip
    assert "baseline offsets" in model.headerData(COL_BIASES, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "represent tokens" in model.headerData(COL_EMBEDDINGS, Qt.Orientation.Horizontal,
                                                   Qt.ItemDataRole.ToolTipRole)
    root = model.index(0, 0)
    exact = model.data(root.siblingAtColumn(COL_PARAMS), Qt.ItemDataRole.ToolTipRole)
    assert f"{view.checkpoint.parameter_count:,} exactly" in exact


def test_folding_and_unfolding(view, tiny_llama):
    _, tensors = tiny_llama
    model = view.tree_model
    assert view.folded
    names = [model.data(i, Qt.ItemDataRole.DisplayRole) for i in rows(model)]
    assert f"layers.0-{LAYERS - 1} (x{LAYERS})" in names
    group = next(i for i in rows(model) if model.data(i) == f"layers.0-{LAYERS - 1} (x{LAYERS})")
    layer_params = sum(a.size for n, a in tensors.items() if ".layers." in n)
    assert model.data(group.siblingAtColumn(COL_PARAMS), SORT_ROLE) == layer_params
    assert model.data(group.siblingAtColumn(1)) == f"{LAYERS} blocks · {LAYERS * 9} tensors"
    folded_q = next(i for i in rows(model, group) if model.data(i, NODE_ROLE).path.endswith("q_proj.weight"))
    assert len(model.data(folded_q, NODE_ROLE).tensors) == LAYERS

    window = view.window()
    window.action_fold.trigger()  # View > Fold Repeated Blocks off
    assert not view.folded
    names = [model.data(i) for i in rows(model)]
    assert not any("(x" in n for n in names)
    assert all(str(i) in names for i in range(LAYERS))
    window.action_fold.trigger()
    assert view.folded
    assert f"layers.0-{LAYERS - 1} (x{LAYERS})" in [model.data(i) for i in rows(model)]


@pytest.mark.parametrize("mode, text, expect", [
    ("Substring", "Q_PROJ", lambda n: "q_proj" in n),
    ("Glob", "*.mlp.*_proj.weight", lambda n: fnmatch.fnmatchcase(n, "*.mlp.*_proj.weight")),
    ("Regex", r"layers\.[13]\..*norm", lambda n: re.search(r"layers\.[13]\..*norm", n) is not None),
])
def test_filter_modes(view, tiny_llama, mode, text, expect):
    _, tensors = tiny_llama
    view.set_folded(False)
    view.filter_mode.setCurrentText(mode)
    view.filter_edit.setText(text)
    shown = set(view.visible_tensor_rows())
    assert shown == {n for n in tensors if expect(n)}
    assert shown
    view.filter_edit.clear()
    assert set(view.visible_tensor_rows()) == set(tensors)


def test_filter_keeps_children_of_a_matching_group(view, tiny_llama):
    view.set_folded(False)
    view.filter_edit.setText("layers.1.self_attn")
    assert set(view.visible_tensor_rows()) == {f"model.layers.1.self_attn.{m}_proj.weight" for m in "qkvo"}


def test_invalid_regex_is_flagged_and_filters_nothing(view, tiny_llama):
    view.filter_mode.setCurrentText("Regex")
    view.filter_edit.setText("layers.(")
    assert "invalid regular expression" in view.proxy.error
    assert "background" in view.filter_edit.styleSheet()
    view.set_folded(False)
    assert len(view.visible_tensor_rows()) == len(tiny_llama[1])


def test_sorting_by_parameters(view):
    view.set_folded(False)
    view.tree.sortByColumn(COL_PARAMS, Qt.SortOrder.DescendingOrder)
    proxy = view.proxy
    layer2 = next(i for i in rows(proxy) if proxy.data(i, NODE_ROLE).path == "model.layers.2")
    values = [proxy.data(proxy.index(r, COL_PARAMS, layer2), SORT_ROLE) for r in range(proxy.rowCount(layer2))]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    view.tree.sortByColumn(COL_NAME, Qt.SortOrder.AscendingOrder)
    model_row = next(i for i in rows(proxy) if proxy.data(i, NODE_ROLE).path == "model.layers")
    names = [proxy.data(proxy.index(r, 0, model_row)) for r in range(proxy.rowCount(model_row))]
    assert names == [str(i) for i in range(LAYERS)]  # numeric order: 2 before 10


def test_tree_model_over_a_folded_real_model():
    """Folding a 126-layer 405B-shaped header: one group row, counts summed (no window needed)."""
    from core.checkpoint import TensorInfo
    from core.taxonomy import classify
    from tests.llama_shapes import LLAMA_31_405B, LLAMA_31_405B_PARAMETERS, llama_tensor_shapes

    infos = []
    for name, shape in llama_tensor_shapes(LLAMA_31_405B):
        n = 1
        for d in shape:
            n *= d
        kind, role = classify(name, shape, "BF16")
        infos.append(TensorInfo(name, shape, "BF16", n, 2 * n, "f", 0, kind, role))
    folded = fold_repeats(build_tree(infos))
    model = LayerTreeModel(folded, "405b")
    root = model.index(0, 0)
    assert model.data(root.siblingAtColumn(COL_PARAMS), SORT_ROLE) == LLAMA_31_405B_PARAMETERS
    assert "layers.0-125 (x126)" in [model.data(i) for i in rows(model)]
    assert model.data(root.siblingAtColumn(COL_PARAMS)) == "406 B"


def _painted(proxy, index, roles=(Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.DecorationRole,
                                  Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.TextAlignmentRole)):
    """What a delegate gets for one cell through the proxy's multiData (its per-cell answers reused)."""
    from PySide6.QtCore import QModelRoleData

    asked = [QModelRoleData(int(role)) for role in roles]
    proxy.multiData(index, asked)
    return [a.data() for a in asked]


def _all_cells(proxy):
    return [proxy.index(i.row(), c, i.parent()) for i in rows(proxy) for c in range(proxy.columnCount())]


def _truth(proxy, index):
    """The same roles through Qt's own mapping to the source model's data(), no reuse."""
    model = proxy.sourceModel()
    source = proxy.mapToSource(index)
    return [model.data(source, role) for role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.DecorationRole,
                                                  Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.TextAlignmentRole)]


def _same(painted, truth):
    # QIcon and QBrush compare by identity of what the model made once; texts and alignments by value
    return [p if isinstance(p, (str, int, type(None))) else type(p) for p in painted] == \
        [t if isinstance(t, (str, int, type(None))) else type(t) for t in truth]


def test_cells_reused_by_the_painter_follow_filters_sorting_folding_and_marks(view):
    proxy = view.proxy
    view.set_folded(False)
    for index in _all_cells(proxy):
        _painted(proxy, index)  # every cell answered once: the reuse is filled
    view.tree.sortByColumn(COL_PARAMS, Qt.SortOrder.DescendingOrder)
    assert all(_same(_painted(proxy, i), _truth(proxy, i)) for i in _all_cells(proxy))
    view.filter_edit.setText("mlp")
    cells = _all_cells(proxy)
    assert cells and all(_same(_painted(proxy, i), _truth(proxy, i)) for i in cells)
    view.filter_edit.setText("")
    view.set_folded(True)
    assert all(_same(_painted(proxy, i), _truth(proxy, i)) for i in _all_cells(proxy))
    view.set_folded(False)
    name = "model.layers.1.mlp.up_proj.weight"
    row = next(i for i in rows(proxy) if getattr(proxy.data(i, NODE_ROLE), "path", "") == name)
    assert _painted(proxy, row)[1] is None  # no finding, no dot
    view.tree_model.set_findings({name: [("error", "12 NaN values")]})
    assert _painted(proxy, row)[1] is not None  # the dot appears at the next paint
    assert all(_same(_painted(proxy, i), _truth(proxy, i)) for i in _all_cells(proxy))


def test_reused_cells_are_bounded(view, monkeypatch):
    """Scrolling through a huge unfolded tree keeps at most MAX_REUSED_CELLS cells' answers, and they stay right."""
    import gui.tree_model

    monkeypatch.setattr(gui.tree_model, "MAX_REUSED_CELLS", 7)
    proxy = view.proxy
    view.set_folded(False)
    cells = _all_cells(proxy)
    assert len(cells) > 20
    for index in cells:
        assert _same(_painted(proxy, index), _truth(proxy, index))
        assert len(proxy._cells) <= 7
