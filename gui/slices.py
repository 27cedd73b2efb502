"""A widget built in slices, one per turn of the event loop, so no single turn holds the UI thread for long.

Creating a pyqtgraph plot costs 15-20 ms of UI thread, a panel has several; built at once, a panel was a
50-90 ms stall, longer on a machine whose cores are busy with the analysis. Each step here runs from a 1 ms
timer, not a posted event, so timers that are due (input, progress, the stall meter) run between steps.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal


class Slices(QObject):
    """Runs ``steps`` in order, one per event-loop turn (``sliced``) or all at once; ``sig_done`` at the end."""

    sig_done = Signal()

    def __init__(self, parent: QObject, steps: list[Callable[[], object]], sliced: bool) -> None:
        super().__init__(parent)
        self._steps = list(steps)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(1)
        self._timer.timeout.connect(self.step)
        if sliced:
            self._timer.start()
        else:
            self.finish()

    @property
    def pending(self) -> bool:
        """Steps are still to run."""
        return bool(self._steps)

    def step(self) -> None:
        """Run the next step; the timer brings the one after."""
        if self._steps:
            self._steps.pop(0)()
            if self._steps:
                self._timer.start()
            else:
                self.sig_done.emit()

    def cancel(self) -> None:
        """Run no more steps (and never say done): what they would build is no longer wanted."""
        self._timer.stop()
        self._steps.clear()

    def finish(self) -> None:
        """Run every step left, now (for code that needs the whole widget at once)."""
        self._timer.stop()
        if not self._steps:
            return
        while self._steps:
            self._steps.pop(0)()
        self.sig_done.emit()
