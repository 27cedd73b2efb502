"""File-derived text shown as characters, never as markup.

Qt renders a QLabel, QMessageBox text, tooltip or pyqtgraph label as HTML
when the text looks rich (Qt::mightBeRichText); a tensor named
``<b style="color:green">VERIFIED SAFE</b>`` would then turn into a green
claim. Every widget that shows text from a file goes through these helpers.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox

TITLE_CHARS = 60  # tab titles and window titles: long names are cut, the full text is in the tooltip


def plain_label(text: str = "", object_name: str = "") -> QLabel:
    """A QLabel that never interprets its text as HTML."""
    label = QLabel()
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setText(text)
    if object_name:
        label.setObjectName(object_name)
    return label


def make_plain(*labels: QLabel | QMessageBox) -> None:
    """Switch existing labels or message boxes to plain text."""
    for widget in labels:
        widget.setTextFormat(Qt.TextFormat.PlainText)


def tooltip(text: str) -> str:
    """Tooltip text that Qt shows literally: escaped and wrapped as rich text only when it could look rich."""
    if "<" not in text and "&" not in text:
        return text
    return f'<p style="white-space:pre-wrap">{html.escape(text)}</p>'


def rich_escape(text: str) -> str:
    """A value to embed in our own rich text (pyqtgraph titles and legends, bold markup around it)."""
    return html.escape(text).replace("\n", "<br>")


def bounded(text: str, limit: int = TITLE_CHARS) -> str:
    """One line of at most ``limit`` characters, for window and tab titles."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def mnemonic_safe(text: str) -> str:
    """Text for a QAction or tab title, where a single '&' would mark a keyboard shortcut."""
    return text.replace("&", "&&")
