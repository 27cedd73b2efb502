"""Small tensors take quicker routes (sparse key counts from the start; statistics derived from the stored
values); these tests hold each route equal to the general one on awkward data."""

from __future__ import annotations

import numpy as np
import pytest

from core.compute import dense_float_summary, numpy_float_summary
from core.stats_summary import K_EXTREMES, FloatSummary, HistSpec, derive


def _awkward_blocks() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    f32 = rng.standard_normal(700).astype(np.float32)
    f32[[3, 9]] = [np.nan, np.inf]
    f32[[4, 5, 6]] = [0.0, -0.0, -np.inf]
    huge = np.array([1e300, -1e300, 3.0, 5e-320, 0.0, np.nan], dtype=np.float64)
    return [
        f32,
        np.array([7.0], dtype=np.float32),
        np.array([np.nan, np.inf], dtype=np.float32),
        np.zeros(0, dtype=np.float32),
        huge,
        rng.integers(-5, 9, 300).astype(np.int64),
        np.array([2**62, -(2**62)], dtype=np.int64),
        rng.standard_normal(K_EXTREMES).astype(np.float64),
    ]


@pytest.mark.parametrize("index", range(8))
def test_small_blocks_summarise_as_the_dense_route_does(index: int) -> None:
    x = _awkward_blocks()[index]
    small, dense = numpy_float_summary(x, ("T",)), dense_float_summary(x, ("T",))
    for name in FloatSummary.__dataclass_fields__:
        a, b = getattr(small, name), getattr(dense, name)
        if name == "keys":
            assert np.array_equal(a.array(), b.array())
        elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            assert (a is None) == (b is None) and np.array_equal(a, b)
        else:
            assert a == b or (a != a and b != b), name


@pytest.mark.parametrize("values", [
    np.array([1.5], dtype=np.float32),
    np.array([3.0, 3.0, 3.0], dtype=np.float32),
    np.random.default_rng(3).standard_normal(1000).astype(np.float32),
    np.array([-2.0, 0.0, 0.0, 1e-30, 4.0, np.nan], dtype=np.float32),
])
def test_small_tensors_derive_numpys_statistics(values: np.ndarray) -> None:
    """The stored-values route gives numpy's float64 figures: percentiles bit for bit, moments to rounding."""
    s = numpy_float_summary(values, ("F32",))
    ts = derive(s, "t", HistSpec(bins=16))
    finite = values[np.isfinite(values)].astype(np.float64)
    assert ts.count == len(finite) and ts.nan == int(np.isnan(values).sum())
    assert ts.mean == pytest.approx(finite.mean(), rel=1e-12, abs=1e-300)
    assert ts.std == pytest.approx(finite.std(), rel=1e-9, abs=1e-300)
    assert (ts.min, ts.max) == (finite.min(), finite.max())
    for p in (0.1, 1, 50, 99.9):
        assert ts.percentiles[f"{p:g}"] == np.percentile(finite, p)
    counts, edges = np.histogram(finite, bins=16)
    assert np.array_equal(ts.hist_counts, counts) and np.array_equal(ts.hist_edges, edges)
    assert ts.exact


def test_counts_just_under_a_unit_are_written_in_the_next() -> None:
    """Gemma 3 1B's 999,885,952 parameters read "1.00 B", never "1000 M"."""
    from core.numbers import human_count

    assert human_count(999_885_952) == "1.00 B"
    assert human_count(999_499) == "999 K" and human_count(999_500) == "1.00 M"
    assert human_count(405_853_388_800) == "406 B" and human_count(22_713_216) == "22.7 M"


@pytest.mark.parametrize("seed", range(6))
def test_weighted_histograms_bin_as_numpy_does(seed: int) -> None:
    """_weighted_hist against np.histogram with weights: same edges, same counts, over the data's range, a given
    range that cuts values off, one value, and values on the edges."""
    from core.stats_summary import _weighted_hist

    rng = np.random.default_rng(seed)
    v = np.unique(np.concatenate([rng.standard_normal(200), [0.0, 1.0, -1.0, 0.5]]).astype(np.float64))
    c = rng.integers(1, 9, len(v))
    for bins, span in ((256, (float(v[0]), float(v[-1]))), (16, (-1.0, 1.0)), (7, (0.25, 0.5)), (3, (2.0, 2.0))):
        values = np.array([2.0]) if span == (2.0, 2.0) else v
        weights = np.array([3]) if span == (2.0, 2.0) else c
        edges, counts = _weighted_hist(values, weights, bins, span)
        want, want_edges = np.histogram(values, bins=bins, range=span, weights=weights.astype(np.float64))
        assert np.array_equal(edges, want_edges) and np.array_equal(counts, np.rint(want).astype(np.int64))


def test_histogram_edges_are_numpys() -> None:
    """hist_edges equals np.histogram_bin_edges wherever numpy gives finite, increasing edges."""
    from core.stats_summary import hist_edges

    rng = np.random.default_rng(4)
    spans = [(0.0, 0.0), (1.0, 1.0), (-3.5, 2.25), (1e-300, 2e-300), (-1e300, 1e300), (5, 7), (0.1, 0.1 + 1e-15)]
    spans += [tuple(sorted(rng.standard_normal(2) * 10.0 ** rng.integers(-20, 20))) for _ in range(200)]
    for lo, hi in spans:
        for bins in (1, 7, 256):
            mine = hist_edges(lo, hi, bins)
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    want = np.histogram_bin_edges(np.empty(0), bins=bins, range=(lo, hi))
            except ValueError:
                continue
            if np.isfinite(want).all():
                assert np.array_equal(mine, want), (lo, hi, bins)
