"""The Findings tab on a planted broken model and a healthy one: lines, icons, tree marks, click to select."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from safetensors.numpy import save_file

from gui.panels.findings import FINDING_ROLE, problem_headline
from gui.tree_model import COL_NAME, MARK_ROLE
from tests.test_findings_data import OUTLIER, OUTLIER_AT, broken_tensors

NAN = "model.layers.0.self_attn.q_proj.weight"
ZERO = "model.layers.0.self_attn.o_proj.weight"
CRUSHED = "model.layers.0.mlp.up_proj.weight"


def write(folder: Path, tensors: dict[str, np.ndarray]) -> Path:
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    return folder / "model.safetensors"


def open_findings(qtbot, make_window, open_model, path: Path):
    window = make_window()
    view = open_model(window, path)
    qtbot.waitUntil(lambda: view.found is not None and window.is_idle(), timeout=30000)
    view.tabs.setCurrentWidget(view.findings_tab)
    qtbot.waitUntil(lambda: view.findings_tab.panel is not None and window.is_idle(), timeout=10000)
    return window, view, view.findings


def test_broken_model_lists_every_planted_problem(qtbot, make_window, open_model, tmp_path):
    tensors = broken_tensors()
    window, view, panel = open_findings(qtbot, make_window, open_model, write(tmp_path / "broken-model", tensors))
    assert window.tabs.tabText(0) == "broken-model"
    lines = panel.lines()
    by_tensor = {line.split(": ", 1)[0]: line for line in lines}
    assert "3 NaN, 1 +Inf, 1 -Inf" in by_tensor[NAN]
    nan_at = [tuple(c) for c in np.argwhere(~np.isfinite(tensors[NAN]))[:3].tolist()]
    assert "at " + ", ".join(str(c) for c in nan_at) in by_tensor[NAN]
    assert "all 2,304 values are zero" in by_tensor[ZERO]
    assert f"at {OUTLIER_AT}" in by_tensor[OUTLIER] and "3.5" in by_tensor[OUTLIER]
    assert "only 3 distinct values (-0.25, 0, 0.5)" in by_tensor[CRUSHED]
    # errors first, with the error icon; the headline counts problems, not notes
    first = panel.list.item(0)
    assert first.data(FINDING_ROLE).severity == "error" and not first.icon().isNull()
    problems = sum(1 for i in range(panel.list.count()) if panel.list.item(i).data(FINDING_ROLE).is_problem)
    assert problems == 4  # NaN/Inf, the zero layer, two crushed tensors
    notes = panel.list.count() - problems
    assert panel.title.text() == problem_headline(4, notes, len(tensors)) and panel.title.text().startswith(
        "4 problems found")
    assert "explanation" not in first.toolTip() and "NaN (not a number)" in first.toolTip()

    # tree marks: the tensor's row, its parents and the root carry the worst severity beneath them
    view.set_folded(False)
    model = view.tree_model
    nan_row = model.find_tensor(NAN)
    assert model.data(nan_row, MARK_ROLE) == "error"
    assert not model.data(nan_row, Qt.ItemDataRole.DecorationRole).isNull()
    assert "3 NaN" in model.data(nan_row, Qt.ItemDataRole.ToolTipRole)
    assert model.data(model.index(0, COL_NAME), MARK_ROLE) == "error"  # the whole model
    healthy_row = model.find_tensor("model.embed_tokens.weight")
    assert model.data(healthy_row, MARK_ROLE) is None
    assert model.data(healthy_row, Qt.ItemDataRole.DecorationRole) is None

    # clicking the outlier selects its tensor, shows its histogram, and rings the outlier in the heatmap
    row = next(i for i in range(panel.list.count()) if panel.list.item(i).data(FINDING_ROLE).kind == "outlier")
    panel.list.itemClicked.emit(panel.list.item(row))
    assert view.selection is not None and view.selection.single.name == OUTLIER
    assert view.tabs.currentWidget() is view.distribution_tab
    qtbot.waitUntil(lambda: view.distribution.stats is not None and view.distribution.stats.name == OUTLIER
                    and window.is_idle(), timeout=20000)
    assert view.distribution.stats.max == np.float32(3.5)
    view.tabs.setCurrentWidget(view.heatmap_tab)
    qtbot.waitUntil(lambda: view.heatmap_tab.panel is not None and window.is_idle(), timeout=20000)
    assert view.heatmap.marked == OUTLIER_AT
    xs, ys = view.heatmap.marker.getData()
    assert (float(ys[0]), float(xs[0])) == (OUTLIER_AT[0] + 0.5, OUTLIER_AT[1] + 0.5)


def test_healthy_model_says_no_problems(qtbot, make_window, open_model, tmp_path):
    rng = np.random.default_rng(5)
    tensors = {f"model.layers.{i}.mlp.down_proj.weight": (rng.standard_normal((32, 32)) * 0.02).astype(np.float32)
               for i in range(5)}
    _window, view, panel = open_findings(qtbot, make_window, open_model, write(tmp_path / "healthy", tensors))
    assert panel.title.text() == "No problems found in 5 tensors"
    assert panel.lines() == []
    assert view.found.problems == 0
    assert all(view.tree_model.data(view.tree_model.find_tensor(n), MARK_ROLE) is None for n in tensors)


def test_problem_headline_words() -> None:
    assert problem_headline(0, 0, 1137) == "No problems found in 1,137 tensors"
    assert problem_headline(3, 0, 10) == "3 problems found"
    assert problem_headline(1, 2, 10) == "1 problem found · 2 notes"


def test_screenshot_of_the_findings_tab(tmp_path):
    """``--screenshot --tab findings`` waits for the findings and draws them: the error icon shows on the right."""
    from PySide6.QtGui import QImage

    from tests.test_gui_screenshot import run_main

    path = write(tmp_path / "broken-model", broken_tensors())
    out = tmp_path / "findings.png"
    proc = run_main("--screenshot", str(out), "--tab", "findings", "--size", "1000x600", str(path), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1000, 600)

    def red(x: int, y: int) -> bool:
        c = image.pixelColor(x, y)
        return c.red() > 180 and c.green() < 90 and c.blue() < 90

    assert any(red(x, y) for x in range(400, 1000) for y in range(120, 300))  # its error icon; the tree's dots lie left
