"""A weight matrix shrunk to an image: each pixel is one block of values, reduced by max |w| or mean.

The matrix is streamed by bands of whole block-rows, so a 128k × 16k
embedding never sits in memory at once; each band is decoded to float32,
padded to whole blocks and reduced with one reshape. A block-row wider than
a chunk (a 700 MB vector) is read tile by tile of whole blocks instead. Tensors of more than
two dimensions are viewed as (first dimension, everything else), 1-D ones
as a single row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from core.checkpoint import Checkpoint, TensorInfo
from core.errors import CancelledError

MODES = {"absmax": "max |w|", "mean": "mean"}


@dataclass
class Heatmap:
    """``values[i, j]`` reduces rows [i*block_rows, ...) and columns [j*block_cols, ...) of the matrix."""

    name: str
    mode: str
    rows: int
    cols: int
    block_rows: int
    block_cols: int
    values: np.ndarray  # float32, shape (ceil(rows / block_rows), ceil(cols / block_cols)); NaN where not read yet
    rows_done: int = 0

    @property
    def fraction(self) -> float:
        return self.rows_done / self.rows if self.rows else 1.0


def block_place(hm: Any, row: float, col: float) -> tuple[int, int, str] | None:
    """The block of a heatmap (anything with rows, cols, block_rows, block_cols) under matrix position (row, col):
    its indices and where it is in words ("row 3, column 7" or "rows 0–63, columns 128–191"); None outside."""
    if not (0 <= row < hm.rows and 0 <= col < hm.cols):
        return None
    i, j = int(row // hm.block_rows), int(col // hm.block_cols)
    r0, c0 = i * hm.block_rows, j * hm.block_cols
    if hm.block_rows * hm.block_cols == 1:
        return i, j, f"row {r0:,}, column {c0:,}"
    r1, c1 = min(r0 + hm.block_rows, hm.rows) - 1, min(c0 + hm.block_cols, hm.cols) - 1
    return i, j, f"rows {r0:,}–{r1:,}, columns {c0:,}–{c1:,}"


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], math.prod(shape[1:])


def block_sizes(rows: int, cols: int, max_pixels: tuple[int, int] = (512, 512)) -> tuple[int, int]:
    """The smallest block that brings the matrix within ``max_pixels`` (rows, cols)."""
    return max(1, math.ceil(rows / max_pixels[0])), max(1, math.ceil(cols / max_pixels[1]))


def reduce_blocks(band: np.ndarray, block_rows: int, block_cols: int, mode: str) -> np.ndarray:
    """Reduce a (r, cols) band (r a multiple of block_rows, except at the end) block by block."""
    r, c = band.shape
    nr, nc = math.ceil(r / block_rows), math.ceil(c / block_cols)
    pr, pc = nr * block_rows - r, nc * block_cols - c
    x = band.astype(np.float32, copy=False)
    if mode == "absmax":
        x = np.abs(x)
        if pr or pc:
            x = np.pad(x, ((0, pr), (0, pc)))  # zero padding never beats a real |w|
        return x.reshape(nr, block_rows, nc, block_cols).max(axis=(1, 3))
    if mode != "mean":
        raise ValueError(f"unknown heatmap mode {mode!r} (use {', '.join(MODES)})")
    if pr or pc:
        x = np.pad(x, ((0, pr), (0, pc)))
    sums = x.reshape(nr, block_rows, nc, block_cols).sum(axis=(1, 3), dtype=np.float64)
    counts = np.full((nr, nc), block_rows * block_cols, dtype=np.float64)
    if pr:
        counts[-1, :] = (block_rows - pr) * counts[-1, :] / block_rows
    if pc:
        counts[:, -1] = counts[:, -1] * (block_cols - pc) / block_cols
    return (sums / counts).astype(np.float32)


def empty_heatmap(name: str, mode: str, shape: tuple[int, ...], max_pixels: tuple[int, int]) -> Heatmap:
    """A heatmap of a tensor of ``shape`` with every block still to be read (NaN)."""
    rows, cols = matrix_shape(shape)
    br, bc = block_sizes(rows, cols, max_pixels)
    return Heatmap(name, mode, rows, cols, br, bc,
                   np.full((math.ceil(rows / br) if rows else 0, math.ceil(cols / bc) if cols else 0), np.nan,
                           dtype=np.float32))


def compute_heatmap(checkpoint: Checkpoint, tensor: TensorInfo | str, mode: str = "absmax",
                    max_pixels: tuple[int, int] = (512, 512), chunk_bytes: int = 32 << 20,
                    should_stop: Callable[[], bool] | None = None) -> Generator[Heatmap, None, Heatmap]:
    """Yield the heatmap after every band (rows not read yet are NaN); return the finished one."""
    if mode not in MODES:
        raise ValueError(f"unknown heatmap mode {mode!r} (use {', '.join(MODES)})")
    t = checkpoint.tensor(tensor) if isinstance(tensor, str) else tensor
    out = empty_heatmap(t.name, mode, t.shape, max_pixels)
    rows, cols, br, bc = out.rows, out.cols, out.block_rows, out.block_cols
    if rows == 0 or cols == 0:
        return out
    bytes_per_row = max(1, t.nbytes // rows)
    if bytes_per_row * br > chunk_bytes:  # one block-row is too big to hold (a long vector): go by columns too
        return (yield from _by_columns(checkpoint, t, out, max(1, chunk_bytes // max(1, bytes_per_row // cols)),
                                       should_stop))
    band_rows = max(br, (chunk_bytes // bytes_per_row) // br * br)
    for r0 in range(0, rows, band_rows):
        if should_stop is not None and should_stop():
            raise CancelledError("heatmap cancelled")
        r1 = min(rows, r0 + band_rows)
        band = checkpoint.read(t, r0 * cols, (r1 - r0) * cols).reshape(r1 - r0, cols)
        if band.dtype == np.bool_:
            band = band.astype(np.float32)
        out.values[r0 // br: math.ceil(r1 / br)] = reduce_blocks(band, br, bc, mode)
        out.rows_done = r1
        yield replace(out, values=out.values.copy())  # a snapshot the UI may draw while we go on
    return out


def _by_columns(checkpoint: Checkpoint, t: TensorInfo, out: Heatmap, chunk_elements: int,
                should_stop: Callable[[], bool] | None) -> Generator[Heatmap, None, Heatmap]:
    """Block-rows too wide to read at once, reduced a tile of whole blocks at a time (about ``chunk_elements``
    values): memory stays bounded however long a row is."""
    rows, cols, br, bc = out.rows, out.cols, out.block_rows, out.block_cols
    width = max(bc, chunk_elements // br // bc * bc)
    for r0 in range(0, rows, br):
        r1 = min(rows, r0 + br)
        for c0 in range(0, cols, width):
            if should_stop is not None and should_stop():
                raise CancelledError("heatmap cancelled")
            c1 = min(cols, c0 + width)
            tile = np.stack([checkpoint.read(t, r * cols + c0, c1 - c0) for r in range(r0, r1)])
            if tile.dtype == np.bool_:
                tile = tile.astype(np.float32)
            out.values[r0 // br, c0 // bc: math.ceil(c1 / bc)] = reduce_blocks(tile, br, bc, out.mode)[0]
            yield replace(out, values=out.values.copy())
        out.rows_done = r1
    yield replace(out, values=out.values.copy())
    return out
