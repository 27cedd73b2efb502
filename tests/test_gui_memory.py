"""The Memory tab, reference models in the window and config-only tabs, as a user meets them.

Independent truth: the published Llama 3.1 counts (8,030,261,248 / 70,553,706,496 parameters; 131,072 and
327,680 KV bytes per token in 16 bits) and GiB arithmetic done here, not by the planner.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QImage

from core.formats import open_checkpoint
from core.memory_plan import plan
from gui.panels.memory import CUSTOM_GPU, MemoryPanel
from gui.panels.no_values import NO_VALUES_TEXT, NoValuesPage

REPO = Path(__file__).resolve().parents[1]
GIB = 1 << 30
LLAMA_8B = 8_030_261_248
LLAMA_70B = 70_553_706_496


def cell(panel: MemoryPanel, item: str, column: int) -> str:
    table = panel.items_table
    for row in range(table.rowCount()):
        if table.item(row, 0).text() == item:
            return table.item(row, column).text()
    raise KeyError(item)


def choose(combo, data) -> None:
    index = combo.findData(data)
    assert index >= 0, data
    combo.setCurrentIndex(index)


@pytest.fixture
def panel_70b(qtbot):
    panel = MemoryPanel(open_checkpoint("llama-3.1-70b"), "Llama 3.1 70B")
    qtbot.addWidget(panel)
    choose(panel.weights_combo, "bf16")
    panel.gpu_combo.setCurrentText("H100 80GB")
    panel.context_spin.setValue(8192)
    return panel


def test_panel_shows_the_exact_weight_and_kv_bytes_of_a_reference_model(qtbot):
    panel = MemoryPanel(open_checkpoint("llama-3.1-8b"), "Llama 3.1 8B")
    qtbot.addWidget(panel)
    choose(panel.weights_combo, "bf16")
    panel.context_spin.setValue(8192)
    assert cell(panel, "weights", 2) == f"{LLAMA_8B * 2:,}"
    assert cell(panel, "KV cache", 2) == f"{131_072 * 8192:,}"
    assert cell(panel, "weights", 3) == "exact" and cell(panel, "activations", 3) == "estimate"
    choose(panel.weights_combo, "int4")
    assert cell(panel, "weights", 2) == f"{LLAMA_8B // 2:,}"
    tip = panel.items_table.item(0, 0).toolTip()
    assert f"{LLAMA_8B:,} parameters" in tip  # the formula rides in the tooltip


def test_changing_gpu_count_mode_and_context_changes_the_verdict_as_the_plan_says(panel_70b):
    panel = panel_70b
    assert LLAMA_70B * 2 > 80 * GIB  # bf16 weights alone overflow one H100
    assert not panel.plan_result.fits
    assert panel.verdict.text().startswith("Needs 2 × H100 80GB")
    assert panel.plan_result.min_gpus == 2
    panel.gpus_spin.setValue(2)
    result = panel.plan_result
    assert result.fits and result.capacity_bytes == 160 * GIB
    spare = (160 * GIB - result.total_bytes) / GIB
    assert panel.verdict.text() == f"Fits on 2 × H100 80GB with {spare:.1f} GiB to spare"
    assert f"Largest context that fits: {result.max_context:,} tokens" in panel.details.text()
    expected = plan(panel.checkpoint, gpu_memory_bytes=80 * GIB, gpus=2, weights="bf16", context=8192)
    assert (result.total_bytes, result.max_context) == (expected.total_bytes, expected.max_context)

    choose(panel.mode_combo, "full")
    full = plan(panel.checkpoint, gpu_memory_bytes=80 * GIB, gpus=2, mode="full", weights="bf16", context=8192)
    assert not full.fits and panel.plan_result.min_gpus == full.min_gpus > 2
    assert panel.verdict.text().startswith(f"Needs {full.min_gpus} × H100 80GB")
    panel.adam8bit.setChecked(True)
    eight = plan(panel.checkpoint, gpu_memory_bytes=80 * GIB, gpus=2, mode="full", optimizer="adam8bit",
                 weights="bf16", context=8192)
    assert panel.plan_result.item("optimizer states").bytes == eight.item("optimizer states").bytes
    assert eight.item("optimizer states").bytes < full.item("optimizer states").bytes

    choose(panel.mode_combo, "inference")
    panel.context_spin.setValue(131_072)
    assert panel.plan_result.item("KV cache").bytes == 327_680 * 131_072
    assert panel.plan_result.fits == (panel.plan_result.total_bytes <= 160 * GIB)


def test_a_custom_gpu_size_is_used(panel_70b):
    panel = panel_70b
    assert not panel.custom_gib.isEnabled()
    panel.gpu_combo.setCurrentText(CUSTOM_GPU)
    panel.custom_gib.setValue(200)
    assert panel.custom_gib.isEnabled()
    assert panel.plan_result.gpu_bytes == 200 * GIB and panel.plan_result.fits
    assert panel.verdict.text().startswith("Fits on 1 × 200 GiB GPU")


def test_an_impossible_choice_is_said_not_raised(panel_70b):
    panel = panel_70b
    choose(panel.weights_combo, "Q4_K_M")
    choose(panel.mode_combo, "full")  # full fine-tuning needs float weights
    assert panel.plan_result is None
    assert panel.verdict.text().startswith("Cannot plan this: full fine-tuning needs float weights")
    assert panel.items_table.rowCount() == 0
    choose(panel.mode_combo, "lora")
    assert panel.plan_result is not None and panel.plan_result.item("LoRA adapters").bytes > 0


def test_the_account_links_its_terms_to_the_legend(panel_70b):
    html = panel_70b.account.toHtml()
    assert 'href="legend:kv-cache"' in html and 'href="legend:parameters"' in html
    assert "320 KiB" in panel_70b.account.toPlainText()  # 327,680 bytes per token
    assert 'href="legend:lora"' not in html  # inference says nothing of LoRA


def test_reference_menu_and_welcome_list_open_config_only_tabs(make_window, qtbot):
    window = make_window()
    welcome = [window.welcome.references.item(i).text() for i in range(window.welcome.references.count())]
    assert "Llama 3.1 405B · 406 B" in welcome and "Llama 3.1 8B · 8.03 B" in welcome
    action = window.findChild(QAction, "action_reference_llama-3.1-8b")
    assert action is not None and action.text() == "Llama 3.1 8B · 8.03 B"
    action.trigger()
    qtbot.waitUntil(lambda: window.current_view() is not None, timeout=20000)
    view = window.current_view()
    assert view.checkpoint.format == "config" and view.checkpoint.parameter_count == LLAMA_8B
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Llama 3.1 8B"  # its title, not the json's name
    assert view.config_only and view.analysis_state == "idle" and view.analysis_job.worker is None
    for label in ("Distribution", "Depth profile", "Heatmap", "Findings", "Spectra"):
        index = [view.tabs.tabText(i) for i in range(view.tabs.count())].index(label)
        page = view.tabs.widget(index)
        assert isinstance(page, NoValuesPage) and page.message.text() == NO_VALUES_TEXT
    assert NO_VALUES_TEXT in window.status_label.text()
    view.start_analysis()  # F5 on a config-only tab
    view.select_path("model.layers.0.mlp.down_proj.weight")
    assert view.analysis_job.worker is None and view.selection_job.worker is None
    qtbot.waitUntil(lambda: view.summary_tab.panel is not None)  # the Summary is built one section per turn
    assert window.is_idle()

    assert not window.action_export_csv.isEnabled() and not window.action_export_report.isEnabled()
    window.findChild(QAction, "action_show_memory").trigger()
    assert view.tabs.currentWidget() is view.memory_tab
    assert view.memory.plan_result.parameters == LLAMA_8B
    view.memory.account.anchorClicked.emit(QUrl("legend:kv-cache"))
    qtbot.waitUntil(lambda: window.legend_dialog.isVisible())
    assert "KV cache" in window.legend_dialog.findChild(type(view.memory.account)).toPlainText()
    window.legend_dialog.close()

    item = window.welcome.references.findItems("Llama 3.1 70B", Qt.MatchFlag.MatchStartsWith)[0]
    window.welcome.references.itemClicked.emit(item)
    qtbot.waitUntil(lambda: window.tabs.count() == 2, timeout=20000)
    assert window.current_view().checkpoint.parameter_count == LLAMA_70B


def test_a_real_model_gets_a_memory_tab_from_its_own_tensors(make_window, open_model, tiny_llama):
    path, tensors = tiny_llama
    window = make_window()
    view = open_model(window, path)
    assert not view.config_only
    panel = view.memory
    stored = sum(a.nbytes for a in tensors.values())  # fp32 file, every tensor a parameter
    assert panel.plan_result.item("weights").bytes == stored
    assert cell(panel, "weights", 2) == f"{stored:,}"


def run_main(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "WEIGHTSCOPE_CACHE_DIR": str(tmp_path / "cache"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "main.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.mark.slow
def test_screenshots_of_the_planner_and_of_the_side_by_side_view(tmp_path):
    planner = tmp_path / "planner.png"
    proc = run_main("--screenshot", str(planner), "--size", "1024x700", "--tab", "memory", "llama-3.1-70b",
                    tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (QImage(str(planner)).width(), QImage(str(planner)).height()) == (1024, 700)
    side = tmp_path / "side.png"
    proc = run_main("--screenshot", str(side), "--size", "1100x720", "--compare-memory", "llama-3.1-8b",
                    "llama-3.1-405b", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (QImage(str(side)).width(), QImage(str(side)).height()) == (1100, 720)
    bad = tmp_path / "bad.png"
    proc = run_main("--screenshot", str(bad), "--compare-memory", "llama-9", tmp_path=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == ["error: no open model or reference model "
                                                                          "named 'llama-9'"]
    assert not bad.exists()
