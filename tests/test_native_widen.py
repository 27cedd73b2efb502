"""The compiled widening to float64 gives numpy's values and NaN/Inf count, and the spectra do not depend on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core import native_widen
from core.checkpoint import decode
from core.spectra import run_spectra
from tests.safetensors_files import write_safetensors

ROOT = Path(__file__).resolve().parents[1]

widener = native_widen.widener()
needs_widener = pytest.mark.skipif(widener is None, reason=f"no compiled widening: {native_widen.unavailable_reason()}")


def numpy_widening(dtype_name: str, values: np.ndarray) -> tuple[np.ndarray, int]:
    with np.errstate(invalid="ignore"):  # signalling NaN patterns
        wide = decode(values, dtype_name).astype(np.float64)
    return wide, int(np.count_nonzero(~np.isfinite(wide)))


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as float64 bit patterns' meaning: NaN where NaN, and the sign of zero kept."""
    return bool(np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b)))


@needs_widener
def test_every_bf16_pattern() -> None:
    assert widener is not None
    patterns = np.arange(65536, dtype=np.uint16)  # NaN payloads, infinities, negative zero, subnormals
    out = np.full(patterns.size, 7.0)
    bad = widener.widen("BF16", patterns, out)
    want, want_bad = numpy_widening("BF16", patterns)
    assert same_values(out, want)
    assert bad == want_bad == 2 * (0x80 - 1) + 2  # 2 infinities and 254 NaN patterns


@needs_widener
@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint32, st.integers(0, 3000)))
def test_float32_patterns(bits: np.ndarray) -> None:
    assert widener is not None
    values = bits.view(np.float32)
    out = np.empty(values.size)
    bad = widener.widen("F32", values, out)
    want, want_bad = numpy_widening("F32", values)
    assert same_values(out, want) and bad == want_bad


@needs_widener
def test_refuses_what_it_cannot_widen() -> None:
    assert widener is not None
    grid = np.zeros((8, 8), dtype=np.uint16)
    assert widener.handles("BF16", grid) and not widener.handles("BF16", grid[:, ::2])
    assert not widener.handles("F16", grid.view(np.float16)) and not widener.handles("BF16", grid.view(np.int16))
    with pytest.raises(ValueError):
        widener.widen("BF16", grid, np.empty(63))
    with pytest.raises(ValueError):
        widener.widen("BF16", grid, np.empty(64, dtype=np.float32))
    assert widener.widen("BF16", grid[:0], np.empty(0)) == 0


def bf16_bytes(x: np.ndarray) -> bytes:
    """float32 -> bf16 patterns, rounded to nearest even (NaN stays NaN)."""
    bits = x.astype(np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    rounded[np.isnan(x)] = 0x7FC0
    return rounded.tobytes()


def test_a_wide_bf16_matrix_counts_its_nan_and_inf_values(tmp_path: Path, monkeypatch) -> None:
    """Wide matrices are read in column blocks, each row's columns alone, and widened by the compiled loop: the
    reason still counts every bad value."""
    x = np.random.default_rng(5).standard_normal((24, 20000)).astype(np.float32)
    x[3, 19990], x[20, 5], x[7, 15000] = np.nan, np.nan, np.nan
    x[0, 0], x[23, 19999] = np.inf, -np.inf
    path = tmp_path / "wide.safetensors"
    write_safetensors(path, [("w", "BF16", [24, 20000], bf16_bytes(x))])
    calls = []
    if widener is not None:
        original = native_widen.NativeWidener.widen
        monkeypatch.setattr(native_widen.NativeWidener, "widen",
                            lambda self, *a: calls.append(a[1].shape) or original(self, *a))
    result = run_spectra(str(path), use_cache=False, device="cpu", block_bytes=24 * 2000 * 8)
    assert result.matrices["w"].reason == "3 NaN values and 2 Inf values"
    assert widener is None or calls == [(2, 2000)]  # 2 rows' first 2,000 columns: an Inf there ends the reading


def test_spectra_identical_without_compiled_widening(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    path = tmp_path / "m.safetensors"
    write_safetensors(path, [("wide", "BF16", [40, 12000], bf16_bytes(rng.standard_normal((40, 12000)))),
                             ("wide32", "F32", [30, 9000], rng.standard_normal((30, 9000), np.float32).tobytes()),
                             ("close", "BF16", [40, 3000], bf16_bytes(rng.standard_normal((40, 3000)))),
                             ("tall", "BF16", [500, 20], bf16_bytes(rng.standard_normal((500, 20))))])
    code = ("import json, sys, numpy; from core.spectra import run_spectra; "
            "r = run_spectra(sys.argv[1], use_cache=False, device='cpu', block_bytes=40 * 2000 * 8); "
            "print(json.dumps({n: m.evals.tolist() for n, m in r.matrices.items()}))")
    runs = {}
    for native in ("1", "0"):
        done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "WEIGHTSCOPE_NATIVE": native}, timeout=120)
        assert done.returncode == 0, done.stderr
        runs[native] = json.loads(done.stdout)
    assert runs["1"] == runs["0"]
    assert set(runs["1"]) == {"wide", "wide32", "close", "tall"}
    stored = np.frombuffer(bf16_bytes(np.random.default_rng(11).standard_normal((40, 12000))), dtype=np.uint16)
    sv = np.linalg.svd(decode(stored, "BF16").reshape(40, 12000).astype(np.float64), compute_uv=False)
    assert np.allclose(runs["1"]["wide"], np.sort(sv * sv), rtol=1e-9, atol=0)  # the matrix's own spectrum
