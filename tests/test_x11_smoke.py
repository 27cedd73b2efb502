"""The app on a real X server (Qt's xcb plugin, not offscreen), and the check that runs before Qt starts.

Without a display, or without the system libraries Qt's xcb plugin links, the app prints one line
naming what is missing (and the apt-get command) and exits 2, instead of Qt's abort. The window
tests start a private Xvfb and skip, saying why, where Xvfb is not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gui import display_check
from gui.display_check import (
    NO_DISPLAY,
    XCB_HELPER_PACKAGES,
    XCB_PLUGIN_LIBRARIES,
    display_problem,
    missing_libraries,
    qt_library_dir,
)
from gui.launch import launch
from tests.xserver import display_env, run_window, xvfb_display

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = "resources/samples/tiny-llama"
ABSENT = "libweightscope-absent-for-tests.so.7"  # a soname no system has
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="Qt's xcb plugin is Linux's")
REQUIRED = os.environ.get("WEIGHTSCOPE_X11") == "1"  # .ci/run sets it once Xvfb and the libraries are installed


def skip_or_fail(reason: str) -> None:
    """Skip where the machine lacks what the test needs; fail in CI, which installed it."""
    if REQUIRED:
        pytest.fail(f"WEIGHTSCOPE_X11=1 but {reason}")
    pytest.skip(reason)


def skip_unless_xvfb() -> None:
    if not shutil.which("Xvfb"):
        skip_or_fail("needs Xvfb (apt-get install -y xvfb xdotool)")


def x_session(**extra: str) -> dict[str, str]:
    return {"DISPLAY": ":0", "XDG_SESSION_TYPE": "x11", **extra}


# --- which platform Qt will use, and what is then checked --------------------------------


def test_offscreen_and_other_platforms_are_never_checked() -> None:
    def loads(_soname: str) -> bool:
        raise AssertionError("no library may be probed for a platform other than xcb")

    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", loads) is None  # even with no display
    assert display_problem({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, "linux", loads) is None
    assert display_problem({"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"}, "linux", loads) is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"},
                           "linux", loads) is None
    assert display_problem({}, "darwin", loads) is None and display_problem({}, "win32", loads) is None


def test_no_display_is_one_line_suggesting_the_headless_ways() -> None:
    assert display_problem({}, "linux") == NO_DISPLAY
    assert display_problem({"QT_QPA_PLATFORM": "xcb"}, "linux") == NO_DISPLAY
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux", lambda _s: False) is None  # Qt may use it
    assert "\n" not in NO_DISPLAY and "--screenshot" in NO_DISPLAY and "report" in NO_DISPLAY


def test_missing_libraries_are_named_with_their_packages() -> None:
    absent = {"libxcb-cursor.so.0", "libgthread-2.0.so.0", "libglib-2.0.so.0"}
    line = display_problem(x_session(), "linux", lambda soname: soname not in absent)
    assert line == ("error: the window needs system libraries that are missing "
                    "(libxcb-cursor.so.0, libglib-2.0.so.0, libgthread-2.0.so.0); "
                    "install them with: sudo apt-get install -y libxcb-cursor0 libglib2.0-0")
    assert display_problem(x_session(QT_QPA_PLATFORM="xcb"), "linux", lambda _s: True) is None


def test_real_resolution_finds_a_soname_that_is_there_and_not_one_that_is_not() -> None:
    libraries = {"libc.so.6": "libc6", ABSENT: "weightscope-absent"}
    assert missing_libraries(libraries=libraries) == {ABSENT: "weightscope-absent"}


def test_the_check_prefers_the_copy_bundled_beside_qt(tmp_path: Path) -> None:
    # The packaged app carries the xcb libraries in PySide6/Qt/lib: a loadable file there counts, by its path.
    zlib = next((p for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib",
                             "/usr/lib") for p in [Path(d) / "libz.so.1"] if p.is_file()), None)
    if zlib is None:
        pytest.skip("no libz.so.1 to stand in for a bundled library")
    shutil.copy(zlib, tmp_path / ABSENT)
    assert display_check.library_loads(ABSENT, str(tmp_path))
    assert not display_check.library_loads(ABSENT, str(tmp_path / "elsewhere"))


def test_launch_stops_before_qt_with_one_line_and_status_2(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    for name, value in x_session().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setitem(XCB_PLUGIN_LIBRARIES, ABSENT, "weightscope-absent")
    assert launch([SAMPLE]) == 2
    [line] = capsys.readouterr().err.splitlines()  # one line, whatever else this machine lacks
    assert line.startswith("error: the window needs system libraries that are missing (")
    assert f"{ABSENT});" in line and line.endswith(" weightscope-absent")


@linux_only
def test_the_app_without_a_display_exits_2_with_one_line(tmp_path: Path) -> None:
    env = display_env("", tmp_path)
    del env["DISPLAY"]
    out = subprocess.run([sys.executable, "main.py", SAMPLE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stderr, out.stdout) == (2, NO_DISPLAY + "\n", "")


@linux_only
def test_the_app_with_a_library_missing_exits_2_with_one_line(tmp_path: Path) -> None:
    # A whole process: the check's table gains a soname no system has, as if a package were not installed.
    script = (f"import sys; from gui import display_check; display_check.XCB_PLUGIN_LIBRARIES[{ABSENT!r}] = "
              f"'weightscope-absent'; import main; sys.exit(main.main([{SAMPLE!r}]))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=display_env(":0", tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    [line] = out.stderr.splitlines()
    assert line.startswith("error: the window needs system libraries that are missing (")
    assert ABSENT in line and line.endswith("weightscope-absent")


# --- the table against the real plugin and the real packages -----------------------------


def needed(library: Path) -> set[str]:
    dynamic = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))


@linux_only
@pytest.mark.skipif(not shutil.which("readelf"), reason="needs readelf (binutils)")
def test_the_table_is_every_system_library_the_xcb_plugin_links() -> None:
    qt = Path(qt_library_dir()).parent
    links = needed(qt / "plugins" / "platforms" / "libqxcb.so") | needed(qt / "lib" / "libQt6XcbQpa.so.6")
    runtime = {"libstdc++.so.6", "libm.so.6", "libgcc_s.so.1", "libc.so.6"}
    system = {soname for soname in links if not soname.startswith("libQt6")} - runtime
    assert system == set(XCB_PLUGIN_LIBRARIES)


@linux_only
@pytest.mark.skipif(not shutil.which("dpkg"), reason="package names are checked against dpkg (Debian)")
def test_package_names_are_the_ones_dpkg_knows_for_installed_libraries() -> None:
    patterns = [f"*/{soname}" for soname in XCB_PLUGIN_LIBRARIES]
    listing = subprocess.run(["dpkg", "-S", *patterns], capture_output=True, text=True).stdout
    owners: dict[str, set[str]] = {}
    for line in listing.splitlines():  # "libxcb-cursor0:amd64: /usr/lib/x86_64-linux-gnu/libxcb-cursor.so.0"
        packages, path = line.rsplit(": ", 1)
        for package in packages.split(", "):
            owners.setdefault(os.path.basename(path), set()).add(package.split(":")[0])
    installed = [soname for soname in XCB_PLUGIN_LIBRARIES if soname in owners]
    assert len(installed) >= len(XCB_PLUGIN_LIBRARIES) // 2  # what is not installed here has nothing to compare with
    for soname in installed:
        assert XCB_PLUGIN_LIBRARIES[soname] in owners[soname], soname


def test_readme_and_ci_install_the_helper_packages() -> None:
    packages = " ".join(XCB_HELPER_PACKAGES)
    assert set(XCB_HELPER_PACKAGES) <= set(XCB_PLUGIN_LIBRARIES.values())
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert f"sudo apt-get install -y {packages}\n" in quick_start
    assert quick_start.index("sudo apt-get") < quick_start.index(".venv/bin/python main.py resources/samples")
    assert f"XCB_PACKAGES=\"{packages}\"" in (ROOT / ".ci" / "run").read_text()


# --- the real window on a real X server --------------------------------------------------


@linux_only
@pytest.mark.timeout(600)
def test_the_window_starts_on_a_real_x_server(tmp_path: Path) -> None:
    skip_unless_xvfb()
    missing = missing_libraries()
    if missing:
        skip_or_fail(display_check.missing_libraries_message(missing))
    with xvfb_display() as display:
        run = run_window([sys.executable, "main.py", "--quit-after-shown", "1", SAMPLE], display, tmp_path, ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Could not load the Qt platform plugin" not in run.stderr
    assert run.window_seen is not False, "no visible window named Weightscope appeared on the X server"


@linux_only
def test_missing_xcb_libraries_are_named_on_a_real_x_server(tmp_path: Path) -> None:
    skip_unless_xvfb()
    missing = missing_libraries()
    if not missing:
        pytest.skip("every library of Qt's xcb plugin is installed here: nothing missing to report")
    with xvfb_display() as display:
        run = run_window([sys.executable, "main.py", SAMPLE], display, tmp_path, ROOT, timeout=60)
    assert run.returncode == 2
    assert run.stderr == display_check.missing_libraries_message(missing) + "\n"
    assert run.window_seen is not True


@linux_only
def test_help_documents_the_smoke_test_flag() -> None:
    out = subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0 and "--quit-after-shown SECONDS" in out.stdout
