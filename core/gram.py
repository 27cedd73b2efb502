"""Gram matrices of weight matrices, streamed from the file in blocks, and where that arithmetic runs.

The eigenvalues of W^T W (or W W^T, whichever is smaller) are the squared singular values of W. The Gram
matrix is built from blocks of W read from the file (never the whole matrix as float32): a tall matrix
(rows >= columns) needs one pass of row blocks, G += B^T B per block. A wide one is read in column blocks,
G += C C^T per block: each block reads only its columns of each row (one positional read per row where the
columns skipped are wide: Checkpoint.read_raw_columns), so every element is read and decoded once. An engine
without column blocks would use every pair of row blocks, G[i, j] = B_i B_j^T for j <= i. Stored values are
widened to float64 on the reader thread in one compiled pass (core.native_widen) while the engine multiplies
the previous block. Memory is the Gram matrix plus two blocks whatever the matrix's size. Products and sums are
float64; the lower triangle is what the eigensolver reads.

Conv kernels follow WeightWatcher: a (out, in, kh, kw) tensor is kh*kw matrices W[:, :, i, j] (or, when the
kernel dimensions are the larger ones, W[i, j, :, :]), each read as its own Gram matrix and their eigenvalues
pooled.

Devices: numpy on the CPU (single-threaded BLAS, each product's rows shared among our threads: core.blas), or
torch on CUDA (float64 products and eigensolver on the GPU, the next block read into pinned memory while the
GPU works on the current one), on Apple MPS (no float64 there: float32 block products summed into a float64
Gram matrix on the CPU), or on the CPU (for agreement tests). torch is imported only for an accelerator, or
when asked for.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.blas import add_gram, blas_threads_for_load, single_threaded_blas
from core.checkpoint import Checkpoint, TensorInfo, decode
from core.compute import DeviceError, _try_torch, accelerator_possible, validate_device
from core.eigen import TWO_STAGE_FROM, prepare_in_background, symmetric_eigenvalues
from core.native_widen import widener

DEFAULT_BLOCK_BYTES = 64 << 20  # float64 bytes of one row block


@dataclass(frozen=True)
class MatrixGroup:
    """``slices`` matrices of rows x cols that share their rows in the file: element (r, c) of slice s is at
    ``base + r * cols * slices + c * slices + s`` (slices == 1: a plain row-major matrix)."""

    base: int
    rows: int
    cols: int
    slices: int

    @property
    def gram_order(self) -> int:
        return min(self.rows, self.cols)


@dataclass(frozen=True)
class MatrixLayout:
    """How one tensor is read as matrices: its groups, WeightWatcher's N (larger side) and eigenvalue scale."""

    groups: tuple[MatrixGroup, ...]
    n_large: int
    scale: float  # WeightWatcher's conv2d normalisation: W * sqrt(1/2), so eigenvalues * 0.5

    @property
    def n_evals(self) -> int:
        return sum(g.gram_order * g.slices for g in self.groups)

    @property
    def gram_bytes(self) -> int:
        """The largest Gram working set at once: one group's slices of float64."""
        return max(g.gram_order**2 * g.slices * 8 for g in self.groups)


def matrix_layout(t: TensorInfo) -> MatrixLayout | str:
    """The matrices of ``t``, or why it is not analysed as one."""
    shape = t.shape
    if len(shape) == 2:
        rows, cols = shape
        return MatrixLayout((MatrixGroup(0, rows, cols, 1),), max(rows, cols), 1.0)
    if len(shape) == 4:
        n, m, kh, kw = shape
        if n + m >= kh + kw:  # torch layout (out, in, kh, kw): slices interleaved along the rows
            return MatrixLayout((MatrixGroup(0, n, m, kh * kw),), max(n, m), 0.5)
        groups = tuple(MatrixGroup(s * kh * kw, kh, kw, 1) for s in range(n * m))  # (kh, kw, in, out) layout
        return MatrixLayout(groups, max(kh, kw), 0.5)
    return f"not a matrix ({len(shape)}-D)"


def rows_per_block(group: MatrixGroup, block_bytes: int) -> int:
    return max(1, min(group.rows, block_bytes // max(1, group.cols * group.slices * 8)))


# --------------------------------------------------------------------------- engines
class NumpyGram:
    """float64 Gram matrices with numpy's BLAS and the fastest exact eigensolver (core.eigen).

    BLAS runs single-threaded and this engine's own threads share each product's rows (core.blas): measured
    faster than BLAS's threads on 2 cores, much faster when other programs compete for them. Wide matrices are
    read in column blocks (every element read once; ``column_blocks``), tall ones in row blocks."""

    label = "cpu"
    column_blocks = True
    host_float64 = True  # row blocks come widened to float64 from the reader thread

    def __init__(self, threads: int | None = None) -> None:
        self.threads = max(1, threads or min(os.cpu_count() or 1, 8))
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="gram") if self.threads > 1 else None

    def zeros(self, n: int, slices: int) -> Any:
        if n >= TWO_STAGE_FROM:
            prepare_in_background(n)  # the eigensolver's one-time setup runs while this Gram matrix is built
        return np.zeros((slices, n, n), dtype=np.float64)

    def upload(self, block: np.ndarray) -> Any:
        return block.astype(np.float64, copy=False)

    def add_cross(self, g: Any, a: Any, b: Any, rows_a: slice, rows_b: slice) -> None:
        """g[s][rows_a, rows_b] += A_s B_s^T for every slice s (wide matrices read in row blocks)."""
        for s in range(g.shape[0]):
            x = np.ascontiguousarray(a[:, :, s])
            y = x if b is a else np.ascontiguousarray(b[:, :, s])
            g[s, rows_a, rows_b] += x @ y.T  # numpy runs x @ x.T as a symmetric rank-k update

    def add_tall(self, g: Any, a: Any) -> None:
        """The lower triangle of g[s] += A_s^T A_s for every slice s (tall matrices)."""
        with single_threaded_blas():
            for s in range(g.shape[0]):
                add_gram(g[s], np.ascontiguousarray(a[:, :, s]), True, self._pool, self.threads)

    def add_columns(self, g: Any, a: Any) -> None:
        """The lower triangle of g[s] += A_s A_s^T for every slice s (a column block of a wide matrix)."""
        with single_threaded_blas():
            for s in range(g.shape[0]):
                add_gram(g[s], np.ascontiguousarray(a[:, :, s]), False, self._pool, self.threads)

    def eigenvalues(self, g: Any, s: int) -> np.ndarray:
        with blas_threads_for_load() as threaded:
            return symmetric_eigenvalues(g[s], threaded=threaded)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class TorchGram:
    """The same arithmetic with torch on ``device`` (cuda, cuda:N, mps or cpu).

    Wide matrices come in column blocks, as for NumpyGram: every element is read, decoded and copied to the
    device once. In row blocks a wide matrix took n(n+1)/2 block products for n row blocks, each block read
    and decoded again on the CPU (28 reads of a 4096 x 14336 matrix's 7 blocks): on a GPU that CPU work, not
    the arithmetic, set the pace."""

    column_blocks = True

    def __init__(self, torch: Any, device: str) -> None:
        self.torch = torch
        self.device = torch.device(device)
        self.label = device
        self.float64 = self.device.type != "mps"  # MPS has no float64: float32 products, float64 sums on the CPU
        self.gram_device = self.device if self.float64 else torch.device("cpu")
        self.pinned = self.device.type == "cuda"

    def zeros(self, n: int, slices: int) -> Any:
        return self.torch.zeros((slices, n, n), dtype=self.torch.float64, device=self.gram_device)

    def upload(self, block: np.ndarray) -> Any:
        torch = self.torch
        if not self.float64 and block.dtype == np.float64:  # MPS computes in float32 (column blocks are float64)
            block = block.astype(np.float32)
        host = torch.from_numpy(block)
        if self.pinned:
            host = host.pin_memory()
        x = host.to(self.device, non_blocking=self.pinned)
        return x.to(torch.float64) if self.float64 else x

    def add_cross(self, g: Any, a: Any, b: Any, rows_a: slice, rows_b: slice) -> None:
        for s in range(g.shape[0]):
            x, y = a[:, :, s], b[:, :, s]
            g[s, rows_a, rows_b] += (x @ y.T).to(self.gram_device, self.torch.float64)

    def add_tall(self, g: Any, a: Any) -> None:
        for s in range(g.shape[0]):
            x = a[:, :, s]
            g[s] += (x.T @ x).to(self.gram_device, self.torch.float64)

    def add_columns(self, g: Any, a: Any) -> None:
        """g[s] += C_s C_s^T for a column block (rows x width x slices): float64 from the reader, or already on
        the device (core.diff_rank uploads its own)."""
        x = self.upload(a) if isinstance(a, np.ndarray) else a
        for s in range(g.shape[0]):
            c = x[:, :, s]
            g[s] += (c @ c.T).to(self.gram_device, self.torch.float64)

    def eigenvalues(self, g: Any, s: int) -> np.ndarray:
        if self.gram_device.type == "cpu":  # the CPU's fastest exact solver (torch's is numpy's slower one)
            return symmetric_eigenvalues(g[s].numpy())
        return self.torch.linalg.eigvalsh(g[s], UPLO="L").cpu().numpy()

    def close(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


def make_gram_engine(device: str = "auto", impl: str | None = None) -> NumpyGram | TorchGram:
    """The engine for ``--device``: auto takes CUDA, then MPS, else numpy on the CPU (torch is not imported on a
    machine that cannot have a GPU). ``impl="torch"`` with cpu runs the torch code on the CPU (tests)."""
    validate_device(device)
    wants_torch = impl == "torch" or device not in ("auto", "cpu") or (device == "auto" and accelerator_possible())
    if not wants_torch:
        return NumpyGram()
    torch = _try_torch()
    if torch is not None and device != "cpu":
        if (device == "auto" or device.startswith("cuda")) and torch.cuda.is_available():
            if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
                raise DeviceError(f"device {device!r} is not present ({torch.cuda.device_count()} CUDA device(s))")
            return TorchGram(torch, "cuda" if device == "auto" else device)
        mps = getattr(torch.backends, "mps", None)
        if device in ("auto", "mps") and mps is not None and mps.is_available():
            return TorchGram(torch, "mps")
    if device not in ("auto", "cpu"):
        why = "torch is not installed" if torch is None else "no such accelerator on this machine"
        raise DeviceError(f"device {device!r} is not available ({why})")
    if impl == "torch":
        if torch is None:
            raise DeviceError("the torch CPU engine needs torch, which is not installed")
        return TorchGram(torch, "cpu")
    return NumpyGram()


# --------------------------------------------------------------------------- streaming
def gram_steps(group: MatrixGroup, block_bytes: int, column_blocks: bool = False) -> int:
    """Block products ``accumulate`` yields for ``group`` (``column_blocks``: the engine's attribute)."""
    if column_blocks and group.rows < group.cols:
        return math.ceil(group.cols / columns_per_block(group, block_bytes))
    n = math.ceil(group.rows / rows_per_block(group, block_bytes))
    return n if group.rows >= group.cols else n * (n + 1) // 2


def columns_per_block(group: MatrixGroup, block_bytes: int) -> int:
    return max(1, min(group.cols, block_bytes // max(1, group.rows * group.slices * 8)))


class BlockBuffers:
    """float64 blocks handed out again once given back. A fresh 64 MiB block costs page faults and the kernel's
    zeroing on the reader thread, and its release interrupts the other core: with every block fresh, a 4096 x 14336
    matrix took 0.2 s longer than with two blocks reused. Thread-safe: blocks are taken on the reader thread and
    given back by the consumer."""

    KEEP = 2  # the block being multiplied and the one being read

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        with self._lock:
            for i, block in enumerate(self._free):
                if block.shape == shape:
                    return self._free.pop(i)
            self._free.clear()  # another shape (the narrower last block): release them before making it
        return np.empty(shape, dtype=np.float64)

    def give(self, block: np.ndarray) -> None:
        """Hand ``block`` back: the caller no longer reads it."""
        with self._lock:
            if len(self._free) < self.KEEP:
                self._free.append(block)


def accumulate(engine: Any, checkpoint: Checkpoint, t: TensorInfo, group: MatrixGroup, block_bytes: int,
               check_block: Callable[[np.ndarray], None]) -> Iterator[Any]:
    """Build the Gram matrices of ``group`` block by block; yields None after each block product, and finally
    the Gram matrices (slices x n x n; the lower triangle is what holds). ``check_block`` sees every element
    once, as read (NaN, Inf counts)."""
    if getattr(engine, "column_blocks", False) and group.rows < group.cols:
        yield from _accumulate_columns(engine, checkpoint, t, group, block_bytes, check_block)
        return
    step = rows_per_block(group, block_bytes)
    starts = list(range(0, group.rows, step))
    tall = group.rows >= group.cols
    g = engine.zeros(group.gram_order, group.slices)
    width = group.cols * group.slices
    buffers = BlockBuffers()

    def read(i: int, first_time: bool = True) -> np.ndarray:
        first = starts[i]
        count = min(step, group.rows - first)
        check = check_block if first_time else None
        if getattr(engine, "host_float64", False):  # widened here, on the reader thread, not by the engine
            raw = checkpoint.read_raw(t, group.base + first * width, count * width)
            block = buffers.take((count, group.cols, group.slices))
            widen_into(raw, t.dtype, block.reshape(-1), check)
            return block
        block = checkpoint.read(t, group.base + first * width, count * width).astype(np.float32, copy=False)
        if check is not None:
            check(block)
        return block.reshape(count, group.cols, group.slices)

    with ThreadPoolExecutor(1) as reader:  # the next block is read while this one is multiplied
        if tall:
            pending = reader.submit(read, 0)
            for i in range(len(starts)):
                block = pending.result()
                if i + 1 < len(starts):
                    pending = reader.submit(read, i + 1)
                engine.add_tall(g, engine.upload(block))
                buffers.give(block)
                del block
                yield None
        else:
            rows = [slice(s, min(s + step, group.rows)) for s in starts]
            order = [(i, j) for i in range(len(starts)) for j in range(i, -1, -1)]  # block i first, then j < i
            pending = reader.submit(read, 0)
            current: Any = None
            for k, (i, j) in enumerate(order):
                block = pending.result()
                if k + 1 < len(order):
                    nxt = order[k + 1]
                    pending = reader.submit(read, nxt[1], nxt[0] == nxt[1])
                if j == i:
                    current = engine.upload(block)
                    engine.add_cross(g, current, current, rows[i], rows[i])
                else:
                    engine.add_cross(g, current, engine.upload(block), rows[i], rows[j])
                del block
                yield None
    yield g


def _accumulate_columns(engine: Any, checkpoint: Checkpoint, t: TensorInfo, group: MatrixGroup, block_bytes: int,
                        check_block: Callable[[np.ndarray], None]) -> Iterator[Any]:
    """A wide matrix as column blocks: G += C C^T for each, every element read once; the next block is gathered
    on a reader thread while this one is multiplied."""
    g = engine.zeros(group.gram_order, group.slices)
    buffers = BlockBuffers()
    for block in prefetched(column_blocks(checkpoint, t, group, block_bytes, check_block, buffers)):
        engine.add_columns(g, block)
        buffers.give(block)
        del block
        yield None
    yield g


def row_blocks(checkpoint: Checkpoint, t: TensorInfo, group: MatrixGroup, block_bytes: int) -> Iterator[np.ndarray]:
    """Row blocks of ``group`` as float32 (rows, cols, slices), top to bottom."""
    step = rows_per_block(group, block_bytes)
    line = group.cols * group.slices
    for first in range(0, group.rows, step):
        count = min(step, group.rows - first)
        block = checkpoint.read(t, group.base + first * line, count * line)
        yield block.astype(np.float32, copy=False).reshape(count, group.cols, group.slices)


def column_blocks(checkpoint: Checkpoint, t: TensorInfo, group: MatrixGroup, block_bytes: int,
                  check_block: Callable[[np.ndarray], None] | None = None,
                  buffers: BlockBuffers | None = None) -> Iterator[np.ndarray]:
    """Column blocks of ``group`` as float64 (rows, width, slices), left to right, each at most ``block_bytes``.

    Each block reads only its columns of each row, in stored form (bf16 stays 2 bytes), and widens them to float64
    in one compiled pass where it can (core.native_widen), else with numpy. ``check_block`` sees every element
    once; with the compiled pass, only the rows it found NaN or Inf in (where the check raises). With ``buffers``
    each block is taken from them (the caller gives each back when done with it), else made afresh."""
    width = columns_per_block(group, block_bytes)
    row_step = rows_per_block(group, block_bytes)
    line = group.cols * group.slices
    for c0 in range(0, group.cols, width):
        c1 = min(c0 + width, group.cols)
        shape = (group.rows, c1 - c0, group.slices)
        out = buffers.take(shape) if buffers is not None else np.empty(shape, dtype=np.float64)
        lines = out.reshape(group.rows, -1)
        for r0 in range(0, group.rows, row_step):
            count = min(row_step, group.rows - r0)
            raw = checkpoint.read_raw_columns(t, group.base + r0 * line, count, line, c0 * group.slices,
                                              c1 * group.slices)
            widen_into(raw, t.dtype, lines[r0 : r0 + count], check_block)
            del raw
        yield out
        del out, lines


def widen_into(raw: np.ndarray, dtype_name: str, target: np.ndarray,
               check: Callable[[np.ndarray], None] | None) -> None:
    """target[...] = the float64 values of ``raw`` (as stored: bf16 as patterns), in one compiled pass where it
    can (core.native_widen), else with numpy. ``check`` sees the values; after the compiled pass only where it
    counted NaN or Inf (the check is there to raise on them)."""
    widen = widener()
    if widen is not None and widen.handles(dtype_name, raw):
        if widen.widen(dtype_name, raw, target) and check is not None:
            check(target)
        return
    part = decode(raw, dtype_name)
    if check is not None:
        check(part)
    target[...] = part.reshape(target.shape)


def prefetched(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """``blocks``, with the next one made on a reader thread while the caller works on this one."""
    done = object()
    with ThreadPoolExecutor(1) as reader:
        pending = reader.submit(next, blocks, done)
        while True:
            block = pending.result()
            if block is done:
                return
            pending = reader.submit(next, blocks, done)
            yield block
            del block
