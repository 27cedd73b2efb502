"""The statistics engine: one streaming pass over a model's tensors, as a generator the GUI can drive.

``analyze`` reads each tensor in chunks of about ``chunk_bytes`` (the backend reads
each chunk in parallel blocks into per-thread buffers it reuses), turns every chunk
into an exact, mergeable summary (core.stats_summary), and yields an
AnalysisProgress after every chunk and at every tensor's end. Between chunks it
asks ``should_stop`` and raises CancelledError, so a Cancel button takes effect
within one chunk. Finished tensors' summaries are cached on disk
(core.stats_cache): a second look at a model reads no tensor data at all.

Group and model statistics are exact merges of per-tensor summaries, never re-reads.
torch is imported only when a tensor actually has to be read.
"""

from __future__ import annotations

import collections
import copy
import functools
import json
import math
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np

from core import dtypes, one_element
from core.checkpoint import DEFAULT_CHUNK_BYTES, Checkpoint, TensorInfo
from core.errors import CancelledError, CheckpointError
from core.stats_summary import (
    FloatSummary,
    HistSpec,
    PatternSummary,
    Summary,
    TensorStats,
    derive,
    merge,
    merge_all,
)

NO_VALUES = ("an architecture without weights (opened from its config.json): there are no values to analyse; "
             "`info` and `memory` describe it")
CACHED_DEVICE_LABEL = "cache"  # AnalysisResult.device when every summary came from the cache
EMPTY_RUN_REPORT = 4096  # a run of empty tensors (nothing to read) reports progress once per this many and at its end
NOTHING_READ_LABEL = "none"  # AnalysisResult.device when every tensor analysed was empty: nothing was computed


@dataclass
class AnalysisResult:
    """Summaries of the tensors analysed so far, and how they were computed.

    ``summaries`` only ever grows (a finished summary is never changed), so the GUI
    thread may read it while the worker is still analysing.
    """

    device: str
    seconds: float = 0.0
    bytes_read: int = 0
    summaries: dict[str, Summary] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # tensor name -> why it has no statistics

    def stats(self, name: str, spec: HistSpec = HistSpec()) -> TensorStats:
        """Statistics of one analysed tensor (KeyError if it was not analysed, e.g. complex)."""
        summary = self.summaries[name]
        if _is_shared_empty(summary):  # derived once per dtype, not once per empty tensor
            return _renamed(_derived_empty(summary.dtypes[0], spec), name)
        return _with_quant_info(derive(summary, name, spec))

    def stats_json_text(self, name: str, spec: HistSpec = HistSpec()) -> str:
        """``json.dumps(stats_to_json(self.stats(name, spec)))``, made from a template for the shared empty
        summaries: a header of a million empty tensors is written in seconds, not minutes."""
        return next(self.json_texts([name], spec))

    def json_texts(self, names: Iterable[str], spec: HistSpec, keep: dict[str, TensorStats] | None = None
                   ) -> Iterator[str]:
        """stats_json_text of each analysed name in turn; with ``keep``, the statistics of those holding values
        are kept there, histograms dropped (the findings need the figures, not the plots)."""
        for batch in self.json_text_batches(list(names), spec, keep):
            yield from batch

    def json_text_batches(self, names: list[str], spec: HistSpec, keep: dict[str, TensorStats] | None = None,
                          size: int = 256) -> Iterator[list[str]]:
        """json_texts in lists of up to ``size`` (one generator step per list, not per tensor). A million empty
        tensors: one template per dtype, the name spliced in."""
        from core.one_value_json import histogram_texts, one_value, one_value_stats, one_value_text

        summaries = self.summaries
        nothing = np.empty(0)
        # the shared empty summaries' JSON after the name, by the summary's id: one lookup per empty tensor
        tails = {id(summary): _empty_json_tail(dtype, spec) for dtype, summary in _SHARED_EMPTY_BY_DTYPE.items()}
        batched = spec.range is None  # one-value tensors' histograms made for the whole list at once
        for start in range(0, len(names), size):
            out: list[str] = []
            ones: list[tuple[int, TensorStats]] = []
            values: list[float] = []
            counts: list[int] = []
            for name in names[start : start + size]:
                summary = summaries.get(name)
                if summary is None:
                    continue
                tail = tails.get(id(summary))
                if tail is not None:
                    out.append('{"name": ' + encode_basestring_ascii(name) + tail)
                    continue
                one = one_value(summary) if batched else None
                if one is not None:
                    ts = one_value_stats(name, summary, *one)
                    ones.append((len(out), ts))
                    values.append(one[0])
                    counts.append(one[1])
                    out.append("")
                    if keep is not None:
                        keep[name] = ts  # its histograms are empty already
                    continue
                ts = self.stats(name, spec)
                out.append(stats_json_text(ts))
                if keep is not None and summary.total > 0:
                    ts.hist_edges = ts.log_edges = nothing
                    ts.hist_counts = ts.log_counts = nothing
                    keep[name] = ts
            if ones:
                for (i, ts), x, texts in zip(ones, values, histogram_texts(values, counts, spec), strict=True):
                    out[i] = one_value_text(ts, x, texts)
            yield out

    def group(self, names: Iterable[str], label: str, spec: HistSpec = HistSpec()) -> TensorStats | None:
        """Exact statistics of the named tensors together (those not analysed are skipped); None if none were."""
        found = [s for s in (self.summaries.get(n) for n in names) if s is not None]
        merged = merge_all(_without_repeated_empties(found))
        if merged is None:
            return None
        out = _with_quant_info(derive(merged, label, spec))
        out.tensors = len(found)
        return out

    def model(self, spec: HistSpec = HistSpec()) -> TensorStats | None:
        """Statistics over every floating-point tensor (quantised ones included, as their dequantised values)."""
        values = list(self.summaries.values())  # one atomic copy: safe while the worker adds summaries
        uses = collections.Counter(map(id, values))  # only the shared empty summaries are used more than once
        floats = [s for s in {id(s): s for s in values}.values() if is_float_summary(s)]
        merged = merge_all(floats)
        if merged is None:
            return None
        out = _with_quant_info(derive(merged, "model", spec))
        out.tensors = sum(uses[id(s)] for s in floats)
        return out


@dataclass
class AnalysisProgress:
    """Yielded after every chunk and at each tensor's end (runs of empty tensors: see EMPTY_RUN_REPORT)."""

    bytes_done: int
    bytes_total: int
    tensor: str
    tensor_done: bool
    partial: Summary | None  # a private copy: safe to derive from in another thread
    result: AnalysisResult  # the live result (completed tensors so far)

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 1.0


def is_float_summary(s: Summary) -> bool:
    """Whether every dtype that went into ``s`` is floating point (quants count as float)."""
    return _all_float(tuple(s.dtypes))


@functools.lru_cache(maxsize=1024)
def _all_float(names: tuple[str, ...]) -> bool:
    return all(_is_float_dtype(d) for d in names)


def _is_float_dtype(name: str) -> bool:
    found = dtypes.lookup(name)
    return found is not None and found.is_float


def _with_quant_info(ts: TensorStats) -> TensorStats:
    if ts.quant_type is not None:
        found = dtypes.lookup(ts.quant_type)
        if found is not None:
            ts.bits_per_weight = found.bits_per_element
    return ts


def analyzable(t: TensorInfo) -> bool:
    """Whether ``t`` gets statistics (see why_not_analyzable)."""
    return why_not_analyzable(t) is None


def why_not_analyzable(t: TensorInfo) -> str | None:
    """None, or why the tensor is listed but not summarised: complex values have no order or histogram, and
    a few GGUF quant types have no dequantiser in the gguf package."""
    return _why_not_dtype(t.dtype)


@functools.lru_cache(maxsize=256)
def _why_not_dtype(name: str) -> str | None:
    """why_not_analyzable depends on the dtype alone: asked once per dtype, not once per tensor."""
    found = dtypes.lookup(name)
    if found is None:
        return f"unknown dtype {name}"
    if name in ("C64", "C128"):
        return "complex values"
    if found.is_quantized and not _decodable(name):
        return f"the gguf package cannot dequantise {name}"
    return None


@cache
def _decodable(name: str) -> bool:
    """Try one all-zero block: the gguf package raises NotImplementedError for types it cannot decode."""
    import numpy as np
    from gguf.constants import GGMLQuantizationType
    from gguf.quants import dequantize

    dt = dtypes.get(name)
    try:
        dequantize(np.zeros(dt.type_size, dtype=np.uint8), GGMLQuantizationType[name])
    except Exception:
        return False
    return True


def select_tensors(checkpoint: Checkpoint, tensors: Iterable[TensorInfo | str] | None,
                   skipped: dict[str, str] | None = None) -> list[TensorInfo]:
    """The TensorInfo records to analyse, in the order given; unknown names are refused. Tensors that get no
    statistics go to ``skipped`` with the reason."""
    if tensors is None or tensors is checkpoint.tensors:
        wanted = checkpoint.tensors
    else:
        by_name = {t.name: t for t in checkpoint.tensors}
        wanted = []
        for item in tensors:
            name = item if isinstance(item, str) else item.name
            t = by_name.get(name)
            if t is None:
                raise CheckpointError(f"no tensor named {name[:200]!r} in this checkpoint")
            wanted.append(t)
    out: list[TensorInfo] = []
    seen: set[str] = set()
    known_unique = wanted is checkpoint.tensors and checkpoint.unique_names
    for t in wanted:
        if not known_unique:
            if t.name in seen:
                continue
            seen.add(t.name)
        why = _why_not_dtype(t.dtype)  # why_not_analyzable, inlined for a million tensors
        if why is None:
            out.append(t)
        elif skipped is not None:
            skipped[t.name] = why
    return out


def analyze(
    checkpoint: Checkpoint | str | os.PathLike[str],
    tensors: Iterable[TensorInfo | str] | None = None,
    *,
    device: str = "auto",
    use_cache: bool = True,
    should_stop: Callable[[], bool] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    backend: Any = None,
) -> Generator[AnalysisProgress, None, AnalysisResult]:
    """Stream statistics of ``tensors`` (default: all but complex ones); the generator's return value is the
    final AnalysisResult (``result = yield from analyze(...)``, or see ``run``).

    ``device`` is auto, cpu, cuda, cuda:N or mps; an unavailable one raises DeviceError (a CheckpointError).
    ``backend`` (a core.compute.Backend) overrides ``device``: tests use it to compare implementations.
    Raises CancelledError within one chunk after ``should_stop()`` turns true.
    """
    from core.compute import validate_device

    validate_device(device)
    own = not isinstance(checkpoint, Checkpoint)
    if own:
        from core.formats import open_checkpoint

        checkpoint = open_checkpoint(os.fspath(checkpoint))
    assert isinstance(checkpoint, Checkpoint)
    if checkpoint.format == "config":
        raise CheckpointError(NO_VALUES, path=checkpoint.path)
    engine: _Engine | None = None
    skipped: dict[str, str] = {}
    try:
        engine = _Engine(checkpoint, device, backend)
        selected = select_tensors(checkpoint, tensors, skipped)
        return (yield from engine.run(selected, skipped, use_cache, should_stop, max(1, int(chunk_bytes))))
    finally:
        if engine is not None:
            engine.close()
        if own:
            checkpoint.close()


def run(checkpoint: Checkpoint | str | os.PathLike[str], tensors: Iterable[TensorInfo | str] | None = None,
        **kwargs: Any) -> AnalysisResult:
    """``analyze`` without progress: drain the generator and return the result."""
    gen = analyze(checkpoint, tensors, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


class _Engine:
    """Holds the backend (made only when a tensor must really be read) for one analysis."""

    def __init__(self, checkpoint: Checkpoint, device: str, backend: Any) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.backend = backend
        self.own_backend = backend is None
        self.cache_hits = 0
        if self.backend is None and device not in ("auto", "cpu"):
            self._make_backend()  # an explicit accelerator must exist even when everything is cached

    def _make_backend(self, data_bytes: int | None = None) -> Any:
        """``data_bytes``: at most this much is left to read (small jobs on GPU-less machines skip torch)."""
        if self.backend is None:
            from core.compute import make_backend

            self.backend = make_backend(self.device, data_bytes=data_bytes)
        return self.backend

    def close(self) -> None:
        if self.own_backend and self.backend is not None:
            self.backend.close()
            self.backend = None

    def run(self, selected: list[TensorInfo], skipped: dict[str, str], use_cache: bool,
            should_stop: Callable[[], bool] | None, chunk_bytes: int) -> Generator[AnalysisProgress, None,
                                                                                 AnalysisResult]:
        start_time = time.perf_counter()
        result = AnalysisResult(device=self.backend.label if self.backend is not None else CACHED_DEVICE_LABEL,
                                skipped=skipped)
        cache = None
        if use_cache:
            from core.stats_cache import StatsCache

            cache = StatsCache.default()
        total = sum(t.nbytes for t in selected)

        def stop_if_asked() -> None:
            if should_stop is not None and should_stop():
                result.seconds = time.perf_counter() - start_time
                raise CancelledError("statistics cancelled")

        try:
            yield from self._each(selected, result, cache, stop_if_asked, chunk_bytes, start_time, total)
        finally:
            if cache is not None:
                cache.flush()  # also after a cancel: the tensors finished so far are not read again
        result.seconds = time.perf_counter() - start_time
        if result.device == CACHED_DEVICE_LABEL and not self.cache_hits and result.summaries:
            result.device = NOTHING_READ_LABEL
        if cache is not None:
            cache.prune()
        return result

    def _each(self, selected: list[TensorInfo], result: AnalysisResult, cache: Any, stop_if_asked: Callable[[], None],
              chunk_bytes: int, start_time: float, total: int) -> Generator[AnalysisProgress, None, None]:
        everything = self.checkpoint.tensors  # the cache fingerprints each data file by all of its tensors
        done = 0
        summaries = result.summaries
        shared_empty = _SHARED_EMPTY_BY_DTYPE
        position = 0  # not i: the chunk loop below counts with its own
        while position < len(selected):
            t = selected[position]
            if t.elements == 0:  # nothing to read, cache or compute: a header may list a million of these
                window = selected[position : position + EMPTY_RUN_REPORT]  # up to the next report, or the run's end
                holds = [u.elements != 0 for u in window]
                run = window[: holds.index(True)] if True in holds else window
                summaries.update({u.name: shared_empty.get(u.dtype) or _empty_summary(u) for u in run})
                position += len(run)
                stop_if_asked()
                result.seconds = time.perf_counter() - start_time
                last = run[-1]
                yield AnalysisProgress(done, total, last.name, True, summaries[last.name], result)  # shared
                continue
            position += 1
            stop_if_asked()
            cached = cache.get(t, everything) if cache is not None else None
            if cached is not None:
                self.cache_hits += 1
                result.summaries[t.name] = cached
                done += t.nbytes
                result.seconds = time.perf_counter() - start_time
                yield AnalysisProgress(done, total, t.name, True, cached.copy(), result)
                continue
            backend = self._make_backend(total - done)
            result.device = backend.label
            if t.elements == 1 and t.strides is None and type(backend) in _scalar_backends() \
                    and one_element.handles(t.dtype):  # 60,000 one-value shards: no numpy pass per value
                acc = result.summaries[t.name] = one_element.one_element_summary(
                    self.checkpoint.read_raw(t, 0, 1), t.dtype)
                if cache is not None:
                    cache.put(t, acc, everything)
                done += t.nbytes
                result.bytes_read += t.nbytes
                result.seconds = time.perf_counter() - start_time
                yield AnalysisProgress(done, total, t.name, True, acc, result)  # finished: never changed
                continue
            acc: Summary | None = None
            step = _chunk_elements(t, chunk_bytes)
            for i, first in enumerate(range(0, t.elements, step)):
                if i:
                    stop_if_asked()
                count = min(step, t.elements - first)
                part = backend.summarize_range(self.checkpoint, t, first, count)
                acc = part if acc is None else merge(acc, part)
                nbytes = _range_bytes(t, first, first + count)
                done += nbytes
                result.bytes_read += nbytes
                last = first + count >= t.elements
                if last:
                    acc.compact()  # finished: keep it small, a model may have thousands of tensors
                    result.summaries[t.name] = acc
                    if cache is not None:
                        cache.put(t, acc, everything)
                result.seconds = time.perf_counter() - start_time
                yield AnalysisProgress(done, total, t.name, last, acc.copy(), result)


@cache
def _scalar_backends() -> tuple[type, ...]:
    """The CPU backends, whose summaries one_element reproduces exactly (a device backend is left alone)."""
    from core.compute import Backend, NativeBackend, TorchCPUBackend

    return Backend, NativeBackend, TorchCPUBackend


def _chunk_elements(t: TensorInfo, chunk_bytes: int) -> int:
    """Elements per chunk (strided PyTorch views too: read_raw gathers any range of them in bounded blocks)."""
    dt = dtypes.get(t.dtype)
    # quant chunks need not align with blocks: the reader rounds out to whole blocks
    return max(1, chunk_bytes * dt.block_size // dt.type_size)


def _range_bytes(t: TensorInfo, first: int, end: int) -> int:
    """Stored bytes of elements [first, end): telescopes to ``t.nbytes`` over a whole tensor."""
    if t.elements == 0:
        return 0
    return t.nbytes * end // t.elements - t.nbytes * first // t.elements


def _empty_summary(t: TensorInfo) -> Summary:
    return _empty_summary_of(t.dtype)


@cache
def _empty_summary_of(dtype: str) -> Summary:
    """The zero-count summary of a dtype, one object shared by every empty tensor of it (summaries are never
    changed once finished, and merging copies its first one): a header may list a million empty tensors."""
    from core.compute import summary_kind

    out: Summary = PatternSummary.empty(dtype, (dtype,)) if summary_kind(dtype) == "pattern" \
        else FloatSummary.empty((dtype,))
    out.compact()  # no counts: a few bytes, not a 512 KiB array
    _SHARED_EMPTY_IDS.add(id(out))  # cached for the process's life: the id is never reused
    _SHARED_EMPTY_BY_DTYPE[dtype] = out
    return out


_SHARED_EMPTY_IDS: set[int] = set()
_SHARED_EMPTY_BY_DTYPE: dict[str, Summary] = {}  # _empty_summary_of's results, looked up without a call


def _is_shared_empty(summary: Summary) -> bool:
    return id(summary) in _SHARED_EMPTY_IDS


@cache
def _derived_empty(dtype: str, spec: HistSpec) -> TensorStats:
    return _with_quant_info(derive(_empty_summary_of(dtype), "", spec))


@cache
def _empty_json_tail(dtype: str, spec: HistSpec) -> str:
    """The JSON text of an empty tensor of ``dtype`` after its name (stats_to_json puts the name first)."""
    text = json.dumps(stats_to_json(_derived_empty(dtype, spec)), allow_nan=False)
    prefix = '{"name": ""'
    assert text.startswith(prefix)
    return text[len(prefix):]


def _renamed(template: TensorStats, name: str) -> TensorStats:
    """A private copy of ``template`` named ``name`` (its arrays and percentiles copied, not shared)."""
    out = copy.copy(template)  # dataclasses.replace runs __init__ again: 3x slower, a million times
    out.name, out.percentiles = name, dict(template.percentiles)
    out.hist_edges, out.hist_counts = template.hist_edges.copy(), template.hist_counts.copy()
    out.log_edges, out.log_counts = template.log_edges.copy(), template.log_counts.copy()
    return out


def _without_repeated_empties(summaries: list[Summary]) -> list[Summary]:
    """``summaries`` with each shared empty summary kept once, where it first appears: merging it again adds
    no values and no dtype, so the merge is the same, and a million empty tensors merge in a moment."""
    out: list[Summary] = []
    seen: set[int] = set()
    for s in summaries:
        if _is_shared_empty(s):
            if id(s) in seen:
                continue
            seen.add(id(s))
        out.append(s)
    return out


def stats_to_json(ts: TensorStats) -> dict[str, Any]:
    """The ``main.py stats --json`` object for one tensor or group; NaN and Inf become strings."""
    out: dict[str, Any] = {
        "name": ts.name,
        "dtype": ts.dtype,
        "count": int(ts.count),
        "mean": json_float(ts.mean),
        "std": json_float(ts.std),
        "min": json_float(ts.min),
        "max": json_float(ts.max),
        "abs_max": json_float(ts.abs_max),
        "l2": json_float(ts.l2),
        "zeros": int(ts.zeros),
        "nan": int(ts.nan),
        "pos_inf": int(ts.pos_inf),
        "neg_inf": int(ts.neg_inf),
        "skewness": json_float(ts.skewness),
        "kurtosis": json_float(ts.kurtosis),
        "beyond_6_sigma": int(ts.beyond_6_sigma),
        "percentiles": {k: json_float(v) for k, v in ts.percentiles.items()},
        "histogram": {"edges": _json_floats(ts.hist_edges), "counts": _json_ints(ts.hist_counts)},
        "log10_abs_histogram": {"edges": _json_floats(ts.log_edges), "counts": _json_ints(ts.log_counts)},
        "exact": bool(ts.exact),
        "tensors": int(ts.tensors),
    }
    if ts.quant_type is not None:
        out["quant_type"] = ts.quant_type
        out["bits_per_weight"] = ts.bits_per_weight
    return out


def stats_json_text(ts: TensorStats, histograms: tuple[str, str, str, str] | None = None) -> str:
    """``json.dumps(stats_to_json(ts), allow_nan=False)``, character for character, written directly: the
    encoder's per-value dispatch cost 0.2 ms a tensor (60,000 tiny shards: 12 s); tests hold the two equal.
    ``histograms``: the texts of the edges, counts, log edges and log counts when the caller made them already
    (core.one_value_json makes many tensors' at once)."""
    f, i = _float_text, int.__repr__
    if histograms is None:
        histograms = (_floats_text(ts.hist_edges), _ints_text(ts.hist_counts), _floats_text(ts.log_edges),
                      _ints_text(ts.log_counts))
    edges, counts, log_edges, log_counts = histograms
    p = ts.percentiles
    text = "".join((
        '{"name": ', encode_basestring_ascii(ts.name), ', "dtype": ', encode_basestring_ascii(ts.dtype),
        ', "count": ', i(int(ts.count)), ', "mean": ', f(ts.mean), ', "std": ', f(ts.std), ', "min": ', f(ts.min),
        ', "max": ', f(ts.max), ', "abs_max": ', f(ts.abs_max), ', "l2": ', f(ts.l2), ', "zeros": ', i(int(ts.zeros)),
        ', "nan": ', i(int(ts.nan)), ', "pos_inf": ', i(int(ts.pos_inf)), ', "neg_inf": ', i(int(ts.neg_inf)),
        ', "skewness": ', f(ts.skewness), ', "kurtosis": ', f(ts.kurtosis),
        ', "beyond_6_sigma": ', i(int(ts.beyond_6_sigma)), ', "percentiles": {',
        ", ".join([encode_basestring_ascii(k) + ": " + f(v) for k, v in p.items()]),
        '}, "histogram": {"edges": ', edges, ', "counts": ', counts,
        '}, "log10_abs_histogram": {"edges": ', log_edges, ', "counts": ', log_counts,
        '}, "exact": ', "true" if ts.exact else "false", ', "tensors": ',
        i(int(ts.tensors))))
    if ts.quant_type is None:
        return text + "}"
    rest = json.dumps({"quant_type": ts.quant_type, "bits_per_weight": ts.bits_per_weight}, allow_nan=False)
    return text + ", " + rest[1:]


def _float_text(x: Any) -> str:
    """One json_float as json.dumps writes it."""
    x = float(x)
    if x != x:
        return '"NaN"'
    if x == _INF:
        return '"Infinity"'
    if x == -_INF:
        return '"-Infinity"'
    return float.__repr__(x)


_INF = float("inf")


def _floats_text(values: np.ndarray) -> str:
    """``json.dumps(_json_floats(values))``."""
    array = np.asarray(values, dtype=np.float64)
    if len(array) - 1 in _LADDER_STEPS:
        text = _ladder_text(array)
        if text is not None:
            return text
    out = array.tolist()
    if not out:
        return "[]"
    if math.isfinite(sum(out)):  # NaN and infinities make the sum non-finite (so may a huge finite sum: slow path)
        return "[" + ", ".join(map(float.__repr__, out)) + "]"
    return "[" + ", ".join(map(_float_text, out)) + "]"


_LADDER_STEPS = frozenset(1 << p for p in range(1, 9))
LADDER_LIMIT = 1 << 24  # |x| below this: x - 0.5 + k/steps has at most 16 digits, all of them in its repr


@functools.cache
def _ladder(steps: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """The offsets k/steps - 0.5 (k = 0 ... steps) and the fraction texts j/steps (".0", ".00390625" ...)."""
    offsets = np.arange(steps + 1, dtype=np.float64) / steps - 0.5
    return offsets, tuple(float.__repr__(j / steps)[1:] for j in range(steps))


def _ladder_text(edges: np.ndarray) -> str | None:
    """The JSON text of histogram edges x - 0.5 + k/steps around an integer x (a one-value tensor's histogram
    over [x - 0.5, x + 0.5]), made from fraction texts instead of one float repr per edge; None for any other
    list. Exact: such edges are sums of an integer and a multiple of 1/steps, and their shortest repr is that
    sum's decimal expansion (tests compare with json.dumps)."""
    steps = len(edges) - 1
    x = float(edges[0]) + 0.5
    if not x.is_integer() or abs(x) >= LADDER_LIMIT:
        return None
    offsets, fr = _ladder(steps)
    if not np.array_equal(edges, x + offsets):
        return None
    half, whole = steps // 2, int(x)
    if whole >= 1:
        a, b = str(whole - 1), str(whole)
        return "[" + a + (", " + a).join(fr[half:]) + ", " + b + (", " + b).join(fr[: half + 1]) + "]"
    if whole <= -1:
        a, b = "-" + str(-whole), "-" + str(-whole - 1)
        return "[" + a + (", " + a).join(fr[half::-1]) + ", " + b + (", " + b).join(fr[: half - 1 : -1]) + "]"
    return "[-0" + ", -0".join(fr[half:0:-1]) + ", 0.0, 0" + ", 0".join(fr[1 : half + 1]) + "]"


_COUNTS_TEXTS: dict[bytes, str] = {}
_COUNTS_TEXTS_LIMIT = 4096


def _ints_text(values: np.ndarray) -> str:
    """``json.dumps(_json_ints(values))``, remembered by the counts' bytes: tiny tensors' histograms repeat (one
    value: a single 1 among 255 zeros)."""
    array = np.asarray(values).astype(np.int64, copy=False)
    key = array.tobytes()
    text = _COUNTS_TEXTS.get(key)
    if text is None:
        text = "[" + ", ".join(map(int.__repr__, array.tolist())) + "]"
        if len(_COUNTS_TEXTS) >= _COUNTS_TEXTS_LIMIT:
            _COUNTS_TEXTS.clear()
        _COUNTS_TEXTS[key] = text
    return text


def _json_floats(values: Any) -> list[float | str]:
    """``[json_float(x) for x in values]``, vectorised: a million tensors' histograms are 500 million values."""
    array = np.asarray(values, dtype=np.float64)
    out = array.tolist()
    return out if np.isfinite(array).all() else [json_float(x) for x in out]


def _json_ints(values: Any) -> list[int]:
    return np.asarray(values).astype(np.int64, copy=False).tolist()


def json_float(x: float) -> float | str:
    """A float for JSON: NaN and infinities as the strings "NaN", "Infinity", "-Infinity"."""
    x = float(x)
    if x != x:
        return "NaN"
    if x == float("inf"):
        return "Infinity"
    if x == float("-inf"):
        return "-Infinity"
    return x
