"""A selection's figures are drawn a turn after they arrive, never inside the turn that paints the new row."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_llama


def test_figures_wait_a_turn_and_whoever_reads_the_panel_gets_them_at_once(qtbot, tmp_path: Path) -> None:
    from gui.jobs import load_model
    from gui.model_view import TAB_DISTRIBUTION, ModelView

    path, _ = write_llama(tmp_path)
    view = ModelView(load_model(str(path)), "cpu")
    qtbot.addWidget(view)
    view.resize(1200, 800)
    view.show()
    qtbot.waitUntil(view.is_idle, timeout=20000)
    view.tabs.setCurrentIndex(TAB_DISTRIBUTION)
    first, second = "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight"
    assert view.select_tensor(first)
    qtbot.waitUntil(view.is_idle, timeout=20000)
    earlier = view.selection_scoped
    panel = view.distribution_tab.panel
    assert panel.stats is earlier.update.stats and panel.stats.name == first
    assert view.select_tensor(second)
    qtbot.waitUntil(view.is_idle, timeout=20000)
    assert panel.stats.name == second
    latest = view.selection_scoped
    view._selection_update(earlier)  # what the selection job's signal delivers
    assert panel.stats.name == second and not view.is_idle()  # not drawn inside the signal's turn
    qtbot.waitUntil(lambda: panel.stats is earlier.update.stats, timeout=2000)  # drawn on a later turn
    qtbot.waitUntil(view.is_idle, timeout=2000)  # the table fills on a turn of its own
    view._selection_update(latest)
    assert view.distribution.stats.name == second  # read through the view: drawn now
    assert not view._draw_timer.isActive()
    view.shutdown()
