"""The LoRA section's "Compare with base…": ‖ΔW‖/‖W‖ per module against dense numpy, cancel, bad bases, routing."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.formats import open_checkpoint
from core.numbers import format_value

PREFIX = "base_model.model."
KINDS = ("self_attn.q_proj", "self_attn.v_proj")
LAYERS = 3
RANK, ALPHA = 2, 6.0  # scale = alpha / r = 3


@pytest.fixture
def adapter_and_base(tmp_path: Path) -> tuple[Path, Path, dict[str, float]]:
    """An adapter of q_proj / v_proj in three layers plus one module the base lacks; the base model; and the
    dense float64 truth ||3 * B @ A||_F / ||W||_F of every module the base holds."""
    rng = np.random.default_rng(14)
    base, factors, truth = {}, {}, {}
    for layer in range(LAYERS):
        for kind, (rows, cols) in zip(KINDS, ((8, 6), (4, 6)), strict=True):
            name = f"model.layers.{layer}.{kind}"
            w = rng.normal(size=(rows, cols)).astype(np.float32) * (layer + 1)
            a = rng.normal(size=(RANK, cols)).astype(np.float32)
            b = rng.normal(size=(rows, RANK)).astype(np.float32)
            base[f"{name}.weight"] = w
            factors[f"{PREFIX}{name}.lora_A.weight"] = a
            factors[f"{PREFIX}{name}.lora_B.weight"] = b
            dense = (ALPHA / RANK) * b.astype(np.float64) @ a.astype(np.float64)
            truth[name] = float(np.linalg.norm(dense) / np.linalg.norm(w.astype(np.float64)))
    factors[f"{PREFIX}model.layers.0.mlp.up_proj.lora_A.weight"] = rng.normal(size=(RANK, 6)).astype(np.float32)
    factors[f"{PREFIX}model.layers.0.mlp.up_proj.lora_B.weight"] = rng.normal(size=(5, RANK)).astype(np.float32)
    base["model.embed_tokens.weight"] = rng.normal(size=(10, 6)).astype(np.float32)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "base").mkdir()
    save_file(factors, str(tmp_path / "adapter" / "adapter_model.safetensors"))
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA, "target_modules": ["q_proj", "v_proj", "up_proj"]}))
    save_file(base, str(tmp_path / "base" / "model.safetensors"))
    return tmp_path / "adapter", tmp_path / "base", truth


def lora_box_of(qtbot, path: Path):
    from gui.panels.lora import LoraBox
    from gui.panels.summary import SummaryPanel

    checkpoint = open_checkpoint(str(path))
    panel = SummaryPanel(checkpoint)
    qtbot.addWidget(panel)
    box = panel.findChild(LoraBox, "LoraBox")
    box.summary = panel  # the panel lives as long as the test holds the box
    return checkpoint, box


def headers(table) -> list[str]:
    return [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]


def open_fds_to(path: Path) -> list[str]:
    """This process's open file descriptors on ``path`` (Linux)."""
    target = os.path.realpath(path)
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.path.realpath(f"/proc/self/fd/{fd}") == target:
                out.append(fd)
        except OSError:
            continue
    return out


def test_button_adds_the_relative_update_column_and_profile(qtbot, adapter_and_base, monkeypatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    adapter, base, truth = adapter_and_base
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(base))
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *args, **kwargs: (str(base / "model.safetensors"), ""))
    checkpoint, box = lora_box_of(qtbot, adapter)
    try:
        assert box.base_button.text() == "Compare with base…"
        assert "27% of the weight's size" in box.base_button.toolTip()
        assert "Relative update" not in headers(box.table) and box.profile_plot is None
        actions = {a.objectName(): a for a in box.base_button.menu().actions()}
        for action, chosen in (("LoraBaseFolder", base), ("LoraBaseFile", base / "model.safetensors")):
            actions[action].trigger()
            assert box.base_state == "running" and box.base_cancel.isVisibleTo(box)
            qtbot.waitUntil(lambda: box.base_state != "running", timeout=20000)
            assert box.base_state == "done" and box.base_path == str(chosen)
            assert not box.base_cancel.isVisibleTo(box) and not box.base_progress.isVisibleTo(box)
            table = box.table
            assert headers(table) == ["Module", "r", "alpha", "scale", "‖ΔW‖_F", "Relative update",
                                      "Top singular values"]  # one column, however often it is compared
            assert "27% of the weight's size" in table.horizontalHeaderItem(5).toolTip()
            shown = {table.item(row, 0).text(): table.item(row, 5) for row in range(table.rowCount())}
            assert len(shown) == 2 * LAYERS + 1
            for name, value in truth.items():
                assert shown[name].text() == format_value(value), name
                assert "how big the adapter's change is next to the weight it changes" in shown[name].toolTip()
                assert f"Base weight: {name}.weight" in shown[name].toolTip()
            missing = shown["model.layers.0.mlp.up_proj"]
            assert missing.text() == "–"
            assert "no 'model.layers.0.mlp.up_proj.weight' in the base model" in missing.toolTip()
            assert f"{2 * LAYERS:,} of {2 * LAYERS + 1:,} modules" in box.base_label.text()
            with open_checkpoint(str(base)) as opened:
                base_parameters = sum(int(np.prod(t.shape)) for t in opened.tensors)
            assert f"of the base model's {base_parameters:,}" in box.base_label.text()
        plot = box.profile_plot
        assert plot is not None and "27% of the weight's size" in plot.toolTip()
        lines = {s.label: (s.x, s.y) for s in plot.series}
        assert set(lines) == {"q_proj", "v_proj"}  # one line per module kind; up_proj has no base weight
        for kind in KINDS:
            x, y = lines[kind.rsplit(".", 1)[1]]
            assert x == [0.0, 1.0, 2.0]
            assert y == pytest.approx([truth[f"model.layers.{i}.{kind}"] for i in range(LAYERS)], rel=1e-12)
        drawn = sorted(tuple(item.getData()[1]) for item in plot.getPlotItem().listDataItems())
        assert drawn == sorted(tuple(y) for _, y in lines.values())
    finally:
        checkpoint.close()


def test_cancel_stops_between_modules_and_closes_the_base(qtbot, adapter_and_base, monkeypatch) -> None:
    import core.lora

    adapter, base, _ = adapter_and_base
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []
    norm = core.lora.frobenius_norm

    def gated(checkpoint, tensor):
        calls.append(tensor.name)
        entered.set()
        release.wait(10)
        return norm(checkpoint, tensor)

    monkeypatch.setattr(core.lora, "frobenius_norm", gated)
    checkpoint, box = lora_box_of(qtbot, adapter)
    try:
        box.compare_with_base(str(base))
        assert entered.wait(10)  # the worker is reading the first base weight
        worker = box.base_job.worker
        box.base_cancel.click()
        assert box.base_state == "cancelled" and "Cancelled" in box.base_label.text()
        assert not box.base_cancel.isVisibleTo(box)
        release.set()
        qtbot.waitUntil(lambda: worker.is_done, timeout=10000)
        qtbot.wait(50)
        assert calls == ["model.layers.0.self_attn.q_proj.weight"]  # stopped before the second module
        assert box.base_state == "cancelled" and box.matches is None
        assert "Relative update" not in headers(box.table) and box.profile_plot is None
        assert open_fds_to(base / "model.safetensors") == []
    finally:
        release.set()
        checkpoint.close()


def test_bad_bases_give_one_line_dialogs(qtbot, adapter_and_base, tmp_path: Path, dialogs) -> None:
    from PySide6.QtCore import Qt

    adapter, _, _ = adapter_and_base
    garbage = tmp_path / "<i>weights.safetensors"
    garbage.write_bytes(b"\xff" * 8 + b"not a header")
    hostile = tmp_path / "hostile.safetensors"
    header = json.dumps({"w": {"dtype": "<b>EVIL\nx</b>", "shape": [1], "data_offsets": [0, 4]}}).encode()
    hostile.write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    unrelated = tmp_path / "unrelated.safetensors"
    save_file({"encoder.block.0.weight": np.ones((3, 3), np.float32)}, str(unrelated))
    checkpoint, box = lora_box_of(qtbot, adapter)
    try:
        for path, expected in ((garbage, f"base model: {garbage}: not a recognised checkpoint"),
                               (hostile, "tensor 'w': unknown dtype '<b>EVIL\\nx</b>'"),  # quoted, one line
                               (tmp_path / "missing", "no such file"),
                               (unrelated, "'unrelated.safetensors' has none of the adapter's 7 weights")):
            box.compare_with_base(str(path))
            qtbot.waitUntil(lambda: box.base_state != "running", timeout=20000)
            assert box.base_state == "failed"
            shown = dialogs.pop()
            assert shown["title"] == "Could not compare with the base model"
            assert shown["format"] == Qt.TextFormat.PlainText and "\n" not in shown["text"]
            assert expected in shown["text"], shown["text"]
            assert shown["text"] in box.base_label.text()
            assert "Relative update" not in headers(box.table)
        assert dialogs == []
    finally:
        checkpoint.close()


def test_file_compare_with_on_an_adapter_compares_with_its_base(make_window, qtbot, open_model, adapter_and_base,
                                                                monkeypatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    from gui.panels.lora import LoraBox

    adapter, base, truth = adapter_and_base
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(base))
    window = make_window()
    view = open_model(window, adapter)
    window.action_compare_folder.trigger()
    box = view.summary_tab.panel.findChild(LoraBox, "LoraBox")
    assert view.tabs.currentWidget() is view.summary_tab and view.compare.panel is None  # not the Compare tab
    qtbot.waitUntil(lambda: box.base_state == "done", timeout=20000)
    rows = {box.table.item(r, 0).text(): box.table.item(r, 5).text() for r in range(box.table.rowCount())}
    assert rows["model.layers.2.self_attn.v_proj"] == format_value(truth["model.layers.2.self_attn.v_proj"])


@pytest.mark.slow
def test_screenshot_with_lora_base(tmp_path: Path, adapter_and_base) -> None:
    from PySide6.QtGui import QImage

    from tests.test_gui_screenshot import run_main

    adapter, base, _ = adapter_and_base
    out = tmp_path / "shot.png"
    proc = run_main("--screenshot", str(out), "--lora-base", str(base), str(adapter), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (QImage(str(out)).width(), QImage(str(out)).height()) == (1400, 900)
    for model, other, expected in ((adapter, tmp_path / "missing", "error: base model: "),
                                   (base, base, "error: --lora-base needs a LoRA adapter")):
        refused = tmp_path / "refused.png"
        proc = run_main("--screenshot", str(refused), "--lora-base", str(other), str(model), tmp_path=tmp_path)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(expected), proc.stderr
        assert not refused.exists()
