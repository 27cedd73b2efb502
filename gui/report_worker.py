"""File > Export Report (PDF): ask where, analyse first if needed (progress, cancel), then write.

The analysis and the report's content (pure core work) run as a gui.workers
job; only the drawing, which needs the painter and fonts, runs on the UI
thread. The user waits in a window-modal progress dialog whose Cancel stops
the analysis within one chunk. A result that is still filling in (the tab's
own analysis has not finished) is completed first: only the tensors it lacks
are read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import Any

from PySide6.QtCore import QEventLoop, QObject, QStandardPaths, Qt, Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox, QProgressDialog, QWidget

from core.checkpoint import DEFAULT_CHUNK_BYTES, Checkpoint
from core.errors import CancelledError, CheckpointError
from core.export import check_writable
from core.report import build_report, default_report_name

PROGRESS_STEPS = 1000


def missing_tensors(checkpoint: Checkpoint, result: Any) -> list[Any]:
    """Analysable tensors that ``result`` has no summary of (all of them when there is no result)."""
    from core.stats import select_tensors

    have = result.summaries if result is not None else {}
    return [t for t in select_tensors(checkpoint, None) if t.name not in have]


def report_job(checkpoint: Checkpoint, result: Any = None, *, parts: Any = None, device: str = "auto",
               use_cache: bool = True, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Any:
    """A gui.workers job: analyse what ``result`` lacks (a live result may be unfinished), then build the
    report's content with the sections the tab has computed (``parts``, a gui.report_parts.ViewParts; an
    adapter's LoRA section always). Yields (fraction, tensor) at most PROGRESS_STEPS times; returns (result,
    report)."""

    def job(should_stop: Any) -> Generator[tuple[float, str], None, tuple[Any, Any]]:
        from core.stats import AnalysisResult, analyze

        known = dict(list(result.summaries.items())) if result is not None else {}  # one atomic copy
        todo = [t for t in missing_tensors(checkpoint, result) if t.name not in known]
        final = result
        if todo or result is None:
            gen = analyze(checkpoint, todo, device=device, use_cache=use_cache, should_stop=should_stop,
                          chunk_bytes=chunk_bytes)
            last = -1
            while True:
                try:
                    item = next(gen)
                except StopIteration as stop:
                    fresh = stop.value
                    break
                step = int(item.fraction * PROGRESS_STEPS)
                if step != last:
                    last = step
                    yield item.fraction, item.tensor
            merged = {**known, **fresh.summaries}
            order = [t.name for t in checkpoint.tensors if t.name in merged]
            final = AnalysisResult(device=fresh.device if fresh.bytes_read or result is None else result.device,
                                   seconds=fresh.seconds + (result.seconds if result is not None else 0.0),
                                   bytes_read=fresh.bytes_read + (result.bytes_read if result is not None else 0),
                                   summaries={name: merged[name] for name in order})
        if should_stop():
            raise CancelledError("report cancelled")
        from core.report_sections import add_sections
        from gui.report_parts import ViewParts

        sections = (parts if parts is not None else ViewParts()).sections(checkpoint)
        return final, add_sections(build_report(checkpoint, final), checkpoint, sections)

    return job


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

    @Slot(object)
    def on_progress(self, update: tuple[float, str]) -> None:
        fraction, tensor = update
        self.dialog.setValue(int(fraction * PROGRESS_STEPS))
        self.dialog.setLabelText(f"Analysing values for the report…\n{tensor[:80]}")

    @Slot(object)
    def on_done(self, value: Any) -> None:
        self._end("done", value)

    @Slot(object)
    def on_failed(self, exc: BaseException) -> None:
        self._end("failed", exc)

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


def prepare_report(parent: QWidget | None, checkpoint: Checkpoint, result: Any = None, parts: Any = None,
                   **options: Any) -> tuple[Any, Any] | None:
    """(result, report) after a progress dialog; None when cancelled. Raises CheckpointError on failure."""
    from gui.workers import Worker

    analysing = result is None or bool(missing_tensors(checkpoint, result))
    label = "Analysing values for the report…" if analysing else "Preparing the report…"
    if parts is not None and parts.left_out:
        label = "\n".join([label, *parts.left_out])
    dialog = QProgressDialog(label, "Cancel", 0, PROGRESS_STEPS if analysing else 0, parent)
    dialog.setObjectName("report_progress")
    from gui.plain import plain_label

    dialog.setLabel(plain_label(label))  # the label shows tensor names: never markup
    dialog.setWindowTitle("Export Report")
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(400)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.setValue(0)
    worker = Worker(report_job(checkpoint, result, parts=parts, **options), "report")
    waiter = _Waiter(dialog)
    worker.signals.sig_yielded.connect(waiter.on_progress)
    worker.signals.sig_returned.connect(waiter.on_done)
    worker.signals.sig_errored.connect(waiter.on_failed)
    worker.signals.sig_aborted.connect(waiter.on_cancelled)
    dialog.canceled.connect(worker.quit)
    worker.start()
    try:
        waiter.wait()
    finally:
        worker.quit()
        deadline = time.monotonic() + 30
        while not worker.is_done and time.monotonic() < deadline:
            time.sleep(0.01)
        dialog.close()
        dialog.deleteLater()
    outcome = waiter.outcome
    if "failed" in outcome:
        exc = outcome["failed"]
        if isinstance(exc, CheckpointError):
            raise CheckpointError(str(exc))
        raise CheckpointError(f"unexpected error while preparing the report: {exc!r}")
    return outcome.get("done")


def export_report_dialog(parent: QWidget | None, checkpoint: Checkpoint, result: Any = None, parts: Any = None,
                         **options: Any) -> str | None:
    """The whole File > Export Report (PDF) action; returns the path written, or None (cancelled or failed,
    after telling the user why). ``parts`` (gui.report_parts.ViewParts): what the tab computed beyond the
    statistics; parts left out are named once the report is written. ``options`` go to core.stats.analyze
    (device, use_cache, chunk_bytes)."""
    from gui.pdf import write_report

    path = ask_report_path(parent, checkpoint)
    if path is None:
        return None
    try:
        check_writable(path)
        prepared = prepare_report(parent, checkpoint, result, parts, **options)
        if prepared is None:
            return None
        analysed, report = prepared
        write_report(checkpoint, analysed, path, report=report)
    except CheckpointError as exc:
        # plain text: Qt takes text as rich only if a tag comes before the first line break, and our own
        # sentence comes first
        QMessageBox.warning(parent, "Export Report", f"The report was not written.\n\n{exc}")
        return None
    if parts is not None and parts.left_out:
        tell_left_out(parent, path, parts.left_out)
    return path


def tell_left_out(parent: QWidget | None, path: str, left_out: list[str]) -> None:
    """One plain-text line per part left out of the report written at ``path`` (names in it come from files)."""
    box = QMessageBox(QMessageBox.Icon.Information, "Export Report", "\n".join([f"Wrote {path}.", *left_out]),
                      QMessageBox.StandardButton.Ok, parent)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.exec()
    box.deleteLater()
