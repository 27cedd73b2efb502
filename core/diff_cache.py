"""Comparison results cached on disk, so comparing the same two models again reads no tensor data.

core.stats_cache does the housekeeping (our own private sub-folder ``weightscope-diff`` of the user cache
folder, a per-user HMAC key, atomic writes, pruning of least recently used entries). One entry per comparison,
keyed by BOTH models' data files (each by real path, device, inode, size, mtime, ctime and the sampled content
fingerprint of core.stats_cache), every tensor's header record, the selection (names, glob), the rank flag,
the device and ENGINE_VERSION. A file rewritten in place with the same size and times is a miss (its ctime and
fingerprint differ); an entry that is garbage, of another version, or not signed by our key is a miss, never an
error. Only the per-tensor sums and rank figures are stored: pairs, names and mismatches are recomputed from
the open models, and an entry naming a pair the models do not have is a miss.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
import zipfile
from typing import Any

import numpy as np

from core.checkpoint import Checkpoint
from core.diff import DiffResult, DiffSums, TensorDiff
from core.name_map import AlignedPair
from core.stats_cache import (
    MAX_ENTRY_BYTES,
    StatsCache,
    _blob,
    _mac,
    _remove,
    authentic,
    default_cache_dir,
    file_fingerprint,
    stat_identity,
    tensor_key,
)

VERSION = 1  # of the entry layout
ENGINE_VERSION = 2  # of the figures and the pairing: a change to either bumps this, so old entries miss
_INTS = ("count", "identical", "nonfinite", "n", "quantised")
_FLOATS = ("ss_a", "ss_b", "ss_d", "s_ab", "mean_a", "m2_a", "mean_b", "m2_b", "mean_d", "m2_d", "max_abs",
           "ss_signal", "ss_noise")


class DiffCache(StatsCache):
    """key(...) -> text or None; get(key, pairs) -> tensors or None; put(key, result, a, b). Best effort."""

    subdir = "weightscope-diff"
    kind = f"weightscope-diff v{VERSION}"

    @classmethod
    def default(cls) -> DiffCache:
        return cls(default_cache_dir())

    def key(self, a: Checkpoint, b: Checkpoint, names: list[str], pattern: str | None, rank: bool,
            device: str) -> str | None:
        """The entry key of comparing ``a`` with ``b`` so, or None (cache unusable, a file unreadable)."""
        if not self.usable:
            return None
        parts = [self.kind, f"engine {ENGINE_VERSION}"]
        for c in (a, b):
            side = _model_key(c)
            if side is None:
                return None
            parts.append(side)
        parts += [json.dumps(sorted(names)), json.dumps(pattern), f"rank {bool(rank)}", f"device {device}"]
        return "\0".join(parts)

    def _entry_path(self, key: str) -> str:
        return os.path.join(self.folder, hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest() + ".npz")

    def get(self, key: str, pairs: list[AlignedPair]) -> dict[str, TensorDiff] | None:
        """The cached tensors of exactly ``pairs`` (in their order), or None."""
        if not self.usable:
            return None
        path = self._entry_path(key)
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY_BYTES:
                return None
            with np.load(path, allow_pickle=False) as z:
                if any(info.compress_type != zipfile.ZIP_STORED for info in z.zip.infolist()):
                    return None
                arrays = {name: z[name] for name in z.files}
            if not authentic(arrays, key, self._key, VERSION) or "payload" not in arrays:
                return None
            rows = json.loads(arrays["payload"].tobytes().decode("utf-8"))
            tensors = _decode(rows, pairs)
        except Exception:  # an entry can be anything: truncated, garbage, another version, forged
            return None
        if tensors is not None:
            try:
                os.utime(path)  # recently used: pruned last
            except OSError:
                pass
        return tensors

    def put(self, key: str, result: DiffResult, a: Checkpoint, b: Checkpoint) -> None:
        """Store ``result``'s tensors, unless either model's files changed while they were read."""
        if not self.usable or self._key is None:
            return
        if self.key(a, b, *_selection_of(key)) != key:
            return
        try:
            payload = json.dumps([_encode(td) for td in result.tensors.values()]).encode("utf-8")
            arrays: dict[str, np.ndarray] = {"version": np.array(VERSION, np.int64), "file_key": _blob([key])[0],
                                             "payload": np.frombuffer(payload, np.uint8)}
            arrays["mac"] = np.frombuffer(_mac(arrays, self._key), np.uint8)
            path = self._entry_path(key)
            name = os.path.basename(path)[:-4]
            fd, tmp = tempfile.mkstemp(prefix=f".tmp-{name}-", suffix=".npz", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **arrays)
                os.replace(tmp, path)
            except BaseException:
                _remove(tmp)
                raise
        except Exception:
            return
        self.prune()


def _model_key(c: Checkpoint) -> str | None:
    """Every data file of ``c`` by identity and fingerprint, and every tensor's header record."""
    by_file: dict[str, list[Any]] = {}
    for t in c.tensors:
        by_file.setdefault(t.file, []).append(t)
    parts = [c.format]
    for path in sorted(by_file):
        identity = stat_identity(path)
        if identity is None:
            return None
        fingerprint = file_fingerprint(identity[0], by_file[path])
        if fingerprint is None:
            return None
        parts.append(repr((*identity, fingerprint)))
    records = hashlib.sha256("\n".join(f"{t.file}\0{tensor_key(t)}" for t in c.tensors)
                             .encode("utf-8", "surrogatepass")).hexdigest()
    return "\0".join([*parts, records])


def _selection_of(key: str) -> tuple[list[str], str | None, bool, str]:
    """names, pattern, rank and device back from a key (its last four fields)."""
    names, pattern, rank, device = key.split("\0")[-4:]
    return json.loads(names), json.loads(pattern), rank == "rank True", device.removeprefix("device ")


def _encode(td: TensorDiff) -> dict[str, Any]:
    s = td.sums
    return {"a": td.a.name, "b": td.b.name, **{k: getattr(s, k) for k in _INTS + _FLOATS},
            "max_tensor": s.max_tensor, "max_at": list(s.max_at), "top": td.top_singular_values,
            "rank90": td.rank90, "rank_note": td.rank_note}


def _decode(rows: Any, pairs: list[AlignedPair]) -> dict[str, TensorDiff] | None:
    """TensorDiffs of ``pairs`` from stored rows, if the rows are exactly those pairs and self-consistent."""
    if not isinstance(rows, list) or len(rows) != len(pairs):
        return None
    out: dict[str, TensorDiff] = {}
    for pair, row in zip(pairs, rows, strict=True):
        if not isinstance(row, dict) or row.get("a") != pair.a.name or row.get("b") != pair.b.name:
            return None
        ints = [row.get(k) for k in _INTS]
        floats = [row.get(k) for k in _FLOATS]
        if not all(type(x) is int and x >= 0 for x in ints) or not all(type(x) is float for x in floats):
            return None
        sums = DiffSums(**dict(zip(_INTS, ints, strict=True)), **dict(zip(_FLOATS, floats, strict=True)))
        at = row.get("max_at")
        if sums.count != pair.a.elements or sums.n + sums.nonfinite != sums.count \
                or sums.identical > sums.count or row.get("max_tensor") != pair.a.name \
                or not isinstance(at, list) or len(at) not in (0, len(pair.a.shape)) \
                or not all(type(i) is int and 0 <= i < n for i, n in zip(at, pair.a.shape, strict=False)):
            return None
        if min(sums.ss_a, sums.ss_b, sums.ss_d, sums.m2_a, sums.m2_b, sums.m2_d) < 0:
            return None
        sums.max_tensor, sums.max_at = pair.a.name, tuple(at)
        top, rank90, note = row.get("top"), row.get("rank90"), row.get("rank_note")
        if top is not None and (not isinstance(top, list) or not all(type(v) is float and math.isfinite(v)
                                                                     and v >= 0 for v in top)
                                or type(rank90) is not int or rank90 < 0):
            return None
        if top is None and (rank90 is not None or not (note is None or isinstance(note, str))):
            return None
        out[pair.a.name] = TensorDiff(pair.a, pair.b, sums, top, rank90, note)
    return out
