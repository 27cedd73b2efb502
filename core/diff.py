"""The comparison engine: what changed between two models, tensor by tensor, in one streaming pass.

``compare`` aligns the two models' tensors (core.name_map), then reads every aligned pair in chunks of
both files at once (never two whole tensors in memory) and yields a DiffProgress after every chunk;
between chunks it asks ``should_stop`` and raises CancelledError. Every chunk becomes a DiffSums of
float64 sums (BLAS dot products, numpy's pairwise sums) and Chan-merged mean and M2, so tensors, roles,
layers and the whole model merge exactly, never by re-reading.

Definitions: values are compared as decoded (BF16/F16/F8 widened, GGUF quants dequantised), in A's row
order and A's coordinates. A value is identical when the float64 bit patterns of the two (exactly
widened) values are equal: -0.0 against 0.0 is a change, the same NaN is not. Norms, cosine, moments and
the largest difference are over the positions where both values are finite (``nonfinite`` counts the
others). The SNR is reported for pairs with a quantised side, with the other side as the signal.
"""

from __future__ import annotations

import fnmatch
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core import dtypes
from core.checkpoint import Checkpoint, TensorInfo
from core.errors import CancelledError, CheckpointError
from core.name_map import AlignedPair, Alignment, align
from core.taxonomy import group_key, group_order

CHUNK_ELEMENTS = 1 << 21  # read per side and step: 8 MiB as float32
CACHE_ELEMENTS = 1 << 16  # compared in blocks of this many: their float64 temporaries stay in the CPU cache
BAND_READ_ELEMENTS = 1 << 21  # a column band's rows are read in spans of about this many elements
WIDE_BAND_ELEMENTS = 1 << 22  # a wide matrix's column band (every row) when its Gram is built: 32 MiB float64
NO_VALUES = "an architecture without weights (opened from its config.json): there are no values to compare"


@dataclass
class DiffSums:
    """Mergeable sums of one compared set of value pairs (a chunk, a tensor, a group)."""

    count: int = 0  # value pairs compared
    identical: int = 0  # bit-identical pairs
    nonfinite: int = 0  # pairs where a side is NaN or infinite (left out of everything below)
    n: int = 0  # finite pairs
    ss_a: float = 0.0
    ss_b: float = 0.0
    ss_d: float = 0.0
    s_ab: float = 0.0
    mean_a: float = 0.0
    m2_a: float = 0.0
    mean_b: float = 0.0
    m2_b: float = 0.0
    mean_d: float = 0.0
    m2_d: float = 0.0
    max_abs: float = -1.0  # -1: no finite pair yet
    max_tensor: str = ""
    max_at: tuple[int, ...] = ()
    ss_signal: float = 0.0  # pairs with a quantised side: energy of the reference side
    ss_noise: float = 0.0  # ... and of their difference
    quantised: int = 0  # tensors with a quantised side

    def merge(self, other: DiffSums) -> DiffSums:
        """The sums of both sets together (exact: sums add, moments combine pairwise)."""
        out = replace(self)
        out.count += other.count
        out.identical += other.identical
        out.nonfinite += other.nonfinite
        out.ss_a += other.ss_a
        out.ss_b += other.ss_b
        out.ss_d += other.ss_d
        out.s_ab += other.s_ab
        out.ss_signal += other.ss_signal
        out.ss_noise += other.ss_noise
        out.quantised += other.quantised
        n = self.n + other.n
        out.mean_a, out.m2_a = _chan(self.n, self.mean_a, self.m2_a, other.n, other.mean_a, other.m2_a)
        out.mean_b, out.m2_b = _chan(self.n, self.mean_b, self.m2_b, other.n, other.mean_b, other.m2_b)
        out.mean_d, out.m2_d = _chan(self.n, self.mean_d, self.m2_d, other.n, other.mean_d, other.m2_d)
        out.n = n
        if other.max_abs > self.max_abs or (other.max_abs == self.max_abs >= 0 and other.max_tensor == self.max_tensor
                                            and other.max_at < self.max_at):  # ties: the first place, in any order
            out.max_abs, out.max_tensor, out.max_at = other.max_abs, other.max_tensor, other.max_at
        return out


def _chan(na: int, ma: float, m2a: float, nb: int, mb: float, m2b: float) -> tuple[float, float]:
    """(mean, M2) of two disjoint sets from theirs (Chan, Golub, LeVeque)."""
    if nb == 0:
        return ma, m2a
    if na == 0:
        return mb, m2b
    n = na + nb
    delta = mb - ma
    return ma + delta * nb / n, m2a + m2b + delta * delta * na * nb / n


def chunk_sums(a: np.ndarray, b: np.ndarray) -> tuple[DiffSums, int]:
    """Sums of one chunk of value pairs (float64 arrays of equal length) and the flat index of its largest
    finite |b - a| within the chunk (-1 if none)."""
    out = DiffSums(count=int(a.size))
    out.identical = int(np.count_nonzero(a.view(np.uint64) == b.view(np.uint64)))
    finite = np.isfinite(a) & np.isfinite(b)
    positions: np.ndarray | None = None
    if not finite.all():
        positions = np.flatnonzero(finite)
        a, b = a[positions], b[positions]
        out.nonfinite = out.count - int(a.size)
    out.n = int(a.size)
    if not out.n:
        return out, -1
    with np.errstate(over="ignore", invalid="ignore"):  # F64 values near the limit may square to inf: data
        d = b - a
        out.ss_a, out.ss_b, out.ss_d, out.s_ab = _dot(a, a), _dot(b, b), _dot(d, d), _dot(a, b)
        out.mean_a, out.m2_a = _moments(a)
        out.mean_b, out.m2_b = _moments(b)
        out.mean_d, out.m2_d = _moments(d)
    magnitude = np.abs(d)
    at = int(np.argmax(magnitude))
    out.max_abs = float(magnitude[at])
    return out, int(positions[at]) if positions is not None else at


def _moments(x: np.ndarray) -> tuple[float, float]:
    mean = float(np.sum(x)) / x.size
    centred = x - mean
    return mean, _dot(centred, centred)


def _dot(x: np.ndarray, y: np.ndarray) -> float:
    """x . y in float64 without BLAS: OpenBLAS spreads even a 64 Ki-element dot over its threads, which on a
    busy machine made each one take 14 ms instead of 0.1 ms (einsum's own SIMD loop stays on this thread)."""
    return float(np.einsum("i,i->", x, y))


CANCELLATION = 1e-2  # M2 from sums loses digits as M2 / sum(x^2) falls: below this, centre the values first


def float32_block_sums(a32: np.ndarray, b32: np.ndarray) -> tuple[DiffSums, int] | None:
    """chunk_sums of float32 value pairs with fewer passes, or None if a value is NaN or infinite (then the
    general path). Float32 values widen exactly and never overflow float64 when squared or summed, so finite
    sums mean finite values; bit-identical float32 pairs are bit-identical when widened; M2 comes from
    sum(x^2) - sum(x) * mean unless that cancels (CANCELLATION), and the largest |d| from argmax and argmin.
    The float64 arrays live in this thread's scratch buffers: a fresh 512 KiB array per block is mapped and
    faulted in by the allocator every time, which measured costlier than all the arithmetic."""
    n = int(a32.size)
    a, b, d = _scratch(n)
    np.copyto(a, a32)
    np.copyto(b, b32)
    sa, sb = float(np.sum(a)), float(np.sum(b))
    if not (math.isfinite(sa) and math.isfinite(sb)):
        return None
    out = DiffSums(count=n, n=n, identical=int(np.count_nonzero(a32.view(np.uint32) == b32.view(np.uint32))))
    np.subtract(b, a, out=d)
    sd = float(np.sum(d))
    out.ss_a, out.ss_b, out.ss_d, out.s_ab = _dot(a, a), _dot(b, b), _dot(d, d), _dot(a, b)
    out.mean_a, out.m2_a = _m2(a, sa, out.ss_a)
    out.mean_b, out.m2_b = _m2(b, sb, out.ss_b)
    out.mean_d, out.m2_d = _m2(d, sd, out.ss_d)
    hi, lo = int(np.argmax(d)), int(np.argmin(d))
    up, down = float(d[hi]), -float(d[lo])
    at = hi if up > down or (up == down and hi < lo) else lo
    out.max_abs = max(up, down)
    return out, at


_local = threading.local()


def _scratch(n: int, kind: str = "float64", rows: int = 3) -> np.ndarray:
    """This thread's ``rows`` scratch rows of ``kind``, ``n`` long (the same memory from block to block)."""
    buf = getattr(_local, kind, None)
    if buf is None or buf.shape[1] < n:
        buf = np.empty((rows, max(n, CACHE_ELEMENTS)), np.dtype(kind))
        setattr(_local, kind, buf)
    return buf[:, :n]


def _m2(x: np.ndarray, total: float, squares: float) -> tuple[float, float]:
    mean = total / x.size
    m2 = squares - total * mean
    if m2 > CANCELLATION * squares:
        return mean, m2
    return _moments(x)


def metrics(s: DiffSums) -> dict[str, Any]:
    """The figures a person reads, from sums: NaN where a figure is undefined (JSON turns it into "NaN")."""
    nan = math.nan
    norm_a, norm_b = math.sqrt(s.ss_a), math.sqrt(s.ss_b)
    if s.n == 0:
        rel = cosine = nan
    else:
        rel = math.sqrt(s.ss_d) / norm_a if norm_a else (0.0 if s.ss_d == 0 else math.inf)
        cosine = _cosine(s, norm_a, norm_b)
    snr = nan
    if s.quantised:
        snr = 10 * math.log10(s.ss_signal / s.ss_noise) if s.ss_noise else (math.inf if s.ss_signal else nan)
    return {
        "rel_change": rel,
        "cosine": cosine,
        "max_abs_diff": s.max_abs if s.max_abs >= 0 else nan,
        "max_abs_diff_at": list(s.max_at) if s.max_abs >= 0 else None,
        "max_abs_diff_tensor": s.max_tensor if s.max_abs >= 0 else None,
        "identical_fraction": s.identical / s.count if s.count else nan,
        "snr_db": snr,
        "mean_a": s.mean_a if s.n else nan,
        "mean_b": s.mean_b if s.n else nan,
        "std_a": math.sqrt(s.m2_a / s.n) if s.n else nan,
        "std_b": math.sqrt(s.m2_b / s.n) if s.n else nan,
        "mean_diff": s.mean_d if s.n else nan,
        "std_diff": math.sqrt(s.m2_d / s.n) if s.n else nan,
        "count": s.count,
        "nonfinite": s.nonfinite,
    }


def _cosine(s: DiffSums, norm_a: float, norm_b: float) -> float:
    if s.ss_d == 0:  # equal vectors: exactly 1, not a rounding of s_ab / (|a| |b|) just below it
        return 1.0
    return min(1.0, max(-1.0, s.s_ab / (norm_a * norm_b))) if norm_a and norm_b else math.nan


@dataclass
class TensorDiff:
    """One compared pair: A's name and record, B's, and their sums."""

    a: TensorInfo
    b: TensorInfo
    sums: DiffSums
    top_singular_values: list[float] | None = None  # of B - A, largest first (compare(rank=True), 2-D pairs)
    rank90: int | None = None  # fewest singular directions holding 90% of ||B - A||_F^2 (0: no change)
    rank_note: str | None = None  # why the two above are None although rank was asked for

    @property
    def name(self) -> str:
        return self.a.name


@dataclass
class DiffResult:
    """The comparison so far; ``tensors`` only grows, so another thread may read it during the run."""

    a: str
    b: str
    only_in_a: list[str]
    only_in_b: list[str]
    mismatched: list[dict[str, Any]]
    tensors: dict[str, TensorDiff] = field(default_factory=dict)
    seconds: float = 0.0
    bytes_read: int = 0
    device: str = "cpu"  # where the rank's Gram arithmetic ran ("cpu": numpy; "cuda", "mps"; "torch-cpu": tests)
    rank: bool = False  # whether singular values were asked for
    cached: bool = False  # served from the on-disk cache (core.diff_cache): no tensor data read
    notes: list[str] = field(default_factory=list)  # plain-text lines about the alignment (merged experts ...)

    def group(self, by: str) -> list[tuple[str, DiffSums]]:
        """Exact merges of the compared tensors per ``role`` or ``layer`` (in A's naming), or the ``model``."""
        if by == "model":
            model = self.model()
            return [] if model is None else [("model", model)]
        buckets: dict[str, DiffSums] = {}
        for td in list(self.tensors.values()):
            key = group_key(td.a, by)
            buckets[key] = buckets[key].merge(td.sums) if key in buckets else td.sums
        keys = sorted(buckets, key=group_order) if by == "layer" else sorted(buckets)
        return [(k, buckets[k]) for k in keys]

    def model(self) -> DiffSums | None:
        out: DiffSums | None = None
        for td in list(self.tensors.values()):
            out = td.sums if out is None else out.merge(td.sums)
        return out


@dataclass
class DiffProgress:
    """Yielded after every chunk of a pair; ``result`` is the live result."""

    bytes_done: int
    bytes_total: int
    tensor: str
    tensor_done: bool
    result: DiffResult

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 1.0


def select_pairs(alignment: Alignment, names: Iterable[str] = (), pattern: str | None = None) -> Alignment:
    """The pairs (and unpaired names) named by ``names`` (A's or B's name; each must exist) and matching
    ``pattern`` (a glob on either name); neither means everything."""
    names = list(names)
    if not names and pattern is None:
        return alignment
    known = {n for p in alignment.pairs for n in (p.a.name, p.b.name)} | set(alignment.only_in_a) \
        | set(alignment.only_in_b)
    for name in names:
        if name not in known:
            raise CheckpointError(f"no tensor named {name[:200]!r} in either model")
    wanted = set(names)

    def keep(*candidates: str) -> bool:
        if wanted and not wanted.intersection(candidates):
            return False
        return pattern is None or any(fnmatch.fnmatchcase(c, pattern) for c in candidates)

    out = Alignment([p for p in alignment.pairs if keep(p.a.name, p.b.name)],
                    [n for n in alignment.only_in_a if keep(n)], [n for n in alignment.only_in_b if keep(n)],
                    list(alignment.notes))
    if pattern is not None and not (out.pairs or out.only_in_a or out.only_in_b):
        raise CheckpointError(f"no tensor name matches {pattern[:200]!r}")
    return out


def why_not_compared(pair: AlignedPair) -> str | None:
    """None, or why an aligned pair's values are not compared."""
    from core.stats import why_not_analyzable

    if pair.a.shape != pair.b.shape:
        return f"shapes differ: {list(pair.a.shape)} in A, {list(pair.b.shape)} in B"
    for side, t in (("A", pair.a), ("B", pair.b)):
        why = why_not_analyzable(t)
        if why is not None:
            return f"{why} in {side}"
    return None


def _mismatch(pair: AlignedPair, reason: str | None) -> dict[str, Any] | None:
    if reason is None and pair.a.dtype == pair.b.dtype:
        return None
    return {"a": pair.a.name, "b": pair.b.name, "a_shape": list(pair.a.shape), "b_shape": list(pair.b.shape),
            "a_dtype": pair.a.dtype, "b_dtype": pair.b.dtype, "compared": reason is None,
            "reason": reason or "dtypes differ: compared as decoded values"}


def compare(
    a: Checkpoint | str | os.PathLike[str],
    b: Checkpoint | str | os.PathLike[str],
    names: Iterable[str] = (),
    pattern: str | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
    rank: bool = False,
    device: str = "auto",
    cache: Any = None,
    gram_impl: str | None = None,
) -> Generator[DiffProgress, None, DiffResult]:
    """Stream the comparison of A and B; the generator's return value is the DiffResult
    (``result = yield from compare(...)``, or see ``run``). Raises CancelledError within one chunk after
    ``should_stop()`` turns true, CheckpointError for a model without values.

    ``rank``: also the top singular values and rank90 of every 2-D pair's difference (core.diff_rank), with
    the Gram arithmetic on ``device`` (auto: CUDA or MPS when present, else numpy on the CPU; DeviceError if
    absent). ``cache``: a core.diff_cache.DiffCache to look the result up in and store it to (None: neither).
    ``gram_impl="torch"`` runs torch's Gram code on the CPU (agreement tests)."""
    opened: list[Checkpoint] = []
    engine: Any = None
    try:
        ca, cb = (_open(x, opened) for x in (a, b))
        for c in (ca, cb):
            if c.format == "config":
                raise CheckpointError(f"{c.path!r} is {NO_VALUES}")
        names = list(names)
        chosen = select_pairs(align(ca, cb), names, pattern)
        if rank:
            from core.diff_rank import make_engine

            engine = make_engine(device, gram_impl)
        label = _device_label(engine)
        result = DiffResult(ca.path, cb.path, chosen.only_in_a, chosen.only_in_b, [], device=label, rank=rank,
                            notes=list(chosen.notes))
        todo: list[AlignedPair] = []
        for pair in chosen.pairs:
            reason = why_not_compared(pair)
            entry = _mismatch(pair, reason)
            if entry is not None:
                result.mismatched.append(entry)
            if reason is None:
                todo.append(pair)
        key = cache.key(ca, cb, names, pattern, rank, label) if cache is not None else None
        hit = cache.get(key, todo) if key is not None else None
        if hit is not None:
            result.tensors, result.cached = hit, True
            yield DiffProgress(0, 0, "", True, result)
            return result
        result = yield from _run(ca, cb, todo, result, should_stop, max(1, int(chunk_elements)), engine)
        if key is not None:
            cache.put(key, result, ca, cb)
        return result
    finally:
        if engine is not None:
            engine.close()
        for c in opened:
            c.close()


def _device_label(engine: Any) -> str:
    """Where the rank's arithmetic runs: "cpu" (numpy, also without rank), "cuda", "mps", "torch-cpu"."""
    from core.gram import NumpyGram

    if engine is None or isinstance(engine, NumpyGram):
        return "cpu"
    return "torch-cpu" if engine.label == "cpu" else str(engine.label)


def _open(x: Checkpoint | str | os.PathLike[str], opened: list[Checkpoint]) -> Checkpoint:
    if isinstance(x, Checkpoint):
        return x
    from core.formats import open_checkpoint

    c = open_checkpoint(os.fspath(x))
    opened.append(c)
    return c


def run(a: Checkpoint | str | os.PathLike[str], b: Checkpoint | str | os.PathLike[str], names: Iterable[str] = (),
        pattern: str | None = None, **kwargs: Any) -> DiffResult:
    """``compare`` without progress: drain the generator and return the result."""
    gen = compare(a, b, names, pattern, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _run(ca: Checkpoint, cb: Checkpoint, pairs: list[AlignedPair], result: DiffResult,
         should_stop: Callable[[], bool] | None, chunk_elements: int,
         engine: Any = None) -> Generator[DiffProgress, None, DiffResult]:
    start_time = time.perf_counter()
    total = sum(p.a.nbytes + p.b.nbytes for p in pairs)
    done = 0
    ranked = [engine is not None and _why_no_rank(p.a) is None for p in pairs]
    work = ((i, piece) for i, pair in enumerate(pairs) for piece in _pieces(pair, chunk_elements, ranked[i]))
    current, first, elements, gram, note, sums = -1, 0, 0, None, None, DiffSums()
    for i, piece in work:  # reading the next piece on a thread of its own measured no quicker: both cores are busy
        pair = pairs[i]
        if i != current:
            current, first, elements = i, 0, pair.a.elements
            sums = DiffSums(quantised=int(_quantised(pair.a) or _quantised(pair.b)), max_tensor=pair.a.name)
            gram, note = _gram_for(pair, engine)
        if should_stop is not None and should_stop():
            result.seconds = time.perf_counter() - start_time
            raise CancelledError("comparison cancelled")
        a, b = _load(ca, cb, pair, piece)
        part, d = _summarise(pair, piece, a, b, gram is not None)
        sums = sums.merge(part)
        if gram is not None and d is not None:
            if np.isfinite(d).all():
                gram.add(d)
            else:
                gram, note = None, "NaN or infinite values: the difference has no finite singular values"
        count = part.count
        first += count
        last = first >= elements
        nbytes = _range_bytes(pair.a, first - count, first) + _range_bytes(pair.b, first - count, first)
        done += nbytes
        result.bytes_read += nbytes
        if last:
            top, r90 = gram.finish() if gram is not None else (None, None)
            result.tensors[pair.a.name] = TensorDiff(pair.a, pair.b, sums, top, r90,
                                                     note if engine is not None and gram is None else None)
        result.seconds = time.perf_counter() - start_time
        yield DiffProgress(done, total, pair.a.name, last, result)
    return result


def _why_no_rank(t: TensorInfo) -> str | None:
    from core.diff_rank import why_no_rank

    return why_no_rank(t)


def _gram_for(pair: AlignedPair, engine: Any) -> tuple[Any, str | None]:
    """The Gram accumulator of a pair's difference, or None and why not (None, None without --rank)."""
    if engine is None:
        return None, None
    from core.diff_rank import DiffGram

    note = _why_no_rank(pair.a)
    return (None, note) if note is not None else (DiffGram(engine, pair.a), None)


def _pieces(pair: AlignedPair, chunk_elements: int, ranked: bool) -> list[tuple[str, int, int]]:
    """The pair's reads in order: ("flat", first, count) element ranges (whole rows when ``ranked``), or
    ("band", c0, c1) column bands of every row (a wide matrix whose difference gets a Gram); a tensor without
    elements is one empty piece."""
    elements = pair.a.elements
    if elements == 0:
        return [("flat", 0, 0)]
    if ranked and pair.a.shape[0] < pair.a.shape[1]:
        rows, cols = pair.a.shape
        width = _band_width(pair, max(1, WIDE_BAND_ELEMENTS // rows))
        return [("band", c0, min(cols, c0 + width)) for c0 in range(0, cols, width)]
    step, _ = _step(pair, chunk_elements, whole_rows=ranked)
    return [("flat", first, min(step, elements - first)) for first in range(0, elements, step)]


def _band_width(pair: AlignedPair, width: int) -> int:
    """A band width in whole quantisation blocks where it can be (each row's read then decodes only its own)."""
    block = max(dtypes.get(pair.a.dtype).block_size, dtypes.get(pair.b.dtype).block_size)
    return width if block <= 1 or width < block else width // block * block


def _quantised(t: TensorInfo) -> bool:
    return dtypes.get(t.dtype).is_quantized


def _step(pair: AlignedPair, chunk_elements: int, whole_rows: bool = False) -> tuple[int, int]:
    """Elements per chunk, and the elements of one permuted row block (0: no permutation); a chunk holds
    whole row blocks, so B's rows of the chunk are A's rows of the chunk, reordered (and whole rows when
    ``whole_rows``: a tall matrix's Gram adds whole rows)."""
    if pair.b_rows is None:
        if not whole_rows:
            return chunk_elements, 0
        width = math.prod(pair.a.shape[1:])
        return max(1, chunk_elements // max(1, width)) * width, 0
    block = len(pair.b_rows) * math.prod(pair.a.shape[1:])
    return max(1, chunk_elements // max(1, block)) * block, block


def _load(ca: Checkpoint, cb: Checkpoint, pair: AlignedPair, piece: tuple[str, int, int]) -> tuple[Any, Any]:
    """Both sides' values of one piece as ``_read`` gives them, B's rows already in A's order; (None, None) for
    an empty piece."""
    kind, lo, hi = piece
    if kind == "flat" and hi == 0:
        return None, None
    if kind == "flat":
        a, b = _read(ca, pair.a, lo, hi), _read(cb, pair.b, lo, hi)
        _, row_block = _step(pair, hi)
        if pair.b_rows is not None and row_block:
            rows = np.asarray(pair.b_rows)
            b = b.reshape(-1, len(rows), row_block // len(rows))[:, rows, :].reshape(-1)
        return a, b
    rows, cols = pair.a.shape
    a, b = _read_band(ca, pair.a, rows, cols, lo, hi), _read_band(cb, pair.b, rows, cols, lo, hi)
    if pair.b_rows is not None:
        b = b[_full_row_order(pair.b_rows, rows)]
    return a, b


def _summarise(pair: AlignedPair, piece: tuple[str, int, int], a: Any, b: Any,
               with_difference: bool) -> tuple[DiffSums, np.ndarray | None]:
    """The sums of one loaded piece, and (``with_difference``) its difference B - A in float64, shaped as the
    Gram takes it: whole rows (rows x cols) or a column band (rows x band)."""
    kind, lo, hi = piece
    if a is None:
        return DiffSums(), None
    a_bf16, b_bf16 = pair.a.dtype == "BF16", pair.b.dtype == "BF16"  # bit patterns, decoded per block
    if kind == "flat":
        shape = pair.a.shape
        sums = _sums(a, b, pair, lambda at: np.unravel_index(lo + at, shape) if shape else ())
        if not with_difference:
            return sums, None
        return sums, _difference(a, b, a_bf16, b_bf16).reshape(-1, pair.a.shape[1])
    width = hi - lo
    sums = _sums(a.reshape(-1), b.reshape(-1), pair, lambda at: (at // width, lo + at % width))
    return sums, _difference(a, b, a_bf16, b_bf16) if with_difference else None


def _read(c: Checkpoint, t: TensorInfo, start: int, count: int) -> np.ndarray:
    """Elements as ``_sums`` takes them: BF16 as its bit patterns (decoded later, block by block, in
    threads), everything else decoded."""
    return c.read_raw(t, start, count) if t.dtype == "BF16" else c.read(t, start, count)


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    out = np.empty(bits.shape, np.uint32)
    np.left_shift(bits, 16, out=out, dtype=np.uint32)  # one pass: widen and shift in the same loop
    return out.view(np.float32)


def _as_float32(x: np.ndarray, bf16: bool, out: np.ndarray) -> np.ndarray:
    """``x`` as float32 (BF16 bit patterns decoded, float16 widened) in ``out``, or ``x`` itself if float32."""
    if bf16:
        np.left_shift(x, 16, out=out.view(np.uint32), dtype=np.uint32)
        return out
    if x.dtype == np.float32:
        return x
    np.copyto(out, x)
    return out


def _difference(a: np.ndarray, b: np.ndarray, a_bf16: bool, b_bf16: bool) -> np.ndarray:
    """B - A in float64."""
    a = _bf16_to_f32(a) if a_bf16 else a
    b = _bf16_to_f32(b) if b_bf16 else b
    return b.astype(np.float64) - a.astype(np.float64)


def _read_band(c: Checkpoint, t: TensorInfo, rows: int, cols: int, c0: int, c1: int) -> np.ndarray:
    """Columns [c0, c1) of every row of a 2-D tensor, as ``_read`` gives them. A few rows at a time are read as
    one contiguous span from the band's first column in the first row to its last in the last, and the band
    taken from it: reading the columns between costs less than a read call per row (25 us each)."""
    width = c1 - c0
    step = max(1, BAND_READ_ELEMENTS // cols)
    out: np.ndarray | None = None
    for r0 in range(0, rows, step):
        count = min(step, rows - r0)
        span = _read(c, t, r0 * cols + c0, (count - 1) * cols + width)
        if out is None:
            out = np.empty((rows, width), dtype=span.dtype)
        item = span.itemsize
        out[r0:r0 + count] = np.lib.stride_tricks.as_strided(span, (count, width), (cols * item, item),
                                                              writeable=False)
    assert out is not None
    return out


def _full_row_order(b_rows: tuple[int, ...], rows: int) -> np.ndarray:
    """B's row for each of A's rows, over the whole matrix (b_rows repeated per head)."""
    head = len(b_rows)
    return (np.arange(0, rows, head)[:, None] + np.asarray(b_rows)[None, :]).reshape(-1)


def _sums(a: np.ndarray, b: np.ndarray, pair: AlignedPair, coords: Callable[[int], Any]) -> DiffSums:
    """DiffSums of decoded value pairs, in cache-sized float64 blocks; ``coords`` turns a flat index of the
    piece into the tensor coordinates of the largest difference."""
    sums = DiffSums()
    blocks = _block_sums(a, b, pair.a.dtype == "BF16", pair.b.dtype == "BF16")
    for start, (part, at) in zip(range(0, a.size, CACHE_ELEMENTS), blocks, strict=True):
        if at >= 0:
            part.max_tensor = pair.a.name
            part.max_at = tuple(int(i) for i in coords(start + at))
        sums = sums.merge(part)
    if sums.n and (_quantised(pair.a) or _quantised(pair.b)):
        sums.ss_signal = sums.ss_b if _quantised(pair.a) and not _quantised(pair.b) else sums.ss_a
        sums.ss_noise = sums.ss_d
    return sums


def _block_sums(a: np.ndarray, b: np.ndarray, a_bf16: bool = False, b_bf16: bool = False) -> list[tuple[DiffSums, int]]:
    """The sums of every cache-sized block of the pairs, in block order (float64 work in blocks that stay in
    the CPU cache: 3x quicker than whole chunks). Two threads take alternate halves when there is enough
    work (numpy releases the GIL); the list is in block order whatever the timing, so results never depend
    on it. ``a_bf16``, ``b_bf16``: that side holds BF16 bit patterns."""
    starts = list(range(0, a.size, CACHE_ELEMENTS))
    fast = (a_bf16 or a.dtype in _WIDEN_TO_32) and (b_bf16 or b.dtype in _WIDEN_TO_32)

    def one(start: int) -> tuple[DiffSums, int]:
        a_part, b_part = a[start:start + CACHE_ELEMENTS], b[start:start + CACHE_ELEMENTS]
        if not fast:
            return chunk_sums(a_part.astype(np.float64), b_part.astype(np.float64))
        wide = _scratch(a_part.size, "float32", 2)
        a_part, b_part = _as_float32(a_part, a_bf16, wide[0]), _as_float32(b_part, b_bf16, wide[1])
        got = float32_block_sums(a_part, b_part)
        return got if got is not None else chunk_sums(a_part.astype(np.float64), b_part.astype(np.float64))

    def run_span(span: list[int]) -> list[tuple[DiffSums, int]]:
        return [one(s) for s in span]

    if len(starts) < 2 * THREADED_BLOCKS:
        return run_span(starts)
    half = len(starts) // 2
    second = _pool().submit(run_span, starts[half:])
    return run_span(starts[:half]) + second.result()


_WIDEN_TO_32 = (np.dtype(np.float32), np.dtype(np.float16))  # exact in float32: the float32 path takes them
THREADED_BLOCKS = 4  # a chunk of fewer blocks per thread is done on this thread alone
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """One helper thread for the process (the caller's thread is the other)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(1, thread_name_prefix="diff-sums")
    return _POOL


def _range_bytes(t: TensorInfo, first: int, end: int) -> int:
    if t.elements == 0:
        return 0
    return t.nbytes * end // t.elements - t.nbytes * first // t.elements
