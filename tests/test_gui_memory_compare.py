"""Tools > Compare Memory: models side by side, checked against the published Llama 3.1 figures."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction

from gui.memory_compare import MemoryCompareWindow

LLAMA = {"Llama 3.1 8B": (8_030_261_248, 131_072), "Llama 3.1 70B": (70_553_706_496, 327_680),
         "Llama 3.1 405B": (405_853_388_800, 516_096)}  # parameters, KV bytes per token in 16 bits


def table(window: MemoryCompareWindow) -> dict[str, dict[str, str]]:
    """{row label: {model: cell text}} as the table shows it."""
    t = window.table
    models = [t.horizontalHeaderItem(c).text() for c in range(t.columnCount())]
    return {t.verticalHeaderItem(r).text(): {m: t.item(r, c).text() for c, m in enumerate(models)}
            for r in range(t.rowCount())}


def test_opened_with_nothing_else_it_shows_the_three_llama_sizes_exactly(qtbot):
    window = MemoryCompareWindow([], None)
    qtbot.addWidget(window)
    rows = table(window)
    assert list(rows["Parameters"]) == list(LLAMA)
    for model, (params, kv_per_token) in LLAMA.items():
        assert rows["Parameters"][model] == f"{params:,}"
        assert window.rows[list(LLAMA).index(model)]["kv_bytes_per_token"] == kv_per_token
        assert window.rows[list(LLAMA).index(model)]["bytes"]["bf16"] == 2 * params
    assert rows["KV cache per token"] == {"Llama 3.1 8B": "128 KiB", "Llama 3.1 70B": "320 KiB",
                                          "Llama 3.1 405B": "504 KiB"}
    assert rows["KV cache at context"]["Llama 3.1 8B"] == "1.00 GiB"  # 131,072 B x 8,192 tokens = 1 GiB
    # 8B in bf16 (16 GB) fits a 24 GB card alone; 70B (141 GB) does not fit even an H100
    assert rows["Fits alone on RTX 4090 24GB"] == {"Llama 3.1 8B": "yes", "Llama 3.1 70B": "no",
                                                   "Llama 3.1 405B": "no"}
    assert rows["Fits alone on H100 80GB"]["Llama 3.1 70B"] == "no"
    bf16 = window.chart.heights["weights bf16"]
    assert [round(g, 3) for g in bf16] == [round(2 * p / (1 << 30), 3) for p, _ in LLAMA.values()]


def test_context_and_ticks_change_the_table(qtbot):
    window = MemoryCompareWindow([], ["llama-3.1-70b"])
    qtbot.addWidget(window)
    assert list(table(window)["Parameters"]) == ["Llama 3.1 70B"]
    window.context_spin.setValue(131_072)
    assert window.rows[0]["kv_bytes_at_context"] == 327_680 * 131_072
    mixtral = window.model_list.findItems("Mixtral 8x7B", Qt.MatchFlag.MatchStartsWith)[0]
    mixtral.setCheckState(Qt.CheckState.Checked)
    rows = table(window)
    assert list(rows["Parameters"]) == ["Llama 3.1 70B", "Mixtral 8x7B"]
    active = int(rows["Active per token"]["Mixtral 8x7B"].replace(",", ""))
    assert active < int(rows["Parameters"]["Mixtral 8x7B"].replace(",", ""))  # two of eight experts per token
    window.kv_combo.setCurrentText("fp8")
    assert window.rows[0]["kv_bytes_per_token"] == 327_680 // 2


def test_unknown_names_are_reported_not_guessed(qtbot):
    window = MemoryCompareWindow([], ["llama-3.1-8b", "<b>llama-9</b>"])
    qtbot.addWidget(window)
    assert window.unknown == ["<b>llama-9</b>"]
    assert window.subtitle.textFormat() == Qt.TextFormat.PlainText and "'<b>llama-9</b>'" in window.subtitle.text()
    assert list(table(window)["Parameters"]) == ["Llama 3.1 8B"]


def test_tools_menu_compares_the_open_tab(make_window, open_model, tiny_llama, qtbot):
    path, tensors = tiny_llama
    window = make_window()
    view = open_model(window, path)
    window.findChild(QAction, "action_compare_memory").trigger()
    compare = window.memory_compare
    assert compare.isVisible()
    rows = table(compare)
    assert list(rows["Parameters"]) == [view.title]  # the open tab, not the Llama defaults
    assert rows["Parameters"][view.title] == f"{sum(a.size for a in tensors.values()):,}"
    compare.close()
