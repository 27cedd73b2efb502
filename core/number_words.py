"""Counts and sizes in the words a learner meets elsewhere: "405.9 billion", "812 GB = 756 GiB".

Papers say "405B" and shops sell decimal gigabytes while memory and most tools count binary GiB; writing both
keeps a reader from thinking a number is wrong when it is only in other units.
"""

from __future__ import annotations

from core.numbers import three_digits

_COUNT_WORDS = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_DECIMAL = ((10**15, "PB"), (10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "kB"))
_BINARY = {"PB": (2**50, "PiB"), "TB": (2**40, "TiB"), "GB": (2**30, "GiB"), "MB": (2**20, "MiB"),
           "kB": (2**10, "KiB")}

GB_NOTE = ("GB counts 1,000,000,000 bytes (disks, downloads); GiB counts 1,073,741,824 bytes (memory and most "
           "tools), so the same size reads about 7% smaller in GiB.")


def count_in_words(n: int) -> str:
    """Four significant figures and the word: 405,853,388,800 -> "405.9 billion"; small counts exactly."""
    for scale, word in _COUNT_WORDS:
        if abs(n) >= scale:
            return f"{n / scale:.4g} {word}"
    return f"{n:,}"


def bytes_both_ways(n: int) -> str:
    """A size in decimal and binary units, three significant digits: "812 GB = 756 GiB"; under a kilobyte bytes."""
    for scale, unit in _DECIMAL:
        if abs(n) >= scale:
            binary_scale, binary_unit = _BINARY[unit]
            return f"{three_digits(n / scale)} {unit} = {three_digits(n / binary_scale)} {binary_unit}"
    return f"{n:,} bytes"

