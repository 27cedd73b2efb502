"""The streaming engine: chunking and merging are exact, cancel is prompt, backends agree, the cache works and
a file that shrinks gives ReadError. Truth comes from numpy on the values the test wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch

from core.compute import (
    BLOCK_ELEMENTS,
    Backend,
    DeviceError,
    TorchDeviceBackend,
    make_backend,
    numpy_float_summary,
    torch_float_summary,
)
from core.errors import CancelledError, CheckpointError, ReadError
from core.formats import open_checkpoint
from core.stats import AnalysisProgress, AnalysisResult, analyze, run, stats_to_json
from core.stats_summary import FloatSummary, PatternSummary, derive, merge_all
from tests.conftest import cached_models
from tests.test_stats_values import check, close, nasty_float, q4_k_blocks, write_gguf

pytestmark = pytest.mark.usefixtures("cache_dir")  # a fresh statistics cache for every test


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A small Llama-like model in bf16 and f32 (values as float64 for the truth)."""
    rng = np.random.default_rng(1)
    tensors = {}
    values = {}
    for layer in range(2):
        for proj in ("q_proj", "k_proj"):
            name = f"model.layers.{layer}.self_attn.{proj}.weight"
            t = torch.from_numpy(rng.normal(0, 0.02 * (layer + 1), (64, 96)).astype(np.float32)).bfloat16()
            tensors[name] = t
            values[name] = t.float().numpy().astype(np.float64)
    norm = nasty_float(3001, np.float32, seed=2)
    tensors["model.norm.weight"] = torch.from_numpy(norm)
    values["model.norm.weight"] = norm.astype(np.float64)
    tensors["model.position_ids"] = torch.arange(50, dtype=torch.int64)
    path = tmp_path / "model.safetensors"
    save_torch(tensors, str(path))
    return path, values


def drain(gen) -> tuple[list[AnalysisProgress], AnalysisResult]:
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            return items, stop.value


# --------------------------------------------------------------------------- progress and result
def test_progress_and_result(model: tuple[Path, dict]) -> None:
    path, values = model
    with open_checkpoint(str(path)) as ck:
        items, result = drain(analyze(ck, device="cpu", use_cache=False, chunk_bytes=4096))
        total = sum(t.nbytes for t in ck.tensors)
    assert result.bytes_read == total and result.device.startswith("cpu")
    assert [p.bytes_done for p in items] == sorted(p.bytes_done for p in items)
    assert items[-1].bytes_done == items[-1].bytes_total == total
    done = [p.tensor for p in items if p.tensor_done]
    assert sorted(done) == [*sorted(values), "model.position_ids"]
    assert all(p.partial is not None for p in items)
    # a progress item after every chunk: a 12 KB bf16 tensor in 4 KB chunks gives 3
    assert sum(p.tensor == "model.layers.0.self_attn.q_proj.weight" for p in items) == 3
    assert items[-1].result is result and set(result.summaries) == {*values, "model.position_ids"}
    for name, v in values.items():
        check(result.stats(name), v, exact=name != "model.norm.weight")


def test_partial_summary_grows_into_the_final_one(tmp_path: Path) -> None:
    values = np.random.default_rng(3).normal(size=10_000).astype(np.float16)
    path = tmp_path / "m.safetensors"
    save_file({"w": values}, str(path))
    items, result = drain(analyze(path, device="cpu", use_cache=False, chunk_bytes=2000))
    counts = [p.partial.total for p in items]
    assert counts == list(range(1000, 10_001, 1000))
    assert np.array_equal(items[-1].partial.counts, result.summaries["w"].counts)


def test_groups_and_model_are_exact_merges(model: tuple[Path, dict]) -> None:
    path, values = model
    result = run(path, device="cpu", use_cache=False)
    q = [n for n in values if "q_proj" in n]
    group = result.group(q, "q")
    check(group, np.concatenate([values[n].ravel() for n in q]), exact=True)
    assert group.tensors == 2 and group.name == "q" and group.dtype == "BF16"
    bf16 = [n for n in values if "layers" in n]
    check(result.group(bf16, "layers"), np.concatenate([values[n].ravel() for n in bf16]), exact=True)
    everything = np.concatenate([v.ravel() for v in values.values()])
    model_stats = result.model()
    check(model_stats, everything, exact=False)  # BF16 + F32: merged as float, percentiles to bf16 resolution
    assert model_stats.tensors == 5  # the I64 position ids are not a floating-point tensor
    assert result.group(["nope"], "none") is None


def test_merging_chunks_equals_the_whole() -> None:
    """Float summaries of random pieces merged in order equal the summary of the concatenation."""
    rng = np.random.default_rng(4)
    x = nasty_float(50_000, np.float32, seed=4)
    x[100:3000] = rng.normal(0, 1e-3, 2900)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), 30, replace=False))
    parts = [numpy_float_summary(p, ("F32",)) for p in np.split(x, cuts)]
    merged = merge_all(parts)
    whole = numpy_float_summary(x, ("F32",))
    assert isinstance(merged, FloatSummary)
    _same(merged, whole, moments_rel=1e-12)
    check(derive(merged), x, exact=False)


@pytest.mark.parametrize("chunk_bytes", [1, 3, 4003, 1 << 20])
def test_chunk_size_does_not_change_results(model: tuple[Path, dict], chunk_bytes: int) -> None:
    """Odd chunk sizes (not a multiple of the element size) give the same statistics."""
    path, _values = model
    if chunk_bytes < 16:  # one element per chunk: a small file keeps this fast
        path = path.parent / "small.safetensors"
        save_torch({"h": torch.from_numpy(nasty_float(300, np.float32)).bfloat16(),
                    "f": torch.from_numpy(nasty_float(300, np.float32, seed=1))}, str(path))
    result = run(path, device="cpu", use_cache=False, chunk_bytes=chunk_bytes)
    reference = run(path, device="cpu", use_cache=False, chunk_bytes=64 << 20)
    for name, s in reference.summaries.items():
        a, b = result.stats(name), reference.stats(name)
        assert (a.count, a.min, a.max, a.zeros, a.nan, a.percentiles) == (b.count, b.min, b.max, b.zeros, b.nan,
                                                                          b.percentiles)
        _same(result.summaries[name], s, moments_rel=1e-12)


def test_block_boundaries_inside_one_chunk(tmp_path: Path) -> None:
    """A tensor larger than the backend's parallel block: blocks merge exactly."""
    n = BLOCK_ELEMENTS * 2 + 12_345
    rng = np.random.default_rng(5)
    x = rng.normal(size=n).astype(np.float32)
    h = torch.from_numpy(rng.normal(size=n).astype(np.float32)).bfloat16()
    path = tmp_path / "big.safetensors"
    save_torch({"f": torch.from_numpy(x), "h": h}, str(path))
    result = run(path, device="cpu", use_cache=False)
    check(result.stats("f"), x, exact=False)
    check(result.stats("h"), h.float().numpy(), exact=True)


# --------------------------------------------------------------------------- cancel
def test_cancel_stops_within_one_chunk(model: tuple[Path, dict]) -> None:
    path, _ = model
    asked = []
    with open_checkpoint(str(path)) as ck:
        gen = analyze(ck, device="cpu", use_cache=False, chunk_bytes=1024, should_stop=lambda: bool(asked))
        first = next(gen)
        asked.append(True)
        with pytest.raises(CancelledError):
            next(gen)
    assert first.result.bytes_read == first.bytes_done <= 1024
    assert first.result.bytes_read > 0


def test_cancel_before_start_reads_nothing(model: tuple[Path, dict]) -> None:
    path, _ = model
    gen = analyze(path, device="cpu", use_cache=False, should_stop=lambda: True)
    with pytest.raises(CancelledError):
        next(gen)


# --------------------------------------------------------------------------- backends
def _all_dtypes_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(6)
    tensors = {
        "f64": torch.from_numpy(nasty_float(3000, np.float64)),
        "f32": torch.from_numpy(nasty_float(BLOCK_ELEMENTS + 999, np.float32, seed=1)),
        "f16": torch.from_numpy(nasty_float(5000, np.float16, seed=2)),
        "bf16": torch.from_numpy(nasty_float(5000, np.float32, seed=3)).bfloat16(),
        "f8": torch.from_numpy(rng.normal(0, 5, 999).astype(np.float32)).to(torch.float8_e4m3fn),
        "i8": torch.from_numpy(rng.integers(-128, 128, 999).astype(np.int8)),
        "i32": torch.from_numpy(rng.integers(-(2**31), 2**31, 999).astype(np.int32)),
        "i64": torch.from_numpy(rng.integers(-(2**40), 2**40, 999)),
        "u8": torch.from_numpy(rng.integers(0, 256, 999).astype(np.uint8)),
        "bool": torch.from_numpy(rng.random(999) < 0.5),
    }
    path = tmp_path / "all.safetensors"
    save_torch(tensors, str(path))
    return path


def _same(a, b, moments_rel: float = 0.0) -> None:
    """Counts, extremes and bins identical; moments identical, or (other summation order) within
    ``moments_rel``, the mean relative to |mean| + std (values far from the bulk make the mean's last digits
    meaningless on any path)."""
    assert type(a) is type(b)
    if isinstance(a, PatternSummary):
        assert a.fmt == b.fmt and np.array_equal(a.counts, b.counts)
        return
    for key in ("n", "zeros", "nan", "pos_inf", "neg_inf", "vmin", "vmax", "scale_exp"):
        assert getattr(a, key) == getattr(b, key), key
    assert np.array_equal(a.key_counts, b.key_counts)
    assert np.array_equal(a.top, b.top) and np.array_equal(a.bottom, b.bottom)
    if not moments_rel:
        for key in ("mean", "m2", "m3", "m4"):
            assert getattr(a, key) == getattr(b, key), key
        return
    sa, sb = derive(a), derive(b)
    assert close(sa.mean, sb.mean, moments_rel, abs(sb.mean) + sb.std)
    assert close(sa.std, sb.std, moments_rel) and close(sa.l2, sb.l2, moments_rel)
    shape_rel = max(moments_rel, 1e-9)  # third and fourth powers of +-3.4e38 values: digits cancel
    assert close(sa.skewness, sb.skewness, shape_rel, abs(sb.skewness) + 1.0)
    assert close(sa.kurtosis, sb.kurtosis, shape_rel)


def test_numpy_and_torch_cpu_backends_agree(tmp_path: Path) -> None:
    path = _all_dtypes_file(tmp_path)
    a = run(path, backend=make_backend("cpu", impl="numpy"), use_cache=False)
    b = run(path, backend=make_backend("cpu", impl="torch"), use_cache=False)
    c = run(path, backend=make_backend("cpu", impl="torch", threads=1), use_cache=False, chunk_bytes=5000)
    assert set(a.summaries) == set(b.summaries) == set(c.summaries)
    for name in a.summaries:
        _same(a.summaries[name], b.summaries[name])
        _same(a.summaries[name], c.summaries[name], moments_rel=1e-10)  # other chunking: other summation order
        assert stats_to_json(a.stats(name)) == stats_to_json(b.stats(name))


def test_device_backend_path_on_cpu_agrees(tmp_path: Path) -> None:
    """The CUDA/MPS code path (pinned host buffer, counting with torch on the device) run with device=cpu."""
    path = _all_dtypes_file(tmp_path)
    a = run(path, backend=make_backend("cpu", impl="numpy"), use_cache=False)
    dev = TorchDeviceBackend("cpu")
    try:
        b = run(path, backend=dev, use_cache=False)
    finally:
        dev.close()
    for name in a.summaries:
        _same(a.summaries[name], b.summaries[name], moments_rel=1e-12)


def test_torch_float_summary_matches_numpy() -> None:
    for dtype in (np.float32, np.float64):
        x = nasty_float(20_000, dtype, seed=8)
        _same(numpy_float_summary(x, ("F",)), torch_float_summary(torch.from_numpy(x), ("F",)), moments_rel=1e-12)
    big = np.random.default_rng(9).normal(size=5000) * 1e250  # scaled moments
    big[:3] = [1e-320, np.nan, -np.inf]
    _same(numpy_float_summary(big, ("F64",)), torch_float_summary(torch.from_numpy(big), ("F64",)),
          moments_rel=1e-12)


def test_devices() -> None:
    assert make_backend("cpu", impl="numpy").label.startswith("cpu")
    assert type(make_backend("cpu", impl="numpy")) is Backend
    with pytest.raises(DeviceError):
        make_backend("tpu")
    with pytest.raises(CheckpointError):  # DeviceError is a CheckpointError: the CLI prints it and exits 2
        make_backend("cuda:99")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="not available"):
            make_backend("cuda")


# --------------------------------------------------------------------------- cache
def test_second_analysis_reads_nothing(model: tuple[Path, dict], cache_dir: Path) -> None:
    path, _values = model
    first = run(path, device="cpu")
    assert first.bytes_read == path.stat().st_size - _header_bytes(path)
    second = run(path, device="cpu")
    assert second.bytes_read == 0 and second.device == "cache"
    for name in first.summaries:
        assert stats_to_json(first.stats(name)) == stats_to_json(second.stats(name))
    assert stats_to_json(first.model()) == stats_to_json(second.model())
    assert os.listdir(path.parent) == [path.name]  # nothing written beside the user's file
    assert any(p.suffix == ".npz" for p in cache_dir.rglob("*"))
    no_cache = run(path, device="cpu", use_cache=False)
    assert no_cache.bytes_read == first.bytes_read


def test_cache_entries_that_are_corrupt_are_ignored(model: tuple[Path, dict], cache_dir: Path) -> None:
    path, _values = model
    first = run(path, device="cpu")
    entries = sorted(cache_dir.rglob("*.npz"))
    assert len(entries) == 1  # one entry per data file, however many tensors
    good = entries[0].read_bytes()
    for bad in (b"garbage", good[:100]):
        entries[0].write_bytes(bad)
        again = run(path, device="cpu")
        assert again.bytes_read == first.bytes_read
        for name in first.summaries:
            assert stats_to_json(first.stats(name)) == stats_to_json(again.stats(name))
    assert not list(cache_dir.rglob(".tmp-*"))


def test_cache_is_invalidated_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"w": np.ones(100, np.float32)}, str(path))
    assert run(path).stats("w").mean == 1.0
    save_file({"w": np.full(100, 2.0, np.float32)}, str(path))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    again = run(path)
    assert again.bytes_read == 400 and again.stats("w").mean == 2.0


def _header_bytes(path: Path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


# --------------------------------------------------------------------------- errors
def test_file_that_shrinks_while_read_gives_read_error(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"a": np.ones(10_000, np.float32), "b": np.ones(10_000, np.float32)}, str(path))
    with open_checkpoint(str(path)) as ck:
        gen = analyze(ck, device="cpu", use_cache=False, chunk_bytes=8000)
        next(gen)
        os.truncate(path, path.stat().st_size // 2)
        with pytest.raises(ReadError, match=r"shorter|ended"):
            drain(gen)


def test_unknown_tensor_and_device_are_refused(model: tuple[Path, dict]) -> None:
    path, _ = model
    with pytest.raises(CheckpointError, match="no tensor named"):
        run(path, ["missing"])
    with pytest.raises(DeviceError):
        run(path, device="quantum")


def test_complex_tensors_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_file({"z": np.ones(4, np.complex64), "w": np.ones(4, np.float32)}, str(path))
    result = run(path, use_cache=False)
    assert set(result.summaries) == {"w"}


def test_gguf_chunks_that_split_quant_blocks(tmp_path: Path) -> None:
    from gguf import quants
    from gguf.constants import GGMLQuantizationType as Q

    q4 = q4_k_blocks(4, 2, seed=3)
    path = tmp_path / "q.gguf"
    write_gguf(path, {"blk.1.attn_k.weight": (q4, Q.Q4_K)})
    whole = run(path, use_cache=False)
    for chunk in (1, 50, 143, 145, 1000):
        split = run(path, use_cache=False, chunk_bytes=chunk)
        _same(whole.summaries["blk.1.attn_k.weight"], split.summaries["blk.1.attn_k.weight"], moments_rel=1e-10)
    check(whole.stats("blk.1.attn_k.weight"), quants.dequantize(q4, Q.Q4_K), exact=False)


def test_finished_summaries_are_compact(model: tuple[Path, dict]) -> None:
    """A finished 16-bit tensor's counts are kept sparse, so thousands of tensors fit in little memory."""
    path, values = model
    result = run(path, device="cpu", use_cache=False)
    s = result.summaries["model.layers.0.self_attn.q_proj.weight"]
    assert isinstance(s, PatternSummary) and s.store.dense is None
    assert s.store.idx.nbytes + s.store.cnt.nbytes < 100_000
    f = result.summaries["model.norm.weight"]
    assert isinstance(f, FloatSummary) and f.keys.dense is None
    check(result.stats("model.layers.0.self_attn.q_proj.weight"), values["model.layers.0.self_attn.q_proj.weight"],
          exact=True)
    assert result.summaries["model.layers.0.self_attn.q_proj.weight"].store.dense is None  # deriving keeps it so


def test_torch_is_imported_only_to_read_tensors(model: tuple[Path, dict], cache_dir: Path) -> None:
    path, _ = model
    code = ("import sys; import core.stats, core.stats_cache, core.compute, core.commands.stats; "
            "core.stats_cache.MIN_CACHED_BYTES = 0; "  # this small model is cached as a large one would be
            "assert 'torch' not in sys.modules, 'imported at start'; "
            f"r = core.stats.run({str(path)!r}); "
            "print(r.bytes_read, r.device, 'torch' in sys.modules)")
    env = {**os.environ, "WEIGHTSCOPE_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(Path(__file__).parents[1])}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    from core.compute import accelerator_possible

    # a small model is read with numpy on a machine that cannot have a GPU; torch is imported only where it could
    assert first.stdout.split()[1:] != ["cache", "False"] and int(first.stdout.split()[0]) > 0
    assert first.stdout.split()[-1] == str(accelerator_possible())
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert second.stdout.split() == ["0", "cache", "False"]  # everything cached: torch never imported


def test_quant_types_without_a_dequantiser_are_skipped(tmp_path: Path) -> None:
    """gguf cannot decode Q8_1: that tensor is listed as skipped, the others are analysed."""
    from gguf import quants
    from gguf.constants import GGML_QUANT_SIZES
    from gguf.constants import GGMLQuantizationType as Q

    x = np.random.default_rng(2).normal(size=(4, 64)).astype(np.float32)
    q8 = quants.quantize(x, Q.Q8_0)
    _block, size = GGML_QUANT_SIZES[Q.Q8_1]
    odd = np.zeros((2, 2 * size), dtype=np.uint8)
    path = tmp_path / "q.gguf"
    write_gguf(path, {"a.weight": (q8, Q.Q8_0), "b.weight": (odd, Q.Q8_1)})
    result = run(path, use_cache=False)
    assert set(result.summaries) == {"a.weight"}
    assert "cannot dequantise Q8_1" in result.skipped["b.weight"]
    check(result.stats("a.weight"), quants.dequantize(q8, Q.Q8_0), exact=False)
    assert run(path, ["b.weight"], use_cache=False).summaries == {}


def test_cache_prunes_least_recently_used(tmp_path: Path, cache_dir: Path) -> None:
    from core.stats_cache import StatsCache

    paths = cached_models(tmp_path)
    entries = sorted(cache_dir.rglob("*.npz"), key=lambda p: p.stat().st_mtime_ns)
    assert len(entries) == 3
    for age, entry in enumerate(entries):
        os.utime(entry, ns=(10**18, 10**18 + age))  # distinct, ordered times
    assert run(paths[0]).bytes_read == 0  # a hit makes m0's entry the most recently used
    StatsCache(str(cache_dir)).prune(max_bytes=entries[0].stat().st_blocks * 512 + 10, once=False)
    assert [p.exists() for p in entries] == [True, False, False]
    assert run(paths[0]).bytes_read == 0 and run(paths[1]).bytes_read == 4000
