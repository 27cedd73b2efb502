"""The Summary's LoRA adapter section: figures against dense numpy, plain text, tooltips, absent for models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from safetensors.numpy import load_file, save_file

from core.formats import open_checkpoint
from core.numbers import format_value

SAMPLE_LORA = Path(__file__).resolve().parents[1] / "resources" / "samples" / "tiny-llama-lora"
PREFIX = "base_model.model."


def summary_of(qtbot, path: Path):
    from gui.panels.summary import SummaryPanel

    checkpoint = open_checkpoint(str(path))
    panel = SummaryPanel(checkpoint)
    qtbot.addWidget(panel)
    return checkpoint, panel


def lora_box(panel):
    from gui.panels.lora import LoraBox

    return panel.findChild(LoraBox, "LoraBox")


def test_sample_adapter_section_matches_dense_figures(qtbot) -> None:
    checkpoint, panel = summary_of(qtbot, SAMPLE_LORA)
    try:
        box = lora_box(panel)
        assert box is not None and box.title() == "LoRA adapter"
        assert "low-rank update B·A" in box.toolTip() and "frozen base weight" in box.toolTip()
        facts = box.facts_label.text()
        assert "Base model: tiny-llama" in facts and "Targets: q_proj, v_proj" in facts
        assert "Rank r 8, lora_alpha 16, scale = lora_alpha / r" in facts and "8 modules" in facts
        truth = load_file(str(SAMPLE_LORA / "adapter_model.safetensors"))
        table = box.table
        assert table.rowCount() == 8
        headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
        assert headers == ["Module", "r", "alpha", "scale", "‖ΔW‖_F", "Top singular values"]
        assert "scale = lora_alpha / r" in table.horizontalHeaderItem(3).toolTip()
        for row in range(8):
            name = table.item(row, 0).text()
            a = truth[f"{PREFIX}{name}.lora_A.weight"].astype(np.float64)
            b = truth[f"{PREFIX}{name}.lora_B.weight"].astype(np.float64)
            dense = 2.0 * b @ a
            values = np.linalg.svd(dense, compute_uv=False)
            assert [table.item(row, c).text() for c in (1, 2, 3)] == ["8", "16", "2"]
            assert table.item(row, 4).text() == format_value(np.linalg.norm(dense))
            shown = table.item(row, 5).text().removesuffix(", …").split(", ")
            assert shown == [format_value(v) for v in values[:3]]
            assert f"lora_A: {PREFIX}{name}.lora_A.weight [8, 128]" in table.item(row, 0).toolTip()
    finally:
        checkpoint.close()


def test_file_text_stays_plain_and_models_have_no_section(qtbot, tmp_path: Path) -> None:
    folder = tmp_path / "ad"
    folder.mkdir()
    rng = np.random.default_rng(0)
    name = "model.layers.0.<b>x</b>.q_proj"
    save_file({f"{PREFIX}{name}.lora_A.weight": rng.normal(size=(2, 4)).astype(np.float32),
               f"{PREFIX}{name}.lora_B.weight": rng.normal(size=(3, 2)).astype(np.float32)},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": 2, "base_model_name_or_path": "<i>org</i>"}))
    checkpoint, panel = summary_of(qtbot, folder)
    try:
        box = lora_box(panel)
        assert box.facts_label.textFormat() == Qt.TextFormat.PlainText
        assert "Base model: <i>org</i>" in box.facts_label.text() and "lora_alpha unknown" in box.facts_label.text()
        assert box.table.item(0, 0).text() == name
        assert "&lt;b&gt;x&lt;/b&gt;" in box.table.item(0, 0).toolTip()  # escaped: Qt shows the characters
        assert box.table.item(0, 2).text() == "?" and box.table.item(0, 3).text() == "1"
    finally:
        checkpoint.close()
    save_file({"model.layers.0.self_attn.q_proj.weight": np.ones((2, 2), np.float32)}, str(tmp_path / "m.safetensors"))
    checkpoint, panel = summary_of(qtbot, tmp_path / "m.safetensors")
    try:
        assert lora_box(panel) is None
    finally:
        checkpoint.close()


def test_large_adapters_are_described_not_measured_on_open(qtbot, tmp_path: Path, monkeypatch, reads) -> None:
    import gui.panels.lora as lora_panel

    monkeypatch.setattr(lora_panel, "MEASURE_LIMIT", 10)
    folder = tmp_path / "ad"
    folder.mkdir()
    save_file({f"{PREFIX}model.layers.0.q_proj.lora_A.weight": np.ones((2, 4), np.float32),
               f"{PREFIX}model.layers.0.q_proj.lora_B.weight": np.ones((3, 2), np.float32)},
              str(folder / "adapter_model.safetensors"))
    checkpoint, panel = summary_of(qtbot, folder)
    try:
        box = lora_box(panel)
        assert reads == []  # 14 values in the factors, over the (patched) limit of 10: nothing read
        assert box.table.item(0, 1).text() == "2" and box.table.item(0, 4).text() == "–"
        assert box.table.item(0, 5).text() == "not measured in the app"
        notes = [label.text() for label in box.findChildren(type(box.facts_label), "LoraNote")]
        assert any("14 values in their factors" in note and "info ADAPTER --json" in note for note in notes)
    finally:
        checkpoint.close()
