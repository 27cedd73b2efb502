"""Opening stays near-linear and within the open-file limit, whatever the index, header or shard count."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.errors import CheckpointError, MalformedFileError, ReadError
from core.formats import open_checkpoint
from core.formats.safetensors_format import read_header
from core.io import MAX_OPEN_READERS, ReaderPool

REPO = Path(__file__).resolve().parents[1]


def write_shards(folder: Path, count: int, length: int = 3) -> dict[str, float]:
    """``count`` one-tensor shards and their index; tensor i holds ``length`` values from i, i+0.5, i+0.25, i, ...
    (its mean back)."""
    weight_map: dict[str, str] = {}
    expected: dict[str, float] = {}
    for i in range(count):
        name, shard = f"model.layers.{i}.mlp.weight", f"model-{i:05d}-of-{count:05d}.safetensors"
        values = np.array([i, i + 0.5, i + 0.25] * (length // 3 + 1), dtype=np.float32)[:length]
        data = values.tobytes()
        header = json.dumps({name: {"dtype": "F32", "shape": [length], "data_offsets": [0, len(data)]}}).encode()
        (folder / shard).write_bytes(struct.pack("<Q", len(header)) + header + data)
        weight_map[name] = shard
        expected[name] = float(np.mean(values, dtype=np.float64))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return expected


def test_index_naming_60000_shards_is_checked_in_linear_time(tmp_path: Path) -> None:
    weight_map = {f"t{i}": f"s{i}.safetensors" for i in range(60_000)}
    weight_map.update({f"u{i}": f"s{i}.safetensors" for i in range(60_000)})  # each shard named twice
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    started = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(str(tmp_path))
    assert time.monotonic() - started < 10  # the quadratic membership test took minutes
    assert "60000 of 60000 shard(s) are missing: s0.safetensors, s1.safetensors, s2.safetensors ..." in str(info.value)


def test_pool_keeps_at_most_its_limit_open_and_reads_every_file(tmp_path: Path) -> None:
    paths = []
    for i in range(20):
        path = tmp_path / f"f{i}.bin"
        path.write_bytes(bytes([i]) * 16)
        paths.append(str(path))
    pool = ReaderPool(limit=4)
    for round_ in range(3):
        for i, path in enumerate(paths):
            assert pool.get(path).read(round_, 2) == bytes([i, i])
            assert pool.open_count() <= 4
    assert len(pool) == 20
    pool.close()
    assert pool.open_count() == 0


def test_released_reader_refuses_a_replaced_file(tmp_path: Path) -> None:
    first, other = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(b"a" * 32)
    other.write_bytes(b"b" * 32)
    pool = ReaderPool(limit=1)
    reader = pool.get(str(first))
    assert reader.read(0, 4) == b"aaaa"
    pool.get(str(other)).read(0, 4)  # releases the first file's descriptor
    assert not reader.is_open
    replacement = tmp_path / "new.bin"
    replacement.write_bytes(b"z" * 32)
    os.replace(replacement, first)  # same name and size, another inode
    with pytest.raises(ReadError, match="replaced or changed size"):
        pool.get(str(first)).read(0, 4)


def test_released_reader_reopens_the_same_file(tmp_path: Path) -> None:
    first, other = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(bytes(range(32)))
    other.write_bytes(b"b" * 32)
    pool = ReaderPool(limit=1)
    assert pool.get(str(first)).read(0, 2) == b"\x00\x01"
    pool.get(str(other)).read(0, 2)
    assert pool.get(str(first)).read(30, 2) == b"\x1e\x1f"
    assert pool.open_count() == 1


def test_sharded_model_reads_with_a_bounded_number_of_open_files(tmp_path: Path) -> None:
    count = 3 * MAX_OPEN_READERS
    expected = write_shards(tmp_path, count, length=600)  # 2.4 KB each: too large to be kept whole from opening
    with open_checkpoint(str(tmp_path)) as checkpoint:
        assert checkpoint._readers.open_count() == 0  # opening reads headers and closes each shard again
        assert len(checkpoint.tensors) == count
        for t in checkpoint.tensors:
            assert float(checkpoint.read(t).mean()) == pytest.approx(expected[t.name])
            assert checkpoint._readers.open_count() <= MAX_OPEN_READERS
        assert checkpoint._readers.open_count() == MAX_OPEN_READERS
    assert checkpoint._readers.open_count() == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
@pytest.mark.parametrize("command", ["info", "stats"])
def test_cli_reads_more_shards_than_the_open_file_limit(tmp_path: Path, command: str) -> None:
    import resource

    model = tmp_path / "model"
    model.mkdir()
    write_shards(model, 200)
    limit = 96  # below the 200 shards, above what the interpreter and the pool need

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    env = dict(os.environ, WEIGHTSCOPE_CACHE_DIR=str(tmp_path / "cache"), QT_QPA_PLATFORM="offscreen")
    result = subprocess.run([sys.executable, str(REPO / "main.py"), command, str(model), "--json"],
                            capture_output=True, text=True, timeout=300, env=env, preexec_fn=lower_limit)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    assert "Too many open files" not in result.stdout
    data = json.loads(result.stdout)
    assert len(data["files"] if command == "info" else data["tensors"]) == 200
    shards = [f"model-{i:05d}-of-00200.safetensors" for i in range(200)]
    assert sorted(os.listdir(model)) == sorted([*shards, "model.safetensors.index.json"])  # nothing written here


def write_zero_size_header(path: Path, count: int, duplicate: bool = False) -> None:
    entries = [f'"layers.{i}.w":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' for i in range(count)]
    if duplicate:
        entries.append(entries[count // 2])
    header = ("{" + ",".join(entries) + "}").encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def test_header_of_100000_zero_size_tensors_opens_quickly(tmp_path: Path) -> None:
    path = tmp_path / "many.safetensors"
    write_zero_size_header(path, 100_000)
    started = time.monotonic()
    tensors, metadata, size = read_header(str(path))
    assert time.monotonic() - started < 10
    assert len(tensors) == 100_000 and metadata == {} and size == path.stat().st_size
    assert tensors[65_432].name == "layers.65432.w" and tensors[65_432].shape == (0,)
    assert {t.offset for t in tensors} == {size}


def test_duplicate_key_in_a_large_header_is_still_named(tmp_path: Path) -> None:
    path = tmp_path / "dup.safetensors"
    write_zero_size_header(path, 10_000, duplicate=True)
    with pytest.raises(MalformedFileError, match=r"duplicate key 'layers\.5000\.w' in header"):
        read_header(str(path))
