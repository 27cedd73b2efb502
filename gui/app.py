"""The application object: names for QSettings, and FileOpen events that may arrive before the window.

On macOS, double-clicking a checkpoint starts the app with a QFileOpenEvent,
often before ``exec()`` and before the main window exists; orange-canvas-core
queues those and replays them, and so do we.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

from PySide6.QtCore import QEvent
from PySide6.QtGui import QFileOpenEvent, QIcon
from PySide6.QtWidgets import QApplication

ORGANIZATION = "Weightscope"
APPLICATION = "Weightscope"
GIL_SWITCH_SECONDS = 0.001  # sys.setswitchinterval while the app runs (Python's default: 0.005)


class WeightscopeApp(QApplication):
    """QApplication that forwards OS FileOpen requests to one open function, queueing them until it is set."""

    def __init__(self, argv: list[str] | None = None) -> None:
        super().__init__(argv if argv is not None else sys.argv[:1])
        configure(self)
        from gui.errors import install_excepthook

        install_excepthook(QApplication.activeWindow)
        self._pending: list[str] = []
        self._opener: Callable[[list[str]], None] | None = None

    def set_opener(self, opener: Callable[[list[str]], None] | None) -> None:
        """Where FileOpen paths go from now on; queued ones are replayed at once."""
        self._opener = opener
        if opener is not None and self._pending:
            pending, self._pending = self._pending, []
            opener(pending)

    @property
    def pending_paths(self) -> list[str]:
        return list(self._pending)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FileOpen and isinstance(event, QFileOpenEvent):
            path = event.file() or event.url().toLocalFile()
            if path:
                if self._opener is not None:
                    self._opener([path])
                else:
                    self._pending.append(path)
            return True
        return super().event(event)


def configure(app: QApplication) -> None:
    """Names that place our QSettings, and the look shared by every window."""
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    app.setStyle("Fusion")
    from gui.style import apply_palette

    apply_palette(app)
    app.setDesktopFileName("weightscope")
    app.setWindowIcon(app_icon())


def app_icon() -> QIcon:
    """The Weightscope icon in every size we ship, found from source or from the frozen app."""
    from resources import icon_paths

    icon = QIcon()
    for path in icon_paths():
        icon.addFile(path)
    return icon


def get_app(argv: list[str] | None = None) -> QApplication:
    """The running application, created (as a WeightscopeApp) if there is none."""
    app = QApplication.instance()
    if app is None:
        app = WeightscopeApp(argv)
        # Worker threads that run Python (header parsing, summaries) hand the GIL back every 1 ms instead of
        # every 5 ms, so the UI thread waits at most about a millisecond for it between two of its turns.
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
    return app  # type: ignore[return-value]


_startup_frozen = False


def freeze_startup_objects() -> None:
    """Move the objects alive after start-up (modules, classes, Qt wrappers: a few hundred thousand) out of the
    cycle collector's sight, once per process. Each full collection walked them all: 25-55 ms, on whichever
    thread it fell, and an open that triggered one stalled the window 50-90 ms (benchmarks/ui_latency.py).
    They live as long as the process, so nothing is lost; garbage is collected first so none is kept."""
    global _startup_frozen
    if _startup_frozen:
        return
    _startup_frozen = True
    gc.collect()
    gc.freeze()

