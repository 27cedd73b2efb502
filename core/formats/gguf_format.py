"""GGUF reader: the header is parsed and validated by us, tensor data is never touched.

The gguf package's ``GGUFReader`` trusts every count and length in the file,
so we walk the header ourselves with bounds-checked reads, following the
checks of ggml's ``gguf_init_from_reader`` (see ../shared/SECURITY.md), and use
the package only for its quant-type table and, later, dequantisation.

Layout (little-endian, v2 and v3 alike): magic, version u32, tensor count u64,
key/value count u64, the key/values, the tensor infos, padding to the
alignment, then the data section that tensor offsets are relative to.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from core import dtypes
from core.checkpoint import Checkpoint, FileEntry, TensorInfo
from core.errors import MalformedFileError, MissingFilesError, UnsupportedFormatError
from core.io import FileReader

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
LIST_LIMIT = 64  # arrays up to this long are kept whole in the metadata
HEAD_ITEMS = 8  # longer arrays are summarised with their first items
MAX_STRING_BYTES = 64 << 10  # longer metadata strings are cut (they stay inert text either way)
FIRST_READ = 64 << 10  # the header is read through a window of bounded chunks, starting with this many bytes
MAX_WINDOW = 16 << 20  # the largest chunk read at once; skipped values are never read at all
MAX_NAME_BYTES = 64 << 10  # keys and tensor names (ggml itself refuses tensor names of 64 bytes or more)
MAX_STRING_ITEMS = 1 << 22  # string arrays are walked item by item: real vocabularies hold at most ~300k
# Python objects cost ~10x their bytes on disk: beyond the byte bounds, cap the counts no real model nears
# (real files hold dozens of keys and at most thousands of tensors)
MAX_TENSORS = 1_000_000
MAX_KV = 1_000_000

_INT64_MAX = (1 << 63) - 1
_STRING, _ARRAY = 8, 9
# value type -> (name shown in summaries, struct format, numpy dtype); STRING and ARRAY are variable-sized
_FIXED: dict[int, tuple[str, str, str]] = {
    0: ("uint8", "<B", "<u1"),
    1: ("int8", "<b", "<i1"),
    2: ("uint16", "<H", "<u2"),
    3: ("int16", "<h", "<i2"),
    4: ("uint32", "<I", "<u4"),
    5: ("int32", "<i", "<i4"),
    6: ("float32", "<f", "<f4"),
    7: ("bool", "<B", "<u1"),
    10: ("uint64", "<Q", "<u8"),
    11: ("int64", "<q", "<i8"),
    12: ("float64", "<d", "<f8"),
}
_UINT32 = 4
_TYPE_NAMES = {**{k: v[0] for k, v in _FIXED.items()}, _STRING: "str", _ARRAY: "array"}
_STRUCTS = {k: struct.Struct(v[1]) for k, v in _FIXED.items()}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
# smallest encodings, to bound counts by the bytes left before looping over them:
# a key/value is a non-empty key (8 + 1), a type (4) and a value of at least 1 byte;
# a tensor info is a non-empty name (8 + 1), n_dims (4), a type (4) and an offset (8).
_MIN_KV_BYTES = 8 + 1 + 4 + 1
_MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 4 + 8


@dataclass
class GGUFHeader:
    """One validated GGUF file: its version, metadata (plain values) and tensors."""

    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    alignment: int
    data_start: int
    size: int


def open_gguf(paths: list[str], root_path: str) -> Checkpoint:
    """One GGUF file, or every part of a split model in order, as one Checkpoint.

    Metadata comes from the first part (later parts hold only split bookkeeping);
    tensors come from all parts and their names must be unique across them.
    """
    headers = [read_header(p) for p in paths]
    _check_split(paths, headers, root_path)
    tensors: list[TensorInfo] = []
    seen: dict[str, str] = {}
    for path, header in zip(paths, headers, strict=True):
        for t in header.tensors:
            if t.name in seen:
                raise MalformedFileError(f"tensor {_show(t.name)} appears in two parts "
                                         f"({os.path.basename(seen[t.name])} "
                                         f"and {os.path.basename(path)})", path=root_path)
            seen[t.name] = path
        tensors.extend(header.tensors)
    metadata = dict(headers[0].metadata)
    metadata.setdefault("GGUF.version", headers[0].version)
    files = [FileEntry(p, h.size) for p, h in zip(paths, headers, strict=True)]
    return Checkpoint(format="gguf", path=root_path, files=files, tensors=tensors, metadata=metadata)


def _check_split(paths: list[str], headers: list[GGUFHeader], root_path: str) -> None:
    """The parts' own ``split.*`` keys must agree with the file names that gathered them."""
    first = headers[0].metadata
    count = first.get("split.count")
    if isinstance(count, int) and count > 1 and len(paths) == 1:
        raise MissingFilesError(
            f"this file is one part of a {count}-part split GGUF model, but its name does not follow the "
            "name-00001-of-0000N.gguf pattern, so the other parts cannot be found", path=root_path)
    if len(paths) == 1:
        return
    for index, (path, header) in enumerate(zip(paths, headers, strict=True)):
        part_count = header.metadata.get("split.count")
        if isinstance(part_count, int) and part_count != len(paths):
            raise MalformedFileError(f"{os.path.basename(path)} says the model has {part_count} parts, but its name "
                                     f"says {len(paths)}", path=root_path)
        number = header.metadata.get("split.no")
        if isinstance(number, int) and number != index:
            raise MalformedFileError(f"{os.path.basename(path)} says it is part {number + 1}, but its name says "
                                     f"part {index + 1}", path=root_path)
    expected = first.get("split.tensors.count")
    total = sum(len(h.tensors) for h in headers)
    if isinstance(expected, int) and expected != total:
        raise MalformedFileError(f"split model should hold {expected:,} tensors but its parts hold {total:,}",
                                 path=root_path)


def read_header(path: str) -> GGUFHeader:
    """Parse and validate one GGUF file's header; raise MalformedFileError/UnsupportedFormatError."""
    with FileReader(path) as reader:
        return _Parser(reader).parse()


def _show(name: str) -> str:
    return repr(name[:80] + ("..." if len(name) > 80 else ""))


def _float32(value: float) -> float:
    """A float32 as the shortest decimal that round-trips (1e-05, not 9.999999747378752e-06)."""
    return float(str(np.float32(value)))


class _Parser:
    """A cursor over the file's leading bytes, read in bounded growing chunks.

    Every length or count is compared with the bytes the file has left before
    anything is allocated or looped over, so no input makes us read, allocate
    or loop beyond what the file's size allows.
    """

    def __init__(self, reader: FileReader) -> None:
        self.reader = reader
        self.path = reader.path
        self.size = reader.size
        self.buf = b""  # a window of the file: bytes [base, base + len(buf))
        self.base = 0
        self.pos = 0  # absolute file offset of the cursor
        self.where = "the header"

    # --- low-level reads ----------------------------------------------------
    def fail(self, reason: str) -> MalformedFileError:
        return MalformedFileError(reason, path=self.path)

    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int) -> None:
        """Make bytes [pos, pos+n) available or raise: the file ends too early."""
        end = self.pos + n
        if end <= self.base + len(self.buf):
            return
        if end > self.size:
            raise self.truncated(end)
        kept = self.buf[self.pos - self.base :] if self.pos < self.base + len(self.buf) else b""
        window = min(self.size, max(end, self.pos + min(MAX_WINDOW, max(FIRST_READ, 2 * len(self.buf)))))
        start = self.pos + len(kept)
        self.buf = kept + self.reader.read(start, window - start)
        self.base = self.pos

    def truncated(self, end: int) -> MalformedFileError:
        return self.fail(f"truncated GGUF file: it ends inside {self.where} "
                         f"(needs {end:,} bytes, the file has {self.size:,})")

    def skip(self, n: int) -> None:
        """Move past ``n`` bytes without reading them (long strings and arrays that are not shown)."""
        if self.pos + n > self.size:
            raise self.truncated(self.pos + n)
        self.pos += n

    def at(self) -> int:
        """The cursor's index into the window."""
        return self.pos - self.base

    def fixed(self, st: struct.Struct) -> Any:
        self.need(st.size)
        (value,) = st.unpack_from(self.buf, self.at())
        self.pos += st.size
        return value

    def u32(self) -> int:
        return self.fixed(_U32)

    def u64(self) -> int:
        return self.fixed(_U64)

    def string_length(self, what: str) -> int:
        n = self.u64()
        if n > self.left():
            raise self.fail(f"{what} claims a string of {n:,} bytes but only {self.left():,} bytes are left")
        return n

    def name(self, what: str) -> str:
        """A key or tensor name: short in every real file, so a long one is refused, not read."""
        n = self.string_length(what)
        if n > MAX_NAME_BYTES:
            raise self.fail(f"{what} is {n:,} bytes long (names are limited to {MAX_NAME_BYTES:,})")
        return self.string_body(n, n)

    def string(self, what: str, limit: int) -> str:
        """A string value: its first ``limit`` bytes are read and shown, the rest is skipped unread."""
        n = self.string_length(what)
        return self.string_body(n, min(n, limit))

    def string_body(self, n: int, shown: int) -> str:
        self.need(shown)
        text = self.buf[self.at() : self.at() + shown].decode("utf-8", errors="replace")
        self.skip(n)
        if shown < n:
            text += f"... [{n:,} bytes in all]"
        return text

    # --- structure ----------------------------------------------------------
    def parse(self) -> GGUFHeader:
        version, n_tensors, n_kv = self.preamble()
        metadata, types = self.key_values(n_kv)
        alignment = self.alignment(metadata, types)
        infos = self.tensor_infos(n_tensors)
        data_start = -(-self.pos // alignment) * alignment
        tensors = self.place_tensors(infos, data_start, alignment)
        return GGUFHeader(version, metadata, tensors, alignment, data_start, self.size)

    def preamble(self) -> tuple[int, int, int]:
        self.where = "the magic number"
        self.need(4)
        if self.buf[:4] != MAGIC:
            raise UnsupportedFormatError(f"not a GGUF file (magic {self.buf[:4]!r}, expected b'GGUF')",
                                         path=self.path)
        self.pos = 4
        self.where = "the version"
        version = self.u32()
        if version & 0xFFFF == 0 and version != 0:
            raise UnsupportedFormatError(
                f"byte-swapped (big-endian) GGUF file (version field reads {version:#010x}); only little-endian "
                "GGUF files are supported", path=self.path)
        if version == 1:
            raise UnsupportedFormatError("GGUF version 1 (the 2023 pre-release layout) is not supported; "
                                         "re-convert the model with a current llama.cpp (versions 2 and 3 open)",
                                         path=self.path)
        if version == 0:
            raise self.fail("invalid GGUF version 0")
        if version > 3:
            raise UnsupportedFormatError(f"GGUF version {version} is newer than this reader supports (2 and 3)",
                                         path=self.path)
        self.where = "the tensor and key/value counts"
        n_tensors = self.u64()
        n_kv = self.u64()
        if n_tensors > self.left() // _MIN_TENSOR_INFO_BYTES:
            raise self.fail(f"header claims {n_tensors:,} tensors but the {self.left():,} bytes left could hold "
                            f"at most {self.left() // _MIN_TENSOR_INFO_BYTES:,}")
        if n_kv > self.left() // _MIN_KV_BYTES:
            raise self.fail(f"header claims {n_kv:,} metadata key/values but the {self.left():,} bytes left could "
                            f"hold at most {self.left() // _MIN_KV_BYTES:,}")
        if n_tensors * _MIN_TENSOR_INFO_BYTES + n_kv * _MIN_KV_BYTES > self.left():
            raise self.fail(f"header claims {n_tensors:,} tensors and {n_kv:,} key/values, more than the "
                            f"{self.left():,} bytes left could hold")
        if n_tensors > MAX_TENSORS:
            raise self.fail(f"header claims {n_tensors:,} tensors, more than the {MAX_TENSORS:,} this reader accepts")
        if n_kv > MAX_KV:
            raise self.fail(f"header claims {n_kv:,} metadata key/values, more than the {MAX_KV:,} this reader "
                            "accepts")
        return version, n_tensors, n_kv

    def key_values(self, n_kv: int) -> tuple[dict[str, Any], dict[str, int]]:
        metadata: dict[str, Any] = {}
        types: dict[str, int] = {}
        for i in range(n_kv):
            self.where = f"metadata key/value {i + 1} of {n_kv}"
            key = self.name(f"metadata key {i + 1}")
            if not key:
                raise self.fail(f"metadata key {i + 1} of {n_kv} is empty")
            if key in metadata:
                raise self.fail(f"duplicate metadata key {_show(key)}")
            self.where = f"metadata value {_show(key)}"
            vtype = self.u32()
            if vtype == _ARRAY:
                metadata[key] = self.array(key)
            elif vtype == _STRING:
                metadata[key] = self.string(f"metadata value {_show(key)}", MAX_STRING_BYTES)
            elif vtype in _FIXED:
                metadata[key] = self.scalar(vtype)
            else:
                raise self.fail(f"metadata key {_show(key)} has invalid value type {vtype}")
            types[key] = vtype
        return metadata, types

    def scalar(self, vtype: int) -> Any:
        value = self.fixed(_STRUCTS[vtype])
        if vtype == 7:
            return value != 0
        if vtype == 6:
            return _float32(value)
        return value

    def array(self, key: str) -> Any:
        etype = self.u32()
        if etype == _ARRAY:
            raise self.fail(f"metadata key {_show(key)} holds nested arrays (an array of arrays), which GGUF forbids")
        if etype != _STRING and etype not in _FIXED:
            raise self.fail(f"metadata array {_show(key)} has invalid element type {etype}")
        count = self.u64()
        item = 8 if etype == _STRING else _STRUCTS[etype].size
        if count > self.left() // item:
            raise self.fail(f"metadata array {_show(key)} claims {count:,} elements but only {self.left():,} "
                            "bytes are left")
        if etype == _STRING:
            if count > MAX_STRING_ITEMS:
                raise self.fail(f"metadata array {_show(key)} holds {count:,} strings, more than the "
                                f"{MAX_STRING_ITEMS:,} this reader walks (real vocabularies hold ~300,000)")
            items: list[Any] = self.string_items(key, count)
        else:
            shown = count if count <= LIST_LIMIT else HEAD_ITEMS
            self.need(shown * item)
            values = np.frombuffer(self.buf, dtype=_FIXED[etype][2], count=shown, offset=self.at())
            self.skip(count * item)
            if etype == 7:
                items = [bool(v) for v in values]
            elif etype == 6:
                items = [_float32(v) for v in values]
            else:
                items = values.tolist()
        if count <= LIST_LIMIT:
            return items
        name = _TYPE_NAMES[etype]
        return {"summary": f"[array of {count:,} {name}]", "type": name, "count": count, "first": items}

    def string_items(self, key: str, count: int) -> list[str]:
        """Walk ``count`` strings (tokenizer vocabularies: 100k+), reading only the lengths and the kept items.

        The hot loop works on window-relative indices; it goes back to ``need`` only at the window's end.
        """
        keep = count if count <= LIST_LIMIT else HEAD_ITEMS
        out: list[str] = []
        unpack = _U64.unpack_from
        for i in range(count):
            if i < keep or self.pos + 8 > self.base + len(self.buf):
                self.where = f"element {i + 1} of metadata array {_show(key)}"
                self.need(8)
            buf, base = self.buf, self.base
            at = self.pos - base
            (n,) = unpack(buf, at)
            self.pos += 8
            if n > self.size - self.pos:
                raise self.fail(f"element {i + 1} of metadata array {_show(key)} claims a string of {n:,} bytes "
                                f"but only {self.size - self.pos:,} bytes are left")
            if i < keep:
                shown = min(n, MAX_STRING_BYTES)
                self.need(shown)
                out.append(self.buf[self.at() : self.at() + shown].decode("utf-8", errors="replace"))
            self.pos += n
        return out

    def alignment(self, metadata: dict[str, Any], types: dict[str, int]) -> int:
        if "general.alignment" not in metadata:
            return DEFAULT_ALIGNMENT
        value = metadata["general.alignment"]
        if types["general.alignment"] != _UINT32:
            raise self.fail(f"general.alignment must be a UINT32, not {_TYPE_NAMES[types['general.alignment']]}")
        if value <= 0 or value & (value - 1):
            raise self.fail(f"general.alignment must be a power of two, not {value}")
        return value

    def tensor_infos(self, n_tensors: int) -> list[tuple[str, tuple[int, ...], str, int, int, int]]:
        """(name, row-major shape, dtype, elements, nbytes, offset in the data section) per tensor."""
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        infos = []
        names: set[str] = set()
        for i in range(n_tensors):
            self.where = f"tensor info {i + 1} of {n_tensors}"
            name = self.name(f"tensor info {i + 1}")
            if not name:
                raise self.fail(f"tensor {i + 1} of {n_tensors} has an empty name")
            if name in names:
                raise self.fail(f"duplicate tensor name {_show(name)}")
            names.add(name)
            self.where = f"the tensor info of {_show(name)}"
            n_dims = self.u32()
            if n_dims > MAX_DIMS:
                raise self.fail(f"tensor {_show(name)} has {n_dims:,} dimensions (GGUF allows at most {MAX_DIMS})")
            ne = [self.fixed(_I64) for _ in range(n_dims)]
            elements = 1
            for dim in ne:
                if dim <= 0:
                    raise self.fail(f"tensor {_show(name)} has a dimension of {dim} (each must be positive)")
                elements *= dim
                if elements > _INT64_MAX:
                    raise self.fail(f"tensor {_show(name)} shape {ne} overflows the int64 element count")
            type_id = self.u32()
            try:
                qtype = GGMLQuantizationType(type_id)
                block, type_size = GGML_QUANT_SIZES[qtype]
            except (ValueError, KeyError):
                raise self.fail(f"tensor {_show(name)} has unknown ggml type {type_id}") from None
            dt = dtypes.lookup(qtype.name)
            if dt is None or (dt.block_size, dt.type_size) != (block, type_size):
                raise self.fail(f"tensor {_show(name)} has unsupported ggml type {qtype.name}")
            first = ne[0] if ne else 1
            if first % block:
                raise self.fail(f"tensor {_show(name)}: first dimension {first:,} is not a multiple of the "
                                f"{qtype.name} block size {block}")
            offset = self.u64()
            shape = tuple(reversed(ne))  # ne[0] is the fastest-varying axis: row-major order is reversed
            infos.append((name, shape, qtype.name, elements, elements // block * type_size, offset))
        return infos

    def place_tensors(self, infos: list[tuple[str, tuple[int, ...], str, int, int, int]], data_start: int,
                      alignment: int) -> list[TensorInfo]:
        """Each tensor's data inside the file, at an aligned offset, overlapping no other."""
        tensors = []
        for name, shape, dtype, elements, nbytes, offset in infos:
            if offset % alignment:
                raise self.fail(f"tensor {_show(name)} data offset {offset:,} is not a multiple of the alignment "
                                f"{alignment}")
            begin = data_start + offset
            if begin + nbytes > self.size:
                raise self.fail(f"tensor {_show(name)} data (bytes {begin:,} to {begin + nbytes:,}) lies past the "
                                f"end of the file ({self.size:,} bytes); truncated?")
            tensors.append(TensorInfo(name=name, shape=shape, dtype=dtype, elements=elements, nbytes=nbytes,
                                      file=self.path, offset=begin))
        previous: TensorInfo | None = None
        for t in sorted(tensors, key=lambda t: (t.offset, t.nbytes)):
            if previous is not None and t.offset < previous.offset + previous.nbytes:
                raise self.fail(f"tensor {_show(t.name)} data overlaps tensor {_show(previous.name)}")
            previous = t
        return tensors

