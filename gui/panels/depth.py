"""A chosen statistic against block index, one line per role, so that an odd layer stands out.

Data come from core.depth (computed in a worker); clicking a point asks for
that tensor to be selected.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QVBoxLayout, QWidget

from core.depth import STATISTICS, DepthSeries
from gui.plain import rich_escape, tooltip
from gui.style import ROLE_COLORS, SERIES_COLORS, panel_header

STAT_HELP = {
    "std": "Standard deviation of each tensor: the typical size of its values.",
    "abs_max": "The largest magnitude in each tensor; a spike marks a layer holding an extreme weight.",
    "kurtosis": "Tail weight of each tensor (3 for a Gaussian); spikes mark layers with rare, huge values.",
    "l2": "Overall size of each tensor (square root of the sum of squares).",
    "outliers": "How many values of each tensor lie more than 6 standard deviations from its mean.",
}
_DASHES = [Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine]
SAFE_MAGNITUDE = 1e100  # pyqtgraph's range arithmetic overflows near 1.8e308: larger lines are drawn scaled


def axis_scale(values: list[float]) -> int:
    """The power of ten to divide a linear axis by so that every finite value is within SAFE_MAGNITUDE."""
    top = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    return math.ceil(math.log10(top)) - 3 if top > SAFE_MAGNITUDE else 0


class DepthPanel(QWidget):
    """Lines per role; ``sig_tensor_clicked(name)`` when a point is clicked."""

    sig_tensor_clicked = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.profiles: dict[str, list[DepthSeries]] | None = None
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._highlight_name: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        header, head, self.title, self.subtitle = panel_header("Depth profile", "Waiting for the whole-model analysis…")
        head.addWidget(QLabel("Statistic:"))
        self.statistic = QComboBox(objectName="depth_statistic")
        for key, (label, _) in STATISTICS.items():
            self.statistic.addItem(label, key)
            self.statistic.setItemData(self.statistic.count() - 1, STAT_HELP[key], Qt.ItemDataRole.ToolTipRole)
        self.log_y = QCheckBox("Log scale", objectName="depth_log")
        head.addWidget(self.statistic)
        head.addWidget(self.log_y)
        layout.addLayout(header)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.setLabel("bottom", "layer (block index)")
        self.legend = self.plot.addLegend(offset=(-10, 10), labelTextColor="#1f2937", brush=(255, 255, 255, 210),
                                          colCount=2)
        self.ring = pg.ScatterPlotItem(size=16, pen=pg.mkPen("#111827", width=2), brush=None, symbol="o")
        self.ring.setZValue(10)
        self.plot.addItem(self.ring)
        layout.addWidget(self.plot, 1)
        self.statistic.currentIndexChanged.connect(self._redraw)
        self.log_y.toggled.connect(self._redraw)

    @property
    def current_statistic(self) -> str:
        return self.statistic.currentData()

    def set_waiting(self, text: str) -> None:
        if self.profiles is None:
            self.subtitle.setText(text)

    def set_profiles(self, profiles: dict[str, list[DepthSeries]], note: str = "") -> None:
        """Store the profiles; drawing waits until the panel is shown (it is costly, and often unseen)."""
        self.profiles = profiles
        self._note = note
        self._dirty = True
        if self.isVisible():
            self._redraw()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if getattr(self, "_dirty", False):
            self._redraw()

    def series(self) -> list[DepthSeries]:
        return list(self.profiles.get(self.current_statistic, [])) if self.profiles else []

    def _redraw(self) -> None:
        self._dirty = False
        for curve in self.curves.values():
            self.plot.removeItem(curve)
        self.curves = {}
        self.legend.clear()
        lines = self.series()
        key = self.current_statistic
        label = STATISTICS[key][0]
        self.statistic.setToolTip(STAT_HELP[key])
        self.plot.setLogMode(False, self.log_y.isChecked())
        self._exponent = 0 if self.log_y.isChecked() else axis_scale([p[1] for line in lines for p in line.points])
        self.plot.setLabel("left", label + (f" (×1e{self._exponent})" if self._exponent else ""))
        if not lines:
            note = getattr(self, "_note", "")
            if self.profiles is not None:  # an incomplete analysis says so, never "no repeated blocks"
                self.subtitle.setText(f"Not analysed yet: {note}" if note else
                                      "No repeated blocks with analysed weights in this model")
            return
        layers = {p[0] for line in lines for p in line.points}
        self.title.setText(f"Depth profile · {label}")
        self.subtitle.setText(f"{len(lines)} lines × {len(layers)} layers · click a point to select its tensor"
                              + (f" · {self._note}" if getattr(self, "_note", "") else ""))
        used_colors: dict[str, int] = {}
        undefined: list[str] = []
        for i, line in enumerate(lines):
            base = ROLE_COLORS.get(line.role)
            n = used_colors.get(line.role, 0)
            used_colors[line.role] = n + 1
            color = base if base and n == 0 else SERIES_COLORS[i % len(SERIES_COLORS)]
            x = np.array([p[0] for p in line.points], dtype=float)
            y = np.array([p[1] for p in line.points], dtype=float)
            y = np.where(np.isfinite(y), y, np.nan)  # infinities cannot be drawn: gaps, like NaN
            if self.log_y.isChecked():
                y = np.where(y > 0, y, np.nan)
            elif self._exponent:
                y = y / 10.0**self._exponent
            if not np.isfinite(y).any():
                undefined.append(line.label)  # e.g. the kurtosis of constant norm scales: nothing to draw
                continue
            pen = pg.mkPen(color, width=1.6, style=_DASHES[n % len(_DASHES)])
            curve = pg.PlotDataItem(x, y, pen=pen, symbol="o", symbolSize=6, symbolBrush=color,
                                    symbolPen=pg.mkPen(color), name=rich_escape(line.label),
                                    data=[p[2] for p in line.points], connect="finite")
            curve.sigPointsClicked.connect(self._clicked)
            curve.setToolTip(tooltip(line.pattern))
            self.plot.addItem(curve)
            self.curves[line.label] = curve
        if undefined:
            self.subtitle.setText(f"{self.subtitle.text()} · undefined for {', '.join(undefined)} "
                                  "(all values equal)")
        self.plot.enableAutoRange()
        self._draw_highlight()

    def _clicked(self, _item, points, _ev=None) -> None:
        if len(points):
            name = points[0].data()
            if isinstance(name, str):
                self.sig_tensor_clicked.emit(name)

    def highlight(self, name: str | None) -> None:
        """Ring the point of the selected tensor, if it is on a line."""
        self._highlight_name = name
        self._draw_highlight()

    def _draw_highlight(self) -> None:
        self.ring.setData([], [])
        if not self._highlight_name:
            return
        for line in self.series():
            for layer, value, name in line.points:
                if name == self._highlight_name and math.isfinite(value):
                    y = math.log10(value) if self.log_y.isChecked() and value > 0 else value
                    y = y / 10.0 ** getattr(self, "_exponent", 0)
                    self.ring.setData([layer], [y])
                    return
