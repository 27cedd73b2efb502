"""Bounds-checked, read-only file access.

We never mmap user files: a file that shrinks under an mmap kills the process
with SIGBUS. Reads go through ``os.pread`` into buffers we own and are checked
against the file's size at the moment of reading.

User paths are opened with ``open_regular``: non-blocking, so a FIFO or a
device cannot hang us, and accepting regular files only.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import threading
from collections import OrderedDict

import numpy as np

from core.errors import ReadError

MAX_OPEN_READERS = 64  # a sharded model may have thousands of shards; the open-file limit may be 256
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0))
_SYSTEM_FOLDERS = ("/proc", "/sys")
_KINDS = [(stat.S_ISDIR, "is a folder, not a file"), (stat.S_ISFIFO, "not a regular file (a FIFO)"),
          (stat.S_ISSOCK, "not a regular file (a socket)"), (stat.S_ISCHR, "not a regular file (a character device)"),
          (stat.S_ISBLK, "not a regular file (a block device)")]


class OpenError(ReadError):
    """A path that cannot be opened as a regular file; ``why`` is the reason without the path."""

    def __init__(self, why: str, *, path: str) -> None:
        super().__init__(why, path=path)
        self.why = why


def open_regular(path: str) -> int:
    """Open ``path`` read-only and return its descriptor, or raise ReadError naming what it is instead.

    O_NONBLOCK makes opening a FIFO or a device return at once instead of waiting for a writer; once
    fstat says the file is regular, the flag is cleared so reads behave normally.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise OpenError(open_error_reason(path, exc), path=path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OpenError(_kind_reason(info.st_mode), path=path)
        if info.st_dev in _system_devices():
            raise OpenError("a system file under /proc or /sys, not a checkpoint", path=path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


@functools.cache
def _system_devices() -> frozenset[int]:
    """The devices of /proc and /sys: their files look regular but are made up by the kernel as they are read."""
    devices = set()
    for folder in _SYSTEM_FOLDERS:
        try:
            devices.add(os.stat(folder).st_dev)
        except OSError:
            pass
    return frozenset(devices)


def open_error_reason(path: str, exc: OSError) -> str:
    """One plain line for a failed open: what the path is, not just the errno text."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    if exc.errno == errno.EISDIR:
        return "is a folder, not a file"
    if exc.errno == errno.ENOTDIR:
        return "no such file (a part of the path is not a folder)"
    if exc.errno == errno.ENOENT:
        return "a dangling symbolic link" if os.path.islink(path) else "no such file"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode and not stat.S_ISREG(mode):
        return _kind_reason(mode)
    return f"cannot open: {exc.strerror or exc}"


def _kind_reason(mode: int) -> str:
    for test, reason in _KINDS:
        if test(mode):
            return reason
    return "not a regular file"


def read_head(path: str, nbytes: int) -> tuple[bytes, int]:
    """The first ``nbytes`` bytes of a regular file and its size, without ever blocking on a special file."""
    with FileReader(path) as reader:
        return reader.read(0, min(nbytes, reader.size)), reader.size


class FileReader:
    """A read-only handle that only ever reads inside the file's current bounds.

    ``release`` closes the descriptor but keeps the reader usable: the next read reopens the path
    and refuses it unless it is still the same file (device, inode and size), so a pool can bound
    how many descriptors a model of thousands of shards holds.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = open_regular(path)
        info = os.fstat(self._fd)
        self.size = info.st_size
        self._identity = (info.st_dev, info.st_ino, info.st_size)
        self._lock = threading.Lock()
        self._lock_seek = threading.Lock()
        self._busy = 0  # reads in flight: a release waits for them rather than closing under them
        self._release_pending = False
        self._closed = False

    @property
    def is_open(self) -> bool:
        """Whether a descriptor is held now (a released reader reopens on its next read)."""
        return self._fd >= 0

    def close(self) -> None:
        """Close for good: later reads raise ReadError."""
        with self._lock:
            self._closed = True
            self._close_fd_locked()

    def release(self) -> None:
        """Give the descriptor back now (or when the reads in flight finish); reopen on the next read."""
        with self._lock:
            if self._busy:
                self._release_pending = True
            else:
                self._close_fd_locked()

    def _close_fd_locked(self) -> None:
        if self._fd >= 0 and not self._busy:
            os.close(self._fd)
            self._fd = -1
        self._release_pending = self._fd >= 0

    def _acquire(self) -> int:
        with self._lock:
            if self._closed:
                raise ReadError("file is closed", path=self.path)
            if self._fd < 0:
                self._fd = self._reopen()
            self._busy += 1
            self._release_pending = False
            return self._fd

    def _done(self) -> None:
        with self._lock:
            self._busy -= 1
            if self._release_pending or self._closed:
                self._close_fd_locked()

    def _reopen(self) -> int:
        fd = open_regular(self.path)
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino, info.st_size) != self._identity:
            os.close(fd)
            raise ReadError("the file was replaced or changed size since it was opened", path=self.path)
        return fd

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, offset: int, nbytes: int) -> bytes:
        """Exactly ``nbytes`` bytes at ``offset``, or ReadError."""
        buf = bytearray(nbytes)
        self.read_into(offset, memoryview(buf))
        return bytes(buf)

    def read_into(self, offset: int, out: memoryview | np.ndarray) -> None:
        """Fill ``out`` completely from ``offset``; a short read means the file changed."""
        view = memoryview(out).cast("B") if not isinstance(out, memoryview) else out.cast("B")
        nbytes = view.nbytes
        if offset < 0 or nbytes < 0:
            raise ReadError("negative read range", path=self.path)
        fd = self._acquire()
        try:
            self._read_fd(fd, offset, view)
        finally:
            self._done()

    def read_runs(self, offset: int, stride: int, out: np.ndarray) -> None:
        """Fill row i of ``out`` (C-contiguous, rows x run bytes) from ``offset + i * stride``: a column range of a
        row-major matrix, one positional read per row, without copying the columns between (a 4096 x 14336 bf16
        matrix read in 7 column ranges copied 822 MB of whole rows, where the ranges themselves are 117 MB)."""
        rows, run = (out.shape[0], out.nbytes // out.shape[0]) if out.ndim and out.shape[0] else (0, 0)
        if rows == 0 or run == 0:
            return
        if offset < 0 or stride < run or not out.flags.c_contiguous:
            raise ReadError("bad read range", path=self.path)
        view = memoryview(out).cast("B")
        fd = self._acquire()
        try:
            self._check_size(fd, offset + (rows - 1) * stride + run)
            for i in range(rows):
                row = view[i * run : (i + 1) * run]
                try:
                    n = self._pread_into(fd, row, offset + i * stride)
                except OSError as exc:
                    raise ReadError(f"read failed: {exc.strerror or exc}", path=self.path) from None
                if n != run:  # a short read: finish it the careful way (it raises if the file shrank)
                    self._read_fd(fd, offset + i * stride + max(n, 0), row[max(n, 0) :])
        finally:
            self._done()

    def _check_size(self, fd: int, end: int) -> None:
        current = os.fstat(fd).st_size
        if end > current:
            raise ReadError(
                f"file is shorter than expected ({current:,} bytes, need {end:,}); it changed while open",
                path=self.path,
            )

    def _read_fd(self, fd: int, offset: int, view: memoryview) -> None:
        nbytes = view.nbytes
        self._check_size(fd, offset + nbytes)
        done = 0
        while done < nbytes:
            try:
                n = self._pread_into(fd, view[done:], offset + done)
            except OSError as exc:
                raise ReadError(f"read failed: {exc.strerror or exc}", path=self.path) from None
            if n <= 0:
                raise ReadError("file ended early; it changed while open", path=self.path)
            done += n

    def _pread_into(self, fd: int, view: memoryview, offset: int) -> int:
        if _HAS_PREADV:
            return os.preadv(fd, [view], offset)
        with self._lock_seek:  # Windows: no positional reads, so seek+read under a lock
            os.lseek(fd, offset, os.SEEK_SET)
            return os.readv(fd, [view]) if hasattr(os, "readv") else _read_copy(fd, view)


class ReaderPool:
    """At most ``limit`` open descriptors over any number of files: the least recently used are released."""

    def __init__(self, limit: int = MAX_OPEN_READERS) -> None:
        self.limit = max(1, limit)
        self._readers: dict[str, FileReader] = {}
        self._recent: OrderedDict[str, FileReader] = OrderedDict()  # readers that may hold a descriptor
        self._lock = threading.Lock()

    def get(self, path: str) -> FileReader:
        """The reader of ``path``, opened on first use; marks it most recently used."""
        with self._lock:
            reader = self._readers.get(path)
            if reader is None:
                self._release_oldest(self.limit - 1)
                reader = self._readers[path] = FileReader(path)
                self._recent[path] = reader
            elif path in self._recent:
                self._recent.move_to_end(path)
            else:
                self._release_oldest(self.limit - 1)
                self._recent[path] = reader
            return reader

    def open_count(self) -> int:
        """Descriptors held now (for tests and diagnostics)."""
        return sum(r.is_open for r in self._readers.values())

    def _release_oldest(self, keep: int) -> None:
        while len(self._recent) > keep:
            _, reader = self._recent.popitem(last=False)
            reader.release()

    def close(self) -> None:
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()
            self._recent.clear()

    def __len__(self) -> int:
        return len(self._readers)


_HAS_PREADV = hasattr(os, "preadv")


def _read_copy(fd: int, view: memoryview) -> int:
    data = os.read(fd, view.nbytes)
    view[: len(data)] = data
    return len(data)
