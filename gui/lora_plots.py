"""The LoRA section's depth profile: relative update ‖ΔW‖/‖W‖ per layer, one line per module kind (q_proj ...).

It draws core.lora.depth_profile's rows grouped as the PDF groups them (core.lora_report.profile_series), so the
app and the report show the same lines. Module kinds come from the file: legends are escaped.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from core.lora_report import profile_series
from gui.panels.depth import distinct_colors, layer_tick_step
from gui.plain import rich_escape

RELATIVE_HELP = ("Relative update ‖ΔW‖/‖W‖: how big the adapter's change is next to the weight it changes: 0.27 "
                 "means the update is 27% of the weight's size.")
PROFILE_HELP = (f"{RELATIVE_HELP}\nOne line per kind of adapted module, by layer: the layers where the adapter "
                "changes the model most stand out.")


class LoraDepthPlot(pg.PlotWidget):
    """Lines of relative update by layer; ``series`` holds what is drawn (label, layers, values)."""

    def __init__(self) -> None:
        super().__init__(background="w")
        self.setObjectName("LoraDepthPlot")
        self.setToolTip(PROFILE_HELP)
        self.setMinimumHeight(230)
        self.setMaximumHeight(300)
        plot = self.getPlotItem()
        plot.setMenuEnabled(False)
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setTitle("Relative update by layer")
        plot.setLabel("bottom", "layer (block index)")
        plot.setLabel("left", "‖ΔW‖ / ‖W‖")
        plot.getAxis("left").enableAutoSIPrefix(False)
        self.legend = plot.addLegend(offset=(-10, 10), labelTextColor="#1f2937", brush=(255, 255, 255, 200))
        self.series: list = []

    def set_profile(self, rows: list[dict]) -> None:
        """Draw core.lora.depth_profile's rows, replacing what was drawn."""
        plot = self.getPlotItem()
        for item in list(plot.listDataItems()):
            plot.removeItem(item)
        self.legend.clear()
        self.series = profile_series(rows, "relative_update")
        colors = distinct_colors([s.label for s in self.series])
        for series, color in zip(self.series, colors, strict=True):
            label = rich_escape(series.label)
            plot.plot(np.array(series.x), np.array(series.y), pen=pg.mkPen(color, width=1.8), symbol="o",
                      symbolSize=6, symbolBrush=color, symbolPen=pg.mkPen(color), name=label)
        layers = [x for s in self.series for x in s.x]
        if layers:
            step = layer_tick_step(int(max(layers) - min(layers)) + 1)
            plot.getAxis("bottom").setTickSpacing(step, step)
        plot.enableAutoRange()
