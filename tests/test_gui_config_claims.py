"""The Architecture box names config.json claims the tensors contradict; encoder-only models have no KV cache."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt

from core.formats import open_checkpoint
from tests.test_config_claims import TRUE_CONFIG, _model


def _panel(qtbot, path: Path):
    from gui.panels.summary import SummaryPanel

    checkpoint = open_checkpoint(str(path))
    panel = SummaryPanel(checkpoint)
    qtbot.addWidget(panel)
    return checkpoint, panel


def _memory_rows(panel) -> list[str]:
    return [panel.memory_table.item(r, 0).text() for r in range(panel.memory_table.rowCount())]


def test_a_contradicted_layer_count_is_shown_and_not_used(qtbot, tmp_path: Path) -> None:
    checkpoint, panel = _panel(qtbot, _model(tmp_path, num_hidden_layers=32))
    try:
        texts = [label.text() for label in panel.contradiction_labels]
        assert texts == ["⚠ config.json says 32 layers; the tensors have 2; the tensors' figure is used"]
        assert all(label.textFormat() == Qt.TextFormat.PlainText for label in panel.contradiction_labels)
        assert panel.architecture_labels["layers"].text() == "2"
    finally:
        checkpoint.close()


def test_a_true_config_shows_no_contradiction(qtbot, tmp_path: Path) -> None:
    checkpoint, panel = _panel(qtbot, _model(tmp_path))
    try:
        assert panel.contradiction_labels == []
        assert "KV cache per token (fp16)" in _memory_rows(panel)
    finally:
        checkpoint.close()


def test_an_encoder_only_model_has_no_kv_cache_row(qtbot, tmp_path: Path) -> None:
    path = _model(tmp_path)
    config = {**TRUE_CONFIG, "model_type": "bert", "architectures": ["BertForMaskedLM"]}
    (path.parent / "config.json").write_text(json.dumps(config))
    checkpoint, panel = _panel(qtbot, path)
    try:
        assert checkpoint.architecture.get("encoder_only") is True
        assert "encoder only" in panel.architecture_labels["encoder_only"].text()
        assert not any(row.startswith("KV cache") for row in _memory_rows(panel))
    finally:
        checkpoint.close()
