"""Memory stays bounded by the work, not by the file: thousands of empty tensors, and the heatmap of a long
vector (read tile by tile). Peak RSS is measured in a fresh subprocess (VmHWM and its children's ru_maxrss)."""

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
from safetensors.numpy import save_file

from core.formats import open_checkpoint
from core.heatmap import compute_heatmap, reduce_blocks

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("cache_dir")


def _peak_rss_mb(code: str, *args: str, cache: Path) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter (which runs any child) and return its peak RSS in MB and stdout.

    The interpreter's own peak is its VmHWM, not ru_maxrss: Linux carries the peak of the memory a process had
    before exec into ru_maxrss, and this interpreter is forked from pytest (hundreds of MB once torch is loaded),
    which read as a 690 MB peak for a command that used 50 MB."""
    runner = ("import resource, subprocess, sys\n"
              f"{code}\n"
              "own = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
              "usage = max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
              "print('PEAK', usage / 1024)\n")
    env = {**os.environ, "WEIGHTSCOPE_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", runner, *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out, _, peak = proc.stdout.rpartition("PEAK ")
    return float(peak), out


def _sparse_safetensors(path: Path, name: str, dtype: str, shape: list[int], itemsize: int) -> int:
    """A safetensors file whose data region is a hole (zeros): huge on paper, nothing on disk."""
    nbytes = int(np.prod(shape)) * itemsize
    header = json.dumps({name: {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
    os.truncate(path, 8 + len(header) + nbytes)
    return nbytes


def test_twenty_thousand_empty_tensors_stay_small(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "empty.safetensors"
    tensors = {f"t{i}": np.zeros((0, 4), np.float32 if i % 2 else np.float16) for i in range(20_000)}
    save_file(tensors, str(path))
    assert path.stat().st_size < 2_000_000
    start = time.perf_counter()
    peak, out = _peak_rss_mb("subprocess.run(sys.argv[1:], check=True)", sys.executable, str(REPO / "main.py"),
                             "stats", str(path), "--json", cache=cache_dir)
    seconds = time.perf_counter() - start
    data = json.loads(out)
    text = json.dumps(data)
    assert '"t19999"' in text and '"count": 0' in text
    assert peak < 600, f"peak RSS {peak:.0f} MB"
    assert seconds < 120, f"{seconds:.0f} s"


@pytest.mark.parametrize("mode", ["absmax", "mean"])
@pytest.mark.parametrize("shape", [(100_003,), (3, 40_001), (7, 5, 3001)])
def test_heatmap_by_tiles_equals_the_whole(tmp_path: Path, shape: tuple[int, ...], mode: str) -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=shape).astype(np.float32)
    path = tmp_path / "v.safetensors"
    save_file({"w": values}, str(path))
    with open_checkpoint(str(path)) as ck:
        small = list(compute_heatmap(ck, "w", mode, max_pixels=(64, 128), chunk_bytes=4096))
        whole = list(compute_heatmap(ck, "w", mode, max_pixels=(64, 128), chunk_bytes=1 << 30))
    assert len(small) > len(whole)  # really read in pieces
    matrix = values.reshape(shape[0], -1) if len(shape) > 1 else values.reshape(1, -1)
    hm = whole[-1]
    truth = reduce_blocks(matrix, hm.block_rows, hm.block_cols, mode)
    np.testing.assert_allclose(small[-1].values, truth, rtol=1e-6)
    np.testing.assert_allclose(hm.values, truth, rtol=1e-6)
    assert small[-1].rows_done == matrix.shape[0] and not np.isnan(small[-1].values).any()


def test_heatmap_of_a_long_vector_reads_bounded_chunks(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "long.safetensors"
    nbytes = _sparse_safetensors(path, "w", "F32", [50_000_000], 4)  # 200 MB of zeros, a hole on disk
    code = ("import numpy as np\n"
            "from core.formats import open_checkpoint\n"
            "from core.heatmap import compute_heatmap\n"
            "ck = open_checkpoint(sys.argv[1])\n"
            "gen = compute_heatmap(ck, 'w', 'absmax')\n"
            "while True:\n"
            "    try:\n"
            "        next(gen)\n"
            "    except StopIteration as stop:\n"
            "        hm = stop.value\n"
            "        break\n"
            "print(hm.values.shape, float(np.nanmax(hm.values)), int(np.isnan(hm.values).sum()))\n")
    peak, out = _peak_rss_mb(code, str(path), cache=cache_dir)
    assert out.strip() == "(1, 512) 0.0 0"
    baseline, _ = _peak_rss_mb("import numpy, core.formats, core.heatmap", cache=cache_dir)
    assert peak - baseline < nbytes / 2**20 / 2, f"peak {peak:.0f} MB, baseline {baseline:.0f} MB"
