"""The window's stall targets (benchmarks/ui_latency.py): panels built in slices end like panels built at once, and
the plots avoid the pens that cost a millisecond and more per paint. Untimed: the benchmark measures the time."""

from __future__ import annotations

from PySide6.QtCore import Qt

from core.formats import open_checkpoint
from core.memory_plan import plan
from gui.panels.memory import MemoryPanel
from gui.style import SERIES_COLORS
from tests.test_gui_depth_view import series


def run_steps(panel) -> int:
    """Every slice left, one at a time as the shared timer runs them; how many there were."""
    steps = 0
    while panel.slices.pending:
        panel.slices.step()
        steps += 1
    return steps


def test_sliced_memory_panel_makes_its_inputs_over_three_turns_and_plans_like_a_direct_one(qtbot) -> None:
    checkpoint = open_checkpoint("llama-3.1-70b")
    direct = MemoryPanel(checkpoint, "Llama 3.1 70B")
    sliced = MemoryPanel(checkpoint, "Llama 3.1 70B", sliced=True)
    qtbot.addWidget(direct)
    qtbot.addWidget(sliced)
    assert not direct.slices.pending and sliced.slices.pending
    assert not hasattr(sliced, "gpu_combo")  # the constructing turn makes the header only
    sliced.slices.step()
    assert hasattr(sliced, "gpu_combo") and not hasattr(sliced, "mode_combo")
    sliced.slices.step()
    assert hasattr(sliced, "batch_spin") and not hasattr(sliced, "verdict")
    sliced.slices.step()  # the grid placed: every input is in the panel and wired
    assert sliced.gpu_combo.parent() is not None and sliced.batch_spin.parent() is sliced.gpu_combo.parent()
    sliced.gpus_spin.setValue(3)  # changed before the panel is whole: the last slice plans with it
    assert sliced.plan_result is None
    assert run_steps(sliced) == 3  # bar, items and account, the first plan
    assert sliced.plan_result == plan(checkpoint, name="Llama 3.1 70B", **{**direct.plan_arguments(), "gpus": 3})
    sliced.gpus_spin.setValue(direct.gpus_spin.value())  # wired: a change plans again
    assert sliced.plan_result == direct.plan_result
    assert sliced.verdict.text() == direct.verdict.text() and sliced.account.toPlainText() == \
        direct.account.toPlainText()


def test_depth_lines_dash_at_one_pixel_and_its_left_axis_only_grows(qtbot) -> None:
    from gui.panels.depth import DepthPanel

    panel = DepthPanel()
    qtbot.addWidget(panel)
    panel.show()
    lines = [series(f"m{i}", "mlp.up", [0.1 * (i + 1)] * 4) for i in range(len(SERIES_COLORS) + 2)]
    panel.set_profiles({"std": lines})  # more lines than colours: the later ones dashed
    pens = [curve.opts["pen"] for curve in panel.curves.values()]
    assert {p.style() for p in pens} > {Qt.PenStyle.SolidLine}  # some lines are told apart by their dashes
    assert all(p.widthF() <= 1.0 for p in pens if p.style() != Qt.PenStyle.SolidLine)
    panel.resize(800, 450)
    axis = panel.plot.getAxis("left")
    panel.grab()  # painted: the tick labels measured
    usual = axis.width()
    panel.log_y.setChecked(True)  # other, shorter tick labels ("10⁻⁵"): the axis keeps its width (no second layout)
    panel.grab()
    assert axis.width() == usual
    axis._updateMaxTextSize(usual + 30)  # what pyqtgraph does for a longer label: the axis still grows for it
    assert axis.minimumWidth() > usual


def test_sigma_markers_dash_at_one_pixel() -> None:
    from gui.panels.distribution import PCT_PEN, SIGMA_PEN

    for pen in (SIGMA_PEN, PCT_PEN):
        assert pen.style() != Qt.PenStyle.SolidLine and pen.widthF() <= 1.0


def test_the_shared_turns_rest_after_a_long_step_so_a_build_leaves_the_thread_half_free(qtbot) -> None:
    import time

    from PySide6.QtWidgets import QWidget

    from gui import slices as slices_module

    owner = QWidget()
    qtbot.addWidget(owner)
    ran: list[str] = []
    built = slices_module.Slices(owner, [lambda: (time.sleep(0.004), ran.append("slow")), lambda: ran.append("quick"),
                                         lambda: ran.append("last")], sliced=True)
    turns = slices_module._shared_turns()
    turns.timer.stop()  # this test runs the turns itself
    turns._run()
    assert ran == ["slow"] and turns.timer.isActive()
    assert 4 <= turns.timer.interval() <= slices_module.MAX_REST_MS  # rests about as long as the step took
    turns._run()
    assert ran == ["slow", "quick"] and turns.timer.interval() < 4  # a quick step (unless the machine is very busy)
    qtbot.waitUntil(lambda: not built.pending)
    assert ran == ["slow", "quick", "last"]


def test_an_opened_model_becomes_a_tab_on_the_turn_after_its_view_is_made(make_window, qtbot, tiny_llama) -> None:
    from gui.jobs import load_model

    path, _ = tiny_llama
    window = make_window(auto_analyse=False)
    opened = load_model(str(path))
    made: list = []
    window.sig_model_opened.connect(made.append)
    window._opened(opened)  # what the opening worker's return calls
    assert window.views() == [] and not window.is_idle() and not made  # made, not yet a tab: still busy
    window.open_paths([opened.path])  # asked again meanwhile: no second tab
    qtbot.waitUntil(lambda: bool(made))
    assert window.views() == made and window.current_view() is made[0] and window.tabs.count() == 1
    qtbot.waitUntil(window.is_idle)
    assert window.tabs.count() == 1
