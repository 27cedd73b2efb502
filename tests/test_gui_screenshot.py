"""``main.py --screenshot``: a real process renders the window offscreen to a PNG of the asked size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from tests.conftest import write_llama
from tests.corpus import CORPUS

REPO = Path(__file__).resolve().parents[1]


def run_main(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "WEIGHTSCOPE_CACHE_DIR": str(tmp_path / "cache"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "main.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.mark.slow
def test_screenshot_of_a_selected_tensor(tmp_path):
    path, _ = write_llama(tmp_path / "m", layers=2)
    out = tmp_path / "shot.png"
    proc = run_main("--screenshot", str(out), "--select", "model.layers.1.mlp.down_proj.weight", "--size", "900x600",
                    str(path), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    image = QImage(str(out))
    assert (image.width(), image.height()) == (900, 600)
    colours = {image.pixelColor(x, y).name() for x in range(0, 900, 30) for y in range(0, 600, 30)}
    assert len(colours) > 5  # a drawn window, not a blank image


@pytest.mark.slow
def test_screenshot_of_a_refused_file_exits_2(tmp_path):
    out = tmp_path / "shot.png"
    proc = run_main("--screenshot", str(out), str(CORPUS / "hostile" / "picklescan-malicious0.pkl"),
                    tmp_path=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not out.exists()


def test_bad_size_is_a_usage_error(tmp_path):
    proc = run_main("--screenshot", str(tmp_path / "x.png"), "--size", "big", tmp_path=tmp_path)
    assert proc.returncode == 2 and "--size" in proc.stderr
