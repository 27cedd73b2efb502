"""Markup in a file is shown as characters: labels, tooltips, legends and dialogs never render it."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QLabel, QMessageBox

VERIFIED = '<b style="color:green">VERIFIED SAFE</b>'
COMMENT = "NO NaN<!-- hidden -->"
IMAGE = "<img src=x>"
PICKLE_ARGUMENT = '<!-- rm -rf ~ --><b style="color:green">This file is safe to torch.load</b>'


def rendered(text: str) -> str:
    """What Qt shows for text it takes as rich: the HTML rendered to characters."""
    doc = QTextDocument()
    doc.setHtml(text)
    return doc.toPlainText()


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    """A model whose family, metadata and tensor names are HTML, one tensor all NaN."""
    from safetensors.numpy import save_file

    folder = tmp_path / f"hostile{IMAGE}"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": VERIFIED, "num_hidden_layers": 2}))
    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(2):  # two repeated modules of one role: the depth legend names them by module
        tensors[f"model.layers.{i}.{IMAGE}.weight"] = rng.standard_normal((8, 8)).astype(np.float32)
        tensors[f"model.layers.{i}.<i>x</i>.weight"] = rng.standard_normal((8, 8)).astype(np.float32)
    tensors[f"model.{COMMENT}.weight"] = np.full((4, 4), np.nan, dtype=np.float32)
    tensors[f"model.{VERIFIED}.bias"] = np.zeros(4, dtype=np.float32)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": VERIFIED})
    return folder


def test_hostile_names_stay_plain_in_every_label_and_tooltip(make_window, open_model, qtbot, hostile_folder):
    window = make_window()
    view = open_model(window, hostile_folder)
    nan_name = f"model.{COMMENT}.weight"
    assert view.select_tensor(nan_name)
    qtbot.waitUntil(lambda: view.distribution.stats is not None and not view.selection_job.busy, timeout=20000)
    view.tabs.setCurrentIndex(3)  # the heatmap titles itself with the tensor name
    qtbot.waitUntil(window.is_idle, timeout=20000)

    assert view.summary.architecture_labels["family"].text() == VERIFIED
    assert view.distribution.title.text() == nan_name
    assert view.heatmap.title.text() == nan_name
    assert IMAGE in window.status_label.text()  # the status bar names the model (its folder)
    labels = window.findChildren(QLabel)
    with_markup = [label for label in labels if "<" in label.text()]
    assert {VERIFIED, nan_name} <= {label.text() for label in with_markup}
    for label in with_markup:
        assert label.textFormat() == Qt.TextFormat.PlainText, label.text()

    model = view.tree_model
    tip = model.data(model.find_tensor(nan_name), Qt.ItemDataRole.ToolTipRole)
    assert rendered(tip).startswith(nan_name)  # what the user sees is the name, comment and all
    view.set_folded(False)
    image_row = model.find_tensor(f"model.layers.0.{IMAGE}.weight")
    assert image_row.isValid()
    assert rendered(model.data(image_row, Qt.ItemDataRole.ToolTipRole)).startswith(f"model.layers.0.{IMAGE}.weight")
    files_tip = view.summary.files_table.item(0, 0).toolTip()
    assert rendered(files_tip) == str(hostile_folder / "model.safetensors")
    tab_tip = window.tabs.tabToolTip(window.tabs.indexOf(view))
    assert rendered(tab_tip) == str(hostile_folder)


def test_depth_legend_shows_markup_as_text(make_window, open_model, qtbot, hostile_folder):
    window = make_window()
    view = open_model(window, hostile_folder)
    view.tabs.setCurrentIndex(2)
    qtbot.waitUntil(lambda: view.depth.profiles is not None and window.is_idle(), timeout=20000)
    legend_texts = [label.text for _sample, label in view.depth.legend.items]
    assert sorted(rendered(text) for text in legend_texts) == sorted(["other · <i>x</i>", f"other · {IMAGE}"])
    assert all("<img" not in text for text in legend_texts)  # escaped: pyqtgraph renders legend labels as HTML


class Evil:
    """Pickles as a call of os.system whose argument is HTML."""

    def __reduce__(self) -> tuple:
        return os.system, (PICKLE_ARGUMENT,)


def test_refusal_dialog_shows_the_pickle_call_literally(make_window, qtbot, tmp_path, dialogs):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"weight": Evil()}, protocol=2))
    window = make_window()
    window.open_paths([str(path)])
    qtbot.waitUntil(lambda: bool(dialogs), timeout=20000)
    box = dialogs[0]
    assert box["format"] == Qt.TextFormat.PlainText
    assert PICKLE_ARGUMENT in box["text"] and "system" in box["text"]
    assert "system" in box["details"] and PICKLE_ARGUMENT in box["details"]
    assert window.tabs.count() == 0
    assert os.listdir(tmp_path) == ["evil.pt"]  # nothing written next to the user's file


def test_internal_error_is_one_line_with_the_traceback_in_details_and_log(qtbot, tmp_path, monkeypatch, dialogs):
    from gui.errors import show_error

    monkeypatch.setenv("WEIGHTSCOPE_LOG_DIR", str(tmp_path / "logs"))
    try:
        {}["missing <b>key</b>"]
    except KeyError as exc:
        error = exc
    show_error(None, "Internal error", error, context="drawing the histogram")
    box = dialogs[0]
    assert box["text"] == "internal error while drawing the histogram: KeyError; please report it"
    assert "Traceback (most recent call last)" in box["details"]
    assert "test_internal_error_is_one_line" in box["details"]
    logs = list((tmp_path / "logs").glob("*"))
    assert len(logs) == 1  # core.logs wrote the incident, and the details name it
    assert f"Log: {logs[0]}" in box["details"]
    assert "KeyError" in logs[0].read_text()


def test_an_exception_escaping_a_slot_becomes_an_internal_error_dialog(qtbot, tmp_path, monkeypatch):
    import sys

    from PySide6.QtWidgets import QApplication

    from gui.errors import install_excepthook

    monkeypatch.setenv("WEIGHTSCOPE_LOG_DIR", str(tmp_path / "logs"))
    passed_on: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, exc, tb: passed_on.append(exc))
    install_excepthook(lambda: None)
    try:
        raise ValueError("<b>boom</b>")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]
    assert len(boxes) == 1
    box = boxes[0]
    try:
        assert box.text() == "internal error while handling an event: ValueError; please report it"
        assert box.textFormat() == Qt.TextFormat.PlainText
        assert "ValueError: <b>boom</b>" in box.detailedText()
        assert len(passed_on) == 1  # the console still gets it
    finally:
        box.close()
