"""Will it fit? The memory planner for one model: the user's GPU and workload in, core.memory_plan's answer out.

Every input change asks core.memory_plan.plan() again (it is arithmetic, instant); this panel only draws the
plan: a stacked bar against the GPUs' capacity, the verdict, one row per item with its formula, and the plain
account from core.memory_words with its terms linked to Help > Legend.
"""

from __future__ import annotations

import html
import math
import re

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QBoxLayout,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from core.checkpoint import Checkpoint
from core.gpus import CATALOG, GIB
from core.memory_plan import KV_TYPES, MemoryPlan, plan
from core.memory_words import binary_size, explain
from core.numbers import human_count
from core.planner_errors import PlannerInputError
from core.weight_bytes import normalise_precision
from gui.plain import plain_label, tooltip
from gui.slices import Slices
from gui.style import MUTED, WARNING, panel_header, quiet_table

CUSTOM_GPU = "Custom…"
DEFAULT_GPU = "H100 80GB"
DEFAULT_CONTEXT = 8192
MAX_CONTEXT_INPUT = 1 << 24
WORKLOADS = (("inference", "Inference"), ("lora", "LoRA fine-tuning"), ("full", "Full fine-tuning (Adam)"))
WEIGHT_CHOICES = (("stored", "as stored"), ("fp32", "fp32"), ("bf16", "bf16"), ("fp16", "fp16"), ("fp8", "fp8"),
                  ("int8", "int8"), ("int4", "int4"), ("Q8_0", "GGUF Q8_0"), ("Q6_K", "GGUF Q6_K"),
                  ("Q5_K_M", "GGUF Q5_K_M"), ("Q4_K_M", "GGUF Q4_K_M"), ("Q4_0", "GGUF Q4_0"),
                  ("Q3_K", "GGUF Q3_K"), ("Q2_K", "GGUF Q2_K"), ("IQ4_XS", "GGUF IQ4_XS"))
ITEM_COLORS = {"weights": "#2563eb", "KV cache": "#db2777", "activations": "#f59e0b", "LoRA adapters": "#65a30d",
               "gradients": "#7c3aed", "optimizer states": "#0891b2", "runtime overhead": "#9ca3af"}
ITEM_HELP = {
    "weights": "The model's numbers themselves.",
    "KV cache": "Keys and values of every earlier token, kept so each new token need not recompute them.",
    "activations": "What the layers compute on the way through, alive while they are needed.",
    "LoRA adapters": "The small trainable matrices LoRA adds beside the frozen model.",
    "gradients": "One per trained number: how it should change.",
    "optimizer states": "Adam's running averages (and an fp32 master copy) for every trained number.",
    "runtime overhead": "CUDA context, library workspaces and the allocator's unusable gaps.",
}
# Words in the plain account that Help > Legend explains, and the legend entry each links to.
LEGEND_TERMS = {"parameters": "parameters", "parameter": "parameters", "KV cache": "kv-cache", "keys and values":
                "kv-cache", "context": "context", "bf16": "precision", "fp16": "precision", "fp32": "precision",
                "fp8": "precision", "int8": "precision", "int4": "precision", "LoRA": "lora", "gradient": "gradients",
                "optimizer": "optimizer", "activations": "activations", "mixture of experts": "moe"}


def _item_color(name: str) -> str:
    return ITEM_COLORS.get(name, "#6b7280")


def linked_account(text: str) -> str:
    """The plain account as HTML: every character escaped, known terms linked to the legend."""
    escaped = html.escape(text)
    terms = sorted(LEGEND_TERMS, key=len, reverse=True)  # longest first: "KV cache" before "cache"
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in terms) + r")\b")
    linked = pattern.sub(lambda m: f'<a href="legend:{LEGEND_TERMS[m.group(1)]}">{m.group(1)}</a>', escaped)
    paragraphs = [p.replace("\n", "<br>") for p in linked.strip().split("\n\n")]
    return "".join(f"<p>{p}</p>" for p in paragraphs)


class StackedMemoryBar(QWidget):
    """One horizontal bar of the plan's items end to end, against a dashed line at the GPUs' capacity.

    Painted with QPainter, not a pyqtgraph plot, which cost the Memory tab 20-35 ms of UI thread when first
    shown: a bar, a GiB scale and one line need no plot."""

    BAR_TOP, BAR_HEIGHT, MARGIN = 30, 36, 10

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedHeight(104)
        self.segments: list[tuple[str, float, float]] = []  # (item, start GiB, width GiB)
        self.capacity_gib: float | None = None
        self.capacity_label = ""
        self.right_gib = 1.0  # the scale's right end

    def clear(self) -> None:
        self.segments, self.capacity_gib, self.capacity_label = [], None, ""
        self.setToolTip("")
        self.update()

    def set_plan(self, result: MemoryPlan, capacity_label: str) -> None:
        start = 0.0
        self.segments = []
        for item in result.items:
            width = item.bytes / GIB
            if width > 0:
                self.segments.append((item.name, start, width))
            start += width
        capacity = result.capacity_bytes
        self.capacity_gib = capacity / GIB if capacity else None
        self.capacity_label = capacity_label
        self.right_gib = (max(start, self.capacity_gib or 0.0) or 1.0) * 1.03
        self.setToolTip("\n".join(f"{name}: {binary_size(int(width * GIB))}" for name, _, width in self.segments))
        self.update()

    def x_of(self, gib: float) -> float:
        """Where ``gib`` falls on the widget."""
        return self.MARGIN + (self.width() - 2 * self.MARGIN) * gib / self.right_gib

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        metrics = painter.fontMetrics()
        for name, start, width in self.segments:
            left, right = self.x_of(start), self.x_of(start + width)
            painter.fillRect(QRectF(left, self.BAR_TOP, max(right - left, 1.0), self.BAR_HEIGHT),
                             QColor(_item_color(name)))
            painter.setPen(QPen(QColor("white"), 1))
            painter.drawLine(QPointF(right, self.BAR_TOP), QPointF(right, self.BAR_TOP + self.BAR_HEIGHT))
        axis_y = self.BAR_TOP + self.BAR_HEIGHT + 6
        muted = QColor(MUTED)
        painter.setPen(QPen(muted, 1))
        painter.drawLine(QPointF(self.x_of(0), axis_y), QPointF(self.x_of(self.right_gib), axis_y))
        step = _tick_step(self.right_gib)
        for k in range(int(self.right_gib / step) + 1):
            x = self.x_of(k * step)
            painter.drawLine(QPointF(x, axis_y), QPointF(x, axis_y + 4))
            text = f"{k * step:g}" + (" GiB" if k == 0 else "")
            painter.drawText(QRectF(x - 40, axis_y + 5, 80, metrics.height()), int(Qt.AlignmentFlag.AlignHCenter),
                             text)
        if self.capacity_gib is not None:
            x = self.x_of(self.capacity_gib)
            painter.setPen(QPen(QColor(WARNING), 2, Qt.PenStyle.DashLine))
            painter.drawLine(QPointF(x, 4), QPointF(x, self.BAR_TOP + self.BAR_HEIGHT + 4))
            label_w = metrics.horizontalAdvance(self.capacity_label) + 4
            left_side = x - label_w - 4 >= self.MARGIN  # the label on the side with room
            box = QRectF(x - label_w - 4 if left_side else x + 4, 4, label_w, metrics.height())
            painter.drawText(box, int(Qt.AlignmentFlag.AlignLeft), self.capacity_label)
        painter.end()


def _tick_step(right: float) -> float:
    """A 1-2-5 step giving at most about eight ticks up to ``right``."""
    raw = right / 8
    power = 10.0 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


class MemoryPanel(QScrollArea):
    """Inputs, verdict, bar, items and the plain account for one model; every figure from core.memory_plan."""

    sig_legend_requested = Signal(str)

    def __init__(self, checkpoint: Checkpoint, name: str | None = None, parent=None, sliced: bool = False) -> None:
        """``sliced``: the bar chart, the tables and the first plan come on later turns of the event loop
        (``slices``), so showing the tab never stalls the window for the whole panel."""
        super().__init__(parent)
        self.checkpoint = checkpoint
        self.name = name
        self.plan_result: MemoryPlan | None = None
        self.error = ""
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        self.setWidget(body)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(12, 8, 12, 12)
        layout.setSpacing(8)
        params = checkpoint.parameter_count
        subtitle = f"{human_count(params)} parameters ({params:,})"
        active = checkpoint.architecture.get("active_parameters")
        if isinstance(active, int) and 0 < active < params:
            subtitle += f" · {human_count(active)} active per token"
        header, _controls, self.title_label, self.subtitle_label = panel_header("Will it fit?", subtitle)
        layout.addLayout(header)
        self.body_layout = layout
        # the inputs alone cost 15-20 ms of UI thread: three slices (hardware, workload, the grid placed)
        self.slices = Slices(self, [self._make_hardware_inputs, self._make_workload_inputs, self._place_inputs,
                                    self._make_bar, self._make_below, self.recompute], sliced)

    def _place_inputs(self) -> None:
        """The inputs' grid into the panel, with the verdict lines under it."""
        self.body_layout.addWidget(self._inputs_box())
        self.verdict = plain_label("", "MidNumber")
        self.verdict.setObjectName("memory_verdict")
        self.verdict.setWordWrap(True)
        self.details = plain_label("", "Muted")
        self.details.setWordWrap(True)
        self.body_layout.addWidget(self.verdict)
        self.body_layout.addWidget(self.details)

    def _make_bar(self) -> None:
        self.bar = StackedMemoryBar()
        self.body_layout.addWidget(self.bar)

    def _make_below(self) -> None:
        layout = self.body_layout
        self.below = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        below = self.below
        below.setSpacing(12)
        self.items_table = self._items_table()
        self.notes = plain_label("", "Muted")
        self.notes.setWordWrap(True)
        left = QVBoxLayout()
        left.addWidget(self.items_table)
        left.addWidget(self.notes)
        left.addStretch(1)
        self.account = QTextBrowser(objectName="memory_account")
        self.account.setOpenLinks(False)
        self.account.anchorClicked.connect(lambda url: self.sig_legend_requested.emit(url.path()))
        self.account.setMinimumHeight(220)
        self.account.setToolTip("The same figures in words; underlined terms open Help > Legend.")
        below.addLayout(left, 3)
        below.addWidget(self.account, 2)
        layout.addLayout(below, 1)
        self._lay_out_below()

    # -- inputs ---------------------------------------------------------------
    def _make_hardware_inputs(self) -> None:
        """The GPU list, its custom size and the GPU count."""
        self.gpu_combo = QComboBox(objectName="memory_gpu")
        for gpu in CATALOG:
            self.gpu_combo.addItem(gpu.name, gpu.memory_bytes)
            if gpu.note:
                self.gpu_combo.setItemData(self.gpu_combo.count() - 1, gpu.note, Qt.ItemDataRole.ToolTipRole)
        self.gpu_combo.addItem(CUSTOM_GPU, None)
        self.gpu_combo.setCurrentText(DEFAULT_GPU)
        self.custom_gib = QDoubleSpinBox(objectName="memory_custom_gib")
        self.custom_gib.setRange(0.5, 99999)
        self.custom_gib.setDecimals(1)
        self.custom_gib.setValue(24.0)
        self.custom_gib.setSuffix(" GiB")
        self.custom_gib.setToolTip("Your GPU's memory in GiB (choose \"Custom…\" in the list)")
        self.gpus_spin = QSpinBox(objectName="memory_gpus")
        self.gpus_spin.setRange(1, 4096)
        self.gpus_spin.setToolTip("GPUs sharing the model evenly (tensor or pipeline parallel; FSDP when training)")

    def _make_workload_inputs(self) -> None:
        """Workload, optimizer, precision of weights and KV cache, context and batch."""
        self.mode_combo = QComboBox(objectName="memory_mode")
        for key, label in WORKLOADS:
            self.mode_combo.addItem(label, key)
        self.adam8bit = QCheckBox("8-bit Adam", objectName="memory_adam8bit")
        self.adam8bit.setToolTip("Keep Adam's two moments in 8 bits (1 + 1 byte per trained number) instead of fp32")
        self.weights_combo = QComboBox(objectName="memory_weights")
        for key, label in WEIGHT_CHOICES:
            normalise_precision(key)  # the planner accepts every choice offered
            self.weights_combo.addItem(label, key)
        self.weights_combo.setToolTip("How each weight is stored in memory; GGUF types at their exact bytes per "
                                      "block")
        self.kv_combo = QComboBox(objectName="memory_kv")
        for key in KV_TYPES:
            self.kv_combo.addItem(key, key)
        self.kv_combo.setToolTip("The KV cache's element type")
        self.context_spin = QSpinBox(objectName="memory_context")
        self.context_spin.setRange(1, MAX_CONTEXT_INPUT)
        self.context_spin.setGroupSeparatorShown(True)
        self.context_spin.setSingleStep(1024)
        model_context = self.checkpoint.architecture.get("context_length")
        usable = model_context if isinstance(model_context, int) and model_context > 0 else None
        self.context_spin.setValue(min(DEFAULT_CONTEXT, usable) if usable else DEFAULT_CONTEXT)
        self.context_spin.setToolTip(f"Tokens of context per sequence (the model's own: {usable:,})" if usable
                                     else "Tokens of context per sequence")
        self.batch_spin = QSpinBox(objectName="memory_batch")
        self.batch_spin.setRange(1, 65536)
        self.batch_spin.setToolTip("Sequences processed at once")

    def _inputs_box(self) -> QGroupBox:
        """The inputs made by the two slices before, in a grid; every change plans again."""
        box = QGroupBox("Your hardware and workload")
        grid = QGridLayout(box)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(6)
        for combo in (self.gpu_combo, self.mode_combo, self.weights_combo, self.kv_combo):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)  # narrow windows keep every input in view
        rows = (("GPU", self.gpu_combo, "Custom size", self.custom_gib),
                ("GPUs", self.gpus_spin, "Workload", self.mode_combo),
                ("Weights", self.weights_combo, "Optimizer", self.adam8bit),
                ("KV cache", self.kv_combo, "Batch", self.batch_spin),
                ("Context", self.context_spin, "", QWidget()))
        for r, (a, wa, b, wb) in enumerate(rows):
            grid.addWidget(QLabel(a), r, 0)
            grid.addWidget(wa, r, 1)
            grid.addWidget(QLabel(b), r, 2)
            grid.addWidget(wb, r, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        for signal in (self.gpu_combo.currentIndexChanged, self.mode_combo.currentIndexChanged,
                       self.weights_combo.currentIndexChanged, self.kv_combo.currentIndexChanged,
                       self.custom_gib.valueChanged, self.gpus_spin.valueChanged, self.context_spin.valueChanged,
                       self.batch_spin.valueChanged, self.adam8bit.toggled):
            signal.connect(self.recompute)
        return box

    def _items_table(self) -> QTableWidget:
        table = quiet_table(0, ["Item", "Memory", "Bytes", "Kind"], "memory_items")
        table.verticalHeader().setDefaultSectionSize(24)
        table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        return table

    def resizeEvent(self, event) -> None:  # noqa: N802
        """Items and account side by side when there is room, one above the other when not."""
        super().resizeEvent(event)
        self._lay_out_below()

    def _lay_out_below(self) -> None:
        if getattr(self, "below", None) is None:
            return  # a slice still to come (``slices``): it lays itself out when made
        wide = self.viewport().width() >= 820
        self.below.setDirection(QBoxLayout.Direction.LeftToRight if wide else QBoxLayout.Direction.TopToBottom)

    # -- state ----------------------------------------------------------------
    @property
    def gpu_name(self) -> str | None:
        """The catalog name of the chosen GPU; None for a custom size."""
        return None if self.gpu_combo.currentData() is None else self.gpu_combo.currentText()

    def gpu_memory_bytes(self) -> int:
        data = self.gpu_combo.currentData()
        return int(data) if data is not None else round(self.custom_gib.value() * GIB)

    def plan_arguments(self) -> dict:
        """The inputs as core.memory_plan.plan() takes them."""
        return {"gpu_memory_bytes": self.gpu_memory_bytes(), "gpus": self.gpus_spin.value(),
                "mode": self.mode_combo.currentData(), "optimizer": "adam8bit" if self.adam8bit.isChecked() else "adam",
                "weights": self.weights_combo.currentData(), "kv": self.kv_combo.currentData(),
                "context": self.context_spin.value(), "batch": self.batch_spin.value()}

    def recompute(self, *_args) -> None:
        """Ask the planner again and redraw everything from its answer."""
        slices = getattr(self, "slices", None)
        if slices is not None and slices.pending:  # an input changed before the panel is whole: its last slice
            return  # plans with the inputs as they are then
        custom = self.gpu_combo.currentData() is None
        self.custom_gib.setEnabled(custom)
        self.adam8bit.setEnabled(self.mode_combo.currentData() != "inference")
        try:
            result = plan(self.checkpoint, name=self.name, **self.plan_arguments())
        except PlannerInputError as exc:
            self.plan_result, self.error = None, str(exc)
            self.verdict.setText(f"Cannot plan this: {exc}")  # may quote a dtype from the file: plain text
            self.verdict.setStyleSheet(f"color: {WARNING};")
            self.details.setText("")
            self.items_table.setRowCount(0)
            self.bar.clear()
            self.account.setHtml("")
            self.notes.setText("")
            return
        self.plan_result, self.error = result, ""
        self._show(result)

    def card_text(self, result: MemoryPlan) -> str:
        """'2 × H100 80GB' or '1 × 24 GiB GPU'."""
        card = self.gpu_name or f"{binary_size(result.gpu_bytes or 0)} GPU"
        return f"{result.gpus} × {card}"

    def verdict_text(self, result: MemoryPlan) -> str:
        card = self.gpu_name or f"{binary_size(result.gpu_bytes or 0)} GPU"
        capacity = result.capacity_bytes or 0
        if result.fits:
            return f"Fits on {self.card_text(result)} with {binary_size(capacity - result.total_bytes)} to spare"
        if result.min_gpus:
            return f"Needs {result.min_gpus} × {card}: {binary_size(result.total_bytes)} against " \
                   f"{binary_size(capacity)} on {self.card_text(result)}"
        return f"Does not fit on any number of {card} up to 4,096 (it needs {binary_size(result.total_bytes)})"

    def details_text(self, result: MemoryPlan) -> str:
        card = self.gpu_name or f"{binary_size(result.gpu_bytes or 0)} GPU"
        if result.max_context is None:
            context = "Not even one token of context fits on these GPUs"
        else:
            context = f"Largest context that fits: {result.max_context:,} tokens"
            if result.model_context and result.max_context >= result.model_context:
                context += " (the model's whole context)"
        fewest = f"fewest GPUs: {result.min_gpus} × {card}" if result.min_gpus else "no number of these GPUs fits"
        return f"{context} · {fewest} · total {binary_size(result.total_bytes)} ({result.total_bytes:,} bytes)"

    def _show(self, result: MemoryPlan) -> None:
        self.verdict.setText(self.verdict_text(result))
        self.verdict.setStyleSheet("color: #047857;" if result.fits else f"color: {WARNING};")
        self.details.setText(self.details_text(result))
        self.bar.set_plan(result, f"{self.card_text(result)}: {binary_size(result.capacity_bytes or 0)}")
        table = self.items_table
        table.setRowCount(len(result.items))
        for r, item in enumerate(result.items):
            name = QTableWidgetItem(item.name)
            name.setData(Qt.ItemDataRole.DecorationRole, QColor(_item_color(item.name)))
            size = QTableWidgetItem(binary_size(item.bytes))
            exact = QTableWidgetItem(f"{item.bytes:,}")
            for cell in (size, exact):
                cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            kind = QTableWidgetItem("exact" if item.exact else "estimate")
            if not item.exact:
                kind.setForeground(QColor(MUTED))
            tip = tooltip(f"{ITEM_HELP.get(item.name, '')}\n{item.bytes:,} bytes = {item.formula}".strip())
            for column, cell in enumerate((name, size, exact, kind)):
                cell.setToolTip(tip)
                table.setItem(r, column, cell)
        table.setFixedHeight(28 + 24 * len(result.items))
        self.notes.setText("\n".join(result.notes))
        self.account.setHtml(linked_account(explain(result, self.gpu_name)))

    def item_bytes(self, name: str) -> int:
        """The plan's bytes for one item, as the table shows them (tests and copy)."""
        if self.plan_result is None:
            raise KeyError(name)
        return self.plan_result.item(name).bytes
