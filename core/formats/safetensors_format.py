"""safetensors reader: the header is parsed and validated by us, data never touched.

The checks follow the reference implementation (``Metadata::validate`` in the
safetensors Rust core) and go beyond it: duplicate keys, booleans or floats
where integers belong, and trailing bytes are all refused.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

from core import dtypes
from core.checkpoint import Checkpoint, FileEntry, TensorInfo
from core.errors import CheckpointError, MalformedFileError
from core.io import FileReader
from core.taxonomy import classify

MAX_HEADER_BYTES = 100_000_000
_INT64_MAX = (1 << 63) - 1
_ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_SUB_BYTE = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}  # bits per element; must fill whole bytes
_PLAIN_SIZES = dtypes.plain_sizes()  # the dtypes a safetensors file may name, with their bytes per element


def open_safetensors(paths: list[str], root_path: str, wholes: dict[str, bytes] | None = None) -> Checkpoint:
    """One or more safetensors files (shards) as one Checkpoint; tensor names must be unique. ``wholes``: the
    complete bytes of small files the caller has already read (60,000 tiny shards are not opened again)."""
    tensors: list[TensorInfo] = []
    files: list[FileEntry] = []
    metadata: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for path in paths:
        file_tensors, file_meta, size = read_header(path, wholes.get(path) if wholes else None)
        files.append(FileEntry(path, size))
        for t in file_tensors if len(paths) > 1 else ():  # one header's names are unique (duplicates refused)
            if t.name in seen:
                raise MalformedFileError(
                    f"tensor {t.name[:80]!r} appears in two shards ({os.path.basename(seen[t.name])} "
                    f"and {os.path.basename(path)})", path=root_path)
            seen[t.name] = path
        tensors.extend(file_tensors)
        if file_meta:
            if len(paths) == 1:
                metadata.update(file_meta)
            else:
                metadata.setdefault("__metadata__", {})[os.path.basename(path)] = file_meta
    kept = {path: wholes[path] for path in paths if path in wholes} if wholes else {}
    out = (SnapshotCheckpoint if kept else Checkpoint)(
        format="safetensors", path=root_path, files=files, tensors=tensors, metadata=metadata, classified=True,
        unique_names=True)
    if kept:
        out.snapshots = kept
    return out


class SnapshotCheckpoint(Checkpoint):
    """A Checkpoint whose small files' bytes, read whole (and validated) when it was opened, are read from memory:
    60,000 one-value shards are not opened again (an open, two fstats, a read and a close each). Their values
    are those of the bytes whose header was checked. Everything else reads as in Checkpoint."""

    snapshots: dict[str, bytes] = {}  # noqa: RUF012 -- replaced per instance, never written in place

    def read_raw(self, tensor: TensorInfo | str, start: int = 0, count: int | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
        t = self.tensor(tensor) if isinstance(tensor, str) else tensor
        data = self.snapshots.get(t.file)
        storage = _SNAPSHOT_STORAGE.get(t.dtype)
        if data is None or storage is None or t.strides is not None:
            return super().read_raw(t, start, count, out)
        count = t.elements - start if count is None else count
        begin, nbytes = t.offset + start * storage.itemsize, count * storage.itemsize
        if start < 0 or count < 0 or start + count > t.elements or begin + nbytes > len(data):
            return super().read_raw(t, start, count, out)  # its refusal, in its words
        buf = out.view(np.uint8)[:nbytes] if out is not None and out.nbytes >= nbytes else np.empty(nbytes, np.uint8)
        buf[:] = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=begin)
        return buf.view(storage)


def _snapshot_storage() -> dict[str, np.dtype]:
    """The numpy storage of each type whose elements are whole bytes (read_raw's plain route)."""
    out = {}
    for name in _PLAIN_SIZES:
        dt = dtypes.get(name)
        if name not in _SUB_BYTE and not dt.is_quantized and dt.block_size == 1 \
                and np.dtype(dt.storage).itemsize == dt.type_size:
            out[name] = np.dtype(dt.storage)
    return out


_SNAPSHOT_STORAGE = _snapshot_storage()


def read_header(path: str, whole: bytes | None = None) -> tuple[list[TensorInfo], dict[str, str], int]:
    """Validate one file's header; return its tensors (in file order), metadata and size. ``whole``: the file's
    complete bytes, when the caller holds them."""
    with (FileReader(path) if whole is None else _WholeFile(whole)) as reader:
        size = reader.size
        if size < 8:
            raise MalformedFileError(f"truncated safetensors file ({size} bytes; the header length needs 8)",
                                     path=path)
        (header_len,) = struct.unpack("<Q", reader.read(0, 8))
        if header_len > MAX_HEADER_BYTES:
            raise MalformedFileError(f"header length {header_len:,} exceeds the 100 MB limit", path=path)
        if 8 + header_len > size:
            raise MalformedFileError(
                f"truncated: header claims {header_len:,} bytes but the file has {size - 8:,} after the length",
                path=path)
        raw = bytearray(header_len)  # read in place: a 100 MB header is not copied again
        reader.read_into(8, memoryview(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedFileError("header is not valid UTF-8", path=path) from None
    del raw
    try:
        header = json.loads(text, object_pairs_hook=_pairs_no_duplicates, parse_constant=_reject_constant)
    except CheckpointError as exc:
        raise MalformedFileError(exc.reason, path=path) from None
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise MalformedFileError(f"header is not valid JSON ({str(exc).splitlines()[0][:100]})", path=path) from None
    del text  # a 100 MB header's text is not held while its records are built
    if not isinstance(header, dict):
        raise MalformedFileError("header is not a JSON object", path=path)
    metadata = _validate_metadata(header.pop("__metadata__", None), path)
    data_start = 8 + header_len
    tensors = [_tensor_entry(name, entry, path, data_start) for name, entry in header.items()]
    _check_layout(tensors, data_start, size, path)
    return tensors, metadata, size


class _WholeFile:
    """The few FileReader calls read_header makes, over a small file's bytes already in memory."""

    def __init__(self, data: bytes) -> None:
        self.data, self.size = data, len(data)

    def __enter__(self) -> _WholeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset : offset + n]

    def read_into(self, offset: int, buffer: memoryview) -> None:
        buffer[:] = self.data[offset : offset + len(buffer)]


def _pairs_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any] | tuple[Any, Any, Any]:
    """Build the object at C speed; only when keys collapsed, look for the duplicate to name it.

    A tensor entry in the order every writer uses becomes a (dtype, shape, data_offsets) tuple: a third
    of a dict's memory, which matters for a header of a million entries. JSON never makes tuples, so
    nothing else can be mistaken for one.
    """
    if len(pairs) == 3:
        (k1, v1), (k2, v2), (k3, v3) = pairs
        if k1 == "dtype" and k2 == "shape" and k3 == "data_offsets":
            return v1, v2, v3
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise CheckpointError(f"duplicate key {key[:80]!r} in header")
            seen.add(key)
    return out


def _reject_constant(name: str) -> None:
    raise CheckpointError(f"header holds the non-JSON constant {name}")


def _validate_metadata(meta: object, path: str) -> dict[str, str]:
    if meta is None:
        return {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise MalformedFileError("__metadata__ must map strings to strings", path=path)
    return meta


def _tensor_entry(name: str, entry: object, path: str, data_start: int) -> TensorInfo:
    """One validated entry; exact type tests in plain loops, since a header may list a million tensors."""
    if not name:
        raise MalformedFileError("a tensor has an empty name", path=path)
    if type(entry) is tuple:  # compacted by _pairs_no_duplicates
        dtype_name, shape, offsets = entry
    elif type(entry) is dict and entry.keys() == _ENTRY_KEYS:
        dtype_name, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    else:
        raise MalformedFileError(f"tensor {name[:80]!r}: entry must have exactly dtype, shape and data_offsets",
                                 path=path)
    if type(dtype_name) is not str:
        raise MalformedFileError(f"tensor {name[:80]!r}: dtype is not a string", path=path)
    if type(shape) is not list:
        raise MalformedFileError(f"tensor {name[:80]!r}: shape must be a list of non-negative integers", path=path)
    elements = 1
    for dim in shape:
        if type(dim) is not int or dim < 0 or dim > _INT64_MAX:
            raise MalformedFileError(f"tensor {name[:80]!r}: shape must be a list of non-negative integers",
                                     path=path)
        elements *= dim
        if elements > _INT64_MAX:
            raise MalformedFileError(f"tensor {name[:80]!r}: element count overflows int64", path=path)
    if type(offsets) is not list or len(offsets) != 2:
        raise MalformedFileError(f"tensor {name[:80]!r}: data_offsets must be two non-negative integers", path=path)
    begin, end = offsets
    if type(begin) is not int or type(end) is not int or not 0 <= begin <= _INT64_MAX or not 0 <= end <= _INT64_MAX:
        raise MalformedFileError(f"tensor {name[:80]!r}: data_offsets must be two non-negative integers", path=path)
    if end < begin:
        raise MalformedFileError(f"tensor {name[:80]!r}: data_offsets end before they begin", path=path)
    if dtype_name in _SUB_BYTE:
        bits = elements * _SUB_BYTE[dtype_name]
        if bits % 8:
            raise MalformedFileError(f"tensor {name[:80]!r}: {dtype_name} values do not fill whole bytes", path=path)
        raise MalformedFileError(f"tensor {name[:80]!r}: sub-byte dtype {dtype_name} is not supported yet",
                                 path=path)
    type_size = _PLAIN_SIZES.get(dtype_name)
    if type_size is None:
        raise MalformedFileError(f"tensor {name[:80]!r}: unknown dtype {dtype_name[:20]!r}", path=path)
    nbytes = elements * type_size
    if nbytes != end - begin:
        raise MalformedFileError(
            f"tensor {name[:80]!r}: {elements:,} x {dtype_name} needs {nbytes:,} bytes but its range holds "
            f"{end - begin:,}", path=path)
    shape = tuple(shape)
    kind, role = classify(name, shape, dtype_name)  # here, not in a second pass: one record per tensor, not two
    return TensorInfo(name, shape, dtype_name, elements, nbytes, path, data_start + begin, kind, role)


def _check_layout(tensors: list[TensorInfo], data_start: int, size: int, path: str) -> None:
    """Tensors tile the data section exactly: from 0, no gaps, no overlaps, ending at end of file."""
    cursor = data_start
    for t in tensors:  # usually listed in offset order: then one pass, and no sort of a million records
        if t.offset != cursor:
            break
        cursor = t.offset + t.nbytes
    else:
        if cursor == size:
            return
    cursor = data_start
    for t in sorted(tensors, key=lambda t: (t.offset, t.nbytes)):
        if t.offset != cursor:
            problem = "overlaps the previous tensor" if t.offset < cursor else "leaves a gap before it"
            raise MalformedFileError(f"tensor {t.name[:80]!r} {problem} (offset {t.offset - data_start:,})",
                                     path=path)
        cursor = t.offset + t.nbytes
    if cursor != size:
        if cursor > size:
            raise MalformedFileError(f"truncated: tensor data ends at byte {cursor:,} but the file has {size:,}",
                                     path=path)
        raise MalformedFileError(f"{size - cursor:,} unexpected trailing bytes after the last tensor", path=path)
