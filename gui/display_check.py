"""Before Qt starts on Linux: is there a display, and can Qt's xcb plugin load its system libraries?

Without them Qt aborts with "Could not load the Qt platform plugin xcb" and a list of plugins, which
tells nobody what to install. This module imports no Qt: it reads the environment the way Qt does and
loads the libraries the xcb plugin links (``readelf -d libqxcb.so``) with ctypes, first from beside the
Qt libraries (where the packaged app carries them), then from the system, so a missing one is named
with its Debian package in one line.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping

# Every system library PySide6 6.11's libqxcb.so and libQt6XcbQpa.so.6 link (their DT_NEEDED entries,
# less Qt's own and the C/C++ runtime), with the Debian package that ships it.
XCB_PLUGIN_LIBRARIES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libGL.so.1": "libgl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}

# The packages a Debian desktop often lacks (the README's apt line; CI installs the same).
XCB_HELPER_PACKAGES = ("libxcb-cursor0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1", "libxcb-randr0",
                       "libxcb-render-util0", "libxcb-shape0", "libxcb-xkb1", "libxkbcommon-x11-0")

NO_DISPLAY = ("error: no display to show the window on (neither DISPLAY nor WAYLAND_DISPLAY is set); "
              "use --screenshot OUT.png MODEL, or the info, stats and report commands")


def platform_will_be_xcb(env: Mapping[str, str]) -> bool:
    """True when Qt would pick its xcb plugin: no platform chosen (or xcb) and not a Wayland session."""
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"
    wayland_session = bool(env.get("WAYLAND_DISPLAY")) and env.get("XDG_SESSION_TYPE") == "wayland"
    return not wayland_session


def qt_library_dir() -> str | None:
    """PySide6's Qt/lib folder, found without importing Qt (in the packaged app it holds the bundled xcb libs)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(next(iter(spec.submodule_search_locations)), "Qt", "lib")


def library_loads(soname: str, bundled_dir: str | None = None) -> bool:
    """Whether the dynamic loader can load ``soname`` (and everything it links), preferring a bundled copy."""
    candidate = soname
    if bundled_dir and os.path.isfile(os.path.join(bundled_dir, soname)):
        candidate = os.path.join(bundled_dir, soname)
    try:
        ctypes.CDLL(candidate)
    except OSError:
        return False
    return True


def missing_libraries(loads: Callable[[str], bool] | None = None,
                      libraries: Mapping[str, str] = XCB_PLUGIN_LIBRARIES) -> dict[str, str]:
    """The sonames among ``libraries`` that do not load, with their packages."""
    if loads is None:
        bundled_dir = qt_library_dir()
        loads = lambda soname: library_loads(soname, bundled_dir)  # noqa: E731
    return {soname: package for soname, package in libraries.items() if not loads(soname)}


def missing_libraries_message(missing: Mapping[str, str]) -> str:
    packages = " ".join(dict.fromkeys(missing.values()))
    return (f"error: the window needs system libraries that are missing ({', '.join(missing)}); "
            f"install them with: sudo apt-get install -y {packages}")


def display_problem(env: Mapping[str, str] | None = None, platform: str | None = None,
                    loads: Callable[[str], bool] | None = None) -> str | None:
    """The one line to print instead of starting Qt, or None when Qt can start (always None off Linux)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux") or not platform_will_be_xcb(env):
        return None
    if not env.get("DISPLAY"):
        return None if env.get("WAYLAND_DISPLAY") else NO_DISPLAY  # with a compositor Qt may still find a way
    missing = missing_libraries(loads)
    return missing_libraries_message(missing) if missing else None
