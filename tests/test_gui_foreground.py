"""The window holds the analysis for a moment when the user acts (core.foreground), so what the user asked for
is drawn first; building a visible panel renews the hold, a hidden one does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import foreground
from tests.conftest import write_llama


@pytest.fixture(autouse=True)
def _no_hold_left():
    foreground.release_background()
    yield
    foreground.release_background()


def _view(qtbot, tmp_path: Path):
    from gui.jobs import load_model
    from gui.model_view import ModelView

    path, _ = write_llama(tmp_path)
    view = ModelView(load_model(str(path)), "cpu", auto_analyse=False)
    qtbot.addWidget(view)
    view.show()
    return view


def test_selecting_a_tensor_holds_the_background(qtbot, tmp_path: Path) -> None:
    view = _view(qtbot, tmp_path)
    foreground.release_background()
    assert not foreground.held()
    assert view.select_tensor("model.layers.1.mlp.up_proj.weight")
    assert foreground.held()


def test_showing_another_panel_holds_the_background(qtbot, tmp_path: Path) -> None:
    view = _view(qtbot, tmp_path)
    foreground.release_background()
    view.tabs.setCurrentIndex(1)
    assert foreground.held()


def test_a_hold_ends_by_itself(qtbot, tmp_path: Path) -> None:
    view = _view(qtbot, tmp_path)
    view.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: not foreground.held(), timeout=int(foreground.MAX_HOLD_SECONDS * 1000) + 500)


def test_only_a_visible_widget_being_built_holds_the_background(qtbot) -> None:
    from PySide6.QtWidgets import QWidget

    from gui.slices import Slices

    shown, hidden = QWidget(), QWidget()
    qtbot.addWidget(shown)
    qtbot.addWidget(hidden)
    shown.show()
    ran: list[str] = []
    background = Slices(hidden, [lambda: ran.append("hidden")], sliced=True)
    qtbot.waitUntil(lambda: not background.pending, timeout=2000)
    assert ran == ["hidden"] and not foreground.held()
    Slices(shown, [lambda: ran.append("shown"), lambda: None], sliced=True)
    qtbot.waitUntil(lambda: "shown" in ran, timeout=2000)
    assert foreground.held()
