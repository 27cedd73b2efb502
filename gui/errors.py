"""Errors become dialogs: the one-line reason up front, the details a click away, and the app carries on.

Every text here may quote the file (tensor names, pickle arguments), so the
boxes are plain text. Anything that is not a CheckpointError is a bug: its
dialog says so in one line, and its traceback goes to the details and to an
incident log.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from types import TracebackType

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from core.errors import CheckpointError

INTERNAL_NOTE = "please report it"
_open_boxes: list[QMessageBox] = []


def reason(exc: BaseException, context: str = "") -> str:
    """The line a user reads: a CheckpointError's own reason, or the one line that marks a bug."""
    if isinstance(exc, CheckpointError):
        return str(exc)
    doing = f" while {context}" if context else ""
    return f"internal error{doing}: {type(exc).__name__}; {INTERNAL_NOTE}"


def traceback_text(exc: BaseException) -> str:
    """The formatted traceback: the worker's (recorded in its thread) or the one the exception carries."""
    trace = getattr(exc, "__traceback_text__", None)
    if trace:
        return str(trace)
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def log_incident(exc: BaseException, context: str) -> str | None:
    """Write the traceback to core.logs' incident log; the log's path, or None when it could not be written."""
    try:
        from core.logs import write_incident
    except ImportError:
        return None
    try:
        return write_incident(exc, context)
    except Exception:  # a log that cannot be written must not hide the error being reported
        return None


def _arguments_text(arguments: object) -> str:
    if isinstance(arguments, str):
        return arguments
    if isinstance(arguments, list | tuple):
        return "\n".join(f"  {a!r}" for a in arguments) or "  (none)"
    return repr(arguments)


def details(exc: BaseException, path: str | None = None, log_path: str | None = None) -> str:
    """What a person vetting the file records: path, error type, a refused pickle's call and arguments, traces."""
    lines = []
    if path:
        lines.append(f"Path: {path}")
    lines.append(f"Error type: {type(exc).__module__}.{type(exc).__name__}")
    if isinstance(exc, CheckpointError):
        lines.append(f"Reason: {exc}")
    call = getattr(exc, "call", None)
    if call:
        lines.append(f"Call: {call}")
    arguments = getattr(exc, "arguments", None)
    if arguments:
        lines.append("Arguments:")
        lines.append(_arguments_text(arguments))
    if not isinstance(exc, CheckpointError):
        if log_path:
            lines.append(f"Log: {log_path}")
        lines += ["", traceback_text(exc).rstrip()]
    return "\n".join(lines)


def show_error(parent: QWidget | None, title: str, exc: BaseException, path: str | None = None,
               informative: str = "", context: str = "", modal: bool = True) -> QMessageBox:
    """A message box; returns it (after it closed, when modal) so tests can read what it said."""
    log_path = None if isinstance(exc, CheckpointError) else log_incident(exc, context or title)
    box = QMessageBox(parent)
    box.setObjectName("error_box")
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setIcon(QMessageBox.Icon.Warning if isinstance(exc, CheckpointError) else QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    box.setText(reason(exc, context))
    if informative:
        box.setInformativeText(informative)  # our own sentences only
    box.setDetailedText(details(exc, path, log_path))
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    if modal:
        box.exec()
        box.deleteLater()
    else:
        _open_boxes.append(box)  # a parentless box must outlive this frame until it is closed
        box.finished.connect(lambda _result, b=box: _open_boxes.remove(b) if b in _open_boxes else None)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()
    return box


def install_excepthook(parent: Callable[[], QWidget | None]) -> None:
    """Route exceptions escaping a slot (Qt calls sys.excepthook) to an internal-error dialog and the log."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, trace: TracebackType | None) -> None:
        if not isinstance(exc, Exception) or QApplication.instance() is None:
            previous(kind, exc, trace)
            return
        exc.__traceback_text__ = "".join(traceback.format_exception(kind, exc, trace))  # type: ignore[attr-defined]
        try:
            show_error(parent(), "Internal error", exc, context="handling an event", modal=False)
        finally:
            previous(kind, exc, trace)  # the console (or a test harness) still sees it

    sys.excepthook = hook
