"""Distribution: marker labels clear of each other and of the curve, "Fit to bulk", undefined statistics named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from core.formats import open_checkpoint
from core.stats import run
from core.stats_summary import TensorStats


def stats_of(tmp_path: Path, values: np.ndarray) -> TensorStats:
    save_file({"w": values}, str(tmp_path / "m.safetensors"))
    with open_checkpoint(str(tmp_path / "m.safetensors")) as checkpoint:
        return run(checkpoint, use_cache=False).stats("w")


def panel_with(qtbot, ts: TensorStats):
    from gui.panels.distribution import DistributionPanel

    panel = DistributionPanel()
    qtbot.addWidget(panel)
    panel.resize(640, 420)
    panel.show()
    qtbot.waitExposed(panel)
    panel.set_stats(ts, "w", "test")
    return panel


def label_rects(panel) -> dict[str, object]:
    return {m.label.format: m.label.sceneBoundingRect() for m in panel.markers if m.label.isVisible()}


def test_crowded_marker_labels_never_overlap_each_other_or_the_curve(qtbot, tmp_path) -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal(20_000).astype(np.float32) * 0.01
    values[0] = 5.0  # the outlier squeezes mean, ±σ and p1/p99 into a few pixels
    panel = panel_with(qtbot, stats_of(tmp_path, values))
    qtbot.wait(50)
    rects = label_rects(panel)
    assert sorted(" · ".join(rects).split(" · ")) == sorted(["mean", "−σ", "+σ", "p1", "p99"])  # all named once
    assert len(rects) < 5  # crowded: some share a label
    names = sorted(rects)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not rects[a].intersects(rects[b]), (a, b)
    from PySide6.QtCore import QPointF

    _, y = panel.curve.getData()
    view = panel.plot.getViewBox()
    top_of_bars = view.mapViewToScene(QPointF(0.0, float(np.max(y)))).y()
    assert all(rect.bottom() <= top_of_bars for rect in rects.values()), (top_of_bars, rects)
    panel.resize(1400, 420)  # room enough: every marker gets its own label again
    qtbot.wait(50)
    assert len(label_rects(panel)) >= len(rects)


def test_fit_to_bulk_zooms_to_the_middle_percentiles(qtbot, tmp_path) -> None:
    rng = np.random.default_rng(1)
    values = rng.standard_normal(20_000).astype(np.float32)
    values[:3] = 1e4
    ts = stats_of(tmp_path, values)
    panel = panel_with(qtbot, ts)
    (x0, x1), _ = panel.plot.getViewBox().viewRange()
    assert x1 >= 1e4 * 0.99
    panel.fit_bulk.setChecked(True)
    (x0, x1), _ = panel.plot.getViewBox().viewRange()
    lo, hi = ts.percentiles["0.1"], ts.percentiles["99.9"]
    assert lo - 0.2 * (hi - lo) <= x0 <= lo and hi <= x1 <= hi + 0.2 * (hi - lo)


def test_undefined_statistics_say_why(qtbot, tmp_path) -> None:
    panel = panel_with(qtbot, stats_of(tmp_path, np.full(64, 0.5, np.float32)))
    assert panel.table_text("Kurtosis").startswith("undefined") and "NaN" not in panel.table_text("Kurtosis")
    assert panel.table_text("Skewness").startswith("undefined")
    assert panel.table_text("Mean") == "0.5"
