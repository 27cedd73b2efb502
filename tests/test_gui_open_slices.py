"""Opening a model builds its tab in slices: the frame on the first turn, the tree and the analysis later."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_llama


def opened_llama(tmp_path: Path):
    from gui.jobs import load_model

    path, _ = write_llama(tmp_path)
    return load_model(str(path))


def test_sliced_view_makes_its_frame_first_then_the_tree_then_starts_the_analysis(qtbot, tmp_path: Path) -> None:
    from gui.model_view import ModelView

    opened = opened_llama(tmp_path)
    view = ModelView(opened, "cpu", sliced=True)
    qtbot.addWidget(view)
    direct = ModelView(opened, "cpu", auto_analyse=False)
    qtbot.addWidget(direct)
    assert "tree" not in view.__dict__ and view.fold_check.isChecked() and view.tabs.count() == direct.tabs.count()
    assert view.analysis_state == "idle" and not view.is_idle()
    view.fold_check.setChecked(False)  # the user (or the window's fold action) acts before the tree exists
    steps = 0
    while view.slices.pending:
        view.slices.step()  # what the shared 1 ms timer does on one turn of the event loop
        steps += 1
        if steps == 1:
            assert view.tree_model.root is opened.tree and view.analysis_state == "idle"
    assert steps == 3  # the tree's model and view, its first rows and columns, then the analysis
    assert view.analysis_state == "running"
    qtbot.waitUntil(view.is_idle, timeout=20000)
    direct.set_folded(False)
    assert view.visible_tensor_rows() == direct.visible_tensor_rows() and len(view.visible_tensor_rows()) > 10
    assert view.select_tensor("model.layers.1.mlp.up_proj.weight")
    assert view.selection.single.name == "model.layers.1.mlp.up_proj.weight"


def test_asking_for_the_tree_early_makes_the_rest_of_the_tab_now(qtbot, tmp_path: Path) -> None:
    from gui.model_view import ModelView

    view = ModelView(opened_llama(tmp_path), "cpu", auto_analyse=False, sliced=True)
    qtbot.addWidget(view)
    assert view.slices.pending
    assert view.tree.model() is view.proxy  # made on demand, with everything after it
    assert not view.slices.pending and view.is_idle() and view.analysis_state == "idle"
    try:
        view.no_such_attribute  # noqa: B018
    except AttributeError as exc:
        assert "no_such_attribute" in str(exc)
    else:
        raise AssertionError("an unknown attribute must still raise AttributeError")


def expanded_paths(view) -> set[str]:
    out: set[str] = set()

    def walk(parent) -> None:
        for row in range(view.proxy.rowCount(parent)):
            index = view.proxy.index(row, 0, parent)
            if view.tree.isExpanded(index):
                out.add(view.tree_model.node(view.proxy.mapToSource(index)).path)
            walk(index)

    from PySide6.QtCore import QModelIndex

    walk(QModelIndex())
    return out


def test_switching_trees_unfolds_exactly_what_a_new_tab_unfolds(qtbot, tmp_path: Path) -> None:
    from gui.model_view import ModelView

    opened = opened_llama(tmp_path)
    fresh = {}
    for folded in (True, False):
        view = ModelView(opened, "cpu", auto_analyse=False)
        qtbot.addWidget(view)
        view.set_folded(folded)
        fresh[folded] = expanded_paths(view)
    view = ModelView(opened, "cpu", auto_analyse=False)
    qtbot.addWidget(view)
    view.tree.expandAll()  # the user unfolded everything: the other tree starts as a new tab's would
    view.set_folded(False)
    assert expanded_paths(view) == fresh[False] and len(fresh[False]) >= 2
    view.tree.expandAll()
    view.set_folded(True)
    assert expanded_paths(view) == fresh[True]
