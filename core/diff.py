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
import time
from collections.abc import Callable, Generator, Iterable
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
        if other.max_abs > self.max_abs:
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
        out.ss_a, out.ss_b, out.ss_d, out.s_ab = float(a @ a), float(b @ b), float(d @ d), float(a @ b)
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
    return mean, float(centred @ centred)


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
                    [n for n in alignment.only_in_a if keep(n)], [n for n in alignment.only_in_b if keep(n)])
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
) -> Generator[DiffProgress, None, DiffResult]:
    """Stream the comparison of A and B; the generator's return value is the DiffResult
    (``result = yield from compare(...)``, or see ``run``). Raises CancelledError within one chunk after
    ``should_stop()`` turns true, CheckpointError for a model without values."""
    opened: list[Checkpoint] = []
    try:
        ca, cb = (_open(x, opened) for x in (a, b))
        for c in (ca, cb):
            if c.format == "config":
                raise CheckpointError(f"{c.path!r} is {NO_VALUES}")
        chosen = select_pairs(align(ca, cb), names, pattern)
        result = DiffResult(ca.path, cb.path, chosen.only_in_a, chosen.only_in_b, [])
        todo: list[AlignedPair] = []
        for pair in chosen.pairs:
            reason = why_not_compared(pair)
            entry = _mismatch(pair, reason)
            if entry is not None:
                result.mismatched.append(entry)
            if reason is None:
                todo.append(pair)
        return (yield from _run(ca, cb, todo, result, should_stop, max(1, int(chunk_elements))))
    finally:
        for c in opened:
            c.close()


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
         should_stop: Callable[[], bool] | None, chunk_elements: int) -> Generator[DiffProgress, None, DiffResult]:
    start_time = time.perf_counter()
    total = sum(p.a.nbytes + p.b.nbytes for p in pairs)
    done = 0
    for pair in pairs:
        sums = DiffSums(quantised=int(_quantised(pair.a) or _quantised(pair.b)), max_tensor=pair.a.name)
        elements = pair.a.elements
        step, row_block = _step(pair, chunk_elements)
        first = 0
        while True:
            if should_stop is not None and should_stop():
                result.seconds = time.perf_counter() - start_time
                raise CancelledError("comparison cancelled")
            count = min(step, elements - first)
            if count > 0:
                sums = sums.merge(_pair_chunk(ca, cb, pair, first, count, row_block))
            first += count
            last = first >= elements
            nbytes = _range_bytes(pair.a, first - count, first) + _range_bytes(pair.b, first - count, first)
            done += nbytes
            result.bytes_read += nbytes
            if last:
                result.tensors[pair.a.name] = TensorDiff(pair.a, pair.b, sums)
            result.seconds = time.perf_counter() - start_time
            yield DiffProgress(done, total, pair.a.name, last, result)
            if last:
                break
    return result


def _quantised(t: TensorInfo) -> bool:
    return dtypes.get(t.dtype).is_quantized


def _step(pair: AlignedPair, chunk_elements: int) -> tuple[int, int]:
    """Elements per chunk, and the elements of one permuted row block (0: no permutation); a chunk holds
    whole row blocks, so B's rows of the chunk are A's rows of the chunk, reordered."""
    if pair.b_rows is None:
        return chunk_elements, 0
    block = len(pair.b_rows) * math.prod(pair.a.shape[1:])
    return max(1, chunk_elements // max(1, block)) * block, block


def _pair_chunk(ca: Checkpoint, cb: Checkpoint, pair: AlignedPair, first: int, count: int,
                row_block: int) -> DiffSums:
    a = ca.read(pair.a, first, count)
    b = cb.read(pair.b, first, count)
    if pair.b_rows is not None and row_block:
        rows = np.asarray(pair.b_rows)
        b = b.reshape(-1, len(rows), row_block // len(rows))[:, rows, :].reshape(-1)
    sums = DiffSums()
    for start in range(0, count, CACHE_ELEMENTS):  # float64 work in cache-sized blocks: 3x quicker than whole
        part, at = chunk_sums(a[start:start + CACHE_ELEMENTS].astype(np.float64),
                              b[start:start + CACHE_ELEMENTS].astype(np.float64))
        if at >= 0:
            part.max_tensor = pair.a.name
            part.max_at = tuple(int(i) for i in np.unravel_index(first + start + at, pair.a.shape)) \
                if pair.a.shape else ()
        sums = sums.merge(part)
    if sums.n and (_quantised(pair.a) or _quantised(pair.b)):
        sums.ss_signal = sums.ss_b if _quantised(pair.a) and not _quantised(pair.b) else sums.ss_a
        sums.ss_noise = sums.ss_d
    return sums


def _range_bytes(t: TensorInfo, first: int, end: int) -> int:
    if t.elements == 0:
        return 0
    return t.nbytes * end // t.elements - t.nbytes * first // t.elements
