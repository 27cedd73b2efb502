"""Selecting tensors: histogram and statistics (checked against numpy float64), depth profile, heatmap, export."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtGui import QGuiApplication, QImage

from core.numbers import format_value
from gui.model_view import TAB_DEPTH, TAB_DISTRIBUTION, TAB_HEATMAP
from gui.panels.distribution import LOG_FLOOR
from tests.conftest import LAYERS, write_llama

DOWN2 = "model.layers.2.mlp.down_proj.weight"
UP1 = "model.layers.1.mlp.up_proj.weight"


@pytest.fixture
def analysed(make_window, open_model, tiny_llama):
    """A window with the tiny model open and its whole-model analysis done."""
    window = make_window()
    view = open_model(window, tiny_llama[0])
    assert view.analysis_state == "done"
    return window, view, tiny_llama[1]


def select_and_wait(qtbot, view, name: str) -> None:
    assert view.select_tensor(name)
    qtbot.waitUntil(lambda: view.distribution.stats is not None and view.distribution.fraction == 1
                    and not view.selection_job.busy, timeout=20000)


def test_selecting_a_tensor_fills_histogram_and_table(qtbot, analysed):
    _window, view, tensors = analysed
    select_and_wait(qtbot, view, UP1)
    assert view.tabs.currentIndex() == TAB_DISTRIBUTION
    ts = view.distribution.stats
    a = tensors[UP1].astype(np.float64)
    assert ts.name == UP1
    assert ts.count == a.size
    assert ts.mean == pytest.approx(a.mean(), rel=1e-9, abs=1e-15)
    assert ts.std == pytest.approx(a.std(), rel=1e-9)
    assert ts.min == a.min() and ts.max == a.max()
    assert ts.l2 == pytest.approx(np.sqrt((a * a).sum()), rel=1e-9)
    assert int(ts.hist_counts.sum()) == a.size
    core = view.result.stats(UP1)  # the same numbers as core gives
    assert (ts.mean, ts.std, ts.kurtosis) == (core.mean, core.std, core.kurtosis)
    assert np.array_equal(ts.hist_counts, core.hist_counts)
    panel = view.distribution
    assert panel.table_text("Mean") == format_value(ts.mean)
    assert panel.table_text("Values") == f"{a.size:,}"
    assert panel.table_text("Max") == format_value(a.max())
    x, y = panel.curve.getData()
    assert len(x) == len(ts.hist_edges) and y.sum() == a.size


def test_selecting_a_folded_row_merges_every_block(qtbot, analysed):
    _window, view, tensors = analysed
    group = next(n for n in view.tree_model.root.walk() if n.repeat > 1 and n.path.endswith("q_proj.weight"))
    view._select_source_index(view.tree_model.index_of(group))
    qtbot.waitUntil(lambda: view.distribution.stats is not None and not view.selection_job.busy, timeout=20000)
    ts = view.distribution.stats
    values = np.concatenate([tensors[f"model.layers.{i}.self_attn.q_proj.weight"].ravel() for i in range(LAYERS)])
    assert ts.tensors == LAYERS and ts.count == values.size
    assert ts.mean == pytest.approx(values.astype(np.float64).mean(), rel=1e-9, abs=1e-15)
    assert ts.std == pytest.approx(values.astype(np.float64).std(), rel=1e-9)
    assert "across 4 blocks" in view.distribution.title.text()


def test_markers_log_axes_copy_and_export(qtbot, analysed, tmp_path):
    _window, view, _tensors = analysed
    select_and_wait(qtbot, view, DOWN2)
    panel = view.distribution
    ts = panel.stats
    markers = panel.marker_positions()
    assert markers["mean"] == ts.mean
    assert markers["+σ"] == pytest.approx(ts.mean + ts.std) and markers["−σ"] == pytest.approx(ts.mean - ts.std)
    assert markers["p1"] == ts.percentiles["1"] and markers["p99"] == ts.percentiles["99"]

    panel.y_mode.setCurrentIndex(1)  # log count axis
    _, y = panel.curve.getData()
    counts = ts.hist_counts.astype(float)
    assert np.allclose(y[counts > 0], np.log10(counts[counts > 0]))
    assert np.all(y[counts == 0] == LOG_FLOOR)
    assert counts[-1] == 1 and y[-1] == 0  # the lone 1.5 outlier stays visible
    panel.x_mode.setCurrentIndex(1)  # log10 |value|
    x, _ = panel.curve.getData()
    assert np.array_equal(x, ts.log_edges)
    assert panel.marker_positions() == {}

    text = panel.copy_statistics()
    assert QGuiApplication.clipboard().text() == text
    mean_line = next(line for line in text.splitlines() if line.startswith("Mean\t"))
    assert float(mean_line.split("\t")[1]) == ts.mean
    assert f"Beyond 6σ\t{ts.beyond_6_sigma}" in text and ts.beyond_6_sigma >= 1

    png, svg = tmp_path / "h.png", tmp_path / "h.svg"
    panel.export(str(png))
    panel.export(str(svg))
    assert not QImage(str(png)).isNull() and QImage(str(png)).width() >= 800
    assert "<svg" in svg.read_text()


def test_histogram_fills_in_while_a_tensor_is_read(make_window, open_model, qtbot, tmp_path, monkeypatch):
    import gui.jobs

    monkeypatch.setattr(gui.jobs, "REFRESH_SECONDS", 0.0)
    path, tensors = write_llama(tmp_path / "m", layers=1, scale=4)
    window = make_window(auto_analyse=False, chunk_bytes=16 << 10)
    view = open_model(window, path)
    fractions: list[float] = []
    original = view.distribution.set_stats

    def record(ts, title, subtitle, fraction=1.0):
        fractions.append(fraction)
        original(ts, title, subtitle, fraction)

    monkeypatch.setattr(view.distribution, "set_stats", record)
    name = "model.embed_tokens.weight"
    select_and_wait(qtbot, view, name)
    assert len(fractions) >= 3 and fractions[0] < 1 and fractions[-1] == 1
    assert fractions == sorted(fractions)
    assert view.distribution.stats.count == tensors[name].size


def test_depth_profile_has_one_point_per_layer_per_role(qtbot, analysed):
    _window, view, tensors = analysed
    qtbot.waitUntil(lambda: view.depth.profiles is not None, timeout=20000)
    view.tabs.setCurrentIndex(TAB_DEPTH)
    panel = view.depth
    expected = {"q", "k", "v", "o", "gate", "up", "down", "norm · input_layernorm", "norm · post_attention_layernorm"}
    for stat in ("std", "abs_max", "kurtosis", "l2", "outliers"):
        panel.statistic.setCurrentIndex(panel.statistic.findData(stat))
        lines = {s.label: s for s in panel.series()}
        assert set(lines) == expected
        drawable = {label for label, line in lines.items() if any(math.isfinite(p[1]) for p in line.points)}
        assert set(panel.curves) == drawable  # an all-undefined line (kurtosis of constant scales) is named instead
        for label in expected - drawable:
            assert label in panel.subtitle.text() and "undefined" in panel.subtitle.text()
        for label, line in lines.items():
            assert [p[0] for p in line.points] == list(range(LAYERS)), label
            if label not in drawable:
                continue
            x, _ = panel.curves[label].getData()
            assert list(x) == list(range(LAYERS))
    panel.statistic.setCurrentIndex(panel.statistic.findData("std"))
    for layer, value, name in {s.label: s for s in panel.series()}["down"].points:
        assert name == f"model.layers.{layer}.mlp.down_proj.weight"
        assert value == pytest.approx(tensors[name].astype(np.float64).std(), rel=1e-9)
    panel.statistic.setCurrentIndex(panel.statistic.findData("kurtosis"))
    down = {p[0]: p[1] for p in {s.label: s for s in panel.series()}["down"].points}
    assert max(down, key=down.get) == 2  # the planted outlier makes layer 2 stand out

    curve = panel.curves["down"]
    point = next(p for p in curve.scatter.points() if p.pos().x() == 2)
    curve.sigPointsClicked.emit(curve, [point], None)
    qtbot.waitUntil(lambda: view.selection is not None and view.selection.single is not None
                    and view.selection.single.name == DOWN2, timeout=5000)
    assert view.current_node().path == DOWN2
    qtbot.waitUntil(lambda: not view.selection_job.busy, timeout=10000)


def test_heatmap_of_the_selected_matrix(qtbot, analysed):
    _window, view, tensors = analysed
    select_and_wait(qtbot, view, DOWN2)
    view.tabs.setCurrentIndex(TAB_HEATMAP)
    panel = view.heatmap
    qtbot.waitUntil(lambda: panel.heatmap is not None and panel.heatmap.fraction == 1 and not panel.job.busy,
                    timeout=10000)
    a = tensors[DOWN2]
    assert panel.heatmap.values.shape == a.shape  # small enough for one pixel per value
    assert np.array_equal(panel.heatmap.values, np.abs(a))
    assert panel.heatmap.values[3, 5] == 1.5
    assert panel.image.image.shape == a.shape
    assert panel.colorbar.levels() == (0.0, 1.5)
    panel.mode.setCurrentIndex(panel.mode.findData("mean"))
    qtbot.waitUntil(lambda: panel.heatmap is not None and panel.heatmap.mode == "mean"
                    and panel.heatmap.fraction == 1 and not panel.job.busy, timeout=10000)
    assert np.array_equal(panel.heatmap.values, a)
    view.select_path("model.layers")  # a group: no single matrix to draw
    assert panel.tensor is None and "Select a single tensor" in panel.title.text()
    qtbot.waitUntil(lambda: not view.selection_job.busy, timeout=10000)


def test_summary_panel_numbers_come_from_core(analysed):
    from core.memory import memory_summary
    from core.number_words import count_in_words
    from core.numbers import human_bytes

    _window, view, tensors = analysed
    panel = view.summary
    total = sum(a.size for a in tensors.values())
    assert panel.total_label.text() == count_in_words(total) and panel.exact_label.text() == f"{total:,} exactly"
    mem = memory_summary(view.checkpoint)["weights"]
    table = {panel.memory_table.item(r, 0).text(): panel.memory_table.item(r, 1).text()
             for r in range(panel.memory_table.rowCount())}
    assert table["fp32"] == human_bytes(mem["fp32"]) == human_bytes(4 * total)
    assert table["int4"] == human_bytes(total // 2)
    assert dict(zip(panel.role_chart.labels, panel.role_chart.values, strict=True))["mlp.down"] == \
        sum(a.size for n, a in tensors.items() if "down_proj" in n)
    assert math.isclose(sum(panel.kind_chart.values), total)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_file_menu_exports_statistics_that_match_numpy(qtbot, analysed, tmp_path, monkeypatch, fmt):
    import csv
    import json

    from PySide6.QtWidgets import QFileDialog

    window, _view, tensors = analysed
    target = tmp_path / f"out.{fmt}"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    (window.action_export_csv if fmt == "csv" else window.action_export_json).trigger()
    if fmt == "csv":
        rows = {r["name"]: r for r in csv.DictReader(target.open())}
        got_std = float(rows[UP1]["std"])
    else:
        doc = json.loads(target.read_text())
        got_std = next(t for t in doc["tensors"] if t["name"] == UP1)["std"]
        assert len(doc["tensors"]) == len(tensors)
    assert math.isclose(got_std, tensors[UP1].astype(np.float64).std(), rel_tol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"] == []
