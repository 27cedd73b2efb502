"""Incident logs: the full traceback of one of our bugs, kept where a bug report can point to it.

A user sees one line naming the error and the log; the traceback goes to a file in a
folder Weightscope owns (never beside the user's files): $WEIGHTSCOPE_LOG_DIR, else
$XDG_STATE_HOME/weightscope/logs, else ~/.local/state/weightscope/logs, made private
(0700). One file per incident; only the newest KEEP_INCIDENTS are kept.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import sys
import traceback
from pathlib import Path

from core.text import terminal_safe

KEEP_INCIDENTS = 50
PREFIX = "incident-"


def log_dir() -> Path:
    """Where incident logs go (not created here)."""
    explicit = os.environ.get("WEIGHTSCOPE_LOG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state).expanduser() if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "weightscope" / "logs"


def write_incident(exc: BaseException, context: str) -> str | None:
    """Write ``exc`` with its traceback and what we were doing to a new private log file; returns its path,
    or None when no log can be written (a read-only home must not turn one error into two)."""
    from core.version import __version__

    folder = log_dir()
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
    lines = [
        f"Weightscope {__version__} incident at {stamp} UTC",
        f"while: {context}",
        f"python {sys.version.split()[0]} on {platform.platform()}",
        f"argv: {sys.argv!r}",
        "",
        *traceback.format_exception(type(exc), exc, exc.__traceback__),
    ]
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / f"{PREFIX}{stamp}-{os.getpid()}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write("\n".join(line.rstrip("\n") for line in lines) + "\n")
    except OSError:
        return None
    prune_incidents(folder)
    return str(path)


def prune_incidents(folder: Path, keep: int = KEEP_INCIDENTS) -> None:
    """Remove all but the newest ``keep`` incident logs (names sort by time)."""
    with contextlib.suppress(OSError):
        logs = sorted(p for p in folder.iterdir() if p.name.startswith(PREFIX) and p.suffix == ".log")
        for old in logs[:-keep] if keep else logs:
            with contextlib.suppress(OSError):
                old.unlink()


def describe_internal_error(exc: BaseException, context: str, log_path: str | None) -> str:
    """The one line a user sees for one of our bugs: what failed, the exception, and where the details are."""
    where = f"details in {log_path}" if log_path else "no log could be written"
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return terminal_safe(f"internal error while {context}: {terminal_safe(message, 300)}; please report it ({where})",
                         2000)
