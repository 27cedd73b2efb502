"""Findings as data (``findings_json``): a planted broken model against numpy's own answers, and a healthy one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.findings import FEW_VALUES, find, findings_json
from core.formats import open_checkpoint
from core.levels import summary_levels
from core.stats import run
from core.undefined import ALL_EQUAL, NO_VALUES, ONE_VALUE, describe_stat

OUTLIER = "model.layers.0.mlp.down_proj.weight"
OUTLIER_AT = (17, 42)


def broken_tensors() -> dict[str, np.ndarray]:
    """NaN and Inf, an all-zero layer, one huge outlier at a known place, two tensors crushed onto 3 values."""
    rng = np.random.default_rng(7)
    outlier = (rng.standard_normal((64, 96)) * 0.02).astype(np.float32)
    outlier[OUTLIER_AT] = 3.5
    nan = (rng.standard_normal((32, 32)) * 0.02).astype(np.float32)
    for at in ((3, 5), (10, 1), (20, 30)):
        nan[at] = np.nan
    nan[7, 7], nan[0, 31] = np.inf, -np.inf
    levels = np.array([-0.25, 0.0, 0.5], np.float32)
    return {
        OUTLIER: outlier,
        "model.layers.0.self_attn.q_proj.weight": nan,
        "model.layers.0.self_attn.o_proj.weight": np.zeros((48, 48), np.float32),
        "model.layers.0.mlp.up_proj.weight": levels[rng.integers(0, 3, (96, 64))],  # 6,144 values: past the extremes
        "model.layers.0.mlp.gate_proj.weight": levels[rng.integers(0, 3, (8, 16))],  # 128: every value kept
        "model.norm.weight": np.ones(64, np.float32),  # constant: a norm's starting value, not crushed
        "model.embed_tokens.weight": (rng.standard_normal((100, 64)) * 0.02).astype(np.float32),
    }


@pytest.fixture
def broken(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    tensors = broken_tensors()
    folder = tmp_path / "broken-model"
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    return folder / "model.safetensors", tensors


def test_findings_json_against_numpy(broken: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, tensors = broken
    with open_checkpoint(str(path)) as ck:
        items = findings_json(ck, run(ck, use_cache=False))
    assert all(set(item) == {"kind", "severity", "tensor", "message", "at"} for item in items)
    json.dumps(items, allow_nan=False)  # plain JSON: no NaN sneaks in
    by_kind: dict[str, list[dict]] = {}
    for item in items:
        by_kind.setdefault(item["kind"], []).append(item)

    (non_finite,) = by_kind["non_finite"]
    values = tensors[non_finite["tensor"]]
    assert non_finite["severity"] == "error" and non_finite["tensor"] == "model.layers.0.self_attn.q_proj.weight"
    assert non_finite["at"] == np.argwhere(~np.isfinite(values))[:5].tolist()
    assert "3 NaN" in non_finite["message"] and "1 +Inf" in non_finite["message"] and "1 -Inf" in non_finite["message"]

    (zero,) = by_kind["all_zero"]
    assert zero["tensor"] == "model.layers.0.self_attn.o_proj.weight" and zero["at"] is None
    assert zero["severity"] == "warning"

    outliers = by_kind["outlier"]
    assert outliers[0]["tensor"] == OUTLIER
    w = tensors[OUTLIER].astype(np.float64)
    truth = np.unravel_index(int(np.argmax(np.abs(w - w.mean()))), w.shape)
    assert tuple(truth) == OUTLIER_AT and outliers[0]["at"] == [list(OUTLIER_AT)]
    assert "3.5" in outliers[0]["message"]

    crushed = {item["tensor"]: item for item in by_kind["few_values"]}
    assert set(crushed) == {"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.gate_proj.weight"}
    for name, item in crushed.items():
        distinct = np.unique(tensors[name])
        assert f"only {len(distinct)} distinct values" in item["message"] and item["severity"] == "warning"
        assert "-0.25, 0, 0.5" in item["message"]
    # the most severe first, and nothing about the healthy embedding or the constant norm
    assert [item["severity"] for item in items] == sorted((item["severity"] for item in items),
                                                          key=["error", "warning", "note"].index)
    assert not {"model.embed_tokens.weight", "model.norm.weight"} & {item["tensor"] for item in items}


def test_summary_alone_reads_nothing(broken: tuple[Path, dict[str, np.ndarray]]) -> None:
    """Without read_values the crushed tensor past the stored extremes is only a bound, so it is not claimed."""
    path, _tensors = broken
    with open_checkpoint(str(path)) as ck:
        result = run(ck, use_cache=False)
    found = find(result, ck)  # the checkpoint is closed: a read would fail
    assert [f.tensor for f in found.few_values] == ["model.layers.0.mlp.gate_proj.weight"]
    assert all(f.at is None for f in found.all())
    up = summary_levels(result.summaries["model.layers.0.mlp.up_proj.weight"])
    assert not up.exact and 3 <= up.count <= FEW_VALUES
    assert summary_levels(result.summaries["model.embed_tokens.weight"]).count > FEW_VALUES


def test_bf16_levels_are_exact(tmp_path: Path) -> None:
    """16-bit types count every pattern: the distinct values are exact, -0 and +0 counting as one."""
    bits = np.array([0x0000, 0x8000, 0x3F80, 0xBF80, 0x3F80], np.uint16)  # 0, -0, 1, -1, 1
    path = tmp_path / "m.safetensors"
    header = {"w": {"dtype": "BF16", "shape": [5], "data_offsets": [0, 10]}}
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bits.tobytes())
    with open_checkpoint(str(path)) as ck:
        levels = summary_levels(run(ck, use_cache=False).summaries["w"])
    assert levels.exact and levels.values == (-1.0, 0.0, 1.0)


def test_healthy_model_has_no_findings(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    tensors = {f"model.layers.{i}.mlp.down_proj.weight": (rng.standard_normal((64, 64)) * 0.02).astype(np.float32)
               for i in range(6)}
    tensors["model.norm.weight"] = np.ones(64, np.float32)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with open_checkpoint(str(tmp_path / "model.safetensors")) as ck:
        assert findings_json(ck, run(ck, use_cache=False)) == []


def test_undefined_statistics(tmp_path: Path) -> None:
    save_file({"constant": np.full((8, 8), 0.5, np.float32), "one": np.array([2.0], np.float32),
               "normal": np.array([1.0, 2.0, 4.0, 8.0], np.float32)}, str(tmp_path / "m.safetensors"))
    with open_checkpoint(str(tmp_path / "m.safetensors")) as ck:
        result = run(ck, use_cache=False)
    constant, one, normal = (result.stats(n) for n in ("constant", "one", "normal"))
    assert describe_stat("kurtosis", constant.kurtosis, constant) == ALL_EQUAL
    assert describe_stat("skewness", constant.skewness, constant) == ALL_EQUAL
    assert describe_stat("std", constant.std, constant) == "0"  # a constant's spread is defined: zero
    assert describe_stat("std", one.std, one) == ONE_VALUE
    assert describe_stat("mean", one.mean, one) == "2"
    v = np.array([1.0, 2.0, 4.0, 8.0])
    kurtosis = float(((v - v.mean()) ** 4).mean() / v.var() ** 2)
    assert describe_stat("kurtosis", normal.kurtosis, normal) == describe_stat("kurtosis", kurtosis, normal)
    assert describe_stat("kurtosis", normal.kurtosis, normal).startswith("1.")
    empty = type("Empty", (), {"count": 0, "std": float("nan"), "min": float("nan"), "max": float("nan")})()
    assert describe_stat("mean", float("nan"), empty) == NO_VALUES


def test_report_names_the_crushed_tensor(broken: tuple[Path, dict[str, np.ndarray]]) -> None:
    from core.report import Heading, Table, findings_blocks

    path, _tensors = broken
    with open_checkpoint(str(path)) as ck:
        blocks = findings_blocks(find(run(ck, use_cache=False), ck))
    at = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == "Crushed onto a few values")
    table = blocks[at + 1]
    assert isinstance(table, Table) and table.rows[0][0] == "model.layers.0.mlp.gate_proj.weight"
    assert "only 3 distinct values" in table.rows[0][1]


def test_empty_tensors_count_as_analysed_but_are_never_derived(tmp_path: Path) -> None:
    """A header may list a million empty tensors: they have no values, so no finding, and no statistics derived."""
    tensors = {f"model.layers.{i}.w": np.zeros((0, 4), np.float32) for i in range(50)}
    tensors["model.z.weight"] = np.zeros((8, 8), np.float32)
    save_file(tensors, str(tmp_path / "m.safetensors"))
    with open_checkpoint(str(tmp_path / "m.safetensors")) as ck:
        result = run(ck, use_cache=False)
        found = find(result, ck, read_values=True)
    assert found.analysed == 51
    assert [(f.kind, f.tensor) for f in found.all()] == [("all_zero", "model.z.weight")]
    from core.findings import tensor_stats

    assert list(tensor_stats(result)) == ["model.z.weight"]
