"""The window can hold background work for a moment (core.foreground): worker threads wait at their next block,
never longer than the cap, never on the UI thread, and resume when the hold ends or is released."""

from __future__ import annotations

import threading
import time

import pytest

from core import foreground


@pytest.fixture(autouse=True)
def _no_hold_left():
    foreground.release_background()
    yield
    foreground.release_background()


def _waited_in_worker() -> float:
    out: list[float] = []
    worker = threading.Thread(target=lambda: out.append(foreground.give_way()))
    worker.start()
    worker.join(5)
    return out[0]


def test_without_a_hold_workers_do_not_wait():
    assert not foreground.held()
    assert _waited_in_worker() == 0.0


def test_a_worker_waits_until_the_hold_ends():
    foreground.hold_background(0.12)
    assert foreground.held()
    start = time.monotonic()
    waited = _waited_in_worker()
    elapsed = time.monotonic() - start
    assert 0.08 <= waited <= 0.2
    assert elapsed >= 0.08
    assert not foreground.held()


def test_a_hold_is_capped_so_background_work_is_never_starved():
    foreground.hold_background(60.0)
    start = time.monotonic()
    _waited_in_worker()
    assert time.monotonic() - start <= foreground.MAX_HOLD_SECONDS + 0.2


def test_release_lets_a_waiting_worker_go_at_once():
    foreground.hold_background(0.5)
    result: list[float] = []
    worker = threading.Thread(target=lambda: result.append(foreground.give_way()))
    worker.start()
    time.sleep(0.05)
    foreground.release_background()
    worker.join(5)
    assert result and result[0] < 0.2


def test_the_main_thread_never_waits_on_itself():
    foreground.hold_background(0.3)
    start = time.monotonic()
    assert foreground.give_way() == 0.0
    assert time.monotonic() - start < 0.05


def test_renewals_extend_but_never_shorten_a_hold():
    foreground.hold_background(0.3)
    foreground.hold_background(0.01)  # a shorter renewal does not end the longer hold
    time.sleep(0.05)
    assert foreground.held()


def test_statistics_blocks_give_way_and_stay_exact(tmp_path):
    """A held analysis finishes later, not differently: the CPU backend's blocks wait, then count as before."""
    import numpy as np

    from core.stats import run
    from tests.safetensors_files import write_safetensors

    values = np.random.default_rng(3).standard_normal((512, 4096)).astype(np.float32)
    path = tmp_path / "m.safetensors"
    write_safetensors(path, [("w", "F32", [512, 4096], values.tobytes())])
    free = run(str(path), device="cpu", use_cache=False).stats("w")
    result: list = []
    foreground.hold_background(0.2)
    start = time.monotonic()
    worker = threading.Thread(target=lambda: result.append(run(str(path), device="cpu", use_cache=False)))
    worker.start()
    worker.join(60)
    assert time.monotonic() - start >= 0.15
    held = result[0].stats("w")
    assert held.count == free.count == values.size
    assert held.mean == free.mean
    np.testing.assert_allclose(held.mean, float(values.astype(np.float64).mean()), rtol=1e-9, atol=1e-12)


def test_a_cancel_ends_the_wait_at_once():
    foreground.hold_background(0.5)
    cancelled = threading.Event()
    result: list[float] = []
    worker = threading.Thread(target=lambda: result.append(foreground.give_way(cancelled.is_set)))
    worker.start()
    time.sleep(0.05)
    cancelled.set()
    worker.join(5)
    assert result and result[0] < 0.2 and foreground.held()
