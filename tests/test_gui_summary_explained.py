"""Summary: quantisation headline, count in words, how the count adds up, problem count, tooltips that explain."""

from __future__ import annotations

from pathlib import Path

from core.formats import open_checkpoint
from core.glossary import ARCH_HELP, NO_BIAS_HELP
from tests.test_quantization import write_mixed_gguf


def panel_for(qtbot, path: str):
    from gui.panels.summary import SummaryPanel

    checkpoint = open_checkpoint(path)
    panel = SummaryPanel(checkpoint)
    qtbot.addWidget(panel)
    return checkpoint, panel


def test_quantised_headline_and_dtype_table(qtbot, tmp_path: Path) -> None:
    checkpoint, panel = panel_for(qtbot, write_mixed_gguf(tmp_path / "m.gguf"))
    try:
        params = 64 * 256 * 2 + 2 * 256 * 512 + 512
        data_bytes = (64 * 256 + 2 * 256 * 512) // 256 * 144 + 64 * 256 // 256 * 210 + 512 * 4
        assert panel.storage_label.text() == f"Q4_K_M mix · {8 * data_bytes / params:.2f} bits per weight"
        assert "Q4_K_M is llama.cpp's recipe" in panel.storage_label.toolTip()
        table = panel.dtype_table
        rows = {table.item(r, 0).text(): [table.item(r, c).text() for c in range(1, 5)]
                for r in range(table.rowCount())}
        assert rows["Q6_K"][3] == "6.562" and rows["Q4_K"][3] == "4.5" and rows["F32"][3] == "32"
        assert rows["Q6_K"][2] == "13.12 KiB"  # 64 × 256 weights in 210-byte blocks of 256
        q6 = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == "Q6_K")
        assert "blocks of 256 weights in 210 bytes" in table.item(q6, 0).toolTip()
        assert "\"K\" marks" in table.item(q6, 0).toolTip()
    finally:
        checkpoint.close()


def test_count_written_out_story_and_architecture_tooltips(qtbot) -> None:
    checkpoint, panel = panel_for(qtbot, "resources/samples/tiny-llama")
    try:
        assert panel.total_label.text() == "804 thousand" and panel.exact_label.text() == "803,968 exactly"
        assert panel.count_story is not None and panel.count_story.matches
        assert not panel.count_story_label.isVisibleTo(panel)
        panel.count_story_button.setChecked(True)
        assert panel.count_story_label.isVisibleTo(panel)
        last = panel.count_story_label.text().splitlines()[-1]
        assert last == "This is exactly the 803,968 parameters the file holds."
        assert panel.count_story_button.toolTip().endswith("= 803,968")
        for key in ("hidden_size", "heads", "kv_heads", "head_dim", "intermediate_size", "tied_embeddings",
                    "context_length"):
            assert panel.architecture_labels[key].toolTip() == ARCH_HELP[key], key
        assert panel.architecture_labels["biases"].text() == "none"
        assert panel.architecture_labels["biases"].toolTip() == NO_BIAS_HELP
        assert "Norms" in panel.role_chart.toolTip() and "not connection strengths" in panel.role_chart.toolTip()
    finally:
        checkpoint.close()


def test_problem_count_and_config_count(qtbot, tmp_path: Path) -> None:
    checkpoint, panel = panel_for(qtbot, "resources/samples/tiny-llama")
    try:
        assert not panel.problem_label.isVisibleTo(panel)
        panel.set_problem_count(3, 39)
        assert panel.problem_label.text() == "⚠ 3 problems found" and panel.problem_label.objectName() == "Warning"
        panel.set_problem_count(1, 39)
        assert panel.problem_label.text() == "⚠ 1 problem found"
        panel.set_problem_count(0, 1137)
        assert panel.problem_label.text() == "No problems found in 1,137 tensors"
        assert panel.problem_label.isVisibleTo(panel)
    finally:
        checkpoint.close()
    checkpoint, panel = panel_for(qtbot, "resources/samples/tiny-llama")
    try:
        from gui.panels.summary import SummaryPanel

        checkpoint.architecture["config_parameters"] = 803_968 + 1000
        other = SummaryPanel(checkpoint)
        qtbot.addWidget(other)
        assert other.config_count_label is not None
        assert other.config_count_label.text() == ("⚠ config.json implies 804,968 parameters; the tensors hold "
                                                   "803,968 (1,000 fewer)")
        checkpoint.architecture["config_parameters"] = 803_968
        same = SummaryPanel(checkpoint)
        qtbot.addWidget(same)
        assert same.config_count_label.text() == "config.json implies 803,968 parameters: the same as the tensors"
    finally:
        checkpoint.close()


def test_legend_explains_architecture_units_and_quant_types(qtbot) -> None:
    from gui.panels.summary import legend_html

    text = legend_html()
    for words in ("Key/value heads", "Head dimension", "MLP width", "Tied input/output embeddings", "Context length",
                  "Llama-family models use no biases", "not connection strengths", "GiB", "Q4_K: blocks of 256",
                  "Q8_0: blocks of 32"):
        assert words in text, words
