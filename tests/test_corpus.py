"""Every shared corpus file: good ones open with the manifest's exact counts, bad ones are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import main
from core.formats import open_checkpoint
from tests.corpus import CORPUS, bad_files, truth

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("entry", truth(), ids=lambda e: e["file"])
def test_good_file_opens_with_manifest_counts(entry: dict) -> None:
    with open_checkpoint(str(CORPUS / entry["file"])) as checkpoint:
        assert len(checkpoint.tensors) == entry["tensors"]
        assert checkpoint.element_count == entry["elements"]
        assert sum(checkpoint.by_kind().values()) == entry["elements"]


@pytest.mark.parametrize("path", bad_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_bad_file_is_refused_with_one_line(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if path.name == "config.json" or (path.name.endswith(".safetensors") and path.parent.name == "lfs-sharded"):
        target = path.parent  # the sharded folder is the unit a user opens
    else:
        target = path
    status = main.main(["info", str(target)])
    err = capsys.readouterr().err
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) > 20


def test_lfs_sharded_index_names_lfs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["info", str(CORPUS / "malformed/lfs-sharded/model.safetensors.index.json")]) == 2
    err = capsys.readouterr().err
    assert "LFS" in err and "not downloaded" in err


@pytest.mark.parametrize("name", ["silero_vad-torchscript.jit", "whisper-legacy-ggml-tiny.bin"])
def test_unsupported_names_the_format(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["info", str(CORPUS / "unsupported" / name)]) == 2
    err = capsys.readouterr().err
    assert ("TorchScript" in err) if name.endswith(".jit") else ("GGML" in err)


def test_cli_exit_status_and_no_traceback_in_a_real_process() -> None:
    hostile = CORPUS / "hostile" / "picklescan-malicious0.pkl"
    proc = subprocess.run([sys.executable, "main.py", "info", str(hostile)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_modelaudit_metadata_is_kept_as_inert_text() -> None:
    with open_checkpoint(str(CORPUS / "good/safetensors/modelaudit-script_injection.safetensors")) as checkpoint:
        assert checkpoint.metadata["html_description"] == "<script>alert('XSS')</script>"
        assert checkpoint.metadata["model_type"] == "transformer"


def test_protocol0_pickle_starting_with_a_string_opcode_names_the_call(capsys: pytest.CaptureFixture[str]) -> None:
    """Detection by content: a text pickle that starts with `V` is still a pickle, and its payload is named."""
    assert main.main(["info", str(CORPUS / "hostile" / "picklescan-malicious-invalid-bytes.pkl")]) == 2
    err = capsys.readouterr().err
    assert "os.system" in err and "run code" in err
