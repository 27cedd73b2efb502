"""How the selected tensor's (or group's) values are spread: a step histogram with markers, and its statistics.

The panel only draws a core TensorStats; deriving it (merging summaries,
computing percentiles) happens in a worker (see gui.model_view). Updates
arrive while a tensor is still being read, so the histogram fills in.

Marker labels (mean, ±σ, p1, p99) sit in a band above the tallest bar; labels
that would touch are joined into one ("−σ · mean · +σ"), so none overlap; "Fit to bulk" zooms to
p0.1-p99.9 when one outlier squeezes the rest into a single bar.

For a group (the model, a layer, a folded block) the scope control picks which values: its weight matrices
(the default: norm scales near 1.0 would otherwise stretch the axis and fill "beyond 6σ"), all values, or a
small grid of histograms, one per role, as the PDF report has (see core.histogram_scope).
"""

from __future__ import annotations

import functools
import html
import math

import numpy as np
import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFontMetrics, QGuiApplication, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.histogram_scope import MATRICES_RULE, SCOPES, RoleHistogram
from core.numbers import format_value
from core.stats_summary import PERCENTILES, TensorStats, percentile_key
from gui.plain import tooltip
from gui.plot_parts import PlotParts
from gui.slices import Slices
from gui.style import ACCENT, MUTED, panel_header

FILL = QColor(37, 99, 235, 70)
MEAN_PEN = pg.mkPen("#dc2626", width=1.6)
SIGMA_PEN = pg.mkPen("#dc2626", width=1.0, style=Qt.PenStyle.DashLine)  # 1 px: wider dashes are stroked paths
PCT_PEN = pg.mkPen("#6b7280", width=1.0, style=Qt.PenStyle.DotLine)
MARKER_DELAY_MS = 8  # a new curve's marker lines wait this long: the curve's paint and theirs on turns of their own
TABLE_DELAY_MS = 25  # the statistics table fills this long after the plot: its own turn, never the plot's paint
MARKERS = (("mean", MEAN_PEN), ("−σ", SIGMA_PEN), ("+σ", SIGMA_PEN), ("p1", PCT_PEN), ("p99", PCT_PEN))
LOG_FLOOR = -0.5  # where empty bins sit on a log count axis (a bin holding one value sits at 0 = 10^0)
LABEL_LANES = (0.97,)  # label height, as a fraction of the view: above the curve
COUNT_LABEL = "0000000"  # the widest count tick label the left axis has room for from the start (7 digits)
HEADROOM = 1.0 / 0.62  # the curve's top reaches 62% of the view height, leaving the band above for labels
BULK = ("0.1", "99.9")  # "Fit to bulk" zooms to these percentiles
SCOPE_LABELS = ("Weight matrices", "All values", "By role")  # one per core.histogram_scope.SCOPES
SCOPE_TIP = (f"Which of a group's values the histogram shows. Weight matrices (the default): {MATRICES_RULE}, "
             "so scales near 1.0 do not stretch the axis or fill \"beyond 6σ\". All values: every tensor of the "
             "group. By role: one small histogram per role (attention q/k/v/o, MLP, norms, embeddings, head). "
             "Switching re-merges the statistics already computed; nothing is read again.")


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
    if isinstance(value, float) and math.isnan(value):
        return undefined_reason(ts, key)
    return format_value(float(value))


def undefined_reason(ts: TensorStats, key: str) -> str:
    """Why a statistic has no value, in words: a NaN here is arithmetic, not a broken checkpoint."""
    try:
        from core.undefined import describe_stat  # the shared wording, where it exists
    except ImportError:
        describe_stat = None
    if describe_stat is not None:
        try:
            return str(describe_stat(ts, key))
        except (TypeError, KeyError, AttributeError, ValueError):
            pass
    if not ts.count:
        return "undefined: no finite values"
    if key in ("skewness", "kurtosis") and ts.std == 0:
        return "undefined: all values equal"
    return "undefined"


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
    sig_scope_changed = Signal(str)  # a core.histogram_scope scope, chosen by the user

    def __init__(self, parent=None, sliced: bool = False) -> None:
        """``sliced``: the plot, its markers and the statistics table come on later turns of the event loop
        (``slices``, gui/slices.py), so showing the tab never stalls the window for the whole panel (40-60 ms)."""
        super().__init__(parent)
        self.stats: TensorStats | None = None
        self.roles: list[RoleHistogram] = []  # By role: what the grid shows
        self.role_plots: list[pg.PlotItem] = []
        self.role_grid: pg.GraphicsLayoutWidget | None = None  # made the first time "By role" is shown
        self.fraction = 1.0
        self.markers: list[pg.InfiniteLine] = []  # the markers shown now, in drawing order
        self.marker_names: list[str] = []  # what each marker is ("mean", "p99"), whatever its label shows
        self._redraw_waiting = False  # new figures arrived while hidden: drawn when shown
        self._table_stats: TensorStats | None = None  # figures for the table's next turn
        self._table_timer = QTimer(self)
        self._table_timer.setSingleShot(True)
        self._table_timer.setInterval(TABLE_DELAY_MS)
        self._table_timer.timeout.connect(self._fill_waiting_table)
        self._sliced = sliced  # in the window: marker lines follow the curve a turn later (_redraw)
        self._markers_waiting: tuple[TensorStats, float, float] | None = None  # (figures, lowest, highest edge)
        self._marker_timer = QTimer(self)
        self._marker_timer.setSingleShot(True)
        self._marker_timer.setInterval(MARKER_DELAY_MS)
        self._marker_timer.timeout.connect(self._show_waiting_markers)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)

        header, _subtitle_row, self.title, self.subtitle = panel_header("Select a tensor or a group in the tree", "")
        self.title.setToolTip(self.title.text())
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.x_mode = QComboBox(objectName="distribution_x_mode")
        self.x_mode.addItems(["Values", "log10 |v|"])
        self.x_mode.setToolTip("Values: the numbers themselves. log10 |value|: their magnitudes on a log scale, "
                               "which shows tiny and huge values side by side (zeros left out).")
        self.y_mode = QComboBox(objectName="distribution_y_mode")
        self.y_mode.addItems(["Linear", "Log count"])
        self.y_mode.setToolTip("A log count axis makes rare values (tails, outliers) visible next to the bulk.")
        self.scope = QComboBox(objectName="distribution_scope")
        self.scope.addItems(SCOPE_LABELS)
        self.scope.setToolTip(SCOPE_TIP)
        self.scope.setEnabled(False)  # a single tensor has one histogram
        self.export_png = QPushButton("PNG…", objectName="distribution_export_png")
        self.export_svg = QPushButton("SVG…", objectName="distribution_export_svg")
        self.copy_button = QPushButton("Copy stats", objectName="distribution_copy")
        self.export_png.setToolTip("Save the histogram as a PNG image")
        self.export_svg.setToolTip("Save the histogram as an SVG vector image")
        self.copy_button.setToolTip("Copy every statistic to the clipboard (tab-separated, full precision)")
        self.fit_bulk = QCheckBox("Fit to bulk", objectName="distribution_fit_bulk")
        self.fit_bulk.setToolTip("Zoom to the 0.1th-99.9th percentiles, where 99.8% of the values lie: one "
                                 "outlier no longer squeezes the rest into a single bar.")
        layout.addLayout(header)
        controls = QHBoxLayout()  # a row of its own: the subtitle above keeps the whole width
        for w in (self.scope, self.x_mode, self.y_mode, self.fit_bulk):
            controls.addWidget(w)
        controls.addStretch(1)
        for w in (self.export_png, self.export_svg, self.copy_button):
            controls.addWidget(w)
        layout.addLayout(controls)
        self.pages = QStackedWidget()
        layout.addWidget(self.pages, 1)
        self._set_enabled(False)
        self._marker_items: dict[str, pg.InfiniteLine] = {}
        marker_steps = [functools.partial(self._make_marker, *MARKERS[i:i + 2]) for i in range(0, len(MARKERS), 2)]
        self._plot_parts = PlotParts()  # its ViewBox, axes and PlotItem: a slice each (gui/plot_parts.py)
        self.slices = Slices(self, [*self._plot_parts.steps(), self._make_plot, self._make_curve,
                                    self._make_axis_labels, *marker_steps,
                                    self._make_table, self._attach], sliced)

    def _make_plot(self) -> None:
        """The plot widget around its ready PlotItem (no context menu). Until ``_attach`` the plot and table
        are out of the window: a slice never shares its turn with a paint of a half-made plot."""
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.plot = self._plot_parts.widget()
        self.split.addWidget(self.plot)

    def _make_curve(self) -> None:
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        left = self.plot.getAxis("left")  # its width followed each tick label: the first counts of a selection
        left.textWidth = QFontMetrics(left.font()).horizontalAdvance(COUNT_LABEL) + 4  # ("200000") widened it, a
        left.setStyle(autoReduceTextSpace=False)  # relayout and a second paint; now it starts wide enough, only grows
        self.curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=pg.mkBrush(FILL),
                                     pen=pg.mkPen(ACCENT, width=1.0))  # 1 px: a wider pen is ~1 ms more a paint
        self.plot.addItem(self.curve)

    def _make_axis_labels(self) -> None:
        """Axis titles (each re-measures its axis: 5 ms)."""
        self._axis_labels = ("count", "value")
        self._log_y = False
        self.plot.setLabel("left", "count")
        self.plot.setLabel("bottom", "value")

    def _attach(self) -> None:
        """The made plot and table into the panel: one layout and paint, on a turn of its own."""
        self.pages.insertWidget(0, self.split)
        self.pages.setCurrentIndex(0)

    def _make_marker(self, *markers: tuple[str, QPen]) -> None:
        """Marker lines made once, hidden; a redraw moves and shows them (re-adding five items cost 8 ms)."""
        for label, pen in markers:
            item = pg.InfiniteLine(pos=0.0, angle=90, pen=pen, movable=False, label=label,
                                   labelOpts={"position": LABEL_LANES[0], "color": MUTED,
                                              "fill": (255, 255, 255, 200),
                                              "anchors": [(0.5, 0), (0.5, 0)]})  # centred, hanging down
            item.setVisible(False)
            self.plot.addItem(item, ignoreBounds=True)
            self._marker_items[label] = item

    def _make_table(self) -> None:
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
        self.split.addWidget(self.table)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 1)
        self.split.setSizes([700, 260])

        self.x_mode.currentIndexChanged.connect(self._redraw)
        self.y_mode.currentIndexChanged.connect(self._redraw)
        self.fit_bulk.toggled.connect(self._redraw)
        self.scope.currentIndexChanged.connect(lambda i: self.sig_scope_changed.emit(SCOPES[i]))
        self.plot.getViewBox().sigResized.connect(self._place_labels)
        self.plot.getViewBox().sigXRangeChanged.connect(self._place_labels)
        self.export_png.clicked.connect(lambda: self.export_dialog("png"))
        self.export_svg.clicked.connect(lambda: self.export_dialog("svg"))
        self.copy_button.clicked.connect(self.copy_statistics)

    def _ensure_role_grid(self) -> pg.GraphicsLayoutWidget:
        """The By-role grid, made when first needed: most sessions never show it."""
        if self.role_grid is None:
            self.role_grid = pg.GraphicsLayoutWidget()
            self.role_grid.setObjectName("distribution_role_grid")
            self.pages.addWidget(self.role_grid)
        return self.role_grid

    @property
    def drawing(self) -> bool:
        """The statistics table waits for its turn of the event loop (``finish_drawing`` fills it now)."""
        return self._table_timer.isActive() or self._marker_timer.isActive()

    def finish_drawing(self) -> None:
        """Everything drawn now, hidden or not (for code that reads the panel at once: tests, export)."""
        self.slices.finish()
        self._fill_waiting_table()
        if self._redraw_waiting:
            self._redraw(force=True)
        self._show_waiting_markers()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if self._redraw_waiting and not self.slices.pending:
            self._redraw()

    # -- state ----------------------------------------------------------------
    def clear(self, message: str = "Select a tensor or a group in the tree", subtitle: str = "") -> None:
        self.stats = None
        self.title.setText(message)
        self.title.setToolTip(tooltip(message))
        self.subtitle.setText(subtitle)
        self.subtitle.setToolTip(tooltip(subtitle))
        self.curve.setData([], [])
        self._clear_markers()
        self._table_timer.stop()
        self._table_stats = None
        for r in range(self.table.rowCount()):  # the rows stay (made once), their values go
            self.table.item(r, 1).setText("")
        self._set_roles([])
        self.pages.setCurrentIndex(0)
        self._redraw_waiting = False
        self._set_enabled(False)

    def show_pending(self, title: str, subtitle: str) -> None:
        """A new selection: keep nothing of the old one, say what is coming."""
        self.clear(title, subtitle or "reading values…")

    def set_stats(self, ts: TensorStats, title: str, subtitle: str, fraction: float = 1.0) -> None:
        """Draw ``ts``; ``fraction`` < 1 marks a histogram still filling in."""
        self._set_roles([])
        self.pages.setCurrentIndex(0)
        self._show_header(ts, title, subtitle, fraction)
        self.table.setHorizontalHeaderLabels(["Statistic", "Value" if fraction >= 1 else "Value (partial)"])
        self._fill_table_soon(ts)
        self._redraw()
        self._set_enabled(fraction >= 1)

    def set_roles(self, roles: list[RoleHistogram], ts: TensorStats, title: str, subtitle: str,
                  fraction: float = 1.0) -> None:
        """By role: a small histogram per role; ``ts`` (all of the roles' values) is what Copy stats copies."""
        self._show_header(ts, title, subtitle, fraction)
        self._fill_table_soon(ts)
        self._clear_markers()
        self.curve.setData([], [])
        self._set_roles(roles)
        self.pages.setCurrentWidget(self._ensure_role_grid())
        self._redraw()
        self._set_enabled(fraction >= 1)

    def set_scope(self, scope: str, enabled: bool) -> None:
        """Show the view's scope without emitting a change; ``enabled`` for group selections only."""
        self.scope.blockSignals(True)
        self.scope.setCurrentIndex(SCOPES.index(scope))
        self.scope.blockSignals(False)
        self.scope.setEnabled(enabled)

    def _show_header(self, ts: TensorStats, title: str, subtitle: str, fraction: float) -> None:
        self.stats = ts
        self.fraction = fraction
        self.title.setText(title)
        self.title.setToolTip(tooltip(title))  # tensor names from the file: shown, never rendered
        note = " · partial" if fraction < 1 and "partial" not in subtitle and "reading" not in subtitle else ""
        exact = "" if ts.exact else " · beyond-6σ estimated"
        self.subtitle.setText(f"{subtitle}{note}{exact}")
        self.subtitle.setToolTip(tooltip(self.subtitle.text()))  # the whole line, when the panel cuts it

    def _set_roles(self, roles: list[RoleHistogram]) -> None:
        """One small plot per role, 3 columns (4 beyond nine roles) as the report's grid; rebuilt per update."""
        if [r.role for r in roles] == [r.role for r in self.roles] and len(self.role_plots) == len(roles):
            for role, item in zip(roles, self.role_plots, strict=True):  # filling in: same plots, new counts
                item.setTitle(self.role_title(role), size="9pt")
            self.roles = roles
            return
        self.roles = roles
        if self.role_grid is None and not roles:
            self.role_plots = []
            return
        self._ensure_role_grid().clear()
        self.role_plots = []
        columns = 3 if len(roles) <= 9 else 4
        for i, role in enumerate(roles):
            item = self.role_grid.addPlot(row=i // columns, col=i % columns)
            item.setMenuEnabled(False)
            item.hideButtons()
            item.setTitle(self.role_title(role), size="9pt")  # roles are core's words; escaped all the same
            item.getAxis("bottom").enableAutoSIPrefix(False)
            item.showGrid(x=True, y=True, alpha=0.15)
            item.addItem(pg.PlotDataItem(stepMode="center", fillLevel=0, brush=pg.mkBrush(FILL),
                                         pen=pg.mkPen(ACCENT, width=1.0)))
            self.role_plots.append(item)

    @staticmethod
    def role_title(role: RoleHistogram) -> str:
        noun = "tensor" if role.tensors == 1 else "tensors"
        return html.escape(f"{role.role} · {role.tensors:,} {noun}")

    def _set_enabled(self, on: bool) -> None:
        for w in (self.export_png, self.export_svg, self.copy_button):
            w.setEnabled(on)

    def _fill_table_soon(self, ts: TensorStats) -> None:
        """The table on the next turn of the event loop (33 rows, 5-10 ms), so the plot's update is a turn of its
        own; figures arriving faster than that replace the waiting ones."""
        self._table_stats = ts
        self._table_timer.start()

    def _fill_waiting_table(self) -> None:
        self._table_timer.stop()
        ts, self._table_stats = self._table_stats, None
        if ts is not None:
            self._fill_table(ts)

    def _fill_table(self, ts: TensorStats) -> None:
        """Rows made once, values rewritten: a setItem per row cost 0.2 ms each (the view re-lays out per item)."""
        rows = STAT_ROWS + PCT_ROWS
        if self.table.rowCount() != len(rows):
            self.table.setRowCount(len(rows))
            for r, (_key, label, tip) in enumerate(rows):
                name = QTableWidgetItem(label)
                name.setToolTip(tip)
                value = QTableWidgetItem("")
                value.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, 0, name)
                self.table.setItem(r, 1, value)
        for r, (key, _label, tip) in enumerate(rows):
            value = self.table.item(r, 1)
            value.setText(stat_text(ts, key))
            raw = stat_value(ts, key)
            value.setToolTip(f"{raw!r}\n{tip}" if not isinstance(raw, str) else tip)
            alarm = key in ("nan", "pos_inf", "neg_inf") and raw
            value.setForeground(QColor("#dc2626") if alarm else self.table.palette().text().color())

    def table_text(self, label: str) -> str:
        """The value shown in the statistics table for a row label (for tests and copy)."""
        self._fill_waiting_table()
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() == label:
                return self.table.item(r, 1).text()
        raise KeyError(label)

    # -- drawing --------------------------------------------------------------
    def _clear_markers(self) -> None:
        self._marker_timer.stop()
        self._markers_waiting = None
        for line in self.markers:
            line.setVisible(False)
        self.markers = []
        self.marker_names = []

    def _set_axes(self, log_x: bool, log_y: bool) -> None:
        """Axis titles and the count axis's log mode, touched only when they change (each costs a relayout)."""
        labels = ("count (log)" if log_y else "count", "log10 |value|" if log_x else "value")
        if labels != self._axis_labels:
            self._axis_labels = labels
            self.plot.setLabel("left", labels[0])
            self.plot.setLabel("bottom", labels[1])
        if log_y != self._log_y:
            self._log_y = log_y
            self.plot.getPlotItem().getAxis("left").setLogMode(False, log_y)

    def _redraw(self, *_args, force: bool = False) -> None:
        """Draw the current figures; while the panel is hidden (another tab shown) only note that they wait."""
        if not force and not self.isVisible():
            self._redraw_waiting = self.stats is not None
            return
        self._redraw_waiting = False
        ts = self.stats
        self._clear_markers()
        if ts is None:
            return
        if self.role_grid is not None and self.pages.currentWidget() is self.role_grid:
            self._redraw_roles()
            return
        log_x = self.x_mode.currentIndex() == 1
        edges, counts = (ts.log_edges, ts.log_counts) if log_x else (ts.hist_edges, ts.hist_counts)
        log_y = self.y_mode.currentIndex() == 1
        if len(edges) < 2:
            self.curve.setData([], [])
            self._set_axes(log_x, False)
            return
        edges = np.asarray(edges, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        if edges[-1] == edges[0]:  # one distinct value: give the single bin a visible width
            half = abs(edges[0]) * 0.01 or 0.5
            edges = np.linspace(edges[0] - half, edges[0] + half, len(edges))
        x_lo, x_hi = self._x_range(ts, edges, log_x)
        inside = (edges[1:] >= x_lo) & (edges[:-1] <= x_hi)  # bins at least partly in view
        if log_y:
            y = np.full_like(counts, LOG_FLOOR)
            np.log10(counts, out=y, where=counts > 0)
            self.curve.setData(edges, y, stepMode="center", fillLevel=LOG_FLOOR)
            top = float(y[inside].max()) if inside.any() else float(y.max())
            top = LOG_FLOOR + (top + 0.3 - LOG_FLOOR) * HEADROOM
            self.plot.setYRange(LOG_FLOOR, top, padding=0)  # before the axis reads it as 10^y
            self._set_axes(log_x, True)
        else:
            self._set_axes(log_x, False)
            self.curve.setData(edges, counts, stepMode="center", fillLevel=0)
            top = float(counts[inside].max()) if inside.any() else float(counts.max())
            self.plot.setYRange(0, (top or 1.0) * HEADROOM, padding=0)
        self.plot.setXRange(x_lo, x_hi, padding=0.02)
        if not log_x:
            self._markers_waiting = (ts, float(edges[0]), float(edges[-1]))
            if self._sliced and not force:  # the curve and axes paint on this turn, the markers on the next
                self._marker_timer.start()
            else:
                self._show_waiting_markers()

    def _show_waiting_markers(self) -> None:
        """The marker lines and their labels for the figures last drawn: moved, shown and placed (with the
        curve's own first paint they made one 25-30 ms turn of a new selection)."""
        self._marker_timer.stop()
        if self._markers_waiting is None:
            return
        ts, lo, hi = self._markers_waiting
        self._markers_waiting = None
        self._add_value_markers(ts, lo, hi)
        self._place_labels()

    def _redraw_roles(self) -> None:
        """Each role's histogram with the panel's axes (values or log10 |v|, linear or log count, fit to bulk)."""
        log_x, log_y = self.x_mode.currentIndex() == 1, self.y_mode.currentIndex() == 1
        for role, item in zip(self.roles, self.role_plots, strict=True):
            ts = role.stats
            edges, counts = (ts.log_edges, ts.log_counts) if log_x else (ts.hist_edges, ts.hist_counts)
            curve = item.listDataItems()[0]
            if len(edges) < 2:
                curve.setData([], [])
                continue
            edges = np.asarray(edges, dtype=np.float64)
            counts = np.asarray(counts, dtype=np.float64)
            if edges[-1] == edges[0]:
                half = abs(edges[0]) * 0.01 or 0.5
                edges = np.linspace(edges[0] - half, edges[0] + half, len(edges))
            if log_y:
                y = np.full_like(counts, LOG_FLOOR)
                np.log10(counts, out=y, where=counts > 0)
                curve.setData(edges, y, stepMode="center", fillLevel=LOG_FLOOR)
            else:
                curve.setData(edges, counts, stepMode="center", fillLevel=0)
            item.getAxis("left").setLogMode(False, log_y)
            item.setXRange(*self._x_range(ts, edges, log_x), padding=0.02)
            item.enableAutoRange(axis="y")

    def _x_range(self, ts: TensorStats, edges: np.ndarray, log_x: bool) -> tuple[float, float]:
        """The whole histogram, or with "Fit to bulk" the p0.1-p99.9 range (values only, when it is wider than 0)."""
        lo, hi = float(edges[0]), float(edges[-1])
        if self.fit_bulk.isChecked() and not log_x:
            b_lo, b_hi = (ts.percentiles.get(k, math.nan) for k in BULK)
            if math.isfinite(b_lo) and math.isfinite(b_hi) and b_hi > b_lo:
                margin = 0.05 * (b_hi - b_lo)
                return max(lo, b_lo - margin), min(hi, b_hi + margin)
        return lo, hi

    def _add_value_markers(self, ts: TensorStats, lo: float, hi: float) -> None:
        """Move the made marker lines to this histogram's mean, ±σ, p1 and p99; those outside it stay hidden."""
        where = {"mean": ts.mean, "−σ": ts.mean - ts.std, "+σ": ts.mean + ts.std,
                 "p1": ts.percentiles.get("1", math.nan), "p99": ts.percentiles.get("99", math.nan)}
        for label, _pen in MARKERS:
            x = float(where[label])
            if not math.isfinite(x) or not lo <= x <= hi:
                continue
            item = self._marker_items[label]
            item.setValue(x)
            item.setVisible(True)
            self.markers.append(item)
            self.marker_names.append(label)

    def _place_labels(self, *_args) -> None:
        """One row of labels above the curve: markers whose labels would touch share one ("−σ · mean"); a label
        at the plot's edge is slid inwards (its anchor moves along the text) rather than cut."""
        if not self.markers:
            return
        view = self.plot.getViewBox()
        (x0, x1), _ = view.viewRange()
        width = view.width() or 600.0
        scale = width / (x1 - x0) if x1 > x0 else 1.0
        metrics = QFontMetrics(self.markers[0].label.textItem.font())
        order = sorted(range(len(self.markers)), key=lambda i: float(self.markers[i].value()))
        clusters = [[i] for i in order]

        def extent(cluster: list[int]) -> tuple[float, float, str, float]:
            """(left, right, text, anchor along the text) in view pixels, slid inside the view where it fits."""
            text = " · ".join(self.marker_names[i] for i in cluster)
            anchor = self.markers[cluster[len(cluster) // 2]]
            centre = (float(anchor.value()) - x0) * scale
            half = (metrics.horizontalAdvance(text) + 12) / 2
            left = centre - half
            if 2 * half <= width:
                left = min(max(left, 0.0), width - 2 * half)
            return left, left + 2 * half, text, min(max((centre - left) / (2 * half), 0.0), 1.0)

        merged = True
        while merged and len(clusters) > 1:
            merged = False
            for k in range(len(clusters) - 1):
                if extent(clusters[k])[1] + 2 > extent(clusters[k + 1])[0]:
                    clusters[k:k + 2] = [clusters[k] + clusters[k + 1]]
                    merged = True
                    break
        for cluster in clusters:
            _, _, text, along = extent(cluster)
            for i in cluster:
                label = self.markers[i].label
                shown = i == cluster[len(cluster) // 2]
                self.markers[i].setZValue(5 if shown else 2)  # a shown label above every other marker line
                label.setFormat(text if shown else "")
                label.anchors = [(along, 0), (along, 0)]
                label.setVisible(shown)
                label.setPosition(LABEL_LANES[0])

    def shown_labels(self) -> list[str]:
        """The marker labels as drawn (shared ones joined by " · "), for tests."""
        self._show_waiting_markers()  # a reader gets the current markers at once
        return [m.label.format for m in self.markers if m.label.isVisible()]

    def marker_positions(self) -> dict[str, float]:
        self._show_waiting_markers()
        return {name: float(m.value()) for name, m in zip(self.marker_names, self.markers, strict=True)}

    # -- export ---------------------------------------------------------------
    def copy_statistics(self) -> str:
        if self.stats is None:
            return ""
        text = stats_as_text(self.stats)
        QGuiApplication.clipboard().setText(text)
        return text

    def export(self, path: str) -> None:
        """Write the plot to ``path``: SVG if it ends in .svg, else a PNG."""
        self.finish_drawing()
        by_role = self.role_grid is not None and self.pages.currentWidget() is self.role_grid
        item = self.role_grid.ci if by_role else self.plot.getPlotItem()
        if path.lower().endswith(".svg"):
            self._export_svg(path)
        else:
            exporter = ImageExporter(item)
            exporter.parameters()["width"] = max(800, int(self.pages.width()) * 2)
            exporter.export(path)
        self.sig_export_done.emit(path)

    def _export_svg(self, path: str) -> None:
        """Vector output through Qt's own SVG generator (pyqtgraph's SVG exporter trips over Qt 6 paths)."""
        from PySide6.QtCore import QRect, QSize
        from PySide6.QtGui import QPainter
        from PySide6.QtSvg import QSvgGenerator

        shown = self.role_grid if self.role_grid is not None and self.pages.currentWidget() is self.role_grid \
            else self.plot
        size = QSize(max(shown.width(), 640), max(shown.height(), 400))
        generator = QSvgGenerator()
        generator.setFileName(path)
        generator.setSize(size)
        generator.setViewBox(QRect(0, 0, size.width(), size.height()))
        generator.setTitle(self.stats.name if self.stats is not None else "histogram")
        generator.setDescription("Weightscope histogram")
        painter = QPainter(generator)
        try:
            shown.render(painter, QRect(0, 0, size.width(), size.height()))
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
