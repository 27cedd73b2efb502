"""Mergeable, exact summaries of tensor values, and the statistics derived from them.

Two kinds of summary, both merge exactly (merge = add counts, or a pairwise
moment combination), so a layer's or a model's statistics come from its
tensors' summaries, never from re-reading:

* PatternSummary: for types with at most 65,536 bit patterns (BF16, F16, F8,
  I8/U8/BOOL, I16/U16) a count per pattern. Exact by construction; every
  statistic, percentile and histogram follows from the counts.
* FloatSummary: for F32/F64, dequantised GGUF quants and wide integers.
  Moments (count, mean, M2, M3, M4) in float64, combined chunk by chunk with
  Chan et al.'s pairwise formulas; exact min, max and special-value counts;
  a 65,536-bin count of the top 16 bits of each value's float32 pattern (its
  bf16 rounding toward zero) for percentiles and histograms to bf16
  resolution; and the K smallest and K largest values, exact, which make the
  tails (outlier counts, extreme percentiles, histogram edges) exact.
  F64 values beyond float32's range share the outermost bins: percentiles
  among them are exact only while they are among the K stored extremes;
  otherwise they are a bound (the bin's edge nearest zero, kept monotonic)
  and the statistics are marked inexact (TensorStats.exact is False).
  Integer values (I32/I64/U32/U64 whose range is small, such as position or
  token ids) also get exact counts per value, so their statistics are exact.

Definitions: moments, min, max, percentiles and histograms are over the finite
values; the standard deviation is the population one (ddof=0); kurtosis is the
non-excess one (3 for a Gaussian); percentiles are numpy's default 'linear'
method (Hyndman & Fan type 7), computed with numpy's own float operations, so
exact summaries give np.percentile's results bit for bit; histograms bin like
np.histogram over [min, max] (the last bin includes its right edge).
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np

K_EXTREMES = 1024
KEYS = 65536
PERCENTILES = (0.1, 1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 99.9)
PATTERN_DTYPES = ("BF16", "F16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "I8", "U8", "BOOL", "I16", "U16")
F32_MAX = float(np.finfo(np.float32).max)
INT_SPAN = 1 << 16  # wide integer chunks with a smaller range are counted value by value (exact)
INT_SPAN_MERGED = 1 << 20  # merged exact integer counts stay exact up to this range
_INT_FORMATS = ("I8", "U8", "I16", "U16", "BOOL")
# A tensor of at most K_EXTREMES finite values within this magnitude is derived from its stored values directly
# (their fourth powers stay far from float64's limit): 25x quicker than the 65,536-bin route, and exact.
SMALL_EXACT_LIMIT = 1e60


# --------------------------------------------------------------------------- value tables
@cache
def pattern_values(fmt: str) -> np.ndarray:
    """The float64 value of every bit pattern of ``fmt`` (read-only)."""
    from core.checkpoint import decode

    with np.errstate(invalid="ignore", over="ignore"):  # NaN patterns and E8M0's 2**128 are expected
        return _pattern_table(fmt, decode)


def _pattern_table(fmt: str, decode) -> np.ndarray:
    if fmt == "BF16":
        table = (np.arange(KEYS, dtype=np.uint32) << 16).view(np.float32).astype(np.float64)
    elif fmt == "F16":
        table = np.arange(KEYS, dtype=np.uint16).view(np.float16).astype(np.float64)
    elif fmt.startswith("F8_"):
        table = decode(np.arange(256, dtype=np.uint8), fmt).astype(np.float64)
    elif fmt == "I8":
        table = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.float64)
    elif fmt == "U8":
        table = np.arange(256, dtype=np.float64)
    elif fmt == "BOOL":
        table = np.minimum(np.arange(256, dtype=np.float64), 1.0)
    elif fmt == "I16":
        table = np.arange(KEYS, dtype=np.uint16).view(np.int16).astype(np.float64)
    elif fmt == "U16":
        table = np.arange(KEYS, dtype=np.float64)
    else:
        raise KeyError(fmt)
    table.setflags(write=False)
    return table


def pattern_count(fmt: str) -> int:
    return 256 if fmt.startswith("F8_") or fmt in ("I8", "U8", "BOOL") else KEYS


def float_keys(values: np.ndarray) -> np.ndarray:
    """bf16 keys of float64 values, as the backends compute them (see f64_keys)."""
    return f64_keys(np.asarray(values, dtype=np.float64)).astype(np.intp)


def f64_keys(x: np.ndarray) -> np.ndarray:
    """bf16 keys (top 16 bits of the float32 pattern) of float64 values, rounded toward zero.

    Rounding toward zero keeps every value inside its key's bin, as for float32 data;
    finite values beyond float32's range take the largest finite key, infinities and
    NaN keep their special keys (so the backends can count them).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        v32 = x.astype(np.float32)
        over = np.abs(v32) > np.abs(x)  # rounded away from zero, or a finite value overflowed to inf
    bits = v32.view(np.uint32)
    bits[over] -= 1
    return bits >> 16


@cache
def _key_order() -> np.ndarray:
    """Finite bf16 keys sorted by value: -max ... -0, +0 ... +max (specials excluded)."""
    return np.concatenate([np.arange(0xFF7F, 0x7FFF, -1), np.arange(0, 0x7F80)]).astype(np.intp)


@cache
def _key_bounds() -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper value bound of each key bin, in key-order (see _key_order)."""
    order = _key_order().astype(np.uint32)
    low_bits = np.where(order & 0x8000, (order << 16) | 0xFFFF, order << 16).astype(np.uint32)
    high_bits = np.where(order & 0x8000, order << 16, (order << 16) | 0xFFFF).astype(np.uint32)
    lo = low_bits.view(np.float32).astype(np.float64)
    hi = high_bits.view(np.float32).astype(np.float64)
    lo[0], hi[-1] = -math.inf, math.inf  # the outermost keys also hold F64 values beyond float32's range
    return lo, hi


def key_value(key: int) -> float:
    """The bf16 value a key stands for (the float32 rounded toward zero)."""
    return float(np.array([key << 16], dtype=np.uint32).view(np.float32)[0])


# --------------------------------------------------------------------------- summaries
class CountStore:
    """A count array kept dense while it is being added to and sparse once finished (``compact``).

    A finished tensor's 65,536 counts take 512 KiB dense but usually a few thousand nonzero entries: compact
    storage keeps a model of thousands of tensors in tens of MB. ``array()`` always gives the dense counts.
    """

    __slots__ = ("cnt", "dense", "idx", "length")

    def __init__(self, length: int, dense: np.ndarray | None = None) -> None:
        self.length = length
        self.dense: np.ndarray | None = np.zeros(length, dtype=np.int64) if dense is None else dense
        self.idx: np.ndarray | None = None
        self.cnt: np.ndarray | None = None

    @classmethod
    def from_sparse(cls, length: int, idx: np.ndarray, cnt: np.ndarray) -> CountStore:
        """Counts ``cnt`` at strictly increasing indices ``idx`` (not copied: never written afterwards)."""
        out = cls.__new__(cls)
        out.length, out.dense, out.idx, out.cnt = length, None, idx, cnt
        return out

    def array(self) -> np.ndarray:
        """The dense counts: the stored array itself while dense (writes go through), else a new one."""
        if self.dense is not None:
            return self.dense
        out = np.zeros(self.length, dtype=np.int64)
        out[self.idx] = self.cnt
        return out

    def sparse(self) -> tuple[np.ndarray, np.ndarray]:
        if self.dense is None:
            return self.idx, self.cnt
        idx = np.flatnonzero(self.dense)
        return idx, self.dense[idx]

    def total(self) -> int:
        return int((self.dense if self.dense is not None else self.cnt).sum())

    def add(self, other: CountStore) -> None:
        """Add ``other``'s counts (this store becomes dense: it is an accumulator now)."""
        dense = self.array()
        self.dense, self.idx, self.cnt = dense, None, None
        if other.dense is not None:
            dense += other.dense
        else:
            dense[other.idx] += other.cnt  # indices are distinct: fancy-index addition is exact

    def compact(self) -> None:
        if self.dense is None:
            return
        idx = np.flatnonzero(self.dense)
        if len(idx) * 12 < self.dense.nbytes // 2:
            self.idx = idx.astype(np.uint32 if self.length > 65536 else np.uint16)
            self.cnt = self.dense[idx].copy()
            self.dense = None

    def copy(self) -> CountStore:
        if self.dense is not None:
            return CountStore(self.length, self.dense.copy())
        return CountStore.from_sparse(self.length, self.idx, self.cnt)  # sparse arrays are never written


class PatternSummary:
    """Exact counts of every bit pattern of one 16- or 8-bit format."""

    __slots__ = ("dtypes", "fmt", "store")

    def __init__(self, fmt: str, counts: np.ndarray | None = None, dtypes: tuple[str, ...] = (),
                 store: CountStore | None = None) -> None:
        self.fmt = fmt
        self.dtypes = dtypes
        self.store = store if store is not None else CountStore(pattern_count(fmt), counts)

    def __repr__(self) -> str:
        return f"PatternSummary({self.fmt!r}, total={self.total}, dtypes={self.dtypes})"

    @property
    def counts(self) -> np.ndarray:
        """int64 counts, pattern_count(fmt) long (see CountStore.array)."""
        return self.store.array()

    @counts.setter
    def counts(self, value: np.ndarray) -> None:
        self.store = CountStore(pattern_count(self.fmt), value)

    @classmethod
    def empty(cls, fmt: str, dtypes: tuple[str, ...] = ()) -> PatternSummary:
        return cls(fmt, None, dtypes or (fmt,))

    def copy(self) -> PatternSummary:
        return PatternSummary(self.fmt, dtypes=self.dtypes, store=self.store.copy())

    def compact(self) -> None:
        self.store.compact()

    @property
    def total(self) -> int:
        return self.store.total()

    def to_float(self) -> FloatSummary:
        """The same values as a FloatSummary (exact: moments from the table, keys and extremes by value)."""
        table = pattern_values(self.fmt)
        nz, c = self.store.sparse()
        v = table[nz]
        out = FloatSummary.empty(self.dtypes)
        out.nan = int(c[np.isnan(v)].sum())
        out.pos_inf = int(c[v == np.inf].sum())
        out.neg_inf = int(c[v == -np.inf].sum())
        fin = np.isfinite(v)
        v, c = v[fin], c[fin]
        if len(v) == 0:
            return out
        n, mean, m2, m3, m4 = _weighted_moments(v, c)
        out.n, out.mean, out.m2, out.m3, out.m4 = n, mean, m2, m3, m4
        out.vmin, out.vmax = float(v.min()), float(v.max())
        out.zeros = int(c[v == 0].sum())
        np.add.at(out.key_counts, float_keys(v), c)
        order = np.argsort(v, kind="stable")
        v, c = v[order], c[order]
        out.bottom = _repeat_first(v, c, K_EXTREMES)
        out.top = _repeat_first(v[::-1], c[::-1], K_EXTREMES)[::-1].copy()
        if self.fmt in _INT_FORMATS:
            out.int_base = int(v[0])
            out.int_counts = np.zeros(int(v[-1]) - out.int_base + 1, dtype=np.int64)
            out.int_counts[(v - out.int_base).astype(np.intp)] = c
        return out


@dataclass
class FloatSummary:
    """Moments, exact extremes and bf16-resolution counts of float values (see module doc)."""

    dtypes: tuple[str, ...] = ()
    n: int = 0  # finite values
    scale_exp: int = 0  # moments are of values * 2**-scale_exp (keeps float64 F64 data from overflowing)
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0
    vmin: float = math.inf
    vmax: float = -math.inf
    zeros: int = 0
    nan: int = 0
    pos_inf: int = 0
    neg_inf: int = 0
    keys: CountStore = field(default_factory=lambda: CountStore(KEYS))  # bf16 key counts (see key_counts)
    top: np.ndarray = field(default_factory=lambda: np.empty(0))  # K largest finite values, ascending
    bottom: np.ndarray = field(default_factory=lambda: np.empty(0))  # K smallest finite values, ascending
    int_base: int = 0  # with int_counts: every value is an integer, int_counts[i] of them equal int_base + i
    int_counts: np.ndarray | None = None

    @classmethod
    def empty(cls, dtypes: tuple[str, ...] = ()) -> FloatSummary:
        return cls(dtypes=dtypes)

    @property
    def key_counts(self) -> np.ndarray:
        """Counts of the finite values' bf16 keys (65,536, int64; see CountStore.array)."""
        return self.keys.array()

    @key_counts.setter
    def key_counts(self, value: np.ndarray) -> None:
        self.keys = CountStore(KEYS, value)

    def compact(self) -> None:
        self.keys.compact()

    def copy(self) -> FloatSummary:
        out = FloatSummary(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        out.keys = self.keys.copy()
        out.top, out.bottom = self.top.copy(), self.bottom.copy()
        if self.int_counts is not None:
            out.int_counts = self.int_counts.copy()
        return out

    @property
    def total(self) -> int:
        return self.n + self.nan + self.pos_inf + self.neg_inf

    def merge(self, other: FloatSummary) -> None:
        """Add ``other``'s values to this summary (Chan et al. pairwise update of M2..M4)."""
        self.dtypes = _union(self.dtypes, other.dtypes)
        self.zeros += other.zeros
        self.nan += other.nan
        self.pos_inf += other.pos_inf
        self.neg_inf += other.neg_inf
        self.keys.add(other.keys)
        if other.n == 0:
            return
        self._merge_int_counts(other)
        self.vmin, self.vmax = min(self.vmin, other.vmin), max(self.vmax, other.vmax)
        self.top = np.sort(np.concatenate([self.top, other.top]))[-K_EXTREMES:]
        self.bottom = np.sort(np.concatenate([self.bottom, other.bottom]))[:K_EXTREMES]
        if self.n == 0:
            self.n, self.scale_exp = other.n, other.scale_exp
            self.mean, self.m2, self.m3, self.m4 = other.mean, other.m2, other.m3, other.m4
            return
        e = max(self.scale_exp, other.scale_exp)
        a = _rescale(self.mean, self.m2, self.m3, self.m4, self.scale_exp - e)
        b = _rescale(other.mean, other.m2, other.m3, other.m4, other.scale_exp - e)
        self.n, self.mean, self.m2, self.m3, self.m4 = combine_moments(self.n, *a, other.n, *b)
        self.scale_exp = e

    def _merge_int_counts(self, other: FloatSummary) -> None:
        """Exact integer counts survive a merge while both sides have them and the range stays small."""
        if self.n == 0:
            self.int_base = other.int_base
            self.int_counts = None if other.int_counts is None else other.int_counts.copy()
            return
        if self.int_counts is None or other.int_counts is None:
            self.int_counts = None
            return
        lo = min(self.int_base, other.int_base)
        hi = max(self.int_base + len(self.int_counts), other.int_base + len(other.int_counts))
        if hi - lo > INT_SPAN_MERGED:
            self.int_counts = None
            return
        out = np.zeros(hi - lo, dtype=np.int64)
        out[self.int_base - lo : self.int_base - lo + len(self.int_counts)] += self.int_counts
        out[other.int_base - lo : other.int_base - lo + len(other.int_counts)] += other.int_counts
        self.int_base, self.int_counts = lo, out


Summary = PatternSummary | FloatSummary


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return a + tuple(x for x in b if x not in a)


def _rescale(mean: float, m2: float, m3: float, m4: float, shift: int) -> tuple[float, float, float, float]:
    if shift == 0:
        return mean, m2, m3, m4
    return math.ldexp(mean, shift), math.ldexp(m2, 2 * shift), math.ldexp(m3, 3 * shift), math.ldexp(m4, 4 * shift)


def combine_moments(
    na: int, ma: float, m2a: float, m3a: float, m4a: float, nb: int, mb: float, m2b: float, m3b: float, m4b: float
) -> tuple[int, float, float, float, float]:
    """Pairwise combination of (count, mean, M2, M3, M4) of two disjoint sets (Chan, Golub, LeVeque; Pebay)."""
    n = na + nb
    delta = mb - ma
    dn = delta / n
    mean = ma + dn * nb
    m2 = m2a + m2b + delta * dn * na * nb
    m3 = m3a + m3b + delta * dn * dn * na * nb * (na - nb) + 3.0 * dn * (na * m2b - nb * m2a)
    m4 = (m4a + m4b + delta * dn * dn * dn * na * nb * (na * na - na * nb + nb * nb)
          + 6.0 * dn * dn * (na * na * m2b + nb * nb * m2a) + 4.0 * dn * (na * m3b - nb * m3a))
    return n, mean, m2, m3, m4


def _weighted_moments(v: np.ndarray, c: np.ndarray) -> tuple[int, float, float, float, float]:
    """(n, mean, M2, M3, M4) of values ``v`` with integer multiplicities ``c``; two-pass for accuracy."""
    w = c.astype(np.float64)
    n = int(c.sum())
    mean = float(np.dot(w, v)) / n
    d = v - mean
    corr = float(np.dot(w, d)) / n
    mean += corr
    d = d - corr
    d2 = d * d
    return n, mean, float(np.dot(w, d2)), float(np.dot(w, d2 * d)), float(np.dot(w, d2 * d2))


def _repeat_first(v: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` values of ``v`` repeated by their counts ``c``."""
    cum = np.cumsum(c)
    cut = int(np.searchsorted(cum, k, side="left")) + 1
    reps = c[:cut].copy()
    if cum[min(cut, len(cum)) - 1] > k:
        reps[-1] -= cum[cut - 1] - k
    return np.repeat(v[:cut], reps)


def merge(acc: Summary | None, item: Summary) -> Summary:
    """Merge ``item`` into ``acc`` (which may be modified and is returned); None starts a new copy."""
    if acc is None:
        return item.copy()
    if isinstance(acc, PatternSummary) and isinstance(item, PatternSummary) and acc.fmt == item.fmt:
        acc.store.add(item.store)
        acc.dtypes = _union(acc.dtypes, item.dtypes)
        return acc
    out = acc.to_float() if isinstance(acc, PatternSummary) else acc
    out.merge(item.to_float() if isinstance(item, PatternSummary) else item)
    return out


def merge_all(items: list[Summary]) -> Summary | None:
    """merge of every item in turn; runs of one-value float summaries (60,000 one-value shards) merged as one
    batch with the same result (see _merge_one_values)."""
    acc: Summary | None = None
    position = 0
    while position < len(items):
        if type(acc) is FloatSummary and acc.int_counts is None and acc.scale_exp == 0:
            end = position
            while end < len(items) and _is_plain_one_value(items[end]):
                end += 1
            if end - position >= ONE_VALUE_BATCH_MIN:
                if not _merge_one_values(acc, items[position:end]):
                    for item in items[position:end]:
                        acc = merge(acc, item)
                position = end
                continue
        acc = merge(acc, items[position])
        position += 1
    return acc


ONE_VALUE_BATCH_MIN = 16  # shorter runs merge one by one


def _is_plain_one_value(s: Summary) -> bool:
    """A float summary of one finite nonzero value, no integer counts, unscaled moments, sparse key counts."""
    return (type(s) is FloatSummary and s.n == 1 and s.int_counts is None and s.scale_exp == 0
            and s.keys.dense is None and len(s.top) == 1 and len(s.bottom) == 1 and s.vmin != 0)


def _merge_one_values(acc: FloatSummary, run: list[Summary]) -> bool:
    """FloatSummary.merge of each of ``run`` (see _is_plain_one_value) into ``acc`` in turn, with the moments
    combined one by one as there (the same floats) and the rest at once: key counts added in one np.add.at,
    extremes sorted once (the K largest and smallest of a union do not depend on the order; no zeros, so no
    -0.0 / 0.0 ties). False, and ``acc`` untouched, when ``acc`` holds a zero among its extremes."""
    if acc.n and (not np.all(acc.top) or not np.all(acc.bottom)):
        return False
    dtypes = acc.dtypes
    zeros = nan = pos_inf = neg_inf = 0
    n, mean, m2, m3, m4 = acc.n, acc.mean, acc.m2, acc.m3, acc.m4
    for item in run:
        if item.dtypes != dtypes:
            dtypes = _union(dtypes, item.dtypes)
        zeros += item.zeros
        nan += item.nan
        pos_inf += item.pos_inf
        neg_inf += item.neg_inf
        if n == 0:
            n, mean, m2, m3, m4 = item.n, item.mean, item.m2, item.m3, item.m4
        else:
            n, mean, m2, m3, m4 = combine_moments(n, mean, m2, m3, m4, item.n, item.mean, item.m2, item.m3, item.m4)
    values = np.concatenate([s.top for s in run])
    dense = acc.keys.array()
    acc.keys.dense, acc.keys.idx, acc.keys.cnt = dense, None, None
    np.add.at(dense, np.concatenate([s.keys.idx for s in run]).astype(np.intp),
              np.concatenate([s.keys.cnt for s in run]))
    if acc.n == 0:
        acc.int_base = run[0].int_base
    acc.dtypes = dtypes
    acc.zeros += zeros
    acc.nan += nan
    acc.pos_inf += pos_inf
    acc.neg_inf += neg_inf
    acc.vmin, acc.vmax = min(acc.vmin, float(values.min())), max(acc.vmax, float(values.max()))
    acc.top = np.sort(np.concatenate([acc.top, values]))[-K_EXTREMES:]
    acc.bottom = np.sort(np.concatenate([acc.bottom, values]))[:K_EXTREMES]
    acc.n, acc.mean, acc.m2, acc.m3, acc.m4 = n, mean, m2, m3, m4
    return True


# --------------------------------------------------------------------------- derived statistics
@dataclass(frozen=True)
class HistSpec:
    """Display histogram settings: ``bins`` equal bins over ``range`` (default: [min, max] of finite values)."""

    bins: int = 256
    range: tuple[float, float] | None = None
    log_bins: int = 128


@dataclass
class TensorStats:
    """Everything shown for one tensor or group. Kurtosis is the non-excess one (a Gaussian gives 3)."""

    name: str
    dtype: str
    count: int
    mean: float
    std: float
    min: float
    max: float
    abs_max: float
    l2: float
    zeros: int
    nan: int
    pos_inf: int
    neg_inf: int
    skewness: float
    kurtosis: float
    beyond_6_sigma: int
    percentiles: dict[str, float]
    hist_edges: np.ndarray
    hist_counts: np.ndarray
    log_edges: np.ndarray
    log_counts: np.ndarray
    exact: bool = True  # False where beyond_6_sigma was estimated, or a percentile is only a bound (F64 overflow)
    quant_type: str | None = None
    bits_per_weight: float | None = None
    tensors: int = 1


def percentile_key(p: float) -> str:
    return f"{p:g}"


def derive(summary: Summary, name: str = "", spec: HistSpec = HistSpec()) -> TensorStats:
    """All statistics of a summary. Moments, min/max, percentiles and histograms are over the finite values."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # extreme values give inf, not warnings
        if isinstance(summary, PatternSummary):
            return _derive_pattern(summary, name, spec)
        return _derive_float(summary, name, spec)


@functools.lru_cache(maxsize=4096)
def _quantile_positions(n: int) -> tuple[tuple[int, int, float], ...]:
    """numpy's 'linear' method (its default): for each percentile, the two ranks and the weight of the upper one,
    computed with the same float operations as numpy (virtual index (n - 1) * q). Remembered: tiny tensors
    repeat a few counts."""
    out = []
    for p in PERCENTILES:
        q = p / 100.0
        virtual = (n - 1) * q
        virtual = min(max(virtual, 0.0), n - 1.0)
        lo = math.floor(virtual)
        hi = min(lo + 1, n - 1)
        out.append((lo, hi, virtual - lo))
    return tuple(out)


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's _lerp, bit for bit, except where numpy's b - a overflows (neighbours near -+1.8e308): there the
    same formula on a/2 and b/2, doubled (exact scaling), gives the finite, monotonic result numpy cannot."""
    diff = b - a
    if math.isinf(diff) and math.isfinite(a) and math.isfinite(b):
        return 2.0 * _lerp(a / 2.0, b / 2.0, t)
    if t >= 0.5:
        return b - diff * (1.0 - t)
    return a + diff * t


_PERCENTILE_KEYS = tuple(percentile_key(p) for p in PERCENTILES)


def _percentiles(n: int, value_at_rank) -> dict[str, float]:
    if n == 0:
        return {percentile_key(p): math.nan for p in PERCENTILES}
    return {
        percentile_key(p): _lerp(value_at_rank(lo), value_at_rank(hi), t)
        for p, (lo, hi, t) in zip(PERCENTILES, _quantile_positions(n), strict=True)
    }


def _common(name: str, dtypes: tuple[str, ...], n: int, mean: float, var: float, m3n: float, m4n: float) -> dict:
    std = math.sqrt(var) if n else math.nan
    if n and var > 0:
        skew = m3n / var**1.5
        kurt = m4n / (var * var)
    else:
        skew = kurt = math.nan
    return {"name": name, "dtype": "+".join(dtypes), "count": n, "mean": mean if n else math.nan,
            "std": std, "skewness": skew, "kurtosis": kurt}


def _derive_pattern(s: PatternSummary, name: str, spec: HistSpec) -> TensorStats:
    table = pattern_values(s.fmt)
    nz, c = s.store.sparse()
    v = table[nz]
    nan = int(c[np.isnan(v)].sum())
    pos_inf, neg_inf = int(c[v == np.inf].sum()), int(c[v == -np.inf].sum())
    fin = np.isfinite(v)
    v, c = v[fin], c[fin]
    order = np.argsort(v, kind="stable")
    return _derive_weighted(name, s.dtypes, v[order], c[order], nan, pos_inf, neg_inf, spec)


def _derive_weighted(name: str, dtypes: tuple[str, ...], v: np.ndarray, c: np.ndarray, nan: int, pos_inf: int,
                     neg_inf: int, spec: HistSpec) -> TensorStats:
    """Exact statistics of finite values ``v`` (ascending, distinct) with multiplicities ``c``."""
    if len(v) == 1 and spec.range is None:
        return _derive_one_value(name, dtypes, float(v[0]), int(c[0]), nan, pos_inf, neg_inf, spec)
    n = int(c.sum())
    if n:
        _, mean, m2, m3, m4 = _weighted_moments(v, c)
        var = m2 / n
        base = _common(name, dtypes, n, mean, var, m3 / n, m4 / n)
        vmin, vmax = float(v[0]), float(v[-1])
        l2 = math.sqrt(float(np.dot(c.astype(np.float64), v * v)))
        std = base["std"]
        beyond = int(c[np.abs(v - mean) > 6.0 * std].sum())
        cum = np.cumsum(c)
        percentiles = _percentiles(n, lambda r: float(v[np.searchsorted(cum, r, side="right")]))
    else:
        base = _common(name, dtypes, 0, 0.0, 0.0, 0.0, 0.0)
        vmin = vmax = l2 = math.nan
        beyond = 0
        percentiles = _percentiles(0, None)
    edges, counts = _weighted_hist(v, c, spec.bins, spec.range or ((vmin, vmax) if n else None))
    log_edges, log_counts = _log_hist(v, c, spec.log_bins)
    return TensorStats(**base, min=vmin, max=vmax, abs_max=max(abs(vmin), abs(vmax)) if n else math.nan, l2=l2,
                       zeros=int(c[v == 0].sum()), nan=nan, pos_inf=pos_inf, neg_inf=neg_inf, beyond_6_sigma=beyond,
                       percentiles=percentiles, hist_edges=edges, hist_counts=counts, log_edges=log_edges,
                       log_counts=log_counts)


def _dot1(a: float, b: float) -> float:
    """``np.dot`` of two one-element float64 arrays: the product, with the sign of a zero as this BLAS gives it."""
    product = a * b
    return product if product != 0.0 or _DOT1_KEEPS_ZERO_SIGN else product + 0.0


_DOT1_KEEPS_ZERO_SIGN = math.copysign(1.0, float(np.dot(np.array([1.0]), np.array([-0.0])))) < 0


def _derive_one_value(name: str, dtypes: tuple[str, ...], x: float, n: int, nan: int, pos_inf: int, neg_inf: int,
                      spec: HistSpec) -> TensorStats:
    """_derive_weighted of one distinct finite value ``x`` held ``n`` times, by the same float operations in
    scalars: 60,000 one-value tensors spent 0.3 ms each in numpy calls on one-element arrays. Tests hold the two
    equal bit for bit (signed zeros, subnormals, huge values, any count)."""
    out = one_value_figures(name, dtypes, x, n, nan, pos_inf, neg_inf)
    out.hist_edges, out.hist_counts = _one_value_hist(x, n, spec.bins)
    if x != 0:
        lv = float(np.log10(np.abs(np.array([x]))[0]))  # numpy's log10, as _log_hist computes it
        out.log_edges, out.log_counts = _one_value_hist(lv, n, spec.log_bins)
    else:
        out.log_edges, out.log_counts = np.empty(0), np.empty(0, dtype=np.int64)
    return out


_NO_EDGES = np.empty(0)
_NO_COUNTS = np.empty(0, dtype=np.int64)
_NO_EDGES.setflags(write=False)
_NO_COUNTS.setflags(write=False)


def one_value_figures(name: str, dtypes: tuple[str, ...], x: float, n: int, nan: int, pos_inf: int,
                      neg_inf: int) -> TensorStats:
    """_derive_one_value without its histograms (they are left empty and read-only): the figures alone, for
    writers that make many one-value tensors' histogram texts at once (core.one_value_json)."""
    if n == 1 and x != 0 and math.isfinite(x):  # the lines below for one nonzero value: no spread, all at x
        return TensorStats(name, "+".join(dtypes), 1, x, 0.0, x, x, abs(x), math.sqrt(x * x), 0, nan, pos_inf,
                           neg_inf, math.nan, math.nan, 0, dict.fromkeys(_PERCENTILE_KEYS, x), _NO_EDGES, _NO_COUNTS,
                           _NO_EDGES, _NO_COUNTS)
    w = float(n)
    mean = _dot1(w, x) / n  # _weighted_moments, element by element
    d = x - mean
    corr = _dot1(w, d) / n
    mean += corr
    d = d - corr
    d2 = d * d
    m2, m3, m4 = _dot1(w, d2), _dot1(w, d2 * d), _dot1(w, d2 * d2)
    base = _common(name, dtypes, n, mean, m2 / n, m3 / n, m4 / n)
    l2 = math.sqrt(_dot1(w, x * x))
    beyond = n if abs(x - mean) > 6.0 * base["std"] else 0
    # _lerp(x, x, t) is x for x != 0 (a zero's sign depends on t)
    percentiles = dict.fromkeys(_PERCENTILE_KEYS, x) if x != 0 else _percentiles(n, lambda _rank: x)
    return TensorStats(**base, min=x, max=x, abs_max=abs(x), l2=l2, zeros=n if x == 0 else 0, nan=nan,
                       pos_inf=pos_inf, neg_inf=neg_inf, beyond_6_sigma=beyond, percentiles=percentiles,
                       hist_edges=_NO_EDGES, hist_counts=_NO_COUNTS, log_edges=_NO_EDGES, log_counts=_NO_COUNTS)


def _one_value_hist(x: float, n: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """_weighted_hist of ``n`` copies of ``x`` over [x, x]: one bisect instead of searchsorted and bincount."""
    first, last = x - 0.5, x + 0.5
    if bins <= 1024 and abs(x) < 2.0**40 and last - first == 1.0:  # linspace's own steps, without its checks:
        edges = _unit_steps(bins) + first  # these bounds keep edges finite and strictly increasing
        edges[-1] = last
    else:
        edges = hist_edges(x, x, bins)
    listed = edges.tolist()
    last = len(listed) - 2
    index = last if x == listed[-1] else bisect.bisect_right(listed, x) - 1
    counts = np.zeros(last + 1, dtype=np.int64)
    if 0 <= index <= last:
        counts[index] = int(float(n))  # as np.rint of the float64 bincount weight
    return edges, counts


@functools.lru_cache(maxsize=64)
def _unit_steps(bins: int) -> np.ndarray:
    """k * (1 / bins) for k = 0 ... bins, as np.linspace computes its steps over a range of width 1 (read-only)."""
    steps = np.arange(bins + 1, dtype=np.float64) * (1.0 / bins)
    steps.setflags(write=False)
    return steps


def hist_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """numpy's histogram edges for ``bins`` bins over [lo, hi]; where numpy gives up (a range wider than float64,
    or too narrow for distinct edges) equal steps computed without overflow, duplicates dropped."""
    first, last = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    if first < last and math.isfinite(first) and math.isfinite(last):  # numpy's own linspace, without its checks'
        with np.errstate(over="ignore", invalid="ignore"):  # Python overhead (tiny tensors: 60,000 of them)
            edges = np.linspace(first, last, bins + 1, endpoint=True, dtype=np.float64)
            if np.isfinite(edges).all() and (edges[1:] > edges[:-1]).all():
                return edges
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            edges = np.histogram_bin_edges(np.empty(0), bins=bins, range=(lo, hi))
        if np.isfinite(edges).all():
            return edges
    except ValueError:
        pass
    t = np.arange(bins + 1, dtype=np.float64) / bins
    edges = lo * (1.0 - t) + hi * t
    edges[0], edges[-1] = lo, hi
    return np.unique(edges)


def _weighted_hist(v: np.ndarray, c: np.ndarray, bins: int, rng: tuple[float, float] | None):
    if rng is None:
        return np.empty(0), np.empty(0, dtype=np.int64)
    edges = hist_edges(rng[0], rng[1], bins)
    # numpy's binning, bit for bit: bin i holds edges[i] <= v < edges[i+1], the last bin also its right edge,
    # values outside the edges dropped (np.histogram's own index corrections end at this same definition);
    # one searchsorted and one bincount instead of np.histogram's general machinery (a 60,000-tensor model).
    last = len(edges) - 2
    index = np.searchsorted(edges, v, side="right") - 1
    index[v == edges[-1]] = last
    keep = (index >= 0) & (index <= last)
    if not keep.all():
        index, c = index[keep], c[keep]
    counts = np.bincount(index, weights=c.astype(np.float64), minlength=last + 1)
    return edges, np.rint(counts).astype(np.int64)


def _log_hist(v: np.ndarray, c: np.ndarray, bins: int):
    keep = v != 0
    if not keep.any():
        return np.empty(0), np.empty(0, dtype=np.int64)
    lv = np.log10(np.abs(v[keep]))
    return _weighted_hist(lv, c[keep], bins, (float(lv.min()), float(lv.max())))


def _point_masses(s: FloatSummary) -> np.ndarray:
    """The exact values we hold (bottom and top K), without double counting when they overlap."""
    if s.n <= len(s.top):
        return s.top
    if s.n <= len(s.top) + len(s.bottom):
        return np.concatenate([s.bottom[: s.n - len(s.top)], s.top])
    return np.concatenate([s.bottom, s.top])


class _FloatCDF:
    """Cumulative count of a FloatSummary's finite values below x: exact point masses plus bf16 bins
    assumed uniform inside (clamped to [min, max])."""

    def __init__(self, s: FloatSummary) -> None:
        self.points = np.sort(_point_masses(s))
        rest = s.key_counts.copy()
        if len(self.points):
            np.subtract.at(rest, float_keys(self.points), 1)
        order = _key_order()
        lo_all, hi_all = _key_bounds()
        oc = rest[order]
        keep = oc > 0
        self.c = oc[keep].astype(np.float64)
        self.lo = np.clip(lo_all[keep], s.vmin, s.vmax)
        self.hi = np.clip(hi_all[keep], s.vmin, s.vmax)
        self.cum = np.concatenate([[0.0], np.cumsum(self.c)])

    def below(self, x: np.ndarray) -> np.ndarray:
        """Expected number of values < x (bins) plus exact point masses < x."""
        x = np.asarray(x, dtype=np.float64)
        j = np.searchsorted(self.hi, x, side="left")  # bins with hi < x are fully below
        full = self.cum[j]
        jj = np.minimum(j, len(self.c) - 1) if len(self.c) else j
        part = np.zeros_like(x)
        if len(self.c):
            inside = (j < len(self.c)) & (self.lo[jj] < x)
            width = self.hi[jj] - self.lo[jj]
            frac = np.where(width > 0, (x - self.lo[jj]) / np.where(width > 0, width, 1.0), 1.0)
            part = np.where(inside, self.c[jj] * np.clip(frac, 0.0, 1.0), 0.0)
        return full + part + np.searchsorted(self.points, x, side="left")


def _derive_float(s: FloatSummary, name: str, spec: HistSpec) -> TensorStats:
    n = s.n
    quant = next((d for d in s.dtypes if not _is_plain(d)), None)
    empty = np.empty(0)
    if n == 0:
        base = _common(name, s.dtypes, 0, 0.0, 0.0, 0.0, 0.0)
        return TensorStats(**base, min=math.nan, max=math.nan, abs_max=math.nan, l2=math.nan, zeros=s.zeros,
                           nan=s.nan, pos_inf=s.pos_inf, neg_inf=s.neg_inf, beyond_6_sigma=0,
                           percentiles=_percentiles(0, None), hist_edges=empty, hist_counts=empty.astype(np.int64),
                           log_edges=empty, log_counts=empty.astype(np.int64), quant_type=quant)
    if s.int_counts is not None:  # integers with a small range: counted value by value, exact
        nz = np.flatnonzero(s.int_counts)
        if abs(s.int_base) < 2**62:
            values = (nz + np.int64(s.int_base)).astype(np.float64)
        else:  # near the ends of U64/I64: exact Python integers, then rounded once to float64
            values = np.array([float(s.int_base + int(i)) for i in nz], dtype=np.float64)
        return _derive_weighted(name, s.dtypes, values, s.int_counts[nz], s.nan, s.pos_inf, s.neg_inf, spec)
    if n <= len(s.top) and max(-s.vmin, s.vmax) < SMALL_EXACT_LIMIT:  # every value is stored: exact from them
        if len(s.top) == 1:  # one value (60,000 one-value shards): np.unique's cost, spared
            values, counts = s.top, np.ones(1, dtype=np.int64)
        else:
            values, counts = np.unique(s.top, return_counts=True)
        out = _derive_weighted(name, s.dtypes, values, counts, s.nan, s.pos_inf, s.neg_inf, spec)
        out.quant_type = quant
        return out
    e = s.scale_exp
    var_s = s.m2 / n  # variance in scaled units; skewness and kurtosis do not depend on the scale
    base = _common(name, s.dtypes, n, _ldexp(s.mean, e), var_s, s.m3 / n, s.m4 / n)
    mean, std = base["mean"], _ldexp(math.sqrt(var_s), e)
    base["std"] = std
    l2 = _ldexp(math.sqrt(s.m2 + n * s.mean * s.mean), e)  # inf when the true norm is beyond float64
    cdf = _FloatCDF(s)
    beyond, exact = _float_beyond(s, mean, 6.0 * std)
    percentiles = _percentiles(n, lambda r: _float_rank_value(s, cdf, r))
    if any(_beyond_f32_rank(s, cdf, r) for lo, hi, _ in _quantile_positions(n) for r in (lo, hi)):
        exact = False  # a percentile among more than K F64 values beyond float32's range: a bound, not a value
    rng = spec.range or (s.vmin, s.vmax)
    edges = hist_edges(rng[0], rng[1], spec.bins)
    counts = _cdf_hist(cdf, edges)
    log_edges, log_counts = _float_log_hist(s, spec.log_bins)
    return TensorStats(**base, min=s.vmin, max=s.vmax, abs_max=max(abs(s.vmin), abs(s.vmax)), l2=l2, zeros=s.zeros,
                       nan=s.nan, pos_inf=s.pos_inf, neg_inf=s.neg_inf, beyond_6_sigma=beyond, percentiles=percentiles,
                       hist_edges=edges, hist_counts=counts, log_edges=log_edges, log_counts=log_counts, exact=exact,
                       quant_type=quant)


def _ldexp(x: float, e: int) -> float:
    """x * 2**e, infinite (not an exception) when the result is beyond float64."""
    try:
        return math.ldexp(x, e)
    except OverflowError:
        return math.copysign(math.inf, x)


def _is_plain(dtype: str) -> bool:
    from core import dtypes

    found = dtypes.lookup(dtype)
    return found is None or not found.is_quantized


def _float_beyond(s: FloatSummary, mean: float, width: float) -> tuple[int, bool]:
    """Values with |x - mean| > 6 sigma. Exact whenever each tail beyond the threshold holds fewer than K
    values (then all of them are among the K stored extremes); otherwise estimated from the bf16 bins
    (error at most the count of the one bf16 bin each threshold falls in) and marked inexact."""
    exact = True
    if s.n <= len(s.top) or s.top[0] - mean <= width:
        upper = int(np.count_nonzero(s.top - mean > width))
    else:
        exact = False
        upper = round(s.n - float(_FloatCDF(s).below(np.array([np.nextafter(mean + width, np.inf)]))[0]))
    source = s.top if s.n <= len(s.top) else s.bottom
    if s.n <= len(s.top) or mean - s.bottom[-1] <= width:
        lower = int(np.count_nonzero(mean - source > width))
    else:
        exact = False
        lower = round(float(_FloatCDF(s).below(np.array([mean - width]))[0]))
    return upper + lower, exact


def _float_rank_value(s: FloatSummary, cdf: _FloatCDF, r: int) -> float:
    """The value of rank r (0-based, ascending): exact inside the stored extremes, else to bf16 resolution
    (the bin's bound nearest zero, i.e. the bf16 rounding toward zero)."""
    if s.n <= len(s.top):
        return float(s.top[r])
    if r < len(s.bottom):
        return float(s.bottom[r])
    above = s.n - 1 - r
    if above < len(s.top):
        return float(s.top[len(s.top) - 1 - above])
    k = int(np.searchsorted(cdf.cum[1:], r - len(s.bottom), side="right"))
    k = min(k, len(cdf.c) - 1)
    lo, hi = cdf.lo[k], cdf.hi[k]
    value = hi if hi <= 0 else lo
    # ranks between the stored extremes lie between them: clamping keeps percentiles monotonic in rank
    return float(min(max(value, s.bottom[-1]), s.top[0]))


def _beyond_f32_rank(s: FloatSummary, cdf: _FloatCDF, r: int) -> bool:
    """Whether rank r is known only as 'an F64 value beyond float32's range' (not even to bf16 resolution)."""
    if s.n <= len(s.top) or r < len(s.bottom) or s.n - 1 - r < len(s.top) or not len(cdf.c):
        return False
    k = min(int(np.searchsorted(cdf.cum[1:], r - len(s.bottom), side="right")), len(cdf.c) - 1)
    return bool(cdf.hi[k] > F32_MAX or cdf.lo[k] < -F32_MAX)


def _cdf_hist(cdf: _FloatCDF, edges: np.ndarray) -> np.ndarray:
    """Integer counts per display bin: exact for the stored extremes, area-proportional inside bf16 bins."""
    points, _ = np.histogram(cdf.points, bins=edges)
    if not len(cdf.c):
        return points.astype(np.int64)
    at = edges.copy()
    at[-1] = np.nextafter(at[-1], np.inf)  # the last bin includes its right edge, as in numpy
    f = np.rint(cdf.below(at) - np.searchsorted(cdf.points, at, side="left"))
    return np.maximum(np.diff(f), 0).astype(np.int64) + points.astype(np.int64)


def _float_log_hist(s: FloatSummary, bins: int):
    """log10|w| histogram: bf16 bins at their geometric middle plus the exact extremes; zeros left out."""
    points = _point_masses(s)
    rest = s.key_counts.copy()
    if len(points):
        np.subtract.at(rest, float_keys(points), 1)
    zeros = s.zeros - int(np.count_nonzero(points == 0))
    take = min(zeros, int(rest[0]))
    rest[0] -= take
    rest[0x8000] -= min(zeros - take, int(rest[0x8000]))
    nz = np.flatnonzero(rest > 0)
    values = np.concatenate([_key_mid_magnitudes()[nz], np.abs(points)])
    weights = np.concatenate([rest[nz], np.ones(len(points), dtype=np.int64)])
    keep = values > 0
    return _log_hist(values[keep], weights[keep], bins)


@cache
def _key_mid_magnitudes() -> np.ndarray:
    """|w| at the geometric middle of each bf16 key bin (indexed by key)."""
    keys = np.arange(KEYS, dtype=np.uint32)
    with np.errstate(invalid="ignore"):  # NaN patterns; zeroed below
        lo = np.abs((keys << 16).view(np.float32).astype(np.float64))
        hi = np.abs(((keys << 16) | 0xFFFF).view(np.float32).astype(np.float64))
    with np.errstate(all="ignore"):
        mid = np.where(lo > 0, np.sqrt(lo * hi), hi / 2)
    mid[~np.isfinite(mid)] = 0.0
    return mid
