"""Per-tensor summaries cached on disk, so a second look at a model reads no tensor data.

The cache can only save time, never change a result:

* Where: our own sub-folder ``weightscope-stats`` of the user's cache folder (``$WEIGHTSCOPE_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/weightscope``, else ``~/.cache/weightscope``), created 0700 and marked with a CACHEDIR.TAG;
  a sub-folder that is not a real folder owned by this user, or that others can write, is refused (no cache).
  Pruning and clearing touch only files named like our entries inside it, so a cache folder pointed at a
  shared place never loses other programs' files.
* Which: one entry per data file of at least MIN_CACHED_BYTES of tensor data (smaller ones are quicker to read
  again than to look up), keyed by its real path, device, inode, size, mtime and ctime (ns) and a
  content fingerprint (file_fingerprint: the header and a few sampled blocks of every tensor), so a file
  replaced in place with the same size and times (``cp -p``, ``rsync -t``) is a miss.
* Trust: an entry carries an HMAC-SHA256 under a per-user random key (a 0600 file beside the entries), and
  every stored figure is checked against the tensor and against the others (counts add up, min <= mean <= max,
  extremes sorted and inside [min, max] ...) before use. Anything else (garbage, another version, a foreign
  key) is a miss. Entries are ``.npz`` files read with ``allow_pickle=False``, written to a temporary file
  that is renamed into place; any failure to read or write is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import dtypes
from core.checkpoint import TensorInfo
from core.stats_summary import (
    INT_SPAN_MERGED,
    K_EXTREMES,
    KEYS,
    PATTERN_DTYPES,
    CountStore,
    FloatSummary,
    PatternSummary,
    Summary,
    float_keys,
    pattern_count,
)

VERSION = 3
ENV_DIR = "WEIGHTSCOPE_CACHE_DIR"
SUBDIR = "weightscope-stats"  # everything we write lives here; nothing outside it is ever touched
MARKER = "CACHEDIR.TAG"
MARKER_TEXT = b"Signature: 8a477f597d28d172789f06886806bc55\n# weightscope statistics cache\n"
KEY_FILE = "hmac.key"
ENTRY_NAME = re.compile(r"[0-9a-f]{64}\.npz")
TEMP_NAME = re.compile(r"\.tmp-[0-9a-f]{64}-[A-Za-z0-9_]{1,16}\.npz")
MAX_BYTES = 512 << 20  # allocated bytes; the least recently used entries go beyond this
MAX_ENTRY_BYTES = 1 << 30  # an entry file larger than this is not read
# Data files holding less than this are never cached: reading and summarising a megabyte is quicker than
# fingerprinting, loading and checking an entry (60,000 one-tensor shards wrote 60,000 entry files).
MIN_CACHED_BYTES = 1 << 20
SAMPLE = 4096  # bytes per fingerprint sample
HEADER_SAMPLE = 1 << 20  # at most this much of the header is hashed
MAX_SAMPLED = 4 << 20  # fingerprint reads at most this much in all
_pruned: set[str] = set()  # cache folders already pruned by this process


def default_cache_dir() -> str:
    """The user cache folder: $WEIGHTSCOPE_CACHE_DIR, else the XDG user cache folder (our sub-folder goes in it)."""
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "weightscope")


# --------------------------------------------------------------------------- file identity
def stat_identity(path: str) -> tuple[str, int, int, int, int, int] | None:
    """(real path, device, inode, size, mtime ns, ctime ns) of a data file, or None if it cannot be stat'ed."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def sample_ranges(size: int, tensors: list[TensorInfo]) -> list[tuple[int, int]]:
    """Byte ranges the fingerprint hashes: the header, the first, middle and last SAMPLE bytes of every tensor
    and the file's tail, merged where they touch, at most MAX_SAMPLED bytes in all (evenly thinned beyond)."""
    first = min((t.offset for t in tensors), default=0)
    ranges = [(0, min(first, HEADER_SAMPLE) or min(size, HEADER_SAMPLE)), (max(0, size - SAMPLE), size)]
    for t in tensors:
        lo, hi = t.byte_range
        lo, hi = max(0, lo), min(size, hi)
        if hi <= lo:
            continue
        mid = lo + (hi - lo) // 2
        ranges += [(lo, min(hi, lo + SAMPLE)), (max(lo, mid - SAMPLE // 2), min(hi, mid + SAMPLE // 2)),
                   (max(lo, hi - SAMPLE), hi)]
    merged: list[list[int]] = []
    for lo, hi in sorted(r for r in ranges if r[1] > r[0]):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    total = sum(hi - lo for lo, hi in merged)
    if total > MAX_SAMPLED:
        keep = max(1, len(merged) * MAX_SAMPLED // total)
        picks = sorted({round(i * (len(merged) - 1) / max(1, keep - 1)) for i in range(keep)})
        merged = [merged[i] for i in picks]
        budget, out = MAX_SAMPLED, []
        for lo, hi in merged:
            if budget <= 0:
                break
            out.append([lo, min(hi, lo + budget)])
            budget -= out[-1][1] - lo
        merged = out
    return [(lo, hi) for lo, hi in merged]


def file_fingerprint(path: str, tensors: list[TensorInfo]) -> str | None:
    """A cheap content hash of a data file (see sample_ranges): catches a file rewritten with the same size
    and times, at a cost of a few reads however large the file is. None if the file cannot be read."""
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        h.update(size.to_bytes(8, "little"))
        for lo, hi in sample_ranges(size, tensors):
            h.update(lo.to_bytes(8, "little"))
            h.update(os.pread(fd, hi - lo, lo))
    except OSError:
        return None
    finally:
        os.close(fd)
    return h.hexdigest()


def tensor_key(t: TensorInfo) -> str:
    """Everything about a tensor that its summary depends on, besides the file's bytes."""
    return f"{t.name}\0{t.offset}\0{t.dtype}\0{list(t.shape)}\0{t.strides}\0{t.span_bytes}\0{t.elements}"


# --------------------------------------------------------------------------- the folder
def _owned_private_folder(path: str) -> bool:
    """A real folder (not a link) of this user that nobody else can write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022:
        return False
    return not hasattr(os, "geteuid") or st.st_uid == os.geteuid()


def _load_or_make_key(folder: str) -> bytes | None:
    """The per-user HMAC key: 32 random bytes in a 0600 file of ours (made once, atomically)."""
    path = os.path.join(folder, KEY_FILE)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            fd = None
        except OSError:
            return None
        if fd is not None:
            try:
                st = os.fstat(fd)
                key = os.read(fd, 64)
            finally:
                os.close(fd)
            mine = not hasattr(os, "geteuid") or st.st_uid == os.geteuid()
            if not stat.S_ISREG(st.st_mode) or not mine or st.st_mode & 0o077 or len(key) != 32:
                return None
            return key
        tmp = None
        try:
            tmp_fd, tmp = tempfile.mkstemp(prefix=".key-", dir=folder)  # mkstemp makes it 0600
            with os.fdopen(tmp_fd, "wb") as f:
                f.write(os.urandom(32))
            os.link(tmp, path)  # fails if another process made it first: then we read theirs
        except FileExistsError:
            pass
        except OSError:
            return None
        finally:
            if tmp is not None:
                _remove(tmp)
    return None


# --------------------------------------------------------------------------- the cache
@dataclass
class _FileEntry:
    """What we know of one data file: its identity, its entry on disk, and summaries waiting to be written."""

    identity: tuple
    key_text: str
    path: str
    sampled: list[TensorInfo]  # the tensors the fingerprint sampled (checked again before writing)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # tensor key -> stored row (checked on use)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)


class StatsCache:
    """Get and put tensor summaries; every method is best-effort and never raises for cache trouble.

    Puts are held in memory and written by ``flush`` (one entry file per data file).
    """

    subdir = SUBDIR  # another kind of entry (core.spectra_cache) lives in a sub-folder of its own
    kind = "weightscope-stats"  # part of every entry's key: kinds never read each other's entries

    def __init__(self, root: str) -> None:
        self.root = root
        self.folder = os.path.join(root, self.subdir)
        self._key: bytes | None = None
        self._ready: bool | None = None
        self._files: dict[str, _FileEntry | None] = {}
        self._small: set[str] = set()  # data files under MIN_CACHED_BYTES: never looked up or written
        self._stats: dict[str, tuple | None] = {}
        self._grouped: tuple[list[TensorInfo], dict[str, list[TensorInfo]]] | None = None  # tensors by data file

    @classmethod
    def default(cls) -> StatsCache:
        return cls(default_cache_dir())

    @property
    def usable(self) -> bool:
        """Whether our folder exists (made now if needed), is private to this user, and has its key."""
        if self._ready is None:
            self._ready = self._prepare()
        return self._ready

    def _prepare(self) -> bool:
        try:
            os.makedirs(self.root, exist_ok=True)
            try:
                os.mkdir(self.folder, 0o700)
            except FileExistsError:
                pass
        except OSError:
            return False
        if not _owned_private_folder(self.folder):
            return False
        marker = os.path.join(self.folder, MARKER)
        if not os.path.lexists(marker):
            try:
                fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(MARKER_TEXT)
            except OSError:
                pass
        self._key = _load_or_make_key(self.folder)
        return self._key is not None

    # --- files ------------------------------------------------------------------
    def _tensors_of_file(self, t: TensorInfo, tensors: list[TensorInfo] | None) -> list[TensorInfo]:
        """The tensors stored in ``t.file``, grouped once per tensor list (60,000 shards: one pass, not 60,000)."""
        if not tensors:
            return [t]
        if self._grouped is None or self._grouped[0] is not tensors:
            groups: dict[str, list[TensorInfo]] = {}
            for x in tensors:
                groups.setdefault(x.file, []).append(x)
            self._grouped = (tensors, groups)
        return self._grouped[1].get(t.file) or [t]

    def _file(self, t: TensorInfo, tensors: list[TensorInfo] | None) -> _FileEntry | None:
        """The entry of ``t``'s data file, identified and loaded once per analysis, not once per tensor (a header
        may list a million); ``flush`` checks the identity and fingerprint again before writing anything."""
        known = self._files.get(t.file)
        if known is not None:
            return known
        if t.file in self._small:
            return None
        if sum(x.nbytes for x in self._tensors_of_file(t, tensors)) < MIN_CACHED_BYTES:
            self._small.add(t.file)
            return None
        identity = stat_identity(t.file)
        if identity is None:
            return None
        sampled = self._tensors_of_file(t, tensors)
        fingerprint = file_fingerprint(identity[0], sampled)
        if fingerprint is None:
            return None
        full = (*identity, fingerprint)
        key_text = f"{self.kind} v{VERSION}\0" + "\0".join(str(x) for x in full)
        name = hashlib.sha256(identity[0].encode("utf-8", "surrogatepass")).hexdigest() + ".npz"
        entry = _FileEntry(full, key_text, os.path.join(self.folder, name), sampled)
        entry.rows = self._read_rows(entry)
        self._files[t.file] = entry
        return entry

    def _read_rows(self, entry: _FileEntry) -> dict[str, dict[str, Any]]:
        try:
            st = os.stat(entry.path)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY_BYTES:
                return {}
            with np.load(entry.path, allow_pickle=False) as z:
                if any(info.compress_type != zipfile.ZIP_STORED for info in z.zip.infolist()):
                    return {}
                arrays = {name: z[name] for name in z.files}
            rows = self._unpack_rows(arrays, entry.key_text, self._key)
        except Exception:  # a cache entry can be anything: truncated, garbage, another version, forged
            return {}
        if rows:
            try:
                os.utime(entry.path)  # recently used: pruned last
            except OSError:
                pass
        return rows

    # --- reading ----------------------------------------------------------------
    def get(self, t: TensorInfo, tensors: list[TensorInfo] | None = None) -> Summary | None:
        """The cached summary of ``t``, or None (absent, stale, corrupt, forged, inconsistent).

        ``tensors``: every tensor stored in ``t.file`` (the fingerprint samples them all); default just ``t``.
        """
        if not self.usable:
            return None
        entry = self._file(t, tensors)
        if entry is None:
            return None
        row = entry.rows.get(tensor_key(t))
        if row is None:
            return None
        try:
            return self._decode_row(row, t)
        except Exception:  # a row that does not even have the expected shapes
            return None

    # --- writing ----------------------------------------------------------------
    def put(self, t: TensorInfo, summary: Summary, tensors: list[TensorInfo] | None = None) -> None:
        """Remember ``summary`` for ``t``; ``flush`` writes it unless the file changed in the meantime."""
        if not self.usable:
            return
        entry = self._files.get(t.file) or self._file(t, tensors)
        if entry is None:
            return
        try:
            entry.pending[tensor_key(t)] = self._encode_row(summary)
        except Exception:  # a summary we cannot store is simply not cached
            pass

    def flush(self) -> None:
        """Write every data file's entry that has new summaries (one file each, atomically)."""
        for path, entry in list(self._files.items()):
            if entry is None or not entry.pending:
                continue
            pending, entry.pending = entry.pending, {}
            now = stat_identity(path)
            if now != entry.identity[:6] or file_fingerprint(now[0], entry.sampled) != entry.identity[6]:
                continue  # the file changed while we read it: these summaries may be of either version
            entry.rows = {**entry.rows, **pending}
            self._write(entry)

    def _write(self, entry: _FileEntry) -> None:
        try:
            payload = self._pack_rows(entry.rows, entry.key_text, self._key or b"")
            name = os.path.basename(entry.path)[:-4]
            fd, tmp = tempfile.mkstemp(prefix=f".tmp-{name}-", suffix=".npz", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **payload)
                os.replace(tmp, entry.path)
            except BaseException:
                _remove(tmp)
                raise
        except Exception:
            return

    # --- how rows are stored (another kind of entry overrides these four) ----------
    def _encode_row(self, value: Any) -> dict[str, Any]:
        return _encode(value)

    def _decode_row(self, row: dict[str, Any], t: TensorInfo) -> Any:
        return _decode(row, t)

    def _pack_rows(self, rows: dict[str, dict[str, Any]], key_text: str, secret: bytes) -> dict[str, np.ndarray]:
        return _pack(rows, key_text, secret)

    def _unpack_rows(self, z: dict[str, np.ndarray], key_text: str, secret: bytes | None) -> dict[str, dict[str, Any]]:
        return _unpack(z, key_text, secret)

    # --- housekeeping -----------------------------------------------------------
    def _own_files(self) -> list[tuple[str, os.stat_result]]:
        """Our entries (and stale temporaries) in our folder; nothing else is ever listed, let alone removed."""
        if not self.usable or not os.path.isfile(os.path.join(self.folder, MARKER)):
            return []
        out = []
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        for name in names:
            stale_temp = TEMP_NAME.fullmatch(name)
            if not ENTRY_NAME.fullmatch(name) and not stale_temp:
                continue
            path = os.path.join(self.folder, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or (stale_temp and time.time() - st.st_mtime < 3600):
                continue
            out.append((path, st))
        return out

    def prune(self, max_bytes: int = MAX_BYTES, once: bool = True) -> None:
        """Delete our least recently used entries until they take at most ``max_bytes`` on disk (allocated
        blocks, not apparent size); with ``once``, at most one scan per folder and process."""
        if once and self.folder in _pruned:
            return
        _pruned.add(self.folder)
        entries = sorted((st.st_mtime_ns, _allocated(st), path) for path, st in self._own_files())
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= max_bytes:
                break
            _remove(path)
            total -= size

    def clear(self) -> None:
        """Remove every entry of ours (the folder, its marker and its key stay)."""
        for path, _ in self._own_files():
            _remove(path)
        self._files.clear()


def _allocated(st: os.stat_result) -> int:
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if blocks is not None else st.st_size


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --------------------------------------------------------------------------- rows <-> summaries
def _encode(s: Summary) -> dict[str, Any]:
    """One summary as a row: small arrays and strings (see _pack)."""
    if isinstance(s, PatternSummary):
        idx, cnt = s.store.sparse()
        return _row(1, s.fmt, s.dtypes, idx, cnt)
    idx, cnt = s.keys.sparse()
    row = _row(0, "", s.dtypes, idx, cnt)
    row["ints"] = np.array([s.n, s.scale_exp, s.zeros, s.nan, s.pos_inf, s.neg_inf], dtype=np.int64)
    row["floats"] = np.array([s.mean, s.m2, s.m3, s.m4, s.vmin, s.vmax], dtype=np.float64)
    row["top"], row["bottom"] = np.asarray(s.top, np.float64), np.asarray(s.bottom, np.float64)
    if s.int_counts is not None:
        i_idx = np.flatnonzero(s.int_counts)
        row.update(int_base=str(s.int_base), int_len=len(s.int_counts), iidx=i_idx.astype(np.int64),
                   icnt=s.int_counts[i_idx].astype(np.int64))
    return row


def _row(kind: int, fmt: str, dts: tuple[str, ...], idx: np.ndarray, cnt: np.ndarray) -> dict[str, Any]:
    empty_f, empty_i = np.empty(0, np.float64), np.empty(0, np.int64)
    return {"kind": kind, "fmt": fmt, "dtypes": "\n".join(dts), "idx": np.asarray(idx, np.int64),
            "cnt": np.asarray(cnt, np.int64), "ints": np.zeros(6, np.int64), "floats": np.zeros(6, np.float64),
            "top": empty_f, "bottom": empty_f, "int_base": "", "int_len": 0, "iidx": empty_i, "icnt": empty_i}


_RAGGED = {"idx": ("idx_off", np.int64), "cnt": ("idx_off", np.int64), "top": ("ext_off", np.float64),
           "bottom": ("ext_off", np.float64), "iidx": ("int_off", np.int64), "icnt": ("int_off", np.int64)}
_TEXT = ("key", "fmt", "dtypes", "int_base")


def _pack(rows: dict[str, dict[str, Any]], key_text: str, secret: bytes) -> dict[str, np.ndarray]:
    """Rows as a few flat arrays (a file of 20,000 tensors is one small entry), with their HMAC."""
    items = list(rows.items())
    out: dict[str, np.ndarray] = {"version": np.array(VERSION, np.int64), "file_key": _blob([key_text])[0]}
    for name in _TEXT:
        out[name], out[name + "_off"] = _blob([k if name == "key" else r[name] for k, r in items])
    out["kind"] = np.array([r["kind"] for _, r in items], np.int64)
    out["int_len"] = np.array([r["int_len"] for _, r in items], np.int64)
    out["ints"] = np.array([r["ints"] for _, r in items], np.int64).reshape(-1, 6)
    out["floats"] = np.array([r["floats"] for _, r in items], np.float64).reshape(-1, 6)
    for name, (off, dt) in _RAGGED.items():
        parts = [np.asarray(r[name], dt) for _, r in items]
        out[name] = np.concatenate(parts) if parts else np.empty(0, dt)
        out[off] = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    out["mac"] = np.frombuffer(_mac(out, secret), np.uint8)
    return out


def _blob(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    raw = [t.encode("utf-8", "surrogatepass") for t in texts]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in raw])]).astype(np.int64)
    return np.frombuffer(b"".join(raw), np.uint8).copy(), offsets


def _text(blob: np.ndarray, offsets: np.ndarray, i: int) -> str:
    return blob[offsets[i]: offsets[i + 1]].tobytes().decode("utf-8", "surrogatepass")


def _mac(arrays: dict[str, np.ndarray], secret: bytes) -> bytes:
    h = hmac.new(secret, digestmod=hashlib.sha256)
    for name in sorted(arrays):
        if name == "mac":
            continue
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.digest()


def authentic(z: dict[str, np.ndarray], key_text: str, secret: bytes | None, version: int = VERSION) -> bool:
    """Whether an entry's version, HMAC under our key and file key all match (any kind of entry)."""
    if secret is None or "mac" not in z or "version" not in z or z["version"].shape != () \
            or int(z["version"]) != version:
        return False
    if not hmac.compare_digest(z["mac"].tobytes(), _mac(z, secret)):
        return False
    return z["file_key"].tobytes().decode("utf-8", "surrogatepass") == key_text


def _unpack(z: dict[str, np.ndarray], key_text: str, secret: bytes | None) -> dict[str, dict[str, Any]]:
    """Rows of an entry whose version, file key and HMAC all match; {} otherwise (a miss, never an error)."""
    if not authentic(z, key_text, secret):
        return {}
    n = len(z["kind"])
    for off in ("idx_off", "ext_off", "int_off", *(t + "_off" for t in _TEXT)):
        o = z[off]
        if o.shape != (n + 1,) or o[0] != 0 or np.any(np.diff(o) < 0):
            return {}
    if z["ints"].shape != (n, 6) or z["floats"].shape != (n, 6) or z["int_len"].shape != (n,):
        return {}
    rows = {}
    for i in range(n):
        row: dict[str, Any] = {name: _text(z[name], z[name + "_off"], i) for name in _TEXT}
        row.update(kind=int(z["kind"][i]), int_len=int(z["int_len"][i]), ints=z["ints"][i], floats=z["floats"][i])
        for name, (off, _) in _RAGGED.items():
            row[name] = z[name][z[off][i]: z[off][i + 1]]
        rows[row.pop("key")] = row
    return rows


def _decode(row: dict[str, Any], t: TensorInfo) -> Summary | None:
    """The summary in ``row`` if every stored figure is consistent with ``t`` and with the others."""
    dts = tuple(row["dtypes"].split("\n"))
    if dts != (t.dtype,) or dtypes.lookup(t.dtype) is None:
        return None
    if row["kind"] == 1:
        fmt = row["fmt"]
        if fmt != t.dtype or fmt not in PATTERN_DTYPES:
            return None
        store = _store(row["idx"], row["cnt"], pattern_count(fmt))
        if store is None or store.total() != t.elements:
            return None
        return PatternSummary(fmt, dtypes=dts, store=store)
    if row["kind"] != 0 or t.dtype in PATTERN_DTYPES:
        return None
    n, scale_exp, zeros, nan, pos_inf, neg_inf = (int(x) for x in row["ints"])
    mean, m2, m3, m4, vmin, vmax = (float(x) for x in row["floats"])
    keys = _store(row["idx"], row["cnt"], KEYS)
    top, bottom = row["top"], row["bottom"]
    if keys is None or min(n, zeros, nan, pos_inf, neg_inf) < 0 or n + nan + pos_inf + neg_inf != t.elements \
            or keys.total() != n or zeros > n or abs(scale_exp) > 1100:
        return None
    out = FloatSummary(dtypes=dts, n=n, scale_exp=scale_exp, mean=mean, m2=m2, m3=m3, m4=m4, vmin=vmin,
                       vmax=vmax, zeros=zeros, nan=nan, pos_inf=pos_inf, neg_inf=neg_inf, keys=keys,
                       top=top.copy(), bottom=bottom.copy())
    if not _consistent_float(out):
        return None
    if row["int_base"]:
        if not 0 < row["int_len"] <= INT_SPAN_MERGED:
            return None
        counts = _dense(row["iidx"], row["icnt"], row["int_len"])
        if counts is None or int(counts.sum()) != n or counts[0] == 0 or counts[-1] == 0:
            return None
        base = int(row["int_base"])
        if float(base) != vmin or float(base + len(counts) - 1) != vmax:
            return None
        out.int_base, out.int_counts = base, counts
    return out


def _consistent_float(s: FloatSummary) -> bool:
    """Stored figures that could all be true of one set of values (a bug or a forgery fails this)."""
    idx, cnt = s.keys.sparse()  # sparse lookups: a dense copy is 512 KiB per tensor
    if np.any(((idx >= 0x7F80) & (idx < 0x8000)) | (idx >= 0xFF80)):
        return False
    if s.zeros > _count_at(idx, cnt, np.array([0, 0x8000])).sum():
        return False
    if s.n == 0:
        return not len(s.top) and not len(s.bottom) and s.mean == 0 and s.m2 == 0
    k = min(s.n, K_EXTREMES)
    top, bottom = s.top, s.bottom
    if len(top) != k or len(bottom) != k or not (np.isfinite(top).all() and np.isfinite(bottom).all()):
        return False
    if np.any(top[1:] < top[:-1]) or np.any(bottom[1:] < bottom[:-1]):  # no diff: ±1.8e308 would overflow
        return False
    if not (math.isfinite(s.vmin) and math.isfinite(s.vmax) and s.vmin <= s.vmax):
        return False
    if bottom[0] != s.vmin or top[-1] != s.vmax or top[0] < s.vmin or bottom[-1] > s.vmax:
        return False
    if s.n <= K_EXTREMES and not np.array_equal(top, bottom):
        return False
    if not all(math.isfinite(x) for x in (s.mean, s.m2, s.m3, s.m4)) or s.m2 < 0 or s.m4 < 0:
        return False
    try:
        mean = math.ldexp(s.mean, s.scale_exp)
        std = math.ldexp(math.sqrt(s.m2 / s.n), s.scale_exp)
    except OverflowError:
        return False
    slack = 1e-9 * max(abs(s.vmin), abs(s.vmax)) + 1e-300
    if not s.vmin - slack <= mean <= s.vmax + slack:
        return False
    if std > (s.vmax - s.vmin) * (1 + 1e-9) + slack:  # a spread wider than the range is impossible
        return False
    held = np.concatenate([bottom, top]) if s.n > K_EXTREMES else top
    with np.errstate(all="ignore"):
        keys, found = np.unique(float_keys(np.unique(held)), return_counts=True)
    return not np.any(found > _count_at(idx, cnt, keys))  # every stored extreme's key was counted


def _count_at(idx: np.ndarray, cnt: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Counts at ``keys`` of sparse counts (``idx`` strictly increasing); 0 where absent."""
    pos = np.minimum(np.searchsorted(idx, keys), max(len(idx) - 1, 0))
    if not len(idx):
        return np.zeros(len(keys), np.int64)
    return np.where(idx[pos] == keys, cnt[pos], 0)


def _store(idx: np.ndarray, cnt: np.ndarray, length: int) -> CountStore | None:
    """Checked sparse counts, kept sparse (finished summaries stay compact in memory)."""
    if idx.ndim != 1 or cnt.ndim != 1 or len(idx) != len(cnt) or idx.dtype != np.int64 or cnt.dtype != np.int64:
        return None
    if len(idx) and (idx.min() < 0 or idx.max() >= length or cnt.min() <= 0 or np.any(np.diff(idx) <= 0)):
        return None
    return CountStore.from_sparse(length, idx.astype(np.uint32 if length > 65536 else np.uint16), cnt.copy())


def _dense(idx: np.ndarray, cnt: np.ndarray, length: int) -> np.ndarray | None:
    if _store(idx, cnt, length) is None:
        return None
    out = np.zeros(length, dtype=np.int64)
    out[idx] = cnt
    return out
