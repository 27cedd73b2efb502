"""The quick routes that make 60,000 one-value shards and a million empty tensors fast give, bit for bit and
character for character, what the general routes give: one-value statistics, the direct JSON writer, the
histogram-edge ladder, and the batched `stats --json` output of a whole model."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import stats_summary
from core.compute import numpy_float_summary
from core.stats import _floats_text, _json_floats, run, stats_json_text, stats_to_json
from core.stats_summary import HistSpec, PatternSummary, _derive_weighted, derive, hist_edges
from tests.safetensors_files import write_safetensors

ROOT = Path(__file__).resolve().parents[1]
AWKWARD = [0.0, -0.0, 1.0, -1.0, 7.0, -3.0, 0.1, -2.5e-8, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-100,
           -1e-100, 3.4028234663852886e38, 1e300, -1e300, 1.7976931348623157e308, -1.7976931348623157e308,
           16777215.0, -16777216.0, 123456.789, 1e16, 2.0**60, 0.5, -0.5, 1e-5]
COUNTS = [1, 2, 3, 7, 1000, 3**20, 2**53 - 1]


def _same_float(a: float, b: float) -> bool:
    return (a != a and b != b) or (a == b and math.copysign(1.0, a) == math.copysign(1.0, b))


def _reference_one_value(x: float, n: int, spec: HistSpec, name: str = "t", dtypes: tuple[str, ...] = ("F64",),
                         nan: int = 0, pos_inf: int = 0, neg_inf: int = 0):
    """_derive_weighted's general numpy body on one value: an explicit range equal to the default one, [x, x],
    takes the general branch."""
    v, c = np.array([x]), np.array([n], dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _derive_weighted(name, dtypes, v, c, nan, pos_inf, neg_inf, HistSpec(spec.bins, (x, x), spec.log_bins))


def _reference_one_value_positional(name, dtypes, x, n, nan, pos_inf, neg_inf, spec):
    return _reference_one_value(x, n, spec, name, dtypes, nan, pos_inf, neg_inf)


@pytest.mark.parametrize("x", AWKWARD)
@pytest.mark.parametrize("n", COUNTS)
def test_one_value_statistics_equal_the_general_route(x: float, n: int) -> None:
    spec = HistSpec(bins=256)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        fast = _derive_weighted("t", ("F64",), np.array([x]), np.array([n], dtype=np.int64), 0, 0, 0, spec)
    slow = _reference_one_value(x, n, spec)
    for field in ("count", "mean", "std", "min", "max", "abs_max", "l2", "zeros", "skewness", "kurtosis",
                  "beyond_6_sigma"):
        assert _same_float(getattr(fast, field), getattr(slow, field)), (field, getattr(fast, field),
                                                                          getattr(slow, field))
    assert fast.percentiles.keys() == slow.percentiles.keys()
    assert all(_same_float(fast.percentiles[k], slow.percentiles[k]) for k in fast.percentiles)
    for field in ("hist_edges", "hist_counts", "log_edges", "log_counts"):
        a, b = getattr(fast, field), getattr(slow, field)
        assert a.dtype == b.dtype and np.array_equal(a, b), field
        assert np.array_equal(np.signbit(a), np.signbit(b)), field


def test_json_writer_equals_json_dumps_on_awkward_statistics() -> None:
    rng = np.random.default_rng(5)
    blocks = [np.array([x]) for x in AWKWARD] + [
        np.array([np.nan, 1.0]), np.array([np.inf, -np.inf, 2.0]), np.array([np.nan]), np.zeros(0),
        rng.standard_normal(50), np.array([1e300, -1e300, 3.0]), np.array([3.0, 3.0, 3.0]),
        rng.standard_normal(3000).astype(np.float32),
    ]
    for bins in (1, 7, 256):
        spec = HistSpec(bins=bins)
        for x in blocks:
            ts = derive(numpy_float_summary(x, ("F64",)), 'n"\u00e9\x1b\u202e', spec)
            assert stats_json_text(ts) == json.dumps(stats_to_json(ts), allow_nan=False)
    pattern = PatternSummary("BF16", np.bincount(rng.integers(0, 65536, 500), minlength=65536).astype(np.int64))
    ts = derive(pattern, "bf", HistSpec())
    assert stats_json_text(ts) == json.dumps(stats_to_json(ts), allow_nan=False)
    ts.quant_type, ts.bits_per_weight = "Q4_K", 4.5
    assert stats_json_text(ts) == json.dumps(stats_to_json(ts), allow_nan=False)


@pytest.mark.parametrize("steps", [2, 4, 8, 64, 128, 256])
def test_edge_ladder_text_equals_repr(steps: int) -> None:
    rng = np.random.default_rng(steps)
    xs = [*range(-300, 300), *rng.integers(-(1 << 24) + 1, 1 << 24, 300).tolist(), (1 << 24) - 1, -(1 << 24) + 1,
          1 << 24, 1 << 30]
    for x in xs:
        edges = hist_edges(float(x), float(x), steps)
        assert _floats_text(edges) == json.dumps(_json_floats(edges))
    for other in (np.array([0.5, 1.0, 1.5]), np.linspace(0.1, 2.1, steps + 1), np.array([-0.5, 0.0, 0.5])):
        assert _floats_text(other) == json.dumps(_json_floats(other))


def _tiny_model(path: Path) -> None:
    """Tiny tensors of every plain dtype: one value, all equal, NaN, infinities, -0.0, huge and tiny values."""
    rng = np.random.default_rng(9)
    numpy_types = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "U8": "u1",
                   "I8": "i1", "BOOL": "u1"}
    specials = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-30, 1e30, 3.0]
    tensors = []
    for i in range(240):
        dtype = list(numpy_types)[i % len(numpy_types)]
        n = 1 if i % 3 == 0 else int(rng.integers(1, 12))
        if dtype.startswith("F"):
            values = rng.standard_normal(n) * 10.0 ** int(rng.integers(-3, 4))
            if i % 4 == 0:
                values[int(rng.integers(0, n))] = specials[i % len(specials)]
            if i % 5 == 0:
                values[:] = values[0]
            if i % 7 == 0:
                values = np.round(values * 10)
        elif dtype == "BOOL":
            values = rng.integers(0, 2, n)
        else:
            values = rng.integers(-50 if dtype[0] == "I" else 0, 50, n)
        with np.errstate(over="ignore"):
            data = np.asarray(values).astype(numpy_types[dtype]).tobytes()
        tensors.append((f"layers.{i}.t{dtype.lower()}", dtype, [n], data))
    tensors += [(f"empty.{i}", "F32" if i % 2 else "U8", [0], b"") for i in range(50)]
    bf16 = (rng.standard_normal(3).astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
    tensors.append(("bf", "BF16", [3], bf16))
    write_safetensors(path, tensors)


def _general_document(path: Path, spec: HistSpec, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Each tensor's statistics by the general routes (no one-value shortcut) through json.dumps(stats_to_json()),
    the definition of the output."""
    monkeypatch.setattr(stats_summary, "_derive_one_value", _reference_one_value_positional)
    result = run(str(path), use_cache=False)
    return [json.loads(json.dumps(stats_to_json(result.stats(name, spec)), allow_nan=False))
            for name in result.summaries]


def test_stats_json_of_tiny_tensors_is_the_general_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "tiny.safetensors"
    _tiny_model(model)
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "stats", "--json", "--no-cache", str(model)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["tensors"] == _general_document(model, HistSpec(bins=256), monkeypatch)
    assert len(doc["tensors"]) == 291


def test_many_empty_tensors_write_in_batches_as_one_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 empty tensors (the batches' boundaries fall inside and at the end) list as the general route does."""
    for count in (2000, 512):
        path = tmp_path / f"empty-{count}.safetensors"
        parts = [f'"{i:x}":{{"dtype":"{"U8" if i % 3 else "F32"}","shape":[0],"data_offsets":[0,0]}}'
                 for i in range(count)]
        text = ("{" + ",".join(parts) + "}").encode()
        path.write_bytes(struct.pack("<Q", len(text)) + text)
        out = subprocess.run([sys.executable, str(ROOT / "main.py"), "stats", "--json", "--no-cache", str(path)],
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["tensors"] == _general_document(path, HistSpec(bins=256), monkeypatch)
        assert [t["name"] for t in doc["tensors"]] == [f"{i:x}" for i in range(count)]
        assert doc["model"]["count"] == 0 and doc["findings"] == []


def test_hex_like_bare_names_classify_as_the_rules_do() -> None:
    """The shortcut for hex ids: no keyword of any rule passes it, and random such names (and near misses with
    fc, feed, uppercase, other letters) classify as the rules say."""
    from core import taxonomy
    from core.training_state import TRAINER_SCALARS

    words = [*TRAINER_SCALARS, *taxonomy._BUFFER_LEAVES, *taxonomy._EMBEDDING_MODULES, *taxonomy._BARE_HEADS,
             *taxonomy._HEAD_MODULES, *taxonomy._INT_WEIGHT_LEAVES, "bias", "weight", "feed", "fc1", "fc2"]
    assert not [w for w in words if taxonomy.is_harmless_bare(w)]
    assert taxonomy.is_harmless_bare("3e8f1") and not taxonomy.is_harmless_bare("")
    rng = np.random.default_rng(4)
    alphabet = [*"0123456789abcdef", "fc", "feed", "fc1", "B", "n", "_", "1"]
    names = ["".join(rng.choice(alphabet, int(rng.integers(1, 9)))) for _ in range(3000)]
    for i, name in enumerate(names):
        shape = (2,) * (i % 4)
        dtype = ("F32", "U8", "I64", "BF16", "BOOL")[i % 5]
        assert taxonomy.classify(name, shape, dtype) == taxonomy.classify_uncached(name, shape, dtype), name


def _backend_summary(tmp_path: Path, dtype: str, raw: bytes):
    """The general route: Backend.summarize_range over the tensor as a file holds it, then compact() as the
    engine does."""
    from core.compute import Backend
    from core.formats import open_checkpoint

    path = tmp_path / f"one-{dtype}.safetensors"
    write_safetensors(path, [("t", dtype, [1], raw)])
    with open_checkpoint(str(path)) as checkpoint:
        t = checkpoint.tensors[0]
        summary = Backend(threads=1).summarize_range(checkpoint, t, 0, 1)
        summary.compact()
        return summary, checkpoint.read_raw(t, 0, 1).copy()


def _assert_same_summary(a, b) -> None:
    assert type(a) is type(b)
    fields = ("fmt", "dtypes") if hasattr(a, "fmt") else tuple(a.__dataclass_fields__)
    for name in fields:
        x, y = getattr(a, name), getattr(b, name)
        if name == "keys":
            x, y = x.sparse(), y.sparse()
            assert all(p.dtype == q.dtype and np.array_equal(p, q) for p, q in zip(x, y, strict=True)), name
        elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y) and np.array_equal(np.signbit(x), np.signbit(y)), name
        else:
            assert x == y or _same_float(x, y), (name, x, y)
            if isinstance(x, float):
                assert _same_float(x, y), name
    if hasattr(a, "fmt"):
        (ia, ca), (ib, cb) = a.store.sparse(), b.store.sparse()
        assert ia.dtype == ib.dtype and ca.dtype == cb.dtype
        assert np.array_equal(ia, ib) and np.array_equal(ca, cb) and a.store.length == b.store.length


ONE_ELEMENT_VALUES = {
    "F32": ("<f4", [*AWKWARD[:10], 3.4e38, -1e-45, np.nan, np.inf, -np.inf, 1.5, -2.75]),
    "F64": ("<f8", [*AWKWARD, np.nan, np.inf, -np.inf, 2.0**-1074, 2.0**-210, -(2.0**300)]),
    "F16": ("<f2", [0.0, -0.0, 1.0, -65504.0, 6e-8, np.nan, np.inf]),
    "I64": ("<i8", [0, -1, 7, 2**63 - 1, -(2**63), 2**53 + 1]),
    "I32": ("<i4", [0, -5, 2**31 - 1, -(2**31)]),
    "U64": ("<u8", [0, 2**64 - 1, 12345]),
    "U32": ("<u4", [0, 2**32 - 1]),
    "I16": ("<i2", [-32768, 0, 5]),
    "U16": ("<u2", [65535, 0]),
    "I8": ("i1", [-128, 0, 127]),
    "U8": ("u1", [0, 255]),
    "BOOL": ("u1", [0, 1]),
    "BF16": ("<u2", [0x0000, 0x8000, 0x3F80, 0x7F80, 0xFF80, 0x7FC1, 0x0001]),
    "F8_E4M3": ("u1", [0x00, 0x80, 0x7F, 0x38, 0xFE]),
    "F8_E5M2": ("u1", [0x00, 0x7C, 0xFC, 0x7E, 0x3C]),
}


@pytest.mark.parametrize("dtype", sorted(ONE_ELEMENT_VALUES))
def test_one_element_summaries_equal_the_backends(tmp_path: Path, dtype: str) -> None:
    from core.one_element import handles, one_element_summary

    numpy_type, values = ONE_ELEMENT_VALUES[dtype]
    assert handles(dtype)
    for value in values:
        with np.errstate(over="ignore", invalid="ignore"):
            raw = np.array([value]).astype(numpy_type).tobytes()
        general, stored = _backend_summary(tmp_path, dtype, raw)
        _assert_same_summary(one_element_summary(stored, dtype), general)


def test_one_value_shards_give_the_general_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 one-value shards behind an index (the hostile benchmark's row, small): `stats --json` equals the
    document the general routes make (backend summaries, numpy derivation, json.dumps)."""
    from core import stats as stats_module

    model = tmp_path / "shards"
    model.mkdir()
    weight_map = {}
    for i in range(1, 301):
        shard = f"model-{i:05d}-of-00300.safetensors"
        value = [float(i), -0.0, 2.5, np.nan][i % 4] if i % 5 else float(-i) / 7
        write_safetensors(model / shard, [(f"layers.{i}.w", "F32", [1], np.array([value], "<f4").tobytes())])
        weight_map[f"layers.{i}.w"] = shard
    (model / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "stats", "--json", str(model)], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120, env={**__import__("os").environ,
                                                                    "WEIGHTSCOPE_CACHE_DIR": str(tmp_path / "c")})
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    monkeypatch.setattr(stats_module.one_element, "handles", lambda dtype: False)
    assert doc["tensors"] == _general_document(model, HistSpec(bins=256), monkeypatch)
    assert [t["name"] for t in doc["tensors"]] == [f"layers.{i}.w" for i in range(1, 301)]
    assert doc["tensors"][11]["mean"] == 12.0 and doc["tensors"][11]["histogram"]["counts"][128] == 1


@pytest.mark.parametrize(("header", "expected"), [
    (b'{"w": {"shape": [2], "dtype": "F32", "data_offsets": [0, 8]}}', None),
    (b'{"__metadata__": {"a": "b"}, "w": {"data_offsets": [0, 8], "dtype": "F32", "shape": [2]}}', None),
    (b'{"w": {"dtype": "F32", "shape": [{"a": 1, "a": 2}], "data_offsets": [0, 8]}}', "duplicate key 'a'"),
    (b'{"__metadata__": {"a": "b", "a": "c"}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
     "duplicate key 'a'"),
    (b'{"w": {"dtype": "F32", "shape": {}, "data_offsets": [0, 8]}}', "shape must be a list"),
    (b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": {"0": 8}}}', "data_offsets must be two"),
    (b'{"__metadata__": {"a": {"b": "c"}}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
     "__metadata__ must map strings to strings"),
    (b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "data_offsets": [0, 8]}}', "duplicate key"),
    (b'{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}', "needs 12 bytes"),
])
def test_unusual_headers_read_and_refuse_as_the_general_route(tmp_path: Path, header: bytes,
                                                              expected: str | None) -> None:
    """Headers off the usual layout take the general parse: accepted alike, or refused with its own words."""
    from core.errors import MalformedFileError
    from core.formats.safetensors_format import read_header

    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    if expected is None:
        tensors, metadata, _ = read_header(str(path))
        assert [(t.name, t.shape, t.dtype, t.nbytes) for t in tensors] == [("w", (2,), "F32", 8)]
        assert metadata in ({}, {"a": "b"})
    else:
        with pytest.raises(MalformedFileError, match=expected):
            read_header(str(path))


def test_runs_of_empty_tensors_report_every_4096_and_at_their_end(tmp_path: Path) -> None:
    """Empty tensors are summarised in slices; progress still comes at each run's 4,096th tensor and its end,
    every tensor gets its summary, in order, and the tensors between runs are read."""
    from core.stats import EMPTY_RUN_REPORT, analyze

    layout = [("e", 3), ("v", 1), ("e", 5000), ("v", 2), ("e", EMPTY_RUN_REPORT), ("e", 0), ("v", 1), ("e", 1)]
    tensors, expected_reports, count = [], [], 0
    for kind, n in layout:
        if kind == "v":
            for _ in range(n):
                tensors.append((f"v{count}", "F32", [2], np.array([count, -count], "<f4").tobytes()))
                expected_reports.append(f"v{count}")
                count += 1
            continue
        run = [f"e{count + k}" for k in range(n)]
        count += n
        tensors += [(name, "F32", [0], b"") for name in run]
        expected_reports += [name for k, name in enumerate(run, 1) if k % EMPTY_RUN_REPORT == 0 or k == n]
    path = tmp_path / "runs.safetensors"
    write_safetensors(path, tensors)
    gen = analyze(str(path), use_cache=False)
    reports = []
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if item.tensor_done:
            reports.append(item.tensor)
    assert reports == list(dict.fromkeys(expected_reports))
    assert list(result.summaries) == [t[0] for t in tensors]
    assert result.stats("v3").count == 2 and result.stats("e0").count == 0


def test_one_value_edges_are_numpys_linspace() -> None:
    """The one-value histogram's edges (linspace's steps plus the start) equal np.linspace bit for bit."""
    from core.stats_summary import _one_value_hist

    rng = np.random.default_rng(12)
    xs = [*AWKWARD, *rng.standard_normal(200).tolist(), *(rng.standard_normal(200) * 1e11).tolist(),
          *rng.integers(-(2**39), 2**39, 100).astype(float).tolist(), 2.0**40 - 1, -(2.0**40) + 0.5, 0.1, 1e-300]
    for bins in (1, 3, 7, 128, 256, 1000, 1024, 1025):
        for x in xs:
            edges, _ = _one_value_hist(float(x), 1, bins)
            assert np.array_equal(edges, hist_edges(float(x), float(x), bins)), (bins, x)
            if abs(x) < 2.0**40:
                assert np.array_equal(edges, np.linspace(x - 0.5, x + 0.5, bins + 1)), (bins, x)
