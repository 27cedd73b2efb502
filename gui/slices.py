"""A widget built in slices, one per turn of the event loop, so no single turn holds the UI thread for long.

Creating a pyqtgraph plot costs 15-20 ms of UI thread, a panel has several; built at once, a panel was a
50-90 ms stall, longer on a machine whose cores are busy with the analysis. Each step here runs from a 1 ms
timer, not a posted event, so timers that are due (input, progress, the stall meter) run between steps.

One timer serves every Slices (``_Turns``): two panels building at once (a tab shown while the last one still
builds) take turns, one step per turn, instead of each timer firing in the same pass of the event loop. Steps
of a visible widget go first. After a step of x ms the timer waits about x ms (1 to ``MAX_REST_MS``) before
the next: short steps back to back would otherwise fill one interval of a 5 ms timer (the stall benchmark's,
or the progress ticker's) with two or three steps and their paints; at most half the UI thread goes to building.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from shiboken6 import isValid

from core.foreground import hold_background

BUILD_HOLD_SECONDS = 0.06  # a visible widget's build holds the analysis this long past each of its steps
MAX_REST_MS = 8  # the longest wait after a step: a slow step on a busy machine does not stall the build


class _Turns(QObject):
    """The queue of Slices with steps left; its timer runs one step of one of them per turn."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: list[Slices] = []
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(1)
        self.timer.timeout.connect(self._run)

    def add(self, slices: Slices) -> None:
        if slices not in self.queue:
            self.queue.append(slices)
        if not self.timer.isActive():
            self.timer.start(1)

    def remove(self, slices: Slices) -> None:
        if slices in self.queue:
            self.queue.remove(slices)

    def _next(self) -> Slices | None:
        self.queue = [s for s in self.queue if isValid(s) and s.pending]  # deleted with their widget, or done
        for slices in self.queue:
            if _visible(slices):
                return slices
        return self.queue[0] if self.queue else None

    def _run(self) -> None:
        slices = self._next()
        rest_ms = 1
        if slices is not None:
            self.queue.remove(slices)
            self.queue.append(slices)  # round robin among equals
            if _visible(slices):  # what the user waits for is being built: the analysis waits a moment
                hold_background(BUILD_HOLD_SECONDS)
            start = time.perf_counter()
            slices.step()
            rest_ms = min(MAX_REST_MS, max(1, round((time.perf_counter() - start) * 1000)))
        if any(isValid(s) and s.pending for s in self.queue):
            self.timer.start(rest_ms)


def _visible(slices: Slices) -> bool:
    parent = slices.parent()
    return parent is not None and bool(getattr(parent, "isVisible", lambda: False)())


_turns: _Turns | None = None


def _shared_turns() -> _Turns:
    global _turns
    if _turns is None or not isValid(_turns):
        _turns = _Turns()
    return _turns


class Slices(QObject):
    """Runs ``steps`` in order, one per event-loop turn (``sliced``) or all at once; ``sig_done`` at the end."""

    sig_done = Signal()

    def __init__(self, parent: QObject, steps: list[Callable[[], object]], sliced: bool) -> None:
        super().__init__(parent)
        self._steps = list(steps)
        if sliced:
            _shared_turns().add(self)
        else:
            self.finish()

    @property
    def pending(self) -> bool:
        """Steps are still to run."""
        return bool(self._steps)

    @property
    def scheduled(self) -> bool:
        """Waiting for a turn of the shared timer."""
        return _turns is not None and isValid(_turns) and self in _turns.queue

    def step(self) -> None:
        """Run the next step (the shared timer brings the one after)."""
        if self._steps:
            self._steps.pop(0)()
            if not self._steps:
                self._leave()
                self.sig_done.emit()

    def _leave(self) -> None:
        if _turns is not None and isValid(_turns):
            _turns.remove(self)

    def cancel(self) -> None:
        """Run no more steps (and never say done): what they would build is no longer wanted."""
        self._leave()
        self._steps.clear()

    def finish(self) -> None:
        """Run every step left, now (for code that needs the whole widget at once)."""
        self._leave()
        if not self._steps:
            return
        while self._steps:
            self._steps.pop(0)()
        self.sig_done.emit()
