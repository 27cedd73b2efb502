"""Plots built in pieces (gui/plot_parts.py) are the plots pyqtgraph builds in one call, minus the menus."""

from __future__ import annotations

import importlib

import pyqtgraph as pg
import pytest

view_box_module = importlib.import_module("pyqtgraph.graphicsItems.ViewBox.ViewBox")


@pytest.fixture
def menus_built(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every ViewBoxMenu made while the test runs (the ~10 ms piece the parts leave out)."""
    made: list[object] = []
    original = view_box_module.ViewBoxMenu

    class Counting(original):
        def __init__(self, *args, **kwargs) -> None:
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(view_box_module, "ViewBoxMenu", Counting)
    return made


def test_parts_make_one_piece_per_step_and_a_plot_like_pyqtgraphs(qtbot, menus_built: list[object]) -> None:
    from gui.plot_parts import PlotParts

    parts = PlotParts()
    steps = parts.steps()
    assert len(steps) == 3
    steps[0]()
    assert parts.view_box is not None and not parts.axes and parts.item is None
    steps[1]()
    assert sorted(parts.axes) == ["bottom", "left", "right", "top"] and parts.item is None
    steps[2]()
    widget = parts.widget()
    qtbot.addWidget(widget)
    reference = pg.PlotWidget(enableMenu=False)
    qtbot.addWidget(reference)
    assert widget.getPlotItem() is parts.item and parts.item.getViewBox() is parts.view_box
    for side in ("left", "bottom", "right", "top"):
        assert parts.item.getAxis(side) is parts.axes[side]
        assert parts.item.getAxis(side).isVisible() == reference.getAxis(side).isVisible()
    assert not parts.item.menuEnabled() and not parts.view_box.menuEnabled()
    assert menus_built == [], "the parts build no ViewBox context menu"
    widget.plot([0, 1, 2], [3, 1, 2])
    assert widget.getViewBox().childrenBounds() == reference.plot([0, 1, 2], [3, 1, 2]).getViewBox().childrenBounds()


def test_menuless_colour_bar_ends_like_pyqtgraphs(qtbot, menus_built: list[object]) -> None:
    from gui.plot_parts import MenulessColorBar

    options = {"values": (0, 1), "colorMap": pg.colormap.get("viridis"), "interactive": False, "width": 14,
               "label": "value"}
    light = MenulessColorBar(**options)
    assert menus_built == []
    full = pg.ColorBarItem(**options)
    assert len(menus_built) == 1  # the control: pyqtgraph's own colour bar builds one, then turns it off
    for bar in (light, full):
        assert not bar.menuEnabled() and bar.getViewBox().menu is None
    assert light.levels() == full.levels() and light.axis.orientation == full.axis.orientation == "right"
    assert light.getAxis("left").labelText == full.getAxis("left").labelText == "value"
