"""One open model in its tab: the layer tree on the left, summary / distribution / depth / heatmap on the right.

The view owns its background jobs, one JobSlot per purpose: the whole-model
analysis (started when the tab opens), the selected tensor's statistics, the
depth profile and the heatmap. Selecting another row cancels the stale
selection job. Worker yields only store the latest progress; a timer turns
that into status-bar updates a few times a second, so a fast stream of
chunks never floods the UI thread.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QSplitter,
    QTabWidget,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from core.checkpoint import DEFAULT_CHUNK_BYTES, TensorInfo
from core.numbers import human_bytes, human_count
from core.tree import TreeNode
from gui.jobs import OpenedModel, SelectionStats, analysis, depth_job, selection_stats
from gui.panels.depth import DepthPanel
from gui.panels.distribution import DistributionPanel
from gui.panels.heatmap import HeatmapPanel
from gui.panels.summary import SummaryPanel
from gui.plain import tooltip
from gui.progress_text import Throughput, partial_text, progress_text
from gui.tree_model import (
    COL_DTYPE,
    COL_KIND,
    COL_NAME,
    COL_PARAMS,
    COL_SHAPE,
    COL_SHARE,
    COLUMNS,
    FILTER_MODES,
    LayerTreeModel,
    TreeFilterProxy,
    shape_text,
)
from gui.workers import JobSlot

OWN_ANALYSIS_BYTES = 512 << 20  # a selection reads its own missing tensors up to this much; bigger ones wait
TICK_MS = 200

TAB_SUMMARY, TAB_DISTRIBUTION, TAB_DEPTH, TAB_HEATMAP = range(4)


@dataclass
class Selection:
    """What the tree's current row stands for."""

    path: str
    title: str
    subtitle: str
    tensors: list[TensorInfo]
    single: TensorInfo | None  # the tensor when the row is exactly one tensor
    heatmap_tensor: TensorInfo | None
    heatmap_note: str = ""


def model_title(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    return base or path


class ModelView(QWidget):
    """A tab for one opened model."""

    sig_analysis_changed = Signal()
    sig_error = Signal(str, object, str)  # (dialog title, exception, what we were doing)
    sig_selection_changed = Signal(str)  # tree path ('' for the whole model)

    def __init__(self, opened: OpenedModel, device: str = "auto", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 parent: QWidget | None = None, auto_analyse: bool = True) -> None:
        super().__init__(parent)
        self.opened = opened
        self.checkpoint = opened.checkpoint
        self.path = opened.path
        self.title = model_title(opened.path)
        self.device = device
        self.chunk_bytes = chunk_bytes
        self.analysis_state = "idle"  # idle | running | done | cancelled | failed
        self.analysis_error: BaseException | None = None
        self.progress = None  # latest core.stats.AnalysisProgress
        self.result = None  # core.stats.AnalysisResult: live while running, final when done
        self.device_label = ""
        self.selection: Selection | None = None
        self.selection_result: SelectionStats | None = None
        self._selection_waiting = False
        self.selection_reading = False  # the selection job reads tensors the analysis has not covered
        self.analysis_meter = Throughput()
        self._stopping: list = []  # cancelled workers finishing their current chunk (they stop before the next)
        self.selection_meter = Throughput()
        self._tensor_done_count = 0
        self._last_refresh = 0.0
        self._closed = False

        self.analysis_job = JobSlot("analysis", self)
        self.selection_job = JobSlot("selection", self)
        self.depth_job = JobSlot("depth", self)
        self.ticker = QTimer(self)
        self.ticker.setInterval(TICK_MS)
        self.ticker.timeout.connect(self._tick)

        self._build_ui()
        if auto_analyse:
            self.start_analysis()

    # ------------------------------------------------------------------ layout
    def _build_ui(self) -> None:
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        layout.addWidget(self.splitter)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 0, 6)
        left_layout.setSpacing(4)
        bar = QHBoxLayout()
        self.filter_edit = QLineEdit(objectName="tree_filter")
        self.filter_edit.setPlaceholderText("Filter tensors…  (e.g. q_proj, *.mlp.*, ^lm_head)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setToolTip("Show only rows whose name matches (with their parents and children).")
        self.filter_mode = QComboBox(objectName="tree_filter_mode")
        self.filter_mode.addItems(FILTER_MODES)
        self.filter_mode.setToolTip("Substring: anywhere in the name. Glob: * and ? wildcards over the whole "
                                    "dotted name. Regex: a Python regular expression.")
        self.fold_check = QCheckBox("Fold repeated blocks", objectName="tree_fold")
        self.fold_check.setChecked(True)
        self.fold_check.setToolTip("Show identical numbered blocks (layers.0 … layers.31) as one row, "
                                   "\"layers.0-31 (x32)\", whose counts add up all of them.")
        expand = QToolButton(text="Expand all", objectName="tree_expand_all")
        collapse = QToolButton(text="Collapse", objectName="tree_collapse_all")
        expand.setAutoRaise(True)
        collapse.setAutoRaise(True)
        bar.addWidget(self.filter_edit, 1)
        bar.addWidget(self.filter_mode)
        left_layout.addLayout(bar)
        bar2 = QHBoxLayout()
        bar2.addWidget(self.fold_check)
        bar2.addStretch(1)
        bar2.addWidget(expand)
        bar2.addWidget(collapse)
        left_layout.addLayout(bar2)

        self.tree_model = LayerTreeModel(self.opened.folded, self.title, self.checkpoint.parameter_count, self)
        self.proxy = TreeFilterProxy(self)
        self.proxy.setSourceModel(self.tree_model)
        self.tree = QTreeView(objectName="layer_tree")
        self.tree.setModel(self.proxy)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.header().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.tree.setSortingEnabled(True)
        self.tree.header().setStretchLastSection(False)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.tree.header().setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        left_layout.addWidget(self.tree, 1)
        self._expand_default()
        self._size_columns()

        self.tabs = QTabWidget(objectName="panel_tabs")
        self.tabs.setDocumentMode(True)
        self.summary = SummaryPanel(self.checkpoint)
        self.distribution = DistributionPanel()
        self.depth = DepthPanel()
        self.heatmap = HeatmapPanel()
        self.tabs.addTab(self.summary, "Summary")
        self.tabs.addTab(self.distribution, "Distribution")
        self.tabs.addTab(self.depth, "Depth profile")
        self.tabs.addTab(self.heatmap, "Heatmap")
        self.tabs.setTabToolTip(TAB_SUMMARY, "Parameter counts, where they live, dtypes, memory, architecture")
        self.tabs.setTabToolTip(TAB_DISTRIBUTION, "Histogram and statistics of the selected tensor or group")
        self.tabs.setTabToolTip(TAB_DEPTH, "A statistic against layer index, one line per role")
        self.tabs.setTabToolTip(TAB_HEATMAP, "The selected matrix as an image, downsampled by blocks")

        self.splitter.addWidget(left)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 4)
        self.splitter.setStretchFactor(1, 6)
        self.splitter.setSizes([560, 840])

        self.filter_edit.textChanged.connect(self._apply_filter)
        self.filter_mode.currentIndexChanged.connect(self._apply_filter)
        self.fold_check.toggled.connect(self.set_folded)
        expand.clicked.connect(self.tree.expandAll)
        collapse.clicked.connect(self._collapse)
        self.tree.selectionModel().currentRowChanged.connect(self._current_changed)
        self.depth.sig_tensor_clicked.connect(self.select_tensor)

    def _expand_default(self) -> None:
        self.tree.collapseAll()
        root = self.proxy.index(0, 0)
        self.tree.expand(root)
        for row in range(self.proxy.rowCount(root)):
            child = self.proxy.index(row, 0, root)
            if self.proxy.rowCount(child) <= 12:
                self.tree.expand(child)
                for sub in range(self.proxy.rowCount(child)):
                    grandchild = self.proxy.index(sub, 0, child)
                    node = self.tree_model.node(self.proxy.mapToSource(grandchild))
                    if node is not None and node.repeat > 1:
                        self.tree.expand(grandchild)

    def _collapse(self) -> None:
        self.tree.collapseAll()
        self.tree.expand(self.proxy.index(0, 0))

    def _size_columns(self) -> None:
        """Most telling columns first on screen (the model's column order stays as documented)."""
        header = self.tree.header()
        for visual, logical in enumerate((COL_NAME, COL_PARAMS, COL_SHARE, COL_KIND, COL_SHAPE, COL_DTYPE)):
            header.moveSection(header.visualIndex(logical), visual)
        widths = {COL_NAME: 230, COL_PARAMS: 78, COL_SHARE: 58, COL_KIND: 150, COL_SHAPE: 96, COL_DTYPE: 52}
        for col in range(len(COLUMNS)):
            header.resizeSection(col, widths.get(col, 82))

    # ------------------------------------------------------------------ tree
    @property
    def folded(self) -> bool:
        return self.fold_check.isChecked()

    def set_folded(self, folded: bool) -> None:
        """Switch between folded and unfolded trees, keeping the selected row if it still exists."""
        if self.fold_check.isChecked() != folded:
            self.fold_check.setChecked(folded)  # re-enters through the toggled signal
            return
        keep = self.selection.single.name if self.selection and self.selection.single else None
        self.tree_model.set_root(self.opened.folded if folded else self.opened.tree)
        self._expand_default()
        if keep:
            self._select_source_index(self.tree_model.find_tensor(keep), emit=False)

    def _apply_filter(self) -> None:
        ok = self.proxy.set_pattern(self.filter_edit.text(), self.filter_mode.currentText())
        self.filter_edit.setStyleSheet("" if ok else "QLineEdit { background: #fee2e2; }")
        self.filter_edit.setToolTip(tooltip(self.proxy.error or "Show only rows whose name matches."))
        if self.filter_edit.text().strip():
            self.tree.expandAll()
        else:
            self._expand_default()

    def visible_tensor_rows(self) -> list[str]:
        """Names of the single-tensor rows the filtered tree shows (for tests and copy)."""
        out: list[str] = []

        def walk(parent: QModelIndex) -> None:
            for row in range(self.proxy.rowCount(parent)):
                index = self.proxy.index(row, 0, parent)
                node = self.tree_model.node(self.proxy.mapToSource(index))
                if node is not None and not node.children and node.tensors:
                    out.append(node.path)
                walk(index)

        walk(QModelIndex())
        return out

    def select_tensor(self, name: str) -> bool:
        """Select the row of exactly this tensor, unfolding and clearing the filter if needed."""
        index = self.tree_model.find_tensor(name)
        if not index.isValid() and self.folded:
            self.set_folded(False)
            index = self.tree_model.find_tensor(name)
        if not index.isValid():
            return False
        if not self.proxy.mapFromSource(index).isValid():
            self.filter_edit.clear()
        self._select_source_index(index)
        return True

    def select_path(self, path: str) -> bool:
        """Select a row by its tree path ('' for the whole model), or by tensor name."""
        if path and self.select_tensor(path):
            return True
        index = self.tree_model.find_path(path) if path else self.tree_model.index(0, 0)
        if not index.isValid():
            return False
        self._select_source_index(index)
        return True

    def _select_source_index(self, index: QModelIndex, emit: bool = True) -> None:
        proxy_index = self.proxy.mapFromSource(index)
        if not proxy_index.isValid():
            return
        self.tree.scrollTo(proxy_index)
        if not emit:
            self.tree.selectionModel().blockSignals(True)
        self.tree.selectionModel().setCurrentIndex(
            proxy_index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        if not emit:
            self.tree.selectionModel().blockSignals(False)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        node = self.tree_model.node(self.proxy.mapToSource(current)) if current.isValid() else None
        if node is None:
            return
        self.show_node(node)

    # ------------------------------------------------------------------ selection
    def _selection_for(self, node: TreeNode) -> Selection:
        is_root = node is self.tree_model.root
        if not node.children and len(node.tensors) == 1:
            t = node.tensors[0]
            sub = f"{t.kind} · {t.role} · {shape_text(t.shape)} · {t.dtype} · {human_count(t.elements)} values"
            return Selection(node.path, t.name, sub, [t], t, t)
        tensors = node.all_tensors()
        title = self.title if is_root else (node.path if node.repeat == 1 else f"{node.path} · {node.name}")
        if not node.children and node.repeat > 1:
            title = f"{node.path.replace('.0.', '.*.', 1)} across {node.repeat} blocks"
        values = sum(t.elements for t in tensors)
        sub = f"group · {len(tensors):,} tensors · {human_count(values)} values"
        heat = tensors[0] if not node.children and tensors else None
        note = f"block {node.members[0].name if node.members else 0} of {node.repeat}" if heat is not None else ""
        if heat is not None and node.repeat > 1:
            note = f"first of {node.repeat} blocks"
        return Selection(node.path, title, sub, tensors, None, heat, note)

    def show_node(self, node: TreeNode) -> None:
        sel = self._selection_for(node)
        self.selection = sel
        self.selection_result = None
        if self.tabs.currentIndex() == TAB_SUMMARY:
            self.tabs.setCurrentIndex(TAB_DISTRIBUTION)
        self.distribution.show_pending(sel.title, sel.subtitle)
        self.heatmap.set_tensor(self.checkpoint, sel.heatmap_tensor, sel.heatmap_note)
        self.depth.highlight(sel.single.name if sel.single else None)
        self._start_selection_job()
        self.sig_selection_changed.emit(sel.path)

    def _known_summaries(self) -> dict:
        if self.result is None:
            return {}
        return dict(list(self.result.summaries.items()))  # one atomic copy while the worker adds

    def _start_selection_job(self, may_read: bool = True) -> None:
        """Statistics of the selection from what is known; with ``may_read``, the job reads the missing tensors
        itself (with progress and Cancel) unless the running whole-model analysis will soon cover them."""
        sel = self.selection
        if sel is None or self._closed:
            return
        known = self._known_summaries()
        missing_bytes = sum(t.nbytes for t in sel.tensors if t.name not in known)
        running = self.analysis_state == "running"
        analyse = may_read and bool(missing_bytes) and (not running or missing_bytes <= OWN_ANALYSIS_BYTES)
        self._selection_waiting = bool(missing_bytes) and running and not analyse
        self._last_refresh = time.monotonic()
        job = functools.partial(selection_stats, self.checkpoint, sel.tensors, sel.title, known, analyse,
                                self.device, self.chunk_bytes)
        self.selection_reading = analyse
        self.selection_meter.reset()
        self.selection_job.start(job, on_yield=self._selection_update, on_return=self._selection_finished,
                                 on_error=self._selection_failed, on_abort=self._selection_stopped)
        if analyse:
            self.ticker.start()
        self.sig_analysis_changed.emit()

    def _selection_finished(self, update: SelectionStats) -> None:
        self.selection_reading = False
        self._selection_update(update)
        self._stop_ticker_when_quiet()
        self.sig_analysis_changed.emit()

    def _selection_stopped(self) -> None:
        self.selection_reading = False
        self._stop_ticker_when_quiet()
        self.sig_analysis_changed.emit()

    def _selection_update(self, update: SelectionStats) -> None:
        sel = self.selection
        if sel is None:
            return
        self.selection_result = update
        if self.selection_reading:
            self.selection_meter.add(update.bytes_done)
        if update.stats is None:
            if self._selection_waiting:
                self.distribution.show_pending(sel.title, f"{sel.subtitle} · waiting for the whole-model analysis")
            elif update.tensors_done < update.tensors_total:
                self.distribution.clear(sel.title, f"{sel.subtitle} · not analysed yet")
            else:
                self.distribution.clear(sel.title, f"{sel.subtitle} · no numeric values to show")
            return
        sub = sel.subtitle
        complete = update.tensors_done >= update.tensors_total and update.fraction >= 1
        if not complete:
            part = partial_text(update.tensors_done, update.tensors_total, update.fraction)
            if self.selection_reading:  # the partial figures first: a narrow panel cuts the end of the line
                sub = f"reading: {part} · {sub}"
            elif self._selection_waiting:
                sub = f"partial: {part} · {sub} · the whole-model analysis fills in the rest"
            else:
                sub = f"partial: {part} · {sub} · analysis {self.analysis_state}: select again to read the rest"
        self.distribution.set_stats(update.stats, sel.title, sub, 1.0 if complete else min(update.fraction, 0.999))

    def _selection_failed(self, exc: BaseException) -> None:
        from gui.errors import reason

        self.selection_reading = False
        self._stop_ticker_when_quiet()
        if self.selection is not None:
            self.distribution.clear(self.selection.title,
                                    f"could not compute statistics: {reason(exc, 'computing statistics')}")
        self.sig_analysis_changed.emit()
        from core.errors import CheckpointError

        if not isinstance(exc, CheckpointError):
            self.sig_error.emit("Internal error", exc, "computing the selection's statistics")

    # ------------------------------------------------------------------ whole-model analysis
    def start_analysis(self) -> None:
        """(Re)start the statistics of every tensor in the background."""
        if self._closed:
            return
        checkpoint, device, chunk = self.checkpoint, self.device, self.chunk_bytes

        def job(stop):
            return analysis(checkpoint, None, device, chunk, stop)

        self.analysis_state = "running"
        self.analysis_error = None
        self.progress = None
        self.analysis_meter.reset()
        self.analysis_job.start(job, on_yield=self._analysis_progress, on_return=self._analysis_done,
                                on_error=self._analysis_failed, on_abort=self._analysis_aborted)
        self.ticker.start()
        self.depth.set_waiting("Waiting for the whole-model analysis…")
        self.sig_analysis_changed.emit()

    def is_reading(self) -> bool:
        """Whether a job of this tab reads values now: the whole-model analysis or the selection's own."""
        return self.analysis_state == "running" or self.selection_reading

    def cancel_analysis(self) -> None:
        """Cancel means cancel: no job of this tab reads the file afterwards until the user asks again."""
        was_reading = self.is_reading()
        self._remember_stopping(self.heatmap.job, self.selection_job, self.analysis_job)
        self.heatmap.cancel()
        if self.selection_reading:
            self.selection_job.cancel()
            self.selection_reading = False
        if self.analysis_state == "running":
            self.analysis_job.cancel()
            self._analysis_aborted()  # redraws the selection from what is known, without reading
        elif was_reading:
            self._start_selection_job(may_read=False)
        self._stop_ticker_when_quiet()
        self.sig_analysis_changed.emit()

    def _remember_stopping(self, *slots: JobSlot) -> None:
        self._stopping = [w for w in self._stopping if not w.is_done]
        self._stopping += [slot.worker for slot in slots if slot.worker is not None and not slot.worker.is_done]

    def _stop_ticker_when_quiet(self) -> None:
        if not self.is_reading():
            self.ticker.stop()

    def _analysis_progress(self, progress) -> None:
        self.progress = progress  # cheap on purpose: the ticker does the drawing
        self.result = progress.result
        if progress.tensor_done:
            self._tensor_done_count += 1

    def _tick(self) -> None:
        p = self.progress
        if p is not None and self.analysis_state == "running":
            self.analysis_meter.add(p.bytes_done)
            self.depth.set_waiting(f"Not analysed yet: whole-model analysis {p.fraction:.0%}")
        self.sig_analysis_changed.emit()
        if self._selection_waiting and time.monotonic() - self._last_refresh > 1.0 and not self.selection_job.busy:
            self._start_selection_job()

    def _analysis_done(self, result) -> None:
        self.result = result
        self.analysis_state = "done"
        self.device_label = result.device
        self._finish_analysis()

    def _analysis_failed(self, exc: BaseException) -> None:
        self.analysis_state = "failed"
        self.analysis_error = exc
        self._finish_analysis()
        self.sig_error.emit("Could not analyse the model", exc, "analysing the model")

    def _analysis_aborted(self) -> None:
        if self.analysis_state == "running":
            self.analysis_state = "cancelled"
            self._finish_analysis()

    def _finish_analysis(self) -> None:
        """The analysis ended (done, cancelled or failed): redraw from what is known; only a finished analysis
        lets the selection go on (it has nothing left to read then), so Cancel never starts another read."""
        self._stop_ticker_when_quiet()
        if self.result is not None and not self.device_label:
            self.device_label = self.result.device
        partial = self.selection_result is None or self.selection_result.fraction < 1
        if self.selection is not None and (self._selection_waiting or partial):
            self._start_selection_job(may_read=self.analysis_state == "done")
        self._selection_waiting = False
        self._start_depth_job()
        self.sig_analysis_changed.emit()

    def analysed_counts(self) -> tuple[int, int, float]:
        """(tensors analysed, tensors to analyse, fraction of their bytes) over the whole model."""
        from core.stats import analyzable

        known = self._known_summaries()
        usable = [t for t in self.checkpoint.tensors if analyzable(t)]
        total = sum(t.nbytes for t in usable)
        done = sum(t.nbytes for t in usable if t.name in known)
        return sum(1 for t in usable if t.name in known), len(usable), (done / total if total else 1.0)

    def _start_depth_job(self) -> None:
        if self._closed:
            return
        summaries = self._known_summaries()
        note = ""
        if self.analysis_state != "done":
            done, total, fraction = self.analysed_counts()
            note = (f"partial: {partial_text(done, total, fraction)} (analysis {self.analysis_state})" if done
                     else f"analysis {self.analysis_state}")
        job = functools.partial(depth_job, self.checkpoint.tensors, summaries)
        self.depth_job.start(job, on_return=lambda profiles: self.depth.set_profiles(profiles, note),
                             on_error=self._depth_failed)

    def _depth_failed(self, exc: BaseException) -> None:
        from gui.errors import reason

        self.depth.set_waiting(f"Depth profile failed: {reason(exc, 'computing the depth profile')}")
        self.sig_error.emit("Internal error", exc, "computing the depth profile")

    # ------------------------------------------------------------------ status
    def status_text(self) -> str:
        p = self.progress
        if self.analysis_state == "running":
            if p is None:
                return f"{self.title}: analysing…"
            left = self.analysis_meter.seconds_left(p.bytes_total - p.bytes_done)
            return (f"{self.title}: analysing: {progress_text(p.fraction, self.analysis_meter.rate(), left)} · "
                    f"{human_bytes(p.bytes_done)} of {human_bytes(p.bytes_total)} · {p.tensor}")
        if self.selection_reading and self.selection is not None:
            u = self.selection_result
            fraction = u.fraction if u is not None else 0.0
            left = self.selection_meter.seconds_left(u.bytes_total - u.bytes_done) if u is not None else None
            return (f"{self.title}: reading {self.selection.title}: "
                    f"{progress_text(fraction, self.selection_meter.rate(), left)}")
        if self.analysis_state == "done" and self.result is not None:
            r = self.result
            source = f"{human_bytes(r.bytes_read)} read" if r.bytes_read else "from the statistics cache"
            return f"{self.title}: {len(r.summaries):,} tensors analysed in {r.seconds:.1f} s ({source})"
        if self.analysis_state in ("cancelled", "failed", "idle"):
            done, total, fraction = self.analysed_counts()
            figures = f"partial: {partial_text(done, total, fraction)}" if done else "not analysed yet"
            if self.analysis_state == "cancelled":
                return f"{self.title}: analysis cancelled · {figures}"
            if self.analysis_state == "failed" and self.analysis_error is not None:
                from gui.errors import reason

                return f"{self.title}: analysis failed: {reason(self.analysis_error, 'analysing')} · {figures}"
            return f"{self.title}: {figures}"
        return self.title

    @property
    def progress_fraction(self) -> float:
        if self.analysis_state != "running" and self.selection_reading:
            return self.selection_result.fraction if self.selection_result is not None else 0.0
        return self.progress.fraction if self.progress is not None else 0.0

    def is_idle(self) -> bool:
        return not (self.analysis_job.busy or self.selection_job.busy or self.depth_job.busy
                    or self.heatmap.job.busy or any(not w.is_done for w in self._stopping))

    def shutdown(self) -> None:
        """Cancel every job of this view; the checkpoint is closed once they have all stopped."""
        self._closed = True
        self.ticker.stop()
        running = self.pending_workers()
        for slot in (self.analysis_job, self.selection_job, self.depth_job, self.heatmap.job):
            slot.cancel()
        checkpoint = self.checkpoint

        def close_when_stopped(tries: int = 0) -> None:
            if all(w.is_done for w in running) or tries > 600:
                checkpoint.close()
            else:
                QTimer.singleShot(50, lambda: close_when_stopped(tries + 1))

        close_when_stopped()

    def pending_workers(self) -> list:
        """Workers of this tab still running, cancelled ones finishing their chunk included."""
        live = [slot.worker for slot in (self.analysis_job, self.selection_job, self.depth_job, self.heatmap.job)
                if slot.worker is not None]
        return [w for w in live + self._stopping if not w.is_done]

    def current_node(self) -> TreeNode | None:
        index = self.tree.currentIndex()
        return self.tree_model.node(self.proxy.mapToSource(index)) if index.isValid() else None

    def source_index(self, node: TreeNode, column: int = COL_NAME) -> QModelIndex:
        return self.tree_model.index_of(node, column)
