"""Paths that are not plain readable files: FIFOs, sockets, devices, links, folders, denied permissions, deep JSON.

Each must give one clear line (CLI: `error: ...`, exit 2) without hanging; a FIFO opened the blocking way
would wait forever for a writer, so the CLI checks run under a timeout that turns a hang into a failure.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import CheckpointError, ReadError
from core.formats import MAX_JSON_DEPTH, json_depth, open_checkpoint, read_small_json
from core.io import FileReader, open_regular, read_head

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = array.astype(np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def write_index(folder: Path, weight_map: dict[str, str]) -> Path:
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def run_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, WEIGHTSCOPE_CACHE_DIR=str(cache), QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=str(cache.parent))


def assert_refused(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def refusal(path: Path | str) -> str:
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(str(path))
    reason = str(info.value)
    assert "\n" not in reason
    return reason


# --- FIFOs -----------------------------------------------------------------------------------------


def test_fifo_as_the_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    assert refusal(fifo).endswith("not a regular file (a FIFO)")
    for command in ("info", "stats"):
        assert_refused(run_cli(command, str(fifo), cache=tmp_path / "cache"), "not a regular file (a FIFO)")


def test_fifo_as_a_folders_weights_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.safetensors")
    assert "model.safetensors: not a regular file (a FIFO)" in refusal(tmp_path)


def test_fifo_as_the_index_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.safetensors.index.json")
    assert refusal(tmp_path).endswith("model.safetensors.index.json: not a regular file (a FIFO)")
    assert_refused(run_cli("info", str(tmp_path), cache=tmp_path / "cache"), "not a regular file (a FIFO)")


def test_fifo_as_a_shard_names_the_shard(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "a.safetensors", {"w": np.ones(2)})
    os.mkfifo(tmp_path / "b.safetensors")
    write_index(tmp_path, {"w": "a.safetensors", "v": "b.safetensors"})
    assert refusal(tmp_path).endswith("shard 'b.safetensors': not a regular file (a FIFO)")


def test_fifo_as_config_json_is_ignored_and_named(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {"w": np.arange(4)})
    os.mkfifo(tmp_path / "config.json")
    with open_checkpoint(str(tmp_path)) as checkpoint:
        assert [t.name for t in checkpoint.tensors] == ["w"]
        assert checkpoint.warnings == ["config.json ignored: not a regular file (a FIFO)"]
        assert "config.json" not in checkpoint.metadata
    result = run_cli("info", str(tmp_path), cache=tmp_path / "cache")
    assert result.returncode == 0 and result.stderr == ""
    assert "config.json ignored: not a regular file (a FIFO)" in result.stdout


def test_open_regular_returns_a_blocking_descriptor_for_a_file(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789")
    fd = open_regular(str(path))
    try:
        assert os.get_blocking(fd)
        assert os.pread(fd, 4, 3) == b"3456"
    finally:
        os.close(fd)
    assert read_head(str(path), 4) == (b"0123", 10)
    assert read_head(str(path), 64) == (b"0123456789", 10)


# --- other special files ---------------------------------------------------------------------------


def test_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        assert refusal(path).endswith("not a regular file (a socket)")


@pytest.mark.parametrize(("path", "reason"), [
    ("/dev/null", "not a regular file (a character device)"),
    ("/dev/zero", "not a regular file (a character device)"),
    ("/proc/self/status", "a system file under /proc or /sys, not a checkpoint"),
])
def test_devices_and_proc_files_are_refused(path: str, reason: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    assert refusal(path) == f"{path}: {reason}"


def test_symlink_loop_is_named(tmp_path: Path) -> None:
    os.symlink("b.safetensors", tmp_path / "a.safetensors")
    os.symlink("a.safetensors", tmp_path / "b.safetensors")
    assert refusal(tmp_path / "a.safetensors").endswith("a.safetensors: a symbolic link loop")


def test_dangling_symlink_shard_is_named(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone" / "x.safetensors", tmp_path / "a.safetensors")
    write_index(tmp_path, {"w": "a.safetensors"})
    assert refusal(tmp_path).endswith("shard 'a.safetensors': a dangling symbolic link")


def test_missing_shards_are_still_listed_as_missing(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "a.safetensors", {"w": np.ones(2)})
    write_index(tmp_path, {"w": "a.safetensors", "v": "b.safetensors"})
    assert refusal(tmp_path).endswith("1 of 2 shard(s) are missing: b.safetensors")


def test_folder_named_like_the_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").mkdir()
    assert refusal(tmp_path).endswith("model.safetensors: is a folder, not a file")
    assert "folder holds no checkpoint" in refusal(tmp_path / "model.safetensors")


def test_index_whose_shard_is_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").mkdir()
    write_index(tmp_path, {"w": "a.safetensors"})
    assert refusal(tmp_path).endswith("shard 'a.safetensors': is a folder, not a file")
    assert_refused(run_cli("stats", str(tmp_path), cache=tmp_path / "cache"), "is a folder, not a file")


def test_path_through_a_file_is_no_such_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"x")
    assert "no such file" in refusal(tmp_path / "plain" / "model.safetensors")


# --- permissions -----------------------------------------------------------------------------------


def _deny(monkeypatch: pytest.MonkeyPatch, denied: Path, function: str) -> None:
    """Simulate a file or folder we may not read (root ignores chmod): the named os call raises EACCES."""
    real = getattr(os, function)

    def guarded(path, *args, **kwargs):
        if os.fspath(path) == str(denied):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, function, guarded)


def test_unreadable_shard_is_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_safetensors(tmp_path / "a.safetensors", {"w": np.ones(2)})
    write_index(tmp_path, {"w": "a.safetensors"})
    _deny(monkeypatch, tmp_path / "a.safetensors", "open")
    assert refusal(tmp_path).endswith("shard 'a.safetensors': permission denied")


def test_unreadable_file_is_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_safetensors(tmp_path / "a.safetensors", {"w": np.ones(2)})
    _deny(monkeypatch, tmp_path / "a.safetensors", "open")
    assert refusal(tmp_path / "a.safetensors").endswith("a.safetensors: permission denied")


def test_unlistable_folder_is_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_safetensors(tmp_path / "a.safetensors", {"w": np.ones(2)})
    _deny(monkeypatch, tmp_path, "listdir")
    assert refusal(tmp_path).endswith("cannot list the folder: permission denied")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions")
def test_chmod_000_shard_and_folder_in_the_cli(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    write_safetensors(model / "a.safetensors", {"w": np.ones(2)})
    write_index(model, {"w": "a.safetensors"})
    os.chmod(model / "a.safetensors", 0)
    try:
        assert_refused(run_cli("info", str(model), cache=tmp_path / "cache"), "permission denied")
    finally:
        os.chmod(model / "a.safetensors", 0o644)
    os.chmod(model, 0)
    try:
        assert_refused(run_cli("info", str(model), cache=tmp_path / "cache"), "permission denied")
    finally:
        os.chmod(model, 0o755)


# --- deep JSON ---------------------------------------------------------------------------------------


def test_json_depth_counts_brackets_outside_strings() -> None:
    assert json_depth(b"{}") == 1
    assert json_depth(b'{"a": [{"b": []}]}') == 4
    assert json_depth(b'{"a": "[[[[{{{{ \\" [[[["}') == 1
    assert json_depth(b"17") == 0
    assert json_depth(b"[" * 500 + b"]" * 500) == 500


@pytest.mark.parametrize("depth", [500, 990])
def test_deep_index_is_refused_with_one_line(tmp_path: Path, depth: int) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(
        '{"weight_map": {}, "x": ' + "[" * depth + "]" * depth + "}")
    assert refusal(tmp_path).endswith(f"nested deeper than {MAX_JSON_DEPTH} levels ({depth + 1:,})")


def test_deep_config_is_ignored_and_named(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {"w": np.arange(4)})
    (tmp_path / "config.json").write_text('{"a": ' + '{"b": ' * 800 + "1" + "}" * 800 + "}")
    with open_checkpoint(str(tmp_path)) as checkpoint:
        assert checkpoint.warnings == [f"config.json ignored: nested deeper than {MAX_JSON_DEPTH} levels (801)"]
        assert checkpoint.read_tensor("w").tolist() == [0, 1, 2, 3]
    result = run_cli("info", str(tmp_path), cache=tmp_path / "cache")
    assert result.returncode == 0 and result.stderr == ""


def test_config_at_the_depth_limit_is_read(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {"w": np.arange(4)})
    nested = '{"a": ' * (MAX_JSON_DEPTH - 1) + "1" + "}" * (MAX_JSON_DEPTH - 1)
    (tmp_path / "config.json").write_text('{"model_type": "llama", "deep": ' + nested + "}")
    assert json_depth((tmp_path / "config.json").read_bytes()) == MAX_JSON_DEPTH
    with open_checkpoint(str(tmp_path)) as checkpoint:
        assert checkpoint.warnings == []
        assert checkpoint.metadata["config.json"]["model_type"] == "llama"


def test_read_small_json_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "config.json")
    with pytest.raises(ReadError, match=r"not a regular file \(a FIFO\)"):
        read_small_json(str(tmp_path / "config.json"), 1 << 20)


def test_file_reader_refuses_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x")
    with pytest.raises(ReadError, match=r"not a regular file \(a FIFO\)"):
        FileReader(str(tmp_path / "x"))


def test_fifo_as_a_split_gguf_part_is_named(tmp_path: Path) -> None:
    (tmp_path / "m-00001-of-00002.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0))
    os.mkfifo(tmp_path / "m-00002-of-00002.gguf")
    assert refusal(tmp_path / "m-00001-of-00002.gguf").endswith("m-00002-of-00002.gguf: not a regular file (a FIFO)")
