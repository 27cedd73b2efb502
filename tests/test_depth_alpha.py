"""Alpha among the Depth profile's statistics: after the Spectra tab has run, one line per role across layers,
each point the alpha the spectral engine fitted; before it, a sentence that says where alpha comes from."""

from __future__ import annotations

from pathlib import Path

from core.depth import alpha_profile
from core.formats import open_checkpoint
from core.spectra import run_spectra

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "samples" / "tiny-llama"


def test_alpha_profile_holds_each_matrix_alpha_by_layer() -> None:
    result = run_spectra(SAMPLE, use_cache=False, device="cpu")
    with open_checkpoint(str(SAMPLE)) as checkpoint:
        lines = alpha_profile(checkpoint.tensors, result)
    assert {line.label for line in lines} == {"q", "k", "v", "o", "up", "gate", "down"}
    for line in lines:
        assert [p[0] for p in line.points] == [0, 1, 2, 3]
        for _layer, value, name in line.points:
            assert value == result.matrices[name].metrics.alpha


def test_depth_tab_draws_alpha_once_the_spectra_are_done(make_window, open_model, qtbot, cache_dir: Path) -> None:
    window = make_window()
    view = open_model(window, SAMPLE)
    view.tabs.setCurrentWidget(view.depth_tab)
    qtbot.waitUntil(lambda: view.depth_tab.panel is not None and view.depth.profiles is not None, timeout=30000)
    depth = view.depth
    depth.statistic.setCurrentIndex(depth.statistic.findData("alpha"))
    assert not depth.series() and "Spectra tab" in depth.subtitle.text()
    view.tabs.setCurrentWidget(view.spectra_tab)
    qtbot.waitUntil(lambda: view.spectra_tab.panel is not None and view.spectra_tab.panel.done, timeout=60000)
    view.tabs.setCurrentWidget(view.depth_tab)
    qtbot.waitUntil(lambda: len(depth.curves) == 7, timeout=10000)
    spectra = view.spectra_tab.panel.result
    for line in depth.series():
        assert all(value == spectra.matrices[name].metrics.alpha for _, value, name in line.points)
    assert depth.title.text() == "Depth profile · Alpha (spectra)"
