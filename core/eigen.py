"""Eigenvalues of a symmetric float64 matrix, by the fastest exact solver at hand.

numpy's eigvalsh reduces the matrix to tridiagonal form one column at a time (LAPACK dsytrd): half of that
work streams the whole matrix through memory per column, which makes it slow beyond a few thousand rows.
LAPACK's two-stage reduction (dsyevd_2stage: to a band with matrix-matrix products, then to tridiagonal) does
the same arithmetic in float64 faster (order 4096 on the shared 2-core machine: 4-6 s against 6-9 s on one
thread, 2.6 s against 3.1 s on two; benchmarks/eigen.py). numpy's own bundled
OpenBLAS exports it; it is called through its Fortran interface on the caller's matrix in place: a C-order
lower triangle is a Fortran upper triangle, so no transposed copy is made (LAPACKE's row-major wrapper, and
numpy's eigvalsh, each copy the whole matrix: 128 MiB at order 4096, 2 GiB at 16384). Where that library or
symbol is missing, or it fails a check on a known matrix, numpy's eigvalsh is used. Both solve the same
float64 problem to the same backward error (a few ulps of the largest eigenvalue).
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import numpy as np

from core.blas import openblas

TWO_STAGE_FROM = 256  # below this order numpy's solver is as fast, and needs no foreign call
_SYMBOL = "scipy_dsyevd_2stage_64_"
_I64, _PTR, _LEN = ctypes.c_int64, ctypes.c_void_p, ctypes.c_size_t


def symmetric_eigenvalues(g: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of the symmetric float64 matrix ``g`` (only its lower triangle is read); ``g`` may
    be overwritten (a C-contiguous float64 ``g`` is used as LAPACK's workspace, not copied)."""
    n = g.shape[0]
    solver = _two_stage() if n >= TWO_STAGE_FROM else None
    if solver is not None:
        out = _run_two_stage(solver, g)
        if out is not None:
            return out
    return np.linalg.eigvalsh(g, UPLO="L")


def solver_name(n: int) -> str:
    """Which solver ``symmetric_eigenvalues`` uses for order ``n`` (for benchmarks and reports)."""
    return "LAPACK dsyevd_2stage" if n >= TWO_STAGE_FROM and _two_stage() is not None else "numpy eigvalsh"


def _run_two_stage(solver: Any, g: np.ndarray) -> np.ndarray | None:
    """dsyevd_2stage(JOBZ='N') on ``g`` in place; None if LAPACK reports a failure (INFO != 0)."""
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
        return None
    return w


@cache
def _two_stage() -> Any:
    """dsyevd_2stage from numpy's bundled OpenBLAS (64-bit integers), checked once; None if absent."""
    lib = openblas()
    solver = getattr(lib, _SYMBOL, None) if lib is not None else None
    if solver is None:
        return None
    solver.restype = None
    solver.argtypes = [ctypes.c_char_p, ctypes.c_char_p, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR,
                       _LEN, _LEN]
    return solver if _passes_check(solver) else None


def _passes_check(solver: Any) -> bool:
    """The solver must reproduce numpy's eigenvalues of a random symmetric matrix (and not read the upper half)."""
    rng = np.random.default_rng(0)
    n = TWO_STAGE_FROM
    x = rng.standard_normal((n, n))
    g = x @ x.T
    lower = np.tril(g) + np.triu(np.full((n, n), np.nan), 1)
    got = _run_two_stage(solver, lower)
    if got is None:
        return False
    want = np.linalg.eigvalsh(g)
    return bool(np.all(np.abs(got - want) <= 1e-10 * want[-1]))
