"""A weight matrix as an image with a colour bar; zoom with the wheel, pan by dragging.

The block reduction runs in core.heatmap inside a worker; this widget only
draws what it yields, so a big matrix fills in band by band.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QComboBox, QLabel, QVBoxLayout, QWidget

from core.checkpoint import Checkpoint, TensorInfo
from core.heatmap import MODES, Heatmap, compute_heatmap
from gui.style import panel_header
from gui.workers import JobSlot

MODE_HELP = {
    "absmax": "Each pixel shows the largest magnitude in its block: single extreme weights stay visible.",
    "mean": "Each pixel shows the average of its block: signed structure (rows or columns drifting).",
}


class HeatmapPanel(QWidget):
    """Shows one tensor; computes only while visible, and restarts when the tensor or the mode changes."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.checkpoint: Checkpoint | None = None
        self.tensor: TensorInfo | None = None
        self.heatmap: Heatmap | None = None
        self._shown_key: tuple | None = None
        self.job = JobSlot("heatmap", self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        header, head, self.title, self.subtitle = panel_header("Select a single tensor to see it as an image", "")
        head.addWidget(QLabel("Blocks:"))
        self.mode = QComboBox(objectName="heatmap_mode")
        for key, label in MODES.items():
            self.mode.addItem(label, key)
            self.mode.setItemData(self.mode.count() - 1, MODE_HELP[key], Qt.ItemDataRole.ToolTipRole)
        head.addWidget(self.mode)
        layout.addLayout(header)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setAspectLocked(False)
        self.plot.getViewBox().invertY(True)
        self.plot.setLabel("bottom", "column (input)")
        self.plot.setLabel("left", "row (output)")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get("viridis"), interactive=False,
                                        width=14)
        self.colorbar.setImageItem(self.image, insert_in=self.plot.getPlotItem())
        layout.addWidget(self.plot, 1)
        self.marker = pg.ScatterPlotItem(size=18, symbol="o", pen=pg.mkPen("#dc2626", width=2), brush=None)
        self.marker.setZValue(10)
        self.plot.addItem(self.marker)
        self.marked: tuple[int, ...] | None = None
        self.mode.currentIndexChanged.connect(self._maybe_start)

    def mark_position(self, at: tuple[int, ...] | None) -> None:
        """Ring one (row, column) of the matrix, e.g. a finding's outlier; None removes the ring."""
        self.marked = tuple(at) if at is not None and len(at) == 2 else None
        if self.marked is None:
            self.marker.setData([], [])
            return
        row, col = self.marked
        self.marker.setData([col + 0.5], [row + 0.5])
        self.marker.setToolTip(f"finding at row {row:,}, column {col:,}")

    @property
    def current_mode(self) -> str:
        return self.mode.currentData()

    def set_tensor(self, checkpoint: Checkpoint, tensor: TensorInfo | None, note: str = "") -> None:
        """Show ``tensor`` (None: nothing to show); the work starts once the panel is visible."""
        self.checkpoint, self.tensor, self._note = checkpoint, tensor, note
        if tensor is None:
            self.job.cancel()
            self._shown_key = None
            self.heatmap = None
            self.image.clear()
            self.title.setText("Select a single tensor to see it as an image")
            self.subtitle.setText("Groups have no single matrix; pick one tensor in the tree.")
            return
        self._maybe_start()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self._maybe_start()

    def _maybe_start(self) -> None:
        t = self.tensor
        if t is None or self.checkpoint is None or not self.isVisible():
            return
        key = (t.name, self.current_mode)
        if key == self._shown_key:
            return
        self._shown_key = key
        self.heatmap = None
        self.image.clear()
        shape = " × ".join(str(d) for d in t.shape) or "scalar"
        self.title.setText(t.name)
        self.subtitle.setText(f"{shape} · {t.dtype} · reading…")
        if t.dtype in ("C64", "C128"):
            self.subtitle.setText(f"{shape} · {t.dtype} · complex values have no heatmap")
            return
        checkpoint, mode = self.checkpoint, self.current_mode
        self.job.start(lambda stop: compute_heatmap(checkpoint, t, mode, should_stop=stop),
                       on_yield=self._draw, on_return=self._draw, on_error=self._failed)

    def cancel(self) -> None:
        self.job.cancel()
        self._shown_key = None

    def _failed(self, exc: BaseException) -> None:
        from gui.errors import reason

        self.subtitle.setText(f"could not read: {reason(exc)}")

    def _draw(self, hm: Heatmap) -> None:
        self.heatmap = hm
        values = hm.values
        finite = values[np.isfinite(values)]
        if hm.mode == "absmax":
            hi = float(finite.max()) if finite.size else 1.0
            levels = (0.0, hi if hi > 0 else 1.0)
            cmap = pg.colormap.get("viridis")
        else:
            lim = float(np.abs(finite).max()) if finite.size else 1.0
            lim = lim if lim > 0 and math.isfinite(lim) else 1.0
            levels = (-lim, lim)
            cmap = pg.colormap.get("CET-D1")
        self.colorbar.setColorMap(cmap)
        self.image.setImage(values, autoLevels=False)
        self.colorbar.setLevels(levels)
        self.image.setRect(QRectF(0, 0, hm.cols, hm.rows))
        block = f"each pixel = {hm.block_rows} × {hm.block_cols} values ({MODES[hm.mode]})" \
            if hm.block_rows * hm.block_cols > 1 else f"one pixel per value ({MODES[hm.mode]})"
        t = self.tensor
        shape = " × ".join(str(d) for d in t.shape) if t is not None else f"{hm.rows} × {hm.cols}"
        progress = f" · reading… {hm.fraction:.0%}" if hm.fraction < 1 else ""
        note = f" · {self._note}" if getattr(self, "_note", "") else ""
        self.subtitle.setText(f"{shape} · {t.dtype if t else ''} · {block}{progress}{note}")
        if hm.rows_done == hm.rows or hm.rows_done <= hm.block_rows * 8:
            self.plot.getViewBox().autoRange(padding=0.0)
