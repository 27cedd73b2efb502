"""Where two versions of a matrix differ: |B - A| shrunk to an image, each pixel the largest |B - A| of a block.

Both tensors are streamed together in tiles of whole blocks (bands of whole block-rows, and within a band
columns of whole blocks when a row is too long to hold), so neither matrix sits in memory at once. Values
are compared as core.diff compares them: decoded, in A's row order, B's rows reordered through the
AlignedPair's ``b_rows`` (llama.cpp's q/k permutation), so a faithful conversion draws as zero. A block
whose difference is NaN (a side NaN or infinite) is NaN, painted as such by the panel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import replace

import numpy as np

from core.checkpoint import Checkpoint
from core.errors import CancelledError, CheckpointError
from core.heatmap import Heatmap, empty_heatmap, reduce_blocks
from core.name_map import AlignedPair

MODE = "absdiff"  # Heatmap.mode of these images: max |B - A| per block
DEFAULT_CHUNK_ELEMENTS = 1 << 22  # values per side and tile: 16 MiB as float32, 32 MiB as float64


def compute_diff_heatmap(ca: Checkpoint, cb: Checkpoint, pair: AlignedPair,
                         max_pixels: tuple[int, int] = (512, 512), chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                         should_stop: Callable[[], bool] | None = None) -> Generator[Heatmap, None, Heatmap]:
    """Yield the image after every tile (blocks not read yet are NaN); return the finished one.

    Raises CheckpointError when the pair's shapes differ (nothing to subtract), CancelledError within one
    tile after ``should_stop()`` turns true."""
    a, b = pair.a, pair.b
    if a.shape != b.shape:
        raise CheckpointError(f"{a.name[:200]!r} has shape {list(a.shape)} in A and {list(b.shape)} in B: "
                              "no difference to draw")
    out = empty_heatmap(a.name, MODE, a.shape, max_pixels)
    rows, cols, br, bc = out.rows, out.cols, out.block_rows, out.block_cols
    if rows == 0 or cols == 0:
        return out
    head = len(pair.b_rows) if pair.b_rows is not None else 1
    if rows % head:
        raise CheckpointError(f"{a.name[:200]!r}: {rows} rows are not whole heads of {head} rows")
    unit = br * head // math.gcd(br, head)  # bands hold whole blocks and whole permuted heads
    chunk = max(1, int(chunk_elements))
    band_rows = max(unit, chunk // cols // unit * unit)
    width = cols if band_rows * cols <= chunk else max(bc, chunk // band_rows // bc * bc)
    for r0 in range(0, rows, band_rows):
        r1 = min(rows, r0 + band_rows)
        for c0 in range(0, cols, width):
            if should_stop is not None and should_stop():
                raise CancelledError("heatmap cancelled")
            c1 = min(cols, c0 + width)
            tile_a = _tile(ca, a, r0, r1, c0, c1, cols)
            tile_b = _tile(cb, b, r0, r1, c0, c1, cols)
            if pair.b_rows is not None:
                order = np.asarray(pair.b_rows)
                tile_b = tile_b.reshape(-1, head, c1 - c0)[:, order, :].reshape(r1 - r0, c1 - c0)
            with np.errstate(over="ignore", invalid="ignore"):
                diff = tile_b - tile_a
            diff[~np.isfinite(diff)] = np.nan  # inf - inf is NaN already; a lone inf is no finite difference
            out.values[r0 // br: math.ceil(r1 / br), c0 // bc: math.ceil(c1 / bc)] = \
                _absmax_blocks(diff, br, bc)
            out.rows_done = r1 if c1 == cols else r0
            yield replace(out, values=out.values.copy())  # a snapshot the UI may draw while this goes on
    return out


def _tile(checkpoint: Checkpoint, tensor, r0: int, r1: int, c0: int, c1: int, cols: int) -> np.ndarray:
    """Rows [r0, r1) and columns [c0, c1) as float64: one read for whole rows, one per row otherwise."""
    if c0 == 0 and c1 == cols:
        values = checkpoint.read(tensor, r0 * cols, (r1 - r0) * cols).reshape(r1 - r0, cols)
    else:
        values = np.stack([checkpoint.read(tensor, r * cols + c0, c1 - c0) for r in range(r0, r1)])
    return values.astype(np.float64)


def _absmax_blocks(diff: np.ndarray, br: int, bc: int) -> np.ndarray:
    """Block maxima of |diff|, NaN where a block holds a NaN (reduce_blocks' max propagates it)."""
    return reduce_blocks(np.abs(diff), br, bc, "absmax")
