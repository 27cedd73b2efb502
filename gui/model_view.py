"""One open model in its tab: the layer tree on the left, summary / distribution / depth / heatmap on the right.

The view owns its background jobs, one JobSlot per purpose: the whole-model
analysis (started when the tab opens), the selected tensor's statistics, the
depth profile and the heatmap. Selecting another row cancels the stale
selection job. Worker yields only store the latest progress; a timer turns
that into status-bar updates a few times a second, so a fast stream of
chunks never floods the UI thread.

Only the Summary is built with the tab: the plot panels (Distribution, Depth,
Heatmap) and Findings are built the first time they are shown (LazyTab), one
step per turn of the event loop, so opening a model or switching tabs never
holds the UI thread for long. Until then the view keeps what they would show
and hands it over when they are made.
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
from core.foreground import USER_ACT_HOLD_SECONDS, hold_background
from core.histogram_scope import ALL_VALUES, MATRICES
from core.numbers import human_bytes, human_count
from core.tree import TreeNode
from gui.compare_tab import CompareTab
from gui.jobs import OpenedModel, SelectionStats, analysis, depth_job
from gui.panels.depth import DepthPanel
from gui.panels.distribution import DistributionPanel
from gui.panels.findings import FindingsPanel
from gui.panels.heatmap import HeatmapPanel
from gui.panels.memory import MemoryPanel
from gui.panels.no_values import NO_VALUES_TEXT, NoValuesPage, is_config_only
from gui.panels.spectra import SpectraPanel
from gui.panels.summary import SummaryPanel
from gui.plain import tooltip
from gui.priority import lower_thread_priority
from gui.progress_text import Throughput, partial_text, progress_text
from gui.references import reference_title
from gui.scope_jobs import ScopedStats, scoped_selection_stats
from gui.slices import Slices
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
DRAW_DELAY_MS = 10  # a selection's figures wait this long: timers already due (input, progress) run before the plot

TAB_SUMMARY, TAB_DISTRIBUTION, TAB_DEPTH, TAB_HEATMAP = range(4)
BUILT_LATER = {"tree_model", "proxy", "tree"}  # made by a sliced view's first steps (ModelView.__getattr__)


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


GENERIC_STEMS = {"model", "pytorch_model", "consolidated", "weights", "checkpoint", "adapter_model",
                 "diffusion_model", "config", "model.safetensors.index", "pytorch_model.bin.index"}


def model_title(path: str) -> str:
    """The model's name as people say it: the folder for generic file names (``Llama-3-8B``, not
    ``model.safetensors`` or ``model-00001-of-00004.safetensors``), else the file name."""
    normal = os.path.normpath(path)
    base = os.path.basename(normal)
    if not base:
        return path
    if os.path.isdir(normal):
        return base
    stem = base[:-len(".index.json")] if base.endswith(".index.json") else base.rsplit(".", 1)[0]
    generic = stem in GENERIC_STEMS or stem.split(".")[0] in GENERIC_STEMS \
        or stem.startswith(("model-0", "pytorch_model-0", "consolidated.0"))
    parent = os.path.basename(os.path.dirname(os.path.abspath(normal)))
    return parent if generic and parent else base


def warm_imports() -> None:
    """Import, in a worker, what panels would otherwise import on the UI thread when first shown: the gguf
    package behind the quant-type table (0.3 s or more, once per process)."""
    from core import dtypes

    dtypes.lookup("Q4_K")


class LazyTab(QWidget):
    """A tab page whose panel is built the first time the page is shown (or asked for by ``get``).

    Shown, it builds from a 1 ms timer, not a posted event: Qt delivers events posted while it delivers
    others in the same pass, so a zero-delay build would share one stall with the tab switch's own paint;
    a timer lets due timers (input, progress) run between them. ``on_made`` hands the view's current state
    to the new panel.
    """

    def __init__(self, name: str, make, on_made, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"tab_{name}")
        self._make, self._on_made = make, on_made
        self.panel = None  # set once the panel is whole: code that finds it here may use all of it
        self._building = None  # the panel while its slices (``panel.slices``, gui/slices.py) are still coming
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

    def get(self):
        """The panel, made, finished and drawn now if it is not yet (whoever asks reads it at once)."""
        if self.panel is None:
            self._start()
            if self.panel is None:
                self._building.slices.finish()
        finish_drawing = getattr(self.panel, "finish_drawing", None)
        if finish_drawing is not None:
            finish_drawing()
        return self.panel

    def _start(self) -> None:
        if self._building is not None:
            return
        panel = self._building = self._make()
        self.layout().addWidget(panel)
        if self.isVisible():
            panel.show()  # now, not on Qt's queued show: a panel that works while visible starts at once
        slices = getattr(panel, "slices", None)
        if slices is not None and slices.pending:
            slices.sig_done.connect(self._made)
        else:
            self._made()

    def _made(self) -> None:
        if self.panel is None and self._building is not None:
            self.panel = self._building
            self._on_made(self.panel)

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if self._building is None:
            QTimer.singleShot(1, self._build_if_shown)

    def _build_if_shown(self) -> None:
        if self._building is None and self.isVisible():
            self._start()

    @property
    def pending(self) -> bool:
        """Shown but not built yet (the build waits for the next turn of the event loop), being built in
        slices, or drawing in slices."""
        if self.panel is None:
            return self.isVisible() or self._building is not None
        return bool(getattr(self.panel, "drawing", False))  # the Depth profile adds its lines a few per turn


class ModelView(QWidget):
    """A tab for one opened model."""

    sig_analysis_changed = Signal()
    sig_error = Signal(str, object, str)  # (dialog title, exception, what we were doing)
    sig_selection_changed = Signal(str)  # tree path ('' for the whole model)
    sig_legend_requested = Signal(str)  # a term of the memory planner's account

    def __init__(self, opened: OpenedModel, device: str = "auto", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 parent: QWidget | None = None, auto_analyse: bool = True, sliced: bool = False) -> None:
        """``sliced``: the frame (tool bar, tabs) now, the layer tree and the analysis on later turns of the
        event loop (``slices``), so opening a model never holds the window for the whole tab."""
        super().__init__(parent)
        self.opened = opened
        self.checkpoint = opened.checkpoint
        self.path = opened.path
        self.title = reference_title(opened.path) or model_title(opened.path)
        self.device = device
        self.chunk_bytes = chunk_bytes
        self.analysis_state = "idle"  # idle | running | done | cancelled | failed
        self.config_only = is_config_only(opened.checkpoint)  # from a config.json: an architecture, no values
        self.analysis_error: BaseException | None = None
        self.progress = None  # latest core.stats.AnalysisProgress
        self.result = None  # core.stats.AnalysisResult: live while running, final when done
        self.device_label = ""
        self.selection: Selection | None = None
        self.selection_result: SelectionStats | None = None
        self.selection_scoped: ScopedStats | None = None  # the latest update with its scope's words and roles
        self.histogram_scope = MATRICES  # which of a group's values the histogram is of (core.histogram_scope)
        self._read_summaries: dict = {}  # what selection jobs read themselves: a scope switch never reads it again
        self._selection_waiting = False
        self.selection_reading = False  # the selection job reads tensors the analysis has not covered
        self.analysis_meter = Throughput()
        self._stopping: list = []  # cancelled workers finishing their current chunk (they stop before the next)
        self.selection_meter = Throughput()
        self._tensor_done_count = 0
        self._last_refresh = 0.0
        self._closed = False
        self.found = None  # core.findings.Findings once computed
        self._findings_note = ""
        self._alpha: list | None = None  # alpha by layer (core.depth.alpha_profile) once the Spectra tab has run
        self._depth_shown: tuple | None = None  # (profiles, note) or ("waiting", text): what the depth panel shows
        self._heatmap_mark: tuple[str, tuple[int, ...]] | None = None  # (tensor, coordinates) of a clicked finding

        self.analysis_job = JobSlot("analysis", self)
        self.selection_job = JobSlot("selection", self)
        self.depth_job = JobSlot("depth", self)
        self.findings_job = JobSlot("findings", self)
        self.ticker = QTimer(self)
        self.ticker.setInterval(TICK_MS)
        self.ticker.timeout.connect(self._tick)
        self._draw_timer = QTimer(self)  # the selection's figures are drawn a turn after they arrive (_draw_selection)
        self._draw_timer.setSingleShot(True)
        self._draw_timer.setInterval(DRAW_DELAY_MS)
        self._draw_timer.timeout.connect(self._draw_selection)

        self._build_ui()
        self.compare = CompareTab(self)  # the Compare tab, added by compare_with
        steps = [self._build_tree, self._finish_tree]
        self.slices = Slices(self, [*steps, self.start_analysis] if auto_analyse else steps, sliced)

    def __getattr__(self, name: str):
        """The tree's attributes, asked for before the slices made them: the rest of the tab is made now."""
        slices = self.__dict__.get("slices")
        if name in BUILT_LATER and slices is not None and slices.pending:
            slices.finish()
            return getattr(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def compare_with(self, path: str) -> None:
        """Compare this model (A) with the model at ``path`` (B) in the Compare tab."""
        if not self._closed:
            self.compare.start(path)

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

        self._left_layout, self._tree_buttons = left_layout, (expand, collapse)

        self.tabs = QTabWidget(objectName="panel_tabs")
        self.tabs.setDocumentMode(True)
        self.summary_tab = LazyTab("summary", lambda: SummaryPanel(self.checkpoint, sliced=True),
                                   self._summary_made)
        self.distribution_tab = LazyTab("distribution", lambda: DistributionPanel(sliced=True),
                                        self._distribution_made)
        self.depth_tab = LazyTab("depth", lambda: DepthPanel(sliced=True), self._depth_made)
        self.heatmap_tab = LazyTab("heatmap", lambda: HeatmapPanel(sliced=True), self._heatmap_made)
        self.findings_tab = LazyTab("findings", FindingsPanel, self._findings_made)
        self.tabs.currentChanged.connect(lambda _i: hold_background(USER_ACT_HOLD_SECONDS))
        self.tabs.addTab(self.summary_tab, "Summary")
        self.tabs.addTab(self.distribution_tab, "Distribution")
        self.tabs.addTab(self.depth_tab, "Depth profile")
        self.tabs.addTab(self.heatmap_tab, "Heatmap")
        self.tabs.addTab(self.findings_tab, "Findings")
        self.tabs.setTabToolTip(self.tabs.indexOf(self.findings_tab),
                                "What needs a look: NaN or Inf, all-zero layers, outliers, crushed tensors")
        self.tabs.setTabToolTip(TAB_SUMMARY, "Parameter counts, where they live, dtypes, memory, architecture")
        self.tabs.setTabToolTip(TAB_DISTRIBUTION, "Histogram and statistics of the selected tensor or group")
        self.tabs.setTabToolTip(TAB_DEPTH, "A statistic against layer index, one line per role")
        self.tabs.setTabToolTip(TAB_HEATMAP, "The selected matrix as an image, downsampled by blocks")
        self.memory_tab = LazyTab("memory", lambda: MemoryPanel(self.checkpoint, self.title, sliced=True),
                                  self._memory_made)
        self.tabs.addTab(self.memory_tab, "Memory")
        self.tabs.setTabToolTip(self.tabs.indexOf(self.memory_tab),
                                "Will it fit? Memory for your GPU, workload, precision and context")
        self.spectra_tab = LazyTab("spectra", lambda: SpectraPanel(self.checkpoint),
                                   lambda panel: panel.sig_finished.connect(self._spectra_finished))
        self.tabs.addTab(self.spectra_tab, "Spectra")
        self.tabs.setTabToolTip(self.tabs.indexOf(self.spectra_tab), "How well each layer is trained, from its "
                                "eigenvalues (WeightWatcher's alpha and norms); computed while this tab is shown")
        if self.config_only:
            self._show_no_values()

        self.splitter.addWidget(left)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 4)
        self.splitter.setStretchFactor(1, 6)
        self.splitter.setSizes([560, 840])

    def _build_tree(self) -> None:
        """The layer tree's model and view, its first rows unfolded (the folded tree unless the fold box was
        unticked meanwhile)."""
        root = self.opened.folded if self.fold_check.isChecked() else self.opened.tree
        self.tree_model = LayerTreeModel(root, self.title, self.checkpoint.parameter_count, self)
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
        self._expand_default(collapse=False)  # before it is in the window: its first paint is its only one
        self._size_columns()

    def _finish_tree(self) -> None:
        """The tree into the window (painted on the next turn), and the controls over it wired."""
        self._left_layout.addWidget(self.tree, 1)
        expand, collapse = self._tree_buttons
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.filter_mode.currentIndexChanged.connect(self._apply_filter)
        self.fold_check.toggled.connect(self.set_folded)
        expand.clicked.connect(self.tree.expandAll)
        collapse.clicked.connect(self._collapse)
        self.tree.selectionModel().currentRowChanged.connect(self._current_changed)
        if self.filter_edit.text().strip():  # typed while the tree was being made
            self._apply_filter()

    # ------------------------------------------------------------------ panels, built when first shown
    @property
    def summary(self) -> SummaryPanel:
        return self.summary_tab.get()

    def _summary_made(self, panel: SummaryPanel) -> None:
        self._show_problem_count()

    def _show_problem_count(self) -> None:
        """The Summary's "3 problems found" line (SummaryPanel.set_problem_count, where the panel has it)."""
        panel = self.summary_tab.panel
        set_count = getattr(panel, "set_problem_count", None)
        if set_count is not None and self.found is not None:
            set_count(self.found.problems, self.found.analysed)

    @property
    def distribution(self) -> DistributionPanel:
        panel = self.distribution_tab.get()
        if self._draw_timer.isActive():  # whoever asks reads the latest figures at once
            self._draw_selection()
        return panel

    @property
    def depth(self) -> DepthPanel:
        return self.depth_tab.get()

    @property
    def heatmap(self) -> HeatmapPanel:
        return self.heatmap_tab.get()

    @property
    def findings(self) -> FindingsPanel:
        return self.findings_tab.get()

    def _distribution_made(self, panel: DistributionPanel) -> None:
        panel.sig_scope_changed.connect(self.set_histogram_scope)
        sel = self.selection
        panel.set_scope(self.histogram_scope, sel is not None and sel.single is None)
        if sel is None:
            return
        panel.show_pending(sel.title, sel.subtitle)
        if self.selection_scoped is not None:
            self._draw_timer.start()  # after the new panel's first paint, not inside it

    def set_histogram_scope(self, scope: str) -> None:
        """A group's histogram of its weight matrices, all values, or by role: re-merged from the summaries
        known; only tensors no job has summarised yet are read, and none after a Cancel."""
        self.histogram_scope = scope
        if self.distribution_tab.panel is not None:
            self.distribution_tab.panel.set_scope(scope, self.selection is not None and self.selection.single is None)
        if self.selection is not None and self.selection.single is None:
            self._start_selection_job(may_read=self.analysis_state != "cancelled")

    def _spectra_finished(self, result) -> None:
        """Alpha by layer for the Depth tab, from the spectra just computed."""
        from core.depth import alpha_profile

        self._alpha = alpha_profile(self.checkpoint.tensors, result)
        if self.depth_tab.panel is not None:
            self.depth_tab.panel.set_alpha(self._alpha)

    def _depth_made(self, panel: DepthPanel) -> None:
        panel.sig_tensor_clicked.connect(self.select_tensor)
        if self._alpha is not None:
            panel.set_alpha(self._alpha)
        self._show_depth(self._depth_shown)
        if self.selection is not None and self.selection.single is not None:
            panel.highlight(self.selection.single.name)

    def _show_depth(self, what: tuple | None) -> None:
        self._depth_shown = what
        panel = self.depth_tab.panel
        if panel is None or what is None:
            return
        if what[0] == "waiting":
            panel.set_waiting(what[1])
        else:
            panel.set_profiles(*what)

    def _heatmap_made(self, panel: HeatmapPanel) -> None:
        sel = self.selection
        if sel is not None:
            panel.set_tensor(self.checkpoint, sel.heatmap_tensor, sel.heatmap_note)
            self._mark_heatmap()

    def _mark_heatmap(self) -> None:
        panel = self.heatmap_tab.panel
        mark = getattr(panel, "mark_position", None)
        if panel is None or mark is None:
            return
        sel = self.selection
        tensor = sel.heatmap_tensor.name if sel is not None and sel.heatmap_tensor is not None else None
        if self._heatmap_mark is not None and self._heatmap_mark[0] == tensor:
            mark(self._heatmap_mark[1])
        else:
            mark(None)

    @property
    def memory(self) -> MemoryPanel:
        return self.memory_tab.get()

    def _memory_made(self, panel: MemoryPanel) -> None:
        panel.sig_legend_requested.connect(self.sig_legend_requested)

    def _show_no_values(self) -> None:
        """A model from its config.json has no values: its value tabs say so, and their panels are never built."""
        for tab in (self.distribution_tab, self.depth_tab, self.heatmap_tab, self.findings_tab, self.spectra_tab):
            index = self.tabs.indexOf(tab)
            label, tip = self.tabs.tabText(index), self.tabs.tabToolTip(index)
            self.tabs.removeTab(index)
            tab.setParent(self)
            tab.hide()
            self.tabs.insertTab(index, NoValuesPage(), label)
            self.tabs.setTabToolTip(index, tip)

    def _findings_made(self, panel: FindingsPanel) -> None:
        panel.sig_finding_activated.connect(self.show_finding)
        if self.found is not None:
            panel.set_findings(self.found, self._findings_note)
        else:
            panel.set_waiting("Waiting for the whole-model analysis…" if self.analysis_state == "running"
                              else "Computing findings…")

    def show_finding(self, finding) -> None:
        """Select the finding's tensor and show it: histogram now, the heatmap marked at its coordinates."""
        at = finding.at[0] if finding.at else None
        self._heatmap_mark = (finding.tensor, at) if at is not None and len(at) == 2 else None
        if self.select_tensor(finding.tensor):
            self.tabs.setCurrentWidget(self.distribution_tab)
            self._mark_heatmap()

    def _heatmap_slots(self) -> list[JobSlot]:
        panel = self.heatmap_tab.panel
        spectra = self.spectra_tab.panel  # the Spectra tab's job: stopped, awaited, cancelled with the heatmap's
        return [p.job for p in (panel, spectra) if p is not None]

    def _expand_default(self, collapse: bool = True) -> None:
        """The root, its short groups and their folded blocks unfolded; ``collapse``: everything else folded
        first (a new tree, just reset, has nothing unfolded: collapsing it is a layout of the whole tree for
        nothing)."""
        if collapse:
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
        self._expand_default(collapse=False)  # the reset folded every row
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
        hold_background(USER_ACT_HOLD_SECONDS)  # from the start: unfolding and scrolling are the act's work too
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
        hold_background(USER_ACT_HOLD_SECONDS)  # the new selection's panel is drawn before the analysis goes on
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
        if self.config_only:  # no values to read; the value tabs say so
            self.sig_selection_changed.emit(node.path)
            return
        sel = self._selection_for(node)
        self.selection = sel
        self.selection_result = None
        if self.tabs.currentIndex() == TAB_SUMMARY:
            self.tabs.setCurrentIndex(TAB_DISTRIBUTION)
        self.selection_scoped = None
        if self.distribution_tab.panel is not None:
            self.distribution_tab.panel.set_scope(self.histogram_scope, sel.single is None)
            self.distribution_tab.panel.show_pending(sel.title, sel.subtitle)
        if self.heatmap_tab.panel is not None:
            self.heatmap_tab.panel.set_tensor(self.checkpoint, sel.heatmap_tensor, sel.heatmap_note)
            self._mark_heatmap()
        if self.depth_tab.panel is not None:
            self.depth_tab.panel.highlight(sel.single.name if sel.single else None)
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
        known = {**self._read_summaries, **self._known_summaries()}
        missing_bytes = sum(t.nbytes for t in sel.tensors if t.name not in known)
        running = self.analysis_state == "running"
        analyse = may_read and bool(missing_bytes) and (not running or missing_bytes <= OWN_ANALYSIS_BYTES)
        self._selection_waiting = bool(missing_bytes) and running and not analyse
        self._last_refresh = time.monotonic()
        scope = self.histogram_scope if sel.single is None else ALL_VALUES
        job = functools.partial(scoped_selection_stats, self.checkpoint, sel.tensors, sel.title, scope, known,
                                analyse, self.device, self.chunk_bytes)
        self.selection_reading = analyse
        self.selection_meter.reset()
        self.selection_job.start(job, on_yield=self._selection_update, on_return=self._selection_finished,
                                 on_error=self._selection_failed, on_abort=self._selection_stopped)
        if analyse:
            self.ticker.start()
        self.sig_analysis_changed.emit()

    def _selection_finished(self, scoped: ScopedStats) -> None:
        if self.selection_reading and scoped.update.summaries:  # complete summaries only: the job's last word
            self._read_summaries.update(scoped.update.summaries)
        self.selection_reading = False
        self._selection_update(scoped)
        self._stop_ticker_when_quiet()
        self.sig_analysis_changed.emit()

    def _selection_stopped(self) -> None:
        self.selection_reading = False
        self._stop_ticker_when_quiet()
        self.sig_analysis_changed.emit()

    def _selection_update(self, scoped: ScopedStats) -> None:
        sel = self.selection
        if sel is None:
            return
        update = scoped.update
        self.selection_scoped = scoped
        self.selection_result = update
        if self.selection_reading:
            self.selection_meter.add(update.bytes_done)
        if self.distribution_tab.panel is not None:  # else kept in selection_scoped: drawn when the panel is made
            self._draw_timer.start()

    def _draw_selection(self) -> None:
        """The latest figures of the selection into the Distribution panel, a turn after they arrived: a
        selection whose figures are known (the analysis is done) would otherwise draw the plot in the same turn
        as the tree paints the new row (20 + 25 ms)."""
        self._draw_timer.stop()
        sel, scoped, panel = self.selection, self.selection_scoped, self.distribution_tab.panel
        if sel is None or scoped is None or panel is None:
            return
        update = scoped.update
        if update.stats is None:
            if self._selection_waiting:
                panel.show_pending(sel.title, f"{sel.subtitle} · waiting for the whole-model analysis")
            elif update.tensors_done < update.tensors_total:
                panel.clear(sel.title, f"{sel.subtitle} · not analysed yet")
            else:
                panel.clear(sel.title, f"{sel.subtitle} · no numeric values to show")
            return
        sub = sel.subtitle if sel.single is not None else scoped.words
        complete = update.tensors_done >= update.tensors_total and update.fraction >= 1
        if not complete:
            part = partial_text(update.tensors_done, update.tensors_total, update.fraction)
            if self.selection_reading:  # the partial figures first: a narrow panel cuts the end of the line
                sub = f"reading: {part} · {sub}"
            elif self._selection_waiting:
                sub = f"partial: {part} · {sub} · the whole-model analysis fills in the rest"
            else:
                sub = f"partial: {part} · {sub} · analysis {self.analysis_state}: select again to read the rest"
        fraction = 1.0 if complete else min(update.fraction, 0.999)
        if complete:  # the figures the user asked for, drawn and painted before the analysis goes on (once: a
            hold_background(USER_ACT_HOLD_SECONDS)  # hold at every partial update would slow what feeds them)
        if scoped.roles is not None:
            panel.set_roles(scoped.roles, update.stats, sel.title, sub, fraction)
        else:
            panel.set_stats(update.stats, sel.title, sub, fraction)

    def _selection_failed(self, exc: BaseException) -> None:
        from gui.errors import reason

        self.selection_reading = False
        self._stop_ticker_when_quiet()
        if self.selection is not None and self.distribution_tab.panel is not None:
            self.distribution.clear(self.selection.title,
                                    f"could not compute statistics: {reason(exc, 'computing statistics')}")
        self.sig_analysis_changed.emit()
        from core.errors import CheckpointError

        if not isinstance(exc, CheckpointError):
            self.sig_error.emit("Internal error", exc, "computing the selection's statistics")

    # ------------------------------------------------------------------ whole-model analysis
    def start_analysis(self) -> None:
        """(Re)start the statistics of every tensor in the background."""
        if self._closed or self.config_only:
            return
        checkpoint, device, chunk = self.checkpoint, self.device, self.chunk_bytes

        def job(stop):
            lower_thread_priority()  # and its reading threads': the UI thread first when cores are scarce
            warm_imports()
            return analysis(checkpoint, None, device, chunk, stop)

        self.analysis_state = "running"
        self.analysis_error = None
        self.progress = None
        self.analysis_meter.reset()
        self.analysis_job.start(job, on_yield=self._analysis_progress, on_return=self._analysis_done,
                                on_error=self._analysis_failed, on_abort=self._analysis_aborted)
        self.ticker.start()
        self._show_depth(("waiting", "Waiting for the whole-model analysis…"))
        self.found = None
        self.findings_job.cancel()
        if self.findings_tab.panel is not None:
            self.findings_tab.panel.set_waiting("Waiting for the whole-model analysis…")
        self.sig_analysis_changed.emit()

    def is_reading(self) -> bool:
        """Whether a job of this tab reads values now: the whole-model analysis or the selection's own."""
        return self.analysis_state == "running" or self.selection_reading or self.compare.running

    def cancel_analysis(self) -> None:
        """Cancel means cancel: no job of this tab reads the file afterwards until the user asks again."""
        self.compare.cancel()
        was_reading = self.is_reading()
        self._remember_stopping(*self._heatmap_slots(), self.selection_job, self.analysis_job, self.findings_job)
        if self.heatmap_tab.panel is not None:
            self.heatmap_tab.panel.cancel()
        if self.findings_job.busy:  # it was locating findings in the file: list them without reading instead
            self.findings_job.cancel()
            self._start_findings_job(read=False)
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
            self._show_depth(("waiting", f"Not analysed yet: whole-model analysis {p.fraction:.0%}"))
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
        self._start_findings_job()
        self.sig_analysis_changed.emit()

    def _start_findings_job(self, read: bool | None = None) -> None:
        """Findings of what was analysed; only a finished analysis may read values (for coordinates), and not
        after the user cancelled."""
        if self._closed or self.result is None:
            return
        from core.findings import find

        result, checkpoint = self.result, self.checkpoint
        read = self.analysis_state == "done" if read is None else read
        if self.analysis_state != "done":
            self._findings_note = (f"Partial: the analysis was {self.analysis_state}; only the tensors analysed so "
                                   "far were checked.")
        else:
            self._findings_note = "" if read else "Cancelled before the coordinates were located."
        self.findings_job.start(lambda stop: find(result, checkpoint, read_values=read, should_stop=stop),
                                on_return=self._findings_done, on_error=self._findings_failed)

    def _findings_done(self, found) -> None:
        self.found = found
        if self.findings_tab.panel is not None:
            self.findings_tab.panel.set_findings(found, self._findings_note)
        marks: dict[str, list[tuple[str, str]]] = {}
        for f in found.all():
            marks.setdefault(f.tensor, []).append((f.severity, f.message))
        self.tree_model.set_findings(marks)
        self._show_problem_count()
        self.sig_analysis_changed.emit()

    def _findings_failed(self, exc: BaseException) -> None:
        from core.errors import CheckpointError
        from gui.errors import reason

        if self.findings_tab.panel is not None:
            self.findings_tab.panel.set_waiting(f"Could not compute the findings: {reason(exc, 'finding problems')}")
        if not isinstance(exc, CheckpointError):
            self.sig_error.emit("Internal error", exc, "finding problems")

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
        self.depth_job.start(job, on_return=lambda profiles: self._show_depth((profiles, note)),
                             on_error=self._depth_failed)

    def _depth_failed(self, exc: BaseException) -> None:
        from gui.errors import reason

        self._show_depth(("waiting", f"Depth profile failed: {reason(exc, 'computing the depth profile')}"))
        self.sig_error.emit("Internal error", exc, "computing the depth profile")

    # ------------------------------------------------------------------ status
    def status_text(self) -> str:
        if self.compare.running:
            return self.compare.status_text(self.title)
        if self.config_only:
            return f"{self.title}: {NO_VALUES_TEXT}"
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
        if self.compare.running:
            return self.compare.progress_fraction
        if self.analysis_state != "running" and self.selection_reading:
            return self.selection_result.fraction if self.selection_result is not None else 0.0
        return self.progress.fraction if self.progress is not None else 0.0

    def is_idle(self) -> bool:
        return not (self.slices.pending or self._draw_timer.isActive()
                    or self.analysis_job.busy or self.selection_job.busy or self.depth_job.busy
                    or self.findings_job.busy or any(slot.busy for slot in self._heatmap_slots())
                    or any(tab.pending for tab in self.findChildren(LazyTab))
                    or any(not w.is_done for w in self._stopping) or not self.compare.is_idle())

    def shutdown(self) -> None:
        """Cancel every job of this view; the checkpoint is closed once they have all stopped."""
        self._closed = True
        self.ticker.stop()
        self.compare.shutdown()
        running = self.pending_workers()
        for slot in (self.analysis_job, self.selection_job, self.depth_job, self.findings_job,
                     *self._heatmap_slots()):
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
        live = [slot.worker for slot in (self.analysis_job, self.selection_job, self.depth_job, self.findings_job,
                                         *self._heatmap_slots()) if slot.worker is not None]
        return [w for w in live + self._stopping + self.compare.workers() if not w.is_done]

    def current_node(self) -> TreeNode | None:
        index = self.tree.currentIndex()
        return self.tree_model.node(self.proxy.mapToSource(index)) if index.isValid() else None

    def source_index(self, node: TreeNode, column: int = COL_NAME) -> QModelIndex:
        return self.tree_model.index_of(node, column)
