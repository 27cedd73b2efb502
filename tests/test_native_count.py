"""The compiled counting loops count exactly what np.bincount counts, and the statistics do not depend on them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core import native_count
from core.compute import Backend, make_backend
from core.stats import run

ROOT = Path(__file__).resolve().parents[1]

counter = native_count.counter()
needs_counter = pytest.mark.skipif(counter is None, reason=f"no compiled counting: {native_count.unavailable_reason()}")


@needs_counter
@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint16, st.integers(0, 3000)))
def test_sixteen_bit_patterns(values: np.ndarray) -> None:
    assert counter is not None
    got = counter.count_u16(values)
    assert got.dtype == np.int64 and got.shape == (65536,)
    assert np.array_equal(got, np.bincount(values, minlength=65536))


@needs_counter
@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint8, st.integers(0, 3000)))
def test_bytes(values: np.ndarray) -> None:
    assert counter is not None
    assert np.array_equal(counter.count_u8(values), np.bincount(values, minlength=256))


@needs_counter
@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint32, st.integers(0, 3000)))
def test_float32_keys_are_the_top_sixteen_bits(bits: np.ndarray) -> None:
    assert counter is not None
    values = bits.view(np.float32)  # every pattern: NaN payloads, infinities, negative zero, subnormals
    assert np.array_equal(counter.count_f32_keys(values), np.bincount(bits >> 16, minlength=65536))


@needs_counter
def test_strided_views_and_many_calls() -> None:
    assert counter is not None
    rng = np.random.default_rng(3)
    grid = rng.integers(0, 65536, size=(300, 400), dtype=np.uint16)
    view = grid[::3, 1::2]  # not contiguous: counted from a contiguous copy
    assert np.array_equal(counter.count_u16(view), np.bincount(view.reshape(-1), minlength=65536))
    original = native_count.CALL_VALUES
    try:
        native_count.CALL_VALUES = 7  # a count split over many calls adds up the same
        assert np.array_equal(counter.count_u16(grid), np.bincount(grid.reshape(-1), minlength=65536))
    finally:
        native_count.CALL_VALUES = original


@needs_counter
def test_wrong_item_size_is_refused() -> None:
    assert counter is not None
    with pytest.raises(ValueError, match="2-byte"):
        counter.count_u16(np.zeros(4, dtype=np.uint32))


@needs_counter
def test_statistics_identical_with_and_without_compiled_counting(tmp_path: Path) -> None:
    from tests.test_stats_engine import _all_dtypes_file, _same

    path = _all_dtypes_file(tmp_path)
    native = make_backend("cpu", impl="native")
    assert native.impl == "native" and type(native) is not Backend
    a = run(path, backend=native, use_cache=False)
    b = run(path, backend=make_backend("cpu", impl="numpy"), use_cache=False)
    assert set(a.summaries) == set(b.summaries) and a.summaries
    for name in a.summaries:
        _same(a.summaries[name], b.summaries[name])


def test_switched_off_by_the_environment() -> None:
    code = ("from core import native_count, compute; assert native_count.counter() is None; "
            "b = compute.make_backend('cpu', impl='numpy'); print(b.impl)")
    env = {"WEIGHTSCOPE_NATIVE": "0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "numpy"


def test_stats_command_implementations_agree(tmp_path: Path) -> None:
    """`stats --impl` names every CPU implementation, and each prints the same statistics."""
    from core import compute
    from core.commands.stats import IMPL_CHOICES

    assert ("auto", *compute.IMPLS) == IMPL_CHOICES
    sample = ROOT / "resources" / "samples" / "tiny-llama"
    docs = {}
    for impl in IMPL_CHOICES:
        if impl == "native" and counter is None:
            continue
        out = subprocess.run([sys.executable, "main.py", "stats", "--json", "--no-cache", "--device", "cpu",
                              "--impl", impl, str(sample)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        doc = json.loads(out.stdout)
        docs[impl] = doc
        doc.pop("seconds")
        assert doc.pop("device").startswith("cpu")
    assert len(docs) >= 3
    first = next(iter(docs.values()))
    assert all(doc == first for doc in docs.values())
