"""Singular values that a Gram matrix cannot resolve, computed from the matrix itself: WeightWatcher's rank.

WeightWatcher's matrix_rank is numpy's matrix_rank of the float64 matrix: singular values above
sigma_max * N * eps (N the larger side). Eigenvalues of the Gram matrix W^T W carry an absolute error of a few
ulps of lambda_max, so a singular value below about sqrt(eps) * sigma_max (1.5e-8 of the largest) is lost in
them: rounding noise of float32 weights (~1e-8) and an exact zero look alike. When a Gram spectrum has an
eigenvalue that close to zero (``gram_cannot_decide``), the matrix is read again in blocks and reduced by a
streamed QR (LAPACK's triangular-pentagonal update: R of [R; B] for each block B of W, or of W^T for a wide
matrix), then the singular values of R (min-side square) are those of W, accurate to eps * sigma_max like
numpy's SVD. Memory: R (the Gram matrix's size) and one block.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from typing import Any

import numpy as np

from core.blas import openblas, single_threaded_blas
from core.checkpoint import Checkpoint, TensorInfo
from core.gram import MatrixGroup, column_blocks, row_blocks

# An eigenvalue below RANK_BAND * N * eps * lambda_max may belong to a singular value on either side of
# numpy's threshold: the float64 Gram matrix's summation error and the eigensolver's backward error are a small
# multiple of N * eps * lambda_max (a full-rank random square matrix of order 4096 has its smallest eigenvalue
# near 1e-8 * lambda_max, this band ends at 1.5e-11 * lambda_max).
RANK_BAND = 16.0
_EPS = float(np.finfo(np.float64).eps)
_COL_MAJOR = 102
_I64, _PTR = ctypes.c_int64, ctypes.c_void_p


def gram_cannot_decide(evals: np.ndarray, rows: int, cols: int) -> bool:
    """Whether a Gram matrix's eigenvalues leave the rank open: one is within rounding of zero."""
    lam_max = float(np.max(evals))
    return lam_max > 0 and float(np.min(evals)) <= RANK_BAND * max(rows, cols) * _EPS * lam_max


def singular_values(checkpoint: Checkpoint, t: TensorInfo, group: MatrixGroup, slice_index: int,
                    block_bytes: int) -> Iterator[np.ndarray | None]:
    """Singular values (ascending, float64) of slice ``slice_index`` of ``group``, by a streamed QR; yields
    None after each block (for progress and cancel), then the values."""
    n = group.gram_order
    r = np.zeros((n, n), dtype=np.float64, order="F")
    update = _tpqrt()
    if group.rows >= group.cols:
        blocks = (b[:, :, slice_index] for b in row_blocks(checkpoint, t, group, block_bytes))
    else:  # rows of W^T are columns of W: a column block C is C^T's rows, its memory already column-major
        blocks = (b[:, :, slice_index].T for b in column_blocks(checkpoint, t, group, block_bytes))
    for block in blocks:
        b = np.asfortranarray(block, dtype=np.float64)
        with single_threaded_blas():  # BLAS's own threads: 10 to 30 times slower on a busy machine (core.blas)
            if update is None or not update(r, b):
                r = np.asfortranarray(np.linalg.qr(np.vstack([np.triu(r), b]), mode="r")[:n])
        del b
        yield None
    for j in range(n - 1):  # R's strict lower triangle holds Householder data: zero it (column by column)
        r[j + 1 :, j] = 0.0
    with single_threaded_blas():
        values = _singular_values_in_place(r)
    yield np.sort(values)


def _tpqrt() -> Any:
    """An in-place update R <- R of [R; B] by LAPACKE_dtpqrt (column-major), or None without it."""
    lib = openblas()
    fn = getattr(lib, "scipy_LAPACKE_dtpqrt64_", None) if lib is not None else None
    if fn is None:
        return None
    fn.restype = _I64
    fn.argtypes = [ctypes.c_int, _I64, _I64, _I64, _I64, _PTR, _I64, _PTR, _I64, _PTR, _I64]

    def update(r: np.ndarray, b: np.ndarray) -> bool:
        m, n = b.shape
        if m == 0:
            return True
        nb = max(1, min(n, 64))
        tau = np.empty((nb, n), dtype=np.float64, order="F")
        info = fn(_COL_MAJOR, m, n, 0, nb, r.ctypes.data, n, b.ctypes.data, m, tau.ctypes.data, nb)
        return info == 0

    return update


def _singular_values_in_place(r: np.ndarray) -> np.ndarray:
    """Singular values of the square column-major ``r`` (overwritten) by LAPACK dgesdd, else numpy's SVD."""
    lib = openblas()
    fn = getattr(lib, "scipy_LAPACKE_dgesdd64_", None) if lib is not None else None
    n = r.shape[0]
    if fn is not None:
        fn.restype = _I64
        fn.argtypes = [ctypes.c_int, ctypes.c_char, _I64, _I64, _PTR, _I64, _PTR, _PTR, _I64, _PTR, _I64]
        s = np.empty(n, dtype=np.float64)
        if fn(_COL_MAJOR, b"N", n, n, r.ctypes.data, n, s.ctypes.data, None, 1, None, 1) == 0:
            return s
    return np.linalg.svd(r, compute_uv=False)
