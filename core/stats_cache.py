"""Per-tensor summaries cached on disk, so a second look at a model reads no tensor data.

Entries live in the user's cache folder (``$WEIGHTSCOPE_CACHE_DIR``, else
``$XDG_CACHE_HOME/weightscope/stats``, else ``~/.cache/weightscope/stats``), never
beside the user's files. An entry is keyed by the data file's real path, size and
modification time (ns) and by the tensor's name, offset, dtype and shape; it stores
the exact summary (sparse counts, moments, extremes) as an ``.npz`` read with
``allow_pickle=False``. Writes go to a temporary file that is renamed into place.
An entry that is unreadable, from another version, or inconsistent with the tensor
(its counts do not add up to the element count) is ignored: the cache can only
save time, never change a result. Any failure to write is ignored too.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

import numpy as np

from core.checkpoint import TensorInfo
from core.stats_summary import (
    INT_SPAN_MERGED,
    KEYS,
    CountStore,
    FloatSummary,
    PatternSummary,
    Summary,
    pattern_count,
)

VERSION = 2
ENV_DIR = "WEIGHTSCOPE_CACHE_DIR"
MAX_BYTES = 512 << 20  # the least recently used entries go beyond this
_pruned: set[str] = set()  # cache folders already pruned by this process


def default_cache_dir() -> str:
    """Where summaries are cached: $WEIGHTSCOPE_CACHE_DIR, else the XDG user cache folder."""
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "weightscope", "stats")


class StatsCache:
    """Get and put tensor summaries; every method is best-effort and never raises for cache trouble."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._identity: dict[str, tuple[str, int, int] | None] = {}

    @classmethod
    def default(cls) -> StatsCache:
        return cls(default_cache_dir())

    # --- keys -------------------------------------------------------------------
    def _file_identity(self, path: str, fresh: bool = False) -> tuple[str, int, int] | None:
        if fresh or path not in self._identity:
            try:
                real = os.path.realpath(path)
                st = os.stat(real)
                self._identity[path] = (real, st.st_size, st.st_mtime_ns)
            except OSError:
                self._identity[path] = None
        return self._identity[path]

    def _entry(self, t: TensorInfo, identity: tuple[str, int, int]) -> tuple[str, str]:
        """(entry path, full key text stored inside it to rule out hash collisions)."""
        real, size, mtime = identity
        file_key = f"v{VERSION}\0{real}\0{size}\0{mtime}"
        key = f"{file_key}\0{t.name}\0{t.offset}\0{t.dtype}\0{list(t.shape)}\0{t.strides}\0{t.span_bytes}"
        folder = hashlib.sha256(file_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        name = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        return os.path.join(self.root, folder[:2], folder, name + ".npz"), key

    # --- reading ----------------------------------------------------------------
    def get(self, t: TensorInfo) -> Summary | None:
        """The cached summary of ``t``, or None (absent, stale, corrupt)."""
        identity = self._file_identity(t.file, fresh=True)
        if identity is None:
            return None
        path, key = self._entry(t, identity)
        try:
            with np.load(path, allow_pickle=False) as z:
                found = _decode(z, key, t)
        except Exception:  # a cache entry can be anything: truncated, garbage, another version
            return None
        if found is not None:
            try:
                os.utime(path)  # recently used: pruned last
            except OSError:
                pass
        return found

    # --- writing ----------------------------------------------------------------
    def put(self, t: TensorInfo, summary: Summary) -> None:
        """Store ``summary`` for ``t`` unless the file changed since ``get`` looked at it."""
        before = self._identity.get(t.file)
        now = self._file_identity(t.file, fresh=True)
        if now is None or (before is not None and before != now):
            return
        path, key = self._entry(t, now)
        try:
            payload = _encode(summary, key)
        except Exception:  # a summary we cannot store is simply not cached
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=os.path.dirname(path))
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **payload)
                os.replace(tmp, path)
            except BaseException:
                _remove(tmp)
                raise
        except OSError:
            return

    def prune(self, max_bytes: int = MAX_BYTES, once: bool = True) -> None:
        """Delete the least recently used entries until the cache holds at most ``max_bytes`` (with ``once``,
        at most one scan per folder and process)."""
        if once and self.root in _pruned:
            return
        _pruned.add(self.root)
        entries = []
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                entries.append((st.st_mtime_ns, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= max_bytes:
                break
            _remove(path)
            total -= size

    def clear(self) -> None:
        """Remove every entry (the folder itself stays)."""
        import shutil

        if os.path.isdir(self.root):
            for name in os.listdir(self.root):
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _sparse(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.flatnonzero(counts)
    return idx.astype(np.int32), counts[idx].astype(np.int64)


def _store(idx: np.ndarray, cnt: np.ndarray, length: int) -> CountStore:
    """Checked sparse counts, kept sparse (finished summaries stay compact in memory)."""
    _check_sparse(idx, cnt, length)
    if len(idx) and np.any(np.diff(idx.astype(np.int64)) <= 0):
        raise ValueError("sparse indices not strictly increasing")
    return CountStore.from_sparse(length, idx.astype(np.uint32 if length > 65536 else np.uint16),
                                  cnt.astype(np.int64))


def _check_sparse(idx: np.ndarray, cnt: np.ndarray, length: int) -> None:
    if idx.ndim != 1 or cnt.ndim != 1 or len(idx) != len(cnt) or idx.dtype.kind not in "iu" \
            or cnt.dtype != np.int64:
        raise ValueError("bad sparse counts")
    if len(idx) and (idx.min() < 0 or idx.max() >= length or cnt.min() < 0):
        raise ValueError("sparse counts out of range")


def _dense(idx: np.ndarray, cnt: np.ndarray, length: int) -> np.ndarray:
    _check_sparse(idx, cnt, length)
    out = np.zeros(length, dtype=np.int64)
    out[idx] = cnt
    return out


def _encode(s: Summary, key: str) -> dict[str, Any]:
    common = {"version": np.array(VERSION), "key": np.array(key), "dtypes": np.array(list(s.dtypes), dtype=str)}
    if isinstance(s, PatternSummary):
        idx, cnt = s.store.sparse()
        return {**common, "kind": np.array("pattern"), "fmt": np.array(s.fmt), "idx": idx, "cnt": cnt}
    idx, cnt = s.keys.sparse()
    ints = np.array([s.n, s.scale_exp, s.zeros, s.nan, s.pos_inf, s.neg_inf], dtype=np.int64)
    floats = np.array([s.mean, s.m2, s.m3, s.m4, s.vmin, s.vmax], dtype=np.float64)
    out = {**common, "kind": np.array("float"), "ints": ints, "floats": floats, "idx": idx, "cnt": cnt,
           "top": np.asarray(s.top, dtype=np.float64), "bottom": np.asarray(s.bottom, dtype=np.float64)}
    if s.int_counts is not None:
        int_idx, int_cnt = _sparse(s.int_counts)
        out.update(int_base=np.array(str(s.int_base)), int_len=np.array(len(s.int_counts)),
                   int_idx=int_idx, int_cnt=int_cnt)
    return out


def _decode(z: Any, key: str, t: TensorInfo) -> Summary | None:
    if int(z["version"]) != VERSION or str(z["key"]) != key:
        return None
    dtypes = tuple(str(d) for d in z["dtypes"])
    kind = str(z["kind"])
    if kind == "pattern":
        fmt = str(z["fmt"])
        store = _store(z["idx"], z["cnt"], pattern_count(fmt))
        if store.total() != t.elements:
            return None
        return PatternSummary(fmt, dtypes=dtypes, store=store)
    if kind != "float":
        return None
    ints, floats = z["ints"], z["floats"]
    if ints.shape != (6,) or floats.shape != (6,) or ints.dtype != np.int64 or floats.dtype != np.float64:
        return None
    n, scale_exp, zeros, nan, pos_inf, neg_inf = (int(x) for x in ints)
    keys = _store(z["idx"], z["cnt"], KEYS)
    top, bottom = z["top"], z["bottom"]
    if (min(n, zeros, nan, pos_inf, neg_inf) < 0 or n + nan + pos_inf + neg_inf != t.elements
            or keys.total() != n or top.dtype != np.float64 or bottom.dtype != np.float64
            or top.ndim != 1 or bottom.ndim != 1 or len(top) != len(bottom) or len(top) > n):
        return None
    mean, m2, m3, m4, vmin, vmax = (float(x) for x in floats)
    out = FloatSummary(dtypes=dtypes, n=n, scale_exp=scale_exp, mean=mean, m2=m2, m3=m3, m4=m4, vmin=vmin,
                       vmax=vmax, zeros=zeros, nan=nan, pos_inf=pos_inf, neg_inf=neg_inf, keys=keys,
                       top=top.copy(), bottom=bottom.copy())
    if "int_base" in z:
        length = int(z["int_len"])
        if not 0 < length <= INT_SPAN_MERGED:
            return None
        out.int_base = int(str(z["int_base"]))
        out.int_counts = _dense(z["int_idx"], z["int_cnt"], length)
        if int(out.int_counts.sum()) != n:
            return None
    return out
