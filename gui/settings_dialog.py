"""Where statistics are computed (auto, CPU, CUDA, Apple MPS), kept in QSettings."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout, QWidget

DEVICE_KEY = "analysis/device"
DEVICES = {
    "auto": "Automatic (CUDA GPU, else Apple GPU, else CPU)",
    "cpu": "CPU",
    "cuda": "NVIDIA GPU (CUDA)",
    "mps": "Apple GPU (MPS)",
}


def analysis_device() -> str:
    value = QSettings().value(DEVICE_KEY, "auto")
    return value if isinstance(value, str) and value in DEVICES else "auto"


def set_analysis_device(device: str) -> None:
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}")
    QSettings().setValue(DEVICE_KEY, device)


class SettingsDialog(QDialog):
    """One choice for now: the analysis device. It applies to the next analysis."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setObjectName("settings_dialog")
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.device = QComboBox(objectName="settings_device")
        for key, label in DEVICES.items():
            self.device.addItem(label, key)
        self.device.setCurrentIndex(list(DEVICES).index(analysis_device()))
        form.addRow("Analysis device:", self.device)
        layout.addLayout(form)
        note = QLabel("Statistics are exact on every device. A device that is not available is reported when the "
                      "analysis starts. Changes apply to the next analysis (View > Analyse Again).")
        note.setWordWrap(True)
        note.setObjectName("Muted")
        layout.addWidget(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def accept(self) -> None:
        set_analysis_device(self.device.currentData())
        super().accept()
