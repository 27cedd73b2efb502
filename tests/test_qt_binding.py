"""The pinned Qt binding keeps Python's reference counts: PySide6 6.12.0 on Python 3.11 did not.

With that wheel every void Qt call dropped a reference to None and every emit one to True, so a few
thousand pyqtgraph redraws aborted the interpreter ("deallocating None"). This guards the pin.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    sig_ping = Signal()


def test_void_calls_and_emits_keep_references_to_none_and_true() -> None:
    emitter = _Emitter()
    before = [sys.getrefcount(o) for o in (None, True, False)]
    for _ in range(300):  # a leaking binding loses 300 of each; other threads may move a few
        emitter.setObjectName("ping")
        emitter.sig_ping.emit()
    after = [sys.getrefcount(o) for o in (None, True, False)]
    lost = [b - a for a, b in zip(after, before, strict=True)]
    assert all(n < 100 for n in lost), lost
