"""Readable at any size: at 1024×700 and at the default size no label is cut without its full text in a tooltip."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication, QLabel

from tests.test_quantization import write_mixed_gguf

SAMPLE = "resources/samples/tiny-llama"
GGUF_SAMPLE = "resources/samples/tiny-llama.Q8_0.gguf"


def cut_labels(root) -> list[str]:
    """Visible labels whose text does not fit their width and that carry no tooltip; words too wide to wrap."""
    bad = []
    for label in root.findChildren(QLabel):
        text = label.text()
        if not label.isVisible() or not text.strip() or not label.pixmap().isNull():
            continue
        metrics = label.fontMetrics()
        width = label.contentsRect().width()
        lines = text.split("\n")
        if label.wordWrap():
            widest = max(metrics.horizontalAdvance(word) for line in lines for word in line.split() or [""])
        else:
            widest = max(metrics.horizontalAdvance(line) for line in lines)
        if widest > width + 1 and not label.toolTip():
            bad.append(f"{text[:60]!r}: needs {widest} px, has {width}")
    return bad


def check_every_tab(qtbot, window, view) -> list[str]:
    problems = []
    for index in range(view.tabs.count()):
        view.tabs.setCurrentIndex(index)
        QApplication.processEvents()
        qtbot.wait(50)
        problems += [f"{view.tabs.tabText(index)}: {p}" for p in cut_labels(window)]
    return problems


@pytest.mark.parametrize("size", [(1024, 700), None])
@pytest.mark.parametrize("path", [SAMPLE, GGUF_SAMPLE])
def test_every_tab_is_readable(qtbot, make_window, open_model, size, path) -> None:
    window = make_window()
    if size:
        window.resize(*size)
    view = open_model(window, path)
    leaf = next(t.name for t in view.checkpoint.tensors if len(t.shape) == 2)
    view.select_path(leaf)
    qtbot.waitUntil(window.is_idle, timeout=30000)
    assert check_every_tab(qtbot, window, view) == []


def test_summary_reflows_into_fewer_columns_when_narrow(qtbot, tmp_path) -> None:
    from core.formats import open_checkpoint
    from gui.panels.summary import SummaryPanel

    with open_checkpoint(write_mixed_gguf(tmp_path / "m.gguf")) as checkpoint:
        panel = SummaryPanel(checkpoint)
        qtbot.addWidget(panel)
        panel.resize(1000, 700)
        panel.show()
        qtbot.waitUntil(lambda: panel.metrics.columns == 4)
        assert panel.sections.columns == 2
        panel.resize(380, 700)
        qtbot.waitUntil(lambda: panel.metrics.columns < 4)
        assert panel.sections.columns == 1
        assert cut_labels(panel) == []
        assert panel.storage_label.text().startswith("Q4_K_M mix · ")


def test_a_label_cut_without_tooltip_is_caught(qtbot) -> None:
    """The check itself fails on a cut label: this test could otherwise pass by finding no labels at all."""
    from PySide6.QtWidgets import QWidget

    holder = QWidget()
    qtbot.addWidget(holder)
    label = QLabel("405,853,388,800 parameters exactly", holder)
    label.setFixedWidth(40)
    holder.show()
    assert len(cut_labels(holder)) == 1
    label.setToolTip("405,853,388,800 parameters exactly")
    assert cut_labels(holder) == []
