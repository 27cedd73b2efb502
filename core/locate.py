"""Streamed passes over a few chosen tensors: where a finding sits, and what values a tensor really holds.

Statistics summaries say how far the most extreme value lies and how many NaN a
tensor has, not where. These passes read one tensor in bounded chunks (never
all of it at once), so the findings can name coordinates. They run only for
the handful of tensors a finding already points at, under a byte budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.checkpoint import Checkpoint, TensorInfo
from core.errors import CancelledError

MAX_POSITIONS = 5  # non-finite coordinates listed per tensor
CHUNK_BYTES = 2 << 20  # stored bytes per read: values become float64, up to 16 times larger for 4-bit quants


@dataclass
class Located:
    """What one pass found; coordinates are row-major indices into the tensor's shape."""

    peak_at: tuple[int, ...] | None = None  # the value farthest from ``mean``
    peak_value: float = float("nan")
    non_finite_at: list[tuple[int, ...]] = field(default_factory=list)  # the first few NaN / Inf
    bytes_read: int = 0


def coordinates(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The row-major coordinates of element ``flat`` (a scalar's is ``()``)."""
    if not shape:
        return ()
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def _chunks(checkpoint: Checkpoint, t: TensorInfo, chunk_bytes: int, should_stop: Callable[[], bool] | None):
    """(first element, float values) over the tensor, dequantised and decoded."""
    per_element = t.nbytes / t.elements if t.elements else 1.0
    step = max(1, int(chunk_bytes / max(per_element, 1e-9)))
    for start in range(0, t.elements, step):
        if should_stop is not None and should_stop():
            raise CancelledError("locating findings cancelled")
        count = min(step, t.elements - start)
        yield start, np.asarray(checkpoint.read(t, start, count), dtype=np.float64)


def locate(checkpoint: Checkpoint, t: TensorInfo, mean: float, *, want_peak: bool = True,
           want_non_finite: bool = False, chunk_bytes: int = CHUNK_BYTES,
           should_stop: Callable[[], bool] | None = None) -> Located:
    """One pass over ``t``: the first element with the largest finite |w - mean|, and the first few NaN / Inf."""
    out = Located()
    best = -1.0
    for start, values in _chunks(checkpoint, t, chunk_bytes, should_stop):
        out.bytes_read += values.size * t.nbytes // max(1, t.elements)
        finite = np.isfinite(values)
        if want_non_finite and len(out.non_finite_at) < MAX_POSITIONS and not finite.all():
            for i in np.flatnonzero(~finite)[: MAX_POSITIONS - len(out.non_finite_at)]:
                out.non_finite_at.append(coordinates(start + int(i), t.shape))
        if want_peak and finite.any():
            with np.errstate(over="ignore", invalid="ignore"):  # +-1.8e308 minus the mean: inf, not a warning
                dev = np.where(finite, np.abs(values - mean), -1.0)
            i = int(np.argmax(dev))
            if dev[i] > best:  # strict: the first occurrence wins, as np.argmax over the whole tensor
                best = float(dev[i])
                out.peak_at = coordinates(start + i, t.shape)
                out.peak_value = float(values[i])
    return out


def distinct_values(checkpoint: Checkpoint, t: TensorInfo, limit: int, chunk_bytes: int = CHUNK_BYTES,
                    should_stop: Callable[[], bool] | None = None) -> tuple[float, ...] | None:
    """The distinct finite values of ``t`` in ascending order, or None as soon as there are more than ``limit``."""
    seen = np.empty(0)
    for _start, values in _chunks(checkpoint, t, chunk_bytes, should_stop):
        seen = np.union1d(seen, values[np.isfinite(values)] + 0.0)
        if len(seen) > limit:
            return None
    return tuple(float(v) for v in seen)
