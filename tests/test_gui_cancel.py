"""Cancel means cancel: after it no job of the tab reads the file, and what was shown is labelled partial."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gui import workers
from gui.progress_text import Throughput, fraction_text, partial_text, progress_text
from tests.conftest import write_llama
from tests.llama_shapes import LLAMA_31_405B, write_sparse_sharded_model


@pytest.fixture(scope="module")
def huge_model(tmp_path_factory) -> Path:
    """A 405B-shaped sharded model (1,137 tensors, ~811 GB apparent) whose data are holes."""
    folder = tmp_path_factory.mktemp("llama-405b")
    write_sparse_sharded_model(str(folder), LLAMA_31_405B, shards=8)
    return folder


def assert_no_reads_for(qtbot, reads: list[str], ms: int = 1200) -> None:
    before = len(reads)
    qtbot.wait(ms)
    assert len(reads) == before, f"read after cancel: {reads[before:before + 3]}"


def test_cancel_on_a_huge_model_stops_every_read_of_the_tab(make_window, open_model, qtbot, huge_model, reads):
    window = make_window(chunk_bytes=4 << 20)
    view = open_model(window, huge_model, idle=False, timeout=60000)
    qtbot.waitUntil(lambda: view.analysis_meter.rate() is not None, timeout=20000)
    assert view.select_path("")  # the root: the whole model, far too big for the selection to read itself
    window._update_status()
    status = window.status_label.text()
    assert re.search(r"analysing: \d+% · [\d.]+ \w+/s · .+ left", status), status
    assert window.cancel_button.isVisible()

    started = [w for w in workers.active_workers()]
    assert view.analysis_job.worker in started
    window.cancel_button.click()
    qtbot.waitUntil(window.is_idle, timeout=15000)  # a cancelled job stops before its next chunk
    assert not view.pending_workers()
    assert not [w for w in workers.active_workers() if w in started]
    assert_no_reads_for(qtbot, reads)

    assert view.analysis_state == "cancelled"
    assert not window.cancel_button.isVisible()
    assert "analysis cancelled" in window.status_label.text()
    assert "not analysed yet" in window.status_label.text() or "partial:" in window.status_label.text()
    subtitle = view.distribution.subtitle.text()
    assert "not analysed yet" in subtitle or "partial:" in subtitle, subtitle
    qtbot.waitUntil(lambda: view.depth.profiles is not None, timeout=5000)
    view.tabs.setCurrentIndex(2)
    assert view.depth.subtitle.text().startswith("Not analysed yet"), view.depth.subtitle.text()
    assert "No repeated blocks" not in view.depth.subtitle.text()


def test_selecting_after_cancel_reads_with_progress_and_its_own_cancel(make_window, open_model, qtbot, huge_model,
                                                                       reads):
    window = make_window(auto_analyse=False, chunk_bytes=4 << 20)
    view = open_model(window, huge_model, timeout=60000)
    assert not reads  # nothing read until asked
    assert view.select_tensor("model.layers.0.self_attn.q_proj.weight")  # 512 MiB of bf16
    qtbot.waitUntil(lambda: view.selection_meter.rate() is not None, timeout=20000)
    window._update_status()
    assert view.is_reading() and view.selection_reading
    assert window.cancel_button.isVisible() and window.progress_bar.isVisible()
    status = window.status_label.text()
    assert re.search(r"reading model\.layers\.0\.self_attn\.q_proj\.weight: \d+% · [\d.]+ \w+/s · .+ left", status)
    assert "reading:" in view.distribution.subtitle.text()  # "reading: 0 of 1 tensors · 3.1% of bytes"

    window.cancel_button.click()
    qtbot.waitUntil(window.is_idle, timeout=15000)
    assert not view.pending_workers() and not view.is_reading()
    assert_no_reads_for(qtbot, reads)
    assert not window.cancel_button.isVisible()


def test_partial_statistics_are_labelled_partial(make_window, open_model, qtbot, tmp_path, reads):
    path, tensors = write_llama(tmp_path / "slow", layers=4, scale=4)
    window = make_window(chunk_bytes=4 << 10)
    view = open_model(window, path, idle=False)
    qtbot.waitUntil(lambda: view.result is not None and len(view.result.summaries) >= 3, timeout=20000)
    view.set_histogram_scope("all")  # every tensor: the partial figures below are the whole model's
    view.select_path("")
    window.cancel_button.click()
    qtbot.waitUntil(lambda: window.is_idle() and view.distribution.stats is not None, timeout=10000)
    assert_no_reads_for(qtbot, reads, 600)

    done, total, fraction = view.analysed_counts()
    assert 3 <= done < total == len(tensors)
    shown = partial_text(done, total, fraction)
    subtitle = view.distribution.subtitle.text()
    assert f"partial: {shown}" in subtitle, subtitle
    assert re.search(rf"{done} of {total} tensors · [\d.]+% of bytes", subtitle)
    assert view.distribution.stats.tensors == done  # the figures cover only what was read
    assert view.distribution.table.horizontalHeaderItem(1).text() == "Value (partial)"
    assert f"partial: {shown}" in window.status_label.text()
    qtbot.waitUntil(lambda: view.depth.profiles is not None, timeout=5000)
    view.tabs.setCurrentIndex(2)
    assert "partial:" in view.depth.subtitle.text()


def test_progress_words() -> None:
    now = [0.0]
    meter = Throughput(clock=lambda: now[0])
    assert meter.rate() is None
    meter.add(0)
    now[0] = 2.0
    mib = 1 << 20
    meter.add(240 * mib)
    assert meter.rate() == pytest.approx(120 * mib)
    assert meter.seconds_left(1440 * mib) == pytest.approx(12.0)
    assert progress_text(0.43, meter.rate(), meter.seconds_left(1440 * mib)) == "43% · 120.00 MiB/s · 12 s left"
    assert progress_text(0.05, None, None) == "5%"
    assert partial_text(9, 1137, 0.003) == "9 of 1,137 tensors · 0.3% of bytes"
    assert fraction_text(0.9999) == "99.9%" and fraction_text(1e-6) == "<0.1%" and fraction_text(0.0) == "0%"
