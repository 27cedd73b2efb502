"""Work off the UI thread: workers, cancelling the analysis, stale selections, closing while busy."""

from __future__ import annotations

import threading
import time

import pytest

from core.errors import CheckpointError
from gui import workers
from tests.conftest import write_llama


def test_generator_worker_signals_in_order(qtbot):
    thread_names = []

    def job(stop):
        thread_names.append(threading.current_thread() is threading.main_thread())
        yield 1
        yield 2
        return "done"

    got, returned = [], []
    worker = workers.Worker(job, "gen")
    worker.signals.sig_yielded.connect(got.append)
    worker.signals.sig_returned.connect(returned.append)
    sig = worker.signals
    with qtbot.waitSignals([sig.sig_started, sig.sig_yielded, sig.sig_yielded, sig.sig_returned, sig.sig_finished],
                           order="strict", timeout=5000):
        worker.start()
    assert got == [1, 2]
    assert returned == ["done"]
    assert thread_names == [False]  # ran on a pool thread


def test_worker_errors_are_reported_not_lost(qtbot):
    def job(stop):
        raise CheckpointError("broken header")

    worker = workers.Worker(job, "err")
    with qtbot.waitSignal(worker.signals.sig_errored, timeout=5000) as blocker:
        worker.start()
    assert str(blocker.args[0]) == "broken header"
    qtbot.waitUntil(lambda: worker.is_done)


def test_quit_stops_a_generator_between_yields(qtbot):
    started = threading.Event()
    closed = threading.Event()

    def job(stop):
        try:
            while True:
                started.set()
                time.sleep(0.005)
                yield None
        finally:
            closed.set()

    worker = workers.Worker(job, "endless")
    with qtbot.waitSignal(worker.signals.sig_aborted, timeout=5000):
        worker.start()
        assert started.wait(5)
        worker.quit()
    assert closed.wait(5)
    qtbot.waitUntil(lambda: not workers.active_workers(), timeout=5000)


def test_job_slot_drops_results_of_a_stale_job(qtbot):
    slot = workers.JobSlot("test")
    release = threading.Event()
    results = []

    def slow(stop):
        release.wait(5)
        return "stale"

    slot.start(slow, on_return=results.append)
    first = slot.worker
    slot.start(lambda stop: "fresh", on_return=results.append)
    assert first.should_stop()
    release.set()
    qtbot.waitUntil(lambda: first.is_done and not slot.busy, timeout=5000)
    qtbot.wait(50)
    assert results == ["fresh"]


@pytest.fixture
def slow_model(tmp_path):
    """~14 MB of float32: with 4 KiB chunks its analysis takes thousands of steps."""
    return write_llama(tmp_path / "slow", layers=4, scale=4)


def test_cancel_button_stops_the_whole_model_analysis(make_window, open_model, qtbot, slow_model):
    path, tensors = slow_model
    window = make_window(chunk_bytes=4 << 10)
    view = open_model(window, path, idle=False)
    qtbot.waitUntil(lambda: view.progress is not None, timeout=20000)
    window._update_status()
    assert view.analysis_state == "running"
    assert window.cancel_button.isVisible() and window.progress_bar.isVisible()
    worker = view.analysis_job.worker
    start = time.monotonic()
    window.cancel_button.click()
    assert view.analysis_state == "cancelled"
    qtbot.waitUntil(lambda: worker.is_done, timeout=2000)
    assert time.monotonic() - start < 2
    assert not window.cancel_button.isVisible()
    assert "cancelled" in window.status_label.text()
    done = len(view.result.summaries) if view.result is not None else 0
    assert done < len(tensors)
    qtbot.waitUntil(window.is_idle, timeout=10000)


def test_selecting_another_tensor_cancels_the_stale_job(make_window, open_model, qtbot, slow_model):
    path, _ = slow_model
    window = make_window(chunk_bytes=4 << 10, auto_analyse=False)
    view = open_model(window, path)
    view.select_tensor("model.embed_tokens.weight")
    stale = view.selection_job.worker
    assert stale is not None
    view.select_tensor("model.layers.0.self_attn.k_proj.weight")
    assert stale.should_stop()
    qtbot.waitUntil(lambda: stale.is_done, timeout=3000)
    qtbot.waitUntil(lambda: not view.selection_job.busy, timeout=20000)
    assert view.distribution.stats is not None, view.distribution.subtitle.text()
    assert view.distribution.stats.name == "model.layers.0.self_attn.k_proj.weight"


def test_closing_while_busy_cancels_everything_quickly(make_window, open_model, qtbot, slow_model):
    path, _ = slow_model
    window = make_window(chunk_bytes=4 << 10)
    view = open_model(window, path, idle=False)
    qtbot.waitUntil(lambda: view.progress is not None, timeout=20000)
    view.select_tensor("model.embed_tokens.weight")
    assert not window.is_idle()
    start = time.monotonic()
    window.close()
    assert workers.pool().waitForDone(2000)
    assert time.monotonic() - start < 2.0
    assert not workers.active_workers()


def test_close_tab_while_busy(make_window, open_model, qtbot, slow_model):
    path, _ = slow_model
    window = make_window(chunk_bytes=4 << 10)
    view = open_model(window, path, idle=False)
    qtbot.waitUntil(lambda: view.progress is not None, timeout=20000)
    window.action_close_tab.trigger()
    assert window.tabs.count() == 0 and window.stack.currentWidget() is window.welcome
    assert workers.pool().waitForDone(2000)
