"""numpy's bundled OpenBLAS called directly, for what numpy does not offer: in-place symmetric rank-k updates
(no temporary Gram-sized product), the triangular-pentagonal QR update, and control of BLAS's own threads.

Why threads: OpenBLAS splits each call over its worker threads, which wait for each other by spinning; on a
busy 2-core machine a 4096-order eigensolve measured 33 s with 2 BLAS threads and 11 s with one (and 2 s
against 5 s at order 2048). So the spectral engine runs BLAS single-threaded and uses the cores itself, with
one Python thread per fixed share of the output (each entry written by one thread: deterministic).
The eigensolver, which cannot be split that way, keeps BLAS's threads while the machine looks idle
(blas_threads_for_load). Every function has a plain numpy fallback for a numpy built without this library.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import itertools
import os
import threading
import time
from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np

_ROW_MAJOR, _COL_MAJOR = 101, 102
_NO_TRANS, _TRANS = 111, 112
_LOWER = 122
_I64, _F64, _PTR = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p


@cache
def openblas() -> Any:
    """numpy's own OpenBLAS (64-bit integers), or None."""
    base = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(base, "libscipy_openblas64_*.so"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if all(hasattr(lib, name) for name in ("scipy_cblas_dsyrk64_", "scipy_cblas_dgemm64_",
                                                "scipy_openblas_set_num_threads64_",
                                                "scipy_openblas_get_num_threads64_")):
            lib.scipy_cblas_dsyrk64_.argtypes = [ctypes.c_int] * 3 + [_I64, _I64, _F64, _PTR, _I64, _F64, _PTR, _I64]
            lib.scipy_cblas_dsyrk64_.restype = None
            lib.scipy_cblas_dgemm64_.argtypes = [ctypes.c_int] * 3 + [_I64] * 3 + [_F64, _PTR, _I64, _PTR, _I64,
                                                                                  _F64, _PTR, _I64]
            lib.scipy_cblas_dgemm64_.restype = None
            lib.scipy_openblas_set_num_threads64_.argtypes = [ctypes.c_int]
            lib.scipy_openblas_get_num_threads64_.restype = ctypes.c_int
            return lib
    return None


_threads_lock = threading.Lock()
_threads_depth = 0
_threads_saved = 0


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS calls inside run on the calling thread only (nested and concurrent uses share one setting)."""
    global _threads_depth, _threads_saved
    lib = openblas()
    if lib is None:
        yield
        return
    with _threads_lock:
        if _threads_depth == 0:
            _threads_saved = lib.scipy_openblas_get_num_threads64_()
            lib.scipy_openblas_set_num_threads64_(1)
        _threads_depth += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_depth -= 1
            if _threads_depth == 0:
                lib.scipy_openblas_set_num_threads64_(_threads_saved)


LOADAVG = "/proc/loadavg"
OWN_TASKS = "/proc/self/task"
RUNNABLE_SAMPLES = 5  # instantaneous counts averaged, 1 ms apart


def _own_running() -> int:
    """This process's threads running or runnable now (BLAS's spinning workers among them)."""
    running = 0
    try:
        tasks = os.listdir(OWN_TASKS)
    except OSError:
        return 1
    for task in tasks:
        try:
            with open(os.path.join(OWN_TASKS, task, "stat"), "rb") as f:
                stat = f.read(512)
        except OSError:
            continue  # the thread ended
        state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
        running += state == b"R"
    return max(1, running)


def runnable_elsewhere(path: str | None = None) -> float | None:
    """Threads of other processes runnable on the machine now: the mean of a few instantaneous counts (the
    fourth field of Linux's /proc/loadavg, running/total) less this process's own; None where there is no
    such file."""
    counts = []
    for i in range(RUNNABLE_SAMPLES):
        try:
            with open(path or LOADAVG, "rb") as f:
                total = int(f.read(256).split()[3].split(b"/")[0])
        except (OSError, IndexError, ValueError):
            return None
        counts.append(max(0, total - _own_running()))
        if i + 1 < RUNNABLE_SAMPLES:
            time.sleep(0.001)
    return sum(counts) / len(counts)


def cores_look_free() -> bool:
    """Whether other work leaves BLAS's own threads a core each: at most half the cores' worth of threads
    runnable now. The 1-minute load average, used where Linux's instantaneous count is missing, also counts
    this process's own work of the last minute: after building a Gram matrix on both cores it read "busy" and
    the eigensolver then ran on one thread, 1.7x slower. Unknown counts as busy."""
    cores = os.cpu_count() or 1
    others = runnable_elsewhere()
    if others is not None:
        return others <= cores / 2
    try:
        return os.getloadavg()[0] <= cores / 2
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def blas_threads_for_load() -> Iterator[bool]:
    """BLAS's own threads when the cores look free, else single-threaded: for a call that cannot be split among
    our threads (the eigensolver), where spinning BLAS threads pay on an idle machine and cost 3x on a busy one.
    Yields whether BLAS may use its threads (core.eigen sets MKL's threads, which this setting does not reach)."""
    if cores_look_free():
        yield True
    else:
        with single_threaded_blas():
            yield False


def row_shares(n: int, parts: int) -> list[tuple[int, int]]:
    """Row ranges of an n x n lower triangle with equal areas (row i holds i + 1 entries)."""
    cuts = sorted({0, n, *(round(n * (i / parts) ** 0.5) for i in range(1, parts))})
    return [(lo, hi) for lo, hi in itertools.pairwise(cuts) if hi > lo]


def add_gram_rows(g: np.ndarray, x: np.ndarray, transposed: bool, lo: int, hi: int) -> None:
    """Rows [lo, hi) of the lower triangle of ``g`` += X X^T, where X = x (n x k) or, ``transposed``, x^T
    (x is k x n). ``g`` and ``x`` are C-contiguous float64; the upper triangle of that band is not touched."""
    n = g.shape[0]
    k = x.shape[0] if transposed else x.shape[1]
    if hi <= lo or k == 0:
        return
    lib = openblas()
    if lib is None or not (g.flags.c_contiguous and x.flags.c_contiguous and g.dtype == x.dtype == np.float64):
        band = x[:, lo:hi].T if transposed else x[lo:hi]
        head = x[:, :hi] if transposed else x[:hi].T
        g[lo:hi, :hi] += np.tril(band @ head, lo)
        return
    ld = x.shape[1]
    item = x.itemsize
    gp, xp = g.ctypes.data, x.ctypes.data
    band_ptr = xp + (lo * item if transposed else lo * ld * item)
    if lo > 0:  # the rectangle left of the diagonal block
        if transposed:
            lib.scipy_cblas_dgemm64_(_ROW_MAJOR, _TRANS, _NO_TRANS, hi - lo, lo, k, 1.0, band_ptr, ld, xp, ld, 1.0,
                                     gp + lo * n * item, n)
        else:
            lib.scipy_cblas_dgemm64_(_ROW_MAJOR, _NO_TRANS, _TRANS, hi - lo, lo, k, 1.0, band_ptr, ld, xp, ld, 1.0,
                                     gp + lo * n * item, n)
    lib.scipy_cblas_dsyrk64_(_ROW_MAJOR, _LOWER, _TRANS if transposed else _NO_TRANS, hi - lo, k, 1.0, band_ptr,
                             ld, 1.0, gp + (lo * n + lo) * item, n)


def add_gram(g: np.ndarray, x: np.ndarray, transposed: bool, pool: Any = None, parts: int = 1) -> None:
    """The lower triangle of ``g`` += X X^T (see add_gram_rows), its rows shared among ``parts`` jobs of
    ``pool`` (BLAS itself should then be single-threaded)."""
    shares = row_shares(g.shape[0], parts)
    if pool is None or len(shares) == 1:
        for lo, hi in shares:
            add_gram_rows(g, x, transposed, lo, hi)
        return
    for future in [pool.submit(add_gram_rows, g, x, transposed, lo, hi) for lo, hi in shares]:
        future.result()
