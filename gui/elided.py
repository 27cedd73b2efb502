"""A one-line label for long file-derived text (paths, tensor names): elided in the middle, whole in its tooltip."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QLabel

from gui.plain import tooltip


class ElidedLabel(QLabel):
    """Plain text (never markup), elided to the width it gets, so a long path never widens the window."""

    def __init__(self, text: str = "", object_name: str = "") -> None:
        super().__init__()
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setMinimumWidth(40)
        if object_name:
            self.setObjectName(object_name)
        self.full_text = ""
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self.setToolTip(tooltip(text))
        self._elide()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        line = " ".join(self.full_text.split())
        self.setText(QFontMetrics(self.font()).elidedText(line, Qt.TextElideMode.ElideMiddle, max(40, self.width())))

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(40, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(200, super().sizeHint().height())
