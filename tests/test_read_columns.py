"""Column ranges of a row-major matrix read one row at a time equal the same columns sliced from whole rows, and a
file that shrinks under the reader is refused, never read past."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from core import checkpoint as checkpoint_module
from core.errors import ReadError
from core.formats import open_checkpoint
from core.io import FileReader
from tests.safetensors_files import write_safetensors


def test_runs_are_the_bytes_at_each_stride(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8)
    path = tmp_path / "bytes"
    path.write_bytes(data.tobytes())
    out = np.empty((37, 300), dtype=np.uint8)
    with FileReader(str(path)) as reader:
        reader.read_runs(1234, 2000, out)
        assert all(np.array_equal(out[i], data[1234 + i * 2000 : 1234 + i * 2000 + 300]) for i in range(37))
        reader.read_runs(5, 10, out[:0])  # nothing asked: nothing read
        last = np.empty((1, 100), dtype=np.uint8)
        reader.read_runs(100_000 - 100, 100, last)  # the file's very end
        assert np.array_equal(last[0], data[-100:])
        with pytest.raises(ReadError, match="shorter than expected"):
            reader.read_runs(100_000 - 99, 100, last)
        with pytest.raises(ReadError):
            reader.read_runs(0, 299, out)  # runs would overlap
        with pytest.raises(ReadError):
            reader.read_runs(-1, 2000, out)


def test_a_file_cut_short_after_opening_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bytes"
    path.write_bytes(bytes(range(256)) * 400)
    out = np.empty((40, 64), dtype=np.uint8)
    with FileReader(str(path)) as reader:
        os.truncate(path, 5000)
        with pytest.raises(ReadError, match="changed while open"):
            reader.read_runs(0, 2000, out)


@pytest.mark.parametrize(("dtype", "numpy_dtype"), [("BF16", np.uint16), ("F16", np.float16), ("F32", np.float32),
                                                    ("F64", np.float64), ("F8_E4M3", np.uint8)])
def test_columns_equal_slices_of_whole_rows(tmp_path: Path, dtype: str, numpy_dtype: type) -> None:
    rows, cols = 30, 12_000
    values = np.random.default_rng(1).integers(0, 120, (rows, cols)).astype(numpy_dtype)
    path = tmp_path / "m.safetensors"
    write_safetensors(path, [("pad", "F32", [3], b"\0" * 12), ("m", dtype, [rows, cols], values.tobytes())])
    with open_checkpoint(str(path)) as ck:
        t = ck.tensor("m")
        for lo, hi in [(0, 100), (11_000, 12_000), (5, 6), (0, 12_000), (300, 300)]:
            got = ck.read_raw_columns(t, 4 * cols, 20, cols, lo, hi)  # rows 4..23
            want = ck.read_raw(t, 4 * cols, 20 * cols).reshape(20, cols)[:, lo:hi]
            assert got.dtype == want.dtype and np.array_equal(got, want), (lo, hi)
            assert np.array_equal(got.view(numpy_dtype), values[4:24, lo:hi])
        with pytest.raises(ReadError, match="outside"):
            ck.read_raw_columns(t, 4 * cols, 27, cols, 0, 10)  # past the last row
        with pytest.raises(ReadError, match="column range"):
            ck.read_raw_columns(t, 0, 2, cols, 10, cols + 1)


def test_each_row_is_read_alone_only_where_it_skips_much(tmp_path: Path, monkeypatch) -> None:
    values = np.arange(8 * 40_000, dtype=np.float32).reshape(8, 40_000)
    path = tmp_path / "m.safetensors"
    write_safetensors(path, [("m", "F32", [8, 40_000], values.tobytes())])
    calls: list[str] = []
    runs, whole = FileReader.read_runs, FileReader.read_into
    with open_checkpoint(str(path)) as ck:
        t = ck.tensor("m")
        monkeypatch.setattr(FileReader, "read_runs", lambda self, *a: calls.append("runs") or runs(self, *a))
        monkeypatch.setattr(FileReader, "read_into", lambda self, *a: calls.append("whole") or whole(self, *a))
        skip = checkpoint_module.RUN_GAP_BYTES // 4  # float32 elements skipped per row at the threshold
        assert np.array_equal(ck.read_raw_columns(t, 0, 8, 40_000, 0, 40_000 - skip), values[:, : 40_000 - skip])
        assert np.array_equal(ck.read_raw_columns(t, 0, 8, 40_000, 0, 40_000 - skip + 1),
                              values[:, : 40_000 - skip + 1])
    assert calls == ["runs", "whole"]
