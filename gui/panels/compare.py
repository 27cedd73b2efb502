"""The Compare tab: what changed between this tab's model (A) and another (B).

The comparison (core.diff.compare) runs in a worker; the worker only hands over progress, and a timer
turns the live result into table rows, header figures and the depth profile a few times a second, so the
table fills while the comparison runs and the UI thread never waits. Selecting a row draws |B−A| of that
tensor (core.diff_heatmap, in a second worker); clicking a point of the depth profile selects its row.
B stays open while the tab lives (the heatmap reads it) and is closed once no worker reads it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.checkpoint import Checkpoint
from core.diff import DiffResult, DiffSums, metrics
from core.numbers import format_value, human_bytes
from gui.compare_plots import ChangeProfilePlot, DiffHeatmapView
from gui.compare_table import COL_RANK, COL_REL, COL_SNR, CompareTableModel
from gui.elided import ElidedLabel
from gui.plain import plain_label, tooltip
from gui.progress_text import Throughput, progress_text
from gui.style import quiet_table
from gui.workers import JobSlot

TICK_MS = 200
PROFILE_EVERY_S = 1.0  # the depth profile is redrawn at most this often while rows arrive

FIGURE_HELP = {
    "rel_change": "Relative change = ‖B−A‖ / ‖A‖ over every compared value: 0 means unchanged, 0.01 means a 1% "
                  "nudge, 1 a change as large as the weights themselves.",
    "cosine": "Cosine similarity of all of A's values with all of B's: 1 means B points the same way as A; a "
              "fine-tune stays above 0.99, an unrelated model is near 0.",
    "identical": "Share of values whose bits are exactly the same in A and B: 100% for frozen layers, near 0% "
                 "after any training or quantisation.",
    "snr_db": "Signal-to-noise ratio of the quantised side, 10·log10(‖signal‖² / ‖B−A‖²): every 10 dB is ten "
              "times less noise; 8-bit quantisation gives about 40 dB, 4-bit about 20 dB.",
}


@dataclass
class OpenB:
    """What a comparison's worker opened: B, and the alignment the heatmap reuses. Closed by the panel."""

    checkpoint: Checkpoint | None = None
    pairs: dict = field(default_factory=dict)  # A's name -> AlignedPair, filled when a heatmap first needs it


def figures_text(figures: dict) -> dict[str, str]:
    """The whole-model figures a person reads first, in words (FIGURE_HELP explains each); SNR only where a
    side is quantised."""
    out = {"rel_change": f"relative change {format_value(figures['rel_change'])}",
           "cosine": f"cosine {_cosine_text(figures['cosine'])}",
           "identical": f"{_percent(figures['identical_fraction'])} identical"}
    if not math.isnan(figures["snr_db"]):
        out["snr_db"] = f"SNR {_db(figures['snr_db'])}"
    return out


def _cosine_text(value: float) -> str:
    if math.isnan(value):
        return "undefined"
    return "1 (same direction)" if value == 1 else f"{value:.6f}".rstrip("0")


def _percent(fraction: float) -> str:
    """A share that never rounds to 0% or 100% unless it is exactly that (a frozen model is 100%, not almost)."""
    if math.isnan(fraction):
        return "—"
    value = 100 * fraction
    if value in (0, 100):
        return f"{value:.0f}%"
    text = f"{value:.4g}"
    return "<0.01%" if float(text) == 0 else ">99.99%" if float(text) == 100 else f"{text}%"


def _db(value: float) -> str:
    return "∞ dB (no noise)" if math.isinf(value) and value > 0 else f"{value:.1f} dB"


def _finite_or_low(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def counts_text(result: DiffResult, compared: int) -> str:
    return (f"{compared:,} pair{'s' if compared != 1 else ''} compared, {len(result.only_in_a):,} only in A, "
            f"{len(result.only_in_b):,} only in B, {len(result.mismatched):,} mismatched")


class ComparePanel(QWidget):
    """The comparison of ``checkpoint`` (A, this tab's model) with a model B chosen later (``start``)."""

    sig_changed = Signal()  # progress or state: the status bar reads status_text / progress_fraction
    sig_error = Signal(str, object, str)  # (dialog title, exception, what we were doing)

    def __init__(self, checkpoint: Checkpoint, a_path: str, device: str = "auto",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compare_panel")
        self.checkpoint = checkpoint
        self.device = device  # where the Gram matrices of B−A are computed when the rank is asked for
        self.a_path = a_path
        self.b_path = ""
        self.state = "idle"  # idle | running | done | cancelled | failed
        self.result: DiffResult | None = None
        self.progress = None  # the latest core.diff.DiffProgress
        self.model_sums: DiffSums | None = None
        self._merged = 0  # pairs of result.tensors merged into model_sums so far
        self._profile_time = 0.0
        self.meter = Throughput()
        self.job = JobSlot("compare", self)
        self.heatmap_job = JobSlot("compare heatmap", self)
        self.profile_job = JobSlot("compare profile", self)  # reads no file: merges sums
        self._open_b: OpenB | None = None
        self._to_close: list[tuple[OpenB, list]] = []  # B checkpoints waiting for their workers to stop
        self._stopping: list = []  # cancelled workers finishing their current chunk (they still read A and B)
        self.ticker = QTimer(self)
        self.ticker.setInterval(TICK_MS)
        self.ticker.timeout.connect(self._tick)
        self._build_ui()

    # ------------------------------------------------------------------ layout
    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.setSpacing(3)
        top = QHBoxLayout()
        self.title = plain_label("Compare", "PanelTitle")
        top.addWidget(self.title)
        top.addStretch(1)
        self.rank_box = QCheckBox("Rank of each change", objectName="compare_rank")
        self.rank_box.setToolTip("Also the top singular values of B−A for every matrix and the rank that holds 90% "
                                 "of its energy (a LoRA-style fine-tune shows a small rank). Slower: it compares "
                                 "again.")
        self.rank_box.toggled.connect(self._rank_toggled)
        top.addWidget(self.rank_box)
        self.cancel_button = QPushButton("Cancel", objectName="compare_cancel")
        self.cancel_button.setToolTip("Stop comparing (pairs already compared stay in the table)")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        top.addWidget(self.cancel_button)
        layout.addLayout(top)
        self.a_label = ElidedLabel("", "compare_a")
        self.b_label = ElidedLabel("", "compare_b")
        layout.addWidget(self.a_label)
        layout.addWidget(self.b_label)
        self.counts = plain_label("", "compare_counts")
        layout.addWidget(self.counts)
        figures = QHBoxLayout()
        self.figure_labels: dict[str, QLabel] = {}
        for key in ("rel_change", "cosine", "identical", "snr_db"):
            label = plain_label("", "MidNumber")
            label.setObjectName(f"compare_{key}")
            label.setStyleSheet("font-size: 15px; font-weight: 600;")
            label.setToolTip(FIGURE_HELP[key])
            self.figure_labels[key] = label
            figures.addWidget(label)
            figures.addSpacing(14)
        figures.addStretch(1)
        layout.addLayout(figures)
        self.state_label = plain_label("Choose File > Compare With… to compare this model with another.", "Muted")
        layout.addWidget(self.state_label)

        self.lists = QTabWidget(objectName="compare_lists")
        self.lists.setDocumentMode(True)
        self.table_model = CompareTableModel(self)
        self.table = QTableView(objectName="compare_table")
        self.table.setModel(self.table_model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_REL, Qt.SortOrder.DescendingOrder)  # the most changed first, as they arrive
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        for column, width in enumerate((270, 58, 58, 102, 76, 80, 76, 84, 60, 70)):
            header.resizeSection(column, width)
        self.table.setColumnHidden(COL_RANK, True)
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        self.only_a = QListWidget(objectName="compare_only_a")
        self.only_b = QListWidget(objectName="compare_only_b")
        self.mismatched = quiet_table(0, ["A", "B", "A shape · dtype", "B shape · dtype", "Reason"],
                                      "compare_mismatched")
        self.mismatched.horizontalHeader().setStretchLastSection(True)
        for widget, label in ((self.table, "Compared"), (self.only_a, "Only in A"), (self.only_b, "Only in B"),
                              (self.mismatched, "Mismatched")):
            self.lists.addTab(widget, label)

        plots = QSplitter(Qt.Orientation.Horizontal)
        self.depth = ChangeProfilePlot()
        self.depth.sig_points_clicked.connect(self._point_clicked)
        self.heat = DiffHeatmapView()
        plots.addWidget(self.depth)
        plots.addWidget(self.heat)
        plots.setSizes([520, 480])

        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(self.lists)
        body.addWidget(plots)
        body.setSizes([330, 300])
        layout.addWidget(body, 1)

    # ------------------------------------------------------------------ running
    def start(self, b_path: str) -> None:
        """Compare A with the model at ``b_path`` (a file or a folder), replacing any earlier comparison."""
        from core.diff import compare
        from core.formats import open_checkpoint
        from gui.priority import lower_thread_priority

        self._stop_jobs()
        self.b_path = b_path
        self.result, self.progress, self.model_sums, self._merged = None, None, None, 0
        self.table_model.reset()
        self.heat.clear("Select a row to see where its values changed")
        self.a_label.set_full_text(f"A: {self.a_path}")
        self.b_label.set_full_text(f"B: {b_path}")
        self.counts.setText("Opening B…")
        for label in self.figure_labels.values():
            label.setText("")
        opened = self._open_b = OpenB()
        checkpoint, rank, device = self.checkpoint, self.rank_box.isChecked(), self.device
        self.table.setColumnHidden(COL_RANK, not rank)

        def job(stop):
            from core.diff_cache import DiffCache

            lower_thread_priority()
            opened.checkpoint = open_checkpoint(b_path)
            return (yield from compare(checkpoint, opened.checkpoint, should_stop=stop, rank=rank, device=device,
                                       cache=DiffCache.default()))

        self.state = "running"
        self.meter.reset()
        self.job.start(job, on_yield=self._progress, on_return=self._done, on_error=self._failed,
                       on_abort=self._aborted)
        self.cancel_button.show()
        self.ticker.start()
        self._say("Comparing…")
        self.sig_changed.emit()

    def _rank_toggled(self, _checked: bool) -> None:
        if self.b_path:
            self.start(self.b_path)

    def _progress(self, progress) -> None:
        self.progress = progress  # cheap: the ticker draws
        self.result = progress.result

    def _tick(self) -> None:
        if self.progress is not None:
            self.meter.add(self.progress.bytes_done)
        self._refresh(final=False)
        self.sig_changed.emit()

    def _done(self, result: DiffResult) -> None:
        self.result = result
        self.state = "done"
        self._finish()
        source = f"{human_bytes(result.bytes_read)} read" if result.bytes_read else "from the comparison cache"
        self._say(f"Compared in {result.seconds:.1f} s ({source})")
        if not self.table.selectionModel().hasSelection():
            self._select_most_changed()

    def _failed(self, exc: BaseException) -> None:
        from gui.errors import reason

        self.state = "failed"
        self._finish()
        self._say(f"Comparison failed: {reason(exc, 'comparing the models')}")
        if self.result is None:
            self.counts.setText("")
        self.sig_error.emit("Could not compare the models", exc, "comparing the models")

    def _aborted(self) -> None:
        if self.state == "running":
            self.state = "cancelled"
            self._finish()
            self._say("Cancelled: the table holds the pairs compared so far")

    def _finish(self) -> None:
        self.ticker.stop()
        self.cancel_button.hide()
        self._refresh(final=True)
        self.sig_changed.emit()

    def cancel(self) -> None:
        """Stop reading: the comparison and the heatmap; what was compared stays."""
        self._remember_stopping()
        self.heatmap_job.cancel()
        if self.state == "running":
            self.job.cancel()
            self._aborted()

    @property
    def running(self) -> bool:
        return self.state == "running"

    def report_part(self) -> tuple[DiffResult | None, str | None]:
        """For File > Export Report: the finished comparison, or None and, for one that has not finished, the
        line that says it is left out."""
        if self.state == "done":
            return self.result, None
        why = {"running": "is still running", "cancelled": "was cancelled", "failed": "failed"}.get(self.state)
        if why is None:
            return None, None
        return None, f"The comparison with {model_name(self.b_path)} {why}: it is not in this report."

    def is_idle(self) -> bool:
        self._close_stopped()
        return not (self.job.busy or self.heatmap_job.busy or self.profile_job.busy or self._to_close
                    or any(not w.is_done for w in self._stopping))

    def shutdown(self) -> None:
        """Stop every job; B is closed once they have stopped."""
        self.ticker.stop()
        self._stop_jobs()
        self._close_stopped()
        pending, self._to_close = self._to_close, []
        close_when_stopped(pending)  # the panel may be deleted before its workers end: B is closed all the same

    def _remember_stopping(self) -> None:
        live = [slot.worker for slot in (self.job, self.heatmap_job) if slot.worker is not None]
        self._stopping = [w for w in self._stopping + live if not w.is_done]

    def _stop_jobs(self) -> None:
        self._remember_stopping()
        workers = list(self._stopping)
        self.job.cancel()
        self.heatmap_job.cancel()
        self.profile_job.cancel()
        if self._open_b is not None:
            self._to_close.append((self._open_b, workers))
            self._open_b = None

    def workers(self) -> list:
        """Every worker of this panel not finished yet, stopped ones included (they read A until they end)."""
        live = [slot.worker for slot in (self.job, self.heatmap_job) if slot.worker is not None]
        stopping = self._stopping + [w for _, workers in self._to_close for w in workers]
        return [w for w in live + stopping if not w.is_done]

    def _close_stopped(self) -> None:
        still = []
        for opened, workers in self._to_close:
            if all(w.is_done for w in workers):
                if opened.checkpoint is not None:
                    opened.checkpoint.close()
            else:
                still.append((opened, workers))
        self._to_close = still

    # ------------------------------------------------------------------ status
    def status_text(self, title: str) -> str:
        p = self.progress
        b = model_name(self.b_path)
        if p is None:
            return f"{title}: comparing with {b}: opening…"
        left = self.meter.seconds_left(p.bytes_total - p.bytes_done)
        return (f"{title}: comparing with {b}: {progress_text(p.fraction, self.meter.rate(), left)} · "
                f"{human_bytes(p.bytes_done)} of {human_bytes(p.bytes_total)} · {p.tensor}")

    @property
    def progress_fraction(self) -> float:
        return self.progress.fraction if self.progress is not None else 0.0

    def _say(self, text: str) -> None:
        self.state_label.setText(text)
        self.state_label.setToolTip(tooltip(text))

    # ------------------------------------------------------------------ drawing
    def _refresh(self, final: bool) -> None:
        result = self.result
        if result is None:
            return
        self.table_model.refresh(result)
        done = list(result.tensors.values())
        for td in done[self._merged:]:
            self.model_sums = td.sums if self.model_sums is None else self.model_sums.merge(td.sums)
        self._merged = len(done)
        self.counts.setText(counts_text(result, self._merged))
        self.table.setColumnHidden(COL_SNR, not (self.model_sums is not None and self.model_sums.quantised))
        if self.model_sums is not None:
            shown = figures_text(metrics(self.model_sums))
            for key, label in self.figure_labels.items():
                label.setText(shown.get(key, ""))
        self._fill_lists(result)
        if final or time.monotonic() - self._profile_time > PROFILE_EVERY_S:
            self._draw_profile()

    def _fill_lists(self, result: DiffResult) -> None:
        if self.only_a.count() != len(result.only_in_a):
            self.only_a.clear()
            self.only_a.addItems(list(result.only_in_a))  # QListWidget items are plain text
        if self.only_b.count() != len(result.only_in_b):
            self.only_b.clear()
            self.only_b.addItems(list(result.only_in_b))
        mismatched = list(result.mismatched)
        if self.mismatched.rowCount() != len(mismatched):
            from PySide6.QtWidgets import QTableWidgetItem

            self.mismatched.setRowCount(len(mismatched))
            for i, m in enumerate(mismatched):
                cells = (m["a"], m["b"], f"{m['a_shape']} · {m['a_dtype']}", f"{m['b_shape']} · {m['b_dtype']}",
                         m["reason"])
                for j, text in enumerate(cells):
                    item = QTableWidgetItem(str(text))
                    item.setToolTip(tooltip(str(text)))
                    self.mismatched.setItem(i, j, item)
        for index, (label, count) in enumerate((("Compared", self.table_model.rowCount()),
                                                ("Only in A", len(result.only_in_a)),
                                                ("Only in B", len(result.only_in_b)),
                                                ("Mismatched", len(mismatched)))):
            self.lists.setTabText(index, f"{label} ({count:,})")

    def _draw_profile(self) -> None:
        """One line per role: each point the relative change of that role's tensors in one layer, merged
        exactly (core.diff_profile, as in the PDF report); merged in a worker (10k tensors: 0.1 s or more)."""
        from core.diff_profile import depth_profile

        self._profile_time = time.monotonic()
        if self.state == "running" and self.profile_job.busy:
            return  # the last one is still merging: the next tick asks again
        result = self.result
        self.profile_job.start(lambda _stop: depth_profile(result) if result is not None else {},
                               on_return=self.depth.set_profile)

    def _point_clicked(self, names: list[str]) -> None:
        """A point stands for a role's tensors in one layer (one, except where a role has several): the most
        changed of them is selected."""
        rows = {row.name: row for row in self.table_model.rows}
        known = [n for n in names if n in rows]
        if known:
            self.select_tensor(max(known, key=lambda n: _finite_or_low(rows[n].value(COL_REL))))

    def select_tensor(self, name: str) -> bool:
        """Select the table row of A's tensor ``name`` (showing the table), which draws its heatmap."""
        row = self.table_model.row_of_name(name)
        if row < 0:
            return False
        self.lists.setCurrentWidget(self.table)
        index = self.table_model.index(row, 0)
        self.table.selectionModel().setCurrentIndex(
            index, self.table.selectionModel().SelectionFlag.ClearAndSelect
            | self.table.selectionModel().SelectionFlag.Rows)
        self.table.scrollTo(index)
        return True

    def selected_name(self) -> str | None:
        index = self.table.selectionModel().currentIndex()
        return self.table_model.rows[index.row()].name if index.isValid() else None

    def _select_most_changed(self) -> None:
        """After a comparison, show the matrix that changed most (relative change), if any changed."""
        best, best_value = None, 0.0
        for row in self.table_model.rows:
            value = row.value(COL_REL)
            if math.isfinite(value) and value > best_value and row.figures["count"] > 1:
                best, best_value = row.name, value
        if best is not None:
            self.select_tensor(best)

    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        self.depth.highlight(self.table_model.rows[current.row()].name)
        self.show_heatmap(self.table_model.rows[current.row()].name)

    def show_heatmap(self, name: str) -> None:
        """Draw |B−A| of A's tensor ``name``, computed in a worker from both files."""
        from core.diff_heatmap import compute_diff_heatmap
        from core.name_map import align

        opened, checkpoint = self._open_b, self.checkpoint
        if opened is None or opened.checkpoint is None:
            return

        def job(stop):
            if not opened.pairs:
                opened.pairs = {p.a.name: p for p in align(checkpoint, opened.checkpoint).pairs}
            pair = opened.pairs.get(name)
            if pair is None:
                return None
            return (yield from compute_diff_heatmap(checkpoint, opened.checkpoint, pair, should_stop=stop))

        self.heat.clear(f"|B−A| of {name}", "reading…")
        self._remember_stopping()  # the heatmap being replaced still reads until its next tile
        self.heatmap_job.start(job, on_yield=self._draw_heatmap, on_return=self._draw_heatmap,
                               on_error=self._heatmap_failed)

    def _heatmap_failed(self, exc: BaseException) -> None:
        from core.errors import CheckpointError
        from gui.errors import reason

        self.heat.clear(f"No heatmap: {reason(exc, 'drawing the difference')}")
        if not isinstance(exc, CheckpointError):
            self.sig_error.emit("Internal error", exc, "drawing the difference")

    def _draw_heatmap(self, heatmap) -> None:
        if heatmap is not None:
            self.heat.show_heatmap(heatmap)


def close_when_stopped(pending: list[tuple[OpenB, list]], tries: int = 0) -> None:
    """Close each B once the workers that read it have ended (polled by a timer owned by no widget)."""
    left = []
    for opened, workers in pending:
        if all(w.is_done for w in workers) or tries > 600:
            if opened.checkpoint is not None:
                opened.checkpoint.close()
        else:
            left.append((opened, workers))
    if left:
        QTimer.singleShot(50, lambda: close_when_stopped(left, tries + 1))


def model_name(path: str) -> str:
    """B as people say it (the view's rule: the folder for generic file names)."""
    from gui.model_view import model_title

    return model_title(path) if path else "B"
