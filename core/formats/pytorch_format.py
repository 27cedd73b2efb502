"""PyTorch checkpoints (torch.save zip files and the legacy pre-1.6 format), read without unpickling.

The pickle is interpreted by ``pickle_vm`` into inert records; tensors become
TensorInfo records pointing at their bytes in the file (zip member data or the
legacy file's raw storages), which are never read while opening.

Naming: every tensor is listed under its key path in the pickled object
("optimizer.state.0.exp_avg"). One exception keeps names matching the model's
own: when the top object is a dict whose only tensor-holding entry is a
``state_dict`` / ``model`` / ``model_state_dict`` / ``module`` dict, that
wrapper is dropped (metadata["state_dict_key"] records which). Values that are
not tensors (epoch, hyper-parameters, placeholders) go to metadata as inert,
size-capped JSON values under their dotted key paths.
"""

from __future__ import annotations

import os
from typing import Any

from core import dtypes
from core.checkpoint import Checkpoint, FileEntry, TensorInfo
from core.errors import CheckpointError, MalformedFileError, UnsafeFileError, UnsupportedFormatError
from core.formats import pickle_vm
from core.formats.detect import file_warnings
from core.formats.pickle_vm import ByteSource
from core.formats.pytorch_globals import Budget, Global, Placeholder, SetRecord, StorageRef, TensorRecord
from core.formats.pytorch_zip import ZipMember, read_member, read_members
from core.io import FileReader

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
MAX_PICKLE_BYTES = 256 << 20
MAX_SCAN_BYTES = 64 << 20
MAX_DEPTH = 64
MAX_TENSORS = 1_000_000
MAX_NAMES_PER_TENSOR = 8  # extra names one tensor object is listed under (tied weights); more are only counted
MAX_METADATA_ENTRIES = 400
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")


def open_pytorch(paths: list[str], root_path: str) -> Checkpoint:
    """One PyTorch file, or the shards of a ``pytorch_model.bin.index.json``, as one Checkpoint."""
    tensors: list[TensorInfo] = []
    files: list[FileEntry] = []
    metadata: dict[str, Any] = {}
    warnings: list[str] = []
    placeholder_types: set[str] = set()
    seen: dict[str, str] = {}
    for path in paths:
        try:
            file_tensors, file_meta, size, file_warnings = read_pytorch_file(path)
        except CheckpointError as exc:
            if exc.path is None:
                raise exc.with_path(path) from None
            raise
        prefix = f"{os.path.basename(path)}: " if len(paths) > 1 else ""
        warnings.extend(prefix + w for w in file_warnings if prefix + w not in warnings)
        placeholder_types.update(c for c in file_meta.pop("_placeholder_classes", []))
        files.append(FileEntry(path, size))
        for t in file_tensors:
            if t.name in seen:
                first = os.path.basename(seen[t.name])
                raise MalformedFileError(f"tensor {t.name[:80]!r} appears in two shards ({first} and "
                                         f"{os.path.basename(path)})", path=root_path)
            seen[t.name] = path
        tensors.extend(file_tensors)
        if len(paths) == 1:
            metadata.update(file_meta)
        else:
            shard_meta = {k: v for k, v in file_meta.items() if k != "serialization"}
            metadata.setdefault("serialization", file_meta.get("serialization"))
            if shard_meta:
                metadata.setdefault("shards", {})[os.path.basename(path)] = shard_meta
    checkpoint = Checkpoint(format="pytorch", path=root_path, files=files, tensors=tensors, metadata=metadata,
                            warnings=warnings)
    if placeholder_types:
        n = len(placeholder_types)
        checkpoint.safety += f"; {n} object type{'s' if n > 1 else ''} reconstructed as an inert placeholder"
    return checkpoint


def read_pytorch_file(path: str) -> tuple[list[TensorInfo], dict[str, Any], int, list[str]]:
    """One file's tensors (in pickle order), metadata, size and warnings; errors carry no path.

    metadata["_placeholder_classes"] lists the classes reconstructed as inert placeholders (for the caller).
    """
    with FileReader(path) as reader:
        if reader.size < 4:
            raise MalformedFileError(f"too small to be a PyTorch file ({reader.size} bytes)")
        head = reader.read(0, 4)
        budget = Budget()
        if head in (b"PK\x03\x04", b"PK\x05\x06"):
            (obj, vm), fmt = _read_zip(reader, budget), "zip (torch.save)"
        else:
            (obj, vm), fmt = _read_legacy(reader, budget), "legacy (torch.save before 1.6)"
        named, metadata, warnings = _collect(obj, budget)
        warnings.extend(file_warnings(path, "pytorch-zip" if fmt.startswith("zip") else "pytorch-legacy"))
        tensors = [_tensor_info(name, record, path) for name, record in named]
        metadata = {"serialization": fmt, **metadata}
        placeholders = [f"`{c[:200]}`" for c in vm.placeholder_classes[:20]]
        if placeholders:
            warnings.insert(0, f"holds objects of {', '.join(placeholders)} (not created); "
                               "torch.load(weights_only=True) refuses this file")
            metadata["_placeholder_classes"] = list(vm.placeholder_classes)
        return tensors, metadata, reader.size, warnings


# --- zip (torch.save since 1.6) --------------------------------------------------------------------------------------
def _is_torchscript(name: str) -> bool:
    parts = name.split("/")
    return ("code" in parts[:2] and len(parts) > 1) or (parts[-1] == "constants.pkl" and len(parts) <= 2)


def _refuse_torchscript(names: list[str]) -> None:
    if any(_is_torchscript(n) for n in names):
        raise UnsupportedFormatError("a TorchScript archive (torch.jit.save): it holds code as well as weights; "
                                     "Weightscope opens state dicts saved with torch.save")


def _read_zip(reader: FileReader, budget: Budget) -> tuple[Any, pickle_vm.PickleVM]:
    members = read_members(reader, _refuse_torchscript)
    interpreted: set[str] = set()
    try:
        return _read_torch_zip(reader, members, budget, interpreted)
    except UnsafeFileError:
        raise
    except CheckpointError:
        _scan_for_danger(reader, [m for m in members if m.name not in interpreted])
        raise


def _zip_layout(members: list[ZipMember]) -> tuple[str, ZipMember]:
    unsafe = [m.name for m in members if m.unsafe_name]
    if unsafe:
        raise MalformedFileError(f"zip member name {unsafe[0][:80]!r} points outside the archive (path traversal)")
    roots = {m.name.split("/", 1)[0] for m in members if "/" in m.name}
    rootless = [m.name for m in members if "/" not in m.name]
    if rootless or len(roots) != 1:
        if any(n == "data.pkl" for n in rootless):
            raise MalformedFileError("zip archive has data.pkl at its top level, without the root folder that "
                                     "torch.save writes: not a PyTorch checkpoint")
        if not roots and not rootless:
            raise MalformedFileError("empty zip archive: not a PyTorch checkpoint")
        raise MalformedFileError("zip archive is not a PyTorch checkpoint (torch.save writes one root folder "
                                 "holding data.pkl)")
    root = roots.pop()
    data = [m for m in members if m.name == f"{root}/data.pkl"]
    if not data:
        raise MalformedFileError(f"zip archive has no {root}/data.pkl: not a PyTorch checkpoint")
    return root, data[0]


def _read_torch_zip(reader: FileReader, members: list[ZipMember], budget: Budget,
                    interpreted: set[str]) -> tuple[Any, pickle_vm.PickleVM]:
    """The archive's data.pkl, interpreted; its name goes into ``interpreted`` (a refusal needs no rescan)."""
    root, data_pkl = _zip_layout(members)
    by_name = {m.name: m for m in members}
    byteorder = by_name.get(f"{root}/byteorder")
    if byteorder is not None:
        order = read_member(reader, byteorder, 64)
        if order == b"big":
            raise UnsupportedFormatError("a big-endian PyTorch file; only little-endian files are supported")
        if order != b"little":
            raise MalformedFileError(f"unknown byte order {order[:16]!r}")
    pickle_bytes = read_member(reader, data_pkl, MAX_PICKLE_BYTES)
    storages: dict[str, StorageRef] = {}

    def persistent_load(pid: Any) -> StorageRef:
        storage_type, key, location, numel = _storage_pid(pid, 5)
        member = by_name.get(f"{root}/data/{key}")
        if member is None:
            raise MalformedFileError(f"storage {key[:40]!r} has no record data/{key[:40]} in the archive")
        ref = _storage_ref(storage_type, key, location, numel)
        if ref.nbytes != member.size:
            raise MalformedFileError(
                f"storage {key[:40]!r} claims {numel:,} elements of torch.{ref.torch_dtype} ({ref.nbytes:,} bytes) "
                f"but its record holds {member.size:,} bytes")
        ref.file = reader.path
        ref.data_offset = member.data_offset
        known = storages.setdefault(f"{key}:{ref.torch_dtype}", ref)
        return known

    interpreted.add(data_pkl.name)
    return pickle_vm.run_pickle(ByteSource.from_bytes(pickle_bytes), persistent_load, budget)


def _scan_for_danger(reader: FileReader, members: list[ZipMember]) -> None:
    """Before refusing a broken archive, look for a pickle reaching for code, so the refusal can name it.

    Only members that are pickles by name, or small ones that start like a pickle, are read: never tensor data.
    """
    budget = MAX_SCAN_BYTES
    for member in members:
        if member.size < 2 or member.size > budget:
            continue
        if not member.name.endswith(".pkl") and (
                member.size > 1 << 20 or not _looks_like_pickle(reader.read(member.data_offset, 2))):
            continue
        budget -= member.size
        data = reader.read(member.data_offset, member.size)
        try:
            pickle_vm.run_pickle(ByteSource.from_bytes(data), lambda pid: None)
        except UnsafeFileError:
            raise
        except CheckpointError:
            continue


def _looks_like_pickle(head: bytes) -> bool:
    return (head[0] == 0x80 and head[1] <= 5) or head[:1] in (b"c", b"(", b"}", b"]")


def _storage_pid(pid: Any, length: int) -> tuple[Global, str, str, int]:
    if not isinstance(pid, tuple) or len(pid) != length or _ascii(pid[0]) != "storage":
        kind = _ascii(pid[0]) if isinstance(pid, tuple) and pid else type(pid).__name__
        if kind == "module":
            raise UnsupportedFormatError("the file pickles a whole nn.Module (torch.save(model)), which needs its "
                                         "Python classes to load; save model.state_dict() instead")
        raise MalformedFileError(f"unexpected persistent id ({str(kind)[:40]}): not a PyTorch storage")
    _tag, storage_type, key, location, numel = pid[:5]
    if not isinstance(storage_type, Global) or storage_type.kind != "storage_type":
        raise MalformedFileError("a storage's type is not a torch storage class")
    key = _ascii(key)
    location = _ascii(location)
    if not isinstance(key, str) or not key or len(key) > 256 or not isinstance(location, str):
        raise MalformedFileError("a storage's key or location is not a short string")
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0 or numel >= 1 << 62:
        raise MalformedFileError(f"storage {key[:40]!r} has an invalid element count")
    return storage_type, key, location[:64], numel


def _ascii(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedFileError("a storage field is not ASCII") from None
    return value


def _storage_ref(storage_type: Global, key: str, location: str, numel: int) -> StorageRef:
    dtype_name, torch_name = storage_type.info
    itemsize = dtypes.get(dtype_name).type_size if dtype_name else 1
    return StorageRef(key, dtype_name, torch_name, numel, location, numel * itemsize)


# --- legacy (torch.save before 1.6, or _use_new_zipfile_serialization=False) ----------------------------------------
def _read_legacy(reader: FileReader, budget: Budget) -> tuple[Any, pickle_vm.PickleVM]:
    source = ByteSource(reader.read, 0, min(reader.size, MAX_PICKLE_BYTES))

    def no_storage(pid: Any) -> Any:
        raise MalformedFileError("a plain pickle that refers to tensor storages it does not contain: not a "
                                 "PyTorch checkpoint")

    magic, vm = pickle_vm.run_pickle(source, no_storage, budget)
    if type(magic) is not int or magic != MAGIC_NUMBER:
        raise UnsupportedFormatError(f"a plain Python pickle (holding {_describe(magic)}), not a PyTorch checkpoint")
    if vm.globals_seen:
        raise MalformedFileError(f"the legacy magic number is computed by {vm.globals_seen[0]}, not written as a "
                                 "literal")
    version, vm = pickle_vm.run_pickle(source, None, budget)
    if type(version) is not int or version != LEGACY_PROTOCOL_VERSION or vm.globals_seen:
        raise MalformedFileError(f"unknown legacy PyTorch protocol version {str(version)[:20]}")
    sys_info, vm = pickle_vm.run_pickle(source, None, budget)
    if not isinstance(sys_info, dict):
        raise MalformedFileError("legacy PyTorch file: system info is not a dict")
    if sys_info.get("little_endian") is False:
        raise UnsupportedFormatError("a big-endian legacy PyTorch file; only little-endian files are supported")
    roots: dict[str, StorageRef] = {}
    views: list[StorageRef] = []

    def persistent_load(pid: Any) -> StorageRef:
        if not isinstance(pid, tuple) or len(pid) != 6:
            _storage_pid(pid, 6)  # raises the right error
        storage_type, key, location, numel = _storage_pid(pid[:5], 5)
        ref = _storage_ref(storage_type, key, location, numel)
        root = roots.setdefault(key, ref)
        if root.torch_dtype != ref.torch_dtype or root.numel != numel:
            raise MalformedFileError(f"storage {key[:40]!r} is used with two types or sizes")
        view = pid[5]
        if view is None:
            return root
        if not isinstance(view, tuple) or len(view) != 3:
            raise MalformedFileError(f"storage {key[:40]!r} has a malformed view")
        _view_key, offset, size = view
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, size)) \
                or offset + size > numel:
            raise MalformedFileError(f"a view of storage {key[:40]!r} lies outside it")
        itemsize = root.nbytes // numel if numel else 1
        ref = StorageRef(key, root.dtype, root.torch_dtype, size, location, size * itemsize,
                         view_of=root, view_offset=offset * itemsize)
        views.append(ref)
        return ref

    obj, obj_vm = pickle_vm.run_pickle(source, persistent_load, budget)
    keys, vm = pickle_vm.run_pickle(source, None, budget)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or vm.globals_seen:
        raise MalformedFileError("legacy PyTorch file: the storage key list is not a list of strings")
    if len(set(keys)) != len(keys) or set(keys) != set(roots):
        raise MalformedFileError(f"legacy PyTorch file: the storage key list ({len(keys)} keys) does not match the "
                                 f"{len(roots)} storages its tensors use")
    pos = source.pos
    for key in keys:
        root = roots[key]
        if pos + 8 > reader.size:
            raise MalformedFileError(f"truncated legacy PyTorch file: storage {key[:40]!r} is missing")
        count = int.from_bytes(reader.read(pos, 8), "little", signed=True)
        if count != root.numel:
            raise MalformedFileError(f"storage {key[:40]!r} holds {count:,} elements in the file but its tensors "
                                     f"expect {root.numel:,}")
        root.file = reader.path
        root.data_offset = pos + 8
        pos = root.data_offset + root.nbytes
        if pos > reader.size:
            raise MalformedFileError(f"truncated legacy PyTorch file: storage {key[:40]!r} needs {root.nbytes:,} "
                                     f"bytes at offset {root.data_offset:,}, the file has {reader.size:,}")
    if pos != reader.size:
        raise MalformedFileError(f"{reader.size - pos:,} unexpected bytes after the last storage")
    for view in views:
        assert view.view_of is not None
        view.file = view.view_of.file
        view.data_offset = view.view_of.data_offset + view.view_offset
    return obj, obj_vm


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return f"a dict of {len(value):,} entries"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value):,} items"
    if isinstance(value, Placeholder):
        return f"a {value.cls}"
    return f"a {type(value).__name__}"


# --- from the pickled object to named tensors and metadata ----------------------------------------------------------
class _Walker:
    """Finds every tensor under its key path, bounded in depth and work, safe against cycles and sharing.

    An object reached by several paths (a tensor, or a list holding tensors) is walked once, under its first
    path; later paths are only counted, so a small DAG of shared lists cannot expand into millions of names.
    Every visit is charged to the file's budget.
    """

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.holds: dict[int, bool] = {}
        self.tensors: list[tuple[str, TensorRecord]] = []
        self.metadata: dict[str, Any] = {}
        self.skipped_metadata = 0
        self.first_path: dict[int, str] = {}  # id -> path of tensors and tensor-holding objects walked
        self.edges: dict[int, list[int]] = {0: []}  # parent id -> child ids (0: the root of the walk)
        self.order: list[int] = []  # post-order of walked objects, for counting paths
        self.alias: dict[int, str] = {}  # id -> the first other path that reached it
        self.listed: dict[int, int] = {}  # tensor id -> extra names it is listed under
        self.too_deep = False  # something nests deeper than MAX_DEPTH: summarised, not searched for tensors

    def spend(self) -> None:
        self.budget.charge(1, "paths to tensors")

    def holds_tensor(self, obj: Any, depth: int = 0) -> bool:
        if isinstance(obj, TensorRecord):
            return True
        if not _is_container(obj):
            return False
        key = id(obj)
        if key in self.holds:  # before listing children: a big list shared 300 times is searched once
            return self.holds[key]
        if depth > MAX_DEPTH:
            self.too_deep = True  # not searched further: kept as a bounded metadata summary, with a warning
            return False
        self.holds[key] = False  # cycles: assume no until shown otherwise
        found = False
        for child in _child_values(obj):
            self.spend()
            if self.holds_tensor(child, depth + 1):
                found = True
                break
        self.holds[key] = found
        return found

    def walk(self, obj: Any, path: tuple[str, ...], parent: int = 0, in_dict: bool = True) -> None:
        self.spend()
        key = id(obj)
        is_tensor = isinstance(obj, TensorRecord)
        if not is_tensor and not self.holds_tensor(obj):
            self.add_metadata(path, obj)
            return
        children = None if is_tensor else _children(obj)
        text = ".".join(path) or "tensor"
        if key in self.first_path:
            if key in self.edges or is_tensor:  # walked (or being walked: a cycle) before; count this path too
                self.edges[parent].append(key)
                self.alias.setdefault(key, text)
            if is_tensor and in_dict and self.listed.get(key, 0) < MAX_NAMES_PER_TENSOR:
                # one tensor under several keys of a state dict (tied weights): a loader needs every name
                self.listed[key] = self.listed.get(key, 0) + 1
                self.tensors.append((text, obj))
            return
        self.first_path[key] = text
        self.edges[parent].append(key)
        if is_tensor:
            if len(self.tensors) >= MAX_TENSORS:
                raise MalformedFileError(f"more than {MAX_TENSORS:,} tensors")
            self.tensors.append((text, obj))
            self.order.append(key)
            return
        if len(path) > MAX_DEPTH:
            self.too_deep = True
            self.add_metadata(path, obj)
            return
        self.edges[key] = []
        in_dict = isinstance(obj, dict)
        for child_key, child in children or ():
            self.walk(child, (*path, _key_text(child_key)), key, in_dict)
        self.order.append(key)

    def path_counts(self) -> dict[int, int]:
        """How many paths reach each walked object (edges back into a cycle are not followed)."""
        position = {key: i for i, key in enumerate(self.order)}
        ways: dict[int, int] = {0: 1}
        for node in [0, *reversed(self.order)]:
            for child in self.edges.get(node, ()):
                if node == 0 or position.get(child, -1) < position.get(node, -1):
                    ways[child] = min(ways.get(child, 0) + ways.get(node, 0), 1 << 62)
        return ways

    def alias_warnings(self) -> list[str]:
        deep = [f"objects nested deeper than {MAX_DEPTH} levels are shown as a summary and were not searched for "
                "tensors"] if self.too_deep else []
        return deep + self._shared_warnings()

    def _shared_warnings(self) -> list[str]:
        if not self.alias:
            return []
        ways = self.path_counts()
        out: list[str] = []
        firsts = [(name, record) for name, record in self.tensors if self.first_path.get(id(record)) == name]
        shared = [(name, record) for name, record in firsts if ways.get(id(record), 1) > 1]
        for name, record in shared[:10]:
            other = self.alias.get(id(record)) or self._container_alias(name)
            extra = self.listed.get(id(record), 0)
            how = f"listed under its first {extra + 1} names" if extra else "it is listed and counted once"
            out.append(f"tensor {name[:120]!r} is also reachable as {other[:120]!r} ({ways[id(record)] - 1:,} "
                       f"aliases); {how}")
        if len(shared) > 10:
            out.append(f"{len(shared) - 10:,} more tensors are reachable by several paths; each is listed once")
        return out

    def _container_alias(self, name: str) -> str:
        for key, other in self.alias.items():
            first = self.first_path.get(key, "")
            if name == first or name.startswith(first + "."):
                return other + name[len(first):]
        return "another path"

    def add_metadata(self, path: tuple[str, ...], obj: Any) -> None:
        if not path:
            return
        if len(self.metadata) >= MAX_METADATA_ENTRIES:
            self.skipped_metadata += 1
            return
        self.metadata[".".join(path)] = inert(obj)


def _is_container(obj: Any) -> bool:
    return isinstance(obj, (dict, list, tuple)) or (isinstance(obj, Placeholder) and isinstance(obj.state, dict))


def _child_values(obj: Any) -> Any:
    """The children of a container, without building a list of them."""
    if isinstance(obj, dict):
        return obj.values()
    if isinstance(obj, (list, tuple)):
        return obj
    return obj.state.values()


def _children(obj: Any) -> list[tuple[Any, Any]] | None:
    if isinstance(obj, dict):
        return list(obj.items())
    if isinstance(obj, (list, tuple)):
        return list(enumerate(obj))
    if isinstance(obj, Placeholder) and isinstance(obj.state, dict):
        return list(obj.state.items())
    return None


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key[:1000]
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return str(key)
    return str(inert(key))[:200]


def _collect(obj: Any, budget: Budget) -> tuple[list[tuple[str, TensorRecord]], dict[str, Any], list[str]]:
    walker = _Walker(budget)
    metadata: dict[str, Any] = {}
    if isinstance(obj, dict):
        holders = [k for k, v in obj.items() if walker.holds_tensor(v)]
        if len(holders) == 1 and holders[0] in WRAPPER_KEYS and isinstance(obj[holders[0]], dict):
            wrapper = holders[0]
            metadata["state_dict_key"] = wrapper
            walker.first_path[id(obj)] = ""
            walker.walk(obj[wrapper], ())
            for key, value in obj.items():
                if key != wrapper:
                    walker.walk(value, (_key_text(key),))
        elif not holders:
            for key, value in obj.items():
                walker.walk(value, (_key_text(key),))
        else:
            walker.walk(obj, ())
    else:
        walker.walk(obj, ())
        if not walker.tensors and not walker.metadata:
            walker.metadata["object"] = inert(obj)
    metadata.update(walker.metadata)
    if walker.skipped_metadata:
        metadata["..."] = f"{walker.skipped_metadata:,} more values not shown"
    names: dict[str, int] = {}
    out: list[tuple[str, TensorRecord]] = []
    for name, record in walker.tensors:
        if name in names:
            names[name] += 1
            name = f"{name}#{names[name]}"
        names.setdefault(name, 1)
        out.append((name, record))
    return out, metadata, walker.alias_warnings()


def inert(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """A size-capped JSON value that shows what the pickle held; nothing in it came from a call."""
    budget = budget if budget is not None else [2000]
    budget[0] -= 1
    if budget[0] < 0:
        return "..."
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= 1000 else value[:1000] + f"... ({len(value):,} characters)"
    if isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, Global):
        return f"<{value.qualname}>"
    if isinstance(value, TensorRecord):
        return f"<tensor {list(value.shape)} {value.dtype}>"
    if isinstance(value, StorageRef):
        return f"<storage {value.key}>"
    if depth >= 6:
        return f"<{_describe(value)}>"
    if isinstance(value, Placeholder):
        if value.cls == "numpy.ndarray" and isinstance(value.state, tuple) and len(value.state) >= 3:
            return {"__class__": "numpy.ndarray", "shape": inert(value.state[1], depth + 1, budget)}
        out: dict[str, Any] = {"__class__": value.cls}
        if value.args:
            out["args"] = inert(value.args, depth + 1, budget)
        state = inert(value.state, depth + 1, budget) if value.state is not None else None
        if isinstance(state, dict):  # a state too deep or past the budget is a string: keep it as one value
            out.update(state)
        elif state is not None:
            out["state"] = state
        return out
    if isinstance(value, dict):
        items = list(value.items())
        out = {_key_text(k): inert(v, depth + 1, budget) for k, v in items[:64]}
        if len(items) > 64:
            out["..."] = f"{len(items) - 64:,} more entries"
        return out
    if isinstance(value, (list, tuple, SetRecord)):
        shown = [inert(v, depth + 1, budget) for v in value[:32]]
        if len(value) > 32:
            shown.append(f"... ({len(value):,} items)")
        return shown
    return f"<{type(value).__name__}>"


def _tensor_info(name: str, record: TensorRecord, path: str) -> TensorInfo:
    dt = dtypes.get(record.dtype)
    itemsize = dt.type_size
    elements = 1
    for dim in record.shape:
        elements *= dim
    storage = record.storage
    offset = storage.data_offset + record.storage_offset * itemsize
    strides = None
    span = None
    if elements and not _contiguous(record.shape, record.strides):
        strides = record.strides
        span = (sum((d - 1) * s for d, s in zip(record.shape, record.strides, strict=True)) + 1) * itemsize
    return TensorInfo(name=name, shape=record.shape, dtype=record.dtype, elements=elements,
                      nbytes=elements * itemsize, file=storage.file or path, offset=offset,
                      strides=strides, span_bytes=span)


def _contiguous(shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    expected = 1
    for dim, stride in zip(reversed(shape), reversed(strides), strict=True):
        if dim != 1 and stride != expected:
            return False
        expected *= dim
    return True
