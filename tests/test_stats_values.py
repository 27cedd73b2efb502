"""Statistics of every dtype against numpy in float64, on values chosen to hurt: NaN, +-Inf, +-0, subnormals,
the largest and smallest values of each type.

Truth is computed here from the values the test wrote (or gguf's own dequantisation of the blocks it wrote):
moments with numpy in float64 (after an exact power-of-two scaling so that fourth powers of F64 values do not
overflow), percentiles with numpy's default 'linear' method (the definition the engine uses), histograms with
np.histogram over [min, max] of the finite values.

Tolerances: 16-bit and 8-bit types (summarised by bit-pattern counts) and small integers are exact: min, max,
counts, percentiles, histograms equal numpy bit for bit; mean and std within 1e-12. F32, F64, wide integers and
GGUF quants: mean and std within 1e-9 (relative; for the mean relative to |mean| + std), min, max and special
counts exact, percentiles within bf16 resolution (2**-7 relative), histogram counts adding up to the count.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch

from core.stats import run
from core.stats_summary import PERCENTILES, percentile_key

BF16_RES = 2.0**-7


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("stats-cache")))


# --------------------------------------------------------------------------- truth
def truth(values: np.ndarray, bins: int = 256, log_bins: int = 128) -> dict:
    """Everything the engine reports, from the values themselves, in float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _truth(np.asarray(values, dtype=np.float64).ravel(), bins, log_bins)


def _truth(v: np.ndarray, bins: int, log_bins: int) -> dict:
    f = v[np.isfinite(v)]
    out = {"count": len(f), "nan": int(np.isnan(v).sum()), "pos_inf": int((v == np.inf).sum()),
           "neg_inf": int((v == -np.inf).sum()), "zeros": int((f == 0).sum())}
    if not len(f):
        return out
    amax = float(np.abs(f).max())
    e = math.frexp(amax)[1] if amax > 0 else 0
    g = np.ldexp(f, -e)  # exact scaling by a power of two
    mean = g.mean()
    d = g - mean
    var = (d * d).mean()
    out.update(mean=math.ldexp(mean, e), std=math.ldexp(math.sqrt(var), e), min=float(f.min()),
               max=float(f.max()), l2=float(np.ldexp(math.sqrt((g * g).sum()), e)),
               skewness=(d**3).mean() / var**1.5 if var > 0 else math.nan,
               kurtosis=(d**4).mean() / var**2 if var > 0 else math.nan)
    out["abs_max"] = max(abs(out["min"]), abs(out["max"]))
    out["beyond_6_sigma"] = int((np.abs(d) > 6 * math.sqrt(var)).sum())
    out["percentiles"] = dict(zip([percentile_key(p) for p in PERCENTILES],
                                  np.percentile(f, PERCENTILES).tolist(), strict=True))
    srt = np.sort(f)
    out["neighbours"] = {}
    for p in PERCENTILES:
        virtual = (p / 100.0) * (len(f) - 1)
        lo, hi = srt[math.floor(virtual)], srt[min(math.floor(virtual) + 1, len(f) - 1)]
        out["neighbours"][percentile_key(p)] = max(abs(lo), abs(hi))
    try:
        out["hist"] = np.histogram(f, bins=bins, range=(out["min"], out["max"]))
    except ValueError:  # a range wider than float64 (F64 extremes): numpy cannot bin it
        out["hist"] = None
    nz = np.log10(np.abs(f[f != 0]))
    out["log_hist"] = np.histogram(nz, bins=log_bins, range=(nz.min(), nz.max())) if len(nz) else None
    return out


def close(a: float, b: float, rel: float, scale: float | None = None) -> bool:
    if a == b:
        return True
    if math.isnan(b):
        return math.isnan(a)
    return abs(a - b) <= rel * (abs(b) if scale is None else scale)


def check(ts, values: np.ndarray, exact: bool, rel: float = 1e-9) -> None:
    """Compare one TensorStats with the truth of ``values``."""
    t = truth(values)
    for key in ("count", "nan", "pos_inf", "neg_inf", "zeros"):
        assert getattr(ts, key) == t[key], key
    if not t["count"]:
        assert math.isnan(ts.mean) and math.isnan(ts.min)
        return
    tight = 1e-12 if exact else rel
    assert ts.min == t["min"] and ts.max == t["max"] and ts.abs_max == t["abs_max"]
    assert close(ts.mean, t["mean"], tight, abs(t["mean"]) + t["std"]), (ts.mean, t["mean"])
    assert close(ts.std, t["std"], tight), (ts.std, t["std"])
    assert close(ts.l2, t["l2"], tight), (ts.l2, t["l2"])
    assert close(ts.skewness, t["skewness"], 1e-6, abs(t["skewness"]) + 1.0), (ts.skewness, t["skewness"])
    assert close(ts.kurtosis, t["kurtosis"], 1e-6), (ts.kurtosis, t["kurtosis"])
    if ts.exact:
        assert ts.beyond_6_sigma == t["beyond_6_sigma"]
    assert int(ts.hist_counts.sum()) == t["count"]
    for key, want in t["percentiles"].items():
        got = ts.percentiles[key]
        if exact:
            assert got == want, (key, got, want)
        else:
            assert abs(got - want) <= BF16_RES * t["neighbours"][key] + 2.0**-132, (key, got, want)
    if exact:
        counts, edges = t["hist"]
        np.testing.assert_array_equal(ts.hist_edges, edges)
        np.testing.assert_array_equal(ts.hist_counts, counts)
        if t["log_hist"] is not None:
            np.testing.assert_array_equal(ts.log_counts, t["log_hist"][0])
            np.testing.assert_array_equal(ts.log_edges, t["log_hist"][1])


# --------------------------------------------------------------------------- values
def nasty_float(n: int, dtype: np.dtype | str, seed: int = 0) -> np.ndarray:
    """Normal values with every special of the type mixed in at random places."""
    dt = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    info = np.finfo(dt)
    base = rng.normal(0.0, 2.0, n)
    specials = [np.nan, np.nan, np.inf, -np.inf, 0.0, -0.0, 0.0, float(info.smallest_subnormal),
                -float(info.smallest_subnormal), float(info.smallest_normal) * 3, float(info.max), -float(info.max),
                float(info.tiny), 1e-3, -7.5]
    where = rng.choice(n, len(specials), replace=False)
    base[where] = specials
    return base.astype(dt)


def write(tmp_path: Path, tensors: dict[str, np.ndarray], name: str = "m.safetensors") -> Path:
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


def write_torch(tmp_path: Path, tensors: dict[str, torch.Tensor], name: str = "t.safetensors") -> Path:
    path = tmp_path / name
    save_torch(tensors, str(path))
    return path


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_plain_floats(tmp_path: Path, dtype: str) -> None:
    values = nasty_float(30_011, dtype)
    path = write(tmp_path, {"w": values.reshape(-1, 1)})
    result = run(path, device="cpu", use_cache=False)
    check(result.stats("w"), values, exact=dtype == "float16")


def test_float32_huge_and_tiny_only(tmp_path: Path) -> None:
    """A tensor whose values span the whole float32 range, no normal bulk."""
    rng = np.random.default_rng(3)
    values = (rng.choice([-1.0, 1.0], 5000) * 10.0 ** rng.uniform(-44, 38, 5000)).astype(np.float32)
    path = write(tmp_path, {"w": values})
    check(run(path, device="cpu", use_cache=False).stats("w"), values, exact=False)


def test_float64_beyond_float32(tmp_path: Path) -> None:
    """F64 values far outside float32's range (fewer than the 1024 exact extremes kept per side) keep exact
    extremes, accurate moments and bf16-resolution percentiles of the bulk."""
    rng = np.random.default_rng(4)
    values = rng.normal(size=20_000) * 1e3
    values[:900] = rng.choice([-1.0, 1.0], 900) * 10.0 ** rng.uniform(39, 308, 900)
    values[900:906] = [1.7e308, -1.7e308, 5e-324, np.nan, np.inf, 1e-310]
    path = write(tmp_path, {"w": values})
    check(run(path, device="cpu", use_cache=False).stats("w"), values, exact=False)


def test_bfloat16(tmp_path: Path) -> None:
    values32 = nasty_float(40_000, np.float32, seed=5)
    t = torch.from_numpy(values32).to(torch.bfloat16)
    t[:4] = torch.tensor([3.3895e38, -3.3895e38, 9.2e-41, -1e-40]).to(torch.bfloat16)  # max, subnormals
    path = write_torch(tmp_path, {"w": t})
    result = run(path, device="cpu", use_cache=False)
    check(result.stats("w"), t.float().numpy(), exact=True)


@pytest.mark.parametrize("name", ["float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu"])
def test_float8(tmp_path: Path, name: str) -> None:
    dtype = getattr(torch, name)
    rng = np.random.default_rng(6)
    src = rng.normal(0, 20, 5000).astype(np.float32)
    if name == "float8_e8m0fnu":
        src = np.abs(src) + 1e-3  # unsigned powers of two
    t = torch.from_numpy(src).to(dtype)
    if name == "float8_e5m2":
        t[:3] = torch.tensor([float("inf"), float("-inf"), float("nan")]).to(dtype)
    elif name == "float8_e4m3fn":
        t[:2] = torch.tensor([float("nan"), 448.0]).to(dtype)
    path = write_torch(tmp_path, {"w": t})
    check(run(path, device="cpu", use_cache=False).stats("w"), t.float().numpy(), exact=True)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"])
def test_integers(tmp_path: Path, dtype: str) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    lo, hi = max(int(info.min), -(2**53)), min(int(info.max), 2**53)
    values = rng.integers(lo, hi, 20_000, dtype=dtype, endpoint=True)
    values[:4] = [lo, hi, 0, 0]
    path = write(tmp_path, {"w": values})
    ts = run(path, device="cpu", use_cache=False).stats("w")
    assert ts.dtype == {"int8": "I8", "uint8": "U8", "int16": "I16", "uint16": "U16", "int32": "I32",
                        "uint32": "U32", "int64": "I64", "uint64": "U64"}[dtype]
    check(ts, values, exact=np.dtype(dtype).itemsize <= 2)


def test_small_range_wide_integers_are_exact(tmp_path: Path) -> None:
    """Position ids and token ids (I64/I32/U64 with a small range) get exact percentiles and histograms, also
    across chunks, merged with other integer tensors, and back from the cache."""
    ids = np.arange(4096, dtype=np.int64)
    offset = np.arange(-70_000, 70_000, 7, dtype=np.int32)  # range above one chunk's exact span: merged exactly
    big = np.array([2**64 - 1, 2**64 - 5, 2**64 - 1], dtype=np.uint64)
    path = write(tmp_path, {"model.position_ids": ids, "offset": offset, "big": big,
                            "i16": np.arange(-300, 300, dtype=np.int16)})
    for use_cache in (True, True, False):
        result = run(path, device="cpu", use_cache=use_cache, chunk_bytes=8192)
        check(result.stats("model.position_ids"), ids, exact=True)
        check(result.stats("offset"), offset, exact=True)
        assert result.stats("big").max == float(2**64 - 1) and result.stats("big").count == 3
        check(result.group(["offset", "i16", "model.position_ids"], "ints"),
              np.concatenate([offset, np.arange(-300, 300), ids]), exact=True)


def test_bool(tmp_path: Path) -> None:
    values = np.random.default_rng(8).random(999) < 0.3
    path = write(tmp_path, {"mask": values})
    ts = run(path, device="cpu", use_cache=False).stats("mask")
    check(ts, values.astype(np.float64), exact=True)
    assert ts.dtype == "BOOL"


def test_empty_and_all_nan_tensors(tmp_path: Path) -> None:
    path = write(tmp_path, {"empty": np.zeros((0, 4), np.float32), "nan": np.full(10, np.nan, np.float16),
                            "one": np.array([2.5], np.float32)})
    result = run(path, device="cpu", use_cache=False)
    empty = result.stats("empty")
    assert empty.count == 0 and math.isnan(empty.mean) and len(empty.hist_counts) == 0
    nan = result.stats("nan")
    assert nan.count == 0 and nan.nan == 10 and math.isnan(nan.std)
    one = result.stats("one")
    assert (one.count, one.mean, one.std, one.min, one.max, one.percentiles["50"]) == (1, 2.5, 0.0, 2.5, 2.5, 2.5)
    assert math.isnan(one.kurtosis) and int(one.hist_counts.sum()) == 1


# --------------------------------------------------------------------------- GGUF quants
def write_gguf(path: Path, tensors: dict[str, tuple[np.ndarray, object]]) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    for name, (raw, qtype) in tensors.items():
        writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def q4_k_blocks(rows: int, blocks_per_row: int, seed: int = 0) -> np.ndarray:
    """Random Q4_K blocks (gguf can dequantise but not quantise Q4_K) with sane f16 scales."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(rows, 144 * blocks_per_row), dtype=np.uint8)
    blocks = raw.reshape(-1, 144)
    blocks[:, 0:2] = np.frombuffer(np.float16(0.0125).tobytes(), np.uint8)
    blocks[:, 2:4] = np.frombuffer(np.float16(0.03).tobytes(), np.uint8)
    return raw


def test_gguf_quants(tmp_path: Path) -> None:
    from gguf import quants
    from gguf.constants import GGMLQuantizationType as Q

    x = np.random.default_rng(9).normal(size=(16, 512)).astype(np.float32)
    x[0, :3] = [0.0, 40.0, -1e-6]
    q8 = quants.quantize(x, Q.Q8_0)
    q4 = q4_k_blocks(8, 3)
    path = tmp_path / "q.gguf"
    write_gguf(path, {"blk.0.ffn_down.weight": (q8, Q.Q8_0), "blk.0.attn_q.weight": (q4, Q.Q4_K)})
    for chunk in (64 << 20, 100):  # 100 bytes: chunks split Q8_0 (34 B) and Q4_K (144 B) blocks
        result = run(path, device="cpu", use_cache=False, chunk_bytes=chunk)
        ts8 = result.stats("blk.0.ffn_down.weight")
        check(ts8, quants.dequantize(q8, Q.Q8_0), exact=False)
        assert (ts8.quant_type, ts8.bits_per_weight) == ("Q8_0", 8.5)
        ts4 = result.stats("blk.0.attn_q.weight")
        check(ts4, quants.dequantize(q4, Q.Q4_K), exact=False)
        assert (ts4.quant_type, ts4.bits_per_weight) == ("Q4_K", 4.5)
        assert result.bytes_read == q8.nbytes + q4.nbytes
