"""The Compare tab's two plots: relative change by layer (one line per role) and |B−A| of one matrix.

Both only draw what they are given (core.diff_profile's points, core.diff_heatmap's image); the panel
computes them. Tensor names reach the plots as data: legends are escaped, labels plain text.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from core.heatmap import block_place
from core.numbers import format_value
from gui.elided import ElidedLabel
from gui.panels.depth import distinct_colors, layer_tick_step
from gui.plain import rich_escape

PROFILE_HELP = ("Relative change ‖B−A‖/‖A‖ of each role's tensors in each layer, one line per role: the layers a "
                "fine-tune moved most stand out. Click a point to select its tensor.")


def _role_order(role: str) -> int:
    from core.taxonomy import ROLES

    return ROLES.index(role) if role in ROLES else len(ROLES)


class ChangeProfilePlot(pg.GraphicsLayoutWidget):
    """Lines of core.diff_profile.depth_profile; ``sig_points_clicked(names)`` with a clicked point's tensors."""

    sig_points_clicked = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("compare_depth")
        self.setBackground("w")
        self.setToolTip(PROFILE_HELP)
        self.plot = self.addPlot(row=0, col=0)
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setLabel("bottom", "layer (block index)")
        self.plot.setLabel("left", "relative change ‖B−A‖/‖A‖")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.setTitle("Relative change by layer")
        self.legend = pg.LegendItem(labelTextColor="#1f2937", brush=(255, 255, 255, 0))
        self.addItem(self.legend, row=0, col=1)  # beside the plot, never over a line
        self.ring = pg.ScatterPlotItem(size=16, pen=pg.mkPen("#111827", width=2), brush=None, symbol="o")
        self.ring.setZValue(10)
        self.plot.addItem(self.ring)
        self.curves: list[pg.PlotDataItem] = []
        self.profile: list = []  # [(role, [core.diff_profile.ProfilePoint])], in role order
        self._highlight: str | None = None

    def set_profile(self, profile: dict) -> None:
        """Draw ``{role: [ProfilePoint]}``, replacing what was drawn."""
        from core.depth import ROLE_SHORT

        self.profile = sorted(profile.items(), key=lambda item: (_role_order(item[0]), item[0]))
        for curve in self.curves:
            self.plot.removeItem(curve)
        self.curves = []
        self.legend.clear()
        colors = distinct_colors([role for role, _ in self.profile])
        for (role, points), color in zip(self.profile, colors, strict=True):
            label = rich_escape(ROLE_SHORT.get(role, role))
            x = np.array([p.layer for p in points], dtype=float)
            y = np.array([p.rel_change if math.isfinite(p.rel_change) else math.nan for p in points], dtype=float)
            curve = pg.PlotDataItem(x, y, pen=pg.mkPen(color, width=1.6), symbol="o", symbolSize=6,
                                    symbolBrush=color, symbolPen=pg.mkPen(color), name=label,
                                    data=[p.tensors for p in points], connect="finite")
            curve.sigPointsClicked.connect(self._clicked)
            self.plot.addItem(curve)
            self.legend.addItem(curve, label)
            self.curves.append(curve)
        layers = [p.layer for _, points in self.profile for p in points]
        if layers:
            step = layer_tick_step(max(layers) - min(layers) + 1)
            self.plot.getAxis("bottom").setTickSpacing(step, step)
        self.highlight(self._highlight)

    def _clicked(self, _item, points, _ev=None) -> None:
        if len(points) and isinstance(points[0].data(), list):
            self.sig_points_clicked.emit(list(points[0].data()))

    def highlight(self, name: str | None) -> None:
        """Ring the point that holds tensor ``name``."""
        self._highlight = name
        self.ring.setData([], [])
        for _, points in self.profile:
            for point in points:
                if name in point.tensors and math.isfinite(point.rel_change):
                    self.ring.setData([point.layer], [point.rel_change])
                    return


class DiffHeatmapView(QWidget):
    """|B−A| of one matrix as an image with a colour bar, its name and scale above it."""

    def __init__(self) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.title = ElidedLabel("Select a row to see where its values changed", "compare_heat_title")
        self.title.setStyleSheet("font-weight: 600;")
        self.detail = ElidedLabel("", "compare_heat_detail")
        layout.addWidget(self.title)
        layout.addWidget(self.detail)
        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setObjectName("compare_heatmap")
        self.canvas.setBackground("w")
        self.plot = self.canvas.addPlot(row=0, col=0)
        self.plot.setMenuEnabled(False)
        self.plot.invertY(True)
        self.plot.setLabel("bottom", "column")
        self.plot.setLabel("left", "row")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.color_bar = pg.ColorBarItem(colorMap=pg.colormap.get("inferno"), interactive=False, width=12,
                                         label="max |B−A|")
        self.color_bar.setImageItem(self.image, insert_in=self.plot)
        layout.addWidget(self.canvas, 1)
        self.readout = ElidedLabel("Hover over the image to read a block's rows, columns and largest change.",
                                   "compare_heat_readout")
        self.readout.setObjectName("Muted")
        layout.addWidget(self.readout)
        self.canvas.scene().sigMouseMoved.connect(self._hovered)
        self.heatmap = None  # the core.heatmap.Heatmap drawn last

    def clear(self, text: str, detail: str = "") -> None:
        self.heatmap = None
        self.title.set_full_text(text)
        self.detail.set_full_text(detail)
        self.image.clear()

    def show_heatmap(self, heatmap) -> None:
        """Draw a (possibly partial) image of core.diff_heatmap; blocks not read yet, or NaN, are drawn as 0."""
        self.heatmap = heatmap
        values = heatmap.values
        finite = values[np.isfinite(values)]
        top = float(finite.max()) if finite.size else 0.0
        block = f"{heatmap.block_rows}×{heatmap.block_cols}"
        reading = heatmap.rows_done < heatmap.rows
        nan = 0 if reading else int(np.count_nonzero(np.isnan(values)))
        self.title.set_full_text(f"|B−A| of {heatmap.name}")
        self.detail.set_full_text(
            f"{heatmap.rows:,}×{heatmap.cols:,} · max |B−A| per {block} block · largest {format_value(top)}"
            + (f" · {nan} block{'s' if nan != 1 else ''} with NaN or Inf (drawn as 0)" if nan else "")
            + (f" · reading {heatmap.fraction:.0%}" if reading else ""))
        self.image.setImage(np.nan_to_num(values, nan=0.0), autoLevels=False)
        self.image.setRect(QRectF(0, 0, heatmap.cols, heatmap.rows))  # axes in the matrix's rows and columns
        self.color_bar.setLevels((0.0, top if top > 0 else 1.0))
        self.plot.autoRange()

    def readout_at(self, row: float, col: float) -> str:
        """The block under (row, column) of the matrix, in words: where it is and its largest |B−A|."""
        hm = self.heatmap
        place = None if hm is None else block_place(hm, row, col)
        if place is None:
            return ""
        i, j, where = place
        value = float(hm.values[i, j])
        if np.isnan(value):
            return f"row {int(row):,}, column {int(col):,}: " + ("not read yet" if i * hm.block_rows >= hm.rows_done
                                                                 else "NaN or Inf on a side")
        return f"{where}: {'|B−A|' if hm.block_rows * hm.block_cols == 1 else 'max |B−A|'} {format_value(value)}"

    def _hovered(self, pos) -> None:
        if self.heatmap is None or not self.plot.sceneBoundingRect().contains(pos):
            return
        point = self.plot.vb.mapSceneToView(pos)
        text = self.readout_at(point.y(), point.x())
        if text:
            self.readout.set_full_text(text)
