"""The words for work in progress and for partial results, so that a partial figure never passes as complete."""

from __future__ import annotations

import time
from collections import deque

from core.numbers import human_bytes

RATE_WINDOW_SECONDS = 5.0


class Throughput:
    """Bytes per second over the last few seconds, and the time left at that rate."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def reset(self) -> None:
        self._samples.clear()

    def add(self, bytes_done: int) -> None:
        """Record progress; only a change counts (progress arrives per chunk, the ticker asks more often)."""
        if self._samples and bytes_done == self._samples[-1][1]:
            return
        if self._samples and bytes_done < self._samples[-1][1]:
            self._samples.clear()
        now = self._clock()
        self._samples.append((now, bytes_done))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_SECONDS:
            self._samples.popleft()

    def rate(self) -> float | None:
        """Bytes per second between the oldest and newest change, or None before two changes."""
        if len(self._samples) < 2:
            return None
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if t1 - t0 <= 0:
            return None
        return (b1 - b0) / (t1 - t0)

    def seconds_left(self, bytes_left: int) -> float | None:
        rate = self.rate()
        if not rate:
            return None
        return max(0.0, bytes_left / rate)


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


def progress_text(fraction: float, rate: float | None, seconds_left: float | None) -> str:
    """'43% · 120 MB/s · 12 s left' (rate and time left once known)."""
    parts = [f"{fraction:.0%}"]
    if rate is not None:
        parts.append(f"{human_bytes(int(rate))}/s")
    if seconds_left is not None:
        parts.append(f"{duration_text(seconds_left)} left")
    return " · ".join(parts)


def fraction_text(fraction: float) -> str:
    """A share of bytes that never rounds a partial read up to 100% or down to 0%."""
    share = 100.0 * fraction
    if 0 < share < 10:
        text = f"{share:.1f}%"
        return "<0.1%" if text == "0.0%" else text
    if 99 < share < 100:
        return f"{min(share, 99.9):.1f}%"
    return f"{share:.0f}%"


def partial_text(tensors_done: int, tensors_total: int, fraction: float) -> str:
    """'9 of 1,137 tensors · 0.3% of bytes'."""
    return f"{tensors_done:,} of {tensors_total:,} tensors · {fraction_text(fraction)} of bytes"
