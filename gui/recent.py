"""Recently opened models, in QSettings: newest first, no duplicates, at most 15, vanished paths dropped."""

from __future__ import annotations

import os

from PySide6.QtCore import QSettings

KEY = "recent/paths"
LIMIT = 15


def _normalise(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


def recent_paths() -> list[str]:
    """The stored list, without paths that no longer exist (and without duplicates)."""
    value = QSettings().value(KEY, [])
    if isinstance(value, str):
        value = [value]
    out: list[str] = []
    seen: set[str] = set()
    for path in value or []:
        if isinstance(path, str) and os.path.exists(path) and _normalise(path) not in seen:
            seen.add(_normalise(path))
            out.append(path)
    return out[:LIMIT]


def add_recent(path: str) -> list[str]:
    path = os.path.abspath(path)
    paths = [p for p in recent_paths() if _normalise(p) != _normalise(path)]
    paths = [path, *paths][:LIMIT]
    QSettings().setValue(KEY, paths)
    return paths


def clear_recent() -> None:
    QSettings().setValue(KEY, [])
