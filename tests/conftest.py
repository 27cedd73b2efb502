"""Shared test setup: Qt offscreen and isolated from the user's settings and caches; GUI fixtures.

The environment is fixed here, before any test module imports Qt, so GUI
tests never open a real window or touch the user's QSettings or stats cache.
After every test that used Qt, a fixture fails the test if a window is still
visible or a worker is still running.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ.setdefault("WEIGHTSCOPE_CACHE_DIR", tempfile.mkdtemp(prefix="weightscope-test-cache-"))
os.environ.setdefault("WEIGHTSCOPE_LOG_DIR", tempfile.mkdtemp(prefix="weightscope-test-logs-"))

from PySide6.QtCore import QSettings, QStandardPaths

QStandardPaths.setTestModeEnabled(True)  # standard paths go under ~/.qttest, never the user's
SETTINGS_DIR = tempfile.mkdtemp(prefix="weightscope-test-settings-")
for _format in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):  # and QSettings private to this run,
    QSettings.setPath(_format, QSettings.Scope.UserScope, SETTINGS_DIR)  # so parallel test runs never collide


@pytest.fixture(autouse=True)
def cache_tiny_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests write kilobyte models; the cache skips data files under MIN_CACHED_BYTES, so in-process tests
    cache every file (tests/test_stats_cache_trust.py checks the default threshold itself)."""
    import core.stats_cache

    monkeypatch.setattr(core.stats_cache, "MIN_CACHED_BYTES", 0)


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Every Checkpoint.read_raw call, by tensor name (all reads of values go through it)."""
    calls: list[str] = []
    from core.checkpoint import Checkpoint

    original = Checkpoint.read_raw

    def counting(self, tensor, *args, **kwargs):
        calls.append(tensor if isinstance(tensor, str) else tensor.name)
        return original(self, tensor, *args, **kwargs)

    monkeypatch.setattr(Checkpoint, "read_raw", counting)
    return calls


@pytest.fixture(scope="session")
def qapp_cls():
    """pytest-qt's qapp is our application class (FileOpen queueing, org/app names, style)."""
    from gui.app import WeightscopeApp

    return WeightscopeApp


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """Fail a test that leaves a visible window or a running worker behind (napari's idea)."""
    yield
    if "PySide6.QtWidgets" not in sys.modules:
        return
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return
    problems = []
    workers = sys.modules.get("gui.workers")
    if workers is not None:
        running = [w.name for w in workers.active_workers()]
        if not workers.pool().waitForDone(5000):
            problems.append(f"pool jobs still running after 5 s: {running}")
        elif running:
            for w in workers.active_workers():
                w.quit()
    windows = [w for w in QApplication.topLevelWidgets() if w.isVisible()]
    for w in windows:
        w.close()
    if windows:
        problems.append(f"windows left open: {[type(w).__name__ + ':' + w.objectName() for w in windows]}")
    app.processEvents()
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def settings():
    """A clean QSettings store (test mode) for this test."""
    from PySide6.QtCore import QSettings

    QSettings().clear()
    yield QSettings()
    QSettings().clear()


# --------------------------------------------------------------------------- models written by the tests
LAYERS = 4
HIDDEN = 64
INTER = 176
VOCAB = 300
ROLE_MODULES = [
    ("self_attn.q_proj", "attention.q", (HIDDEN, HIDDEN)),
    ("self_attn.k_proj", "attention.k", (HIDDEN // 2, HIDDEN)),
    ("self_attn.v_proj", "attention.v", (HIDDEN // 2, HIDDEN)),
    ("self_attn.o_proj", "attention.o", (HIDDEN, HIDDEN)),
    ("mlp.gate_proj", "mlp.gate", (INTER, HIDDEN)),
    ("mlp.up_proj", "mlp.up", (INTER, HIDDEN)),
    ("mlp.down_proj", "mlp.down", (HIDDEN, INTER)),
]


def llama_tensors(layers: int = LAYERS, seed: int = 0, scale: int = 1) -> dict[str, np.ndarray]:
    """Llama-style names and shapes with random float32 values (a spike in layer 2's down_proj)."""
    rng = np.random.default_rng(seed)
    h, vocab = HIDDEN * scale, VOCAB * scale
    out = {"model.embed_tokens.weight": (rng.standard_normal((vocab, h)) * 0.02).astype(np.float32)}
    for i in range(layers):
        p = f"model.layers.{i}"
        for module, _, shape in ROLE_MODULES:
            shape = tuple(d * scale for d in shape)
            out[f"{p}.{module}.weight"] = (rng.standard_normal(shape) * 0.02 * (1 + 0.25 * i)).astype(np.float32)
        out[f"{p}.input_layernorm.weight"] = (1 + 0.05 * rng.standard_normal(h)).astype(np.float32)
        out[f"{p}.post_attention_layernorm.weight"] = np.ones(h, dtype=np.float32)
    if layers > 2:
        out["model.layers.2.mlp.down_proj.weight"][3, 5] = 1.5
    out["model.norm.weight"] = np.ones(h, dtype=np.float32)
    out["lm_head.weight"] = (rng.standard_normal((vocab, h)) * 0.02).astype(np.float32)
    return out


def write_llama(folder: Path, layers: int = LAYERS, seed: int = 0, scale: int = 1,
                name: str = "model.safetensors") -> tuple[Path, dict[str, np.ndarray]]:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = llama_tensors(layers, seed, scale)
    path = folder / name
    save_file(tensors, str(path))
    return path, tensors


@pytest.fixture
def tiny_llama(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A 4-layer Llama-like safetensors file this test wrote, and its values."""
    return write_llama(tmp_path / "tiny-llama")


# --------------------------------------------------------------------------- the window
@pytest.fixture
def dialogs(monkeypatch) -> list[dict]:
    """Message boxes record what they would have said instead of blocking the test."""
    from PySide6.QtWidgets import QMessageBox

    shown: list[dict] = []

    def fake_exec(box: QMessageBox) -> int:
        shown.append({"title": box.windowTitle(), "text": box.text(), "details": box.detailedText(),
                      "informative": box.informativeText(), "format": box.textFormat()})
        return int(QMessageBox.StandardButton.Ok)

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    return shown


@pytest.fixture
def make_window(qtbot, settings, dialogs) -> Callable:
    """A shown MainWindow that is closed (jobs cancelled) when the test ends."""

    def make(**kwargs):
        from gui.main_window import MainWindow

        window = MainWindow(**kwargs)
        qtbot.addWidget(window)
        window.show()
        return window

    return make


@pytest.fixture
def open_model(qtbot) -> Callable:
    """Open a path in a window and wait until it is open and idle (analysis done); returns the tab."""

    def open_(window, path, idle: bool = True, timeout: int = 30000):
        window.open_paths([str(path)])
        qtbot.waitUntil(lambda: window.view_for_path(str(path)) is not None, timeout=timeout)
        view = window.view_for_path(str(path))
        if idle:
            qtbot.waitUntil(window.is_idle, timeout=timeout)
        return view

    return open_


def cached_models(tmp_path: Path, count: int = 3) -> list[Path]:
    """``count`` small models, each analysed once so that the cache holds one entry per model."""
    from safetensors.numpy import save_file

    from core.stats import run

    paths = []
    for i in range(count):
        path = tmp_path / f"m{i}.safetensors"
        save_file({"w": np.arange(1000, dtype=np.float32) * i}, str(path))
        run(path)
        paths.append(path)
    return paths


@pytest.fixture
def cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A statistics cache of this test's own, so cache hits and misses are the test's doing."""
    path = tmp_path_factory.mktemp("stats-cache")
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(path))
    return path
