"""A private X server (Xvfb) for tests that start the real window on Qt's xcb platform, not offscreen.

Used by the X11 smoke test (source) and the packaging test (frozen app). xdotool, when present,
confirms that a window named Weightscope was really mapped on the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

WINDOW_NAME = "^Weightscope$"


@contextmanager
def xvfb_display(size: str = "1400x900x24") -> Iterator[str]:
    """Start Xvfb on a free display (it picks one and reports it through -displayfd); yield ':N'."""
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        assert number.isdigit(), f"Xvfb did not report a display (exit status {server.poll()})"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def display_env(display: str, home: Path) -> dict[str, str]:
    """The environment of a desktop session on ``display``: Qt picks xcb by itself; settings and caches are fresh."""
    env = {**os.environ, "DISPLAY": display, "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
           "XDG_CONFIG_HOME": str(home / "config")}
    for name in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "WEIGHTSCOPE_CACHE_DIR"):
        env.pop(name, None)
    return env


@dataclass
class WindowRun:
    returncode: int
    stderr: str
    window_seen: bool | None  # None when xdotool is not installed


def run_window(command: list[str], display: str, home: Path, cwd: Path, timeout: float = 300,
               **extra_env: str) -> WindowRun:
    """Run the app on ``display`` until it exits, watching (with xdotool) for its visible main window."""
    xdotool = shutil.which("xdotool")
    env = {**display_env(display, home), **extra_env}
    home.mkdir(parents=True, exist_ok=True)
    log = home / "stderr.txt"  # a file, not a pipe: the app never blocks on a full pipe while we poll
    with log.open("w") as stderr_file:
        app = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr_file)
    seen = False if xdotool else None
    deadline = time.monotonic() + timeout
    try:
        while app.poll() is None and time.monotonic() < deadline:
            if xdotool and not seen:
                found = subprocess.run([xdotool, "search", "--onlyvisible", "--name", WINDOW_NAME], env=env,
                                       capture_output=True, text=True, timeout=30)
                seen = bool(found.stdout.split())
            time.sleep(0.2)
        app.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    return WindowRun(app.returncode, log.read_text(errors="replace"), seen)
