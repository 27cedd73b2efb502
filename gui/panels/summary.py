"""The model at a glance: how many parameters, where they live, how they are stored, what they cost to hold."""

from __future__ import annotations

import os

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette
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
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core import dtypes as dtype_table
from core.checkpoint import Checkpoint
from core.count_story import count_story
from core.glossary import ARCH_HELP, BITS_PER_WEIGHT_HELP, NO_BIAS_HELP, NORM_HELP
from core.memory import memory_summary
from core.number_words import GB_NOTE, bytes_both_ways, count_in_words
from core.numbers import human_bytes, human_count, percent
from core.quantization import DESCRIBED_TYPES, describe_file_type, describe_type, headline, quantization_summary
from core.taxonomy import KIND_HELP, ROLES
from gui.panels.lora import LoraBox
from gui.plain import plain_label, rich_escape, tooltip
from gui.slices import Slices
from gui.style import KIND_COLORS, quiet_table, role_color

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


class BarChart(QWidget):
    """Horizontal bars, each labelled on the left with its name, human count and share.

    Painted with QPainter, not a pyqtgraph plot: two plots cost the Summary 40 ms of UI thread at every model
    opened. The labels get the width they need first (the bars take what is left), so no width of window cuts
    a number; a panel too narrow even for the labels elides them, and the tooltip lists them whole.
    """

    ROW = 26
    GAP = 10

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels: list[str] = []
        self.values: list[int] = []
        self.colors: list[str] = []
        self.texts: list[str] = []  # the full label of each bar: name, count and share
        self.setFixedHeight(70)

    def set_bars(self, items: list[tuple[str, int, str]], tooltip: str = "") -> None:
        """items: (label, value, colour), drawn top to bottom in the given order."""
        self.labels = [i[0] for i in items]
        self.values = [i[1] for i in items]
        self.colors = [i[2] for i in items]
        total = float(sum(self.values)) or 1.0
        self.texts = [f"{label}  {human_count(value)} ({percent(value, total)})"
                      for label, value in zip(self.labels, self.values, strict=True)]
        self.setFixedHeight(max(70, self.ROW * len(items) + 16))
        tip = "\n".join(part for part in (tooltip, "\n".join(self.texts)) if part)
        self.setToolTip(tip)
        self.updateGeometry()
        self.update()

    def label_width(self) -> int:
        metrics = self.fontMetrics()
        return max((metrics.horizontalAdvance(t) for t in self.texts), default=0)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(self.label_width() + self.GAP + 120, self.height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(120, self.height())

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if not self.values:
            return
        painter = QPainter(self)
        metrics = painter.fontMetrics()
        width = self.width()
        label_w = min(self.label_width(), max(0, width - self.GAP - 40))
        bar_left = label_w + self.GAP
        span = max(1, width - bar_left - 4)
        top = max(self.values) or 1
        text_color = self.palette().color(QPalette.ColorRole.WindowText)
        y0 = (self.height() - self.ROW * len(self.values)) // 2
        for i, (text, value, color) in enumerate(zip(self.texts, self.values, self.colors, strict=True)):
            y = y0 + i * self.ROW
            painter.setPen(text_color)
            shown = metrics.elidedText(text, Qt.TextElideMode.ElideRight, label_w)
            painter.drawText(QRect(0, y, label_w, self.ROW), int(Qt.AlignmentFlag.AlignRight |
                                                                 Qt.AlignmentFlag.AlignVCenter), shown)
            bar = round(span * value / top)
            if bar > 0:
                painter.fillRect(QRect(bar_left, y + 5, bar, self.ROW - 10), QColor(color))
        painter.end()


def _table(rows: list[tuple[str, ...]], headers: tuple[str, ...], tips: list[str] | None = None) -> QTableWidget:
    table = quiet_table(len(rows), list(headers))
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


class ReflowGrid(QWidget):
    """Widgets in as many columns as fit (at most ``max_columns``): a narrow window gets fewer, never cut ones."""

    def __init__(self, widgets: list[QWidget], max_columns: int, min_column_width: int, spacing: int = 14) -> None:
        super().__init__()
        self.widgets = widgets
        self.max_columns = max_columns
        self.min_column_width = min_column_width
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(spacing)
        self.grid.setVerticalSpacing(8)
        self.columns = 0
        self._place(max_columns)

    def columns_for(self, width: int) -> int:
        return max(1, min(self.max_columns, (width + 14) // (self.min_column_width + 14)))

    def _place(self, columns: int) -> None:
        if columns == self.columns:
            return
        for w in self.widgets:
            self.grid.removeWidget(w)
        for c in range(max(self.columns, columns)):
            self.grid.setColumnStretch(c, 1 if c < columns else 0)
        for i, w in enumerate(self.widgets):
            self.grid.addWidget(w, i // columns, i % columns)
        self.columns = columns

    def add(self, widget: QWidget) -> None:
        """One more widget after the others, in the columns there are now."""
        self.widgets.append(widget)
        i = len(self.widgets) - 1
        self.grid.addWidget(widget, i // self.columns, i % self.columns)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self._place(self.columns_for(event.size().width()))
        super().resizeEvent(event)


class SummaryPanel(QScrollArea):
    """Headline numbers, charts and tables for one checkpoint; everything from core, nothing computed here.

    ``sliced=True`` (the window) builds each section on its own turn of the event loop, headline first, so
    opening a model never holds the UI thread for the whole panel; ``building``
    says whether sections are still to come and ``finish_build`` adds them all now. Built directly (tests,
    the PDF), the panel is complete when constructed.
    """

    def __init__(self, checkpoint: Checkpoint, parent=None, sliced: bool = False) -> None:
        super().__init__(parent)
        self.checkpoint = checkpoint
        self.quantization = quantization_summary(checkpoint)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        self.setWidget(body)
        self.column = QVBoxLayout(body)
        self.column.setContentsMargins(12, 8, 12, 12)
        self.column.setSpacing(8)
        self.column.addStretch(1)
        self._boxes: list[QWidget] = []
        self._metric_cells: list[QWidget] = []
        # each step at most a few ms of UI thread: the big numbers in three (27 labels), the sections' grid
        # placed before its boxes, each box added to it as it is made
        steps = [lambda: self._add(self._headline()), lambda: self._make_metrics(0, 4), lambda: self._make_metrics(4),
                 self._headline_numbers, lambda: self._add(self._count_story_box()),
                 *([lambda: self._add(LoraBox(checkpoint))] if checkpoint.lora is not None else []),
                 lambda: self._add(self._where_box()), self._add_sections,
                 *(lambda make=make: self.sections.add(make())
                   for make in (self._memory_box, self._architecture_box, self._dtype_box, self._files_box))]
        self.slices = Slices(self, steps, sliced)

    @property
    def building(self) -> bool:
        """Sections are still to be added on later turns of the event loop."""
        return self.slices.pending

    def finish_build(self) -> None:
        """Add every section still to come, now (for code that reads the panel's widgets at once)."""
        self.slices.finish()

    def _add(self, widget: QWidget) -> None:
        self.column.insertWidget(self.column.count() - 1, widget)  # above the closing stretch

    def _add_sections(self) -> None:
        """The grid of the sections below the charts; they join it one per slice (``ReflowGrid.add``)."""
        self.sections = ReflowGrid(self._boxes, max_columns=2, min_column_width=330)
        self._add(self.sections)

    # -- problems (the Findings panel reports how many) ----------------------------
    def set_problem_count(self, problems: int, tensors: int) -> None:
        """"3 problems found" or "No problems found in 1,137 tensors", under the headline."""
        if not hasattr(self, "problem_label"):  # the headline is still to be built: it shows the count then
            self._problem_count = (problems, tensors)
            return
        if problems:
            text = f"⚠ {problems:,} problem{'s' if problems != 1 else ''} found"
            self.problem_label.setObjectName("Warning")
        else:
            text = f"No problems found in {tensors:,} tensor{'s' if tensors != 1 else ''}"
            self.problem_label.setObjectName("Safety")
        self.problem_label.setText(text)
        self.problem_label.setToolTip("What the statistics flag: NaN or infinite values, all-zero tensors, extreme "
                                      "outliers, heavy tails, layers unlike their siblings, crushed quantisation. "
                                      "The Findings panel lists them.")
        self.problem_label.style().unpolish(self.problem_label)
        self.problem_label.style().polish(self.problem_label)
        self.problem_label.show()

    # -- sections -------------------------------------------------------------
    def _headline(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.setSpacing(6)
        self.storage_label = plain_label(self._storage_headline(), "MidNumber")  # dtype names come from the file
        self.storage_label.setWordWrap(True)
        self.storage_label.setToolTip(tooltip(self._storage_tip()))
        layout.addWidget(self.storage_label)
        self.problem_label = plain_label("", "Muted")
        self.problem_label.setWordWrap(True)
        self.problem_label.hide()
        layout.addWidget(self.problem_label)
        if getattr(self, "_problem_count", None) is not None:
            self.set_problem_count(*self._problem_count)
        self._headline_layout = layout
        return box

    def _make_metrics(self, start: int, stop: int | None = None) -> None:
        """The cells of the big numbers from ``start`` to ``stop`` (made in two slices, placed in a third)."""
        for i, (title, value, sub, tip) in enumerate(self._headline_cells()[start:stop], start):
            cell, big = self._metric(title, value, sub, tip, "BigNumber" if i == 0 else "MidNumber")
            self._metric_cells.append(cell)
            if i == 0:
                self.total_label = big
                self.exact_label = cell.findChild(QLabel, "Muted")

    def _headline_numbers(self) -> None:
        """The big numbers' cells, made by the slices before, in a grid under the headline."""
        widgets = self._metric_cells
        widest = max(w.sizeHint().width() for w in widgets)
        self.metrics = ReflowGrid(widgets, max_columns=4, min_column_width=max(widest, 120), spacing=24)
        self._headline_layout.addWidget(self.metrics)
        self.config_count_label = self._config_count_label()
        if self.config_count_label is not None:
            self._headline_layout.addWidget(self.config_count_label)

    def _headline_cells(self) -> list[tuple[str, str, str, str]]:
        """(title, value, subtitle, tooltip) of each big number: the total first."""
        cp = self.checkpoint
        params = cp.parameter_count
        kinds = cp.by_kind()
        total = max(cp.element_count, 1)
        cells = [("Parameters", count_in_words(params), f"{params:,} exactly",
                  "Every learned number: weights + biases + embeddings (buffers and training state excluded). "
                  "Papers round it: \"405B\" is 405.9 billion.")]
        for kind in ("weight", "bias", "embedding"):
            tip = KIND_HELP[kind] + (" " + NO_BIAS_HELP if kind == "bias" and self._no_biases() else "")
            cells.append((KIND_LABELS[kind], human_count(kinds.get(kind, 0)),
                          f"{kinds.get(kind, 0):,} · {percent(kinds.get(kind, 0), total)}", tip))
        cells.append(("Tensors", f"{len(cp.tensors):,}", f"{cp.format} · {len(cp.files)} file(s)",
                      "Named arrays of numbers in the checkpoint."))
        cells.append(("On disk", human_bytes(cp.file_bytes), bytes_both_ways(cp.file_bytes),
                      f"Total size of the checkpoint's files: {cp.file_bytes:,} bytes. {GB_NOTE}"))
        cells.append(("Buffers", human_count(kinds.get("buffer", 0)), f"{kinds.get('buffer', 0):,} values",
                      KIND_HELP["buffer"]))
        cells.append(self._bits_cell())
        if kinds.get("state"):
            cells.append((KIND_LABELS["state"], human_count(kinds["state"]),
                          f"{kinds['state']:,} values, not the model", KIND_HELP["state"]))
        return cells

    def _storage_headline(self) -> str:
        if self.quantization is not None:
            return headline(self.quantization)
        by_dtype = sorted(self.checkpoint.by_dtype().items(), key=lambda kv: -kv[1])
        if not by_dtype:
            return "No tensors"
        dt = dtype_table.lookup(by_dtype[0][0])
        bits = f" · {dt.bits_per_element:g} bits per weight" if dt is not None else ""
        return f"{by_dtype[0][0]}{' mostly' if len(by_dtype) > 1 else ''}{bits}"

    def _storage_tip(self) -> str:
        if self.quantization is not None and self.quantization["file_type"]:
            text = describe_file_type(self.quantization["file_type"]) + "\n\n"
        else:
            text = ""
        return text + BITS_PER_WEIGHT_HELP

    def _bits_cell(self) -> tuple[str, str, str, str]:
        summary = self.quantization
        if summary is not None and summary["bits_per_weight"] is not None:
            name = summary["file_type"] or "quantised"
            return ("Bits per weight", f"{summary['bits_per_weight']:.2f}", f"{name} · {len(summary['by_type'])} "
                    "types", BITS_PER_WEIGHT_HELP)
        by_dtype = sorted(self.checkpoint.by_dtype().items(), key=lambda kv: -kv[1])
        return ("Stored as", by_dtype[0][0] if by_dtype else "–", ", ".join(d for d, _ in by_dtype[1:4]) or
                "one dtype", "The dtype holding most values. " + (describe_type(by_dtype[0][0]) if by_dtype else ""))

    def _no_biases(self) -> bool:
        kinds = self.checkpoint.by_kind()
        return not kinds.get("bias") and bool(kinds.get("weight"))

    def _config_count_label(self) -> QLabel | None:
        implied = self.checkpoint.architecture.get("config_parameters")
        if type(implied) is not int:
            return None
        actual = self.checkpoint.parameter_count
        if implied == actual:
            label = plain_label(f"config.json implies {implied:,} parameters: the same as the tensors", "Muted")
        else:
            diff = actual - implied
            label = plain_label(f"⚠ config.json implies {implied:,} parameters; the tensors hold {actual:,} "
                                f"({abs(diff):,} {'more' if diff > 0 else 'fewer'})", "Warning")
        label.setWordWrap(True)
        label.setToolTip("The count the architecture in config.json implies, worked out from its sizes; a "
                         "difference means missing or extra tensors, or a config that does not describe these "
                         "weights.")
        return label

    @staticmethod
    def _metric(title: str, value: str, sub: str, tip: str, size: str) -> tuple[QWidget, QLabel]:
        cell = QWidget()
        col = QVBoxLayout(cell)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        caption = plain_label(title.upper(), "Caption")
        big = plain_label(value, size)  # dtype names come from the file
        small = plain_label(sub, "Muted")
        for w in (caption, big, small):
            col.addWidget(w)
        cell.setToolTip(tooltip(tip))
        return cell, big

    def _count_story_box(self) -> QWidget:
        """An expandable line: the total derived from the architecture with this model's numbers."""
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.setSpacing(2)
        story = count_story(self.checkpoint)
        self.count_story = story
        self.count_story_button = QToolButton(objectName="count_story_button")
        self.count_story_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.count_story_button.setArrowType(Qt.ArrowType.RightArrow)
        self.count_story_button.setCheckable(True)
        self.count_story_button.setAutoRaise(True)
        self.count_story_label = plain_label("", "Muted")
        self.count_story_label.setWordWrap(True)
        self.count_story_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.count_story_label.hide()
        if story is None:
            self.count_story_button.setText("How the count adds up: not derivable (architecture facts incomplete)")
            self.count_story_button.setEnabled(False)
            box.hide()
        else:
            mark = "" if story.matches else " (differs from the file)"
            self.count_story_button.setText(f"How the count adds up{mark}")
            self.count_story_button.setToolTip(tooltip(story.equation()))
            self.count_story_label.setText("\n".join(story.lines()))
            self.count_story_button.toggled.connect(self._show_count_story)
        layout.addWidget(self.count_story_button)
        layout.addWidget(self.count_story_label)
        return box

    def _show_count_story(self, shown: bool) -> None:
        self.count_story_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.count_story_label.setVisible(shown)

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
                                 "Parameters by the part of the network that uses them. " + NORM_HELP)
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
        tips = [f"{tip} {bytes_both_ways(mem['weights'][key])}." for key, _, tip in MEMORY_ROWS]
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
        layout.addWidget(self._units_note(mem["weights"]["stored"]))
        return box

    @staticmethod
    def _units_note(example_bytes: int) -> QLabel:
        """GiB here, GB on download pages: the same size in both, so neither looks wrong."""
        note = plain_label(f"Sizes in binary units (GiB): {bytes_both_ways(example_bytes)}.", "Muted")
        note.setWordWrap(True)
        note.setToolTip(GB_NOTE)
        return note

    def _architecture_box(self) -> QGroupBox:
        arch = self.checkpoint.architecture
        box = QGroupBox("Architecture")
        form = QFormLayout(box)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.architecture_labels: dict[str, QLabel] = {}
        for key, label in ARCH_LABELS.items():
            if key not in arch:
                continue
            value = arch[key]
            text = ("yes" if value else "no") if isinstance(value, bool) else (
                f"{value:,}" if isinstance(value, int) else str(value))
            widget = plain_label(text)  # the family is the file's own model_type
            widget.setWordWrap(True)
            widget.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            name = QLabel(label)
            if key in ARCH_HELP:
                widget.setToolTip(ARCH_HELP[key])
                name.setToolTip(ARCH_HELP[key])
            self.architecture_labels[key] = widget
            form.addRow(name, widget)
        if self.architecture_labels and self._no_biases():
            self.architecture_labels["biases"] = plain_label("none")
            name = QLabel("Biases")
            for w in (name, self.architecture_labels["biases"]):
                w.setToolTip(NO_BIAS_HELP)
            form.addRow(name, self.architecture_labels["biases"])
        if arch.get("encoder_only"):
            self.architecture_labels["encoder_only"] = plain_label("encoder only: no KV cache (it reads, it does "
                                                                   "not generate token by token)")
            self.architecture_labels["encoder_only"].setWordWrap(True)
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
            empty = QLabel("No architecture facts in this file (no config.json or GGUF metadata).")
            empty.setWordWrap(True)
            form.addRow(empty)
        return box

    def _dtype_box(self) -> QGroupBox:
        cp = self.checkpoint
        box = QGroupBox("Data types")
        layout = QVBoxLayout(box)
        total = max(cp.element_count, 1)
        nbytes: dict[str, int] = {}
        for t in cp.tensors:
            nbytes[t.dtype] = nbytes.get(t.dtype, 0) + t.nbytes
        by_dtype = sorted(cp.by_dtype().items(), key=lambda kv: -kv[1])
        rows = [(dtype, human_count(n), percent(n, total), human_bytes(nbytes.get(dtype, 0)),
                 f"{8 * nbytes.get(dtype, 0) / n:.4g}" if n else "–") for dtype, n in by_dtype]
        tips = [f"{describe_type(dtype)}\n{n:,} values in {nbytes.get(dtype, 0):,} bytes." for dtype, n in by_dtype]
        self.dtype_table = _table(rows, ("Dtype", "Values", "Share", "Bytes", "Bits/weight"), tips)
        self.dtype_table.horizontalHeaderItem(4).setToolTip(BITS_PER_WEIGHT_HELP)
        layout.addWidget(self.dtype_table)
        layout.addWidget(self._units_note(sum(nbytes.values())))
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


def legend_html() -> str:
    """The Legend's sections on architecture, norms, biases, units and quantisation (our own text, escaped)."""
    arch = "".join(f"<li><b>{rich_escape(ARCH_LABELS[k])}</b>: {rich_escape(v)}</li>" for k, v in ARCH_HELP.items()
                   if k in ARCH_LABELS)
    quants = "".join(f"<li>{rich_escape(describe_type(name))}</li>" for name in DESCRIBED_TYPES
                     if dtype_table.lookup(name) is not None)
    return (f"<h3>Architecture</h3><ul>{arch}</ul>"
            f"<p><b>Norm</b>: {rich_escape(NORM_HELP)}</p><p><b>Biases</b>: {rich_escape(NO_BIAS_HELP)}</p>"
            f"<p><b>How the count adds up</b>: embedding (vocabulary × hidden size) + layers × (attention + MLP + "
            f"norms) + final norm + output head (none when tied). The Summary works it out with the model's own "
            f"numbers.</p><p><b>GB and GiB</b>: {rich_escape(GB_NOTE)}</p>"
            f"<h3>Quantisation</h3><p>{rich_escape(BITS_PER_WEIGHT_HELP)} File types such as Q4_K_M are llama.cpp "
            f"recipes: mostly one block type, with some sensitive tensors in a larger one (S, M, L: small, medium, "
            f"large).</p><ul>{quants}</ul>")
