"""A chosen statistic against block index, one line per role, so that an odd layer stands out.

Data come from core.depth (computed in a worker); clicking a point asks for
that tensor to be selected. The legend sits beside the plot (never over a line); a
click on its sample shows or hides a line, and norm scales (values near 1, another
scale from the weight matrices) start hidden. On a log scale an all-zero tensor,
which has no logarithm, is drawn at the bottom with a mark rather than left out.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QSizePolicy, QStackedLayout, QVBoxLayout, QWidget

from core.depth import ALPHA_LABEL, STATISTICS, DepthSeries
from gui.plain import rich_escape, tooltip
from gui.plot_parts import PlotParts
from gui.slices import Slices
from gui.style import ROLE_COLORS, SERIES_COLORS, panel_header

STAT_HELP = {
    "std": "Standard deviation of each tensor: the typical size of its values.",
    "abs_max": "The largest magnitude in each tensor; a spike marks a layer holding an extreme weight.",
    "kurtosis": "Tail weight of each tensor (3 for a Gaussian); spikes mark layers with rare, huge values.",
    "l2": "Overall size of each tensor (square root of the sum of squares).",
    "outliers": "How many values of each tensor lie more than 6 standard deviations from its mean.",
    "alpha": "The power-law exponent of each matrix's eigenvalues (the Spectra tab computes them): 2 to 6 is "
             "typical of well-trained layers, over 6 under-trained, under 2 over-trained.",
}
STAT_LABELS = {**{key: label for key, (label, _) in STATISTICS.items()}, "alpha": ALPHA_LABEL}
NO_ALPHA_YET = ("Alpha comes from the spectra of the weight matrices: open the Spectra tab to compute them (in the "
                "background); the lines appear here when they are done.")
TICK_TEXT_WIDTH = 44  # px: tick labels such as "0.0125", "10⁻⁵" or "-100000" without a resize
_DASHES = [Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine]
SAFE_MAGNITUDE = 1e100  # pyqtgraph's range arithmetic overflows near 1.8e308: larger lines are drawn scaled
HIDDEN_BY_DEFAULT = ("norm",)  # roles whose lines start hidden: scales near 1 flatten the weight lines
ZERO_MARK = "#b91c1c"
MAX_LAYER_TICKS = 12
LINES_PER_TURN = 1  # depth lines (plot item and legend row, 5-10 ms each) drawn per turn of the event loop


def distinct_colors(roles: list[str]) -> list[str]:
    """One colour per line, never repeated while the palette lasts: the role's colour first, if still free."""
    used: set[str] = set()
    out = []
    spare = list(SERIES_COLORS)
    for role in roles:
        color = ROLE_COLORS.get(role)
        if color is None or color in used:
            color = next((c for c in spare if c not in used), None)
        if color is None:  # more lines than colours: dashes tell them apart
            color = SERIES_COLORS[len(out) % len(SERIES_COLORS)]
        used.add(color)
        out.append(color)
    return out


def layer_tick_step(layers: int) -> int:
    """Whole-number spacing of layer ticks: every layer when few, else at most about a dozen ticks."""
    return max(1, math.ceil(layers / MAX_LAYER_TICKS))


def axis_scale(values: list[float]) -> int:
    """The power of ten to divide a linear axis by so that every finite value is within SAFE_MAGNITUDE."""
    top = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    return math.ceil(math.log10(top)) - 3 if top > SAFE_MAGNITUDE else 0


def _run_each(calls: list) -> None:
    for call in calls:
        call()


class DepthPanel(QWidget):
    """Lines per role; ``sig_tensor_clicked(name)`` when a point is clicked."""

    sig_tensor_clicked = Signal(str)

    def __init__(self, parent=None, sliced: bool = False) -> None:
        """``sliced``: the plot and its items come on later turns of the event loop (``slices``), so showing
        the tab never stalls the window for the whole panel."""
        super().__init__(parent)
        self.profiles: dict[str, list[DepthSeries]] | None = None
        self._hidden: dict[str, bool] = {}  # line label -> hidden by the user (or by default, for norms)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._highlight_name: str | None = None
        self._sliced = sliced
        self._line_slices: Slices | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        header, head, self.title, self.subtitle = panel_header("Depth profile", "Waiting for the whole-model analysis…")
        head.addWidget(QLabel("Statistic:"))
        self.statistic = QComboBox(objectName="depth_statistic")
        self.alpha: list[DepthSeries] | None = None  # from the Spectra tab, once it has run (set_alpha)
        for key, label in STAT_LABELS.items():
            self.statistic.addItem(label, key)
            self.statistic.setItemData(self.statistic.count() - 1, STAT_HELP[key], Qt.ItemDataRole.ToolTipRole)
        self.log_y = QCheckBox("Log scale", objectName="depth_log")
        head.addWidget(self.statistic)
        head.addWidget(self.log_y)
        layout.addLayout(header)
        self.empty = QLabel("The depth profile appears when the whole-model analysis is done.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setObjectName("Muted")
        self.stack = QStackedLayout()
        self.stack.addWidget(self.empty)
        layout.addLayout(self.stack, 1)
        self._plot_parts = PlotParts()  # its ViewBox, axes and PlotItem: a slice each (gui/plot_parts.py)
        self.slices = Slices(self, [*self._plot_parts.steps(), self._make_plot, self._make_items], sliced)

    def _make_plot(self) -> None:
        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground("w")
        self.plot = self._plot_parts.item  # made without a context menu
        self.canvas.addItem(self.plot, row=0, col=0)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        left = self.plot.getAxis("left")  # its width followed each tick label, laying the plot out 2-3 times a draw:
        left.textWidth = TICK_TEXT_WIDTH  # it starts wide enough for the usual labels and only grows for longer ones
        left.setStyle(autoReduceTextSpace=False)
        self.plot.setLabel("bottom", "layer (block index)")

    def _make_items(self) -> None:
        self.legend = pg.LegendItem(labelTextColor="#1f2937", brush=(255, 255, 255, 0))
        self.canvas.addItem(self.legend, row=0, col=1)  # beside the plot, never over a line
        self.legend.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)  # rows stay compact
        self.legend.setToolTip("Click a line's sample to show or hide it; norm scales start hidden.")
        self.ring = pg.ScatterPlotItem(size=16, pen=pg.mkPen("#111827", width=2), brush=None, symbol="o")
        self.ring.setZValue(10)
        self.plot.addItem(self.ring)
        self.zero_marks = pg.ScatterPlotItem(size=11, symbol="t", pen=pg.mkPen(ZERO_MARK), brush=ZERO_MARK)
        self.zero_marks.setZValue(9)
        self.zero_marks.setToolTip("All values zero: no logarithm, so drawn at the bottom of the log scale")
        self.plot.addItem(self.zero_marks)
        self.stack.addWidget(self.canvas)
        self.statistic.currentIndexChanged.connect(self._redraw_now)
        self.log_y.toggled.connect(self._redraw_now)

    @property
    def current_statistic(self) -> str:
        return self.statistic.currentData()

    def set_alpha(self, series: list[DepthSeries]) -> None:
        """Alpha by layer from a finished spectral analysis; drawn when alpha is the chosen statistic."""
        self.alpha = series
        self._dirty = True
        if self.isVisible() and self.current_statistic == "alpha":
            self._redraw()

    def set_waiting(self, text: str) -> None:
        if self.profiles is None:
            self._say(text)

    def _say(self, text: str) -> None:
        """The subtitle, with its full text as a tooltip: a narrow window elides it."""
        self.subtitle.setText(text)
        self.subtitle.setToolTip(text)

    def _show_empty(self, sentence: str) -> None:
        self.empty.setText(sentence)
        self.empty.setToolTip(sentence)
        self.stack.setCurrentWidget(self.empty)

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
        if self.current_statistic == "alpha":
            return list(self.alpha or [])
        return list(self.profiles.get(self.current_statistic, [])) if self.profiles else []

    @property
    def drawing(self) -> bool:
        """Lines are still being added, a few per turn of the event loop (a panel built with ``sliced``)."""
        return self._line_slices is not None and self._line_slices.pending

    def finish_drawing(self) -> None:
        """Add every line still to come, now (for code that reads the curves at once)."""
        if self._line_slices is not None:
            self._line_slices.finish()

    def _redraw_now(self, *_args) -> None:
        """A statistic or scale the user chose: drawn whole at once, the answer to the click."""
        self._redraw(sliced=False)

    def _redraw(self, sliced: bool | None = None) -> None:
        """Draw the current statistic; ``sliced`` (by default, for a panel built sliced) a few lines per turn."""
        sliced = self._sliced if sliced is None else sliced
        self._dirty = False
        if self._line_slices is not None:  # a redraw still adding lines: this one replaces it
            self._line_slices.cancel()
            self._line_slices.deleteLater()
            self._line_slices = None
            self.canvas.setUpdatesEnabled(True)
        for curve in self.curves.values():
            self.plot.removeItem(curve)
        self.curves = {}
        self.legend.clear()
        lines = self.series()
        key = self.current_statistic
        label = STAT_LABELS[key]
        self.statistic.setToolTip(STAT_HELP[key])
        self.plot.setLogMode(False, self.log_y.isChecked())
        self._exponent = 0 if self.log_y.isChecked() else axis_scale([p[1] for line in lines for p in line.points])
        self.plot.setLabel("left", label + (f" (×1e{self._exponent})" if self._exponent else ""))
        self.zero_marks.setData([], [])
        if not lines and key == "alpha":
            self._say(NO_ALPHA_YET if self.alpha is None else "No matrix in a repeated block got a power-law fit")
            self._show_empty(NO_ALPHA_YET if self.alpha is None else "No matrix inside the repeated blocks got a "
                             "power-law fit, so there is no alpha to draw across depth.")
            return
        if not lines:
            note = getattr(self, "_note", "")
            if self.profiles is not None:  # an incomplete analysis says so, never "no repeated blocks"
                self._say(f"Not analysed yet: {note}" if note else
                          "No repeated blocks with analysed weights in this model")
                self._show_empty(f"Not analysed yet: {note}. The profile appears when the analysis is done."
                                 if note else "This model has no repeated blocks (layers.0, layers.1 …) with "
                                 "analysed weights, so there is no profile across depth to draw.")
            else:
                self._show_empty(self.subtitle.text())
            return
        self.stack.setCurrentWidget(self.canvas)
        layers = {p[0] for line in lines for p in line.points}
        self.title.setText(f"Depth profile · {label}")
        self._say(f"{len(lines)} lines × {len(layers)} layers · click a point to select its tensor"
                  + (f" · {self._note}" if getattr(self, "_note", "") else ""))
        step = layer_tick_step(max(layers) - min(layers) + 1)
        self.plot.getAxis("bottom").setTickSpacing(step, step)
        log = self.log_y.isChecked()
        floor = self._log_floor(lines) if log else 0.0
        zeros: list[tuple[float, str]] = []
        undefined: list[str] = []
        hidden: list[str] = []
        colors = distinct_colors([line.role for line in lines])
        draws = [functools.partial(self._draw_line, i, line, colors[i], log, floor, zeros, undefined, hidden)
                 for i, line in enumerate(lines)]
        tail = functools.partial(self._finish_lines, floor, zeros, undefined, hidden)
        if sliced:  # a dozen lines with their legend rows cost 50 ms: a few per turn of the event loop
            groups = [draws[k:k + LINES_PER_TURN] for k in range(0, len(draws), LINES_PER_TURN)]
            self.canvas.setUpdatesEnabled(False)  # painted once, whole: a repaint per slice costs more than a slice
            self._line_slices = Slices(self, [functools.partial(_run_each, g) for g in groups]
                                       + [tail, self._fit_view, self._show_lines], True)
        else:
            _run_each([*draws, tail, self._fit_view, self._show_lines])

    def _draw_line(self, i: int, line: DepthSeries, color, log: bool, floor: float, zeros: list, undefined: list,
                   hidden: list) -> None:
        n = i // len(SERIES_COLORS)
        x = np.array([p[0] for p in line.points], dtype=float)
        y = np.array([p[1] for p in line.points], dtype=float)
        y = np.where(np.isfinite(y), y, np.nan)  # infinities cannot be drawn: gaps, like NaN
        if log:
            zeros += [(float(px), p[2]) for px, py, p in zip(x, y, line.points, strict=True) if py == 0]
            y = np.where(y > 0, y, np.where(y == 0, floor, np.nan))
        elif self._exponent:
            y = y / 10.0**self._exponent
        if not np.isfinite(y).any():
            undefined.append(line.label)  # e.g. the kurtosis of constant norm scales: nothing to draw
            return
        style = _DASHES[n % len(_DASHES)]
        # a dashed cosmetic pen wider than 1 px is stroked as a path (~1.5 ms a line per paint); 1 px is not
        pen = pg.mkPen(color, width=1.6 if style == Qt.PenStyle.SolidLine else 1.0, style=style)
        curve = pg.PlotDataItem(x, y, pen=pen, symbol="o", symbolSize=6, symbolBrush=color,
                                symbolPen=pg.mkPen(color), name=rich_escape(line.label),
                                data=[p[2] for p in line.points], connect="finite")
        curve.sigPointsClicked.connect(self._clicked)
        curve.setToolTip(tooltip(line.pattern))
        self.plot.addItem(curve)
        self.legend.addItem(curve, rich_escape(line.label))
        if self._hidden.get(line.label, line.role in HIDDEN_BY_DEFAULT):
            curve.setVisible(False)
            hidden.append(line.label)
        curve.visibleChanged.connect(lambda label=line.label, c=curve: self._hidden.__setitem__(label,
                                                                                             not c.isVisible()))
        self.curves[line.label] = curve

    def _finish_lines(self, floor: float, zeros: list, undefined: list, hidden: list) -> None:
        if zeros:
            self.zero_marks.setData([z[0] for z in zeros], [math.log10(floor)] * len(zeros),
                                    data=[z[1] for z in zeros])
            self._say(f"{self.subtitle.text()} · ▼ {len(zeros)} all-zero at the bottom")
        if hidden:
            self._say(f"{self.subtitle.text()} · {len(hidden)} norm line{'s' if len(hidden) != 1 else ''} hidden "
                      "(click the legend to show)")
        if undefined:
            self._say(f"{self.subtitle.text()} · undefined for {', '.join(undefined)} (all values equal)")
        self.plot.enableAutoRange()
        self._draw_highlight()

    def _fit_view(self) -> None:
        """The range that fits every line, now: the paint that shows them does not also fit the view (every
        line's items are recomputed on a change of range, 5-10 ms)."""
        self.canvas.ci.layout.activate()  # the legend's new rows resize the plot now, not at the first paint
        self.plot.getViewBox().updateAutoRange()

    def _show_lines(self) -> None:
        """Paint the lines, whole, on the next turn."""
        self.canvas.setUpdatesEnabled(True)

    @staticmethod
    def _log_floor(lines: list[DepthSeries]) -> float:
        """Where zeros sit on a log axis: a decade below the smallest positive value (1e-3 when there is none)."""
        positive = [p[1] for line in lines for p in line.points if math.isfinite(p[1]) and p[1] > 0]
        return min(positive) / 10 if positive else 1e-3

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
