"""The one entry point for opening a model: ``open_checkpoint(path)``.

A path may be a file, a sharded index (``*.index.json``) or a folder. The
format is decided by content; each reader returns a Checkpoint whose tensors
are then classified (kind, role) and described (architecture) in one place.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
from collections.abc import Iterator

import numpy as np

from core.checkpoint import Checkpoint, TensorInfo
from core.errors import CheckpointError, MalformedFileError, MissingFilesError, UnsupportedFormatError
from core.formats.detect import sniff
from core.io import FileReader, OpenError, open_error_reason, read_head

MAX_CONFIG_BYTES = 4 << 20
MAX_INDEX_BYTES = 64 << 20
MAX_JSON_DEPTH = 64  # real configs nest a few levels; Python's json and our walkers recurse per level
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SPLIT_GGUF = re.compile(r"^(?P<stem>.*)-(?P<idx>\d{5})-of-(?P<total>\d{5})\.gguf$")


def open_checkpoint(path: str) -> Checkpoint:
    """Open ``path`` read-only and return its Checkpoint, or raise a CheckpointError."""
    path = os.fspath(path)
    try:
        os.stat(path)
    except OSError as exc:
        reference = _reference_model(path) if not os.path.lexists(path) else None
        if reference is None:
            why = open_error_reason(path, exc)
            raise CheckpointError("no such file or folder" if why == "no such file" else why, path=path) from None
        path = reference
    with _gc_paused():
        if os.path.isdir(path):
            checkpoint = _open_folder(path)
        elif path.endswith(".json"):
            checkpoint = _open_json(path)
        else:
            checkpoint = _open_file(path)
        return _finish(checkpoint)


def _reference_model(name: str) -> str | None:
    """The bundled config of a reference model named like "llama-3.1-405b", when no file has that name."""
    from core.reference_models import resolve_reference

    return resolve_reference(name)


def _open_json(path: str) -> Checkpoint:
    """A sharded model's index, or a config.json standing for a model without weights."""
    from core.formats.config_only import looks_like_config, open_config

    if os.path.basename(path) == "adapter_config.json":  # a PEFT adapter: open the weights beside it
        return _open_adapter(path)
    data = read_small_json(path, MAX_INDEX_BYTES)
    if looks_like_config(data):
        return open_config(path, path, data)
    return _open_index(path, data)


def _open_adapter(config_path: str) -> Checkpoint:
    """adapter_model.safetensors (or .bin) beside a PEFT adapter_config.json; the config is read by core.lora."""
    folder = os.path.dirname(os.path.abspath(config_path))
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if os.path.lexists(os.path.join(folder, name)):
            checkpoint = _open_file(os.path.join(folder, name))
            checkpoint.path = config_path
            return checkpoint
    raise MissingFilesError("no adapter_model.safetensors or adapter_model.bin beside adapter_config.json",
                            path=config_path)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cycle collector while a header becomes a million small objects.

    Each collection walks the objects built so far, so with it running a 1M-tensor header took twice as
    long to parse; headers build no reference cycles, so nothing is lost by collecting once at the end.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_count()[0] > FREEZE_AFTER_OBJECTS:  # the records live as long as the model: the collector
            gc.freeze()  # would walk them again and again (a million-tensor header: 0.75 s); it now skips them
        if was_enabled:
            gc.enable()


FREEZE_AFTER_OBJECTS = 200_000


def _open_file(path: str) -> Checkpoint:
    kind = sniff(path)
    if kind == "safetensors":
        from core.formats.safetensors_format import open_safetensors

        return _with_file_warnings(open_safetensors([path], path), [path], kind)
    if kind == "gguf":
        from core.formats.gguf_format import open_gguf

        parts = _gguf_split_parts(path)
        return _with_file_warnings(open_gguf(parts, path), parts, kind)
    from core.formats.pytorch_format import open_pytorch

    return open_pytorch([path], path)  # the PyTorch reader adds its own file warnings


def _with_file_warnings(checkpoint: Checkpoint, paths: list[str], kind: str,
                        wholes: dict[str, bytes] | None = None) -> Checkpoint:
    """Polyglots and names that promise another format: other tools pick their loader by name (see detect.py)."""
    from core.formats.detect import file_warnings

    for path in paths:
        prefix = f"{os.path.basename(path)[:80]!r}: " if len(paths) > 1 else ""
        for warning in file_warnings(path, kind, wholes.get(path) if wholes else None):
            if prefix + warning not in checkpoint.warnings:
                checkpoint.warnings.append(prefix + warning)
    return checkpoint


def _gguf_split_parts(path: str) -> list[str]:
    """All parts of a split GGUF model (``name-00001-of-00003.gguf``), in order."""
    folder, base = os.path.split(path)
    match = _SPLIT_GGUF.match(base)
    if not match:
        return [path]
    total = int(match["total"])
    if total < 1 or total > 10_000:
        raise MalformedFileError(f"implausible split count {total}", path=path)
    parts = [os.path.join(folder, f"{match['stem']}-{i:05d}-of-{total:05d}.gguf") for i in range(1, total + 1)]
    missing = [os.path.basename(p) for p in parts if not os.path.lexists(p)]  # odd files are named when read
    if missing:
        raise MissingFilesError(f"split GGUF model is missing {len(missing)} part(s): {', '.join(missing[:5])}",
                                path=path)
    return parts


def read_small_json(path: str, limit: int) -> object:
    """Parse a JSON file of at most ``limit`` bytes, refusing duplicate keys and deep nesting.

    Opened as a regular file only (a FIFO named config.json must not hang us); nesting is measured
    on the raw bytes before parsing, since deep nesting breaks json and every recursive walker after it.
    """
    with FileReader(path) as reader:
        if reader.size > limit:
            raise MalformedFileError(f"JSON file is too large ({reader.size:,} bytes)", path=path)
        raw = reader.read(0, reader.size)
    if raw.startswith(b"version https://git-lfs"):
        raise MissingFilesError("Git LFS pointer file, not the real file: it was not downloaded", path=path)
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise MalformedFileError(f"nested deeper than {MAX_JSON_DEPTH} levels ({depth:,})", path=path)
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise MalformedFileError(f"invalid JSON ({str(exc).splitlines()[0][:120]})", path=path) from None


def json_depth(raw: bytes) -> int:
    """The deepest bracket nesting of JSON text, counting only brackets outside strings (linear, vectorised)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(steps).max())


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:80]!r}")
        out[key] = value
    return out


def _open_index(path: str, index: object = None) -> Checkpoint:
    """A sharded model's ``*.index.json``: every shard must be a plain name in the same folder."""
    if index is None:
        index = read_small_json(path, MAX_INDEX_BYTES)
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise MalformedFileError("not a sharded model index (no \"weight_map\" object)", path=path)
    weight_map = index["weight_map"]
    folder = os.path.dirname(os.path.abspath(path))
    shards: dict[str, None] = {}  # insertion-ordered set: a membership test per tensor stays O(1)
    for tensor_name, shard in weight_map.items():
        if shard in shards:
            continue
        if not isinstance(shard, str) or not shard or "/" in shard or "\\" in shard or shard in (".", "..") \
                or "\x00" in shard or os.path.isabs(shard):
            raise MalformedFileError(f"index names an unsafe shard path {str(shard)[:80]!r} "
                                     f"for tensor {str(tensor_name)[:80]!r}", path=path)
        shards[shard] = None
    if not shards:
        raise MalformedFileError("index lists no tensors", path=path)
    shard_paths = [os.path.join(folder, s) for s in shards]
    heads = _check_shards_present(path, shard_paths)
    kinds = {sniff(p, heads[p]) for p in shard_paths}
    wholes = {p: head for p, (head, size) in heads.items() if len(head) == size}  # small shards, read entire
    del heads
    if kinds == {"safetensors"}:
        from core.formats.safetensors_format import open_safetensors

        checkpoint = _with_file_warnings(open_safetensors(shard_paths, path, wholes), shard_paths, "safetensors",
                                         wholes)
    elif kinds <= {"pytorch-zip", "pytorch-legacy", "pickle"}:
        from core.formats.pytorch_format import open_pytorch

        checkpoint = open_pytorch(shard_paths, path)
    else:
        raise MalformedFileError(f"index mixes shard formats: {', '.join(sorted(kinds))}", path=path)
    listed = set(weight_map)
    present = {t.name for t in checkpoint.tensors}
    absent = sorted(listed - present)
    if absent:
        raise MalformedFileError(f"{len(absent)} tensor(s) listed in the index are not in their shards, "
                                 f"e.g. {absent[0][:80]!r}", path=path)
    checkpoint.metadata.setdefault("index", {k: v for k, v in index.items() if k != "weight_map"})
    return checkpoint


def _check_shards_present(index_path: str, shard_paths: list[str]) -> dict[str, tuple[bytes, int]]:
    """Every shard is a readable regular file holding weights: name the missing, the LFS pointers, the odd ones.
    Returns each shard's first HEAD_BYTES bytes and size, for sniff."""
    from core.formats.detect import HEAD_BYTES

    missing: list[str] = []
    lfs: list[str] = []
    heads: dict[str, tuple[bytes, int]] = {}
    for p in shard_paths:
        try:
            head, _ = heads[p] = read_head(p, HEAD_BYTES)
        except OpenError as exc:
            if exc.why != "no such file":
                raise CheckpointError(f"shard {os.path.basename(p)!r}: {exc.why}", path=index_path) from None
            missing.append(os.path.basename(p))
            continue
        if head.startswith(b"version https://git-lfs"):
            lfs.append(os.path.basename(p))
    if lfs:
        raise MissingFilesError(
            f"{len(lfs)} of {len(shard_paths)} shard(s) are Git LFS pointer files, not weights: the weights were "
            f"not downloaded (run `git lfs pull`); e.g. {lfs[0]}", path=index_path)
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise MissingFilesError(f"{len(missing)} of {len(shard_paths)} shard(s) are missing: {shown}",
                                path=index_path)
    return heads


def _open_folder(folder: str) -> Checkpoint:
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise CheckpointError(f"cannot list the folder: {open_error_reason(folder, exc)}", path=folder) from None
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if index_name in names:
            return _open_index(os.path.join(folder, index_name))
    indexes = [n for n in names if n.endswith(".safetensors.index.json") or n.endswith(".bin.index.json")]
    if indexes:
        return _open_index(os.path.join(folder, indexes[0]))
    candidates = [n for n in names if n.endswith(".safetensors")]
    if not candidates:
        ggufs = [n for n in names if n.endswith(".gguf")]
        firsts = [n for n in ggufs if _SPLIT_GGUF.match(n) and _SPLIT_GGUF.match(n)["idx"] == "00001"]
        candidates = firsts or ggufs
    if not candidates:
        candidates = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt"))]
    if not candidates and "config.json" in names:
        from core.formats.config_only import open_config

        return open_config(os.path.join(folder, "config.json"), folder)
    if not candidates:
        raise UnsupportedFormatError("folder holds no checkpoint (.safetensors, .gguf, .bin, .pt, .pth, .ckpt)",
                                     path=folder)
    if len(candidates) > 1 and candidates[0].endswith(".safetensors"):
        raise UnsupportedFormatError(
            f"folder holds {len(candidates)} safetensors files and no index; open one of them", path=folder)
    checkpoint = _open_file(os.path.join(folder, candidates[0]))
    checkpoint.path = folder
    return checkpoint


def _load_config(checkpoint: Checkpoint) -> dict | None:
    """``config.json`` beside the weights, if any (Hugging Face layout); a broken one is ignored and named."""
    folder = checkpoint.path if os.path.isdir(checkpoint.path) else os.path.dirname(os.path.abspath(checkpoint.path))
    config_path = os.path.join(folder, "config.json")
    if not os.path.lexists(config_path):
        return None
    try:
        config = read_small_json(config_path, MAX_CONFIG_BYTES)
    except CheckpointError as exc:
        why = exc.why if isinstance(exc, OpenError) else str(exc).removeprefix(f"{config_path}: ")
        checkpoint.warnings.append(f"config.json ignored: {why}")
        return None
    if not isinstance(config, dict):
        checkpoint.warnings.append("config.json ignored: not a JSON object")
        return None
    return config


def _finish(checkpoint: Checkpoint) -> Checkpoint:
    """Classify every tensor and derive architecture facts: one place for all formats."""
    from core.architecture import describe
    from core.taxonomy import classify

    tensors = checkpoint.tensors = list(checkpoint.tensors)  # 8 bytes a tensor; the records are what weigh
    for i, t in enumerate(() if checkpoint.classified else tensors):  # replaced one by one: a second set of a
        kind, role = classify(t.name, t.shape, t.dtype)  # million records would double the peak
        if kind != t.kind or role != t.role:
            tensors[i] = _classified(t, kind, role)
    checkpoint.forget_counts()
    config = checkpoint.metadata.get("config.json") if checkpoint.format == "config" else _load_config(checkpoint)
    if config is not None:
        checkpoint.metadata.setdefault("config.json", config)
    checkpoint.architecture = describe(checkpoint, config)
    if config is not None:
        from core.architectures.claims import add_config_counts

        add_config_counts(checkpoint, config)
    from core.lora import attach_lora

    attach_lora(checkpoint)
    return checkpoint


def _classified(t: TensorInfo, kind: str, role: str = "other") -> TensorInfo:
    """``t`` with its kind and role; built directly, since dataclasses.replace costs ~40 us a tensor."""
    return TensorInfo(t.name, t.shape, t.dtype, t.elements, t.nbytes, t.file, t.offset, kind, role, t.strides,
                      t.span_bytes)
