"""Packaging: icons, desktop integration, resource lookup, and (opt-in) the frozen app itself.

The fast checks run with the suite. The build test (@pytest.mark.packaging) runs
PyInstaller through packaging/build.sh and then the built executable, so it
takes minutes: it is skipped unless WEIGHTSCOPE_PACKAGING=1.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import resources
from gui.display_check import XCB_PLUGIN_LIBRARIES
from resources import ICON_SIZES, icon_paths, resource_path, resource_root
from tests.xserver import run_window, xvfb_display

ROOT = Path(__file__).resolve().parents[1]
ICONS = ROOT / "resources" / "icons"
LINUX = ROOT / "packaging" / "linux"
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
CHECKPOINT_TYPES = {"application/x-safetensors", "application/x-gguf", "application/x-pytorch"}
PARAMETERS_LINE = "804 K (803,968)"  # the sample's parameter count as `main.py info` prints it


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature and the end chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


# --- icons -------------------------------------------------------------------------------


def test_png_icons_in_every_size() -> None:
    for size in ICON_SIZES:
        assert png_size((ICONS / f"weightscope-{size}.png").read_bytes()) == (size, size)
    assert [Path(p).name for p in icon_paths()] == [f"weightscope-{s}.png" for s in ICON_SIZES]


def test_windows_ico_holds_png_images_of_the_stated_sizes() -> None:
    data = (ICONS / "weightscope.ico").read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", data, 0)
    assert (reserved, kind) == (0, 1) and count >= 6
    sizes = []
    for i in range(count):
        w, h, _colors, _res, planes, bpp, length, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * i)
        assert (planes, bpp) == (1, 32)
        w, h = w or 256, h or 256
        assert png_size(data[offset:offset + length]) == (w, h)
        sizes.append(w)
    assert {16, 32, 48, 256} <= set(sizes)


def test_macos_icns_chunks_are_pngs_of_their_type_size() -> None:
    data = (ICONS / "weightscope.icns").read_bytes()
    assert data[:4] == b"icns" and struct.unpack(">I", data[4:8])[0] == len(data)
    pixels = {b"icp4": 16, b"icp5": 32, b"icp6": 64, b"ic07": 128, b"ic08": 256, b"ic09": 512, b"ic10": 1024,
              b"ic11": 32, b"ic12": 64, b"ic13": 256, b"ic14": 512}
    seen = set()
    pos = 8
    while pos < len(data):
        kind, length = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        assert length > 8 and pos + length <= len(data)
        side = pixels[kind]
        assert png_size(data[pos + 8:pos + length]) == (side, side)
        seen.add(kind)
        pos += length
    assert pos == len(data)
    assert {b"ic07", b"ic08", b"ic09", b"ic10"} <= seen


# --- run-time resource lookup ------------------------------------------------------------


def test_resource_path_from_source() -> None:
    assert Path(resource_root()) == ROOT / "resources"
    assert Path(resource_path("icons", "weightscope-16.png")).is_file()


def test_resource_path_in_a_frozen_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.resource_path("samples", "tiny-llama") == str(tmp_path / "resources" / "samples" / "tiny-llama")
    assert resources.icon_paths() == []  # nothing unpacked there: missing sizes are left out, not invented


# --- Linux desktop integration -----------------------------------------------------------


def desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(LINUX / "weightscope.desktop")
    return parser["Desktop Entry"]


def mime_globs() -> dict[str, list[str]]:
    root = ET.parse(LINUX / "weightscope-mime.xml").getroot()
    types = root.iter(MIME_NS + "mime-type")
    return {t.get("type"): [g.get("pattern") for g in t.iter(MIME_NS + "glob")] for t in types}


def test_desktop_entry_names_our_mime_types() -> None:
    entry = desktop_entry()
    assert entry["Type"] == "Application" and entry["Name"] == "Weightscope"
    assert entry["Exec"].endswith("%F") and entry["Icon"] == "weightscope"
    assert {m for m in entry["MimeType"].split(";") if m} == CHECKPOINT_TYPES == set(mime_globs())
    if shutil.which("desktop-file-validate"):
        out = subprocess.run(["desktop-file-validate", str(LINUX / "weightscope.desktop")], capture_output=True,
                             text=True)
        assert out.returncode == 0 and "error" not in out.stdout + out.stderr


def test_mime_globs_cover_every_checkpoint_extension() -> None:
    patterns = [p for globs in mime_globs().values() for p in globs]
    for ext in ("safetensors", "gguf", "pt", "pth", "ckpt"):
        assert f"*.{ext}" in patterns
    assert "pytorch_model*.bin" in patterns and "*.bin" not in patterns  # never claim every .bin file


def install_env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "share"),
            "XDG_CONFIG_HOME": str(home / "config"), "WEIGHTSCOPE_BIN_DIR": str(home / "bin"), **extra}


def fake_app(tmp_path: Path) -> Path:
    """An app folder with an executable, standing in for dist/Weightscope (install.sh only copies it)."""
    app = tmp_path / "Weightscope"
    app.mkdir()
    exe = app / "Weightscope"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return app


@pytest.mark.skipif(sys.platform != "linux", reason="Linux desktop integration")
def test_install_script_writes_nothing_without_its_tools(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = install_env(home, XDG_MIME=str(tmp_path / "no-such-xdg-mime"))
    out = subprocess.run(["bash", str(LINUX / "install.sh"), str(fake_app(tmp_path))], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "nothing was installed" in out.stderr and "xdg-mime" in out.stderr
    assert not home.exists()


@pytest.mark.skipif(sys.platform != "linux", reason="Linux desktop integration")
@pytest.mark.skipif(not (shutil.which("xdg-mime") and shutil.which("update-desktop-database")),
                    reason="needs xdg-utils and desktop-file-utils")
def test_install_script_registers_the_file_types(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = install_env(home)
    out = subprocess.run(["bash", str(LINUX / "install.sh"), str(fake_app(tmp_path))], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    installed = home / "share" / "weightscope" / "app" / "Weightscope"
    assert os.access(installed, os.X_OK)
    desktop = (home / "share" / "applications" / "weightscope.desktop").read_text()
    assert f'Exec="{installed}" %F' in desktop
    assert (home / "share" / "icons" / "hicolor" / "256x256" / "apps" / "weightscope.png").is_file()
    assert os.path.realpath(home / "bin" / "weightscope") == str(installed)
    defaults = (home / "config" / "mimeapps.list").read_text()
    for mime in CHECKPOINT_TYPES:
        assert f"{mime}=weightscope.desktop" in defaults
    # Qt reads the user's MIME database like any desktop would: the sample files now have our types.
    probe = ("from PySide6.QtCore import QMimeDatabase; import sys; db = QMimeDatabase(); "
             "print(' '.join(db.mimeTypeForFile(p).name() for p in sys.argv[1:]))")
    samples = ROOT / "resources" / "samples"
    names = [samples / "tiny-llama" / "model.safetensors", samples / "tiny-llama.Q8_0.gguf",
             samples / "tiny-llama.pt", tmp_path / "pytorch_model-00001-of-00002.bin"]
    typed = subprocess.run([sys.executable, "-c", probe, *map(str, names)], env=env, capture_output=True,
                           text=True, timeout=60)
    assert typed.stdout.split() == ["application/x-safetensors", "application/x-gguf", "application/x-pytorch",
                                    "application/x-pytorch"], typed.stderr
    out = subprocess.run(["bash", str(LINUX / "install.sh"), "--uninstall"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert not installed.exists() and not (home / "share" / "applications" / "weightscope.desktop").exists()


def test_build_scripts_parse() -> None:
    for script in (ROOT / "packaging" / "build.sh", LINUX / "install.sh"):
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, script
    compile((ROOT / "packaging" / "weightscope.spec").read_text(), "weightscope.spec", "exec")


# --- the frozen app (opt-in: minutes) ----------------------------------------------------

packaging = pytest.mark.skipif(os.environ.get("WEIGHTSCOPE_PACKAGING") != "1",
                               reason="builds the app with PyInstaller (minutes); set WEIGHTSCOPE_PACKAGING=1")


@pytest.fixture(scope="module")
def frozen_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build once with packaging/build.sh into a temporary dist folder; the executable's path."""
    base = tmp_path_factory.mktemp("pyinstaller")
    start = time.perf_counter()
    out = subprocess.run(["bash", str(ROOT / "packaging" / "build.sh"), "--distpath", str(base / "dist"),
                          "--workpath", str(base / "work")], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    seconds = time.perf_counter() - start
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    app = base / "dist" / "Weightscope"
    size = sum(p.stat().st_size for p in app.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"\nbuild: {seconds:.0f} s, dist/Weightscope: {size / 2**20:.0f} MiB")
    exe = app / ("Weightscope.exe" if sys.platform == "win32" else "Weightscope")
    assert exe.is_file()
    return exe


def run_frozen(exe: Path, args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run the built app offscreen with a fresh home, so settings and the statistics cache start empty."""
    home = tmp_path / "home"
    full_env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(home),
                "XDG_CACHE_HOME": str(home / "cache"), "XDG_CONFIG_HOME": str(home / "config"), **env}
    full_env.pop("WEIGHTSCOPE_CACHE_DIR", None)
    return subprocess.run([str(exe), *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)


@packaging
@pytest.mark.packaging
@pytest.mark.timeout(1800)
def test_frozen_app_screenshots_the_bundled_sample(frozen_app: Path, tmp_path: Path) -> None:
    shot = tmp_path / "out.png"
    out = run_frozen(frozen_app, ["--screenshot", str(shot), "--size", "800x600", "resources/samples/tiny-llama"],
                     tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    data = shot.read_bytes()
    assert len(data) > 10_000
    assert png_size(data) == (800, 600)


@packaging
@pytest.mark.packaging
@pytest.mark.timeout(1800)
def test_frozen_app_carries_its_resources(frozen_app: Path) -> None:
    bundle = frozen_app.parent / "_internal" / "resources"
    for size in ICON_SIZES:
        assert (bundle / "icons" / f"weightscope-{size}.png").is_file()
    for name in ("tiny-llama/model.safetensors", "tiny-llama/config.json", "tiny-llama.Q8_0.gguf", "tiny-llama.pt"):
        assert (bundle / "samples" / name).read_bytes() == (ROOT / "resources" / "samples" / name).read_bytes()
    assert not list(bundle.rglob("*.py"))  # the scripts that made them stay out


@packaging
@pytest.mark.packaging
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("sample", ["tiny-llama", "tiny-llama.Q8_0.gguf", "tiny-llama.pt"])
def test_frozen_app_reads_every_sample_format(frozen_app: Path, tmp_path: Path, sample: str) -> None:
    out = run_frozen(frozen_app, ["info", f"resources/samples/{sample}"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert PARAMETERS_LINE in out.stdout


@packaging
@pytest.mark.packaging
@pytest.mark.timeout(1800)
@pytest.mark.skipif(sys.platform != "linux", reason="LD_DEBUG is glibc's")
def test_frozen_app_starts_without_loading_torch(frozen_app: Path, tmp_path: Path) -> None:
    # The dynamic loader lists every library it maps: libtorch must not be among them before an analysis runs.
    refused = run_frozen(frozen_app, ["--screenshot", str(tmp_path / "x.png"), str(tmp_path / "missing")], tmp_path,
                         LD_DEBUG="files")
    assert refused.returncode == 2 and "error:" in refused.stderr
    assert "libQt6Widgets" in refused.stderr  # the probe sees libraries being loaded ...
    assert "libtorch" not in refused.stderr  # ... and torch is not one of them
    info = run_frozen(frozen_app, ["info", "resources/samples/tiny-llama"], tmp_path, LD_DEBUG="files")
    assert info.returncode == 0 and "libtorch" not in info.stderr
    # ... nor for statistics on the CPU, which count with the compiled loops (llvmlite, from inside the bundle) ...
    stats = run_frozen(frozen_app, ["stats", "--json", "--device", "cpu", "--no-cache", "resources/samples/tiny-llama"],
                       tmp_path, LD_DEBUG="files")
    assert stats.returncode == 0
    assert "compiled counting" in json.loads(stats.stdout.splitlines()[0])["device"]
    assert "libtorch" not in stats.stderr
    assert f"{frozen_app.parent}/_internal/llvmlite/" in stats.stderr
    # ... while the torch implementation does load it, from inside the bundle.
    torch_stats = run_frozen(frozen_app, ["stats", "--json", "--device", "cpu", "--impl", "torch", "--no-cache",
                                          "resources/samples/tiny-llama"], tmp_path, LD_DEBUG="files")
    assert torch_stats.returncode == 0, torch_stats.stdout[-2000:]
    assert f"{frozen_app.parent}/_internal/torch/lib/libtorch_cpu.so" in torch_stats.stderr


@packaging
@pytest.mark.packaging
@pytest.mark.timeout(1800)
def test_frozen_app_computes_the_same_statistics_with_torch(frozen_app: Path, tmp_path: Path) -> None:
    args = ["stats", "--json", "--device", "cpu", "--no-cache", "resources/samples/tiny-llama.Q8_0.gguf"]
    frozen = run_frozen(frozen_app, args, tmp_path)
    assert frozen.returncode == 0, frozen.stderr[-3000:]
    source = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert source.returncode == 0, source.stderr[-3000:]
    got, want = json.loads(frozen.stdout), json.loads(source.stdout)
    assert got["device"].startswith("cpu")
    for doc in (got, want):
        doc.pop("seconds", None)
    assert got == want


@packaging
@pytest.mark.packaging
@pytest.mark.timeout(1800)
@pytest.mark.skipif(sys.platform != "linux", reason="LD_DEBUG is glibc's; MKL comes from torch's Linux library")
def test_frozen_app_solves_spectra_with_the_bundled_mkl(frozen_app: Path, tmp_path: Path) -> None:
    """A matrix large enough for the fast eigensolver: the frozen app loads MKL from its own copy of torch's
    library and gives the metrics the source gives."""
    import numpy as np
    from safetensors.numpy import save_file

    matrix = tmp_path / "matrix.safetensors"
    shape = (1100, 1200)  # a Gram matrix of order 1100: from core.eigen.MKL_FROM on, MKL solves it
    save_file({"w": (np.random.default_rng(5).standard_normal(shape) * 0.02).astype(np.float32)}, str(matrix))
    args = ["spectra", "--json", "--no-cache", "--device", "cpu", str(matrix)]
    frozen = run_frozen(frozen_app, args, tmp_path, LD_DEBUG="files")
    assert frozen.returncode == 0, frozen.stderr[-3000:]
    assert f"{frozen_app.parent}/_internal/torch/lib/libtorch_cpu.so" in frozen.stderr
    source = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert source.returncode == 0, source.stderr[-3000:]
    got, want = json.loads(frozen.stdout), json.loads(source.stdout)
    for doc in (got, want):
        doc.pop("seconds", None)
    assert got["matrices"][0]["alpha"] == pytest.approx(want["matrices"][0]["alpha"], rel=1e-9)
    assert got["matrices"][0]["entropy"] == pytest.approx(want["matrices"][0]["entropy"], rel=1e-9)


BUNDLED_XCB = sorted(so for so, pkg in XCB_PLUGIN_LIBRARIES.items() if pkg.startswith(("libxcb-", "libxkbcommon")))


@packaging
@pytest.mark.packaging
@pytest.mark.timeout(1800)
@pytest.mark.skipif(sys.platform != "linux", reason="Qt's xcb plugin is Linux's")
def test_frozen_app_carries_the_xcb_libraries_beside_qt(frozen_app: Path) -> None:
    internal = frozen_app.parent / "_internal"
    for soname in BUNDLED_XCB:
        bundled = internal / "PySide6" / "Qt" / "lib" / soname
        assert bundled.is_file() and not bundled.is_symlink(), soname
        assert (internal / soname).resolve() == bundled.resolve()  # the bootloader's library path finds it too


@packaging
@pytest.mark.packaging
@pytest.mark.timeout(1800)
@pytest.mark.skipif(sys.platform != "linux", reason="Qt's xcb plugin is Linux's")
def test_frozen_app_starts_on_a_real_x_server_with_its_own_xcb_libraries(frozen_app: Path, tmp_path: Path) -> None:
    if not shutil.which("Xvfb"):
        if os.environ.get("WEIGHTSCOPE_X11") == "1":
            pytest.fail("WEIGHTSCOPE_X11=1 but Xvfb is not installed")
        pytest.skip("needs Xvfb (apt-get install -y xvfb xdotool)")
    with xvfb_display() as display:
        run = run_window([str(frozen_app), "--quit-after-shown", "1", "resources/samples/tiny-llama"], display,
                         tmp_path / "home", ROOT, LD_DEBUG="files")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.window_seen is not False, "no visible window named Weightscope appeared on the X server"
    # The dynamic loader names every library it initialises: the xcb helpers come from the bundle, never the
    # system, so the app starts on a Debian that lacks them.
    internal = frozen_app.parent / "_internal"
    qt_lib = internal / "PySide6" / "Qt" / "lib"
    loaded = set(re.findall(r"calling init: (\S+)", run.stderr))
    assert f"{qt_lib.parent}/plugins/platforms/libqxcb.so" in loaded  # the real xcb platform, not offscreen
    for soname in BUNDLED_XCB:
        [path] = [path for path in loaded if path.endswith("/" + soname)]
        assert path in (f"{qt_lib}/{soname}", f"{internal}/{soname}"), path
