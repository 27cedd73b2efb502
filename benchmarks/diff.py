"""Throughput of comparing two bf16 checkpoints (`core.diff.run`), against plainly reading the same two files.

1. Writes two bf16 safetensors files of about ``--gb`` GB each (default 1; ``--quick``: 0.25) with a small
   llama-like layout (2048 x 2048 attention, 5632 x 2048 gate/up, 2048 x 5632 down): B is A plus a planted
   rank-8 update on every seventh tensor. Both are written tensor by tensor, block by block (never a whole
   file in memory), in a temporary folder that is deleted afterwards.
2. Measures, in this one process, with the page cache warm: a plain read of both files into one reused
   64 MiB buffer; our comparison (no cache); and with ``--rank`` (Gram of every difference, on ``--device``).
   Prints seconds, GB/s (bytes of both files per second) and the ratio ours / read, and checks the planted
   tensors' rank90.

Figures are printed, not asserted. On a shared machine they are noisy: quote them from an idle one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HIDDEN, FFN = 2048, 5632
PLANTED_RANK, PLANT_EVERY = 8, 7
ROWS_PER_STEP = 256
GB = 1e9


def layout(total_bytes: float) -> list[tuple[str, tuple[int, int]]]:
    """Whole llama-like layers until ``total_bytes`` of bf16 (at least one layer)."""
    per_layer = [("self_attn.q_proj", (HIDDEN, HIDDEN)), ("self_attn.k_proj", (HIDDEN, HIDDEN)),
                 ("self_attn.v_proj", (HIDDEN, HIDDEN)), ("self_attn.o_proj", (HIDDEN, HIDDEN)),
                 ("mlp.gate_proj", (FFN, HIDDEN)), ("mlp.up_proj", (FFN, HIDDEN)), ("mlp.down_proj", (HIDDEN, FFN))]
    layer_bytes = sum(r * c * 2 for _, (r, c) in per_layer)
    layers = max(1, round(total_bytes / layer_bytes))
    return [(f"model.layers.{i}.{name}.weight", shape) for i in range(layers) for name, shape in per_layer]


def header(tensors: list[tuple[str, tuple[int, int]]]) -> bytes:
    meta, offset = {}, 0
    for name, (rows, cols) in tensors:
        nbytes = rows * cols * 2
        meta[name] = {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(meta).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def to_bf16(x: np.ndarray) -> bytes:
    bits = x.astype(np.float32).view(np.uint32)
    bits += 0x7FFF + ((bits >> 16) & 1)  # round to nearest even
    return (bits >> 16).astype(np.uint16).tobytes()


def write_pair(folder: Path, total_bytes: float) -> tuple[Path, Path, list[str]]:
    """A and B = A + a rank-8 update on every seventh tensor, written side by side a row block at a time."""
    tensors = layout(total_bytes)
    head = header(tensors)
    rng = np.random.default_rng(0)
    planted = []
    pa, pb = folder / "a.safetensors", folder / "b.safetensors"
    with open(pa, "wb") as fa, open(pb, "wb") as fb:
        fa.write(head)
        fb.write(head)
        for i, (name, (rows, cols)) in enumerate(tensors):
            plant = i % PLANT_EVERY == 3
            if plant:
                planted.append(name)
                u = rng.standard_normal((rows, PLANTED_RANK), dtype=np.float32) * np.float32(0.01)
                v = rng.standard_normal((PLANTED_RANK, cols), dtype=np.float32)
            for r in range(0, rows, ROWS_PER_STEP):
                a = rng.standard_normal((min(ROWS_PER_STEP, rows - r), cols), dtype=np.float32) * np.float32(0.02)
                block = to_bf16(a)
                fa.write(block)
                fb.write(to_bf16(a + u[r:r + ROWS_PER_STEP] @ v) if plant else block)
    return pa, pb, planted


def read_seconds(paths: list[Path]) -> tuple[float, int]:
    """A plain read of the files into one reused 64 MiB buffer."""
    from core.io import FileReader

    buf = np.empty(64 << 20, dtype=np.uint8)
    total, start = 0, time.perf_counter()
    for path in paths:
        with FileReader(str(path)) as reader:
            for offset in range(0, reader.size, len(buf)):
                view = buf[:min(len(buf), reader.size - offset)]
                reader.read_into(offset, view)
                total += len(view)
    return time.perf_counter() - start, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of each bf16 file in GB (default 1)")
    parser.add_argument("--quick", action="store_true", help="0.25 GB files")
    parser.add_argument("--device", default="auto", help="device of the --rank run (default auto)")
    parser.add_argument("--no-rank", action="store_true", help="skip the --rank run")
    parser.add_argument("--dir", default=None, help="where to write the files (default: a temporary folder)")
    args = parser.parse_args(argv)
    from core.diff import metrics, run

    size = 0.25 if args.quick else args.gb
    folder = Path(tempfile.mkdtemp(prefix="weightscope-diff-bench-", dir=args.dir))
    try:
        start = time.perf_counter()
        pa, pb, planted = write_pair(folder, size * GB)
        print(f"wrote 2 x {pa.stat().st_size / GB:.2f} GB bf16 in {time.perf_counter() - start:.1f} s "
              f"({len(planted)} tensors with a planted rank-{PLANTED_RANK} update)")
        read_seconds([pa, pb])  # warm the page cache
        read_s, nbytes = min(read_seconds([pa, pb]) for _ in range(2))
        print(f"plain read     {read_s:7.2f} s  {nbytes / read_s / GB:6.2f} GB/s")
        start, cpu = time.perf_counter(), time.process_time()
        result = run(pa, pb)
        ours_s, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
        moved = sorted(n for n, td in result.tensors.items() if metrics(td.sums)["rel_change"] > 0)
        assert moved == sorted(planted), "the comparison must find exactly the planted tensors"
        print(f"diff           {ours_s:7.2f} s  {nbytes / ours_s / GB:6.2f} GB/s   ours/read {read_s / ours_s:.2f}   "
              f"CPU {ours_cpu:.2f} s (both threads; wall well above CPU / 2: other programs held the cores)")
        if not args.no_rank:
            start, cpu = time.perf_counter(), time.process_time()
            ranked = run(pa, pb, rank=True, device=args.device)
            rank_s, rank_cpu = time.perf_counter() - start, time.process_time() - cpu
            ranks = {ranked.tensors[n].rank90 for n in planted}
            print(f"diff --rank    {rank_s:7.2f} s  {nbytes / rank_s / GB:6.2f} GB/s   ours/read "
                  f"{read_s / rank_s:.2f}   CPU {rank_cpu:.2f} s   device {ranked.device}; planted tensors' rank90 "
                  f"{sorted(ranks)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
