"""Report content and findings as plain data (no Qt), checked against numpy on values the test wrote."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.findings import Z_THRESHOLD, find, outliers, sibling_key
from core.formats import open_checkpoint
from core.report import (
    Heading,
    KeyValues,
    PlotGrid,
    Table,
    build_report,
    default_report_name,
    depth_profiles,
    layer_rows,
    model_name,
)
from core.stats import run
from core.version import __version__

REPO = Path(__file__).resolve().parents[1]
LAYERS = 6


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("stats-cache")))


def llama_tensors(layers: int = LAYERS, seed: int = 0) -> dict[str, np.ndarray]:
    """A small Llama-shaped model; layer 3's down-projection is 10x wider and layer 2's holds one spike."""
    rng = np.random.default_rng(seed)
    d, f, v = 16, 32, 40
    t = {"model.embed_tokens.weight": (rng.standard_normal((v, d)) * 0.02).astype(np.float32)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in "qkvo":
            t[p + f"self_attn.{n}_proj.weight"] = (rng.standard_normal((d, d)) * 0.02).astype(np.float32)
        t[p + "mlp.gate_proj.weight"] = (rng.standard_normal((f, d)) * 0.02).astype(np.float32)
        t[p + "mlp.up_proj.weight"] = (rng.standard_normal((f, d)) * 0.02).astype(np.float32)
        t[p + "mlp.down_proj.weight"] = (rng.standard_normal((d, f)) * 0.02).astype(np.float32)
        t[p + "input_layernorm.weight"] = np.ones(d, np.float32)
    t["model.layers.3.mlp.down_proj.weight"] *= 10
    t["model.layers.2.mlp.down_proj.weight"][5, 7] = 2.5
    t["model.norm.weight"] = np.ones(d, np.float32)
    t["lm_head.weight"] = (rng.standard_normal((v, d)) * 0.02).astype(np.float32)
    return t


@pytest.fixture
def llama(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    tensors = llama_tensors()
    path = tmp_path / "tiny-llama" / "model.safetensors"
    path.parent.mkdir()
    save_file(tensors, str(path))
    return path, tensors


def _kurtosis(x: np.ndarray) -> float:
    x = x.astype(np.float64).ravel()
    d = x - x.mean()
    return float((d**4).mean() / (d * d).mean() ** 2)


def _peak(x: np.ndarray) -> float:
    x = x.astype(np.float64).ravel()
    return float(np.abs(x - x.mean()).max() / x.std())


def test_version_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]


def test_top_lists_match_numpy(llama: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, tensors = llama
    with open_checkpoint(str(path)) as ck:
        found = find(run(ck, use_cache=False), ck)
    # only tensors with spread: the norms (all ones) have std 0 and no peak ratio or kurtosis
    spread = {n: a for n, a in tensors.items() if a.std() > 0}
    by_peak = sorted(spread, key=lambda n: -_peak(spread[n]))[:10]
    by_kurt = sorted(spread, key=lambda n: -_kurtosis(spread[n]))[:10]
    assert [r.tensor for r in found.peak_ratio] == by_peak
    assert [r.tensor for r in found.kurtosis] == by_kurt
    for r in found.peak_ratio:
        assert r.value == pytest.approx(_peak(tensors[r.tensor]), rel=1e-9)
    assert found.peak_ratio[0].tensor == "model.layers.2.mlp.down_proj.weight"
    for r in found.kurtosis:
        assert r.value == pytest.approx(_kurtosis(tensors[r.tensor]), rel=1e-9)


def test_sibling_outliers_are_the_planted_layers(llama: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, tensors = llama
    with open_checkpoint(str(path)) as ck:
        found = find(run(ck, use_cache=False), ck)
    flagged = {(f.tensor, f.measure) for f in found.sibling_outliers}
    assert ("model.layers.3.mlp.down_proj.weight", "std") in flagged
    assert ("model.layers.2.mlp.down_proj.weight", "kurtosis") in flagged
    assert ("model.layers.2.mlp.down_proj.weight", "max |w|") in flagged
    assert all("down_proj" in name for name, _ in flagged), flagged  # nothing else was planted
    std = next(f for f in found.sibling_outliers if f.tensor.startswith("model.layers.3.") and f.measure == "std")
    siblings = [float(tensors[f"model.layers.{i}.mlp.down_proj.weight"].astype(np.float64).std())
                for i in range(LAYERS)]
    assert std.value == pytest.approx(siblings[3], rel=1e-9)
    assert std.reference == pytest.approx(10 ** np.median(np.log10(siblings)), rel=1e-9)
    assert "layer 3" in std.explanation and "higher" in std.explanation
    # 8 families of repeated tensors: 4 attention + 3 mlp + the norm (std 0 everywhere: never flagged)
    assert found.sibling_groups == 8


def test_modified_z_score() -> None:
    values = {f"l{i}": v for i, v in enumerate([1.0, 1.1, 0.9, 1.05, 0.95, 5.0])}
    hits = outliers(values)
    assert [h[0] for h in hits] == ["l5"]
    logs = np.log10(list(values.values()))
    med = np.median(logs)
    mad = np.median(np.abs(logs - med))
    assert hits[0][1] == pytest.approx(0.6745 * (math.log10(5.0) - med) / mad) and hits[0][1] > Z_THRESHOLD
    # a tight family flags nothing that is not at least MIN_FACTOR away
    assert outliers({f"l{i}": 1.0 + i * 1e-6 for i in range(8)}) == []


def test_sibling_key() -> None:
    assert sibling_key("model.layers.7.mlp.down_proj.weight") == "model.layers.*.mlp.down_proj.weight"
    assert sibling_key("blk.12.ffn_down.weight") == "blk.*.ffn_down.weight"
    assert sibling_key("lm_head.weight") is None


def test_nan_inf_and_zero_tensors(tmp_path: Path) -> None:
    bad = np.ones(10, np.float32)
    bad[[1, 2]] = np.nan
    bad[3] = np.inf
    path = tmp_path / "m.safetensors"
    save_file({"a.weight": np.zeros((4, 4), np.float32), "a.bias": np.zeros(4, np.float32), "b.weight": bad,
               "c.running_mean": np.zeros(3, np.float32), "d.weight": np.arange(6, dtype=np.float32)}, str(path))
    with open_checkpoint(str(path)) as ck:
        found = find(run(ck, use_cache=False), ck)
    assert [(f.tensor, f.value) for f in found.non_finite] == [("b.weight", 3.0)]
    assert "2 NaN" in found.non_finite[0].title and "1 +Inf" in found.non_finite[0].title
    zero = {f.tensor: f.severity for f in found.all_zero}
    assert zero == {"a.weight": "warning", "a.bias": "note", "c.running_mean": "note"}


def test_report_content(llama: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, tensors = llama
    exact = sum(a.size for a in tensors.values())
    with open_checkpoint(str(path)) as ck:
        result = run(ck, use_cache=False)
        report = build_report(ck, result)
        assert model_name(ck) == "tiny-llama"  # model.safetensors is generic: the folder names the model
        assert default_report_name(ck) == "tiny-llama-report.pdf"
        rows, depths, skipped, groups = layer_rows(ck, result)
        profiles = depth_profiles(ck, result)
    assert report.parameter_count == exact
    facts = dict(report.facts)
    assert facts["Parameters"].endswith(f"({exact:,})") and facts["Weightscope"] == __version__
    assert facts["Format"] == "safetensors"
    assert report.files.rows == [["model.safetensors", report.files.rows[0][1], f"{path.stat().st_size:,}"]]
    headings = [b.text for b in report.blocks if isinstance(b, Heading) and b.level == 1]
    assert headings == ["Summary", "Layers", "Value distributions", "Depth profiles", "Findings", "All tensors"]
    tables = {b.title: b for b in report.blocks if isinstance(b, (Table, KeyValues)) and b.title}
    memory = {r[0]: r[2] for r in tables["Memory"].rows}
    assert memory["fp32 (4 bytes)"] == f"{exact * 4:,}" and memory["int4 (half a byte)"] == f"{exact // 2:,}"
    assert memory["as stored (F32)"] == f"{exact * 4:,}"
    # folded layer table: one row stands for the six blocks and merges their values exactly
    labels = [r[0] for r in rows]
    assert "layers.0-5 (x6)" in labels and skipped == 0
    down = rows[labels.index("down_proj.weight")]
    merged = np.concatenate([tensors[f"model.layers.{i}.mlp.down_proj.weight"].ravel() for i in range(LAYERS)])
    assert float(down[4]) == pytest.approx(merged.astype(np.float64).std(), rel=1e-3)  # 4 significant digits
    assert depths[labels.index("down_proj.weight")] > depths[labels.index("layers.0-5 (x6)")]
    assert labels.index("layers.0-5 (x6)") in groups and labels.index("down_proj.weight") not in groups
    # depth profile of the down-projections: std and max |w| per layer equal numpy's
    assert set(profiles) == {"q", "k", "v", "o", "gate", "up", "down", "norm"}
    prof = profiles["down"]
    assert prof["layer"] == [float(i) for i in range(LAYERS)]
    for i in range(LAYERS):
        a = tensors[f"model.layers.{i}.mlp.down_proj.weight"].astype(np.float64)
        assert prof["std"][i] == pytest.approx(a.std(), rel=1e-9)
        assert prof["abs_max"][i] == pytest.approx(np.abs(a).max(), rel=1e-12)
    # the whole-model histogram counts every value once
    grids = [b for b in report.blocks if isinstance(b, PlotGrid)]
    assert sum(grids[0].plots[0].counts) == exact
    role_titles = [p.title for p in grids[1].plots]
    assert role_titles[:3] == ["mlp.down", "mlp.gate", "mlp.up"] and "norm" in role_titles


def test_report_names_contradictions_safety_and_warnings(tmp_path: Path) -> None:
    from tests.test_config_claims import _model

    path = _model(tmp_path, num_hidden_layers=32)
    with open_checkpoint(str(path)) as ck:
        ck.warnings.append("the file is also a ZIP archive (polyglot)")
        report = build_report(ck, run(ck, use_cache=False))
    tables = {b.title: b for b in report.blocks if isinstance(b, KeyValues) and b.title}
    architecture = dict(tables["Architecture"].rows)
    assert architecture["layers"] == "2"
    assert architecture["contradiction"] == (
        "config.json says 32 layers; the tensors have 2; the tensors' figure is used")
    assert tables["Safety"].rows == [("how it was read", "data only: read without running code"),
                                     ("warning", "the file is also a ZIP archive (polyglot)")]
