"""How the selected tensor's (or group's) values are spread: a step histogram with markers, and its statistics.

The panel only draws a core TensorStats; deriving it (merging summaries,
computing percentiles) happens in a worker (see gui.model_view). Updates
arrive while a tensor is still being read, so the histogram fills in.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHeaderView,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.numbers import format_value
from core.stats_summary import PERCENTILES, TensorStats, percentile_key
from gui.plain import tooltip
from gui.style import ACCENT, MUTED, panel_header

FILL = QColor(37, 99, 235, 70)
MEAN_PEN = pg.mkPen("#dc2626", width=1.6)
SIGMA_PEN = pg.mkPen("#dc2626", width=1.1, style=Qt.PenStyle.DashLine)
PCT_PEN = pg.mkPen("#6b7280", width=1.0, style=Qt.PenStyle.DotLine)
LOG_FLOOR = -0.5  # where empty bins sit on a log count axis (a bin holding one value sits at 0 = 10^0)


def _int(n: int) -> str:
    return f"{int(n):,}"


# (key, label, tooltip, formatter)
STAT_ROWS: list[tuple[str, str, str]] = [
    ("count", "Values", "How many finite numbers the statistics are over (NaN and ±Inf are counted separately)."),
    ("dtype", "Dtype", "The stored type(s) of the selected values."),
    ("mean", "Mean", "The average value."),
    ("std", "Std (σ)", "Standard deviation: the typical distance of a value from the mean."),
    ("min", "Min", "The smallest value."),
    ("max", "Max", "The largest value."),
    ("abs_max", "Max |w|", "The largest magnitude; a huge one compared with σ often marks an outlier weight."),
    ("l2", "L2 norm", "Square root of the sum of squares: the overall size of the tensor."),
    ("skewness", "Skewness", "Asymmetry: 0 for a symmetric spread, positive when the right tail is longer."),
    ("kurtosis", "Kurtosis", "Tail weight: 3 for a Gaussian; much larger means rare, extreme values."),
    ("beyond_6_sigma", "Beyond 6σ", "Values more than six standard deviations from the mean (outliers)."),
    ("zeros", "Zeros", "Values exactly equal to 0."),
    ("nan", "NaN", "Not-a-number values: usually a sign of a broken checkpoint."),
    ("pos_inf", "+Inf", "Positive infinities."),
    ("neg_inf", "−Inf", "Negative infinities."),
    ("tensors", "Tensors", "How many tensors were merged into these statistics."),
]
PCT_ROWS = [(f"p{percentile_key(p)}", f"p{percentile_key(p)}",
             f"{percentile_key(p)}% of the values are at or below this number.") for p in PERCENTILES]
INT_KEYS = {"count", "beyond_6_sigma", "zeros", "nan", "pos_inf", "neg_inf", "tensors"}


def stat_value(ts: TensorStats, key: str):
    if key.startswith("p") and key[1:] in ts.percentiles:
        return ts.percentiles[key[1:]]
    return getattr(ts, key)


def stat_text(ts: TensorStats, key: str) -> str:
    value = stat_value(ts, key)
    if key == "dtype":
        return str(value)
    if key in INT_KEYS:
        return _int(value)
    return format_value(float(value))


def stats_as_text(ts: TensorStats) -> str:
    """Tab-separated name/value lines at full precision, for the clipboard."""
    lines = [f"name\t{ts.name}"]
    for key, label, _ in STAT_ROWS + PCT_ROWS:
        value = stat_value(ts, key)
        lines.append(f"{label}\t{value if isinstance(value, str) or key in INT_KEYS else repr(float(value))}")
    if not ts.exact:
        lines.append("note\tbeyond 6σ estimated from bf16 bins")
    return "\n".join(lines)


class DistributionPanel(QWidget):
    """Histogram (linear or log count axis; values or log10|value|) with mean, ±σ and percentile markers."""

    sig_export_done = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.stats: TensorStats | None = None
        self.fraction = 1.0
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)

        header, head, self.title, self.subtitle = panel_header("Select a tensor or a group in the tree", "")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.x_mode = QComboBox(objectName="distribution_x_mode")
        self.x_mode.addItems(["Values", "log10 |v|"])
        self.x_mode.setToolTip("Values: the numbers themselves. log10 |value|: their magnitudes on a log scale, "
                               "which shows tiny and huge values side by side (zeros left out).")
        self.y_mode = QComboBox(objectName="distribution_y_mode")
        self.y_mode.addItems(["Linear", "Log count"])
        self.y_mode.setToolTip("A log count axis makes rare values (tails, outliers) visible next to the bulk.")
        self.export_png = QPushButton("PNG…", objectName="distribution_export_png")
        self.export_svg = QPushButton("SVG…", objectName="distribution_export_svg")
        self.copy_button = QPushButton("Copy stats", objectName="distribution_copy")
        self.export_png.setToolTip("Save the histogram as a PNG image")
        self.export_svg.setToolTip("Save the histogram as an SVG vector image")
        self.copy_button.setToolTip("Copy every statistic to the clipboard (tab-separated, full precision)")
        for w in (self.x_mode, self.y_mode, self.export_png, self.export_svg, self.copy_button):
            head.addWidget(w)
        layout.addLayout(header)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.plot.setLabel("left", "count")
        self.plot.setLabel("bottom", "value")
        self.curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=pg.mkBrush(FILL),
                                     pen=pg.mkPen(ACCENT, width=1.3))
        self.plot.addItem(self.curve)
        self.markers: list[pg.InfiniteLine] = []
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Statistic", "Value"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumWidth(170)
        split.addWidget(self.plot)
        split.addWidget(self.table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([700, 260])
        layout.addWidget(split, 1)

        self.x_mode.currentIndexChanged.connect(self._redraw)
        self.y_mode.currentIndexChanged.connect(self._redraw)
        self.export_png.clicked.connect(lambda: self.export_dialog("png"))
        self.export_svg.clicked.connect(lambda: self.export_dialog("svg"))
        self.copy_button.clicked.connect(self.copy_statistics)
        self._set_enabled(False)

    # -- state ----------------------------------------------------------------
    def clear(self, message: str = "Select a tensor or a group in the tree", subtitle: str = "") -> None:
        self.stats = None
        self.title.setText(message)
        self.subtitle.setText(subtitle)
        self.curve.setData([], [])
        self._clear_markers()
        self.table.setRowCount(0)
        self._set_enabled(False)

    def show_pending(self, title: str, subtitle: str) -> None:
        """A new selection: keep nothing of the old one, say what is coming."""
        self.clear(title, subtitle or "reading values…")

    def set_stats(self, ts: TensorStats, title: str, subtitle: str, fraction: float = 1.0) -> None:
        """Draw ``ts``; ``fraction`` < 1 marks a histogram still filling in."""
        self.stats = ts
        self.fraction = fraction
        self.title.setText(title)
        note = " · partial" if fraction < 1 and "partial" not in subtitle and "reading" not in subtitle else ""
        exact = "" if ts.exact else " · beyond-6σ estimated"
        self.subtitle.setText(f"{subtitle}{note}{exact}")
        self.subtitle.setToolTip(tooltip(self.subtitle.text()))  # the whole line, when the panel cuts it
        self.table.setHorizontalHeaderLabels(["Statistic", "Value" if fraction >= 1 else "Value (partial)"])
        self._fill_table(ts)
        self._redraw()
        self._set_enabled(fraction >= 1)

    def _set_enabled(self, on: bool) -> None:
        for w in (self.export_png, self.export_svg, self.copy_button):
            w.setEnabled(on)

    def _fill_table(self, ts: TensorStats) -> None:
        rows = STAT_ROWS + PCT_ROWS
        self.table.setRowCount(len(rows))
        for r, (key, label, tip) in enumerate(rows):
            name = QTableWidgetItem(label)
            name.setToolTip(tip)
            value = QTableWidgetItem(stat_text(ts, key))
            value.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            raw = stat_value(ts, key)
            value.setToolTip(f"{raw!r}\n{tip}" if not isinstance(raw, str) else tip)
            if key in ("nan", "pos_inf", "neg_inf") and raw:
                value.setForeground(QColor("#dc2626"))
            self.table.setItem(r, 0, name)
            self.table.setItem(r, 1, value)

    def table_text(self, label: str) -> str:
        """The value shown in the statistics table for a row label (for tests and copy)."""
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() == label:
                return self.table.item(r, 1).text()
        raise KeyError(label)

    # -- drawing --------------------------------------------------------------
    def _clear_markers(self) -> None:
        for line in self.markers:
            self.plot.removeItem(line)
        self.markers = []

    def _redraw(self) -> None:
        ts = self.stats
        self._clear_markers()
        if ts is None:
            return
        log_x = self.x_mode.currentIndex() == 1
        edges, counts = (ts.log_edges, ts.log_counts) if log_x else (ts.hist_edges, ts.hist_counts)
        log_y = self.y_mode.currentIndex() == 1
        self.plot.setLabel("bottom", "log10 |value|" if log_x else "value")
        self.plot.setLabel("left", "count (log)" if log_y else "count")
        if len(edges) < 2:
            self.curve.setData([], [])
            self.plot.getPlotItem().getAxis("left").setLogMode(False, False)
            return
        edges = np.asarray(edges, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        if edges[-1] == edges[0]:  # one distinct value: give the single bin a visible width
            half = abs(edges[0]) * 0.01 or 0.5
            edges = np.linspace(edges[0] - half, edges[0] + half, len(edges))
        axis = self.plot.getPlotItem().getAxis("left")
        if log_y:
            y = np.full_like(counts, LOG_FLOOR)
            np.log10(counts, out=y, where=counts > 0)
            self.curve.setData(edges, y, stepMode="center", fillLevel=LOG_FLOOR)
            self.plot.setYRange(LOG_FLOOR, float(y.max()) + 0.3, padding=0)  # before the axis reads it as 10^y
            axis.setLogMode(False, True)
            self.plot.enableAutoRange(axis="x")
        else:
            axis.setLogMode(False, False)
            self.curve.setData(edges, counts, stepMode="center", fillLevel=0)
            self.plot.enableAutoRange()
        if not log_x:
            self._add_value_markers(ts, float(edges[0]), float(edges[-1]))

    def _add_value_markers(self, ts: TensorStats, lo: float, hi: float) -> None:
        def line(x: float, pen, label: str, pos: float) -> None:
            if not math.isfinite(x) or not lo <= x <= hi:
                return
            item = pg.InfiniteLine(pos=x, angle=90, pen=pen, movable=False, label=label,
                                   labelOpts={"position": pos, "color": MUTED, "fill": (255, 255, 255, 200)})
            self.plot.addItem(item)
            self.markers.append(item)

        line(ts.mean, MEAN_PEN, "mean", 0.95)
        line(ts.mean - ts.std, SIGMA_PEN, "−σ", 0.86)
        line(ts.mean + ts.std, SIGMA_PEN, "+σ", 0.86)
        for key, pos in (("1", 0.76), ("99", 0.76)):
            line(ts.percentiles.get(key, math.nan), PCT_PEN, f"p{key}", pos)

    def marker_positions(self) -> dict[str, float]:
        return {str(m.label.format): float(m.value()) for m in self.markers}

    # -- export ---------------------------------------------------------------
    def copy_statistics(self) -> str:
        if self.stats is None:
            return ""
        text = stats_as_text(self.stats)
        QGuiApplication.clipboard().setText(text)
        return text

    def export(self, path: str) -> None:
        """Write the plot to ``path``: SVG if it ends in .svg, else a PNG."""
        item = self.plot.getPlotItem()
        if path.lower().endswith(".svg"):
            self._export_svg(path)
        else:
            exporter = ImageExporter(item)
            exporter.parameters()["width"] = max(800, int(self.plot.width()) * 2)
            exporter.export(path)
        self.sig_export_done.emit(path)

    def _export_svg(self, path: str) -> None:
        """Vector output through Qt's own SVG generator (pyqtgraph's SVG exporter trips over Qt 6 paths)."""
        from PySide6.QtCore import QRect, QSize
        from PySide6.QtGui import QPainter
        from PySide6.QtSvg import QSvgGenerator

        size = QSize(max(self.plot.width(), 640), max(self.plot.height(), 400))
        generator = QSvgGenerator()
        generator.setFileName(path)
        generator.setSize(size)
        generator.setViewBox(QRect(0, 0, size.width(), size.height()))
        generator.setTitle(self.stats.name if self.stats is not None else "histogram")
        generator.setDescription("Weightscope histogram")
        painter = QPainter(generator)
        try:
            self.plot.render(painter, QRect(0, 0, size.width(), size.height()))
        finally:
            painter.end()

    def export_dialog(self, kind: str) -> None:
        if self.stats is None:
            return
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in self.stats.name)[:80] or "histogram"
        path, _ = QFileDialog.getSaveFileName(self, f"Export histogram as {kind.upper()}", f"{safe}.{kind}",
                                              f"{kind.upper()} image (*.{kind})")
        if path:
            self.export(path)
