"""Heatmap: NaN and Inf in named colours with counts, clip and log scales, a titled colour bar, hover readout."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.formats import open_checkpoint
from gui.panels.heatmap import SPECIAL_COLOURS, display_values


@pytest.fixture
def broken_matrix(tmp_path: Path) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 30)).astype(np.float32)
    a[3, 4] = np.nan
    a[10, 11] = np.inf
    a[12, 0] = -np.inf
    a[20, 20] = 1000.0  # one outlier that flattens a linear scale
    path = tmp_path / "m.safetensors"
    save_file({"w": a}, str(path))
    return str(path), a


def show(qtbot, path: str, mode: str = "absmax"):
    from gui.panels.heatmap import HeatmapPanel

    checkpoint = open_checkpoint(path)
    panel = HeatmapPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 500)
    panel.show()
    panel.mode.setCurrentIndex(panel.mode.findData(mode))
    panel.set_tensor(checkpoint, checkpoint.tensor("w"))
    qtbot.waitUntil(lambda: panel.heatmap is not None and panel.heatmap.fraction == 1 and not panel.job.busy,
                    timeout=10000)
    return checkpoint, panel


def test_nan_and_inf_are_painted_and_named(qtbot, broken_matrix) -> None:
    path, a = broken_matrix
    checkpoint, panel = show(qtbot, path, mode="mean")
    try:
        assert panel.special_counts == {"nan": 1, "posinf": 1, "neginf": 1}
        rgba = panel.special.image
        assert tuple(rgba[3, 4, :3]) == SPECIAL_COLOURS["nan"][1] and rgba[3, 4, 3] == 255
        assert tuple(rgba[10, 11, :3]) == SPECIAL_COLOURS["posinf"][1]
        assert tuple(rgba[12, 0, :3]) == SPECIAL_COLOURS["neginf"][1]
        assert rgba[0, 0, 3] == 0  # a finite value is left to the colour map
        legend = panel.special_legend_text()
        assert "NaN in magenta: 1 value" in legend and "+Inf in red: 1 value" in legend
        assert panel.colorbar.getAxis("left").labelText == "value"
        assert panel.readout_at(5.5, 7.2) == f"row 5, column 7: {a[5, 7]:.4g}"
        assert panel.readout_at(3, 4) == "row 3, column 4: NaN"
        assert panel.readout_at(-1, 0) == "" and panel.readout_at(40, 0) == ""
    finally:
        checkpoint.close()


def test_scales_clip_and_log_change_the_range_and_the_title(qtbot, broken_matrix) -> None:
    path, a = broken_matrix
    checkpoint, panel = show(qtbot, path)
    try:
        finite = np.abs(a[np.isfinite(a)])
        assert panel.colorbar.levels() == pytest.approx((0.0, 1000.0))
        panel.scale.setCurrentIndex(panel.scale.findData("clip"))
        lo, hi = np.percentile(finite, [1, 99])
        assert panel.colorbar.levels() == pytest.approx((lo, hi), rel=1e-6)
        assert "clipped to p1–p99" in panel.colorbar.getAxis("left").labelText
        panel.scale.setCurrentIndex(panel.scale.findData("log"))
        assert panel.colorbar.levels() == pytest.approx((math.log10(finite.min()), 3.0), rel=1e-5)
        assert panel.colorbar.getAxis("left").labelText.startswith("log10 of")
    finally:
        checkpoint.close()


def test_display_values_log_puts_zeros_a_decade_below() -> None:
    shown, levels = display_values(np.array([[0.0, 0.01], [1.0, np.nan]], np.float32), "absmax", "log")
    assert shown[0, 0] == pytest.approx(-3.0) and shown[0, 1] == pytest.approx(-2.0) and np.isnan(shown[1, 1])
    assert levels == pytest.approx((-3.0, 0.0))
