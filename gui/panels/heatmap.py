"""A weight matrix as an image with a colour bar; zoom with the wheel, pan by dragging.

The block reduction runs in core.heatmap inside a worker; this widget only
draws what it yields, so a big matrix fills in band by band. NaN and infinite
blocks are painted in named colours over the image (a colour map has no colour
for them), one outlier can be kept from washing out the rest by clipping to
percentiles or a log scale, and hovering reads out the block under the mouse.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from core.checkpoint import Checkpoint, TensorInfo
from core.heatmap import MODES, Heatmap, block_place, compute_heatmap
from core.numbers import format_value
from gui.plain import plain_label, tooltip
from gui.plot_parts import MenulessColorBar, PlotParts
from gui.slices import Slices
from gui.style import panel_header, shrinkable
from gui.workers import JobSlot

MODE_HELP = {
    "absmax": "Each pixel shows the largest magnitude in its block: single extreme weights stay visible.",
    "mean": "Each pixel shows the average of its block: signed structure (rows or columns drifting).",
}
SCALES = {"linear": "Linear", "clip": "Clip to p1–p99", "log": "Log scale"}
SCALE_HELP = {
    "linear": "Colours span the smallest to the largest block.",
    "clip": "Colours span the 1st to the 99th percentile of the blocks: one outlier no longer turns the rest dark.",
    "log": "Colours follow log10 of each block's magnitude: structure across orders of magnitude shows.",
}
CLIP_PERCENTILES = (1.0, 99.0)
# value class -> (name said in the legend, colour painted over the image)
SPECIAL_COLOURS = {"nan": ("magenta", (217, 70, 239)), "posinf": ("red", (239, 68, 68)),
                   "neginf": ("blue", (37, 99, 235))}
SPECIAL_NAMES = {"nan": "NaN", "posinf": "+Inf", "neginf": "-Inf"}


def special_masks(values: np.ndarray) -> dict[str, np.ndarray]:
    """Where the read part of a heatmap is NaN, +Inf or -Inf."""
    return {"nan": np.isnan(values), "posinf": np.isposinf(values), "neginf": np.isneginf(values)}


def display_values(values: np.ndarray, mode: str, scale: str) -> tuple[np.ndarray, tuple[float, float]]:
    """What the colour map draws and the colour bar's range, for a scale (NaN where nothing is drawn)."""
    shown = np.where(np.isfinite(values), values, np.nan).astype(np.float32)
    if scale == "log":
        magnitude = np.abs(shown)
        positive = magnitude[magnitude > 0]
        floor = float(np.log10(positive.min())) - 1 if positive.size else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            shown = np.where(magnitude > 0, np.log10(magnitude), np.where(magnitude == 0, floor, np.nan))
    finite = shown[np.isfinite(shown)]
    if not finite.size:
        return shown, (0.0, 1.0)
    if scale == "clip":
        lo, hi = (float(v) for v in np.percentile(finite, CLIP_PERCENTILES))
        if mode == "mean":
            lim = max(abs(lo), abs(hi))
            lo, hi = -lim, lim
    elif scale == "log" or mode == "absmax":
        lo, hi = float(finite.min()), float(finite.max())
        lo = 0.0 if mode == "absmax" and scale != "log" else lo
    else:
        lim = float(np.abs(finite).max())
        lo, hi = -lim, lim
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        lo, hi = (lo, lo + 1.0) if math.isfinite(lo) else (0.0, 1.0)
    return shown, (lo, hi)


COLORMAPS = ("viridis", "CET-D1")


def _colormap_loader(name: str):
    """A slice step that reads one colour map (pyqtgraph caches it): ~9 ms from its file, so one per turn."""
    return functools.partial(pg.colormap.get, name)


class HeatmapPanel(QWidget):
    """Shows one tensor; computes only while visible, and restarts when the tensor or the mode changes."""

    def __init__(self, parent=None, sliced: bool = False) -> None:
        """``sliced``: the plot, its colour bar and overlays come on later turns of the event loop (``slices``),
        each a plot item costing 10-30 ms of UI thread, so showing the tab first never stalls the window."""
        super().__init__(parent)
        self.checkpoint: Checkpoint | None = None
        self.tensor: TensorInfo | None = None
        self.heatmap: Heatmap | None = None
        self._shown_key: tuple | None = None
        self.job = JobSlot("heatmap", self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        header, head, self.title, self.subtitle = panel_header("Select a single tensor to see it as an image", "")
        self._say(self.title, self.title.text())
        head.addWidget(QLabel("Blocks:"))
        self.mode = QComboBox(objectName="heatmap_mode")
        for key, label in MODES.items():
            self.mode.addItem(label, key)
            self.mode.setItemData(self.mode.count() - 1, MODE_HELP[key], Qt.ItemDataRole.ToolTipRole)
        head.addWidget(self.mode)
        self.scale = QComboBox(objectName="heatmap_scale")
        for key, label in SCALES.items():
            self.scale.addItem(label, key)
            self.scale.setItemData(self.scale.count() - 1, SCALE_HELP[key], Qt.ItemDataRole.ToolTipRole)
        head.addWidget(self.scale)
        layout.addLayout(header)
        legend_row = QHBoxLayout()  # NaN / Inf: each named in its own colour, with counts
        self.special_labels: dict[str, QLabel] = {}
        for key, (_name, colour) in SPECIAL_COLOURS.items():
            label = plain_label("")
            label.setStyleSheet(f"color: rgb{colour}; font-weight: 600;")
            label.setToolTip("NaN (not a number) and infinite values have no place on a colour scale; they are "
                             "painted in these colours. Any of them means a broken tensor.")
            self.special_labels[key] = label
            legend_row.addWidget(label)
        legend_row.addStretch(1)
        layout.addLayout(legend_row)
        self.readout = shrinkable(QLabel("Hover over the image to read a block's row, column and value."))
        self.readout.setTextFormat(Qt.TextFormat.PlainText)
        self.readout.setObjectName("Muted")
        layout.addWidget(self.readout)
        self.marked: tuple[int, ...] | None = None
        self._plot_parts = PlotParts()  # its ViewBox, axes and PlotItem: a slice each (gui/plot_parts.py)
        self.slices = Slices(self, [*self._plot_parts.steps(), self._make_plot, *map(_colormap_loader, COLORMAPS),
                                    self._make_colorbar, self._insert_colorbar, self._make_overlays], sliced)

    def _make_plot(self) -> None:
        self.plot = self._plot_parts.widget()  # made without a context menu
        self.plot.setAspectLocked(False)
        self.plot.getViewBox().invertY(True)
        self.plot.setLabel("bottom", "column (input)")
        self.plot.setLabel("left", "row (output)")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.layout().insertWidget(1, self.plot, 1)  # between the header and the NaN / Inf legend

    def _make_colorbar(self) -> None:
        """The colour bar alone (~10 ms): its colour map was read in the step before."""
        self.colorbar = MenulessColorBar(values=(0, 1), colorMap=pg.colormap.get("viridis"), interactive=False,
                                        width=14, label="value")

    def _insert_colorbar(self) -> None:
        self.colorbar.setImageItem(self.image, insert_in=self.plot.getPlotItem())

    def _make_overlays(self) -> None:
        self.special = pg.ImageItem(axisOrder="row-major")  # NaN / Inf blocks in named colours, over the image
        self.special.setZValue(5)
        self.plot.addItem(self.special)
        self.plot.scene().sigMouseMoved.connect(self._hovered)
        self.scale.currentIndexChanged.connect(self._redraw)
        self.marker = pg.ScatterPlotItem(size=18, symbol="o", pen=pg.mkPen("#dc2626", width=2), brush=None)
        self.marker.setZValue(10)
        self.plot.addItem(self.marker)
        self.mode.currentIndexChanged.connect(self._maybe_start)

    def _draw_special(self, read: np.ndarray, hm: Heatmap) -> None:
        """Paint NaN/Inf blocks in their colours and name the colours (with counts) under the plot."""
        rgba = np.zeros((*hm.values.shape, 4), dtype=np.uint8)
        counts = {}
        for key, mask in special_masks(read).items():
            counts[key] = int(mask.sum())
            if counts[key]:
                rgba[: read.shape[0]][mask] = (*SPECIAL_COLOURS[key][1], 255)
        self.special_counts = counts
        self.special.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.special.setRect(QRectF(0, 0, hm.cols, hm.rows))
        unit = "block" if hm.block_rows * hm.block_cols > 1 else "value"
        for key, (name, _colour) in SPECIAL_COLOURS.items():
            n = counts[key]
            self.special_labels[key].setText(f"■ {SPECIAL_NAMES[key]} in {name}"
                                             + (f": {n:,} {unit}{'s' if n != 1 else ''}" if n else ""))

    def special_legend_text(self) -> str:
        return "   ".join(label.text() for label in self.special_labels.values())

    def readout_at(self, row: float, col: float) -> str:
        """The block under (row, column) of the matrix, in words: where it is and its value."""
        hm = self.heatmap
        place = None if hm is None else block_place(hm, row, col)
        if place is None:
            return ""
        i, j, where = place
        if i * hm.block_rows >= hm.rows_done:
            return f"row {int(row):,}, column {int(col):,}: not read yet"
        value = format_value(float(hm.values[i, j]))
        return f"{where}: {value}" if hm.block_rows * hm.block_cols == 1 else \
            f"{where}: {MODES[hm.mode].lower()} {value}"

    def _hovered(self, pos) -> None:
        if self.heatmap is None or not self.plot.getPlotItem().sceneBoundingRect().contains(pos):
            return
        point = self.plot.getPlotItem().vb.mapSceneToView(pos)
        text = self.readout_at(point.y(), point.x())
        if text:
            self.readout.setText(text)
            self.readout.setToolTip(tooltip(text))

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
            self._say(self.title, "Select a single tensor to see it as an image")
            self._say(self.subtitle, "Groups have no single matrix; pick one tensor in the tree.")
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
        self._say(self.title, t.name)
        self._say(self.subtitle, f"{shape} · {t.dtype} · reading…")
        if t.dtype in ("C64", "C128"):
            self._say(self.subtitle, f"{shape} · {t.dtype} · complex values have no heatmap")
            return
        checkpoint, mode = self.checkpoint, self.current_mode
        self.job.start(lambda stop: compute_heatmap(checkpoint, t, mode, should_stop=stop),
                       on_yield=self._draw, on_return=self._draw, on_error=self._failed)

    def cancel(self) -> None:
        self.job.cancel()
        self._shown_key = None

    def _failed(self, exc: BaseException) -> None:
        from gui.errors import reason

        self._say(self.subtitle, f"could not read: {reason(exc)}")

    @staticmethod
    def _say(label: QLabel, text: str) -> None:
        """Title and subtitle keep their full text in a tooltip: a narrow window elides them."""
        label.setText(text)
        label.setToolTip(tooltip(text))  # tensor names come from the file: shown, never rendered

    @property
    def current_scale(self) -> str:
        return self.scale.currentData()

    def _redraw(self) -> None:
        if self.heatmap is not None:
            self._draw(self.heatmap)

    def _draw(self, hm: Heatmap) -> None:
        self.heatmap = hm
        read_rows = min(hm.values.shape[0], math.ceil(hm.rows_done / hm.block_rows)) if hm.block_rows else 0
        read = hm.values[:read_rows]
        scale = self.current_scale
        shown, levels = display_values(read, hm.mode, scale)
        shown = np.vstack([shown, np.full((hm.values.shape[0] - read_rows, hm.values.shape[1]), np.nan, np.float32)])
        cmap = pg.colormap.get("viridis" if hm.mode == "absmax" or scale == "log" else "CET-D1")
        self.colorbar.setColorMap(cmap)
        self.image.setImage(shown, autoLevels=False)
        self.colorbar.setLevels(levels)
        what = "largest |value| per block" if hm.mode == "absmax" else "mean per block"
        if hm.block_rows * hm.block_cols == 1:
            what = "|value|" if hm.mode == "absmax" else "value"
        title = {"log": f"log10 of {what}", "clip": f"{what}, clipped to p1–p99"}.get(scale, what)
        self.colorbar.getAxis("left").setLabel(title)
        self.image.setRect(QRectF(0, 0, hm.cols, hm.rows))
        self._draw_special(read, hm)
        block = f"each pixel = {hm.block_rows} × {hm.block_cols} values ({MODES[hm.mode]})" \
            if hm.block_rows * hm.block_cols > 1 else f"one pixel per value ({MODES[hm.mode]})"
        t = self.tensor
        shape = " × ".join(str(d) for d in t.shape) if t is not None else f"{hm.rows} × {hm.cols}"
        progress = f" · reading… {hm.fraction:.0%}" if hm.fraction < 1 else ""
        note = f" · {self._note}" if getattr(self, "_note", "") else ""
        self._say(self.subtitle, f"{shape} · {t.dtype if t else ''} · {block}{progress}{note}")
        if hm.rows_done == hm.rows or hm.rows_done <= hm.block_rows * 8:
            self.plot.getViewBox().autoRange(padding=0.0)
