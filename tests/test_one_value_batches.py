"""The batch routes behind `stats --json` of 60,000 one-value shards give what the one-by-one routes give: the
histogram texts of a batch (with orjson and without), the model figure merged from runs of one-value summaries,
and small shards' values read from the bytes read when the model was opened."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from core import one_value_json, stats_summary
from core.checkpoint import Checkpoint
from core.errors import CheckpointError
from core.one_element import one_element_summary
from core.stats import AnalysisResult, stats_json_text, stats_to_json
from core.stats_summary import FloatSummary, HistSpec, _derive_weighted, merge, merge_all
from tests.safetensors_files import write_safetensors

AWKWARD = [1.0, -1.0, 7.0, -3.0, 0.0, -0.0, 0.1, -2.5e-8, 5e-324, 1e-100, 3.4028234663852886e38, 1e300, -1e300,
           1.7976931348623157e308, 16777215.0, -16777216.0, 123456.789, 1e16, 2.0**60, 0.5, -0.5, 1e-5, 3.1622776,
           3.162277660168379, 0.31622776601683794, 1e-4, 9.999999999999999e-5, 2.0**40, 2.0**40 - 1, 60000.0]


def _values() -> list[float]:
    rng = np.random.default_rng(5)
    spread = rng.standard_normal(400) * 10.0 ** rng.integers(-12, 14, 400)
    integers = rng.integers(-70000, 70000, 200).astype(np.float64)
    return AWKWARD + spread.tolist() + integers.tolist()


def _general_text(x: float, n: int, spec: HistSpec) -> str:
    """The definition: _derive_weighted's general numpy body (an explicit range equal to [x, x]), json.dumps."""
    v, c = np.array([x]), np.array([n], dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ts = _derive_weighted("t", ("F64",), v, c, 0, 0, 0, HistSpec(spec.bins, (x, x), spec.log_bins))
    return json.dumps(stats_to_json(ts), allow_nan=False)


@pytest.mark.parametrize("with_orjson", [True, False])
@pytest.mark.parametrize("bins", [256, 7, 2000])
def test_batch_histogram_texts_equal_the_general_route(monkeypatch: pytest.MonkeyPatch, with_orjson: bool,
                                                       bins: int) -> None:
    if with_orjson:
        pytest.importorskip("orjson")
    else:
        monkeypatch.setattr(one_value_json, "orjson", None)
    spec = HistSpec(bins=bins)
    values = _values()
    counts = [1 + (i % 3) * (i % 5) for i in range(len(values))]
    texts = one_value_json.histogram_texts(values, counts, spec)
    for x, n, histograms in zip(values, counts, texts, strict=True):
        ts = stats_summary.one_value_figures("t", ("F64",), x, n, 0, 0, 0)
        general = _general_text(x, n, spec)
        assert stats_json_text(ts, histograms) == general, (x, n)
        assert one_value_json.one_value_text(ts, x, histograms) == general, (x, n)


def test_orjson_writes_the_positional_range_as_repr() -> None:
    """The premise of the quick writer: in [1e-4, 1e16) and at zero orjson's text is repr's; outside it is not
    (exponents), and those rows take the general writer."""
    orjson = pytest.importorskip("orjson")
    rng = np.random.default_rng(3)
    magnitudes = 10.0 ** rng.uniform(-4, 16, 20000)
    values = np.concatenate([magnitudes * rng.choice([-1.0, 1.0], 20000), [0.0, -0.0, 1e-4, 9999999999999998.0]])
    values = values[(np.abs(values) < 1e16)]
    written = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY).decode()[1:-1].split(",")
    assert written == [repr(v) for v in values.tolist()]
    assert orjson.dumps(np.array([1e-5]), option=orjson.OPT_SERIALIZE_NUMPY) != b"[1e-05]"


def test_one_value_is_recognised_exactly_where_derive_takes_the_one_value_route() -> None:
    for dtype, raw in [("F32", np.array([2.5], "<f4")), ("F64", np.array([-1e-7], "<f8")),
                       ("I32", np.array([-7], "<i4")), ("U64", np.array([2**63 + 5], "<u8")),
                       ("I64", np.array([2**62 + 1], "<i8"))]:
        s = one_element_summary(raw.view(np.uint8), dtype)
        x, n = one_value_json.one_value(s)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            general = stats_summary.derive(s, "t")
        assert (general.min, general.max, general.count) == (x, x, n), dtype
    nan = one_element_summary(np.array([np.nan], "<f4").view(np.uint8), "F32")
    two = merge(one_element_summary(np.array([1.0], "<f4").view(np.uint8), "F32"),
                one_element_summary(np.array([2.0], "<f4").view(np.uint8), "F32"))
    huge = one_element_summary(np.array([1e300], "<f8").view(np.uint8), "F64")
    bf16 = one_element_summary(np.array([0x3F80], "<u2").view(np.uint8), "BF16")
    assert [one_value_json.one_value(s) for s in (nan, two, huge, bf16)] == [None, None, None, None]


def test_json_text_batches_write_one_value_tensors_as_stats_json_text() -> None:
    """Mixed lists (one-value, several values, NaN-only, repeated values) across batch boundaries."""
    result = AnalysisResult(device="cpu")
    names = []
    for i, x in enumerate(_values()[:300]):
        raw = np.array([x], "<f8") if i % 7 else np.array([x, x / 3, x], "<f8")
        name = f"layers.{i}.w"
        names.append(name)
        if len(raw) == 1:
            result.summaries[name] = one_element_summary(raw.view(np.uint8), "F64")
        else:
            result.summaries[name] = merge_all([one_element_summary(raw[j : j + 1].view(np.uint8), "F64")
                                                   for j in range(len(raw))])
    spec = HistSpec()
    kept: dict = {}
    batched = [text for batch in result.json_text_batches(names, spec, kept, 64) for text in batch]
    one_by_one = [json.dumps(stats_to_json(result.stats(name, spec)), allow_nan=False) for name in names]
    assert batched == one_by_one
    assert kept.keys() == set(names)
    assert all(kept[n].mean == result.stats(n, spec).mean for n in names)


def _fields(s: FloatSummary) -> dict:
    out = {k: getattr(s, k) for k in s.__dataclass_fields__ if k not in ("keys", "top", "bottom", "int_counts")}
    out["keys"] = s.keys.array().tolist()
    out["top"], out["bottom"] = s.top.tolist(), s.bottom.tolist()
    out["int_counts"] = None if s.int_counts is None else s.int_counts.tolist()
    return out


@pytest.mark.parametrize("layout", ["values", "with_zeros", "mixed"])
def test_runs_of_one_value_summaries_merge_as_one_by_one(layout: str) -> None:
    rng = np.random.default_rng(11)
    values = (rng.standard_normal(3000) * 10.0 ** rng.integers(-5, 6, 3000)).tolist()
    if layout == "with_zeros":
        values[100:3000:97] = [0.0, -0.0] * 15  # zeros end runs; a zero among the merged extremes stops batching
    summaries = [one_element_summary(np.array([v], "<f8").view(np.uint8), "F64") for v in values]
    if layout == "mixed":
        summaries[500] = one_element_summary(np.array([1e300], "<f8").view(np.uint8), "F64")  # scaled moments
        summaries[900] = one_element_summary(np.array([7], "<i4").view(np.uint8), "I32")  # integer counts
        summaries[1500] = one_element_summary(np.array([np.nan], "<f4").view(np.uint8), "F32")
    sequential = None
    for s in summaries:
        sequential = merge(sequential, s)
    assert _fields(merge_all(summaries)) == _fields(sequential)
    assert len(sequential.top) == stats_summary.K_EXTREMES


def test_small_shards_read_the_bytes_read_at_opening(tmp_path: Path) -> None:
    from core.formats import open_checkpoint
    from core.formats.safetensors_format import SnapshotCheckpoint

    rng = np.random.default_rng(2)
    kinds = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "U8": "u1", "BOOL": "u1",
             "I16": "<i2"}
    weight_map, expected = {}, {}
    for i, (dtype, code) in enumerate(kinds.items()):
        values = rng.integers(0, 2, 5) if dtype == "BOOL" else rng.integers(-100, 100, 5)
        data = values.astype(code).tobytes()
        shard = f"model-{i:05d}-of-00008.safetensors"
        write_safetensors(tmp_path / shard, [(f"a.{i}", dtype, [5], data), (f"b.{i}", dtype, [1], data[:np.dtype(code)
                                                                                                   .itemsize])])
        weight_map |= {f"a.{i}": shard, f"b.{i}": shard}
        expected[f"a.{i}"] = values.astype(code)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with open_checkpoint(str(tmp_path)) as checkpoint:
        assert type(checkpoint) is SnapshotCheckpoint
        reference = Checkpoint(format="safetensors", path=checkpoint.path, files=checkpoint.files,
                               tensors=checkpoint.tensors, metadata={})
        for t in checkpoint.tensors:
            for start, count in [(0, None), (0, t.elements), (t.elements - 1, 1), (1, 0)]:
                if start + (count or 0) > t.elements:
                    continue
                a, b = checkpoint.read_raw(t, start, count), reference.read_raw(t, start, count)
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (t.name, start, count)
                assert a.flags.writeable
            buffer = np.zeros(64, dtype=np.uint8)
            assert checkpoint.read_raw(t, 0, None, out=buffer).tobytes() == reference.read_raw(t).tobytes()
        assert checkpoint.read_raw("a.0").tolist() == expected["a.0"].tolist()
        with pytest.raises(CheckpointError, match="outside tensor"):
            checkpoint.read_raw("a.0", 3, 5)
        for shard in set(weight_map.values()):
            (tmp_path / shard).write_bytes(b"replaced after opening")
        assert checkpoint.read_raw("a.1").tolist() == expected["a.1"].tolist()  # the validated bytes, not these
        reference.close()
    assert math.isfinite(float(expected["a.0"][0]))
