"""File text cannot drive the terminal: names, metadata and reasons reach stdout/stderr escaped and bounded."""

from __future__ import annotations

import io
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import main
from core.text import bounded_json, terminal_safe

HOSTILE = ["\x1b[2J", "\r", "\x00", "\u202e", "\u2066", "\u200f", "\u061c", "\x9b", "\x7f", "\n", "\u2028"]


def _raw_controls(text: str) -> list[str]:
    """Characters a terminal would act on instead of showing (newline between lines excepted)."""
    return [repr(c) for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")]


def test_terminal_safe_escapes_visibly_and_keeps_ordinary_text() -> None:
    assert terminal_safe("model.layers.0.self_attn.q_proj.weight") == "model.layers.0.self_attn.q_proj.weight"
    assert terminal_safe("Größe 日本語 ✓") == "Größe 日本語 ✓"
    assert terminal_safe("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert terminal_safe("x\ry\nz\t\x00") == "x\\ry\\nz\\t\\x00"
    assert terminal_safe("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert terminal_safe("\u2066\u2069\u200e\u200f\u061c\x9b\x7f") == "\\u2066\\u2069\\u200e\\u200f\\u061c\\x9b\\x7f"
    assert terminal_safe("\ud800") == "\\ud800"  # a lone surrogate would not even encode
    assert terminal_safe(12) == "12"


def test_terminal_safe_bounds_a_4_mb_line() -> None:
    text = "A" * (4 << 20)
    out = terminal_safe(text, limit=100)
    assert out == "A" * 100 + f"... ({(4 << 20) - 100:,} more characters)"
    escaped = terminal_safe("\x1b" * 1000, limit=40)  # escapes count toward the limit, never split
    assert escaped == "\\x1b" * 10 + "... (990 more characters)"


def test_bounded_json_is_total() -> None:
    deep: object = "leaf"
    for _ in range(500):
        deep = {"d": [deep]}
    big = {"s": "x" * 100_000, "n": list(range(5000)), "deep": deep, "nan": float("nan"), "obj": object()}
    out = bounded_json(big, max_string=1000, max_items=100, max_depth=8)
    text = json.dumps(out, allow_nan=False)
    assert len(text) < 20_000
    assert out["s"] == "x" * 1000 + "... (99,000 more characters)"
    assert out["n"][:100] == list(range(100)) and out["n"][100] == "... (4,900 more items)"
    assert out["nan"] == "NaN"


@pytest.fixture
def hostile_model(tmp_path: Path) -> tuple[Path, list[str]]:
    names = [f"layers.{i}.w{s}eight" for i, s in enumerate(HOSTILE)]
    path = tmp_path / "hostile.safetensors"
    save_file({n: np.full((2, 3), -0.5, np.float32) for n in names}, str(path),
              metadata={"title\x1b]0;pwned\x07": "clear\x1b[2J\x1b[H screen\r\x00\u202eexe.txt",
                        "model_type": "M" * (4 << 20)})
    return path, names


def test_info_text_escapes_names_and_metadata(hostile_model: tuple[Path, list[str]],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = hostile_model
    assert main.main(["info", str(path), "--depth", "4"]) == 0
    out = capsys.readouterr().out
    assert _raw_controls(out) == []
    assert "title\\x1b]0;pwned\\x07" in out
    assert "clear\\x1b[2J\\x1b[H screen\\r\\x00\\u202eexe.txt" in out
    assert "w\\x1b[2Jeight" in out and "w\\u202eeight" in out
    assert max(len(line) for line in out.splitlines()) < 300  # the 4 MB value is cut


def test_info_json_stays_exact_but_bounds_display_strings(hostile_model: tuple[Path, list[str]],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path, names = hostile_model
    assert main.main(["info", str(path), "--json"]) == 0
    raw = capsys.readouterr().out
    assert _raw_controls(raw) == [] and raw.isascii()
    doc = json.loads(raw)
    assert sorted(t["name"] for t in doc["tensors"]) == sorted(names)  # identifiers exact
    assert doc["metadata"]["title\x1b]0;pwned\x07"] == "clear\x1b[2J\x1b[H screen\r\x00\u202eexe.txt"
    model_type = doc["metadata"]["model_type"]
    assert model_type.startswith("M" * 65536) and model_type.endswith(f"({(4 << 20) - 65536:,} more characters)")


def test_stats_text_escapes_names(hostile_model: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    path, names = hostile_model
    assert main.main(["stats", str(path), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert _raw_controls(out) == []
    assert "w\\x1b[2Jeight" in out and "-0.5" in out
    assert main.main(["stats", str(path), "--no-cache", "--json"]) == 0
    raw = capsys.readouterr().out
    assert _raw_controls(raw) == []
    assert sorted(t["name"] for t in json.loads(raw)["tensors"]) == sorted(names)


def test_error_lines_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no\x1b[2Jsuch\u202e.safetensors"
    assert main.main(["info", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert _raw_controls(err) == []
    bad = tmp_path / "bad.safetensors"
    header = json.dumps({"w\x1b[31m": {"dtype": "F\x1b[2J32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    bad.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    assert main.main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and _raw_controls(err) == []


def test_fail_escapes_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    from core.commands.common import fail

    assert fail("tensor 'a\x1b[2Jb\u202e' is broken\r\nreally") == 2
    assert capsys.readouterr().err == "error: tensor 'a\\x1b[2Jb\\u202e' is broken really\n"


def test_progress_line_escapes_the_tensor_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.commands import common

    stream = io.StringIO()
    monkeypatch.setattr(common.sys, "stderr", stream)
    progress = common.TerminalProgress()
    progress.show(5, 10, "layer\x1b[2J\u202e" + "x" * 500)
    progress.clear()
    written = stream.getvalue()
    assert "layer\\x1b[2J\\u202e" in written
    assert [c for c in written if c != "\r" and unicodedata.category(c) in ("Cc", "Cf")] == []
    assert max(len(part) for part in written.split("\r")) < progress.columns
