"""The data model every format reader produces: a Checkpoint holding TensorInfo records.

Opening a checkpoint reads headers only. Tensor values are read on demand,
by element range, through bounds-checked reads into buffers we own, so the
statistics engine can stream a model of any size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from core import dtypes
from core.errors import ReadError
from core.io import FileReader, ReaderPool

DEFAULT_CHUNK_BYTES = 64 << 20
STRIDED_BLOCK = 1 << 20  # elements of a strided view indexed at once
STRIDED_WINDOW = 16 << 20  # bytes one read of a strided block may cover beyond 4x the block
STRIDED_GAP = 1024  # elements: nearer indices of a sparse view are read together
RUN_GAP_BYTES = 16 << 10  # a column range skipping less than this per line is read as whole lines: one read
#                            per line costs about what copying 16 KiB does


@dataclass(slots=True, unsafe_hash=True)
class TensorInfo:
    """One tensor as listed in the file: where its bytes are and what it is for.

    A record is never changed once a reader made it (hashed and compared by its fields). Immutability is by
    convention, not enforced: a frozen dataclass takes 3 us to build against 0.6 us, and a header may list a
    million tensors, each built twice (read, then classified).

    ``offset`` is the absolute byte offset of element 0 in ``file``. ``strides``
    (in elements) is None for row-major contiguous data; PyTorch views may be
    strided, in which case ``span_bytes`` covers every element they touch.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    elements: int
    nbytes: int
    file: str
    offset: int
    kind: str = "weight"
    role: str = "other"
    strides: tuple[int, ...] | None = None
    span_bytes: int | None = None

    @property
    def byte_range(self) -> tuple[int, int]:
        return self.offset, self.offset + (self.span_bytes if self.span_bytes is not None else self.nbytes)

    @property
    def is_float(self) -> bool:
        return dtypes.get(self.dtype).is_float

    @property
    def is_parameter(self) -> bool:
        """Part of the learned model: buffers and training state (optimizer moments, EMA copies) are not."""
        return self.kind not in ("buffer", "state")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "kind": self.kind,
            "role": self.role,
            "elements": self.elements,
            "bytes": self.nbytes,
            "file": self.file,
            "offset": self.offset,
        }


@dataclass(slots=True)
class FileEntry:
    path: str
    size: int


@dataclass(frozen=True)
class _Tally:
    """Totals of a list of tensors (see Checkpoint._tally)."""

    elements: int
    parameters: int
    parameter_bytes: int
    by_kind: dict[str, int]
    by_role: dict[str, int]
    by_dtype: dict[str, int]

    @classmethod
    def of(cls, tensors: list[TensorInfo]) -> _Tally:
        by_kind = {"weight": 0, "bias": 0, "embedding": 0, "buffer": 0}
        by_role: dict[str, int] = {}
        by_dtype: dict[str, int] = {}
        parameter_bytes = 0
        for t in tensors:
            n = t.elements
            by_kind[t.kind] = by_kind.get(t.kind, 0) + n
            by_dtype[t.dtype] = by_dtype.get(t.dtype, 0) + n
            if t.kind != "buffer" and t.kind != "state":  # TensorInfo.is_parameter, inlined for a million tensors
                by_role[t.role] = by_role.get(t.role, 0) + n
                parameter_bytes += t.nbytes
        parameters = sum(n for kind, n in by_kind.items() if kind not in ("buffer", "state"))
        return cls(sum(by_kind.values()), parameters, parameter_bytes, by_kind, by_role, by_dtype)


@dataclass
class Checkpoint:
    """A model opened by content: its files, tensors, metadata and architecture facts."""

    format: str  # "safetensors" | "gguf" | "pytorch"
    path: str  # what the user opened (file, index or folder)
    files: list[FileEntry]
    tensors: list[TensorInfo]
    metadata: dict[str, Any] = field(default_factory=dict)
    architecture: dict[str, Any] = field(default_factory=dict)
    # What a person vetting the file should know, one plain-text line each (placeholder objects, polyglots,
    # a name that promises another format); shown by `info`, the Files section and the report.
    warnings: list[str] = field(default_factory=list)
    # One-line statement of how the file was read, e.g. "data only: read without running code".
    safety: str = "data only: read without running code"
    # Set by a reader whose records are already classified (kind, role) and whose names are known unique: a
    # million-tensor header is then neither classified twice nor checked for duplicates again.
    classified: bool = field(default=False, repr=False, compare=False)
    unique_names: bool = field(default=False, repr=False, compare=False)
    # A LoRA adapter's description (core.lora.LoraDescription) when the file is one, else None.
    lora: Any = None
    _readers: ReaderPool = field(default_factory=ReaderPool, repr=False)  # bounded: thousands of shards
    _counted: tuple[tuple[int, int], _Tally] | None = field(default=None, repr=False, compare=False)

    # --- counts -------------------------------------------------------------
    @property
    def file_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def element_count(self) -> int:
        return self._tally().elements

    @property
    def parameter_count(self) -> int:
        return self._tally().parameters

    @property
    def parameter_bytes(self) -> int:
        """Bytes the learned tensors take as stored in the file (quant blocks included)."""
        return self._tally().parameter_bytes

    def by_kind(self) -> dict[str, int]:
        """Elements per kind; "state" (optimizer moments, EMA copies) appears only when the file holds some."""
        return dict(self._tally().by_kind)

    def by_role(self) -> dict[str, int]:
        return dict(self._tally().by_role)

    def by_dtype(self) -> dict[str, int]:
        return dict(self._tally().by_dtype)

    def forget_counts(self) -> None:
        """Drop the remembered totals: call after changing records of ``tensors`` in place."""
        self._counted = None

    def _tally(self) -> _Tally:
        """Every total in one pass, remembered for this list of tensors: a million-tensor header was summed
        a dozen times by one `info`. A new list (``checkpoint.tensors = ...``) is counted afresh; changes in
        place must call forget_counts()."""
        key = (id(self.tensors), len(self.tensors))
        if self._counted is None or self._counted[0] != key:
            self._counted = (key, _Tally.of(self.tensors))
        return self._counted[1]

    def tensor(self, name: str) -> TensorInfo:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    # --- reading ------------------------------------------------------------
    def _reader(self, path: str) -> FileReader:
        """The file's reader from a bounded pool: a model of more shards than the open-file limit still reads."""
        return self._readers.get(path)

    def close(self) -> None:
        self._readers.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_raw(
        self, tensor: TensorInfo | str, start: int = 0, count: int | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Elements ``[start, start+count)`` in row-major order, as stored.

        BF16 and F8 come back as their unsigned bit patterns; GGUF quant blocks
        come back dequantised to float32 (``start`` and ``count`` are rounded
        out to whole blocks internally). ``out`` is an optional reusable buffer
        of at least the needed bytes, for plain contiguous types.
        """
        t = self.tensor(tensor) if isinstance(tensor, str) else tensor
        count = t.elements - start if count is None else count
        if start < 0 or count < 0 or start + count > t.elements:
            raise ReadError(f"element range [{start}, {start + count}) outside tensor {t.name!r}")
        dt = dtypes.get(t.dtype)
        if dt.is_quantized:
            return self._read_quantized(t, dt, start, count)
        np_dtype = np.dtype(dt.storage)
        if t.strides is not None:
            return self._read_strided(t, np_dtype, start, count)
        nbytes = count * np_dtype.itemsize
        if out is not None and out.nbytes >= nbytes:
            buf = out.view(np.uint8)[:nbytes]
        else:
            buf = np.empty(nbytes, dtype=np.uint8)
        self._reader(t.file).read_into(t.offset + start * np_dtype.itemsize, buf)
        return buf.view(np_dtype)

    def read_raw_columns(self, t: TensorInfo, start: int, rows: int, line: int, lo: int, hi: int) -> np.ndarray:
        """Elements ``[lo, hi)`` of each of ``rows`` lines of ``line`` elements from element ``start``, as stored,
        shaped (rows, hi - lo): a column range of a row-major matrix. Where the columns skipped per line are
        wide, each line's range is read alone (FileReader.read_runs); otherwise whole lines are read and sliced."""
        dt = dtypes.get(t.dtype)
        if not 0 <= lo <= hi <= line:
            raise ReadError(f"column range [{lo}, {hi}) outside lines of {line} elements of tensor {t.name!r}")
        if dt.is_quantized or t.strides is not None or (line - (hi - lo)) * dt.type_size < RUN_GAP_BYTES:
            return self.read_raw(t, start, rows * line).reshape(rows, line)[:, lo:hi]
        if start < 0 or rows < 0 or start + rows * line > t.elements:
            raise ReadError(f"element range [{start}, {start + rows * line}) outside tensor {t.name!r}")
        np_dtype = np.dtype(dt.storage)
        out = np.empty((rows, (hi - lo) * np_dtype.itemsize), dtype=np.uint8)
        self._reader(t.file).read_runs(t.offset + (start + lo) * np_dtype.itemsize, line * np_dtype.itemsize, out)
        return out.view(np_dtype)

    def read(self, tensor: TensorInfo | str, start: int = 0, count: int | None = None) -> np.ndarray:
        """Like read_raw, but BF16 and F8 decoded to float32: values a person would print."""
        t = self.tensor(tensor) if isinstance(tensor, str) else tensor
        raw = self.read_raw(t, start, count)
        return decode(raw, t.dtype)

    def read_tensor(self, tensor: TensorInfo | str) -> np.ndarray:
        """The whole tensor, decoded and shaped. Only for tensors that fit in memory."""
        t = self.tensor(tensor) if isinstance(tensor, str) else tensor
        return self.read(t).reshape(t.shape)

    def iter_chunks(
        self, tensor: TensorInfo | str, chunk_bytes: int = DEFAULT_CHUNK_BYTES, reuse: bool = True
    ) -> Iterator[np.ndarray]:
        """Raw chunks of about ``chunk_bytes`` covering the tensor in order.

        With ``reuse`` the same buffer is refilled for every chunk: consume each
        chunk before asking for the next.
        """
        t = self.tensor(tensor) if isinstance(tensor, str) else tensor
        if t.elements == 0:
            return
        dt = dtypes.get(t.dtype)
        if dt.is_quantized:
            per_block = dt.block_size
            step = max(1, chunk_bytes // dt.type_size) * per_block
        else:
            step = max(1, chunk_bytes // dt.type_size)
        buffer = np.empty(min(step, t.elements) * dt.type_size, dtype=np.uint8) if reuse else None
        for start in range(0, t.elements, step):
            count = min(step, t.elements - start)
            yield self.read_raw(t, start, count, out=buffer)

    def _read_strided(self, t: TensorInfo, np_dtype: np.dtype, start: int, count: int) -> np.ndarray:
        """Elements ``[start, start+count)`` of a strided or expanded (stride 0) view, in bounded blocks.

        Each block of at most STRIDED_BLOCK elements computes its storage indices, then reads the smallest
        window covering them when that window is small, else only the runs of nearby indices it touches:
        a 2-element view over a terabyte storage reads 2 elements, and an expanded view reads each stored
        element once per block. Memory: the output plus a few buffers of about one block.
        """
        item = np_dtype.itemsize
        result = np.empty(count, dtype=np_dtype)
        reader = self._reader(t.file)
        shape = t.shape
        strides = t.strides or ()
        for block_start in range(start, start + count, STRIDED_BLOCK):
            n = min(STRIDED_BLOCK, start + count - block_start)
            flat = np.arange(block_start, block_start + n, dtype=np.int64)
            index = np.zeros(n, dtype=np.int64)
            for dim, stride in zip(reversed(shape), reversed(strides), strict=True):
                if stride:
                    index += (flat % dim) * stride
                flat //= dim
            lo, hi = int(index.min()), int(index.max())
            target = result[block_start - start : block_start - start + n]
            if (hi - lo + 1) <= max(4 * n, STRIDED_WINDOW // item):
                window = np.empty((hi - lo + 1) * item, dtype=np.uint8)
                reader.read_into(t.offset + lo * item, window)
                np.take(window.view(np_dtype), index - lo, out=target)
            else:
                _gather_runs(reader, t.offset, index, target, item)
        return result

    def _read_quantized(self, t: TensorInfo, dt: dtypes.DType, start: int, count: int) -> np.ndarray:
        from gguf.constants import GGMLQuantizationType
        from gguf.quants import dequantize

        first_block = start // dt.block_size
        last_block = math.ceil((start + count) / dt.block_size)
        raw = np.empty((last_block - first_block) * dt.type_size, dtype=np.uint8)
        self._reader(t.file).read_into(t.offset + first_block * dt.type_size, raw)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # huge scales overflow to inf: data, not a warning
                values = dequantize(raw, GGMLQuantizationType[dt.name]).reshape(-1).astype(np.float32, copy=False)
            if dt.name == "MXFP4":  # an E8M0 scale of 0xFF is NaN (OCP MX spec); gguf decodes it as 2**127
                nan_scale = raw.reshape(-1, dt.type_size)[:, 0] == 0xFF
                if nan_scale.any():
                    values = values.copy() if not values.flags.writeable else values
                    values.reshape(-1, dt.block_size)[nan_scale] = np.nan
        except NotImplementedError:  # Q8_1, Q8_K, Q1_0 ...: listed fine, but the gguf package cannot decode them
            raise ReadError(f"cannot decode {dt.name} values of tensor {t.name[:80]!r}: the gguf package has no "
                            "dequantiser for this type", path=t.file) from None
        skip = start - first_block * dt.block_size
        return values[skip : skip + count]


def _gather_runs(reader: FileReader, base: int, index: np.ndarray, target: np.ndarray, item: int) -> None:
    """Fill ``target`` with the elements at ``index`` (in elements from ``base``), reading each run of nearby
    distinct indices once: sparse views read what they show, never the gaps between."""
    order = np.unique(index)
    gaps = np.nonzero(np.diff(order) > STRIDED_GAP)[0]
    starts = np.concatenate(([0], gaps + 1)).tolist()
    ends = np.concatenate((gaps + 1, [len(order)])).tolist()
    values = np.empty(len(order), dtype=target.dtype)
    limit = STRIDED_WINDOW // item  # a run wider than this is read in windows of at most this many elements
    for run_first, run_end in zip(starts, ends, strict=True):
        first = run_first
        while first < run_end:
            lo = int(order[first])
            last = min(run_end, int(np.searchsorted(order, lo + limit, side="left")))
            hi = int(order[last - 1])
            window = np.empty((hi - lo + 1) * item, dtype=np.uint8)
            reader.read_into(base + lo * item, window)
            values[first:last] = window.view(target.dtype)[order[first:last] - lo]
            first = last
    target[:] = values[np.searchsorted(order, index)]


def decode(raw: np.ndarray, dtype_name: str) -> np.ndarray:
    """Turn stored bit patterns (BF16, F8) into float32; other arrays pass through."""
    if dtype_name == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype_name == "F8_E4M3":
        return _F8_E4M3_TABLE()[raw]
    if dtype_name == "F8_E5M2":
        return _F8_E5M2_TABLE()[raw]
    if dtype_name == "F8_E8M0":
        return _F8_E8M0_TABLE()[raw]
    if dtype_name == "BOOL":
        return raw.astype(bool)
    return raw


def _f8_table(exp_bits: int, man_bits: int, bias: int, fn: bool) -> np.ndarray:
    """All 256 values of an 8-bit float format (fn: no infinities, only 0x7F/0xFF are NaN)."""
    out = np.empty(256, dtype=np.float32)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        exp = (code >> man_bits) & ((1 << exp_bits) - 1)
        man = code & ((1 << man_bits) - 1)
        if fn and (code & 0x7F) == 0x7F:
            out[code] = np.nan
        elif not fn and exp == (1 << exp_bits) - 1:
            out[code] = sign * np.inf if man == 0 else np.nan
        elif exp == 0:
            out[code] = sign * (man / (1 << man_bits)) * 2.0 ** (1 - bias)
        else:
            out[code] = sign * (1 + man / (1 << man_bits)) * 2.0 ** (exp - bias)
    return out


@cache
def _F8_E4M3_TABLE() -> np.ndarray:  # noqa: N802
    return _f8_table(4, 3, 7, True)


@cache
def _F8_E5M2_TABLE() -> np.ndarray:  # noqa: N802
    return _f8_table(5, 2, 15, False)


@cache
def _F8_E8M0_TABLE() -> np.ndarray:  # noqa: N802
    table = np.array([2.0 ** (c - 127) for c in range(255)] + [np.nan], dtype=np.float64).astype(np.float32)
    return table
