"""In the window (a sliced Distribution panel) a new curve paints on one turn and its marker lines on the next;
what they end up showing is what a directly drawn panel shows, and a reader gets them at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from core.formats import open_checkpoint
from core.stats import run
from core.stats_summary import TensorStats


def stats_of(tmp_path: Path) -> tuple[TensorStats, TensorStats]:
    rng = np.random.default_rng(5)
    a = (rng.standard_normal(6_000) * 0.02).astype(np.float32)
    b = (rng.standard_normal(4_000) * 0.3 - 0.5).astype(np.float32)
    save_file({"a": a, "b": b}, str(tmp_path / "m.safetensors"))
    with open_checkpoint(str(tmp_path / "m.safetensors")) as checkpoint:
        result = run(checkpoint, use_cache=False)
        return result.stats("a"), result.stats("b")


def built(qtbot, sliced: bool):
    from gui.panels.distribution import DistributionPanel

    panel = DistributionPanel(sliced=sliced)
    qtbot.addWidget(panel)
    panel.resize(700, 420)
    panel.show()
    qtbot.waitExposed(panel)
    panel.slices.finish()
    return panel


def test_markers_follow_the_curve_a_turn_later_and_match_a_direct_draw(qtbot, tmp_path: Path) -> None:
    first, second = stats_of(tmp_path)
    direct, sliced = built(qtbot, False), built(qtbot, True)
    for ts in (first, second):
        direct.set_stats(ts, "t", "test")
        sliced.set_stats(ts, "t", "test")
        assert [list(c) for c in sliced.curve.getData()] == [list(c) for c in direct.curve.getData()]  # curve now
        assert sliced.markers == [] and sliced.drawing  # markers: the next turn
        assert not any(m.isVisible() for m in sliced._marker_items.values())
        qtbot.waitUntil(lambda: not sliced.drawing, timeout=2000)
        assert sliced.markers and sliced.marker_names == direct.marker_names
        assert sliced.marker_positions() == direct.marker_positions()
        assert sliced.marker_positions()["mean"] == ts.mean
        assert sliced.shown_labels() == direct.shown_labels()


def test_a_reader_or_a_new_selection_never_sees_stale_markers(qtbot, tmp_path: Path) -> None:
    first, second = stats_of(tmp_path)
    panel = built(qtbot, True)
    panel.set_stats(first, "a", "test")
    assert panel.marker_positions()["mean"] == first.mean  # asked before the timer: drawn at once
    assert panel.markers and not panel._marker_timer.isActive()
    panel.set_stats(second, "b", "test")
    panel.show_pending("c", "")  # a new selection before the markers' turn: none of the old figures' markers
    qtbot.wait(40)
    assert panel.markers == [] and not any(m.isVisible() for m in panel._marker_items.values())
    panel.set_stats(second, "b", "test")
    panel.finish_drawing()  # what LazyTab.get, export and the screenshot do
    assert panel.marker_positions()["+σ"] == second.mean + second.std


def test_count_axis_keeps_its_width_when_the_first_large_counts_arrive(qtbot, tmp_path: Path) -> None:
    """A relayout (and a second paint of the plot) per selection came from the count axis widening for labels
    such as "300000"; it starts wide enough for them."""

    values = np.repeat(np.array([-0.5, 0.0, 0.5], dtype=np.float32), 333_334)  # ~333,334 values per bin
    save_file({"w": values}, str(tmp_path / "big.safetensors"))
    with open_checkpoint(str(tmp_path / "big.safetensors")) as checkpoint:
        ts = run(checkpoint, use_cache=False).stats("w")
    assert max(ts.hist_counts) >= 300_000
    panel = built(qtbot, True)
    axis = panel.plot.getAxis("left")
    before = axis.width()
    panel.set_stats(ts, "w", "test")
    qtbot.waitUntil(lambda: not panel.drawing, timeout=2000)
    panel.plot.grab()  # a paint: the axis measures its tick labels
    qtbot.wait(20)
    assert axis.width() == before
