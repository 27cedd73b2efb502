"""Distribution panel responsiveness: built in slices, marker lines reused, hidden redraws and the table deferred."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from core.formats import open_checkpoint
from core.numbers import format_value
from core.stats import run
from core.stats_summary import TensorStats


def two_stats(tmp_path: Path) -> tuple[TensorStats, TensorStats]:
    rng = np.random.default_rng(3)
    a = (rng.standard_normal(5_000) * 0.02).astype(np.float32)
    b = (rng.standard_normal(7_000) * 0.5 + 1.0).astype(np.float32)
    save_file({"a": a, "b": b}, str(tmp_path / "m.safetensors"))
    with open_checkpoint(str(tmp_path / "m.safetensors")) as checkpoint:
        result = run(checkpoint, use_cache=False)
        return result.stats("a"), result.stats("b")


def shown(qtbot, panel, width: int = 700, height: int = 420):
    qtbot.addWidget(panel)
    panel.resize(width, height)
    panel.show()
    qtbot.waitExposed(panel)
    return panel


def test_sliced_panel_builds_one_piece_per_turn_and_ends_like_a_direct_one(qtbot, tmp_path: Path) -> None:
    from gui.panels.distribution import DistributionPanel

    ts, _ = two_stats(tmp_path)
    direct = shown(qtbot, DistributionPanel())
    sliced = shown(qtbot, DistributionPanel(sliced=True))
    assert not direct.slices.pending and sliced.slices.pending
    assert not hasattr(sliced, "plot") and sliced.pages.count() == 0  # only the controls on the constructing turn
    steps = 0
    while sliced.slices.pending:
        sliced.slices.step()  # what the 1 ms timer does on one turn of the event loop
        steps += 1
        if sliced.slices.pending:
            assert sliced.pages.count() == 0  # the half-made plot stays out of the window until the last step
    assert steps == 11  # view box, axes, plot item (gui/plot_parts.py), plot, curve, axis titles, five markers two
    # at a time (3), table, attach
    assert sliced.pages.currentWidget() is sliced.split and sliced.plot.isVisible()
    for panel in (direct, sliced):
        panel.set_stats(ts, "a", "test")
    assert sliced.marker_positions() == direct.marker_positions()
    assert sliced.shown_labels() == direct.shown_labels()
    assert [list(c) for c in sliced.curve.getData()] == [list(c) for c in direct.curve.getData()]
    assert sliced.table_text("Mean") == direct.table_text("Mean") == format_value(ts.mean)


def test_marker_lines_are_moved_not_made_again(qtbot, tmp_path: Path) -> None:
    from gui.panels.distribution import DistributionPanel

    first, second = two_stats(tmp_path)
    panel = shown(qtbot, DistributionPanel())
    panel.set_stats(first, "a", "test")
    lines = {name: id(m) for name, m in zip(panel.marker_names, panel.markers, strict=True)}
    items_before = len(panel.plot.getPlotItem().items)
    panel.set_stats(second, "b", "test")
    assert {name: id(m) for name, m in zip(panel.marker_names, panel.markers, strict=True)} == lines
    assert len(panel.plot.getPlotItem().items) == items_before  # nothing added per selection
    assert panel.marker_positions()["mean"] == second.mean
    assert panel.marker_positions()["+σ"] == second.mean + second.std
    assert panel.marker_positions()["p99"] == second.percentiles["99"]
    panel.clear()
    assert panel.markers == [] and not any(m.isVisible() for m in panel._marker_items.values())


def test_hidden_panel_draws_when_shown_and_the_table_fills_a_turn_later(qtbot, tmp_path: Path) -> None:
    from gui.panels.distribution import DistributionPanel

    first, second = two_stats(tmp_path)
    panel = shown(qtbot, DistributionPanel())
    panel.set_stats(first, "a", "test")
    _, y_first = panel.curve.getData()
    panel.hide()
    panel.set_stats(second, "b", "test")
    assert list(panel.curve.getData()[1]) == list(y_first)  # hidden: the plot keeps the old curve, no work done
    assert panel.title.text() == "b" and panel.stats is second  # the header and figures are current at once
    panel.show()
    qtbot.waitExposed(panel)
    _, y = panel.curve.getData()
    assert list(y) == [float(c) for c in second.hist_counts]
    assert panel.marker_positions()["mean"] == second.mean
    qtbot.waitUntil(lambda: not panel.drawing, timeout=2000)
    assert panel.table.item(2, 1).text() == format_value(second.mean)  # row 2: Mean

    panel.set_stats(first, "a", "test")
    assert panel.drawing and panel.table.item(2, 1).text() == format_value(second.mean)  # not yet: next turn
    qtbot.waitUntil(lambda: not panel.drawing, timeout=2000)
    assert panel.table.item(2, 1).text() == format_value(first.mean)
    panel.set_stats(second, "b", "test")
    assert panel.table_text("Mean") == format_value(second.mean)  # a reader gets the current figures at once
    assert not panel.drawing


def test_hidden_panel_draws_for_a_reader_who_asks(qtbot, tmp_path: Path) -> None:
    from gui.panels.distribution import DistributionPanel

    _, second = two_stats(tmp_path)
    panel = DistributionPanel()
    qtbot.addWidget(panel)  # never shown
    panel.set_stats(second, "b", "test")
    assert panel.markers == []
    panel.finish_drawing()  # what the view's LazyTab.get does for tests, export and the screenshot
    assert panel.marker_positions()["mean"] == second.mean
    assert list(panel.curve.getData()[1]) == [float(c) for c in second.hist_counts]
