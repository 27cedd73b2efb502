"""Statistics exported as CSV and JSON read back to exactly the values of the AnalysisResult."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.export import CSV_COLUMNS, ExportError, write_stats_csv, write_stats_json
from core.formats import open_checkpoint
from core.stats import run, stats_to_json
from core.stats_summary import HistSpec


@pytest.fixture
def analysed(tmp_path: Path):
    rng = np.random.default_rng(3)
    special = rng.standard_normal(50).astype(np.float32)
    special[[3, 9]] = np.nan
    special[11] = np.inf
    special[12] = -np.inf
    path = tmp_path / "m.safetensors"
    save_file({
        "enc.weight": rng.standard_normal((16, 8)).astype(np.float32),
        "enc.bias": np.zeros(16, np.float16),
        "odd,name \"quoted\"\nline.weight": rng.standard_normal(7).astype(np.float64),
        "special.weight": special,
        "steps": np.arange(5, dtype=np.int64),
    }, str(path))
    ck = open_checkpoint(str(path))
    yield ck, run(ck, use_cache=False)
    ck.close()


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_csv_round_trip(analysed, tmp_path: Path) -> None:
    ck, result = analysed
    out = tmp_path / "stats.csv"
    assert write_stats_csv(result, out, checkpoint=ck) == len(result.summaries) == 5
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["name"] for r in rows] == list(result.summaries)
    for row in rows:
        ts = result.stats(row["name"])
        info = ck.tensor(row["name"])
        assert (row["kind"], row["role"], row["dtype"]) == (info.kind, info.role, ts.dtype)
        assert row["shape"] == "x".join(map(str, info.shape))
        for key in ("count", "zeros", "nan", "pos_inf", "neg_inf", "beyond_6_sigma"):
            assert int(row[key]) == getattr(ts, key), key
        for key in ("mean", "std", "min", "max", "abs_max", "l2", "skewness", "kurtosis"):
            assert _same(float(row[key]), getattr(ts, key)), (row["name"], key)
        for p, value in ts.percentiles.items():
            assert _same(float(row[f"p{p}"]), value)
        assert row["exact"] == ("true" if ts.exact else "false")
    special = next(r for r in rows if r["name"] == "special.weight")
    assert (special["nan"], special["pos_inf"], special["neg_inf"]) == ("2", "1", "1")


def test_json_round_trip(analysed, tmp_path: Path) -> None:
    ck, result = analysed
    out = tmp_path / "stats.json"
    spec = HistSpec(bins=32)
    assert write_stats_json(result, out, spec, checkpoint=ck) == 5
    doc = json.loads(out.read_text(encoding="utf-8"))  # strict JSON: NaN/Inf are strings
    assert doc["device"] == result.device and doc["format"] == "safetensors"
    assert doc["model"] == json.loads(json.dumps(stats_to_json(result.model(spec))))
    for obj in doc["tensors"]:
        ts = result.stats(obj["name"], spec)
        expected = json.loads(json.dumps(stats_to_json(ts)))
        info = ck.tensor(obj["name"])
        assert (obj["kind"], obj["role"], obj["shape"]) == (info.kind, info.role, list(info.shape))
        assert {k: v for k, v in obj.items() if k not in ("kind", "role", "shape")} == expected
        assert obj["histogram"]["counts"] == [int(c) for c in ts.hist_counts]
    special = next(o for o in doc["tensors"] if o["name"] == "special.weight")
    values = np.asarray(ck.read_tensor("special.weight"), dtype=np.float64)
    finite = values[np.isfinite(values)]
    assert special["mean"] == pytest.approx(finite.mean(), rel=1e-12) and special["nan"] == 2


def test_unwritable_targets_and_no_temp_files(analysed, tmp_path: Path) -> None:
    _, result = analysed
    (tmp_path / "a-folder").mkdir()
    for target in (tmp_path / "missing" / "s.csv", tmp_path / "a-folder"):
        with pytest.raises(ExportError, match="cannot write"):
            write_stats_csv(result, target)
        with pytest.raises(ExportError, match="cannot write"):
            write_stats_json(result, target)
    out = tmp_path / "clean"
    out.mkdir()
    write_stats_csv(result, out / "s.csv")
    write_stats_json(result, out / "s.json")
    write_stats_json(result, out / "s.json")  # replacing an existing file
    assert sorted(p.name for p in out.iterdir()) == ["s.csv", "s.json"]
