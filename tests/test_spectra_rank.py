"""matrix_rank equals numpy.linalg.matrix_rank of the float64 matrix (WeightWatcher's definition), also when
singular values sit far below what the Gram matrix's eigenvalues resolve.

Planted matrices: an integer product of rank k (exact in float32 and bf16), beside a diagonal of tiny values
(1e-9 and 1e-12 of the largest singular value, and one below numpy's tolerance), rows and columns shuffled.
Stored values are exact, so the truth is numpy's matrix_rank of the decoded file contents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import core.spectra
from core.exact_rank import gram_cannot_decide, singular_values
from core.formats import open_checkpoint
from core.gram import matrix_layout
from core.spectra import run_spectra
from core.spectra_metrics import count_rank

EPS = np.finfo(np.float64).eps


def bf16_bits(x: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def write_matrix(path: Path, w: np.ndarray, dtype: str) -> np.ndarray:
    """One matrix in a safetensors file (F32 or BF16); returns the values as stored, in float64."""
    if dtype == "BF16":
        raw = bf16_bits(w)
        stored = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        raw = np.ascontiguousarray(w, dtype=np.float32)
        stored = raw
    header = json.dumps({"w": {"dtype": dtype, "shape": list(w.shape), "data_offsets": [0, raw.nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw.tobytes())
    return stored.astype(np.float64)


def planted(shape: tuple[int, int], k: int, tiny: list[float], seed: int) -> np.ndarray:
    """Rank-k integer product in the top-left corner, ``tiny`` (relative to its largest singular value) down
    the diagonal after it, zeros elsewhere; rows and columns shuffled."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    w = np.zeros(shape)
    block = rng.integers(-3, 4, (rows // 2, k)) @ rng.integers(-3, 4, (k, cols // 2))
    w[: rows // 2, : cols // 2] = block
    sigma_max = np.linalg.svd(block.astype(np.float64), compute_uv=False)[0]
    for i, rel in enumerate(tiny):
        w[rows // 2 + i, cols // 2 + i] = rel * sigma_max
    return w[rng.permutation(rows)][:, rng.permutation(cols)]


TINY = [1e-9, 3e-9, 1e-12, 5e-12, 1e-17]  # the last is below numpy's tolerance (N * eps ~ 7e-14)


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
@pytest.mark.parametrize("shape", [(300, 80), (80, 300)])
@pytest.mark.parametrize("block_bytes", [1 << 26, 5000])
def test_planted_rank_equals_numpys(tmp_path: Path, dtype: str, shape: tuple[int, int], block_bytes: int) -> None:
    stored = write_matrix(tmp_path / "w.safetensors", planted(shape, 6, TINY, seed=len(dtype) + shape[0]), dtype)
    want = int(np.linalg.matrix_rank(stored))
    assert want == 6 + 4  # the planted rank: the tiny values count, the one below tolerance does not
    gram_evals = np.linalg.eigvalsh(stored.T @ stored if shape[0] >= shape[1] else stored @ stored.T)
    assert count_rank(gram_evals, max(shape)) != want  # the Gram's own eigenvalues get it wrong
    result = run_spectra(tmp_path / "w.safetensors", use_cache=False, device="cpu", block_bytes=block_bytes)
    m = result.matrices["w"].metrics
    assert m is not None and m.matrix_rank == want
    sv = np.linalg.svd(stored, compute_uv=False)
    np.testing.assert_allclose(np.sqrt(result.matrices["w"].evals[::-1][: want]), sv[:want], rtol=1e-9)


@pytest.mark.parametrize("shape", [(257, 64), (64, 257), (90, 90)])
def test_streamed_qr_gives_numpys_singular_values(tmp_path: Path, shape: tuple[int, int]) -> None:
    """Many blocks of a random matrix with a few singular values shrunk to 1e-11: numpy's SVD to rounding."""
    rng = np.random.default_rng(3)
    u, _ = np.linalg.qr(rng.standard_normal((shape[0], min(shape))))
    v, _ = np.linalg.qr(rng.standard_normal((shape[1], min(shape))))
    s = np.geomspace(1.0, 1e-11, min(shape))
    stored = write_matrix(tmp_path / "w.safetensors", (u * s) @ v.T, "F32")
    with open_checkpoint(str(tmp_path / "w.safetensors")) as ck:
        t = ck.tensors[0]
        group = matrix_layout(t).groups[0]
        *steps, got = list(singular_values(ck, t, group, 0, 3000))
    assert len(steps) > 3 and all(step is None for step in steps)
    want = np.sort(np.linalg.svd(stored, compute_uv=False))
    np.testing.assert_allclose(got, want, rtol=0, atol=64 * max(shape) * EPS * want[-1])


def test_full_rank_matrices_keep_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random weights: every eigenvalue is far above rounding, no second pass over the file."""
    calls: list[str] = []
    original = core.spectra.singular_values

    def spy(*args: object, **kwargs: object) -> object:
        calls.append("exact")
        return original(*args, **kwargs)

    monkeypatch.setattr(core.spectra, "singular_values", spy)
    rng = np.random.default_rng(4)
    for shape in ((200, 64), (64, 200), (128, 128)):
        stored = write_matrix(tmp_path / "w.safetensors", rng.standard_normal(shape) * 0.02, "BF16")
        result = run_spectra(tmp_path / "w.safetensors", use_cache=False, device="cpu")
        assert result.matrices["w"].metrics.matrix_rank == np.linalg.matrix_rank(stored) == min(shape)
    assert calls == []


def test_the_band_is_rounding_level() -> None:
    assert not gram_cannot_decide(np.array([1e-8, 1.0]), 4096, 4096)
    assert gram_cannot_decide(np.array([1e-12, 1.0]), 4096, 4096)
    assert gram_cannot_decide(np.array([-1e-17, 1.0]), 10, 20)
    assert not gram_cannot_decide(np.zeros(3), 10, 20)  # all zero: no rank question (the matrix is refused)


def test_the_second_pass_stays_within_the_memory_bound(tmp_path: Path) -> None:
    """A 16384 x 1024 float32 matrix (64 MiB, a sparse file) whose only nonzero rows hold singular values 32 and
    3.2e-8 (1e-9 of the largest): the Gram spectrum cannot tell the rank, the streamed QR in 1 MiB blocks does,
    and the process's peak grows by about R (8 MiB) and a few blocks, never the matrix's size."""
    import subprocess
    import sys

    from tests.test_bounded_memory import _sparse_safetensors

    path = tmp_path / "big.safetensors"
    _sparse_safetensors(path, "w", "F32", [16384, 1024], 4)
    head = np.zeros((2, 1024), np.float32)
    head[0] = 1.0
    head[1, 1] = np.float32(32e-9)
    with open(path, "r+b") as f:
        f.seek(8 + int.from_bytes(f.read(8), "little"))
        f.write(head.tobytes())
    want = int(np.linalg.matrix_rank(head.astype(np.float64)))  # zero rows add no singular values
    code = ("import resource, sys\n"
            "from core.spectra import run_spectra\n"
            "run_spectra(sys.argv[1], use_cache=False, device='cpu', block_bytes=1 << 20)\n"  # imports, warm-up
            "import numpy\n"
            "from core.eigen import symmetric_eigenvalues\n"
            "symmetric_eigenvalues(numpy.eye(1024))\n"  # the eigensolvers' one-time setup (MKL's library: ~120 MB)
            "hwm = lambda: next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:'))\n"
            "before = hwm()\n"  # not ru_maxrss: it carries the peak of pytest's memory, forked before exec
            "r = run_spectra(sys.argv[2], use_cache=False, device='cpu', block_bytes=1 << 20)\n"
            "after = hwm()\n"
            "print(r.matrices['w'].metrics.matrix_rank, (after - before) / 1024)\n")
    small = tmp_path / "small.safetensors"
    write_matrix(small, planted((40, 30), 3, [1e-9], seed=1), "F32")  # warms the QR path too
    proc = subprocess.run([sys.executable, "-c", code, str(small), str(path)], capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    rank, grown = proc.stdout.split()
    assert int(rank) == want == 2
    assert float(grown) < 8 + 24  # MiB: R or the Gram matrix, a few 1 MiB blocks, LAPACK's work; the matrix is 64
