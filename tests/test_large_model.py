"""Opening does not depend on size: a Llama-3.1-405B-shaped model of 191 sparse shards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.llama_shapes import LLAMA_31_405B, LLAMA_31_405B_PARAMETERS, write_sparse_sharded_model

REPO = Path(__file__).resolve().parents[1]


def test_405b_shaped_model_reports_exact_parameters(tmp_path: Path) -> None:
    folder = tmp_path / "llama-405b"
    shards = write_sparse_sharded_model(str(folder), LLAMA_31_405B, shards=191)
    assert len(shards) == 191
    proc = subprocess.run([sys.executable, "main.py", "info", "--json", str(folder)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["parameter_count"] == LLAMA_31_405B_PARAMETERS == 405_853_388_800
    assert info["file_bytes"] > 810e9
    assert info["architecture"]["layers"] == 126 and info["architecture"]["kv_heads"] == 8
    assert len(info["files"]) == 191
