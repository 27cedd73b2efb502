"""The Summary's "LoRA adapter" section: the adapter's facts and one row per adapted module.

Figures come from core.lora (r x r matrices, never the full update); file-derived text (module names, the
base model's name, target modules) is shown as plain text. "Compare with base…" reads the base model in a
worker (gui.lora_base) and adds the relative update ‖ΔW‖/‖W‖ as a column and a depth profile.
"""

from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QMenu,
    QProgressBar,
    QPushButton,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.checkpoint import Checkpoint
from core.lora import BaseMatch, LoraDescription, LoraUpdate, depth_profile, measure
from core.numbers import format_value, human_count, percent
from core.report_sections import BaseFacts
from gui.lora_base import NOT_MEASURED_IN_APP, BaseComparison, BaseProgress, base_job
from gui.lora_plots import RELATIVE_HELP, LoraDepthPlot
from gui.plain import plain_label, tooltip
from gui.style import quiet_table
from gui.workers import JobSlot

# Factors of at most this many elements in all are measured when the panel is built (the sample: 14 K);
# larger adapters show their ranks and scales, and say where the figures are.
MEASURE_LIMIT = 8 << 20
MEASURE_MODULES = 4096  # Llama 3.1 405B with all seven projections adapted has 882 modules
TOP_VALUES = 3
ROWS = 500
COL_DELTA = 4
COL_RELATIVE = 5  # inserted once the adapter has been compared with its base model
FILE_FILTER = "Models (*.safetensors *.gguf *.bin *.pt *.pth *.ckpt *.json);;All files (*)"

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
    """Rank, alpha, scale, ‖ΔW‖_F and top singular values of every module of a LoRA adapter; compared with the
    base model on request, ‖ΔW‖/‖W‖ per module and by layer."""

    sig_base_done = Signal(str)  # the comparison's end state: "done", "failed" or "cancelled"

    def __init__(self, checkpoint: Checkpoint, parent: QWidget | None = None) -> None:
        super().__init__("LoRA adapter", parent)
        self.setObjectName("LoraBox")
        self.setToolTip(tooltip(LORA_HELP))
        self.checkpoint = checkpoint
        description: LoraDescription = checkpoint.lora
        self.description = description
        self.base_state = "idle"  # idle | running | done | cancelled | failed
        self.base_path = ""
        self.base_error: BaseException | None = None
        self.matches: list[BaseMatch] | None = None
        self.compared_base: BaseFacts | None = None  # the base model of ``matches`` (a later run may be cancelled)
        self.base_job = JobSlot("lora base", self)
        layout = QVBoxLayout(self)
        layout.addLayout(self._base_bar())
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
            self.updates = [LoraUpdate(m, None, (), NOT_MEASURED_IN_APP) for m in description.modules]
            label = plain_label(f"{len(description.modules):,} modules with {factor_elements:,} values in their "
                                "factors: more than the app measures while it opens a file. `main.py info ADAPTER "
                                "--json` measures every update.", "LoraNote")
            label.setWordWrap(True)
            layout.addWidget(label)
        self.table = _module_table(self.updates[:ROWS])
        layout.addWidget(self.table)
        if len(self.updates) > ROWS:
            layout.addWidget(plain_label(f"… and {len(self.updates) - ROWS:,} more modules", "LoraNote"))
        self.profile_plot: LoraDepthPlot | None = None  # made when a comparison finishes

    # ------------------------------------------------------------------ compare with base
    def _base_bar(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        self.base_button = QPushButton("Compare with base…", objectName="LoraBaseButton")
        self.base_button.setToolTip(tooltip("Choose the base model this adapter was trained on (a file or a model "
                                            "folder) to see how big each module's update is next to its weight: "
                                            f"{RELATIVE_HELP}"))
        menu = QMenu(self.base_button)
        menu.addAction("Base model file…", lambda: self.choose_base(folder=False)).setObjectName("LoraBaseFile")
        menu.addAction("Base model folder…", lambda: self.choose_base(folder=True)).setObjectName("LoraBaseFolder")
        self.base_button.setMenu(menu)
        bar.addWidget(self.base_button)
        self.base_progress = QProgressBar(objectName="LoraBaseProgress")
        self.base_progress.setRange(0, 1000)
        self.base_progress.setMaximumWidth(180)
        self.base_progress.hide()
        bar.addWidget(self.base_progress)
        self.base_cancel = QPushButton("Cancel", objectName="LoraBaseCancel")
        self.base_cancel.setToolTip("Stop reading the base model")
        self.base_cancel.clicked.connect(self.cancel_base)
        self.base_cancel.hide()
        bar.addWidget(self.base_cancel)
        self.base_label = plain_label("", "LoraBaseState")
        self.base_label.setWordWrap(True)
        bar.addWidget(self.base_label, 1)
        return bar

    def choose_base(self, folder: bool = False) -> None:
        """Ask for the base model (a file or a folder) and compare with it."""
        start = os.path.dirname(os.path.abspath(self.checkpoint.path))
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Base model folder", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Base model", start, FILE_FILTER)
        if path:
            self.compare_with_base(path)

    def compare_with_base(self, path: str) -> None:
        """Measure ‖W‖ of every adapted module's base weight in ``path`` in a worker; replaces an earlier run."""
        self.base_path = os.path.abspath(os.fspath(path))
        self.base_error = None
        self.base_state = "running"
        self.base_progress.setValue(0)
        self.base_progress.show()
        self.base_cancel.show()
        self._say(f"Reading the base model {self.base_path}…")
        self.base_job.start(base_job(self.checkpoint, list(self.updates), self.base_path),
                            on_yield=self._base_progress, on_return=self._base_done, on_error=self._base_failed,
                            on_abort=lambda: self._base_ended("cancelled"))

    def cancel_base(self) -> None:
        """Stop reading the base model; figures of an earlier comparison stay."""
        if self.base_state == "running":
            self.base_job.cancel()
            self._base_ended("cancelled")

    def report_part(self) -> tuple[list[LoraUpdate], list[BaseMatch] | None, BaseFacts | None, str | None]:
        """For File > Export Report: the updates as measured here, the last finished comparison with a base model
        (matches and base, or None), and the line saying a comparison that has not finished is left out."""
        matches = list(self.matches) if self.matches is not None else None
        why = {"running": "is still running", "cancelled": "was cancelled", "failed": "failed"}.get(self.base_state)
        note = None if why is None else \
            f"The comparison with the base model {os.path.basename(self.base_path)} {why}: it is not in this report."
        return list(self.updates), matches, self.compared_base if matches is not None else None, note

    @property
    def base_busy(self) -> bool:
        return self.base_job.busy

    def _base_progress(self, progress: BaseProgress) -> None:
        self.base_progress.setValue(round(1000 * progress.fraction))
        if progress.module:
            self._say(f"Reading the base weight of {progress.module} ({progress.done + 1:,} of {progress.total:,})")

    def _base_done(self, comparison: BaseComparison) -> None:
        matches = self.matches = comparison.matches
        self.compared_base = BaseFacts(self.base_path, comparison.base_parameters)
        self.updates[: len(matches)] = [m.update for m in matches]  # modules measured by the job, if any
        self._show_matches(matches)
        compared = sum(1 for m in matches if m.relative_update is not None)
        base_parameters = comparison.base_parameters
        share = f"; adapter parameters {percent(self.description.parameters, base_parameters)} of the base " \
                f"model's {base_parameters:,}" if base_parameters else ""
        self._base_ended("done", f"Compared with {self.base_path}: {compared:,} of {len(matches):,} modules"
                                 f"{share}")

    def _base_failed(self, exc: BaseException) -> None:
        from gui.errors import reason, show_error

        self.base_error = exc
        self._base_ended("failed", f"Comparison with the base model failed: {reason(exc, 'reading the base model')}")
        if getattr(self.window(), "interactive", True):
            show_error(self.window(), "Could not compare with the base model", exc, self.base_path,
                       context="comparing the adapter with its base model")

    def _base_ended(self, state: str, text: str = "") -> None:
        if self.base_state != "running":
            return
        self.base_state = state
        self.base_progress.hide()
        self.base_cancel.hide()
        self._say(text or "Cancelled: nothing was compared")
        self.sig_base_done.emit(state)

    def _say(self, text: str) -> None:
        self.base_label.setText(text)
        self.base_label.setToolTip(tooltip(text))

    def _show_matches(self, matches: list[BaseMatch]) -> None:
        """The relative-update column (after ‖ΔW‖_F) and the depth profile below the table."""
        table = self.table
        if table.horizontalHeaderItem(COL_RELATIVE).text() != "Relative update":
            table.insertColumn(COL_RELATIVE)
            header = QTableWidgetItem("Relative update")
            header.setToolTip(tooltip(RELATIVE_HELP))
            table.setHorizontalHeaderItem(COL_RELATIVE, header)
            table.horizontalHeader().setSectionResizeMode(COL_RELATIVE, QHeaderView.ResizeMode.ResizeToContents)
        for row, match in enumerate(matches[: table.rowCount()]):
            update = match.update
            if update.delta_fro is not None:
                table.item(row, COL_DELTA).setText(format_value(update.delta_fro))
            item = QTableWidgetItem("–" if match.relative_update is None else format_value(match.relative_update))
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setToolTip(tooltip(_match_tip(match)))
            table.setItem(row, COL_RELATIVE, item)
        rows = depth_profile(matches)
        if self.profile_plot is None and rows:
            self.profile_plot = LoraDepthPlot()
            self.layout().addWidget(self.profile_plot)
        if self.profile_plot is not None:
            self.profile_plot.set_profile(rows)
            self.profile_plot.setVisible(bool(rows))


def compare_adapter_with_base(view, path: str) -> LoraBox:
    """File > Compare With… on an adapter's tab (a gui.model_view.ModelView): its Summary's LoRA section, shown
    and scrolled to, compares the adapter with the base model at ``path``."""
    summary = view.summary_tab.get()
    view.tabs.setCurrentWidget(view.summary_tab)
    box = summary.findChild(LoraBox, "LoraBox")
    box.compare_with_base(path)
    scroll_to(summary, box)
    return box


def scroll_to(summary, box: LoraBox) -> None:
    """Scroll the Summary (a QScrollArea) so that the LoRA section starts at its top."""
    from PySide6.QtCore import QPoint

    summary.widget().layout().activate()
    summary.verticalScrollBar().setValue(box.mapTo(summary.widget(), QPoint(0, 0)).y() - 8)


def _match_tip(match: BaseMatch) -> str:
    name = match.update.module.name
    if match.relative_update is None:
        why = match.why_not or match.update.why_not or "the update was not measured"
        return f"{name}\nNo relative update: {why}"
    base = match.base
    return (f"{name}\n{RELATIVE_HELP}\n‖ΔW‖_F {format_value(match.update.delta_fro)} / ‖W‖_F "
            f"{format_value(match.base_fro)} = {format_value(match.relative_update)}\nBase weight: {base.name} "
            f"{list(base.shape)} {base.dtype}")


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
