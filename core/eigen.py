"""Eigenvalues of a symmetric float64 matrix, by the fastest exact solver at hand.

numpy's eigvalsh reduces the matrix to tridiagonal form one column at a time (LAPACK dsytrd): half of that
work streams the whole matrix through memory per column, which makes it slow beyond a few thousand rows.
LAPACK's two-stage reduction (dsyevd_2stage: to a band with matrix-matrix products, then to tridiagonal) does
the same arithmetic in float64 several times faster. numpy's own bundled OpenBLAS exports it; where that
library or symbol is missing, or it fails a check on a known matrix, numpy's eigvalsh is used. Both solve the
same float64 problem to the same backward error (a few ulps of the largest eigenvalue).
"""

from __future__ import annotations

import ctypes
import glob
import os
from functools import cache
from typing import Any

import numpy as np

TWO_STAGE_FROM = 256  # below this order numpy's solver is as fast, and needs no foreign call
_ROW_MAJOR = 101


def symmetric_eigenvalues(g: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of the symmetric float64 matrix ``g`` (only its lower triangle is read); ``g`` may
    be overwritten."""
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
    a = np.ascontiguousarray(g, dtype=np.float64)
    n = a.shape[0]
    w = np.empty(n, dtype=np.float64)
    info = solver(_ROW_MAJOR, b"N", b"L", n, a.ctypes.data, n, w.ctypes.data)
    if info != 0:
        return None
    return w


@cache
def _two_stage() -> Any:
    """LAPACKE_dsyevd_2stage from numpy's bundled OpenBLAS (64-bit integers), checked once; None if absent."""
    try:
        base = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
        for path in sorted(glob.glob(os.path.join(base, "libscipy_openblas64_*.so"))):
            lib = ctypes.CDLL(path)
            solver = getattr(lib, "scipy_LAPACKE_dsyevd_2stage64_", None)
            if solver is None:
                continue
            solver.restype = ctypes.c_int64
            solver.argtypes = [ctypes.c_int, ctypes.c_char, ctypes.c_char, ctypes.c_int64, ctypes.c_void_p,
                               ctypes.c_int64, ctypes.c_void_p]
            if _passes_check(solver):
                return solver
    except (OSError, AttributeError, ValueError):
        return None
    return None


def _passes_check(solver: Any) -> bool:
    """The solver must reproduce numpy's eigenvalues of a random symmetric matrix (and not touch the upper half)."""
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
