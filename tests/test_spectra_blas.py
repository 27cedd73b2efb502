"""The Gram matrix's arithmetic (core.blas): in-place lower-triangle updates shared among threads equal numpy's
products, with or without numpy's OpenBLAS; BLAS's thread count comes back after the engine used it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import core.blas
from core.blas import add_gram, openblas, row_shares, single_threaded_blas
from core.spectra import run_spectra


@pytest.mark.parametrize("fallback", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize(("n", "k"), [(1, 5), (7, 3), (130, 41)])
def test_lower_triangle_update_equals_numpy(monkeypatch: pytest.MonkeyPatch, fallback: bool, transposed: bool,
                                            parts: int, n: int, k: int) -> None:
    if fallback:
        monkeypatch.setattr(core.blas, "openblas", lambda: None)
    rng = np.random.default_rng(n + k)
    x = rng.standard_normal((k, n) if transposed else (n, k))
    xx = x.T if transposed else x
    start = rng.standard_normal((n, n))
    g = start.copy()
    with ThreadPoolExecutor(2) as pool:
        add_gram(g, x, transposed, pool, parts)
        add_gram(g, x, transposed, pool, parts)
    want = start + 2 * (xx @ xx.T)
    np.testing.assert_allclose(np.tril(g), np.tril(want), rtol=0, atol=1e-12 * np.abs(want).max())
    np.testing.assert_array_equal(np.triu(g, 1), np.triu(start, 1))  # the upper triangle is not touched


def test_row_shares_split_the_triangle_evenly() -> None:
    shares = row_shares(4096, 2)
    assert shares[0][0] == 0 and shares[-1][1] == 4096 and shares[0][1] == shares[1][0]
    areas = [(hi * (hi + 1) - lo * (lo + 1)) / 2 for lo, hi in shares]
    assert abs(areas[0] - areas[1]) / sum(areas) < 0.01
    assert row_shares(1, 4) == [(0, 1)]


@pytest.mark.skipif(openblas() is None, reason="numpy without its bundled OpenBLAS")
def test_blas_threads_come_back() -> None:
    lib = openblas()
    before = lib.scipy_openblas_get_num_threads64_()
    with single_threaded_blas():
        with single_threaded_blas():
            assert lib.scipy_openblas_get_num_threads64_() == 1
        assert lib.scipy_openblas_get_num_threads64_() == 1
    assert lib.scipy_openblas_get_num_threads64_() == before


def test_wide_conv_slices_in_small_column_blocks(tmp_path: Path) -> None:
    """(12, 40, 2, 3): six wide 12 x 40 slices interleaved in the file, read a few columns at a time."""
    w = (np.random.default_rng(5).standard_normal((12, 40, 2, 3)) * 0.05).astype(np.float32)
    save_file({"w": w}, str(tmp_path / "c.safetensors"))
    result = run_spectra(tmp_path / "c.safetensors", use_cache=False, device="cpu", block_bytes=12 * 6 * 8 * 3)
    want = np.sort(np.concatenate([np.linalg.svd(w[:, :, i, j].astype(np.float64), compute_uv=False) ** 2
                                   for i in range(2) for j in range(3)])) / 2
    got = result.matrices["w"].evals
    assert got is not None
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * want[-1])


@pytest.mark.skipif(openblas() is None, reason="numpy without its bundled OpenBLAS")
@pytest.mark.parametrize(("loadavg_file", "load", "single"), [
    ("0.00 0.00 0.00 1/100 4242\n", 64.0, False),  # a busy last minute (our own Gram) but nothing running now
    ("1.90 1.90 1.90 2/100 4242\n", 64.0, False),  # one other thread runnable on 2+ cores
    ("64.0 64.0 64.0 65/100 4242\n", 0.0, True),  # 64 runnable now: busy whatever the average says
    (None, 0.0, False),  # no /proc/loadavg (macOS): the 1-minute average decides
    (None, 64.0, True),
    (None, None, True),  # nothing known: busy
])
def test_eigensolver_keeps_blas_threads_only_while_no_other_work_runs(
        monkeypatch: pytest.MonkeyPatch, tmp_path, loadavg_file: str | None, load: float | None,
        single: bool) -> None:
    def loadavg() -> tuple[float, float, float]:
        if load is None:
            raise OSError("no load average here")
        return (load, load, load)

    path = tmp_path / "loadavg"
    if loadavg_file is not None:
        path.write_text(loadavg_file)
    monkeypatch.setattr(core.blas, "LOADAVG", str(path))
    monkeypatch.setattr(core.blas.os, "getloadavg", loadavg)
    monkeypatch.setattr(core.blas.os, "cpu_count", lambda: 4 if loadavg_file and "2/100" in loadavg_file else 2)
    lib = openblas()
    before = lib.scipy_openblas_get_num_threads64_()
    with core.blas.blas_threads_for_load():
        inside = lib.scipy_openblas_get_num_threads64_()
    assert inside == (1 if single else before)
    assert lib.scipy_openblas_get_num_threads64_() == before


def test_block_buffers_hand_back_at_most_two_and_release_other_shapes() -> None:
    from core.gram import BlockBuffers

    buffers = BlockBuffers()
    a, b, c = (buffers.take((4, 3)) for _ in range(3))
    assert len({id(a), id(b), id(c)}) == 3 and a.dtype == np.float64
    for block in (a, b, c):
        buffers.give(block)
    assert {id(buffers.take((4, 3))), id(buffers.take((4, 3)))} == {id(a), id(b)}  # two kept, the third let go
    assert buffers.take((4, 3)) is not c
    buffers.give(a)
    narrow = buffers.take((4, 1))
    assert narrow.shape == (4, 1) and buffers.take((4, 3)) is not a  # a different shape released the kept one


def test_wide_and_tall_matrices_reuse_two_blocks(tmp_path: Path, monkeypatch) -> None:
    """Column blocks (wide) and row blocks (tall) come from two reused buffers (a narrower last one aside), and the
    reuse changes nothing: the eigenvalues are the matrices' squared singular values."""
    import core.gram

    rng = np.random.default_rng(9)
    wide = rng.standard_normal((30, 1000)).astype(np.float32)
    path = tmp_path / "m.safetensors"
    save_file({"wide": wide, "tall": np.ascontiguousarray(wide.T)}, str(path))
    seen: dict[str, list[np.ndarray]] = {"columns": [], "tall": []}  # kept alive: ids of live arrays are unique
    columns, tall = core.gram.NumpyGram.add_columns, core.gram.NumpyGram.add_tall
    monkeypatch.setattr(core.gram.NumpyGram, "add_columns",
                        lambda self, g, a: (seen["columns"].append(a), columns(self, g, a)))
    monkeypatch.setattr(core.gram.NumpyGram, "add_tall", lambda self, g, a: (seen["tall"].append(a), tall(self, g, a)))
    result = run_spectra(path, use_cache=False, device="cpu", block_bytes=30 * 64 * 8)  # 16 blocks of each
    want = np.sort(np.linalg.svd(wide.astype(np.float64), compute_uv=False) ** 2)
    for name in ("wide", "tall"):
        np.testing.assert_allclose(result.matrices[name].evals, want, rtol=0, atol=1e-12 * want[-1])
    for blocks in seen.values():
        assert len(blocks) == 16 and 2 <= len({id(b) for b in blocks}) <= 3
