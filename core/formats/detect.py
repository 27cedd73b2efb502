"""Recognise what a file is from its first bytes, never from its name.

Returns a format for what we open and raises with a reason that names the
thing for what we refuse (TorchScript, legacy GGML, Git LFS pointer, HTML ...).
"""

from __future__ import annotations

import os
import struct
import zipfile

from core.errors import CheckpointError, MalformedFileError, UnsafeFileError, UnsupportedFormatError
from core.formats.pickle_vm import OPCODES, ByteSource, run_pickle
from core.io import FileReader, read_head

SNIFF_BYTES = 64
HEAD_BYTES = 1024  # read with the sniffed bytes in the same call: a small file is read whole by it

_GGML_LEGACY = {b"lmgg": "GGML", b"fmgg": "GGMF", b"tjgg": "GGJT", b"algg": "GGLA", b"nsgg": "GGSN"}
_OTHER_MAGIC = [
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf", "a 7-zip archive"),
    (b"\x89HDF", "an HDF5 file (Keras/TensorFlow weights)"),
    (b"\x7fELF", "an executable program"),
    (b"MZ", "a Windows executable"),
    (b"\x93NUMPY", "a NumPy .npy array"),
]


def sniff(path: str, known: tuple[bytes, int] | None = None) -> str:
    """Return "safetensors", "gguf", "pytorch-zip", "pytorch-legacy" or "pickle"; raise otherwise.

    ``known``: the file's first HEAD_BYTES bytes and its size, when the caller has just read them (a model of
    60,000 shards opens each file once less)."""
    try:
        # regular files only: a FIFO or device must not hang us
        first, size = known if known is not None else read_head(path, HEAD_BYTES)
    except IsADirectoryError:
        raise CheckpointError("is a folder, not a file", path=path) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read: {exc.strerror or exc}", path=path) from None
    if size == 0:
        raise MalformedFileError("the file is empty (0 bytes)", path=path)
    head = first[:SNIFF_BYTES]
    if head.startswith(b"GGUF"):
        return "gguf"
    if _is_strict_safetensors(path, first, size):  # before pickles: ~1 in 400 header lengths look like opcodes
        return "safetensors"
    if head[:4] in _GGML_LEGACY:
        raise UnsupportedFormatError(
            f"legacy {_GGML_LEGACY[head[:4]]} model file (the pre-GGUF llama.cpp/whisper.cpp format); "
            "convert it to GGUF first",
            path=path,
        )
    if head.startswith(b"version https://git-lfs"):
        raise MalformedFileError(
            "Git LFS pointer file, not the weights: the weights were not downloaded (run `git lfs pull`)",
            path=path,
        )
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")):
        raise UnsupportedFormatError(
            "an HTML/XML page, not a checkpoint (a download that saved a web page instead of the file?)", path=path
        )
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "pytorch-zip"
    if _looks_like_new_pickle(head):
        if head[2:3] == b"\x8a":  # LONG1: the legacy format starts with the magic number as a long
            return "pytorch-legacy"
        return "pickle"
    if _looks_like_old_pickle(head):
        return "pickle"
    if len(head) >= 9 and _looks_like_safetensors(head, size):
        return "safetensors"
    if head.lstrip().startswith((b"{", b"[")):
        raise UnsupportedFormatError("a JSON file, not a checkpoint or a model index we know", path=path)
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            raise UnsupportedFormatError(f"{what}, not a checkpoint", path=path)
    if _looks_like_onnx(head):
        raise UnsupportedFormatError("an ONNX model (protobuf); Weightscope opens safetensors, GGUF and PyTorch files",
                                     path=path)
    if size < 8:
        raise MalformedFileError(f"too small to be a checkpoint ({size} bytes)", path=path)
    raise UnsupportedFormatError(
        "not a recognised checkpoint (expected safetensors, GGUF or a PyTorch .bin/.pt file)", path=path
    )


def _is_strict_safetensors(path: str, head: bytes, size: int) -> bool:
    """The 8-byte header length N fits the file, byte 8 opens the JSON and the header's last non-space byte
    closes it: what safetensors writes, whatever N's bytes look like."""
    if len(head) < 10 or head[8:9] != b"{":
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len < 2 or 8 + header_len > size:
        return False
    if 8 + header_len <= len(head):  # the whole header is in hand: no second read
        return head[9 : 8 + header_len].rstrip(b" ").endswith(b"}")
    with FileReader(path) as reader:
        end = 8 + header_len
        while end > 9:  # skip the space padding (any length) back to the JSON's last byte
            start = max(9, end - (64 << 10))
            tail = reader.read(start, end - start).rstrip(b" ")
            if tail:
                return tail.endswith(b"}")
            end = start
    return False


def _looks_like_new_pickle(head: bytes) -> bool:
    """PROTO 2-5 followed by an opcode a pickler writes next (a safetensors length 640 is b"\\x80\\x02\\x00...")."""
    return len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5 and head[2] in OPCODES and head[2] != 0x80


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    (header_len,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and header_len >= 2 and head[9:10] in (b'"', b"}", b" ", b"\n", b"\t", b"\r")


def _looks_like_old_pickle(head: bytes) -> bool:
    """Protocol 0/1 pickles start with MARK, EMPTY_DICT, EMPTY_LIST or GLOBAL and end with '.'."""
    if head[:1] == b"c":
        line = head[1:].split(b"\n", 1)[0]
        return b"\n" in head[1:] and all(32 < ch < 127 for ch in line)
    if head[:1] in (b"V", b"S", b"I", b"L", b"F", b"g", b"p", b"P"):  # text opcodes with a newline-ended argument
        line = head[1:].split(b"\n", 1)[0]
        return b"\n" in head[1:] and len(line) > 0 and all(32 <= ch < 127 for ch in line) and " " not in line.decode()
    return head[:1] in (b"}", b"]") or (head[:1] == b"(" and len(head) > 1 and head[1:2] in b"dlt(cIFSVN")


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto starts with ir_version (field 1, varint: 0x08) then usually producer_name (0x12) or opset.
    return head[:1] == b"\x08" and len(head) > 2 and head[2:3] in (b"\x12", b"\x3a", b"\x42")


def zip_kind(path: str) -> str:
    """For a zip: "torchscript" when it holds code, else "pytorch"; malformed zips raise."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise MalformedFileError(f"broken zip archive ({exc})", path=path) from None
    if any("/code/" in n or n.endswith("/constants.pkl") or n == "constants.pkl" for n in names):
        return "torchscript"
    return "pytorch"


# --- what other loaders would make of the file ---------------------------------------------------------------------
_PYTORCH_NAMES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_KIND_WORDS = {"safetensors": "safetensors", "gguf": "GGUF", "pytorch-zip": "a PyTorch zip (pickle inside)",
               "pytorch-legacy": "a legacy PyTorch pickle", "pickle": "a Python pickle"}
_PICKLE_KINDS = ("pytorch-zip", "pytorch-legacy", "pickle")
MAX_POLYGLOT_PICKLE = 64 << 20
_TAR_BLOCK = 512
MAX_TAR_MEMBERS = 64


def file_warnings(path: str, kind: str, whole: bytes | None = None) -> list[str]:
    """Lines for Checkpoint.warnings: a name that promises another format, and a file that also parses as another
    container (tar, zip, pickle), naming what that container's loader would do (run code, for a pickle).

    Other tools choose their loader by the name, and torch.load tries tar, then zip, then pickle, whatever the
    name: a file shown here as one harmless tensor may run code there.
    """
    out: list[str] = []
    name = os.path.basename(path)
    lower = name.lower()
    said = ("PyTorch" if lower.endswith(_PYTORCH_NAMES) else "safetensors" if lower.endswith(".safetensors")
            else "GGUF" if lower.endswith(".gguf") else None)
    matches = {"PyTorch": kind in _PICKLE_KINDS, "safetensors": kind == "safetensors", "GGUF": kind == "gguf"}
    if said and not matches[said]:
        loader = "torch.load" if said == "PyTorch" else f"a {said} loader"
        out.append(f"the name {name[:80]!r} says {said} but the content is {_KIND_WORDS.get(kind, kind)}: tools that "
                   f"choose their loader by name would hand it to {loader}")
    try:
        if whole is not None:  # the caller read the whole (small) file already
            out.extend(_container_warnings(_BytesReader(whole, path), kind))
        else:
            with FileReader(path) as reader:
                out.extend(_container_warnings(reader, kind))
    except (CheckpointError, OSError):
        pass  # the reader that opened the file already vetted what we show; this is a second opinion
    return out


def _container_warnings(reader: FileReader, kind: str) -> list[str]:
    out: list[str] = []
    head = reader.read(0, min(reader.size, 2 * _TAR_BLOCK))
    if head[257:262] == b"ustar" or _tar_checksum_ok(head[:_TAR_BLOCK]):
        where = "\"ustar\" at offset 257" if head[257:262] == b"ustar" else "a valid tar header checksum"
        out.append(f"the file is also a tar archive ({where}): torch.load(weights_only=False) tries "
                   "the legacy tar format first" + _tar_pickle_verdict(reader))
    if kind != "pytorch-zip" and (head.startswith(b"PK\x03\x04") or _has_zip_end(reader)):
        out.append("the file is also a zip archive: torch.load reads it as a torch.save checkpoint"
                   + _zip_pickle_verdict(reader.path))
    if kind not in _PICKLE_KINDS and (_looks_like_new_pickle(head) or _looks_like_old_pickle(head[:SNIFF_BYTES])):
        verdict = _pickle_verdict(reader, 0, min(reader.size, MAX_POLYGLOT_PICKLE))
        if verdict is not None:
            out.append("the file is also a pickle: torch.load and pickle.load would unpickle it" + verdict)
    return out


def _tar_checksum_ok(block: bytes) -> bool:
    """A pre-POSIX (v7) tar header has no magic; Python's tarfile, and so torch.load, accepts any block whose
    checksum field matches the sum of its bytes (the field itself counted as spaces)."""
    if len(block) < _TAR_BLOCK:
        return False
    field = block[148:156].replace(b"\0", b" ").strip()
    if not field or any(c not in b"01234567" for c in field):
        return False
    stored = int(field, 8)
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:_TAR_BLOCK])
    signed = unsigned - 2 * sum(c for c in block[:148] + block[156:_TAR_BLOCK] if c > 127)  # some tars sum signed
    return stored in (unsigned, signed) and unsigned != 8 * 32  # an all-zero block is the end marker, not a header


def _has_zip_end(reader: FileReader) -> bool:
    """An end-of-central-directory record whose comment ends the file: where every zip reader looks."""
    tail_len = min(reader.size, 22 + 0xFFFF)
    tail = reader.read(reader.size - tail_len, tail_len)
    pos = len(tail)
    while (pos := tail.rfind(b"PK\x05\x06", 0, pos)) >= 0:
        if pos + 22 <= len(tail) and pos + 22 + int.from_bytes(tail[pos + 20 : pos + 22], "little") == len(tail):
            return True
    return False


def _pickle_verdict(reader: FileReader | _BytesReader, start: int, end: int) -> str | None:
    """'' for a pickle that parses, ', and it would run code: <refusal>' for one that calls, None for no pickle."""
    try:
        run_pickle(ByteSource(reader.read, start, end), lambda pid: None)
    except UnsafeFileError as exc:
        return f", and it would run code: {exc.reason}"
    except CheckpointError:
        return None
    return ""


def _zip_pickle_verdict(path: str) -> str:
    """Interpret the zip's stored .pkl members (small, uncompressed only) with our own interpreter."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist()[:1000] if i.filename.endswith(".pkl")
                     and i.compress_type == zipfile.ZIP_STORED and i.file_size <= MAX_POLYGLOT_PICKLE]
            for info in infos[:4]:
                data = zf.read(info)
                verdict = _pickle_verdict(_BytesReader(data), 0, len(data))
                if verdict:
                    return f" ({info.filename[:80]!r}{verdict})"
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        pass
    return ""


def _tar_pickle_verdict(reader: FileReader) -> str:
    """Walk the tar headers (ours, bounded) to the members torch's legacy tar loader unpickles."""
    pos = 0
    for _ in range(MAX_TAR_MEMBERS):
        if pos + _TAR_BLOCK > reader.size:
            break
        header = reader.read(pos, _TAR_BLOCK)
        name = header[:100].split(b"\0", 1)[0]
        try:
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            break
        data = pos + _TAR_BLOCK
        if name in (b"storages", b"tensors", b"pickle") and data + size <= reader.size:
            verdict = _pickle_verdict(reader, data, data + min(size, MAX_POLYGLOT_PICKLE))
            if verdict:
                return f" (its member {name.decode()!r}{verdict})"
        pos = data + (size + _TAR_BLOCK - 1) // _TAR_BLOCK * _TAR_BLOCK
    return ""


class _BytesReader:
    """The read(offset, n) of a FileReader over bytes in memory."""

    def __init__(self, data: bytes, path: str = "") -> None:
        self.data = data
        self.size = len(data)
        self.path = path

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset : offset + n]
