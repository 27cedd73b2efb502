"""The Compare tab: figures against core.diff.run and numpy, numeric sorting, the depth profile, the |B−A|
heatmap, cancel, Ctrl-drop, refusals and hostile names."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication
from safetensors.numpy import save_file

from core.diff import metrics, run
from core.numbers import format_value
from gui.compare_table import COL_MAX, COL_NAME, COL_RANK, COL_REL, cell_text
from tests.conftest import llama_tensors

REPO = Path(__file__).resolve().parents[1]
HOSTILE = '<b style="color:green">VERIFIED SAFE</b>'
MOVED = {"model.layers.1.self_attn.q_proj.weight": 0.05, "model.layers.3.mlp.down_proj.weight": 0.3,
         "model.layers.2.mlp.up_proj.weight": 0.0002, HOSTILE: 0.5}


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, dict, dict]:
    """A 4-layer model and a copy with a few tensors moved by known amounts, one tensor only in each, one
    resized, and a hostile tensor name in both."""
    rng = np.random.default_rng(11)
    a = llama_tensors()
    a[HOSTILE] = rng.normal(size=(8, 8)).astype(np.float32)
    a["only.in.a"] = np.zeros(3, np.float32)
    a["resized.weight"] = np.zeros((4, 4), np.float32)
    b = {k: v.copy() for k, v in a.items() if k != "only.in.a"}
    for name, size in MOVED.items():
        noise = rng.normal(size=a[name].shape)
        b[name] = (a[name] + size * np.linalg.norm(a[name]) * noise / np.linalg.norm(noise)).astype(np.float32)
    b["only.in.b"] = np.ones(2, np.float32)
    b["resized.weight"] = np.zeros((4, 5), np.float32)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_file(a, str(tmp_path / "a" / "model.safetensors"))
    save_file(b, str(tmp_path / "b" / "model.safetensors"))
    return tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors", a, b


def compared(window, qtbot, open_model, a: Path, b: Path):
    view = open_model(window, a)
    view.compare_with(str(b))
    qtbot.waitUntil(window.is_idle, timeout=30000)
    return view, view.compare.panel


def compared_slowly(make_window, open_model, monkeypatch, a: Path, b: Path):
    """A opened and analysed at full speed, then every read slowed to 50 ms and the comparison with B started:
    (window, view, compare panel), the comparison still running."""
    from core.checkpoint import Checkpoint

    window = make_window()
    view = open_model(window, a)
    read = Checkpoint.read_raw

    def slowly(*args, **kwargs):
        time.sleep(0.05)
        return read(*args, **kwargs)

    monkeypatch.setattr(Checkpoint, "read_raw", slowly)
    view.compare_with(str(b))
    return window, view, view.compare.panel


def same(x: float, y: float) -> bool:
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15)


def test_the_tab_fills_with_the_engines_figures(make_window, qtbot, open_model, pair) -> None:
    a_path, b_path, a, b = pair
    window = make_window()
    view, panel = compared(window, qtbot, open_model, a_path, b_path)
    assert view.tabs.currentWidget() is panel and view.tabs.tabText(view.tabs.indexOf(panel)) == "Compare"
    want = run(a_path, b_path)
    rows = {row.name: row for row in panel.table_model.rows}
    assert set(rows) == set(want.tensors) and len(rows) == len(a) - 2
    for name, td in want.tensors.items():
        expected = metrics(td.sums)
        for key in ("rel_change", "cosine", "max_abs_diff", "identical_fraction", "snr_db", "std_diff"):
            assert same(rows[name].figures[key], expected[key]), (name, key)
    # one tensor against an independent dense computation
    name = "model.layers.1.self_attn.q_proj.weight"
    d = b[name].astype(np.float64) - a[name].astype(np.float64)
    assert rows[name].value(COL_REL) == pytest.approx(np.linalg.norm(d) / np.linalg.norm(a[name].astype(np.float64)),
                                                      rel=1e-12)
    assert rows[name].value(COL_REL) == pytest.approx(0.05, rel=1e-5)
    assert cell_text(rows[name], COL_MAX) == format_value(float(np.abs(d).max()))
    assert rows["model.layers.0.self_attn.q_proj.weight"].figures["identical_fraction"] == 1
    # header: paths, counts, whole-model figures in words
    assert panel.counts.text() == f"{len(want.tensors)} pairs compared, 1 only in A, 1 only in B, 1 mismatched"
    model = metrics(want.model())
    assert panel.figure_labels["rel_change"].text() == f"relative change {format_value(model['rel_change'])}"
    assert panel.figure_labels["snr_db"].text() == ""  # no quantised side: no SNR
    assert "0 means unchanged, 0.01 means a 1%" in panel.figure_labels["rel_change"].toolTip()
    assert panel.a_label.full_text == f"A: {a_path}" and panel.b_label.full_text == f"B: {b_path}"
    assert [panel.only_a.item(i).text() for i in range(panel.only_a.count())] == ["only.in.a"]
    assert [panel.only_b.item(i).text() for i in range(panel.only_b.count())] == ["only.in.b"]
    mismatched = {panel.mismatched.item(i, 0).text(): panel.mismatched.item(i, 4).text()
                  for i in range(panel.mismatched.rowCount())}
    assert "shapes differ" in mismatched["resized.weight"]
    assert panel.lists.tabText(2) == "Only in B (1)"
    # the most changed matrix is shown after the comparison
    assert panel.selected_name() == HOSTILE and panel.heat.heatmap is not None


def test_sorting_is_by_value(make_window, qtbot, open_model, pair) -> None:
    a_path, b_path, _, _ = pair
    window = make_window()
    _, panel = compared(window, qtbot, open_model, a_path, b_path)
    model = panel.table_model
    panel.table.sortByColumn(COL_REL, Qt.SortOrder.DescendingOrder)
    values = [model.index(i, COL_REL).data(Qt.ItemDataRole.UserRole) for i in range(model.rowCount())]
    assert values == sorted(values, reverse=True)
    assert [model.index(i, COL_NAME).data() for i in range(4)] == sorted(MOVED, key=MOVED.get, reverse=True)
    texts = [model.index(i, COL_REL).data() for i in range(4)]
    assert texts != sorted(texts, reverse=True)  # as text "2.000e-04" would come first
    panel.table.sortByColumn(COL_REL, Qt.SortOrder.AscendingOrder)
    values = [model.index(i, COL_REL).data(Qt.ItemDataRole.UserRole) for i in range(model.rowCount())]
    assert values == sorted(values) and values[0] == 0
    # a selection survives a re-sort
    panel.select_tensor("model.layers.2.mlp.up_proj.weight")
    panel.table.sortByColumn(COL_NAME, Qt.SortOrder.AscendingOrder)
    assert panel.selected_name() == "model.layers.2.mlp.up_proj.weight"
    qtbot.waitUntil(window.is_idle, timeout=10000)


def test_depth_profile_has_a_point_per_layer_and_role_and_a_click_selects(make_window, qtbot, open_model,
                                                                          pair) -> None:
    a_path, b_path, _, _ = pair
    window = make_window()
    _, panel = compared(window, qtbot, open_model, a_path, b_path)
    rows = {row.name: row for row in panel.table_model.rows}
    lines = dict(panel.depth.profile)
    assert set(lines) == {"attention.q", "attention.k", "attention.v", "attention.o", "mlp.gate", "mlp.up",
                          "mlp.down", "norm"} and len(panel.depth.curves) == 8
    for role, points in lines.items():
        assert [p.layer for p in points] == [0, 1, 2, 3]
        for point in points:
            assert len(point.tensors) == (2 if role == "norm" else 1)
            if role != "norm":
                assert point.rel_change == rows[point.tensors[0]].value(COL_REL)
    assert lines["mlp.down"][3].rel_change == pytest.approx(0.3, rel=1e-5)
    assert max(p.rel_change for p in lines["mlp.down"][:3]) == 0
    x, y = panel.depth.curves[list(lines).index("mlp.down")].getData()
    assert list(x) == [0, 1, 2, 3] and y[3] == lines["mlp.down"][3].rel_change
    curve = panel.depth.curves[list(lines).index("attention.q")]
    spot = curve.scatter.points()[1]
    curve.sigPointsClicked.emit(curve, [spot], None)
    assert panel.selected_name() == "model.layers.1.self_attn.q_proj.weight"
    qtbot.waitUntil(lambda: panel.is_idle() and panel.heat.heatmap is not None
                    and panel.heat.heatmap.name == "model.layers.1.self_attn.q_proj.weight", timeout=10000)


def test_heatmap_is_the_blockwise_max_of_the_difference(make_window, qtbot, open_model, pair) -> None:
    a_path, b_path, a, b = pair
    window = make_window()
    _, panel = compared(window, qtbot, open_model, a_path, b_path)
    name = "model.layers.3.mlp.down_proj.weight"  # 64 x 176: one value per pixel
    panel.select_tensor(name)
    qtbot.waitUntil(lambda: panel.is_idle() and panel.heat.heatmap is not None
                    and panel.heat.heatmap.name == name,
                    timeout=10000)
    d = np.abs(b[name].astype(np.float64) - a[name].astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(panel.heat.heatmap.values, d)
    np.testing.assert_array_equal(panel.heat.image.image, d)
    assert panel.heat.title.full_text == f"|B−A| of {name}"
    assert format_value(float(d.max())) in panel.heat.detail.full_text
    assert panel.heat.image.mapRectToParent(panel.heat.image.boundingRect()).width() == 176  # matrix columns
    assert panel.heat.readout_at(3.5, 7.2) == f"row 3, column 7: |B−A| {format_value(float(d[3, 7]))}"
    assert panel.heat.readout_at(64, 0) == "" and panel.heat.readout_at(-1, 0) == ""
    panel.select_tensor("model.embed_tokens.weight")  # 300 x 64, unchanged: all zero
    qtbot.waitUntil(lambda: panel.is_idle() and panel.heat.heatmap is not None
                    and panel.heat.heatmap.name == "model.embed_tokens.weight", timeout=10000)
    assert panel.heat.heatmap.values.shape == (300, 64) and not panel.heat.heatmap.values.any()


def test_cancel_stops_the_comparison(make_window, qtbot, open_model, pair, monkeypatch, reads) -> None:

    a_path, b_path, a, _ = pair
    window, view, panel = compared_slowly(make_window, open_model, monkeypatch, a_path, b_path)
    qtbot.waitUntil(lambda: panel.table_model.rowCount() >= 3, timeout=10000)  # rows arrive while it runs
    assert panel.running and view.is_reading()
    window._update_status()
    assert "comparing with b" in window.status_label.text() and window.action_cancel_analysis.isEnabled()
    window.action_cancel_analysis.trigger()  # View > Cancel
    assert panel.state == "cancelled" and not view.is_reading()
    qtbot.waitUntil(window.is_idle, timeout=10000)
    after = len(reads)
    rows = panel.table_model.rowCount()
    qtbot.wait(300)
    assert len(reads) == after and panel.table_model.rowCount() == rows < len(a) - 2
    assert panel.state_label.text().startswith("Cancelled")


def drop(widget, paths: list[Path], modifiers: Qt.KeyboardModifier) -> bool:
    """A drag-enter and a drop of file URLs onto ``widget`` with ``modifiers`` held."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, modifiers)
    QApplication.sendEvent(widget, enter)
    event = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, modifiers, QEvent.Type.Drop)
    QApplication.sendEvent(widget, event)
    return enter.isAccepted() and event.isAccepted()


def test_ctrl_drop_compares_and_a_plain_drop_opens(make_window, qtbot, open_model, pair) -> None:
    a_path, b_path, _, _ = pair
    window = make_window()
    view = open_model(window, a_path)
    assert window.action_compare_with.isEnabled()
    assert drop(window, [b_path.parent], Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(window.is_idle, timeout=30000)
    assert window.tabs.count() == 1 and view.compare.panel is not None
    assert view.compare.panel.b_path == str(b_path.parent) and view.compare.panel.state == "done"
    assert drop(window, [b_path], Qt.KeyboardModifier.NoModifier)
    qtbot.waitUntil(lambda: window.tabs.count() == 2, timeout=20000)
    qtbot.waitUntil(window.is_idle, timeout=30000)


def test_a_bad_b_gives_one_plain_line_in_a_dialog(make_window, qtbot, open_model, pair, dialogs, tmp_path) -> None:
    a_path, _, _, _ = pair
    window = make_window()
    assert not window.action_compare_with.isEnabled()  # no model open yet
    view = open_model(window, a_path)
    bad = tmp_path / "<b>VERIFIED SAFE<b> & model.safetensors"
    bad.write_bytes(b"\xff" * 64)
    view.compare_with(str(bad))
    qtbot.waitUntil(window.is_idle, timeout=10000)
    assert len(dialogs) == 1 and dialogs[0]["title"] == "Could not compare the models"
    text = dialogs[0]["text"]
    assert text and "\n" not in text and "Traceback" not in text and "internal error" not in text
    assert dialogs[0]["format"] == Qt.TextFormat.PlainText
    assert view.compare.panel.state == "failed" and view.compare.panel.table_model.rowCount() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a", "b", bad.name])  # nothing written


def test_hostile_names_are_plain_text(make_window, qtbot, open_model, pair) -> None:
    a_path, b_path, _, _ = pair
    window = make_window()
    _, panel = compared(window, qtbot, open_model, a_path, b_path)
    model = panel.table_model
    row = model.row_of_name(HOSTILE)
    assert model.index(row, COL_NAME).data() == HOSTILE  # painted as text by the table's delegate
    tip = model.index(row, COL_NAME).data(Qt.ItemDataRole.ToolTipRole)
    assert "<b " not in tip and "&lt;b" in tip
    panel.select_tensor(HOSTILE)
    qtbot.waitUntil(lambda: panel.is_idle() and panel.heat.heatmap is not None
                    and panel.heat.heatmap.name == HOSTILE,
                    timeout=10000)
    for label in (panel.heat.title, panel.a_label, panel.b_label, panel.counts, panel.state_label):
        assert label.textFormat() == Qt.TextFormat.PlainText
    assert HOSTILE in panel.heat.title.full_text and "&lt;b" in panel.heat.title.toolTip()


def test_screenshot_of_the_compare_tab(tmp_path: Path, pair) -> None:
    a_path, b_path, _, _ = pair
    out = tmp_path / "compare.png"
    cmd = [sys.executable, str(REPO / "main.py"), "--screenshot", str(out), "--size", "900x600", "--compare",
           str(b_path), "--tab", "compare", str(a_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([*cmd[:-5], "--compare", str(tmp_path / "missing"), "--tab", "compare", str(a_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_rank_of_each_change_and_the_cache(make_window, qtbot, open_model, tmp_path) -> None:
    rng = np.random.default_rng(5)
    a = {"model.layers.0.mlp.up_proj.weight": rng.normal(size=(48, 32)).astype(np.float32),
         "model.layers.0.mlp.down_proj.weight": rng.normal(size=(32, 48)).astype(np.float32)}
    b = dict(a)
    u, v = rng.normal(size=(48, 2)), rng.normal(size=(2, 32))
    b["model.layers.0.mlp.up_proj.weight"] = (a["model.layers.0.mlp.up_proj.weight"] + u @ v).astype(np.float32)
    save_file(a, str(tmp_path / "a.safetensors"))
    save_file(b, str(tmp_path / "b.safetensors"))
    window = make_window()
    view, panel = compared(window, qtbot, open_model, tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert panel.table.isColumnHidden(COL_RANK) and "read" in panel.state_label.text()
    panel.rank_box.setChecked(True)  # compares again, with the rank of every difference
    qtbot.waitUntil(window.is_idle, timeout=30000)
    assert not panel.table.isColumnHidden(COL_RANK)
    rows = {row.name: row for row in panel.table_model.rows}
    d = b["model.layers.0.mlp.up_proj.weight"].astype(np.float64) - a["model.layers.0.mlp.up_proj.weight"]
    want = np.linalg.svd(d, compute_uv=False)
    energy = np.cumsum(want**2) / np.sum(want**2)
    assert rows["model.layers.0.mlp.up_proj.weight"].rank90 == int(np.searchsorted(energy, 0.9) + 1) <= 2
    assert rows["model.layers.0.mlp.up_proj.weight"].singular_values[:2] == pytest.approx(want[:2], rel=1e-6)
    assert rows["model.layers.0.mlp.down_proj.weight"].rank90 == 0
    model = panel.table_model
    tip = model.index(model.row_of_name("model.layers.0.mlp.up_proj.weight"), COL_RANK).data(
        Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Top singular values of B−A: " + format_value(float(want[0])))
    view.compare_with(str(tmp_path / "b.safetensors"))  # the same pair again: from the cache
    qtbot.waitUntil(window.is_idle, timeout=30000)
    assert "from the comparison cache" in panel.state_label.text()
    assert panel.table_model.rowCount() == 2


def test_rows_arriving_under_a_sort_go_in_their_place(qapp) -> None:
    """Live rows are inserted where the sort puts them (NaN last both ways), as a full sort would order them."""
    from core.checkpoint import TensorInfo
    from core.diff import DiffResult, DiffSums, TensorDiff
    from gui.compare_table import CompareTableModel

    rng = np.random.default_rng(2)
    result = DiffResult("a", "b", [], [], [])
    pairs = []
    for i in range(300):
        t = TensorInfo(f"t{i}", (4,), "F32", 4, 16, "f", 0)
        ss_a = 0.0 if i % 17 == 0 else float(rng.uniform(1, 2))  # zero A that changed: +inf; nothing: NaN
        n = 0 if i % 23 == 0 else 4
        pairs.append(TensorDiff(t, t, DiffSums(count=4, n=n, ss_a=ss_a, ss_b=1, ss_d=float(rng.uniform(0, 1)))))
    for order in (Qt.SortOrder.DescendingOrder, Qt.SortOrder.AscendingOrder):
        model = CompareTableModel()
        model.sort(COL_REL, order)
        result.tensors.clear()
        for start in range(0, 300, 70):
            for td in pairs[start:start + 70]:
                result.tensors[td.name] = td
            model.refresh(result)
        got = [model.index(i, COL_REL).data(Qt.ItemDataRole.UserRole) for i in range(model.rowCount())]
        defined = [v for v in got if not math.isnan(v)]
        assert len(got) == 300 and all(math.isnan(v) for v in got[len(defined):])
        assert defined == sorted(defined, reverse=order == Qt.SortOrder.DescendingOrder) and math.inf in defined
        assert len(defined) == 300 - len([i for i in range(300) if i % 23 == 0])


def test_closing_the_tab_while_comparing_stops_and_closes_b(make_window, qtbot, open_model, pair,
                                                           monkeypatch) -> None:

    a_path, b_path, _, _ = pair
    window, view, panel = compared_slowly(make_window, open_model, monkeypatch, a_path, b_path)
    qtbot.waitUntil(lambda: panel.table_model.rowCount() >= 1, timeout=10000)
    opened = panel._open_b
    workers = view.pending_workers()
    assert workers  # the comparison's worker keeps A open until it ends
    closed = []
    close = type(opened.checkpoint).close
    monkeypatch.setattr(type(opened.checkpoint), "close", lambda self: (closed.append(self), close(self)))
    window.close_tab(window.tabs.indexOf(view))
    qtbot.waitUntil(lambda: all(w.is_done for w in workers) and opened.checkpoint in closed, timeout=10000)
    assert window.tabs.count() == 0


def test_file_menu_compares_with_a_file_or_a_folder(make_window, qtbot, open_model, pair, monkeypatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    a_path, b_path, _, _ = pair
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(b_path), ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(b_path.parent))
    window = make_window()
    view = open_model(window, a_path)
    menu = {a.objectName() for a in window.menuBar().actions()[0].menu().actions()}
    assert {"action_compare_with", "action_compare_folder"} <= menu
    window.action_compare_with.trigger()
    qtbot.waitUntil(window.is_idle, timeout=30000)
    assert view.compare.panel.b_path == str(b_path) and view.compare.panel.state == "done"
    window.action_compare_folder.trigger()
    qtbot.waitUntil(window.is_idle, timeout=30000)
    assert view.compare.panel.b_path == str(b_path.parent) and view.compare.panel.state == "done"
    assert view.compare.panel.table_model.rowCount() == len(run(a_path, b_path).tensors)


def test_heatmap_readout_names_a_blocks_rows_and_columns(qtbot) -> None:
    from core.heatmap import Heatmap
    from gui.compare_plots import DiffHeatmapView

    view = DiffHeatmapView()
    qtbot.addWidget(view)
    values = np.array([[0.5, 0.25], [np.nan, 0.0]], np.float32)
    view.show_heatmap(Heatmap("w", "absdiff", 4, 5, 2, 3, values, rows_done=4))
    assert view.readout_at(1, 4) == "rows 0–1, columns 3–4: max |B−A| 0.25"
    assert view.readout_at(3, 0) == "row 3, column 0: NaN or Inf on a side"
    assert "1 block with NaN or Inf" in view.detail.full_text and "per 2×3 block" in view.detail.full_text
    rect = view.image.mapRectToParent(view.image.boundingRect())
    assert (rect.width(), rect.height()) == (5, 4)
