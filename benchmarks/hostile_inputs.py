"""Writers for the hostile inputs of the security review, each small on disk (big ones are sparse).

Every ``make_*`` function writes one input under the folder it is given and
returns the path a user would open. The files are built from their format
specifications byte by byte (safetensors, GGUF, the zip and pickle layout of
torch.save), never by loading anything, so a broken reader cannot hide a
broken generator. Nothing here imports from tests/ or from the app.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

# --- safetensors ----------------------------------------------------------------------------------------------------
Tensor = tuple[str, str, list[int], "bytes | int"]  # name, dtype, shape, data (bytes, or a size of sparse zeros)
_ITEM = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "I8": 1}


def write_safetensors(path: Path, tensors: list[Tensor], metadata: dict[str, str] | None = None,
                      header_len: int | None = None) -> Path:
    """A valid safetensors file; ``header_len`` pads the JSON with spaces to that exact length."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, data in tensors:
        size = data if isinstance(data, int) else len(data)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if header_len is None:
        header_len = len(text) + (-len(text) % 8)
    if len(text) > header_len:
        raise ValueError(f"header of {len(text)} bytes does not fit in {header_len}")
    text += b" " * (header_len - len(text))
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", header_len) + text)
        for _name, _dtype, _shape, data in tensors:
            if isinstance(data, int):
                f.seek(data, os.SEEK_CUR)
            else:
                f.write(data)
        f.truncate()
    return path


def f32(values: Any) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def small_model(path: Path, header_len: int | None = None, prefix: str = "") -> Path:
    """Three honest little tensors, optionally with a padded header."""
    rng = np.random.default_rng(1)
    tensors: list[Tensor] = [
        (f"{prefix}embed.weight", "F32", [8, 4], f32(rng.standard_normal(32))),
        (f"{prefix}layers.0.mlp.weight", "F32", [4, 4], f32(rng.standard_normal(16))),
        (f"{prefix}layers.0.mlp.bias", "F32", [4], f32(rng.standard_normal(4))),
    ]
    return write_safetensors(path, tensors, header_len=header_len)


def write_index(folder: Path, weight_map: dict[str, str], name: str = "model.safetensors.index.json",
                extra: str = "") -> Path:
    """A sharded-model index; ``extra`` is raw JSON text inserted as a further top-level member."""
    body = json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    if extra:
        body = body[:-1] + ", " + extra + "}"
    path = folder / name
    path.write_text(body)
    return path


# --- GGUF -----------------------------------------------------------------------------------------------------------
_GGUF_UINT8, _GGUF_STRING, _GGUF_ARRAY, _GGUF_UINT32 = 0, 8, 9, 4


def _gguf_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _gguf_head(tensor_count: int, kv_count: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, tensor_count, kv_count)


def make_gguf_sparse_u8_array(folder: Path) -> Path:
    """A metadata array of 1.5 billion bytes that the file (sparse) really holds: reading it whole costs 1.5 GB."""
    count = 1_500_000_000
    path = folder / "big-array.gguf"
    with open(path, "wb") as f:
        f.write(_gguf_head(0, 1) + _gguf_str("hostile.blob") + struct.pack("<IIQ", _GGUF_ARRAY, _GGUF_UINT8, count))
        f.truncate(f.tell() + count)
    return path


def make_gguf_empty_strings(folder: Path) -> Path:
    """An array of 200 million empty strings: 8 zero bytes each, so a sparse 1.6 GB region holds them all."""
    count = 200_000_000
    path = folder / "empty-strings.gguf"
    with open(path, "wb") as f:
        f.write(_gguf_head(0, 1) + _gguf_str("tokenizer.ggml.tokens")
                + struct.pack("<IIQ", _GGUF_ARRAY, _GGUF_STRING, count))
        f.truncate(f.tell() + 8 * count)
    return path


def make_gguf_mxfp4_ff_scales(folder: Path) -> Path:
    """An MXFP4 tensor (type 39, blocks of 1 E8M0 scale byte + 16 bytes of 4-bit values) whose scales are 0xFF (NaN)."""
    blocks = 4
    rng = np.random.default_rng(2)
    data = b"".join(b"\xff" + rng.integers(0, 256, 16, dtype=np.uint8).tobytes() for _ in range(blocks))
    kv = _gguf_str("general.architecture") + struct.pack("<I", _GGUF_STRING) + _gguf_str("llama")
    kv += _gguf_str("general.alignment") + struct.pack("<II", _GGUF_UINT32, 32)
    info = _gguf_str("blk.0.ffn_up.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 32 * blocks, 1)
    info += struct.pack("<IQ", 39, 0)
    head = _gguf_head(1, 2) + kv + info
    head += b"\0" * (-len(head) % 32)
    path = folder / "mxfp4-ff.gguf"
    path.write_bytes(head + data)
    return path


# --- pickles written opcode by opcode (never by pickle.dumps of live objects) ---------------------------------------
class PickleWriter:
    """Emits protocol-2 opcodes; the caller composes the stream like a program."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.out.write(b"\x80\x02")
        self._memo = 0

    def op(self, raw: bytes) -> PickleWriter:
        self.out.write(raw)
        return self

    def glob(self, module: str, name: str) -> PickleWriter:
        return self.op(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def int(self, value: int) -> PickleWriter:
        if 0 <= value < 256:
            return self.op(b"K" + bytes([value]))
        if -(2 ** 31) <= value < 2 ** 31:
            return self.op(b"J" + struct.pack("<i", value))
        raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        return self.op(b"\x8a" + bytes([len(raw)]) + raw)

    def str(self, text: str) -> PickleWriter:
        raw = text.encode("utf-8")
        return self.op(b"X" + struct.pack("<I", len(raw)) + raw)

    def put(self) -> int:
        """Memoise the top of the stack; returns its memo index."""
        index = self._memo
        self._memo += 1
        self.op(b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index))
        return index

    def get(self, index: int) -> PickleWriter:
        return self.op(b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index))

    def tuple_of_ints(self, values: list[int]) -> PickleWriter:
        self.op(b"(")
        for v in values:
            self.int(v)
        return self.op(b"t")

    def tensor(self, key: str, numel: int, shape: list[int], stride: list[int], offset: int = 0,
               storage: str = "FloatStorage") -> PickleWriter:
        """torch._utils._rebuild_tensor_v2(persistent storage, offset, shape, stride, False, OrderedDict())."""
        self.glob("torch._utils", "_rebuild_tensor_v2")
        self.op(b"(")
        self.op(b"(").str("storage").glob("torch", storage).str(key).str("cpu").int(numel).op(b"t")
        self.op(b"Q")
        self.int(offset).tuple_of_ints(shape).tuple_of_ints(stride).op(b"\x89")
        self.glob("collections", "OrderedDict").op(b")R")
        return self.op(b"tR")

    def finish(self) -> bytes:
        return self.out.getvalue() + b"."


# --- the zip container of torch.save, with optional sparse members and zip64 ----------------------------------------
def write_torch_zip(path: Path, pickle_bytes: bytes, storages: dict[str, bytes | int]) -> Path:
    """archive/data.pkl, archive/byteorder, archive/data/<key>..., archive/version, stored (not compressed).

    A storage given as an int is that many zero bytes left as a hole in the file (its CRC is not computed:
    the CRC of a terabyte of zeros would take hours, and readers check it only for what they read whole).
    """
    members: list[tuple[str, bytes | int]] = [("archive/data.pkl", pickle_bytes), ("archive/byteorder", b"little")]
    members += [(f"archive/data/{key}", data) for key, data in storages.items()]
    members.append(("archive/version", b"3\n"))
    central = b""
    with open(path, "wb") as f:
        for name, data in members:
            size = data if isinstance(data, int) else len(data)
            crc = 0 if isinstance(data, int) else zlib.crc32(data)
            offset = f.tell()
            raw_name = name.encode()
            big = size >= 0xFFFFFFFF or offset >= 0xFFFFFFFF
            local_extra = struct.pack("<HHQQ", 1, 16, size, size) if big else b""
            pad = (-(offset + 30 + len(raw_name) + len(local_extra) + 4) % 64)  # torch aligns data to 64 bytes
            local_extra += struct.pack("<HH", 0xCAFE, pad) + b"Z" * pad
            small = 0xFFFFFFFF if big else size
            f.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 45 if big else 20, 0, 0, 0, 0, crc, small, small,
                                len(raw_name), len(local_extra)) + raw_name + local_extra)
            if isinstance(data, int):
                f.seek(data, os.SEEK_CUR)
            else:
                f.write(data)
            cd_extra = struct.pack("<HHQQQ", 1, 24, size, size, offset) if big else b""
            central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45 if big else 20, 0, 0, 0, 0, crc, small, small,
                                   len(raw_name), len(cd_extra), 0, 0, 0, 0,
                                   0xFFFFFFFF if big else offset) + raw_name + cd_extra
        cd_offset = f.tell()
        f.write(central)
        if cd_offset >= 0xFFFFFFFF:
            z64_at = f.tell()
            f.write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, len(members), len(members),
                                len(central), cd_offset))
            f.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, z64_at, 1))
            f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
        else:
            f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central),
                                cd_offset, 0))
        f.truncate()
    return path


def _state_dict_with(extra_key: str, emit_extra: Any) -> tuple[bytes, dict[str, bytes | int]]:
    """{'weight': a real 4x4 float tensor, extra_key: whatever ``emit_extra(writer)`` pushes}."""
    w = PickleWriter()
    w.op(b"}")
    w.put()
    w.op(b"(").str("weight").tensor("0", 16, [4, 4], [4, 1])
    w.str(extra_key)
    emit_extra(w)
    w.op(b"u")
    return w.finish(), {"0": f32(np.arange(16))}


def make_pickle_hash_collisions(folder: Path, keys: int = 50_000) -> Path:
    """A dict whose int keys k*(2**61-1) all hash to 0 in CPython: building it naively is quadratic."""
    def emit(w: PickleWriter) -> None:
        w.op(b"}")
        w.put()
        for start in range(0, keys, 1000):
            w.op(b"(")
            for k in range(start, min(keys, start + 1000)):
                w.int(k * (2 ** 61 - 1)).int(1)
            w.op(b"u")
    data, storages = _state_dict_with("colliding", emit)
    return write_torch_zip(folder / "hash-collisions.pt", data, storages)


def make_pickle_list_copies(folder: Path, length: int = 400_000, copies: int = 300) -> Path:
    """One memoised list of 400,000 items (~1 MB), then a list holding it 300 times: 120 M items if copied."""
    def emit(w: PickleWriter) -> None:
        w.op(b"]")
        inner = w.put()
        for start in range(0, length, 1000):
            w.op(b"(" + b"K\x01" * min(1000, length - start) + b"e")
        w.op(b"0]")  # POP the inner list, start the outer one
        w.op(b"(")
        for _ in range(copies):
            w.get(inner)
        w.op(b"e")
    data, storages = _state_dict_with("copies", emit)
    return write_torch_zip(folder / "list-copies.pt", data, storages)


def make_pickle_shared_dag(folder: Path, levels: int = 19) -> Path:
    """A DAG of lists, each holding the previous one twice, over one tensor: 2**19 = 524,288 paths to it."""
    def emit(w: PickleWriter) -> None:
        w.op(b"(").tensor("0", 16, [4, 4], [4, 1]).op(b"l")
        prev = w.put()
        for _ in range(levels):
            w.op(b"0(").get(prev).get(prev).op(b"l")
            prev = w.put()
    data, storages = _state_dict_with("dag", emit)
    return write_torch_zip(folder / "shared-dag.pt", data, storages)


def make_view_stride0(folder: Path) -> Path:
    """A one-element storage viewed with stride 0 as 100 million elements."""
    w = PickleWriter()
    w.op(b"}")
    w.put()
    w.op(b"(").str("expanded").tensor("0", 1, [100_000_000], [0]).op(b"u")
    return write_torch_zip(folder / "stride0-view.pt", w.finish(), {"0": f32([1.5])})


def make_view_over_terabyte(folder: Path) -> Path:
    """A 2-element view into a 1 TB storage (a hole in a sparse file, zip64 member)."""
    numel = (1 << 40) // 4
    w = PickleWriter()
    w.op(b"}")
    w.put()
    w.op(b"(").str("tiny_view").tensor("0", numel, [2], [1], offset=numel // 2).op(b"u")
    return write_torch_zip(folder / "terabyte-storage.pt", w.finish(), {"0": 1 << 40})


def make_pickle_named_gguf(folder: Path) -> Path:
    """A torch.save zip named .gguf: the format must come from the bytes, not the name."""
    w = PickleWriter()
    w.op(b"}")
    w.put()
    w.op(b"(").str("weight").tensor("0", 4, [4], [1]).op(b"u")
    return write_torch_zip(folder / "model.gguf", w.finish(), {"0": f32([1, 2, 3, 4])})


# --- names and metadata crafted for the terminal, the PDF and spreadsheets ------------------------------------------
SPOOF_NAMES = ["\x1b[2J\x1b[31mlayers.0.weight", "layers.1\rOK.weight", "layers.2\x00hidden.weight",
               "layers.3.\u202ethgiew", "layers.4.\u2066isolated\u2069.weight", "layers.5\x1b]8;;http://x\x07link"]


def make_spoof_names(folder: Path) -> Path:
    rng = np.random.default_rng(3)
    tensors: list[Tensor] = [(n, "F32", [2, 2], f32(rng.standard_normal(4))) for n in SPOOF_NAMES]
    meta = {"\x1b[2Jtitle": "\x1b[31mred\r\x00nul\u202eevil", "note": "line1\rline2\u2067x"}
    return write_safetensors(folder / "spoof-names.safetensors", tensors, metadata=meta)


def make_spoof_big_metadata(folder: Path) -> Path:
    """A 4 MB metadata value (one line, if printed as is)."""
    meta = {"description": "A" * (4 << 20), "other": "x"}
    return write_safetensors(folder / "big-metadata.safetensors", [("w", "F32", [2], f32([1, 2]))], metadata=meta)


def make_html_names(folder: Path) -> Path:
    names = ["<b>bold</b>.weight", "<img src=x onerror=alert(1)>.bias", "<a href='http://x'>click</a>.w",
             '=HYPERLINK("http://x","click")', "+cmd|' /C calc'!A0", "@SUM(1+1)"]
    tensors: list[Tensor] = [(n, "F32", [2], f32([i, -i])) for i, n in enumerate(names)]
    meta = {"<script>": "<script>alert(1)</script>", "format": "<h1>pt</h1>"}
    return write_safetensors(folder / "html-names.safetensors", tensors, metadata=meta)


# --- header lengths whose first bytes read as pickle opcodes --------------------------------------------------------
def make_header_len(folder: Path, header_len: int) -> Path:
    return small_model(folder / f"header-{header_len}.safetensors", header_len=header_len)


def make_header_len_shards(folder: Path) -> Path:
    """A two-shard model whose shards have header lengths 640 (b'\\x80\\x02') and 0x6428 (b'(d')."""
    model = folder / "sharded"
    model.mkdir()
    small_model(model / "model-00001-of-00002.safetensors", header_len=640, prefix="a.")
    small_model(model / "model-00002-of-00002.safetensors", header_len=0x6428, prefix="b.")
    weights = {f"{p}{n}": f"model-0000{i}-of-00002.safetensors" for i, p in ((1, "a."), (2, "b."))
               for n in ("embed.weight", "layers.0.mlp.weight", "layers.0.mlp.bias")}
    write_index(model, weights)
    return model


# --- extreme values -------------------------------------------------------------------------------------------------
def make_float64_extremes(folder: Path) -> Path:
    fmax = np.finfo(np.float64).max  # 1.7976931348623157e308: "1.8e308" in round figures
    rng = np.random.default_rng(4)
    values = np.concatenate([[fmax, -fmax, 1e300, -1e300, 1e300, -fmax], rng.standard_normal(1000)])
    tensors: list[Tensor] = [("extremes.weight", "F64", [len(values)], values.astype("<f8").tobytes()),
                             ("only_huge.weight", "F64", [4], np.array([fmax, fmax, -fmax, 1e300], "<f8").tobytes())]
    return write_safetensors(folder / "float64-extremes.safetensors", tensors)


# --- polyglots ------------------------------------------------------------------------------------------------------
def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


def make_polyglot_zip(folder: Path, name: str) -> Path:
    """A valid safetensors file whose last tensor's bytes are a whole zip archive (torch.save layout):
    zipfile (and torch.load, which picks the zip by its signature) sees an archive."""
    blob = _zip_bytes()
    tensors: list[Tensor] = [("w", "F32", [4], f32([1, 2, 3, 4])), ("payload", "U8", [len(blob)], blob)]
    path = write_safetensors(folder / name, tensors)
    assert zipfile.is_zipfile(path), "generator bug: not a zip"
    return path


def make_polyglot_tar(folder: Path) -> Path:
    """A valid safetensors file whose first 512 bytes are also a valid (v7) tar header: the octal fields and
    checksum live inside a metadata string, so tarfile (and torch's legacy tar loader) sees an archive."""
    import tarfile

    prefix = '{"__metadata__":{"note":"'
    start = 8 + len(prefix)  # file offset where the string's text begins
    text = bytearray(b"-" * (600 - start))

    def put(offset: int, value: bytes) -> None:
        text[offset - start: offset - start + len(value)] = value

    for offset, field in ((100, b"0000644 "), (108, b"0000000 "), (116, b"0000000 "), (124, b"00000000000 "),
                          (136, b"00000000000 "), (148, b"        "), (156, b"0"), (329, b"        "),
                          (337, b"        ")):
        put(offset, field)
    body = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, separators=(",", ":"))
    header = prefix.encode() + bytes(text) + b'"},' + body[1:].encode()
    header += b" " * (-len(header) % 8)
    head = struct.pack("<Q", len(header)) + header
    block = bytearray(head[:512])
    checksum = sum(block)  # the checksum field already holds 8 spaces, as the tar format sums it
    put(148, b"%07o " % checksum)
    header = prefix.encode() + bytes(text) + b'"},' + body[1:].encode()
    header += b" " * (-len(header) % 8)
    path = folder / "polyglot-tar.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + f32([1, 2, 3, 4]))
    assert tarfile.is_tarfile(path), "generator bug: not a tar"
    json.loads(path.read_bytes()[8: 8 + len(header)])
    return path


# --- work on names: tree folding, huge indices ----------------------------------------------------------------------
def _nested_names(width: int, depth: int) -> list[tuple[str, list[int]]]:
    """Numbered blocks inside numbered blocks; the leaf's shape alternates with the parity of every index, so
    each level holds many short runs of equal structure (the worst case for folding repeated blocks)."""
    out: list[tuple[str, list[int]]] = []

    def walk(prefix: str, level: int, parity: int) -> None:
        if level == depth:
            out.append((prefix + "w", [1 + parity % 2]))
            out.append((prefix + "b", [1 + (parity // 2) % 2]))
            return
        for i in range(width):
            walk(f"{prefix}{'ab'[level % 2]}.{i}.", level + 1, parity + i * (level + 1))
    walk("", 0, 0)
    return out


def make_tree_fold(folder: Path, width: int, depth: int, name: str) -> Path:
    tensors: list[Tensor] = [(n, "U8", s, b"\x01" * s[0]) for n, s in _nested_names(width, depth)]
    return write_safetensors(folder / name, tensors)


def make_long_name(folder: Path) -> Path:
    name = ".".join("h" if i % 2 == 0 else str(i) for i in range(3000))
    return write_safetensors(folder / "3000-parts.safetensors", [(name, "F32", [1], f32([1])), ("x.w", "F32", [1],
                                                                                              f32([2]))])


def make_superscript_index(folder: Path) -> Path:
    """'²'.isdigit() is True but int('²') raises: a layer index that is a digit and not a number."""
    tensors: list[Tensor] = [("model.².weight", "F32", [2], f32([1, 2])), ("model.1.weight", "F32", [2], f32([3, 4])),
                             ("model.²", "F32", [1], f32([5])), ("model.١.weight", "F32", [2], f32([6, 7]))]
    return write_safetensors(folder / "superscript.safetensors", tensors)


def make_huge_indices(folder: Path) -> Path:
    """Layer indices of 5,000 digits: int() refuses strings over 4,300 digits by default."""
    tensors: list[Tensor] = [(f"layers.{str(d) * 5000}.weight", "F32", [2], f32([d, -d])) for d in range(1, 4)]
    return write_safetensors(folder / "5000-digit-index.safetensors", tensors)


# --- scale: tensor counts, shard counts -----------------------------------------------------------------------------
def make_million_empty_tensors(folder: Path) -> Path:
    """One million zero-size tensors in one header (~56 MB of JSON, no data)."""
    path = folder / "million-empty.safetensors"
    parts = [f'"{i:x}":{{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}' for i in range(1_000_000)]
    text = ("{" + ",".join(parts) + "}").encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    return path


def make_zero_element_tensors(folder: Path, count: int = 20_000) -> Path:
    """20,000 tensors with no elements: per-tensor statistics state must not cost memory each."""
    tensors: list[Tensor] = [(f"{i}", "F32", [0], b"") for i in range(count)]
    return write_safetensors(folder / "20000-empty.safetensors", tensors)


def make_zero_element_pickle(folder: Path, count: int = 20_000) -> Path:
    """20,000 zero-element tensors over one shared empty storage, every repeated part memoised (~25 bytes each)."""
    w = PickleWriter()
    w.op(b"}")
    w.put()
    memo = []
    for emit in (lambda: w.glob("torch._utils", "_rebuild_tensor_v2"),
                 lambda: w.op(b"(").str("storage").glob("torch", "FloatStorage").str("0").str("cpu").int(0).op(b"tQ"),
                 lambda: w.tuple_of_ints([0]), lambda: w.tuple_of_ints([1]),
                 lambda: w.glob("collections", "OrderedDict").op(b")R")):
        emit()
        memo.append(w.put())
        w.op(b"0")
    rebuild, storage, shape, stride, hooks = memo
    for start in range(0, count, 1000):
        w.op(b"(")
        for i in range(start, min(count, start + 1000)):
            w.str(str(i)).get(rebuild).op(b"(").get(storage).int(0).get(shape).get(stride).op(b"\x89")
            w.get(hooks).op(b"tR")
        w.op(b"u")
    return write_torch_zip(folder / "20000-empty.pt", w.finish(), {"0": b""})


def make_shards(folder: Path, count: int, name: str) -> Path:
    """A model folder of ``count`` tiny real shards and an index naming them all."""
    model = folder / name
    model.mkdir()
    weight_map = {}
    for i in range(1, count + 1):
        shard = f"model-{i:05d}-of-{count:05d}.safetensors"
        tensor = f"layers.{i}.w"
        weight_map[tensor] = shard
        write_safetensors(model / shard, [(tensor, "F32", [1], f32([i]))])
    write_index(model, weight_map)
    return model


def make_sparse_700mb(folder: Path) -> Path:
    """A 700 MB float32 vector of zeros, a hole on disk: statistics must stream it, not hold it."""
    return write_safetensors(folder / "700mb-f32.safetensors", [("big.weight", "F32", [175_000_000], 700_000_000)])


# --- special files and deep JSON ------------------------------------------------------------------------------------
def make_fifo_file(folder: Path) -> Path:
    path = folder / "fifo.safetensors"
    os.mkfifo(path)
    return path


def make_fifo_in_folder(folder: Path) -> Path:
    model = folder / "fifo-model"
    model.mkdir()
    os.mkfifo(model / "model.safetensors")
    return model


def make_fifo_index(folder: Path) -> Path:
    model = folder / "fifo-index"
    model.mkdir()
    small_model(model / "model-00001-of-00001.safetensors")
    os.mkfifo(model / "model.safetensors.index.json")
    return model / "model.safetensors.index.json"


def make_fifo_config(folder: Path) -> Path:
    model = folder / "fifo-config"
    model.mkdir()
    small_model(model / "model.safetensors")
    os.mkfifo(model / "config.json")
    return model


def _deep_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def make_deep_config(folder: Path) -> Path:
    model = folder / "deep-config"
    model.mkdir()
    small_model(model / "model.safetensors")
    (model / "config.json").write_text('{"architectures":["LlamaForCausalLM"],"deep":' + _deep_json(990) + "}")
    return model


def make_deep_index(folder: Path) -> Path:
    model = folder / "deep-index"
    model.mkdir()
    small_model(model / "model-00001-of-00001.safetensors")
    names = ("embed.weight", "layers.0.mlp.weight", "layers.0.mlp.bias")
    return write_index(model, {n: "model-00001-of-00001.safetensors" for n in names},
                       extra='"deep": ' + _deep_json(990))


def make_unreadable_shard(folder: Path) -> Path:
    model = make_shards(folder, 2, "chmod-shard")
    (model / "model-00002-of-00002.safetensors").chmod(0)
    return model


def make_unreadable_folder(folder: Path) -> Path:
    model = folder / "chmod-folder"
    model.mkdir()
    small_model(model / "model.safetensors")
    model.chmod(0)
    return model


# --- the statistics cache -------------------------------------------------------------------------------------------
CACHE_MODEL_SIDE = 512  # 512 x 512 float32 = 1 MiB: the smallest data file the statistics cache keeps


def cache_model_values(nan: bool) -> bytes:
    """512 x 512 float32 values: A has NaNs and a wide spread, B (same size) has none and a narrow one."""
    rng = np.random.default_rng(5)
    n = CACHE_MODEL_SIDE * CACHE_MODEL_SIDE
    if nan:
        values = rng.standard_normal(n) * 100
        values[::3] = np.nan
    else:
        values = rng.uniform(0.5, 1.0, n)
    return f32(values)


def make_cache_model(folder: Path, nan: bool = True) -> Path:
    side = CACHE_MODEL_SIDE
    return write_safetensors(folder / "cached.safetensors", [("layers.0.weight", "F32", [side, side],
                                                               cache_model_values(nan))])
