"""Responsiveness: the Summary built in slices, painted bar charts, progress without repaints, niced workers."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.formats import open_checkpoint
from tests.conftest import write_llama


def test_sliced_summary_builds_one_section_per_turn_and_ends_like_a_direct_one(qtbot, tmp_path: Path) -> None:
    from gui.panels.summary import SummaryPanel

    path, _ = write_llama(tmp_path)
    checkpoint = open_checkpoint(str(path))
    try:
        direct = SummaryPanel(checkpoint)
        sliced = SummaryPanel(checkpoint, sliced=True)
        qtbot.addWidget(direct)
        qtbot.addWidget(sliced)
        assert not direct.building and sliced.building
        assert not hasattr(sliced, "storage_label")  # nothing but the scroll area on the constructing turn
        sliced.set_problem_count(3, 10)  # the Findings may finish first: shown once the headline exists
        steps = 0
        while sliced.building:
            sliced.slices.step()  # what the 1 ms timer does on one turn of the event loop
            steps += 1
        # headline, its numbers in two slices and their grid, count story, where, the sections' grid, four boxes
        assert steps == 11
        assert sliced.problem_label.text() == "⚠ 3 problems found"
        assert sliced.storage_label.text() == direct.storage_label.text()
        for name in ("memory_table", "dtype_table", "files_table"):
            a, b = getattr(direct, name), getattr(sliced, name)
            assert [[a.item(r, c).text() for c in range(a.columnCount())] for r in range(a.rowCount())] == \
                   [[b.item(r, c).text() for c in range(b.columnCount())] for r in range(b.rowCount())], name
        assert sliced.role_chart.texts == direct.role_chart.texts and sliced.sections.widgets
    finally:
        checkpoint.close()


def test_finish_build_adds_every_section_now(qtbot, tmp_path: Path) -> None:
    from gui.panels.summary import SummaryPanel

    path, _ = write_llama(tmp_path)
    checkpoint = open_checkpoint(str(path))
    try:
        panel = SummaryPanel(checkpoint, sliced=True)
        qtbot.addWidget(panel)
        panel.finish_build()
        assert not panel.building and not panel.slices.scheduled
        assert panel.memory_table.rowCount() >= 6 and panel.files_table.item(0, 0).text() == "model.safetensors"
    finally:
        checkpoint.close()


def test_bar_chart_paints_bars_proportional_to_values(qtbot) -> None:
    from PySide6.QtGui import QColor

    from gui.panels.summary import BarChart

    chart = BarChart()
    qtbot.addWidget(chart)
    chart.set_bars([("Weights", 3000, "#2563eb"), ("Biases", 1000, "#f59e0b")], "Values by kind.")
    assert chart.texts == ["Weights  3.00 K (75.0%)", "Biases  1.00 K (25.0%)"]
    assert chart.toolTip().startswith("Values by kind.") and "Biases  1.00 K (25.0%)" in chart.toolTip()
    chart.resize(600, chart.height())
    image = chart.grab().toImage()

    def run_of(colour: str) -> int:
        wanted = QColor(colour).rgb()
        rows = [sum(1 for x in range(image.width()) if image.pixel(x, y) == wanted) for y in range(image.height())]
        return max(rows)

    weights, biases = run_of("#2563eb"), run_of("#f59e0b")
    assert weights > 100 and abs(weights / biases - 3.0) < 0.05


def test_progress_bar_takes_the_value_without_a_synchronous_repaint(qtbot, settings) -> None:
    from gui.main_window import MainWindow

    window = MainWindow(interactive=False)
    qtbot.addWidget(window)
    window.show()
    bar = window.progress_bar
    bar.show()
    qtbot.waitExposed(window)
    painted: list[int] = []
    original = bar.paintEvent
    bar.paintEvent = lambda event: (painted.append(bar.value()), original(event))
    window._set_progress(0.425)
    assert (bar.value(), bar.maximum(), bar.format()) == (425, 1000, "42%")
    assert painted == [] and bar.updatesEnabled()  # painted on a later paint event, not inside setValue
    qtbot.waitUntil(lambda: 425 in painted, timeout=2000)
    bar.setValue(600)  # the check itself can fail: Qt's own setValue paints inside the call
    assert painted[-1] == 600


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_background_threads_run_behind_the_ui_thread() -> None:
    from gui.priority import BACKGROUND_NICENESS, lower_thread_priority

    main_nice = os.getpriority(os.PRIO_PROCESS, os.getpid())
    seen: dict[str, int | bool] = {}

    def job() -> None:
        seen["lowered"] = lower_thread_priority()
        seen["again"] = lower_thread_priority()  # a reused pool thread is not lowered twice
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        child = threading.Thread(target=lambda: seen.update(child=os.getpriority(os.PRIO_PROCESS,
                                                                                 threading.get_native_id())))
        child.start()
        child.join()

    worker = threading.Thread(target=job)
    worker.start()
    worker.join()
    expected = min(19, main_nice + BACKGROUND_NICENESS)
    assert seen["lowered"] and seen["again"] and seen["nice"] == expected and seen["child"] == expected
    assert lower_thread_priority() is False  # never the UI thread itself
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == main_nice


def test_open_model_tab_is_idle_only_once_the_summary_is_complete(make_window, open_model, tmp_path: Path) -> None:
    save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(tmp_path / "m.safetensors"))
    window = make_window(interactive=False)
    view = open_model(window, tmp_path / "m.safetensors")
    panel = view.summary_tab.panel
    assert panel is not None and not panel.building and panel.files_table.item(0, 0).text() == "m.safetensors"


def test_sliced_depth_panel_draws_a_few_lines_per_turn_and_a_new_redraw_replaces_the_old(qtbot) -> None:
    from core.depth import DepthSeries
    from gui.panels.depth import LINES_PER_TURN, DepthPanel

    def line(i: int) -> DepthSeries:
        return DepthSeries(f"m{i}", "mlp.up", f"layers.*.m{i}", [(k, 0.1 * (i + 1), f"layers.{k}.m{i}")
                                                                 for k in range(4)])

    lines = [line(i) for i in range(2 * LINES_PER_TURN + 3)]  # at least five: the last redraw keeps four
    direct, sliced = DepthPanel(), DepthPanel(sliced=True)
    for panel in (direct, sliced):
        qtbot.addWidget(panel)
        panel.show()
    assert not hasattr(sliced, "plot")  # the plot comes on a later turn
    sliced.slices.finish()
    direct.set_profiles({"std": lines})
    sliced.set_profiles({"std": lines[:2]})
    sliced.set_profiles({"std": lines})  # replaces the first redraw before it ends
    assert len(direct.curves) == len(lines) and not direct.drawing
    assert len(sliced.curves) == 0 and sliced.drawing
    sliced._line_slices.step()
    assert len(sliced.curves) == LINES_PER_TURN
    qtbot.waitUntil(lambda: not sliced.drawing, timeout=2000)
    assert list(sliced.curves) == list(direct.curves) == [f"m{i}" for i in range(len(lines))]
    ys = {name: list(curve.getData()[1]) for name, curve in sliced.curves.items()}
    assert ys == {name: list(curve.getData()[1]) for name, curve in direct.curves.items()}
    assert sliced.subtitle.text() == direct.subtitle.text()
    sliced.set_profiles({"std": lines[:4]})
    sliced.finish_drawing()  # what LazyTab.get does for code that reads the curves at once
    assert list(sliced.curves) == ["m0", "m1", "m2", "m3"] and not sliced.drawing
    sliced.log_y.setChecked(True)  # the user's own choice is drawn whole at once
    assert len(sliced.curves) == 4 and not sliced.drawing


def test_memory_bar_paints_the_plan_end_to_end_against_the_capacity_line(qtbot) -> None:
    from PySide6.QtGui import QColor

    from core.gpus import GIB
    from gui.panels.memory import ITEM_COLORS, MemoryPanel
    from gui.style import WARNING

    panel = MemoryPanel(open_checkpoint("llama-3.1-70b"), "Llama 3.1 70B", sliced=True)
    qtbot.addWidget(panel)
    panel.resize(1000, 700)
    panel.show()
    assert not hasattr(panel, "bar")
    qtbot.waitUntil(lambda: not panel.slices.pending, timeout=5000)
    bar, result = panel.bar, panel.plan_result
    assert sum(width for _, _, width in bar.segments) == pytest.approx(sum(i.bytes for i in result.items) / GIB)
    assert bar.capacity_gib == pytest.approx(80.0)  # one H100 80GB, the default
    image = bar.grab().toImage()
    weights_end = bar.x_of(bar.segments[0][2])
    middle = bar.BAR_TOP + bar.BAR_HEIGHT // 2
    assert image.pixelColor(int(weights_end) - 3, middle) == QColor(ITEM_COLORS["weights"])
    column = round(bar.x_of(80.0))
    assert any(image.pixelColor(x, 8) == QColor(WARNING) for x in range(column - 1, column + 2))


def test_panels_building_at_once_take_turns_one_step_per_turn_the_visible_one_first(qtbot) -> None:
    from PySide6.QtWidgets import QWidget

    from gui.slices import Slices, _shared_turns

    hidden, shown = QWidget(), QWidget()
    for widget in (hidden, shown):
        qtbot.addWidget(widget)
    shown.show()
    ran: list[str] = []
    first = Slices(hidden, [lambda k=k: ran.append(f"hidden{k}") for k in range(2)], sliced=True)
    second = Slices(shown, [lambda k=k: ran.append(f"shown{k}") for k in range(2)], sliced=True)
    assert first.scheduled and second.scheduled and ran == []
    turns = _shared_turns()
    turns._run()  # what one firing of the shared 1 ms timer does
    assert ran == ["shown0"]
    turns._run()
    assert ran == ["shown0", "shown1"] and not second.scheduled
    qtbot.waitUntil(lambda: not first.pending, timeout=2000)
    assert ran == ["shown0", "shown1", "hidden0", "hidden1"] and not first.scheduled
