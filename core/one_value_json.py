"""The `stats --json` texts of many one-value tensors at once (60,000 one-value shards).

Such a tensor's statistics are a few scalars, but its two histograms list 257 + 129 edges, and writing each
edge with float repr costs about a microsecond (17 digits): 0.4 ms a tensor, most of the command's time. Here
a batch's edges are computed as one array by the very float operations of stats_summary._one_value_hist and
written by orjson's C formatter, whose text is repr's for 0 and for every magnitude in [1e-4, 1e16) (both
write those positionally, with the shortest round-tripping digits). Rows holding another magnitude, and every
row when orjson is not installed, take the general writer. Tests hold the texts equal to the general route's.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np

from core.stats_summary import (
    _PERCENTILE_KEYS,
    SMALL_EXACT_LIMIT,
    FloatSummary,
    HistSpec,
    TensorStats,
    _one_value_hist,
    _unit_steps,
    one_value_figures,
)

try:
    import orjson
except ImportError:  # optional: without it the general writer gives the same text, slower
    orjson = None

_PLAIN = frozenset({"F32", "F64", "I32", "I64", "U32", "U64"})
POSITIONAL_LOW, POSITIONAL_HIGH = 1e-4, 1e16  # repr and orjson both write these magnitudes without an exponent


def one_value(summary: Any) -> tuple[float, int] | None:
    """(x, n) when ``derive(summary)`` is _derive_one_value of the finite value x held n times with no quant
    type (a plain-dtype FloatSummary of one finite value), else None."""
    if type(summary) is not FloatSummary or summary.n != 1 or len(summary.dtypes) != 1 \
            or summary.dtypes[0] not in _PLAIN:
        return None
    if summary.int_counts is not None:  # _derive_float's exact-integer route
        if len(summary.int_counts) != 1:
            return None
        return float(summary.int_base), int(summary.int_counts[0])
    if len(summary.top) != 1 or not max(-summary.vmin, summary.vmax) < SMALL_EXACT_LIMIT:
        return None
    return float(summary.top[0]), 1


def one_value_stats(name: str, summary: FloatSummary, x: float, n: int) -> TensorStats:
    """The statistics of a one-value tensor (see one_value) without their histograms."""
    return one_value_figures(name, summary.dtypes, x, n, summary.nan, summary.pos_inf, summary.neg_inf)


def histogram_texts(values: list[float], counts: list[int], spec: HistSpec) -> list[tuple[str, str, str, str]]:
    """The JSON texts of the edges, counts, log10 edges and log10 counts of each one-value tensor holding
    ``values[i]`` ``counts[i]`` times, as stats_json_text writes them from derive's arrays."""
    from core.stats import _floats_text, _ints_text

    xs = np.array(values, dtype=np.float64)
    hist = _edges_texts(xs, counts, spec.bins)
    nonzero = np.flatnonzero(xs != 0)
    logs: list[tuple[str, str]] = [(_floats_text(np.empty(0)), _ints_text(np.empty(0, dtype=np.int64)))] * len(xs)
    if len(nonzero):
        with np.errstate(divide="ignore"):
            lv = np.log10(np.abs(xs[nonzero]))  # numpy's log10, as _derive_one_value computes it
        for i, text in zip(nonzero.tolist(), _edges_texts(lv, [counts[i] for i in nonzero.tolist()],
                                                          spec.log_bins), strict=True):
            logs[i] = text
    return [(e, c, le, lc) for (e, c), (le, lc) in zip(hist, logs, strict=True)]


def _edges_texts(xs: np.ndarray, counts: list[int], bins: int) -> list[tuple[str, str]]:
    """(edges text, counts text) of _one_value_hist(x, n, bins) for each x, n."""
    from core.stats import _floats_text, _ints_text

    out: list[tuple[str, str] | None] = [None] * len(xs)
    first, last = xs - 0.5, xs + 0.5
    quick = (np.abs(xs) < 2.0**40) & (last - first == 1.0) if bins <= 1024 else np.zeros(len(xs), dtype=bool)
    rows = np.flatnonzero(quick)
    if len(rows):
        edges = _unit_steps(bins) + first[rows, None]  # _one_value_hist's quick route, row by row
        edges[:, -1] = last[rows]
        _fill(out, rows, edges, xs, counts, bins)
    rows = np.flatnonzero(~quick & np.isfinite(first) & np.isfinite(last) & (first < last))
    if len(rows):  # hist_edges' first route: numpy's linspace (the same operations on arrays), if it is usable
        with np.errstate(over="ignore", invalid="ignore"):
            edges = np.linspace(first[rows], last[rows], bins + 1, endpoint=True, dtype=np.float64, axis=1)
            usable = np.isfinite(edges).all(axis=1) & (edges[:, 1:] > edges[:, :-1]).all(axis=1)
        _fill(out, rows[usable], edges[usable], xs, counts, bins)
    for r in [i for i, text in enumerate(out) if text is None]:
        edges, hist = _one_value_hist(float(xs[r]), counts[r], bins)
        out[r] = (_floats_text(edges), _ints_text(hist))
    return out  # type: ignore[return-value]


def _fill(out: list, rows: np.ndarray, edges: np.ndarray, xs: np.ndarray, counts: list[int], bins: int) -> None:
    """out[r] for each row r of ``edges`` (ascending): its text, and the counts _one_value_hist gives x there."""
    inside = xs[rows]
    index = np.count_nonzero(edges <= inside[:, None], axis=1) - 1  # bisect_right - 1 on ascending edges
    index[inside == edges[:, -1]] = bins - 1
    for r, i, text in zip(rows.tolist(), index.tolist(), _rows_text(edges), strict=True):
        out[r] = (text, _one_count_text(bins, i, counts[r]))


def _rows_text(edges: np.ndarray) -> list[str]:
    """_floats_text of each row."""
    from core.stats import _floats_text

    if orjson is None:
        return [_floats_text(row) for row in edges]
    magnitude = np.abs(edges)
    positional = ((magnitude == 0) | ((magnitude >= POSITIONAL_LOW) & (magnitude < POSITIONAL_HIGH))).all(axis=1)
    out: list[str] = [""] * len(edges)
    quick = np.flatnonzero(positional)
    if len(quick):
        written = orjson.dumps(np.ascontiguousarray(edges[quick]), option=orjson.OPT_SERIALIZE_NUMPY)
        text = written.replace(b",", b", ").decode("ascii")  # bytes: twice as quick as str.replace
        for r, row in zip(quick.tolist(), text[2:-2].split("], ["), strict=True):
            out[r] = "[" + row + "]"
    for r in np.flatnonzero(~positional).tolist():
        out[r] = _floats_text(edges[r])
    return out


def one_value_text(ts: TensorStats, x: float, histograms: tuple[str, str, str, str]) -> str:
    """stats_json_text(ts, histograms) where ``ts`` is one_value_stats(..., x, n): the text of x made once for the
    mean, min, max and the nine percentiles, which equal x there when x != 0 (and equal floats other than zeros
    have one repr)."""
    from core.stats import _float_text, stats_json_text

    if x == 0 or ts.mean != x:  # min, max and percentiles are x by construction (one_value_figures)
        return stats_json_text(ts, histograms)
    f = _float_text
    fx = f(x)
    edges, counts, log_edges, log_counts = histograms
    return "".join((
        '{"name": ', encode_basestring_ascii(ts.name), ', "dtype": ', encode_basestring_ascii(ts.dtype),
        ', "count": ', int.__repr__(int(ts.count)), ', "mean": ', fx, ', "std": ', f(ts.std), ', "min": ', fx,
        ', "max": ', fx, ', "abs_max": ', f(ts.abs_max), ', "l2": ', f(ts.l2), ', "zeros": ', int.__repr__(ts.zeros),
        ', "nan": ', int.__repr__(ts.nan), ', "pos_inf": ', int.__repr__(ts.pos_inf), ', "neg_inf": ',
        int.__repr__(ts.neg_inf), ', "skewness": ', f(ts.skewness), ', "kurtosis": ', f(ts.kurtosis),
        ', "beyond_6_sigma": ', int.__repr__(ts.beyond_6_sigma), ', "percentiles": {', fx.join(_PERCENTILE_GLUE),
        '}, "histogram": {"edges": ', edges, ', "counts": ', counts, '}, "log10_abs_histogram": {"edges": ',
        log_edges, ', "counts": ', log_counts, '}, "exact": ', "true" if ts.exact else "false", ', "tensors": ',
        int.__repr__(int(ts.tensors)), "}"))


_PERCENTILE_GLUE = (*[(", " if i else "") + encode_basestring_ascii(k) + ": " for i, k in enumerate(_PERCENTILE_KEYS)],
                    "")  # joined by a value's text: '"0.1": X, "1": X, ...'

_COUNT_TEXTS: dict[tuple[int, int, int], str] = {}


def _one_count_text(bins: int, index: int, n: int) -> str:
    """_ints_text of ``bins`` counts, all 0 but int(float(n)) at ``index`` (none when outside), remembered."""
    key = (bins, index, n)
    text = _COUNT_TEXTS.get(key)
    if text is None:
        from core.stats import _ints_text

        counts = np.zeros(bins, dtype=np.int64)
        if 0 <= index < bins:
            counts[index] = int(float(n))
        if len(_COUNT_TEXTS) >= 4096:
            _COUNT_TEXTS.clear()
        text = _COUNT_TEXTS[key] = _ints_text(counts)
    return text
