"""Statistics that have no value say why, instead of showing NaN.

NaN in a table reads as a broken checkpoint (the Legend says so), but the
kurtosis and skewness of a constant tensor are 0/0 and a single value has no
spread: those are undefined, not broken. Every place that shows a statistic
asks ``describe_stat`` for its text.
"""

from __future__ import annotations

import math
from typing import Any

from core.numbers import format_value

ALL_EQUAL = "undefined: all values equal"
ONE_VALUE = "undefined: only one value"
NO_VALUES = "undefined: no finite values"
SHAPE_STATS = ("kurtosis", "skewness", "skew", "excess kurtosis")
SPREAD_STATS = ("std", "standard deviation", "sigma", "variance")


def undefined_reason(name: str, ts: Any) -> str | None:
    """Why statistic ``name`` of ``ts`` (a TensorStats) is undefined, or None when it has a value."""
    name = name.strip().lower()
    count = int(getattr(ts, "count", 0))
    if count == 0:
        return NO_VALUES
    if name in SPREAD_STATS and count == 1:
        return ONE_VALUE
    if name in SHAPE_STATS and (count == 1 or getattr(ts, "std", 0.0) == 0 or ts.min == ts.max):
        return ALL_EQUAL
    return None


def describe_stat(name: str, value: float, ts: Any) -> str:
    """The text for one statistic: its value, or why it has none ("undefined: all values equal").
    A NaN that is not explained by the values (a real NaN result) stays "NaN": that is a finding."""
    why = undefined_reason(name, ts)
    if why is not None and (not math.isfinite(value) or name.strip().lower() in SHAPE_STATS + SPREAD_STATS):
        return why
    return format_value(value)
