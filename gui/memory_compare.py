"""Tools > Compare Memory: several models side by side, as a table and a grouped bar chart.

The figures are core.memory_plan.compare()'s; this window picks the models (open tabs and reference models,
by checkbox) and draws the rows. With nothing open it starts on the three Llama 3.1 sizes, the first thing a
learner should see: how parameters turn into bytes, KV cache and GPUs.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.checkpoint import Checkpoint
from core.errors import CheckpointError
from core.memory_plan import KV_TYPES, compare
from core.memory_side_by_side import side_by_side_caption, side_by_side_rows
from core.planner_errors import PlannerInputError
from gui.plain import bounded, plain_label, tooltip
from gui.references import reference_label, reference_list
from gui.style import SERIES_COLORS, WARNING

DEFAULT_NAMES = ("llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b")
DEFAULT_CONTEXT = 8192
CHART_PRECISIONS = ("fp32", "bf16", "fp8", "int4")
LOG_FLOOR_GIB = 0.01  # the chart's log axis starts here


class ModelChoice:
    """One checkbox of the list: an open tab's checkpoint, or a reference model opened on first use."""

    def __init__(self, key: str, title: str, checkpoint: Checkpoint | None = None, path: str = "") -> None:
        self.key, self.title, self.path = key, title, path
        self._checkpoint = checkpoint

    def checkpoint(self) -> Checkpoint:
        if self._checkpoint is None:
            from core.formats import open_checkpoint

            self._checkpoint = open_checkpoint(self.path)  # a bundled config.json: instant, no weights
        return self._checkpoint


class GroupedBars(pg.PlotWidget):
    """Bars grouped by model, one bar per series, on a log axis of GiB so 8B and 405B share one chart."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setBackground(None)
        self.showGrid(y=True, alpha=0.15)
        self.setLabel("left", "GiB (log scale)")
        self.legend = self.addLegend(offset=(8, 4), labelTextColor="#1f2937", brush=(255, 255, 255, 220), colCount=5)
        self.heights: dict[str, list[float]] = {}

    def set_groups(self, groups: list[str], series: list[tuple[str, list[int]]]) -> None:
        """groups: model titles; series: (label, bytes per model)."""
        self.clear()
        self.legend.clear()
        self.heights = {}
        n, m = len(groups), len(series)
        if not n or not m:
            return
        width = 0.8 / m
        floor = math.log10(LOG_FLOOR_GIB)
        for i, (label, values) in enumerate(series):
            gib = [max(v / (1 << 30), LOG_FLOOR_GIB) for v in values]
            heights = [math.log10(g) - floor for g in gib]
            self.heights[label] = gib
            xs = np.arange(n) - 0.4 + width * (i + 0.5)
            item = pg.BarGraphItem(x=xs, y0=np.zeros(n), height=np.array(heights), width=width * 0.92,
                                   brush=pg.mkBrush(QColor(SERIES_COLORS[i % len(SERIES_COLORS)])),
                                   pen=pg.mkPen(None), name=label)
            self.addItem(item)  # named items join the legend by themselves
        top = max(max(h) for h in ([math.log10(g) - floor for g in v] for v in self.heights.values()))
        decades = range(0, math.ceil(top) + 1)
        self.getAxis("left").setTicks([[(d, _gib_tick(10 ** (d + floor))) for d in decades]])
        self.getAxis("bottom").setTicks([[(i, bounded(g, 28)) for i, g in enumerate(groups)]])
        self.setXRange(-0.6, n - 0.4, padding=0)
        self.setYRange(0, math.ceil(top) + 1.6, padding=0)  # room above for the legend


def _gib_tick(gib: float) -> str:
    return f"{gib:,.0f}" if gib >= 1 else f"{gib:g}"


class MemoryCompareWindow(QWidget):
    """Pick models with checkboxes; the table and chart follow every change."""

    sig_legend_requested = Signal(str)

    def __init__(self, views: list, names: list[str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("memory_compare")
        self.setWindowTitle("Compare memory")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.choices: list[ModelChoice] = []
        self.rows: list[dict] = []
        self.error = ""
        self.unknown: list[str] = []  # names asked for that are neither open nor reference models
        layout = QHBoxLayout(self)
        split = QSplitter(Qt.Orientation.Horizontal)
        layout.addWidget(split)
        split.addWidget(self._picker(views))
        split.addWidget(self._results())
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 4)
        split.setSizes([270, 1000])
        self._preselect(views, names)
        self.resize(1280, 820)
        self.refresh()

    # -- layout ---------------------------------------------------------------
    def _picker(self, views: list) -> QWidget:
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(plain_label("Models", "PanelTitle"))
        self.model_list = QListWidget(objectName="compare_models")
        for view in views:
            self._add_choice(ModelChoice(f"view:{os.path.abspath(view.path)}", view.title, view.checkpoint),
                             f"{bounded(view.title, 40)} (open tab)", view.path)
        for ref in reference_list():
            self._add_choice(ModelChoice(ref.name, ref.title, path=ref.path), reference_label(ref),
                             f"{ref.title}: {ref.parameters:,} parameters, from its config.json")
        self.model_list.itemChanged.connect(lambda _item: self.refresh())
        col.addWidget(self.model_list, 1)
        form = QHBoxLayout()
        form.addWidget(QLabel("Context"))
        self.context_spin = QSpinBox(objectName="compare_context")
        self.context_spin.setRange(1, 1 << 24)
        self.context_spin.setGroupSeparatorShown(True)
        self.context_spin.setSingleStep(1024)
        self.context_spin.setValue(DEFAULT_CONTEXT)
        self.context_spin.setToolTip("Tokens of context for the KV cache rows and the GPU verdicts")
        form.addWidget(self.context_spin, 1)
        col.addLayout(form)
        form = QHBoxLayout()
        form.addWidget(QLabel("KV cache"))
        self.kv_combo = QComboBox(objectName="compare_kv")
        self.kv_combo.addItems(list(KV_TYPES))
        form.addWidget(self.kv_combo, 1)
        col.addLayout(form)
        self.context_spin.valueChanged.connect(self.refresh)
        self.kv_combo.currentIndexChanged.connect(self.refresh)
        return box

    def _add_choice(self, choice: ModelChoice, label: str, tip: str) -> None:
        item = QListWidgetItem(label)
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Unchecked)
        item.setToolTip(tooltip(tip))
        item.setData(Qt.ItemDataRole.UserRole, len(self.choices))
        self.choices.append(choice)
        self.model_list.addItem(item)

    def _results(self) -> QWidget:
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(0, 0, 0, 0)
        self.title = plain_label("Side by side", "PanelTitle")
        self.subtitle = plain_label("", "Muted")
        self.subtitle.setWordWrap(True)
        col.addWidget(self.title)
        col.addWidget(self.subtitle)
        split = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, 0, objectName="compare_table")
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setDefaultAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.chart = GroupedBars()
        self.chart.setMinimumHeight(180)
        split.addWidget(self.table)
        split.addWidget(self.chart)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([600, 260])
        col.addWidget(split, 1)
        return box

    def _preselect(self, views: list, names: list[str] | None) -> None:
        wanted = list(names) if names else ([] if views else list(DEFAULT_NAMES))
        if not names and views:
            wanted = [f"view:{os.path.abspath(v.path)}" for v in views]
        keys = {c.key: i for i, c in enumerate(self.choices)}
        self.model_list.blockSignals(True)
        for name in wanted:
            index = keys.get(name) if name in keys else keys.get(f"view:{os.path.abspath(name)}")
            if index is None:
                index = keys.get(name.strip().lower())
            if index is None:
                self.unknown.append(name)
                continue
            self.model_list.item(index).setCheckState(Qt.CheckState.Checked)
        self.model_list.blockSignals(False)

    # -- state ----------------------------------------------------------------
    def selected(self) -> list[ModelChoice]:
        return [self.choices[i] for i in range(self.model_list.count())
                if self.model_list.item(i).checkState() == Qt.CheckState.Checked]

    def refresh(self, *_args) -> None:
        chosen = self.selected()
        try:
            checkpoints = [c.checkpoint() for c in chosen]
            self.rows = compare(checkpoints, context=self.context_spin.value(), kv=self.kv_combo.currentText(),
                                names=[c.title for c in chosen])
            self.error = ""
        except (PlannerInputError, CheckpointError) as exc:
            self.rows, self.error = [], str(exc)
        if self.error:
            self.subtitle.setText(f"Cannot compare: {self.error}")
            self.subtitle.setStyleSheet(f"color: {WARNING};")
        elif self.unknown:
            self.subtitle.setStyleSheet(f"color: {WARNING};")
            self.subtitle.setText("Not an open model or a reference model: " + ", ".join(repr(n) for n in self.unknown))
        else:
            self.subtitle.setStyleSheet("")
            self.subtitle.setText(f"{len(chosen)} model(s) · {side_by_side_caption(self.rows)}" if chosen
                                  else "Tick models on the left to compare them.")
        self._fill_table()
        self._fill_chart()

    def table_rows(self) -> list[tuple[str, list[str], str]]:
        """(row label, one cell per model, tooltip): what the table shows, as text."""
        return side_by_side_rows(self.rows)

    def _fill_table(self) -> None:
        rows = self.table_rows()
        self.table.clear()
        self.table.setColumnCount(len(self.rows))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels([bounded(r["model"], 40) for r in self.rows])
        self.table.setVerticalHeaderLabels([label for label, _, _ in rows])
        for r, (_label, cells, tip) in enumerate(rows):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if text == "no":
                    item.setForeground(QColor(WARNING))
                elif text == "yes":
                    item.setForeground(QColor("#047857"))
                if tip:
                    item.setToolTip(tooltip(tip))
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)

    def _fill_chart(self) -> None:
        groups = [r["model"] for r in self.rows]
        series = [(f"weights {p}", [r["bytes"][p] for r in self.rows]) for p in CHART_PRECISIONS]
        series.append((f"KV cache at {self.context_spin.value():,}", [r["kv_bytes_at_context"] or 0
                                                                       for r in self.rows]))
        self.chart.set_groups(groups, series)


def compare_screenshot(window, args, finish) -> None:
    """``--screenshot OUT --compare-memory A B C``: the side-by-side view of those models, saved as a PNG."""
    compare_window = MemoryCompareWindow(window.views(), args.compare_memory, window)
    if compare_window.unknown:
        print(f"error: no open model or reference model named {compare_window.unknown[0]!r}", file=sys.stderr)
        compare_window.close()
        finish(2)
        return
    compare_window.resize(args.width, args.height)
    compare_window.show()
    window.memory_compare = compare_window
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    if not compare_window.grab().save(args.screenshot, "PNG"):
        print(f"error: cannot write {args.screenshot}", file=sys.stderr)
        finish(2)
        return
    finish(0)
