"""The model at a glance: how many parameters, where they live, how they are stored, what they cost to hold."""

from __future__ import annotations

import os

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.checkpoint import Checkpoint
from core.memory import memory_summary
from core.numbers import count_with_exact, human_bytes, human_count, percent
from core.taxonomy import KIND_HELP, ROLES
from gui.plain import plain_label, tooltip
from gui.style import KIND_COLORS, role_color

KIND_LABELS = {"weight": "Weights", "bias": "Biases", "embedding": "Embeddings", "buffer": "Buffers",
               "state": "Training state"}
ARCH_LABELS = {
    "family": "Family", "layers": "Layers (blocks)", "hidden_size": "Hidden size", "heads": "Attention heads",
    "kv_heads": "Key/value heads", "head_dim": "Head dimension", "intermediate_size": "MLP width",
    "vocab_size": "Vocabulary", "context_length": "Context length", "tied_embeddings": "Tied input/output embeddings",
    "source": "Facts from",
}
MEMORY_ROWS = (
    ("stored", "As stored", "The learned tensors at the dtype they have in the file (quantised blocks included)."),
    ("fp32", "fp32", "4 bytes per parameter: full precision, as used for training."),
    ("bf16", "bf16 / fp16", "2 bytes per parameter: how most models are shipped and run on GPUs."),
    ("int8", "int8", "1 byte per parameter: 8-bit quantisation."),
    ("int4", "int4", "Half a byte per parameter: 4-bit quantisation (scales add a few percent in practice)."),
)


class BarChart(pg.PlotWidget):
    """Horizontal bars, each labelled on the left with its name, human count and share.

    The numbers sit in the axis labels, not after the bars, so no width of window can cut them off.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.getPlotItem().hideAxis("bottom")
        self.getPlotItem().getAxis("left").setStyle(tickLength=0)
        self.setBackground(None)
        self.labels: list[str] = []
        self.values: list[int] = []
        self.texts: list[str] = []  # the full label of each bar: name, count and share

    def set_bars(self, items: list[tuple[str, int, str]], tooltip: str = "") -> None:
        """items: (label, value, colour), drawn top to bottom in the given order."""
        self.clear()
        self.labels = [i[0] for i in items]
        self.values = [i[1] for i in items]
        n = len(items)
        if not n:
            return
        ys = np.arange(n)[::-1].astype(float)
        widths = np.array(self.values, dtype=float)
        brushes = [pg.mkBrush(QColor(c)) for _, _, c in items]
        self.addItem(pg.BarGraphItem(x0=np.zeros(n), y=ys, height=0.62, width=widths, brushes=brushes,
                                     pens=[pg.mkPen(None)] * n))
        total = float(widths.sum()) or 1.0
        self.texts = [f"{label}  {human_count(value)} ({percent(value, total)})"
                      for label, value in zip(self.labels, self.values, strict=True)]
        self.getPlotItem().getAxis("left").setTicks([list(zip(ys.tolist(), self.texts, strict=True))])
        self.setXRange(0, float(widths.max()) or 1.0, padding=0.02)
        self.setYRange(-0.6, n - 0.4, padding=0)
        self.setFixedHeight(max(70, 26 * n + 16))
        if tooltip:
            self.setToolTip(tooltip)


def _table(rows: list[tuple[str, ...]], headers: tuple[str, ...], tips: list[str] | None = None) -> QTableWidget:
    table = QTableWidget(len(rows), len(headers))
    table.setHorizontalHeaderLabels(list(headers))
    table.verticalHeader().hide()
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setShowGrid(False)
    table.setAlternatingRowColors(True)
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if c > 0:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if tips:
                item.setToolTip(tooltip(tips[r]))
            table.setItem(r, c, item)
    header = table.horizontalHeader()
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for c in range(1, len(headers)):
        header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
    table.verticalHeader().setDefaultSectionSize(24)
    table.setFixedHeight(28 + 24 * len(rows))
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return table


class SummaryPanel(QScrollArea):
    """Headline numbers, charts and tables for one checkpoint; everything from core, nothing computed here."""

    def __init__(self, checkpoint: Checkpoint, parent=None) -> None:
        super().__init__(parent)
        self.checkpoint = checkpoint
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        self.setWidget(body)
        grid = QGridLayout(body)
        grid.setContentsMargins(12, 8, 12, 12)
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(6)
        grid.addWidget(self._headline(), 0, 0, 1, 2)
        grid.addWidget(self._where_box(), 1, 0, 1, 2)
        grid.addWidget(self._memory_box(), 2, 0)
        grid.addWidget(self._architecture_box(), 2, 1)
        grid.addWidget(self._dtype_box(), 3, 0)
        grid.addWidget(self._files_box(), 3, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        grid.setRowStretch(4, 1)

    # -- sections -------------------------------------------------------------
    def _headline(self) -> QWidget:
        cp = self.checkpoint
        box = QWidget()
        grid = QGridLayout(box)
        grid.setContentsMargins(4, 0, 4, 0)
        grid.setHorizontalSpacing(24)
        grid.setVerticalSpacing(8)
        params = cp.parameter_count
        kinds = cp.by_kind()
        total = max(cp.element_count, 1)
        cells = [("Parameters", human_count(params), f"{params:,} exactly",
                  "Every learned number: weights + biases + embeddings (buffers and training state excluded).")]
        for kind in ("weight", "bias", "embedding"):
            cells.append((KIND_LABELS[kind], human_count(kinds.get(kind, 0)),
                          f"{kinds.get(kind, 0):,} · {percent(kinds.get(kind, 0), total)}", KIND_HELP[kind]))
        cells.append(("Tensors", f"{len(cp.tensors):,}", f"{cp.format} · {len(cp.files)} file(s)",
                      "Named arrays of numbers in the checkpoint."))
        cells.append(("On disk", human_bytes(cp.file_bytes), f"{cp.file_bytes:,} bytes",
                      "Total size of the checkpoint's files."))
        cells.append(("Buffers", human_count(kinds.get("buffer", 0)), f"{kinds.get('buffer', 0):,} values",
                      KIND_HELP["buffer"]))
        dtypes = sorted(cp.by_dtype().items(), key=lambda kv: -kv[1])
        cells.append(("Stored as", dtypes[0][0] if dtypes else "–",
                      ", ".join(d for d, _ in dtypes[1:4]) or "one dtype", "The dtype holding most values."))
        if kinds.get("state"):
            cells.append((KIND_LABELS["state"], human_count(kinds["state"]),
                          f"{kinds['state']:,} values, not the model", KIND_HELP["state"]))
        for i, (title, value, sub, tip) in enumerate(cells):
            label = self._metric(grid, i // 4, i % 4, title, value, sub, tip)
            if i == 0:
                self.total_label = label
        for c in range(4):
            grid.setColumnStretch(c, 1)
        return box

    @staticmethod
    def _metric(grid: QGridLayout, row: int, column: int, title: str, value: str, sub: str, tip: str) -> QLabel:
        cell = QWidget()
        col = QVBoxLayout(cell)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        caption = plain_label(title.upper(), "Caption")
        big = plain_label(value, "BigNumber" if row == 0 else "MidNumber")  # dtype names come from the file
        small = plain_label(sub, "Muted")
        for w in (caption, big, small):
            col.addWidget(w)
        cell.setToolTip(tip)
        grid.addWidget(cell, row, column)
        return big

    def _where_box(self) -> QGroupBox:
        cp = self.checkpoint
        box = QGroupBox("Where the parameters live")
        row = QHBoxLayout(box)
        kinds = cp.by_kind()
        self.kind_chart = BarChart()
        self.kind_chart.set_bars([(KIND_LABELS[k], v, KIND_COLORS[k]) for k, v in kinds.items() if v],
                                 "Values by kind. " + " ".join(KIND_HELP.values()))
        by_role = cp.by_role()
        order = {r: i for i, r in enumerate(ROLES)}
        roles = sorted(((r, v) for r, v in by_role.items() if v), key=lambda rv: order.get(rv[0], 99))
        self.role_chart = BarChart()
        self.role_chart.set_bars([(r, v, role_color(r)) for r, v in roles],
                                 "Parameters by the part of the network that uses them.")
        for title, chart in (("By kind", self.kind_chart), ("By role", self.role_chart)):
            col = QVBoxLayout()
            label = QLabel(title)
            label.setObjectName("Muted")
            col.addWidget(label)
            col.addWidget(chart)
            col.addStretch(1)
            row.addLayout(col, 1)
        return box

    def _memory_box(self) -> QGroupBox:
        mem = memory_summary(self.checkpoint)
        box = QGroupBox("Memory for the weights")
        layout = QVBoxLayout(box)
        rows = [(label, human_bytes(mem["weights"][key])) for key, label, _ in MEMORY_ROWS]
        tips = [tip for _, _, tip in MEMORY_ROWS]
        rows.append(("Training with Adam", human_bytes(mem["training_adam"])))
        tips.append("About 16 bytes per parameter: weights, gradients and two optimizer moments, before activations.")
        if "kv_cache_per_token_fp16" in mem:
            rows.append(("KV cache per token (fp16)", human_bytes(mem["kv_cache_per_token_fp16"])))
            tips.append("Keys and values kept for every token of context: layers × 2 × KV heads × head size × 2 B.")
        if "kv_cache_full_context_fp16" in mem:
            rows.append(("KV cache at full context", human_bytes(mem["kv_cache_full_context_fp16"])))
            tips.append("The KV cache for one sequence as long as the model's context length.")
        self.memory_table = _table(rows, ("Precision", "Bytes"), tips)
        layout.addWidget(self.memory_table)
        return box

    def _architecture_box(self) -> QGroupBox:
        arch = self.checkpoint.architecture
        box = QGroupBox("Architecture")
        form = QFormLayout(box)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        self.architecture_labels: dict[str, QLabel] = {}
        for key, label in ARCH_LABELS.items():
            if key not in arch:
                continue
            value = arch[key]
            text = ("yes" if value else "no") if isinstance(value, bool) else (
                f"{value:,}" if isinstance(value, int) else str(value))
            widget = plain_label(text)  # the family is the file's own model_type
            widget.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.architecture_labels[key] = widget
            form.addRow(label, widget)
        if arch.get("encoder_only"):
            self.architecture_labels["encoder_only"] = plain_label("encoder only: no KV cache (it reads, it does "
                                                                   "not generate token by token)")
            form.addRow("Kind of model", self.architecture_labels["encoder_only"])
        self.contradiction_labels: list[QLabel] = []
        for claim in arch.get("contradictions", []):
            label = plain_label(f"⚠ {claim}; the tensors' figure is used", "Warning")  # config.json is file text
            label.setWordWrap(True)
            label.setToolTip(tooltip("config.json beside the weights says something the tensors contradict. "
                                     "Counts, memory and KV cache use what the tensors show."))
            self.contradiction_labels.append(label)
            form.addRow(label)
        if not self.architecture_labels:
            form.addRow(QLabel("No architecture facts in this file (no config.json or GGUF metadata)."))
        return box

    def _dtype_box(self) -> QGroupBox:
        cp = self.checkpoint
        box = QGroupBox("Data types")
        layout = QVBoxLayout(box)
        total = max(cp.element_count, 1)
        by_dtype = sorted(cp.by_dtype().items(), key=lambda kv: -kv[1])
        rows = [(dtype, count_with_exact(n), percent(n, total)) for dtype, n in by_dtype]
        self.dtype_table = _table(rows, ("Dtype", "Values", "Share"))
        layout.addWidget(self.dtype_table)
        layout.addStretch(1)  # top-aligned when the Files box beside it grows with warnings
        return box

    def _files_box(self) -> QGroupBox:
        cp = self.checkpoint
        box = QGroupBox("Files")
        layout = QVBoxLayout(box)
        shown = cp.files[:12]
        rows = [(os.path.basename(f.path), human_bytes(f.size)) for f in shown]
        if len(cp.files) > len(shown):
            rest = cp.files[len(shown):]
            rows.append((f"… and {len(rest)} more", human_bytes(sum(f.size for f in rest))))
        self.files_table = _table(rows, ("File", "Size"), [f.path for f in shown] + [""] * (len(rows) - len(shown)))
        layout.addWidget(self.files_table)
        self.safety_label = plain_label(f"How it was read: {cp.safety}", "Safety")
        self.safety_label.setWordWrap(True)
        layout.addWidget(self.safety_label)
        self.warning_labels: list[QLabel] = []
        for warning in cp.warnings:
            label = plain_label(f"⚠ {warning}", "Warning")
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.warning_labels.append(label)
            layout.addWidget(label)
        return box
