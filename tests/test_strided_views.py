"""Strided and expanded PyTorch views are read in bounded blocks: exact values against torch, stats of a 100M-element
expanded view in bounded memory, and a 2-element view over a 1 TB sparse storage that reads only its 2 elements."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from core.formats import open_checkpoint

REPO = Path(__file__).resolve().parents[1]
MAGIC = 0x1950A86A20F9469CFC6C


def views() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    base = torch.randn(4096, generator=g)
    cube = base[:2 * 8 * 16].view(2, 8, 16)
    return {
        "stepped": base[5:4000:7],
        "transposed": base[:64 * 48].view(64, 48).t(),
        "permuted": cube.permute(2, 0, 1),
        "column": base[:64 * 48].view(64, 48)[:, 5],
        "expanded": base[:3].expand(500, 3),
        "expanded_middle": base[:16].view(4, 1, 4).expand(4, 100, 4),
        "base": base,
    }


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_views_read_exactly_by_any_element_range(tmp_path: Path, legacy: bool) -> None:
    tensors = views()
    path = tmp_path / "views.pt"
    torch.save(tensors, str(path), _use_new_zipfile_serialization=not legacy)
    rng = np.random.default_rng(0)
    with open_checkpoint(str(path)) as ck:
        for name, original in tensors.items():
            truth = original.contiguous().numpy().reshape(-1)
            np.testing.assert_array_equal(ck.read(name), truth)
            for _ in range(5):
                start = int(rng.integers(0, truth.size))
                count = int(rng.integers(0, truth.size - start + 1))
                np.testing.assert_array_equal(ck.read(name, start, count), truth[start : start + count])
            chunks = list(ck.iter_chunks(name, chunk_bytes=52, reuse=False))
            np.testing.assert_array_equal(np.concatenate(chunks), truth)


STATS_WITH_RSS = """
import json, resource, subprocess, sys
proc = subprocess.run([sys.executable, "main.py", "stats", sys.argv[1], "--json"], capture_output=True, text=True)
print(json.dumps({"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr,
                  "rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def test_expanded_view_of_100m_elements_gets_exact_stats_in_bounded_memory(tmp_path: Path) -> None:
    base = torch.tensor([1.5, -2.0, 3.25, 0.5])
    path = tmp_path / "expanded.pt"
    torch.save({"e": base.expand(25_000_000, 4)}, str(path))
    assert path.stat().st_size < 4096
    run = subprocess.run([sys.executable, "-c", STATS_WITH_RSS, str(path)], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    result = json.loads(run.stdout)
    assert result["rc"] == 0, result["err"]
    assert result["rss_kb"] < 1024 * 1024  # under 1 GB, though the view is 400 MB as float32
    stats = json.loads(result["out"])["tensors"][0]
    values = base.numpy().astype(np.float64)  # every value appears 25M times: the stats are those of the 4
    assert stats["count"] == 100_000_000
    assert stats["min"] == -2.0 and stats["max"] == 3.25
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-9)
    assert stats["std"] == pytest.approx(values.std(), rel=1e-6)


def legacy_file(path: Path, numel: int, size: tuple, stride: tuple) -> int:
    """A legacy torch.save file holding one float32 view of a storage of ``numel`` elements, written sparse.

    Returns the file offset of the storage's first element."""

    class Storage:
        pass

    class View:
        def __reduce__(self) -> tuple:
            return torch._utils._rebuild_tensor_v2, (Storage(), 0, size, stride, False, OrderedDict())

    def pickled(obj: object, persistent: bool = False) -> bytes:
        import io

        buf = io.BytesIO()
        pickler = pickle.Pickler(buf, protocol=2)
        if persistent:
            pickler.persistent_id = lambda o: (  # type: ignore[method-assign]
                ("storage", torch.FloatStorage, "0", "cpu", numel, None) if isinstance(o, Storage) else None)
        pickler.dump(obj)
        return buf.getvalue()

    head = (pickled(MAGIC) + pickled(1001) + pickled({"protocol_version": 1001, "little_endian": True,
                                                       "type_sizes": {"int": 4}})
            + pickled({"sparse": View()}, persistent=True) + pickled(["0"]) + struct.pack("<q", numel))
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + numel * 4)
    return len(head)


def test_two_element_view_over_a_terabyte_sparse_storage_reads_two_elements(tmp_path: Path) -> None:
    numel = 1 << 38  # 1 TiB of float32, stored as a hole
    path = tmp_path / "sparse.pt"
    data_at = legacy_file(path, numel, (2,), (numel - 1,))
    with open(path, "r+b") as f:
        f.seek(data_at)
        f.write(struct.pack("<f", 2.5))
        f.seek(data_at + (numel - 1) * 4)
        f.write(struct.pack("<f", -7.0))
    assert path.stat().st_blocks * 512 < 1 << 20  # sparse on disk
    start = time.perf_counter()
    with open_checkpoint(str(path)) as ck:
        assert ck.tensor("sparse").elements == 2
        assert ck.read_tensor("sparse").tolist() == [2.5, -7.0]
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(("count", "stride"), [
    (1024, 1 << 20),  # a 4 GiB sparse storage, every 2**20th element: one read per element
    (8192, 1000),  # 32 MB span of near elements: read in a few bounded windows
])
def test_widely_strided_view_reads_only_the_elements_it_shows(tmp_path: Path, count: int, stride: int) -> None:
    numel = count * stride
    path = tmp_path / "wide.pt"
    data_at = legacy_file(path, numel, (count,), (stride,))
    expected = np.arange(count, dtype=np.float32) * 0.5 - 100
    with open(path, "r+b") as f:
        for i, value in enumerate(expected):
            f.seek(data_at + i * stride * 4)
            f.write(value.tobytes())
    with open_checkpoint(str(path)) as ck:
        np.testing.assert_array_equal(ck.read_tensor("sparse"), expected)
        np.testing.assert_array_equal(ck.read("sparse", 1000, 20), expected[1000:1020])
