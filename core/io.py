"""Bounds-checked, read-only file access.

We never mmap user files: a file that shrinks under an mmap kills the process
with SIGBUS. Reads go through ``os.pread`` into buffers we own and are checked
against the file's size at the moment of reading.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from core.errors import ReadError


class FileReader:
    """A read-only handle that only ever reads inside the file's current bounds."""

    def __init__(self, path: str) -> None:
        self.path = path
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
        try:
            self._fd = os.open(path, flags)
        except OSError as exc:
            raise ReadError(f"cannot open: {exc.strerror or exc}", path=path) from None
        self.size = os.fstat(self._fd).st_size
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

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
        if self._fd < 0:
            raise ReadError("file is closed", path=self.path)
        current = os.fstat(self._fd).st_size
        if offset + nbytes > current:
            raise ReadError(
                f"file is shorter than expected ({current:,} bytes, need {offset + nbytes:,}); "
                "it changed while open",
                path=self.path,
            )
        done = 0
        while done < nbytes:
            try:
                n = self._pread_into(view[done:], offset + done)
            except OSError as exc:
                raise ReadError(f"read failed: {exc.strerror or exc}", path=self.path) from None
            if n <= 0:
                raise ReadError("file ended early; it changed while open", path=self.path)
            done += n

    def _pread_into(self, view: memoryview, offset: int) -> int:
        if _HAS_PREADV:
            return os.preadv(self._fd, [view], offset)
        with self._lock:  # Windows: no positional reads, so seek+read under a lock
            os.lseek(self._fd, offset, os.SEEK_SET)
            return os.readv(self._fd, [view]) if hasattr(os, "readv") else _read_copy(self._fd, view)


_HAS_PREADV = hasattr(os, "preadv")


def _read_copy(fd: int, view: memoryview) -> int:
    data = os.read(fd, view.nbytes)
    view[: len(data)] = data
    return len(data)
