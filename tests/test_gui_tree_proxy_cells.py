"""What a delegate paints through the filter proxy (TreeFilterProxy.multiData, all roles in one call) is what
each node says: text, alignment, grey "–" cells and finding marks, with and without a filter."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

from core.numbers import human_bytes, human_count
from tests.conftest import write_llama


def all_indexes(model, parent=QModelIndex()):
    for row in range(model.rowCount(parent)):
        first = model.index(row, 0, parent)
        yield first
        yield from all_indexes(model, first)


def painted(delegate: QStyledItemDelegate, index) -> QStyleOptionViewItem:
    """The options a view's delegate draws a cell with (Qt asks the model for them with multiData)."""
    option = QStyleOptionViewItem()
    delegate.initStyleOption(option, index)
    return option


def test_cells_through_the_proxy_show_each_nodes_figures_and_marks(qtbot, tmp_path: Path) -> None:
    from gui.jobs import load_model
    from gui.tree_model import COL_BYTES, COL_NAME, COL_PARAMS, LayerTreeModel, TreeFilterProxy

    path, tensors = write_llama(tmp_path)
    opened = load_model(str(path))
    try:
        model = LayerTreeModel(opened.tree, "llama")
        proxy = TreeFilterProxy()
        proxy.setSourceModel(model)
        delegate = QStyledItemDelegate()
        marked = sorted(tensors)[0]
        model.set_findings({marked: [("error", f"{marked} holds NaN")]})
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for pattern in ("", "mlp"):
            proxy.set_pattern(pattern)
            rows = list(all_indexes(proxy))
            assert rows
            for index in rows:
                node = model.node(proxy.mapToSource(index))
                name = painted(delegate, index)
                assert name.text == ("llama" if node is model.root else node.name)
                has_mark = any(t.name == marked for t in node.all_tensors())
                assert (not name.icon.isNull()) == has_mark, node.path
                params = painted(delegate, index.siblingAtColumn(COL_PARAMS))
                assert params.text == (human_count(node.parameters) if node.parameters else "–")
                assert params.displayAlignment & right == right
                assert painted(delegate, index.siblingAtColumn(COL_BYTES)).text == human_bytes(node.nbytes)
                grey = params.palette.color(params.palette.ColorRole.Text).name()
                assert (grey == "#9ca3af") == (not node.parameters)
                assert painted(delegate, index.siblingAtColumn(COL_NAME)).icon.isNull() == (not has_mark)
            leaves = [model.node(proxy.mapToSource(i)) for i in rows if not model.node(proxy.mapToSource(i)).children]
            assert leaves and all("mlp" in n.path for n in leaves) == bool(pattern)
    finally:
        opened.checkpoint.close()
