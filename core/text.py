"""File-derived text made safe to show: escaped for terminals, bounded in length, depth and size.

A tensor name or a metadata value is data written by whoever made the file. Printed
raw, ESC sequences could clear or rewrite the screen, CR could overprint a line, and
bidi overrides could make a name read differently from what it is. Every command
prints such text through ``terminal_safe``; JSON output bounds its display-only parts
with ``bounded_json``.
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

LINE_LIMIT = 1000
# Categories escaped visibly: controls (C0, DEL, C1), format characters (bidi overrides and isolates,
# zero-width marks, U+061C), line/paragraph separators, lone surrogates and unassigned code points.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _needs_escape(ch: str) -> bool:
    if " " <= ch <= "~":  # printable ASCII, the common case
        return False
    return unicodedata.category(ch) in _ESCAPED_CATEGORIES


def terminal_safe(value: object, limit: int = LINE_LIMIT) -> str:
    """``value`` as one line a terminal shows literally: controls and format characters escaped, at most
    about ``limit`` characters, the rest cut with "... (N more characters)"."""
    text = value if isinstance(value, str) else str(value)
    pieces: list[str] = []
    width = 0
    consumed = 0
    for ch in text:
        piece = _escape_char(ch) if _needs_escape(ch) else ch
        if width + len(piece) > limit:
            break
        pieces.append(piece)
        width += len(piece)
        consumed += 1
    out = "".join(pieces)
    if consumed < len(text):
        out += f"... ({len(text) - consumed:,} more characters)"
    return out


def bounded_json(value: Any, *, max_string: int = 65536, max_items: int = 1000, max_depth: int = 16,
                 budget: int = 200_000) -> Any:
    """A copy of a JSON-like value that is bounded whatever the file held: strings cut, long lists and dicts
    shortened with a marker, deep nesting summarised, and at most ``budget`` values in all. Anything that is
    not a JSON type becomes its text. NaN and infinities become the strings JSON readers accept."""
    remaining = [budget]

    def cut(text: str) -> str:
        if len(text) <= max_string:
            return text
        return text[:max_string] + f"... ({len(text) - max_string:,} more characters)"

    def walk(item: Any, depth: int) -> Any:
        remaining[0] -= 1
        if remaining[0] < 0:
            return "... (output limit reached)"
        if item is None or isinstance(item, bool | int):
            return item
        if isinstance(item, float):
            if math.isnan(item):
                return "NaN"
            return item if math.isfinite(item) else ("Infinity" if item > 0 else "-Infinity")
        if isinstance(item, str):
            return cut(item)
        if isinstance(item, dict):
            if depth >= max_depth:
                return f"<a dict of {len(item):,} entries nested too deep to show>"
            out = {cut(str(k)): walk(v, depth + 1) for k, v in list(item.items())[:max_items]}
            if len(item) > max_items:
                out["..."] = f"{len(item) - max_items:,} more entries"
            return out
        if isinstance(item, list | tuple):
            if depth >= max_depth:
                return f"<a list of {len(item):,} items nested too deep to show>"
            shown = [walk(v, depth + 1) for v in item[:max_items]]
            if len(item) > max_items:
                shown.append(f"... ({len(item) - max_items:,} more items)")
            return shown
        return cut(str(item))

    return walk(value, 0)
