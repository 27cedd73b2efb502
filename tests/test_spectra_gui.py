"""The Spectra tab: a sortable table of every matrix (names as plain text) filled by the engine, and the
selected matrix's ESD with its fitted power law and xmin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from core.numbers import format_value
from core.spectra import run_spectra
from gui.panels.spectra import COLUMNS, esd_histogram


def test_spectra_tab_lists_every_matrix_and_draws_the_selected_esd(make_window, open_model, qtbot, tmp_path: Path,
                                                                   cache_dir: Path) -> None:
    rng = np.random.default_rng(0)
    hostile = "<b>bold</b>\u202e.weight"
    tensors = {"layers.0.mlp.weight": (rng.standard_t(3, (200, 80)) * 0.05).astype(np.float32),
               "layers.2.mlp.weight": (rng.standard_normal((90, 300)) * 0.05).astype(np.float32),
               "layers.10.mlp.weight": (rng.standard_normal((70, 50)) * 0.05).astype(np.float32),
               hostile: rng.standard_normal((64, 40)).astype(np.float32),
               "broken.weight": np.full((30, 30), np.nan, np.float32), "norm.weight": np.ones(80, np.float32)}
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path))
    want = run_spectra(path, use_cache=False, device="cpu")
    window = make_window()
    view = open_model(window, path)
    view.tabs.setCurrentWidget(view.spectra_tab)
    qtbot.waitUntil(lambda: view.spectra_tab.panel is not None and view.spectra_tab.panel.done, timeout=30000)
    panel = view.spectra_tab.panel
    table = panel.table
    assert table.rowCount() == 5  # the 1-D norm is no matrix: not listed by default
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    # by name, ascending, numbers by value (layers.2 before layers.10)
    assert list(rows) == [hostile, "broken.weight", "layers.0.mlp.weight", "layers.2.mlp.weight",
                          "layers.10.mlp.weight"]
    alpha_col = [key for key, _ in COLUMNS].index("alpha")
    for name, r in rows.items():
        metrics = want.matrices[name].metrics
        shown = table.item(r, alpha_col).text()
        assert shown == ("-" if metrics is None else format_value(metrics.alpha)), name
        if metrics is not None:
            assert abs(float(shown) - metrics.alpha) <= 1e-3 * metrics.alpha
    assert table.item(rows["broken.weight"], 3).text() == "not analysed: 900 NaN values"
    table.sortItems(alpha_col)
    alphas = [table.item(r, alpha_col).value for r in range(table.rowCount())]
    assert alphas == sorted(alphas) and alphas[-1] == float("inf")  # sorted by number, missing last
    table.selectRow([table.item(r, 0).text() for r in range(table.rowCount())].index("layers.0.mlp.weight"))
    items = panel.plot.getPlotItem().listDataItems()
    assert len(items) >= 2  # the density and the fitted power law
    assert "alpha" in panel.subtitle.text() and "1 not analysed" in panel.subtitle.text()


def test_esd_histogram_is_a_density() -> None:
    evals = np.geomspace(1e-3, 10, 500)
    edges, density = esd_histogram(evals, 20)
    assert len(edges) == 21 and np.isclose(np.sum(density * np.diff(edges)), 1.0)
