"""Background work gives way, for a moment, while the user waits on the window.

On a machine with as many busy analysis threads as cores, the UI thread shares
the cores and the interpreter lock with them: a 10 ms slice of drawing became a
30-90 ms stall although those threads run at a lower priority (gui.priority),
because each holds its core and the lock for a whole block before the UI thread
gets either. The window calls ``hold_background`` when the user acts (selects a
tensor, shows a panel, opens a model) and while what that act builds is still
being built; the engines' worker threads call ``give_way`` before each block of
work and sleep until the hold ends. A hold lasts at most ``MAX_HOLD_SECONDS``
from its last renewal, so background work is delayed, never starved. Without a
window (the command line) nothing ever holds, and ``give_way`` is one clock read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MAX_HOLD_SECONDS = 0.5  # the longest one call can hold the background
USER_ACT_HOLD_SECONDS = 0.15  # a user's act (a selection, a panel shown) and its first paint

_until = 0.0
_lock = threading.Lock()


def hold_background(seconds: float) -> None:
    """Ask worker threads to pause at their next block for ``seconds`` from now (capped; renewals extend it)."""
    global _until
    end = time.monotonic() + min(max(0.0, seconds), MAX_HOLD_SECONDS)
    with _lock:
        _until = max(_until, end)


def release_background() -> None:
    """End any hold now (the window is idle again, or closing)."""
    global _until
    with _lock:
        _until = 0.0


def held() -> bool:
    """Whether a hold is in force."""
    return time.monotonic() < _until


def give_way(stop: Callable[[], bool] | None = None) -> float:
    """Called by worker threads between blocks: sleep while a hold is in force, or until ``stop()`` (a Cancel)
    turns true; returns the seconds waited."""
    waited = 0.0
    if threading.current_thread() is threading.main_thread():
        return waited  # the UI thread (or a command's own thread) never waits on itself
    while True:
        left = _until - time.monotonic()
        if left <= 0 or waited >= MAX_HOLD_SECONDS or (stop is not None and stop()):
            return waited
        nap = min(left, 0.01)  # short naps: a released hold resumes work within 10 ms
        time.sleep(nap)
        waited += nap
