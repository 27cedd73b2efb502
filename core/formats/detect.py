"""Recognise what a file is from its first bytes, never from its name.

Returns a format for what we open and raises with a reason that names the
thing for what we refuse (TorchScript, legacy GGML, Git LFS pointer, HTML ...).
"""

from __future__ import annotations

import struct
import zipfile

from core.errors import CheckpointError, MalformedFileError, UnsupportedFormatError

SNIFF_BYTES = 64

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


def sniff(path: str) -> str:
    """Return "safetensors", "gguf", "pytorch-zip", "pytorch-legacy" or "pickle"; raise otherwise."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
            size = f.seek(0, 2)
    except IsADirectoryError:
        raise CheckpointError("is a folder, not a file", path=path) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read: {exc.strerror or exc}", path=path) from None
    if size == 0:
        raise MalformedFileError("the file is empty (0 bytes)", path=path)
    if head.startswith(b"GGUF"):
        return "gguf"
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
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
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
