"""The window gets ready for the first open before it shows: readers imported on the UI thread (so a worker
never holds the import lock the UI thread waits on) and a short GIL switch interval (so Python in workers hands
the GIL back every millisecond)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import gui.main_window
readers = ("core.formats.safetensors_format", "core.formats.gguf_format", "core.formats.pytorch_format")
assert not any(m in sys.modules for m in readers), [m for m in readers if m in sys.modules]
assert sys.getswitchinterval() == 0.005
from gui.app import GIL_SWITCH_SECONDS, get_app
app = get_app([])
assert sys.getswitchinterval() == GIL_SWITCH_SECONDS < 0.005
window = gui.main_window.MainWindow(interactive=False)
assert all(m in sys.modules for m in readers)
window.close()
print("ok")
"""


def test_readers_are_imported_and_the_gil_interval_shortened_before_the_window_shows() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
