"""How many distinct values a tensor holds, from its statistics summary alone when the summary knows.

A quantisation that maps a whole tensor onto a handful of values shows up as
few distinct values. The engine's summaries answer exactly in three cases:
16- and 8-bit types count every bit pattern, small-range integers count every
value, and a float tensor of at most 2 x K_EXTREMES values keeps all of them
among its stored extremes. Otherwise the summary gives only a lower bound: the
number of bf16-resolution bins that hold values (a bin can hold many float32
values), so a small bound is a candidate for an exact streamed count
(core.locate.distinct_values), never a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.stats_summary import K_EXTREMES, FloatSummary, PatternSummary, Summary, pattern_values


@dataclass(frozen=True)
class Levels:
    """Distinct finite values: ``count`` exactly when ``exact``, else at least ``count`` (bf16 bins)."""

    count: int
    exact: bool
    values: tuple[float, ...] = ()  # the values themselves when exact and few


def summary_levels(summary: Summary, keep: int = 16) -> Levels:
    """Distinct finite values of one tensor's summary; ``values`` lists them when there are at most ``keep``."""
    if isinstance(summary, PatternSummary):
        idx, cnt = summary.store.sparse()
        values = pattern_values(summary.fmt)[idx[cnt > 0]]
        return _exact(values[np.isfinite(values)], keep)
    assert isinstance(summary, FloatSummary)
    if summary.n == 0:
        return Levels(0, True)
    if summary.int_counts is not None:
        present = np.flatnonzero(summary.int_counts) + summary.int_base
        return _exact(present.astype(np.float64), keep)
    if summary.n <= 2 * K_EXTREMES:  # the smallest and largest K together are every finite value
        return _exact(np.concatenate([summary.bottom, summary.top]), keep)
    idx, cnt = summary.keys.sparse()
    return Levels(int(np.count_nonzero(cnt)), False)


def _exact(values: np.ndarray, keep: int) -> Levels:
    distinct = np.unique(values.astype(np.float64) + 0.0)  # + 0.0 folds -0.0 into 0.0
    shown = tuple(float(v) for v in distinct) if len(distinct) <= keep else ()
    return Levels(len(distinct), True, shown)
