"""`main.py report A --memory-compare B C`: a side-by-side memory page in the PDF, as a reader finds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pypdf

from tests.conftest import write_llama

REPO = Path(__file__).resolve().parents[1]


def report(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "WEIGHTSCOPE_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "main.py", "report", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_report_gains_a_side_by_side_page(tmp_path):
    path, tensors = write_llama(tmp_path / "tiny", layers=2)
    out = tmp_path / "with.pdf"
    proc = report(str(path), "-o", str(out), "--memory-compare", "llama-3.1-8b", "llama-3.1-70b",
                  "--memory-context", "4096", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pages = [" ".join(p.extract_text().split()) for p in pypdf.PdfReader(str(out)).pages]
    page = next(p for p in pages if "Memory side by side" in p)
    own = sum(a.size for a in tensors.values())
    for figure in (f"{own:,}", "8,030,261,248", "70,553,706,496", "Llama 3.1 8B", "Llama 3.1 70B", "at 4,096 tokens"):
        assert figure in page, figure
    assert "128 KiB" in page and "320 KiB" in page  # KV per token of the 8B and the 70B in bf16
    without = tmp_path / "without.pdf"
    assert report(str(path), "-o", str(without), tmp_path=tmp_path).returncode == 0
    assert not any("Memory side by side" in p.extract_text() for p in pypdf.PdfReader(str(without)).pages)


def test_a_bad_comparison_is_one_line_and_writes_nothing(tmp_path):
    path, _ = write_llama(tmp_path / "tiny", layers=2)
    for extra in (["llama-9"], ["llama-3.1-8b", "--memory-context", "-5"], ["llama-3.1-8b", "--memory-context", "x"]):
        out = tmp_path / "bad.pdf"
        proc = report(str(path), "-o", str(out), "--memory-compare", *extra, tmp_path=tmp_path)
        assert proc.returncode == 2, (extra, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (extra, lines)
        assert not out.exists()
