"""Errors become dialogs: the one-line reason up front, the details a click away, and the app carries on."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from core.errors import CheckpointError


def reason(exc: BaseException) -> str:
    """The line a user reads: a CheckpointError's own reason, or a short description of a bug."""
    if isinstance(exc, CheckpointError):
        return str(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"unexpected {type(exc).__name__}: {text}"


def details(exc: BaseException, path: str | None = None) -> str:
    lines = []
    if path:
        lines.append(f"Path: {path}")
    lines.append(f"Error type: {type(exc).__module__}.{type(exc).__name__}")
    trace = getattr(exc, "__traceback_text__", None)
    if trace and not isinstance(exc, CheckpointError):
        lines += ["", trace.rstrip()]
    return "\n".join(lines)


def show_error(parent: QWidget | None, title: str, exc: BaseException, path: str | None = None,
               informative: str = "") -> QMessageBox:
    """A modal message box; returns it (after it closed) so tests can read what it said."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning if isinstance(exc, CheckpointError) else QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    box.setText(reason(exc))
    if informative:
        box.setInformativeText(informative)
    box.setDetailedText(details(exc, path))
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.exec()
    box.deleteLater()
    return box
