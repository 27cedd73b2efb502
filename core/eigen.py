"""Eigenvalues of a symmetric float64 matrix, by the fastest exact solver at hand.

numpy's eigvalsh reduces the matrix to tridiagonal form one column at a time (LAPACK dsytrd): half of that
work streams the whole matrix through memory per column, which makes it slow beyond a few thousand rows.
Two faster solvers do the same float64 arithmetic, each called through its Fortran interface on the caller's
matrix in place (a C-order lower triangle is a Fortran upper triangle, so no transposed copy is made, where
LAPACKE's row-major wrapper, numpy's eigvalsh and torch's eigvalsh each copy the whole matrix: 128 MiB at order
4096, 2 GiB at 16384):

1. Intel MKL's dsyevd, from the library the torch wheel ships on x86-64 Linux (libtorch_cpu exports MKL's
   LAPACK). It is loaded with ctypes, without importing torch: 0.2-0.27 s once per process, against 1.6 s for
   ``import torch``, and only for orders from MKL_FROM (1024) on, where it pays. Order 4096 on the 2-core
   machine: 1.8-2.4 s, against 2.6-3.1 s for (2).
2. LAPACK's two-stage reduction in numpy's own OpenBLAS (dsyevd_2stage: to a band with matrix-matrix
   products, then to tridiagonal): 2.6 s against 3.1 s for numpy's one-stage solver on two threads.

Each is used only after it reproduced numpy's eigenvalues of a known matrix (once per process); where neither
is present or passes, numpy's eigvalsh is used. All solve the same float64 problem to the same backward error
(a few ulps of the largest eigenvalue): benchmarks/eigen.py times them, tests/test_eigen_lapack.py holds each to
numpy's.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import platform
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

from core.blas import openblas

TWO_STAGE_FROM = 256  # below this order numpy's solver is as fast, and needs no foreign call
_SYMBOL = "scipy_dsyevd_2stage_64_"
_I64, _PTR, _LEN = ctypes.c_int64, ctypes.c_void_p, ctypes.c_size_t


def symmetric_eigenvalues(g: np.ndarray, threaded: bool = True) -> np.ndarray:
    """Ascending eigenvalues of the symmetric float64 matrix ``g`` (only its lower triangle is read); ``g`` may
    be overwritten (a C-contiguous float64 ``g`` is used as LAPACK's workspace, not copied). ``threaded=False``
    keeps MKL on one thread (a busy machine; OpenBLAS's threads are set by core.blas)."""
    if g.shape[0] < TWO_STAGE_FROM:
        return np.linalg.eigvalsh(g, UPLO="L")
    return _SOLVER_THREAD.submit(_solve, g, threaded).result()


def _solve(g: np.ndarray, threaded: bool) -> np.ndarray:
    for _name, solver, threads in _solvers(g.shape[0]):
        with threads(None if threaded else 1):
            out = _run_dsyevd(solver, g)
        if out is not None:
            return out
    return np.linalg.eigvalsh(g, UPLO="L")


def solver_name(n: int) -> str:
    """Which solver ``symmetric_eigenvalues`` uses for order ``n`` (for benchmarks and reports)."""
    solvers = _solvers(n) if n >= TWO_STAGE_FROM else ()
    return solvers[0][0] if solvers else "numpy eigvalsh"


Solver = tuple[str, Any, Callable[[int | None], Any]]  # (name, dsyevd-shaped function, thread setter)
MKL_FROM = 1024  # MKL gains 37 ms at this order (0.05 s against 0.09), 0.1 s at 2048 and 0.7 s at 4096, for a
#                  one-time 0.3-0.4 s of CPU and 120 MB of library: below it OpenBLAS's solver serves alone
_found: dict[str, tuple[Solver, ...]] = {}
_finding = threading.Lock()


def _solvers(n: int = MKL_FROM) -> tuple[Solver, ...]:
    """The fast solvers for order ``n`` that are present and pass the check, fastest first; each library is
    looked for once per process (thread-safe: a caller waits for a search already under way)."""
    return tuple(solver for kind in _kinds(n) for solver in _found_kind(kind))


def _kinds(n: int) -> tuple[str, ...]:
    """The libraries worth having for order ``n``, fastest first."""
    return ("mkl", "two_stage") if n >= MKL_FROM else ("two_stage",)


def _found_kind(kind: str) -> tuple[Solver, ...]:
    if kind not in _found:
        with _finding:
            if kind not in _found:
                _found[kind] = _find(kind)
    return _found[kind]


def _find(kind: str) -> tuple[Solver, ...]:
    if kind == "mkl":
        mkl = _mkl()
        return (("MKL dsyevd (torch's library)", mkl[0], mkl[1]),) if mkl is not None else ()
    two_stage = _two_stage()
    return (("LAPACK dsyevd_2stage", two_stage, _unchanged_threads),) if two_stage is not None else ()


def _find_solvers() -> tuple[Solver, ...]:
    """Every fast solver present, looked for afresh (tests)."""
    return _find("mkl") + _find("two_stage")


class _SolverThread:
    """One daemon thread that runs the calls handed to it in order.

    Every large solve, and the solvers' setup, runs on it: MKL's threads are set per calling thread, and the
    first large solve from a thread ran 0.5-0.9 s slower than the next ones at order 4096 (its OpenMP team is
    made per calling thread), so the warm-up must happen on the thread that solves. A daemon, unlike a
    ThreadPoolExecutor's thread (joined at exit): quitting the app during a minutes-long solve of a huge matrix
    must not wait for it."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="eigensolver", daemon=True)
                self._thread.start()
        self._calls.put((future, fn, args))
        return future

    def _run(self) -> None:
        while True:
            future, fn, args = self._calls.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller, which re-raises it
                future.set_exception(exc)


_SOLVER_THREAD = _SolverThread()


def prepare_in_background(n: int) -> None:
    """Find the solvers for order ``n`` on the solver thread (0.3-0.4 s: loading MKL's library, the checks, the
    warm-up) while the caller builds a Gram matrix, instead of after it."""
    if any(kind not in _found for kind in _kinds(n)) and not _finding.locked():
        _SOLVER_THREAD.submit(_solvers, n)


def _run_dsyevd(solver: Any, g: np.ndarray) -> np.ndarray | None:
    """dsyevd or dsyevd_2stage (JOBZ='N', 64-bit integers) on ``g`` in place. None if LAPACK reports a failure
    (INFO != 0) in the workspace query, before ``g`` is touched; LinAlgError if the solve itself fails. Both
    take (JOBZ, UPLO, N, A, LDA, W, WORK, LWORK, IWORK, LIWORK, INFO)."""
    a = np.ascontiguousarray(g, dtype=np.float64)
    n = a.shape[0]
    w = np.empty(n, dtype=np.float64)
    info = _I64(0)
    work_size, iwork_size = ctypes.c_double(0.0), _I64(0)

    def call(work: Any, lwork: int, iwork: Any, liwork: int) -> int:
        # the C-order lower triangle is the Fortran-order upper one: UPLO='U'; JOBZ='N': eigenvalues only
        solver(b"N", b"U", ctypes.byref(_I64(n)), _PTR(a.ctypes.data), ctypes.byref(_I64(max(n, 1))),
               _PTR(w.ctypes.data), work, ctypes.byref(_I64(lwork)), iwork, ctypes.byref(_I64(liwork)),
               ctypes.byref(info), _LEN(1), _LEN(1))
        return info.value

    if call(ctypes.byref(work_size), -1, ctypes.byref(iwork_size), -1) != 0:  # workspace query
        return None
    work = np.empty(max(1, int(work_size.value)), dtype=np.float64)
    iwork = np.empty(max(1, iwork_size.value), dtype=np.int64)
    if call(_PTR(work.ctypes.data), work.size, _PTR(iwork.ctypes.data), iwork.size) != 0:
        # ``a`` is overwritten by now: no other solver may run on it (numpy raises the same for its solver)
        raise np.linalg.LinAlgError(f"the eigensolver did not converge (LAPACK INFO {info.value})")
    return w


def _two_stage() -> Any:
    """dsyevd_2stage from numpy's bundled OpenBLAS (64-bit integers), checked; None if absent."""
    lib = openblas()
    solver = getattr(lib, _SYMBOL, None) if lib is not None else None
    if solver is None:
        return None
    _declare(solver)
    return solver if _passes_check(solver) else None


MKL_LIBRARY = "libtorch_cpu.so"


def _mkl() -> tuple[Any, Callable[[int | None], Any]] | None:
    """MKL's dsyevd (64-bit integers) and a thread setter, from torch's CPU library, loaded without importing
    torch; None where torch is absent, the library holds no MKL (Apple, ARM builds), or the check fails."""
    if os.environ.get("WEIGHTSCOPE_MKL") == "0" or platform.system() != "Linux" \
            or platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = os.path.join(folder, "lib", MKL_LIBRARY)
        if not os.path.isfile(path):
            continue
        try:
            _load_without_the_gil(path)
            lib = ctypes.CDLL(path)  # already loaded: no more than a lookup
            solver, set_local = lib.dsyevd_64_, lib.MKL_Set_Num_Threads_Local  # C form (lower case: Fortran)
        except (OSError, AttributeError):  # not loadable here, or not MKL's LAPACK
            continue
        _declare(solver)
        set_local.argtypes, set_local.restype = [ctypes.c_int], ctypes.c_int
        threads = _mkl_threads(set_local)
        with threads(None):
            passed = _passes_check(solver)
            if passed:
                _warm_up(solver)
        if passed:
            return solver, threads
    return None


MKL_WARM_UP_ORDER = 1024


def _warm_up(solver: Any) -> None:
    """One solve of order 1024 (0.13-0.18 s): MKL's first large solve on a thread ran 0.6-0.9 s slower than the
    next ones at order 4096 (2.6-3.3 s against 1.8-2.4 s), and after this warm-up on the same thread it did not."""
    x = np.random.default_rng(1).standard_normal((MKL_WARM_UP_ORDER, MKL_WARM_UP_ORDER))
    with contextlib.suppress(np.linalg.LinAlgError):
        _run_dsyevd(solver, x @ x.T)


def _load_without_the_gil(path: str) -> None:
    """Load a library through libc's dlopen called as a foreign function, which releases the GIL: ctypes.CDLL
    holds it while the library loads (0.2 s for torch's, measured as a 225 ms stall of another Python thread:
    the window's, when the Spectra tab starts; 1.3 ms this way)."""
    libc = ctypes.CDLL(None)
    libc.dlopen.restype, libc.dlopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    if not libc.dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL):
        raise OSError(f"cannot load {path}")


def _mkl_threads(set_local: Any) -> Callable[[int | None], Any]:
    """A context manager factory: MKL's thread count on the calling thread for a block (None: MKL's default)."""

    @contextlib.contextmanager
    def threads(count: int | None) -> Any:
        previous = set_local(0 if count is None else count)  # 0 restores MKL's global setting
        try:
            yield
        finally:
            set_local(previous)

    return threads


def _unchanged_threads(count: int | None) -> Any:
    """OpenBLAS's thread count is core.blas's to set: nothing to do here."""
    return contextlib.nullcontext()


def _declare(solver: Any) -> None:
    solver.restype = None
    solver.argtypes = [ctypes.c_char_p, ctypes.c_char_p, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR,
                       _LEN, _LEN]


def _passes_check(solver: Any) -> bool:
    """The solver must reproduce numpy's eigenvalues of a random symmetric matrix (and not read the upper half)."""
    rng = np.random.default_rng(0)
    n = TWO_STAGE_FROM
    x = rng.standard_normal((n, n))
    g = x @ x.T
    lower = np.tril(g) + np.triu(np.full((n, n), np.nan), 1)
    try:
        got = _run_dsyevd(solver, lower)
    except np.linalg.LinAlgError:
        return False
    if got is None:
        return False
    want = np.linalg.eigvalsh(g)
    return bool(np.all(np.abs(got - want) <= 1e-10 * want[-1]))
