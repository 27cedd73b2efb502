"""pyqtgraph plots made in pieces, one piece per turn of the event loop (gui/slices.py).

A ``pg.PlotItem`` costs about 25 ms of UI thread in one call: its ViewBox's
context menu (~10 ms), four axes (~6 ms) and its own options menu (~9 ms).
Our plots turn their context menus off at once, so a ViewBox made without a
menu gives the same plot without the menu's cost; the rest is split into
steps (ViewBox, axes, PlotItem) that each fit in a short turn.
"""

from __future__ import annotations

from collections.abc import Callable

import pyqtgraph as pg

AXES = ("left", "bottom", "right", "top")
HIDDEN_AXES = ("right", "top")


class PlotParts:
    """A menu-less PlotItem built by ``steps()``, run in order (sliced or at once); then ``item`` / ``widget()``."""

    def __init__(self, **plot_options) -> None:
        self._options = plot_options
        self.view_box: pg.ViewBox | None = None
        self.axes: dict[str, pg.AxisItem] = {}
        self.item: pg.PlotItem | None = None

    def steps(self) -> list[Callable[[], object]]:
        return [self._make_view_box, self._make_axes, self._make_item]

    def build(self) -> pg.PlotItem:
        """Every step left, now."""
        for step in self.steps():
            step()
        return self.item

    def _make_view_box(self) -> None:
        if self.view_box is None:
            self.view_box = pg.ViewBox(enableMenu=False)

    def _make_axes(self) -> None:
        for side in AXES:
            if side not in self.axes:
                self.axes[side] = pg.AxisItem(orientation=side)

    def _make_item(self) -> None:
        if self.item is None:
            self.item = pg.PlotItem(viewBox=self.view_box, axisItems=dict(self.axes), enableMenu=False,
                                    **self._options)
            for side in HIDDEN_AXES:  # pyqtgraph shows every axis it is handed; its own right and top start hidden
                self.item.showAxis(side, False)

    def widget(self, **widget_options) -> pg.PlotWidget:
        """A PlotWidget showing the finished item (a few ms: a graphics view and its scene)."""
        return pg.PlotWidget(plotItem=self.item, **widget_options)


class _MenulessPlotItem(pg.PlotItem):
    """The PlotItem under a ColorBarItem, built without the context menus the colour bar turns off at once."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("enableMenu", False)
        super().__init__(*args, **kwargs)


class MenulessColorBar(pg.ColorBarItem, _MenulessPlotItem):
    """``pg.ColorBarItem`` (which calls ``setMenuEnabled(False)`` itself) without building the menus first:
    its ``super().__init__()`` reaches ``_MenulessPlotItem`` before ``pg.PlotItem`` (~10 ms less)."""
