"""The one place that turns counts and sizes into words: "8.03 B", "14.96 GiB"."""

from __future__ import annotations

import math
from typing import Any

_COUNT_UNITS = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")]
_BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


def human_count(n: int | float) -> str:
    """Parameter counts the way papers write them: 22.7 M, 8.03 B, 405 B."""
    for i, (scale, unit) in enumerate(_COUNT_UNITS):
        if abs(n) >= scale:
            text = three_digits(n / scale)
            if i and abs(float(text.replace(",", ""))) >= 1000:  # 999,885,952 rounds to "1,000 M": say "1.00 B"
                larger, name = _COUNT_UNITS[i - 1]
                return f"{three_digits(n / larger)} {name}"
            return f"{text} {unit}"
    return f"{int(n):,}" if float(n).is_integer() else f"{n:.3g}"


def count_with_exact(n: int) -> str:
    """'22.7 M (22,713,216)': readable first, exact for those who check."""
    return f"{human_count(n)} ({n:,})" if abs(n) >= 1000 else f"{n:,}"


def human_bytes(n: int | float) -> str:
    """Binary units, as memory is sold and as tools report it: 14.96 GiB."""
    value = float(n)
    for unit in _BYTE_UNITS:
        if abs(value) < 1024 or unit == _BYTE_UNITS[-1]:
            if unit == "B":
                return f"{int(value):,} B"
            return f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} PiB"


def percent(part: float, whole: float) -> str:
    if whole <= 0:
        return "-"
    share = 100.0 * part / whole
    if share == 0:
        return "0%"
    return f"{share:.2f}%" if share < 10 else f"{share:.1f}%"


def three_digits(value: float) -> str:
    """Three significant digits, no exponent: 22.7, 8.03, 405, 1,234."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_value(x: float) -> str:
    """Statistics values: compact, with NaN/Inf spelled out."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.4g}"
    return f"{x:.3e}"


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities (anywhere inside) as the strings JSON readers accept."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value
