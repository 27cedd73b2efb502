"""A guard against a reference-count bug of PySide6 6.12 on Python 3.11.

With the pinned wheel, every call of a void Qt method from Python (``setText``,
``setData``, ...) drops one reference to ``None``, and every ``Signal.emit()``
drops one to ``True``: the binding treats them as immortal, which they are only
from Python 3.12 on. pyqtgraph makes thousands of such calls per redraw, so
after a few minutes the interpreter aborts with "deallocating None". We probe
once whether the running binding leaks and, if it does, keep the counts of
``None``, ``True`` and ``False`` topped up (they are never freed anyway).
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, QTimer, Signal

RESERVE = 1 << 30
LOW_WATER = 1 << 28
_SINGLETONS = (None, True, False)


class _Probe(QObject):
    sig = Signal()


def leaks() -> bool:
    """Whether void calls or emits lose references to None/True here (the probe's losses are given back)."""
    probe = _Probe()
    before = [sys.getrefcount(o) for o in _SINGLETONS]
    for _ in range(8):
        probe.setObjectName("probe")
        probe.sig.emit()
    after = [sys.getrefcount(o) for o in _SINGLETONS]
    lost = [b - a for a, b in zip(after, before, strict=True)]
    for obj, n in zip(_SINGLETONS, lost, strict=True):
        if n > 0:
            _add_refs(obj, n)
    return any(n > 0 for n in lost)


def _add_refs(obj: object, n: int) -> None:
    ctypes.c_ssize_t.from_address(id(obj)).value += n  # ob_refcnt: the first field of every CPython object


def top_up() -> None:
    for obj in _SINGLETONS:
        if sys.getrefcount(obj) < LOW_WATER:
            _add_refs(obj, RESERVE)


_timer: QTimer | None = None


def install() -> bool:
    """Apply the guard if this binding needs it (checked once); True when it is active."""
    global _timer
    if _timer is not None:
        return True
    if sys.version_info >= (3, 12) or not leaks():
        return False
    top_up()
    _timer = QTimer()
    _timer.setInterval(500)
    _timer.timeout.connect(top_up)
    _timer.start()
    return True
