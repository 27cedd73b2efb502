"""The application window: menus and actions, the welcome page, one tab per model, drag-and-drop.

Every way of opening (menu, recent list, drop, command line, the OS's
FileOpen event, the sample button) ends in ``open_paths``, which opens each
path in a worker and adds a tab when it is done. Refused files become a
dialog with the one-line reason; the window carries on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from PySide6.QtCore import QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from core.checkpoint import DEFAULT_CHUNK_BYTES
from core.errors import CheckpointError
from core.foreground import USER_ACT_HOLD_SECONDS, hold_background, release_background
from core.taxonomy import KIND_HELP
from gui import workers
from gui.app import freeze_startup_objects
from gui.errors import show_error
from gui.jobs import OpenedModel, load_model
from gui.model_view import ModelView, model_title
from gui.plain import bounded, mnemonic_safe, plain_label, tooltip
from gui.recent import add_recent, recent_paths
from gui.references import reference_label, reference_list
from gui.settings_dialog import SettingsDialog, analysis_device

FILE_FILTER = ("Checkpoints (*.safetensors *.gguf *.bin *.pt *.pth *.ckpt *.json);;"
               "All files (*)")
DROP_TEXT = ("Drop a checkpoint or a model folder here\n"
             ".safetensors · .gguf · PyTorch .bin / .pt / .pth / .ckpt · sharded *.index.json · folders")

LEGEND_HTML = f"""
<h3>What the numbers mean</h3>
<p><b>Parameters</b> are the learned numbers of a model: weights + biases + embeddings. Buffers and training
state are not counted.</p>
<ul>
<li><b>Weights</b>: {KIND_HELP['weight']}</li>
<li><b>Biases</b>: {KIND_HELP['bias']}</li>
<li><b>Embeddings</b>: {KIND_HELP['embedding']}</li>
<li><b>Buffers</b>: {KIND_HELP['buffer']}</li>
<li><b>Training state</b>: {KIND_HELP['state']}</li>
</ul>
<p><b>Roles</b> say which part of the network uses a tensor: attention <i>q</i> (queries), <i>k</i> (keys),
<i>v</i> (values), <i>o</i> (output projection); MLP <i>up</i>, <i>gate</i> and <i>down</i> projections;
<i>norm</i> (normalisation scales); <i>recurrent</i> (LSTM/GRU input and hidden matrices);
<i>convolution</i> kernels; <i>embedding</i> tables; the output <i>head</i>.</p>
<p><b>Folded rows</b> such as <code>layers.0-31 (x32)</code> stand for identical repeated blocks; their counts add
up all of them. Untick "Fold repeated blocks" to see each block.</p>
<h3>Statistics</h3>
<ul>
<li><b>Mean</b> and <b>std (σ)</b>: the average value and the typical distance from it.</li>
<li><b>Max |w|</b>: the largest magnitude. <b>L2 norm</b>: the square root of the sum of squares.</li>
<li><b>Kurtosis</b>: tail weight, 3 for a Gaussian; much larger values mean rare, extreme values.</li>
<li><b>Beyond 6σ</b>: values more than six standard deviations from the mean (outliers).</li>
<li><b>pN</b>: N% of the values are at or below this number.</li>
<li><b>NaN / ±Inf</b>: not-a-number and infinite values, a sign of a broken checkpoint.</li>
</ul>
<p>Statistics are exact: 16-bit values are counted bit pattern by bit pattern; 32-bit values keep exact moments,
extremes and tails. Memory figures: parameters × bytes per parameter (fp32 4, bf16 2, int8 1, int4 ½).</p>
<h3><a name="memory"></a>Memory: will it fit?</h3>
<ul>
<li><a name="parameters"></a><b>Parameters</b>: each is one number the model learned; all of them sit in GPU
memory while it runs.</li>
<li><a name="precision"></a><b>Precision</b>: bytes per number. fp32 4, bf16 and fp16 2, fp8 and int8 1, int4 ½.
GGUF types (Q8_0, Q4_K …) store blocks of numbers with a shared scale: bits per weight = 8 × block bytes ÷ block
size (Q4_K 4.5, Q8_0 8.5).</li>
<li><a name="context"></a><b>Context</b>: the tokens the model looks back over at once (prompt and answer).</li>
<li><a name="kv-cache"></a><b>KV cache</b>: the keys and values of every earlier token, kept by every layer so
each new token need not recompute them: layers × KV heads × (key + value size) × bytes, per token. Grouped-query
attention (fewer KV heads) shrinks it; sliding-window layers keep only their window.</li>
<li><a name="activations"></a><b>Activations</b> (estimate): what the layers compute on the way through; in
training they are kept for the backward pass and grow with batch × context.</li>
<li><a name="gradients"></a><b>Gradients</b>: one per trained number, saying how it should change.</li>
<li><a name="optimizer"></a><b>Optimizer states</b>: Adam keeps two running averages per trained number (8 bytes
in fp32, 2 with 8-bit Adam) and, in mixed precision, an fp32 master copy (4 bytes).</li>
<li><a name="lora"></a><b>LoRA</b>: fine-tuning that freezes the model and trains small adapter matrices beside
it, so gradients and optimizer states stay small.</li>
<li><a name="moe"></a><b>Mixture of experts</b>: each token passes through a few experts only (the active
parameters), but all experts must be in memory.</li>
<li><a name="overhead"></a><b>Runtime overhead</b> (estimate): the CUDA context and library workspaces on each GPU,
and gaps the allocator cannot use.</li>
<li><b>GiB and GB</b>: GPU memory is sold in GiB (2<sup>30</sup> bytes, an "80GB" card has 80 GiB); model cards
often say GB (10<sup>9</sup> bytes), 7% less per unit.</li>
</ul>
<h3><a name="spectra"></a>Spectra: how well trained is a layer?</h3>
<ul>
<li><b>Eigenvalues</b> (λ = σ²): the squared singular values of a weight matrix, the strengths of the directions it
stretches its input along.</li>
<li><a name="alpha"></a><b>Alpha</b>: the exponent of the power law fitted to the large eigenvalues; it measures
how heavy-tailed the layer's spectrum is. From 2 to 6 is typical of well-trained layers; under 2, over-trained
(a risk of rank collapse); over 6, under-trained; over 8 the fit itself is unreliable. No data is needed.</li>
<li><b>xmin</b> and <b>D</b>: where the fitted tail starts, and the Kolmogorov–Smirnov distance between the fit and
the eigenvalues (smaller is a better fit).</li>
<li><b>Stable rank</b>: the sum of the eigenvalues over the largest, how many directions really carry weight.
<b>Log norm</b> and <b>log spectral norm</b>: log<sub>10</sub> of the squared Frobenius norm and of λ<sub>max</sub>.
<b>Alpha-weighted</b>: alpha × log<sub>10</sub> λ<sub>max</sub>, WeightWatcher's quality measure across layers.</li>
</ul>
"""


class WelcomePage(QWidget):
    """What the window shows with no model open: the three ways in, the recent list, and a drop zone."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.window_ = window
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        column = QVBoxLayout()
        column.setSpacing(12)
        title = QLabel("Weightscope")
        title.setObjectName("WelcomeTitle")
        subtitle = QLabel("See what is inside a neural-network checkpoint: where the parameters are, how many are "
                          "weights, biases and embeddings, and how their values are distributed.")
        subtitle.setWordWrap(True)
        subtitle.setObjectName("Muted")
        column.addWidget(title)
        column.addWidget(subtitle)
        buttons = QHBoxLayout()
        self.open_file = QPushButton("Open File…", objectName="welcome_open_file")
        self.open_folder = QPushButton("Open Folder…", objectName="welcome_open_folder")
        self.open_sample = QPushButton("Open Sample Model", objectName="welcome_open_sample")
        self.open_file.setProperty("primary", True)
        for b in (self.open_file, self.open_folder, self.open_sample):
            b.setMinimumHeight(34)
            buttons.addWidget(b)
        buttons.addStretch(1)
        column.addLayout(buttons)
        self.drop_zone = QLabel(DROP_TEXT, objectName="DropZone")
        self.drop_zone.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.drop_zone.setMinimumHeight(110)
        column.addWidget(self.drop_zone)
        recent_title = QLabel("Recent")
        recent_title.setObjectName("PanelTitle")
        column.addWidget(recent_title)
        self.recent = QListWidget(objectName="welcome_recent")
        self.recent.setMaximumHeight(190)
        column.addWidget(self.recent)
        column.addWidget(plain_label("Reference models: architecture only, no download", "PanelTitle"))
        self.references = QListWidget(objectName="welcome_references")
        self.references.setMaximumHeight(150)
        self.references.setFlow(QListWidget.Flow.TopToBottom)  # columns of names, not one run-on line
        self.references.setWrapping(True)
        self.references.setSpacing(3)
        self.references.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.references.setToolTip("Open a well-known model from its config.json: exact parameter counts and the "
                                   "memory planner, without its weights")
        column.addWidget(self.references)
        holder = QHBoxLayout()
        holder.addStretch(1)
        holder.addLayout(column, 3)
        holder.addStretch(1)
        outer.addLayout(holder)
        outer.addStretch(2)
        self.open_file.clicked.connect(window.open_file_dialog)
        self.open_folder.clicked.connect(window.open_folder_dialog)
        self.open_sample.clicked.connect(window.open_sample)
        self.recent.itemActivated.connect(lambda item: window.open_paths([item.data(Qt.ItemDataRole.UserRole)]))
        self.references.itemActivated.connect(lambda item: window.open_paths([item.data(Qt.ItemDataRole.UserRole)]))
        self.references.itemClicked.connect(lambda item: window.open_paths([item.data(Qt.ItemDataRole.UserRole)]))
        for ref in reference_list():
            item = QListWidgetItem(reference_label(ref))
            item.setData(Qt.ItemDataRole.UserRole, ref.path)
            item.setToolTip(tooltip(f"{ref.title}: {ref.parameters:,} parameters"))
            self.references.addItem(item)
        self.refresh()

    def refresh(self) -> None:
        self.recent.clear()
        paths = recent_paths()
        for path in paths:
            item = QListWidgetItem(f"{model_title(path)}    —    {path}")
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setToolTip(tooltip(path))
            self.recent.addItem(item)
        if not paths:
            item = QListWidgetItem("Models you open will be listed here.")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.recent.addItem(item)


def preload_readers() -> None:
    """Import the file readers and the gguf package's quant-type table, and compile the counting loops, now
    (~100 ms from compiled bytecode, and ~100 ms to compile, before the window shows). Done first by the worker
    that opens or analyses a model, they held Python's import lock, or handed the GIL back and forth with the UI
    thread through each of its hundreds of calls into Python per paint: 60-140 ms stalls at the first open."""
    import core.formats
    import core.formats.gguf_format
    import core.formats.pytorch_format
    import core.formats.safetensors_format  # noqa: F401
    from core import dtypes, native_count

    dtypes.lookup("Q4_K")  # the quant types come from the gguf package (and its imports: yaml, ...)
    native_count.counter()  # llvmlite's import and the counting loops' compiling (~0.1 s), for the same reason


class MainWindow(QMainWindow):
    """Weightscope's window. ``interactive=False`` (screenshots, benchmarks) records errors instead of showing
    dialogs."""

    sig_model_opened = Signal(object)  # ModelView
    sig_open_failed = Signal(str, object)  # (path, exception)

    def __init__(self, interactive: bool = True, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 auto_analyse: bool = True) -> None:
        super().__init__()
        preload_readers()
        self.setObjectName("main_window")
        self.setWindowTitle("Weightscope")
        self.interactive = interactive
        self.chunk_bytes = chunk_bytes
        self.auto_analyse = auto_analyse
        self.errors: list[tuple[str, BaseException]] = []
        self._opening: dict[str, workers.Worker] = {}
        self._adding: list[ModelView] = []  # made, to be added as a tab on the next turn (_add_view)
        self._closing = False
        self.setAcceptDrops(True)

        self.stack = QStackedWidget()
        self.welcome = WelcomePage(self)
        self.tabs = QTabWidget(objectName="model_tabs")
        self.tabs.setTabsClosable(True)
        self.tabs.setMovable(True)
        self.tabs.setDocumentMode(True)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.tabs)
        self.setCentralWidget(self.stack)
        self.tabs.tabCloseRequested.connect(self.close_tab)
        self.tabs.currentChanged.connect(self._update_status)
        self.tabs.currentChanged.connect(lambda _i: hold_background(USER_ACT_HOLD_SECONDS))

        self._build_status_bar()
        self._build_actions()
        self._build_menus()
        self.resize(1400, 900)
        self._restore_geometry()
        self._update_status()
        freeze_startup_objects()

    # ------------------------------------------------------------------ actions & menus
    def _action(self, name: str, text: str, slot, shortcut: QKeySequence | str | None = None, tip: str = "",
                checkable: bool = False) -> QAction:
        action = QAction(text, self, objectName=name)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey  # noqa: N806
        self.action_open_file = self._action("action_open_file", "&Open File…", self.open_file_dialog,
                                             K.Open, "Open a checkpoint file or a sharded index")
        self.action_open_folder = self._action("action_open_folder", "Open &Folder…", self.open_folder_dialog,
                                               "Ctrl+Shift+O", "Open a model folder (Hugging Face layout)")
        self.action_open_sample = self._action("action_open_sample", "Open &Sample Model", self.open_sample,
                                               None, "Open the small model bundled with Weightscope")
        self.action_export_report = self._action("action_export_report", "&Export Report (PDF)…",
                                                 self.export_report, "Ctrl+E", "Save a PDF report of this model")
        self.action_export_csv = self._action("action_export_csv", "Export Statistics as &CSV…",
                                              lambda: self.export_statistics("csv"), None,
                                              "One row of statistics per tensor, for spreadsheets")
        self.action_export_json = self._action("action_export_json", "Export Statistics as &JSON…",
                                               lambda: self.export_statistics("json"), None,
                                               "Every statistic and histogram per tensor, for scripts")
        self.action_close_tab = self._action("action_close_tab", "&Close Tab", self.close_current_tab, K.Close)
        self.action_compare_with = self._action("action_compare_with", "Compare &With…", self.compare_with_dialog,
                                                "Ctrl+D", "What changed from this model to another file: per "
                                                "tensor, per layer (or drop a model on the tab holding Ctrl)")
        self.action_compare_folder = self._action("action_compare_folder", "Compare With F&older…",
                                                  lambda: self.compare_with_dialog(folder=True), None,
                                                  "What changed from this model to a model folder")
        self.action_settings = self._action("action_settings", "Se&ttings…", self.open_settings, K.Preferences,
                                            "Choose where statistics are computed")
        self.action_quit = self._action("action_quit", "&Quit", self.close, K.Quit)
        self.action_fold = self._action("action_fold", "&Fold Repeated Blocks", self._fold_toggled, None,
                                        "Show identical numbered blocks as one row", checkable=True)
        self.action_fold.setChecked(True)
        self.action_expand_all = self._action("action_expand_all", "&Expand All", lambda: self._on_view(
            lambda v: v.tree.expandAll()))
        self.action_collapse_all = self._action("action_collapse_all", "&Collapse All", lambda: self._on_view(
            lambda v: v._collapse()))
        self.action_cancel_analysis = self._action("action_cancel_analysis", "C&ancel Analysis",
                                                   self.cancel_analysis, "Esc")
        self.action_rerun_analysis = self._action("action_rerun_analysis", "Analyse &Again",
                                                  lambda: self._on_view(self._restart_analysis), "F5",
                                                  "Run the whole-model statistics again (e.g. on another device)")
        self.panel_actions = []
        for i, label in enumerate(("Summary", "Distribution", "Depth Profile", "Heatmap")):
            action = self._action(f"action_show_{label.split()[0].lower()}", f"Show {label}",
                                  lambda _=False, i=i: self._on_view(lambda v: v.tabs.setCurrentIndex(i)),
                                  f"Ctrl+{i + 1}")
            self.panel_actions.append(action)
        self.panel_actions.append(self._action("action_show_memory", "Show Memory Planner", lambda: self._on_view(
            lambda v: v.tabs.setCurrentWidget(v.memory_tab)), "Ctrl+6", "Will it fit? GPU memory for this model"))
        self.action_legend = self._action("action_legend", "&Legend: What the Numbers Mean", self.show_legend,
                                          K.HelpContents)
        self.action_about = self._action("action_about", "&About Weightscope", self.show_about)
        self.action_compare_memory = self._action("action_compare_memory", "Compare &Memory…",
                                                  self.open_memory_compare, None,
                                                  "Several models side by side: parameters, bytes, KV cache, GPUs")

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.action_open_file)
        file_menu.addAction(self.action_open_folder)
        self.menu_recent = file_menu.addMenu("Open &Recent")
        self.menu_recent.setObjectName("menu_recent")
        self.menu_recent.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        file_menu.addAction(self.action_open_sample)
        self.menu_reference = file_menu.addMenu("Open Re&ference Model")
        self.menu_reference.setObjectName("menu_reference")
        for ref in reference_list():
            action = self.menu_reference.addAction(mnemonic_safe(reference_label(ref)))
            action.setObjectName(f"action_reference_{ref.name}")
            action.setData(ref.path)
            action.triggered.connect(lambda _=False, p=ref.path: self.open_paths([p]))
        file_menu.addSeparator()
        file_menu.addAction(self.action_compare_with)
        file_menu.addAction(self.action_compare_folder)
        file_menu.addSeparator()
        file_menu.addAction(self.action_export_report)
        file_menu.addAction(self.action_export_csv)
        file_menu.addAction(self.action_export_json)
        file_menu.addSeparator()
        file_menu.addAction(self.action_settings)
        file_menu.addSeparator()
        file_menu.addAction(self.action_close_tab)
        file_menu.addAction(self.action_quit)
        view_menu = bar.addMenu("&View")
        for action in self.panel_actions:
            view_menu.addAction(action)
        view_menu.addSeparator()
        view_menu.addAction(self.action_fold)
        view_menu.addAction(self.action_expand_all)
        view_menu.addAction(self.action_collapse_all)
        view_menu.addSeparator()
        view_menu.addAction(self.action_cancel_analysis)
        view_menu.addAction(self.action_rerun_analysis)
        tools_menu = bar.addMenu("&Tools")
        tools_menu.addAction(self.action_compare_memory)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.action_legend)
        help_menu.addAction(self.action_about)

    def _fill_recent_menu(self) -> None:
        self.menu_recent.clear()
        paths = recent_paths()
        for path in paths:
            action = self.menu_recent.addAction(mnemonic_safe(f"{bounded(model_title(path))}  —  {path}"))
            action.setData(path)
            action.triggered.connect(lambda _=False, p=path: self.open_paths([p]))
        if not paths:
            self.menu_recent.addAction("(none)").setEnabled(False)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status_label = plain_label("", "status_label")  # shows file and tensor names
        self.progress_bar = QProgressBar(objectName="analysis_progress")
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setMaximumHeight(16)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel", objectName="analysis_cancel")
        self.cancel_button.setToolTip("Stop reading values (finished tensors keep their statistics)")
        self.cancel_button.clicked.connect(self.cancel_analysis)
        self.device_label = plain_label("", "device_label")
        self.device_label.setToolTip(
            "Where statistics are computed; choose it in File > Settings. \"Compiled counting\": the loops that"
            " count every value were compiled for this processor when the app started, which makes them several"
            " times faster; the figures are the same either way")
        bar.addWidget(self.status_label, 1)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)
        bar.addPermanentWidget(self.device_label)

    # ------------------------------------------------------------------ opening
    def open_paths(self, paths: Iterable[str]) -> None:
        """The one open path: each file or folder opens in a worker and gets its own tab."""
        for raw in paths:
            path = os.path.abspath(os.fspath(raw))
            existing = self.view_for_path(path)
            if existing is not None:
                self.tabs.setCurrentWidget(existing)
                continue
            if path in self._opening or self._closing or any(view.path == path for view in self._adding):
                continue
            self._opening[path] = workers.start(
                lambda _stop, p=path: load_model(p), f"open {path}",
                on_return=self._opened, on_error=lambda exc, p=path: self._open_failed(p, exc),
                on_finish=lambda p=path: self._open_finished(p))
        self._update_status()

    def _opened(self, opened: OpenedModel) -> None:
        if self._closing:
            opened.checkpoint.close()
            return
        view = ModelView(opened, analysis_device(), self.chunk_bytes, auto_analyse=self.auto_analyse, sliced=True)
        view.fold_check.setChecked(self.action_fold.isChecked())
        view.sig_analysis_changed.connect(self._update_status)
        view.sig_error.connect(self._view_error)
        view.sig_legend_requested.connect(self.show_legend)
        self._adding.append(view)  # the tab added on a turn of its own: with the view made, one stall of 15 ms
        QTimer.singleShot(1, lambda: self._add_view(view))

    def _add_view(self, view: ModelView) -> None:
        """The made view into the tabs, shown (the tab bar's layout and the new page's first paint)."""
        hold_background(USER_ACT_HOLD_SECONDS)
        self._adding.remove(view)
        if self._closing:
            view.shutdown()
            return
        index = self.tabs.addTab(view, mnemonic_safe(bounded(view.title, 40)))
        self.tabs.setTabToolTip(index, tooltip(view.path))
        self.tabs.setCurrentIndex(index)
        self.stack.setCurrentWidget(self.tabs)
        if self.interactive:  # screenshots and benchmarks leave the user's recent list alone
            add_recent(view.path)
            self.welcome.refresh()
        self.sig_model_opened.emit(view)

    def _open_failed(self, path: str, exc: BaseException) -> None:
        self.errors.append((path, exc))
        self.sig_open_failed.emit(path, exc)
        if self.interactive and not self._closing:
            show_error(self, "Could not open the model", exc, path, context="opening the model",
                       informative="Nothing was opened from this file. Weightscope never runs code from checkpoints.")

    def _open_finished(self, path: str) -> None:
        self._opening.pop(path, None)
        self._update_status()

    def _view_error(self, title: str, exc: BaseException, context: str = "") -> None:
        view = self.sender()
        self.errors.append((getattr(view, "path", ""), exc))
        if self.interactive and not self._closing:
            show_error(self, title, exc, getattr(view, "path", None), context=context)

    def open_file_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open checkpoint", self._last_dir(), FILE_FILTER)
        if paths:
            QSettings().setValue("dialogs/last_dir", os.path.dirname(paths[0]))
            self.open_paths(paths)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open model folder", self._last_dir())
        if path:
            QSettings().setValue("dialogs/last_dir", path)
            self.open_paths([path])

    def _last_dir(self) -> str:
        value = QSettings().value("dialogs/last_dir", "")
        return value if isinstance(value, str) and os.path.isdir(value) else os.path.expanduser("~")

    def open_sample(self) -> None:
        from core.errors import MissingFilesError
        from resources import sample_model_path

        path = sample_model_path()
        if not os.path.exists(path):
            self._open_failed(path, MissingFilesError("the bundled sample model is missing from this installation",
                                                      path=path))
            return
        self.open_paths([path])

    # ------------------------------------------------------------------ drag and drop
    @staticmethod
    def _local_paths(mime) -> list[str]:
        if mime is None or not mime.hasUrls():
            return []
        return [url.toLocalFile() for url in mime.urls() if isinstance(url, QUrl) and url.isLocalFile()]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self._local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if self._local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = self._local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        view = self.current_view()
        compare = event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
        if compare and view is not None and not view.config_only:  # a modifier held: compare with the open tab
            view.compare_with(paths[0])
            return
        self.open_paths(paths)

    def compare_with_dialog(self, folder: bool = False) -> None:
        """Choose model B (a file, or a folder) and compare the current tab's model with it."""
        view = self.current_view()
        if view is None:
            return
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Compare with model folder", self._last_dir())
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Compare with", self._last_dir(), FILE_FILTER)
        if path and getattr(view.checkpoint, "lora", None) is not None:  # a LoRA adapter: with its base model
            from gui.panels.lora import compare_adapter_with_base

            compare_adapter_with_base(view, path)
        elif path:
            view.compare_with(path)

    # ------------------------------------------------------------------ tabs & views
    def views(self) -> list[ModelView]:
        return [self.tabs.widget(i) for i in range(self.tabs.count())]

    def current_view(self) -> ModelView | None:
        widget = self.tabs.currentWidget()
        return widget if isinstance(widget, ModelView) else None

    def view_for_path(self, path: str) -> ModelView | None:
        for view in self.views():
            if os.path.abspath(view.path) == os.path.abspath(path):
                return view
        return None

    def _on_view(self, fn) -> None:
        view = self.current_view()
        if view is not None:
            fn(view)

    def close_tab(self, index: int) -> None:
        view = self.tabs.widget(index)
        if not isinstance(view, ModelView):
            return
        view.shutdown()
        self.tabs.removeTab(index)
        view.deleteLater()
        if self.tabs.count() == 0:
            self.stack.setCurrentWidget(self.welcome)
            self.welcome.refresh()
        self._update_status()

    def close_current_tab(self) -> None:
        if self.tabs.count():
            self.close_tab(self.tabs.currentIndex())

    def _fold_toggled(self, checked: bool) -> None:
        for view in self.views():
            view.set_folded(checked)

    def cancel_analysis(self) -> None:
        self._on_view(lambda v: v.cancel_analysis())
        self._update_status()

    def _restart_analysis(self, view: ModelView) -> None:
        view.device = analysis_device()
        view.start_analysis()

    def is_idle(self) -> bool:
        """No model opening and no job running in any tab (screenshots and tests wait for this)."""
        return not self._opening and not self._adding and all(view.is_idle() for view in self.views())

    # ------------------------------------------------------------------ status bar
    def _update_status(self, *_args) -> None:
        view = self.current_view()
        if self._opening:
            names = ", ".join(model_title(p) for p in self._opening)
            self.status_label.setText(f"Opening {names}…")
            self.progress_bar.setRange(0, 0)  # busy: header parsing has no byte count
            self.progress_bar.show()
            self.cancel_button.hide()
        elif view is not None and view.is_reading():
            self.status_label.setText(view.status_text())
            self._set_progress(view.progress_fraction)
            self.progress_bar.show()
            self.cancel_button.show()
        else:
            self.status_label.setText(view.status_text() if view is not None else "Ready")
            self.progress_bar.hide()
            self.cancel_button.hide()
        device = view.device_label if view is not None and view.device_label else ""
        setting = analysis_device()
        self.device_label.setText(f"Device: {device}" if device else f"Device: {setting}")
        for action in (self.action_export_report, self.action_export_csv, self.action_export_json):
            action.setEnabled(view is not None and not view.config_only)  # a config.json has no values to export
        self.action_close_tab.setEnabled(view is not None)
        for action in (self.action_compare_with, self.action_compare_folder):
            action.setEnabled(view is not None and not view.config_only)
        self.action_cancel_analysis.setEnabled(view is not None and view.is_reading())

    def _set_progress(self, fraction: float) -> None:
        """The bar's new value, painted on the next paint event: QProgressBar.setValue repaints at once (about
        17 ms of UI thread per call) unless updates are off; the ticker already calls this a few times a second."""
        value, text = int(fraction * 1000), f"{fraction:.0%}"
        bar = self.progress_bar
        if bar.maximum() == 1000 and bar.value() == value and bar.format() == text:
            return
        bar.setUpdatesEnabled(False)
        try:
            bar.setRange(0, 1000)
            bar.setValue(value)
            bar.setFormat(text)
        finally:
            bar.setUpdatesEnabled(True)  # schedules an update(), not a repaint()
        bar.update()

    # ------------------------------------------------------------------ dialogs
    def open_settings(self) -> None:
        dialog = SettingsDialog(self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self._update_status()
        dialog.deleteLater()

    def show_legend(self, anchor: str = "") -> None:
        """Help > Legend; ``anchor`` scrolls to one entry (a term the memory planner's account links)."""
        dialog = QDialog(self, objectName="legend_dialog")
        dialog.setWindowTitle("Legend: what the numbers mean")
        layout = QVBoxLayout(dialog)
        text = QTextBrowser()
        from gui.panels.summary import legend_html

        text.setHtml(LEGEND_HTML + legend_html())
        if isinstance(anchor, str) and anchor:  # QAction.triggered passes a bool
            QTimer.singleShot(0, lambda: text.scrollToAnchor(anchor))
        layout.addWidget(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(dialog.reject)
        layout.addWidget(buttons)
        dialog.resize(620, 560)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.legend_dialog = dialog

    def open_memory_compare(self, names: list[str] | None = None) -> None:
        """Tools > Compare Memory: open tabs and reference models side by side (three Llama 3.1 sizes by default)."""
        from gui.memory_compare import MemoryCompareWindow

        self.memory_compare = MemoryCompareWindow(self.views(), names, self)
        self.memory_compare.sig_legend_requested.connect(self.show_legend)
        self.memory_compare.show()

    def show_about(self) -> None:
        from core.version import __version__

        QMessageBox.about(self, "About Weightscope",
                          f"<b>Weightscope {__version__}</b><p>See what is inside a neural-network checkpoint. "
                          "Safetensors, GGUF and PyTorch files, opened safely and offline: pickles are never "
                          "executed.</p>")

    def export_report(self) -> None:
        """File > Export Report: gui.pdf runs what is left of the analysis first, then writes atomically, with
        every section the tab has finished (spectra, comparison, LoRA figures) as `main.py report` adds them."""
        view = self.current_view()
        if view is None:
            return
        from gui.pdf import export_report_dialog
        from gui.report_parts import view_parts

        export_report_dialog(self, view.checkpoint, view.result, parts=view_parts(view))

    def export_statistics(self, fmt: str) -> None:
        """File > Export Statistics as CSV or JSON: every tensor analysed so far, written atomically."""
        view = self.current_view()
        if view is None:
            return
        if view.result is None or not view.result.summaries:
            QMessageBox.information(self, "Nothing to export yet",
                                    "The statistics are still being computed; try again when the analysis is done.")
            return
        from core.export import write_stats_csv, write_stats_json

        default = os.path.join(self._last_dir(), f"{view.title}-stats.{fmt}")
        path, _ = QFileDialog.getSaveFileName(self, f"Export statistics as {fmt.upper()}", default,
                                              f"{fmt.upper()} (*.{fmt})")
        if not path:
            return
        write = write_stats_csv if fmt == "csv" else write_stats_json
        try:
            write(view.result, path, checkpoint=view.checkpoint)
        except CheckpointError as exc:
            show_error(self, "Could not export the statistics", exc, path)
            return
        self.statusBar().showMessage(f"Statistics written to {path}", 5000)

    # ------------------------------------------------------------------ lifetime
    def _restore_geometry(self) -> None:
        geometry = QSettings().value("window/geometry")
        if geometry is not None and self.interactive:
            self.restoreGeometry(geometry)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Cancel every job and wait (briefly) for the pool, so quitting never hangs on a long analysis."""
        self._closing = True
        if self.interactive:
            QSettings().setValue("window/geometry", self.saveGeometry())
        for view in self.views():
            view.shutdown()
        release_background()  # jobs told to stop must not sleep out a hold first
        workers.shutdown(1500)
        for view in self.views():
            view.checkpoint.close()
        event.accept()

    def run_when_idle(self, callback, poll_ms: int = 50) -> None:
        """Call ``callback`` once no model is opening and every tab's jobs are done."""

        def check() -> None:
            if self.is_idle():
                callback()
            else:
                QTimer.singleShot(poll_ms, check)

        QTimer.singleShot(poll_ms, check)
