"""Depth profile: legend beside the plot, distinct colours, whole-layer ticks, norms hidden, zeros kept on log."""

from __future__ import annotations

import math

from core.depth import DepthSeries
from gui.panels.depth import DepthPanel, distinct_colors, layer_tick_step
from gui.style import SERIES_COLORS


def series(label: str, role: str, values: list[float]) -> DepthSeries:
    return DepthSeries(label, role, f"layers.*.{label}", [(i, v, f"layers.{i}.{label}") for i, v in enumerate(values)])


def profiles() -> dict[str, list[DepthSeries]]:
    lines = [series("q", "attention.q", [0.1, 0.2, 0.0, 0.3]), series("head_like", "head", [0.1, 0.1, 0.1, 0.1]),
             series("k", "attention.k", [0.2, 0.2, 0.2, 0.2]), series("norm · in", "norm", [1.0, 1.0, 1.0, 1.0])]
    return {"std": lines}


def test_colours_never_repeat_while_the_palette_lasts() -> None:
    roles = ["attention.k", "head", "mlp.up", "mlp.up", "norm", "norm", "other", "other"]
    colours = distinct_colors(roles)
    assert len(set(colours)) == len(roles)
    assert len(set(distinct_colors(["other"] * len(SERIES_COLORS)))) == len(SERIES_COLORS)


def test_layer_ticks_are_whole_numbers() -> None:
    assert layer_tick_step(4) == 1 and layer_tick_step(12) == 1 and layer_tick_step(13) == 2
    assert layer_tick_step(126) == 11


def test_panel_hides_norms_keeps_zeros_on_log_and_says_when_empty(qtbot) -> None:
    panel = DepthPanel()
    qtbot.addWidget(panel)
    panel.show()
    assert panel.stack.currentWidget() is panel.empty and panel.empty.text().endswith(".")
    panel.set_profiles(profiles())
    assert panel.stack.currentWidget() is panel.canvas
    panel.resize(800, 500)
    qtbot.waitUntil(lambda: panel.legend.sceneBoundingRect().left() > 0)
    assert panel.legend.scene() is panel.plot.scene()
    assert panel.legend.sceneBoundingRect().left() >= panel.plot.vb.sceneBoundingRect().right()  # beside, not over
    assert not panel.curves["norm · in"].isVisible() and panel.curves["q"].isVisible()
    assert "1 norm line hidden" in panel.subtitle.text() and panel.subtitle.toolTip() == panel.subtitle.text()
    pens = {label: curve.opts["pen"].color().name() for label, curve in panel.curves.items()}
    assert len(set(pens.values())) == len(pens)
    panel.curves["norm · in"].setVisible(True)  # the user shows it: it stays shown across redraws
    panel.log_y.setChecked(True)
    assert panel.curves["norm · in"].isVisible()
    xs, ys = panel.zero_marks.getData()
    assert list(xs) == [2.0] and ys[0] == math.log10(0.1 / 10)  # a decade below the smallest positive value
    _, curve_y = panel.curves["q"].getData()
    assert curve_y[2] == ys[0]  # the line goes down to the mark (log10 in the data) instead of breaking
    assert "1 all-zero at the bottom" in panel.subtitle.text()
    panel.set_profiles({"std": []}, note="")
    assert panel.stack.currentWidget() is panel.empty and "no repeated blocks" in panel.empty.text()
