"""What the value panels show for a model opened from its config.json: an architecture, no numbers to read."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from gui.plain import plain_label

NO_VALUES_TEXT = "This model was opened from its config.json: it has an architecture but no values to analyse."
NO_VALUES_HINT = ("Counts, the layer tree, the Summary and the Memory planner work from the architecture alone. "
                  "Open the weights themselves to see distributions, depth profiles and heatmaps.")


def is_config_only(checkpoint) -> bool:
    """A checkpoint built from a config.json has tensors with shapes but no bytes behind them."""
    return getattr(checkpoint, "format", "") == "config"


class NoValuesPage(QWidget):
    """Stands in for Distribution, Depth profile and Heatmap, so nothing tries to read values that do not exist."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 24, 24, 24)
        self.message = plain_label(NO_VALUES_TEXT, "PanelTitle")
        self.message.setWordWrap(True)
        self.hint = plain_label(NO_VALUES_HINT, "Muted")
        self.hint.setWordWrap(True)
        layout.addWidget(self.message)
        layout.addWidget(self.hint)
        layout.addStretch(1)
        self.message.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
