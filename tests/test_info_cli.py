"""`main.py info`: the JSON contract, the readable summary, and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def small_model(tmp_path: Path) -> Path:
    path = tmp_path / "m.safetensors"
    save_file({
        "model.embed_tokens.weight": np.zeros((100, 8), np.float32),
        "model.layers.0.self_attn.q_proj.weight": np.zeros((8, 8), np.float16),
        "model.layers.0.self_attn.q_proj.bias": np.zeros(8, np.float16),
        "model.layers.1.self_attn.q_proj.weight": np.zeros((8, 8), np.float16),
        "model.layers.1.self_attn.q_proj.bias": np.zeros(8, np.float16),
        "model.position_ids": np.arange(16, dtype=np.int64),
    }, str(path), metadata={"format": "pt"})
    return path


def test_json_contract(small_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["info", str(small_model), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "safetensors"
    assert out["files"] == [str(small_model)] and out["file_bytes"] == small_model.stat().st_size
    assert out["tensor_count"] == 6
    assert out["element_count"] == 800 + 64 + 8 + 64 + 8 + 16
    assert out["parameter_count"] == 800 + 64 + 8 + 64 + 8
    assert out["by_kind"] == {"weight": 128, "bias": 16, "embedding": 800, "buffer": 16}
    assert out["by_dtype"] == {"F32": 800, "F16": 144, "I64": 16}
    assert out["metadata"] == {"format": "pt"}
    q = next(t for t in out["tensors"] if t["name"] == "model.layers.0.self_attn.q_proj.weight")
    assert q == {**q, "shape": [8, 8], "dtype": "F16", "kind": "weight", "role": "attention.q", "elements": 64,
                 "bytes": 128, "file": str(small_model)}


def test_readable_summary(small_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["info", str(small_model)]) == 0
    out = capsys.readouterr().out
    assert "Parameters  944" in out
    assert "layers.0-1 (x2)" in out


def test_human_count_format_with_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.llama_shapes import write_sparse_safetensors

    path = tmp_path / "big.safetensors"
    write_sparse_safetensors(str(path), [("w", (22_713_216,))])
    assert main.main(["info", str(path)]) == 0
    assert "22.7 M (22,713,216)" in capsys.readouterr().out


def test_missing_path_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["info", str(tmp_path / "nope.safetensors")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize(("content", "needle"), [
    (b"", "empty"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n", "LFS"),
    (b"<!DOCTYPE html><html><body>Not found</body></html>", "HTML"),
    (b"lmgg" + b"\0" * 100, "GGML"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "PNG"),
    (b"just some text that is not a model at all", "not a recognised checkpoint"),
])
def test_refusals_name_what_the_file_is(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
                                        needle: str) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    assert main.main(["info", str(path)]) == 2
    assert needle in capsys.readouterr().err


def test_info_imports_neither_torch_nor_qt(small_model: Path) -> None:
    code = ("import sys, main; rc = main.main(['info', sys.argv[1]]); "
            "bad = [m for m in ('torch', 'PySide6', 'pyqtgraph') if m in sys.modules]; "
            "print('LOADED', bad); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(small_model)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


def test_core_never_imports_qt() -> None:
    offenders = []
    for path in (REPO / "core").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and any(
                    q in stripped.split()[1] for q in ("PySide6", "PyQt", "pyqtgraph", "gui")):
                offenders.append(f"{path.name}: {stripped}")
    assert offenders == []


def test_text_summary_shows_metadata_with_long_arrays_summarised(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.corpus import CORPUS

    assert main.main(["info", str(CORPUS / "good/gguf/ggml-vocab-phi-3.gguf")]) == 0
    out = capsys.readouterr().out
    assert "Tensors     0" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("tokenizer.ggml.tokens"))
    assert "array of 32,064" in line and len(line) < 160


def test_json_is_strict_even_when_metadata_holds_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "nan.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_float32("test.not_a_number", float("nan"))
    writer.add_float32("test.infinite", float("inf"))
    writer.add_tensor("blk.0.attn_q.weight", np.ones((4, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert main.main(["info", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    data = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["metadata"]["test.not_a_number"] == "NaN" and data["metadata"]["test.infinite"] == "Infinity"
