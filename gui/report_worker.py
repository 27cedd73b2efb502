"""File > Export Report (PDF): ask where, analyse first if needed (progress, cancel), then write.

The analysis and the report's content (pure core work) run on a QThreadPool
thread; only the drawing, which needs the painter and fonts, runs on the UI
thread. The user waits in a window-modal progress dialog whose Cancel stops
the analysis within one chunk.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from PySide6.QtCore import QEventLoop, QObject, QRunnable, QStandardPaths, Qt, QThreadPool, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox, QProgressDialog, QWidget

from core.checkpoint import DEFAULT_CHUNK_BYTES, Checkpoint
from core.errors import CancelledError, CheckpointError
from core.export import check_writable
from core.report import build_report, default_report_name

PROGRESS_STEPS = 1000


class ReportSignals(QObject):
    sig_progress = Signal(float, str)  # fraction done, tensor being read
    sig_done = Signal(object)  # (AnalysisResult, Report)
    sig_failed = Signal(str)  # one-line reason
    sig_cancelled = Signal()


class ReportJob(QRunnable):
    """Analyse (unless a result is given) and build the report's content, off the UI thread."""

    def __init__(self, checkpoint: Checkpoint, result: Any = None, *, device: str = "auto", use_cache: bool = True,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.checkpoint = checkpoint
        self.result = result
        self.options = {"device": device, "use_cache": use_cache, "chunk_bytes": chunk_bytes}
        self.signals = ReportSignals()
        self._stop = threading.Event()
        self.finished = threading.Event()

    def cancel(self) -> None:
        self._stop.set()

    def run(self) -> None:
        try:
            result = self.result if self.result is not None else self._analyse()
            if self._stop.is_set():
                raise CancelledError("report cancelled")
            self.signals.sig_done.emit((result, build_report(self.checkpoint, result)))
        except CancelledError:
            self.signals.sig_cancelled.emit()
        except CheckpointError as exc:
            self.signals.sig_failed.emit(str(exc))
        except Exception as exc:  # a bug: still reported, never lost in a pool thread
            self.signals.sig_failed.emit(f"unexpected error while preparing the report: {exc!r}")
        finally:
            self.finished.set()

    def _analyse(self) -> Any:
        from core.stats import analyze

        gen = analyze(self.checkpoint, should_stop=self._stop.is_set, **self.options)
        last = -1
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            step = int(item.fraction * PROGRESS_STEPS)
            if step != last:  # at most PROGRESS_STEPS signals, however many chunks
                last = step
                self.signals.sig_progress.emit(item.fraction, item.tensor)


class _Waiter(QObject):
    """Lives in the UI thread, so the job's signals arrive here queued; runs a local loop until one ends it."""

    def __init__(self, dialog: QProgressDialog) -> None:
        super().__init__()
        self.dialog = dialog
        self.outcome: dict[str, Any] = {}
        self.loop = QEventLoop()

    def wait(self) -> None:
        if not self.outcome:
            self.loop.exec()

    @Slot(float, str)
    def on_progress(self, fraction: float, tensor: str) -> None:
        self.dialog.setValue(int(fraction * PROGRESS_STEPS))
        self.dialog.setLabelText(f"Analysing values for the report…\n{tensor[:80]}")

    @Slot(object)
    def on_done(self, value: Any) -> None:
        self._end("done", value)

    @Slot(str)
    def on_failed(self, reason: str) -> None:
        self._end("failed", reason)

    @Slot()
    def on_cancelled(self) -> None:
        self._end("cancelled", None)

    def _end(self, key: str, value: Any) -> None:
        self.outcome[key] = value
        self.loop.quit()


def default_report_path(checkpoint: Checkpoint) -> str:
    """<model>-report.pdf in the user's Documents folder (else home): never beside the checkpoint by default."""
    folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    if not folder or not os.path.isdir(folder):
        folder = os.path.expanduser("~")
    return os.path.join(folder, default_report_name(checkpoint))


def ask_report_path(parent: QWidget | None, checkpoint: Checkpoint) -> str | None:
    path, _ = QFileDialog.getSaveFileName(parent, "Export Report (PDF)", default_report_path(checkpoint),
                                          "PDF documents (*.pdf)")
    if not path:
        return None
    return path if path.lower().endswith(".pdf") else path + ".pdf"


def prepare_report(parent: QWidget | None, checkpoint: Checkpoint, result: Any = None,
                   **options: Any) -> tuple[Any, Any] | None:
    """(result, report) after a progress dialog; None when cancelled. Raises CheckpointError on failure."""
    job = ReportJob(checkpoint, result, **options)
    label = "Analysing values for the report…" if result is None else "Preparing the report…"
    dialog = QProgressDialog(label, "Cancel", 0, PROGRESS_STEPS if result is None else 0, parent)
    dialog.setObjectName("report_progress")
    dialog.setWindowTitle("Export Report")
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(400)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.setValue(0)
    waiter = _Waiter(dialog)
    job.signals.sig_progress.connect(waiter.on_progress)
    job.signals.sig_done.connect(waiter.on_done)
    job.signals.sig_failed.connect(waiter.on_failed)
    job.signals.sig_cancelled.connect(waiter.on_cancelled)
    dialog.canceled.connect(job.cancel)
    QThreadPool.globalInstance().start(job)
    try:
        waiter.wait()
    finally:
        job.cancel()
        job.finished.wait(30)
        dialog.close()
        dialog.deleteLater()
    outcome = waiter.outcome
    if "failed" in outcome:
        raise CheckpointError(outcome["failed"])
    return outcome.get("done")


def export_report_dialog(parent: QWidget | None, checkpoint: Checkpoint, result: Any = None,
                         **options: Any) -> str | None:
    """The whole File > Export Report (PDF) action; returns the path written, or None (cancelled or failed,
    after telling the user why). ``options`` go to core.stats.analyze (device, use_cache, chunk_bytes)."""
    from gui.pdf import write_report

    path = ask_report_path(parent, checkpoint)
    if path is None:
        return None
    try:
        check_writable(path)
        prepared = prepare_report(parent, checkpoint, result, **options)
        if prepared is None:
            return None
        analysed, report = prepared
        write_report(checkpoint, analysed, path, report=report)
    except CheckpointError as exc:
        QMessageBox.warning(parent, "Export Report", f"The report was not written.\n\n{exc}")
        return None
    return path
