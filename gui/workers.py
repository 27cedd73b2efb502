"""The one place that runs core work off the UI thread.

A Worker is a QRunnable on our own QThreadPool that owns a small QObject
carrying its signals, as superqt does. The job is a callable that receives
``should_stop``; if it returns a generator, the worker iterates it and emits
every yielded value, checking its cancel flag between yields, so cancelling
is cooperative and prompt as long as core work yields often (per chunk).
Signals cross to the UI thread as queued connections; the UI never waits.
"""

from __future__ import annotations

import functools
import inspect
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from core.errors import CancelledError
from core.foreground import give_way

Job = Callable[[Callable[[], bool]], Any]

_pool: QThreadPool | None = None
_active: dict[int, Worker] = {}
_active_lock = threading.Lock()


def pool() -> QThreadPool:
    """Our pool (not the global one), so shutdown and tests see exactly our jobs."""
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(6)
        _pool.setExpiryTimeout(60_000)  # idle threads kept: starting one costs the UI thread a few ms per job
    return _pool


class WorkerSignals(QObject):
    """Signals of one worker; lives in the thread that created the worker (the UI thread)."""

    sig_started = Signal()
    sig_yielded = Signal(object)
    sig_returned = Signal(object)
    sig_errored = Signal(object)  # the exception; its formatted traceback is in exc.__traceback_text__
    sig_aborted = Signal()
    sig_finished = Signal()


class Worker(QRunnable):
    """Runs ``job(should_stop)`` on the pool; emits started, yielded*, then returned/errored/aborted, finished."""

    def __init__(self, job: Job, name: str = "") -> None:
        super().__init__()
        self.setAutoDelete(False)  # Python owns us; _active keeps us alive until run() ends
        self.job = job
        self.name = name
        self.signals = WorkerSignals()
        self._stop = threading.Event()
        self._done = threading.Event()
        self.signals.sig_finished.connect(functools.partial(_forget, id(self)))

    # -- control, from any thread -------------------------------------------
    def quit(self) -> None:
        """Ask the job to stop; it stops at its next yield (or next should_stop check)."""
        self._stop.set()

    def should_stop(self) -> bool:
        """Asked by the job between its blocks: also where it gives way while the user acts (core.foreground)."""
        if not self._stop.is_set():
            give_way(self._stop.is_set)
        return self._stop.is_set()

    @property
    def is_done(self) -> bool:
        return self._done.is_set()

    def start(self) -> Worker:
        with _active_lock:
            _active[id(self)] = self
        pool().start(self)
        return self

    # -- the pool thread ------------------------------------------------------
    def run(self) -> None:
        sig = self.signals
        try:
            sig.sig_started.emit()
            if self._stop.is_set():
                sig.sig_aborted.emit()
                return
            result = self.job(self.should_stop)
            if inspect.isgenerator(result):
                result = self._drain(result)
                if result is _ABORTED:
                    sig.sig_aborted.emit()
                    return
            if self._stop.is_set():
                sig.sig_aborted.emit()
            else:
                sig.sig_returned.emit(result)
        except CancelledError:
            sig.sig_aborted.emit()
        except BaseException as exc:  # anything else is reported, never lost in a thread
            exc.__traceback_text__ = traceback.format_exc()  # type: ignore[attr-defined]
            sig.sig_errored.emit(exc)
        finally:
            self._done.set()
            sig.sig_finished.emit()  # _forget runs in the UI thread, long after this frame is gone

    def _drain(self, gen: Any) -> Any:
        while True:
            if self._stop.is_set():
                gen.close()
                return _ABORTED
            try:
                value = next(gen)
            except StopIteration as stop:
                return stop.value
            self.signals.sig_yielded.emit(value)


_ABORTED = object()


def _forget(key: int) -> None:
    """Drop a finished worker; runs in the UI thread, so the last reference never dies in a pool thread."""
    with _active_lock:
        _active.pop(key, None)


def start(job: Job, name: str = "", *, on_yield: Callable | None = None, on_return: Callable | None = None,
          on_error: Callable | None = None, on_abort: Callable | None = None,
          on_finish: Callable | None = None) -> Worker:
    """Create, connect and start a worker in one call."""
    worker = Worker(job, name)
    sig = worker.signals
    for signal, slot in ((sig.sig_yielded, on_yield), (sig.sig_returned, on_return), (sig.sig_errored, on_error),
                         (sig.sig_aborted, on_abort), (sig.sig_finished, on_finish)):
        if slot is not None:
            signal.connect(slot)
    return worker.start()


def active_workers() -> list[Worker]:
    """Workers started and not yet finished."""
    with _active_lock:
        return [w for w in _active.values() if not w.is_done]


def shutdown(timeout_ms: int = 1500) -> bool:
    """Ask every worker to stop and wait for the pool; True if all finished in time."""
    for worker in active_workers():
        worker.quit()
    return pool().waitForDone(timeout_ms)


class JobSlot(QObject):
    """At most one live job for one purpose (the selected tensor's histogram, the heatmap ...).

    Starting a job cancels the previous one; a generation number drops any
    signal the stale job still had in flight, so an old result never
    overwrites a new one.
    """

    sig_busy_changed = Signal(bool)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._generation = 0
        self._worker: Worker | None = None

    @property
    def busy(self) -> bool:
        """True until the UI thread has handled the job's last signal (so its result is already drawn)."""
        return self._worker is not None

    @property
    def worker(self) -> Worker | None:
        return self._worker

    def start(self, job: Job, *, on_yield: Callable | None = None, on_return: Callable | None = None,
              on_error: Callable | None = None, on_abort: Callable | None = None) -> Worker:
        self.cancel()
        self._generation += 1
        gen = self._generation
        worker = Worker(job, self.name)
        sig = worker.signals
        for signal, slot in ((sig.sig_yielded, on_yield), (sig.sig_returned, on_return), (sig.sig_errored, on_error),
                             (sig.sig_aborted, on_abort)):
            if slot is not None:
                signal.connect(functools.partial(self._dispatch, gen, slot))
        sig.sig_finished.connect(functools.partial(self._finished, gen))
        self._worker = worker
        worker.start()
        self.sig_busy_changed.emit(True)
        return worker

    def cancel(self) -> None:
        """Stop the current job (if any); its remaining signals are ignored."""
        worker, self._worker = self._worker, None
        self._generation += 1
        if worker is not None:
            worker.quit()
            if not worker.is_done:
                self.sig_busy_changed.emit(False)

    def _dispatch(self, gen: int, slot: Callable, *args: Any) -> None:
        if gen == self._generation:
            slot(*args)

    def _finished(self, gen: int) -> None:
        if gen == self._generation:
            self._worker = None
            self.sig_busy_changed.emit(False)
