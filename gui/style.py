"""One look for every window and plot: a light Fusion palette and matching pyqtgraph colours."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication, QTableWidget

ACCENT = "#2563eb"
TEXT = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
PANEL = "#f8fafc"
WARNING = "#b45309"

KIND_COLORS = {"weight": "#2563eb", "bias": "#f59e0b", "embedding": "#10b981", "buffer": "#9ca3af",
               "state": "#c084fc"}
ROLE_COLORS = {
    "attention.q": "#2563eb", "attention.k": "#7c3aed", "attention.v": "#db2777", "attention.o": "#dc2626",
    "attention.qkv": "#4f46e5", "attention": "#6366f1",
    "mlp.up": "#059669", "mlp.gate": "#65a30d", "mlp.down": "#d97706", "mlp.gate_up": "#0d9488", "mlp": "#14b8a6",
    "norm": "#0891b2", "embedding": "#10b981", "head": "#9333ea", "convolution": "#b45309", "recurrent": "#be123c",
    "other": "#9ca3af",
}
SERIES_COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
                 "#4b5563", "#b45309", "#4f46e5", "#0d9488"]

STYLE_SHEET = f"""
QGroupBox {{ font-weight: 600; border: 1px solid {GRID}; border-radius: 6px; margin-top: 14px;
            padding: 10px 8px 8px 8px; background: white; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; color: {TEXT}; }}
QLabel#BigNumber {{ font-size: 24px; font-weight: 600; color: {TEXT}; }}
QLabel#MidNumber {{ font-size: 17px; font-weight: 600; color: {TEXT}; }}
QLabel#Caption {{ color: {MUTED}; font-size: 11px; letter-spacing: 1px; }}
QLabel#Muted {{ color: {MUTED}; }}
QLabel#Warning {{ color: {WARNING}; }}
QLabel#Safety {{ color: #047857; }}
QLabel#PanelTitle {{ font-size: 14px; font-weight: 600; color: {TEXT}; }}
QLabel#DropZone {{ border: 2px dashed #cbd5e1; border-radius: 10px; color: {MUTED}; padding: 24px;
                  background: {PANEL}; font-size: 14px; }}
QLabel#WelcomeTitle {{ font-size: 30px; font-weight: 600; color: {TEXT}; }}
QPushButton[primary="true"] {{ background: {ACCENT}; color: white; border: none; border-radius: 6px; padding: 8px 16px;
                      font-weight: 600; }}
QPushButton[primary="true"]:hover {{ background: #1d4ed8; }}
QTableWidget {{ gridline-color: {GRID}; }}
"""


def apply_palette(app: QApplication) -> None:
    palette = app.palette()
    palette.setColor(QPalette.ColorRole.Window, QColor("#f1f5f9"))
    palette.setColor(QPalette.ColorRole.Base, QColor("white"))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor(PANEL))
    palette.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(TEXT))
    palette.setColor(QPalette.ColorRole.Text, QColor(TEXT))
    app.setPalette(palette)
    app.setStyleSheet(STYLE_SHEET)
    font = QFont(app.font())
    if font.pointSizeF() < 9.5:
        font.setPointSizeF(9.5)
        app.setFont(font)
    import pyqtgraph as pg

    pg.setConfigOptions(background="w", foreground=TEXT, antialias=True)


def role_color(role: str) -> str:
    return ROLE_COLORS.get(role, "#9ca3af")


def shrinkable(label):
    """Let a label with long text (tensor names) be narrower than its text, so small windows stay small."""
    from PySide6.QtWidgets import QSizePolicy

    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setMinimumWidth(40)
    return label


def panel_header(title: str, subtitle: str = ""):
    """The head every panel starts with: a bold title over a muted subtitle, and a row of controls below them.

    The title keeps the whole width (it holds tensor names), so a narrow window never cuts it off.
    Returns (header layout, controls row, title label, subtitle label); callers add their controls to the row
    and the header layout to the panel.
    """
    from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout

    from gui.plain import plain_label

    title_label = shrinkable(plain_label(title, "PanelTitle"))  # titles hold tensor names: never markup
    subtitle_label = shrinkable(plain_label(subtitle, "Muted"))
    header = QVBoxLayout()
    header.setSpacing(2)
    header.addWidget(title_label)
    controls = QHBoxLayout()
    controls.addWidget(subtitle_label, 1)
    header.addLayout(controls)
    return header, controls, title_label, subtitle_label


def quiet_table(rows: int, headers: list[str], object_name: str = "") -> QTableWidget:
    """A read-only table for figures: no editing, selection, focus frame or grid; alternating rows."""
    table = QTableWidget(rows, len(headers), objectName=object_name)
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setShowGrid(False)
    table.setAlternatingRowColors(True)
    return table
