"""The Summary's "LoRA adapter" section: the adapter's facts and one row per adapted module.

Figures come from core.lora (r x r matrices, never the full update); file-derived text (module names, the
base model's name, target modules) is shown as plain text.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGroupBox, QHeaderView, QTableWidgetItem, QVBoxLayout, QWidget

from core.checkpoint import Checkpoint
from core.lora import LoraDescription, LoraUpdate, measure
from core.numbers import format_value, human_count
from gui.plain import plain_label, tooltip
from gui.style import quiet_table

# Factors of at most this many elements in all are measured when the panel is built (the sample: 14 K);
# larger adapters show their ranks and scales, and say where the figures are.
MEASURE_LIMIT = 8 << 20
MEASURE_MODULES = 4096  # Llama 3.1 405B with all seven projections adapted has 882 modules
TOP_VALUES = 3
ROWS = 500

LORA_HELP = ("A LoRA adapter stores a low-rank update B·A for each adapted module; it is added to the frozen base "
             "weight W, so the fine-tuned model runs with W + scale·B·A. A is r × inputs, B is outputs × r, "
             "r the rank.")
SCALE_HELP = "scale = lora_alpha / r (with rsLoRA, lora_alpha / √r): how strongly B·A is added to W."
HEADER_TIPS = (
    "The module of the base model that the adapter changes.",
    "Rank r: the update B·A has at most r independent directions.",
    "lora_alpha from adapter_config.json (per-module alpha_pattern honoured); unknown without the config.",
    SCALE_HELP,
    "‖ΔW‖_F: the Frobenius norm (root of the sum of squares) of the update ΔW = scale·B·A, computed from r × r "
    "matrices without forming ΔW.",
    "The largest singular values of ΔW: how much of the update lies along each direction. One large value "
    "and the rest small means the fine-tune moved this matrix in essentially one direction.",
)


class LoraBox(QGroupBox):
    """Rank, alpha, scale, ‖ΔW‖_F and top singular values of every module of a LoRA adapter."""

    def __init__(self, checkpoint: Checkpoint, parent: QWidget | None = None) -> None:
        super().__init__("LoRA adapter", parent)
        self.setObjectName("LoraBox")
        self.setToolTip(tooltip(LORA_HELP))
        description: LoraDescription = checkpoint.lora
        layout = QVBoxLayout(self)
        self.facts_label = plain_label(_facts(description), "LoraFacts")
        self.facts_label.setWordWrap(True)
        self.facts_label.setToolTip(tooltip(f"{LORA_HELP}\n{SCALE_HELP}"))
        layout.addWidget(self.facts_label)
        for note in description.notes:
            label = plain_label(f"Note: {note}", "LoraNote")
            label.setWordWrap(True)
            layout.addWidget(label)
        factor_elements = description.parameters
        if factor_elements <= MEASURE_LIMIT and len(description.modules) <= MEASURE_MODULES:
            self.updates = measure(checkpoint, description)
        else:
            self.updates = [LoraUpdate(m, None, (), "not measured in the app") for m in description.modules]
            label = plain_label(f"{len(description.modules):,} modules with {factor_elements:,} values in their "
                                "factors: more than the app measures while it opens a file. `main.py info ADAPTER "
                                "--json` measures every update.", "LoraNote")
            label.setWordWrap(True)
            layout.addWidget(label)
        self.table = _module_table(self.updates[:ROWS])
        layout.addWidget(self.table)
        if len(self.updates) > ROWS:
            layout.addWidget(plain_label(f"… and {len(self.updates) - ROWS:,} more modules", "LoraNote"))


def _facts(d: LoraDescription) -> str:
    targets = ", ".join(d.target_modules) if isinstance(d.target_modules, list) else d.target_modules
    alpha = "unknown" if d.alpha is None else format_value(float(d.alpha))
    rule = "lora_alpha / √r (rsLoRA)" if d.use_rslora else "lora_alpha / r"
    return (f"Base model: {d.base_model or 'not named'}\n"
            f"Targets: {targets or 'none'}\n"
            f"Rank r {d.r if d.r is not None else 'unknown'}, lora_alpha {alpha}, scale = {rule}\n"
            f"{len(d.modules):,} modules, {human_count(d.parameters)} adapter parameters ({d.parameters:,})")


def _module_table(updates: list[LoraUpdate]):  # -> QTableWidget
    headers = ["Module", "r", "alpha", "scale", "‖ΔW‖_F", "Top singular values"]
    table = quiet_table(len(updates), headers, "LoraTable")
    for c, tip in enumerate(HEADER_TIPS):
        table.horizontalHeaderItem(c).setToolTip(tooltip(tip))
    for row, update in enumerate(updates):
        m = update.module
        values = ", ".join(format_value(v) for v in update.singular_values[:TOP_VALUES])
        if len(update.singular_values) > TOP_VALUES:
            values += ", …"
        cells = [m.name, str(m.r), "?" if m.alpha is None else format_value(float(m.alpha)),
                 format_value(m.scale), "–" if update.delta_fro is None else format_value(update.delta_fro),
                 values or (update.why_not or "–")]
        share = ", ".join(f"{100 * s:.1f}%" for s in update.energy_share[:TOP_VALUES])
        tip = (f"{m.name}\nlora_A: {m.a.name} {list(m.a.shape)}\nlora_B: {m.b.name} {list(m.b.shape)}\n"
               f"ΔW = {format_value(m.scale)} · B·A" + (f"\nEnergy share of the top directions: {share}" if share
                                                        else "") + (f"\n{update.why_not}" if update.why_not else ""))
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if 0 < column < 5:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setToolTip(tooltip(tip))
            table.setItem(row, column, item)
    header = table.horizontalHeader()
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for c in range(1, len(headers)):
        header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
    table.verticalHeader().setDefaultSectionSize(24)
    table.setFixedHeight(28 + 24 * min(len(updates), 16))
    return table
