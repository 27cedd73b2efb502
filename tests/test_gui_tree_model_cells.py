"""The layer tree's cells answered from a cache stay true to the nodes, across a switch of tree."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt

from core.numbers import human_bytes, human_count
from tests.conftest import write_llama


def all_indexes(model, parent=QModelIndex()):
    for row in range(model.rowCount(parent)):
        first = model.index(row, 0, parent)
        yield first
        yield from all_indexes(model, first)


def test_cached_cells_match_their_nodes_and_follow_a_new_root(qtbot, tmp_path: Path) -> None:
    from gui.jobs import load_model
    from gui.tree_model import COL_BYTES, COL_NAME, COL_PARAMS, COLUMNS, LayerTreeModel

    path, _ = write_llama(tmp_path)
    opened = load_model(str(path))
    try:
        model = LayerTreeModel(opened.folded, "llama")
        for root in (opened.folded, opened.tree, opened.folded):  # the texts of one tree never leak into another
            model.set_root(root)
            rows = list(all_indexes(model))
            assert len(rows) == len(list(root.walk()))
            for index in rows:
                node = model.node(index)
                assert model.parent(index) == (model.index_of(model._parents[id(node)])
                                               if model._parents[id(node)] is not None else QModelIndex())
                params = index.siblingAtColumn(COL_PARAMS)
                assert model.data(params) == (human_count(node.parameters) if node.parameters else "–")
                assert model.data(index.siblingAtColumn(COL_BYTES)) == human_bytes(node.nbytes)
                name = "llama" if node is root else node.name
                assert model.data(index) == model.data(index, Qt.ItemDataRole.DisplayRole) == name
                right = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                assert model.data(params, Qt.ItemDataRole.TextAlignmentRole) == right
                assert model.data(index, Qt.ItemDataRole.TextAlignmentRole) is None
                grey = model.data(params, Qt.ItemDataRole.ForegroundRole)
                assert (grey is not None) == (not node.parameters)
                assert model.data(index, Qt.ItemDataRole.FontRole) is None  # roles the model leaves to the view
            assert COLUMNS[COL_NAME].title == model.headerData(COL_NAME, Qt.Orientation.Horizontal)
    finally:
        opened.checkpoint.close()
