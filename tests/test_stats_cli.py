"""`main.py stats`: the JSON contract, groups, the table, exit codes; and every good corpus file analysed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import main
from core.formats import open_checkpoint
from core.stats import run
from tests.corpus import CORPUS, truth
from tests.test_stats_values import check

REPO = Path(__file__).resolve().parents[1]
FIELDS = {"name", "dtype", "count", "mean", "std", "min", "max", "abs_max", "l2", "zeros", "nan", "pos_inf",
          "neg_inf", "skewness", "kurtosis", "beyond_6_sigma", "percentiles", "histogram"}


pytestmark = pytest.mark.usefixtures("cache_dir")  # a fresh statistics cache for every test


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    tensors: dict[str, torch.Tensor] = {}
    for layer in range(3):
        for proj in ("q_proj", "down_proj"):
            mod = "self_attn" if proj == "q_proj" else "mlp"
            tensors[f"model.layers.{layer}.{mod}.{proj}.weight"] = torch.from_numpy(
                rng.normal(0, 0.05, (32, 48)).astype(np.float32)).bfloat16()
    tensors["model.embed_tokens.weight"] = torch.from_numpy(rng.normal(0, 1, (100, 32)).astype(np.float32))
    special = np.array([np.nan, np.inf, -np.inf, 1.0, 2.0], np.float32)
    tensors["model.layers.0.input_layernorm.weight"] = torch.from_numpy(special)
    tensors["model.position_ids"] = torch.arange(16)
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    values = {k: v.float().numpy().astype(np.float64) if v.is_floating_point() else v.numpy().astype(np.float64)
              for k, v in tensors.items()}
    return path, values


def stats_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main.main(["stats", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out, parse_constant=_no_constants)


def _no_constants(name: str) -> None:
    raise AssertionError(f"bare {name} in JSON output")


@pytest.mark.slow
def test_json_contract_in_a_subprocess(model: tuple[Path, dict], cache_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path, values = model
    env = {**os.environ, "WEIGHTSCOPE_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, "main.py", "stats", str(path), "--json", "--device", "cpu"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress display when stderr is not a terminal
    out = json.loads(proc.stdout, parse_constant=_no_constants)
    assert set(out) == {"device", "seconds", "bytes_read", "tensors", "model", "findings"}
    assert out["findings"] == [f for f in out["findings"] if set(f) == {"kind", "severity", "tensor", "message", "at"}]
    assert out["device"].startswith("cpu") and isinstance(out["seconds"], float) and out["seconds"] >= 0
    assert out["bytes_read"] == 6 * 32 * 48 * 2 + 100 * 32 * 4 + 5 * 4 + 16 * 8
    assert [t["name"] for t in out["tensors"]] == [t.name for t in open_checkpoint(str(path)).tensors]
    for entry in out["tensors"]:
        assert set(entry) >= FIELDS
        assert list(entry["percentiles"]) == ["0.1", "1", "5", "25", "50", "75", "95", "99", "99.9"]
        assert len(entry["histogram"]["edges"]) == len(entry["histogram"]["counts"]) + 1 == 257
        assert sum(entry["histogram"]["counts"]) == entry["count"]
    norm = next(t for t in out["tensors"] if t["name"] == "model.layers.0.input_layernorm.weight")
    assert (norm["count"], norm["nan"], norm["pos_inf"], norm["neg_inf"], norm["min"], norm["max"]) == (
        2, 1, 1, 1, 1.0, 2.0)
    floats = np.concatenate([v.ravel() for k, v in values.items() if k != "model.position_ids"])
    assert out["model"]["count"] == int(np.isfinite(floats).sum())
    assert out["model"]["mean"] == pytest.approx(floats[np.isfinite(floats)].mean(), rel=1e-9)
    # in this process (same cache folder; this file is under MIN_CACHED_BYTES, which the tests set to 0 here):
    # computed again and cached, then from the cache: the same figures every time
    first = stats_json(capsys, str(path))
    second = stats_json(capsys, str(path))
    assert first["bytes_read"] == out["bytes_read"] and second["bytes_read"] == 0
    for again in (first, second):
        assert again["tensors"] == out["tensors"] and again["model"] == out["model"]


def test_nan_and_inf_are_strings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.safetensors"
    save_file({"nan": torch.full((4,), float("nan")), "one": torch.tensor([float("inf"), 3.0])}, str(path))
    out = stats_json(capsys, str(path))
    by = {t["name"]: t for t in out["tensors"]}
    assert by["nan"]["mean"] == "NaN" and by["nan"]["nan"] == 4 and by["nan"]["histogram"] == {"edges": [],
                                                                                               "counts": []}
    assert by["one"]["kurtosis"] == "NaN" and by["one"]["pos_inf"] == 1 and by["one"]["max"] == 3.0
    big = tmp_path / "b.safetensors"
    save_file({"w": torch.tensor([1.5e308, -1.5e308, 1.5e308, 1e300], dtype=torch.float64)}, str(big))
    assert stats_json(capsys, str(big))["tensors"][0]["l2"] == "Infinity"


def test_tensor_and_match_selection(model: tuple[Path, dict], capsys: pytest.CaptureFixture[str]) -> None:
    path, values = model
    name = "model.layers.1.mlp.down_proj.weight"
    out = stats_json(capsys, str(path), "--tensor", name, "--tensor", "model.embed_tokens.weight")
    assert [t["name"] for t in out["tensors"]] == [name, "model.embed_tokens.weight"]
    assert out["tensors"][0]["mean"] == pytest.approx(values[name].mean(), rel=1e-12)
    out = stats_json(capsys, str(path), "--match", "*.q_proj.*")
    assert [t["name"] for t in out["tensors"]] == [f"model.layers.{i}.self_attn.q_proj.weight" for i in range(3)]
    q = np.concatenate([values[t["name"]].ravel() for t in out["tensors"]])
    assert out["model"]["count"] == q.size and out["model"]["mean"] == pytest.approx(q.mean(), rel=1e-12)


def test_group_role_and_layer(model: tuple[Path, dict], capsys: pytest.CaptureFixture[str]) -> None:
    path, values = model
    out = stats_json(capsys, str(path), "--group", "role", "--bins", "32")
    roles = {t["name"]: t for t in out["tensors"]}
    assert {"attention.q", "mlp.down", "embedding", "norm"} <= set(roles)
    down = np.concatenate([values[f"model.layers.{i}.mlp.down_proj.weight"].ravel() for i in range(3)])
    entry = roles["mlp.down"]
    assert entry["tensors"] == 3 and entry["count"] == down.size and len(entry["histogram"]["counts"]) == 32
    assert entry["mean"] == pytest.approx(down.mean(), rel=1e-12)
    assert entry["percentiles"]["50"] == float(np.percentile(down, 50))  # bf16: exact
    assert entry["histogram"]["counts"] == np.histogram(down, 32, range=(down.min(), down.max()))[0].tolist()

    out = stats_json(capsys, str(path), "--group", "layer")
    names = [t["name"] for t in out["tensors"]]
    assert names == ["layer 0", "layer 1", "layer 2", "outside layers"]
    layer1 = np.concatenate([values[n].ravel() for n in values if ".layers.1." in n])
    assert out["tensors"][1]["count"] == layer1.size
    assert out["tensors"][1]["std"] == pytest.approx(layer1.std(), rel=1e-12)

    model_only = stats_json(capsys, str(path), "--group", "model")
    assert [t["name"] for t in model_only["tensors"]] == ["model"]
    assert model_only["tensors"][0] == model_only["model"]


def test_readable_table(model: tuple[Path, dict], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = model
    assert main.main(["stats", str(path), "--no-cache"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines[1].startswith("device cpu")
    assert any(line.startswith("model.layers.2.mlp.down_proj.weight") for line in lines)
    findings = lines.index(next(line for line in lines if line.startswith("Findings: ")))
    assert any(line.startswith("model ") for line in lines[:findings])
    assert "1 NaN, 1 +Inf, 1 -Inf of 5 values at (0,)" in "\n".join(lines[findings:])


@pytest.mark.parametrize("argv, message", [
    (["--tensor", "missing.weight"], "no tensor named 'missing.weight'"),
    (["--match", "zzz*"], "no tensor name matches"),
    (["--device", "tpu"], "unknown device"),
    (["--device", "cuda:7"], "cuda:7"),
    (["--bins", "0"], "--bins"),
])
def test_refusals_exit_2(model: tuple[Path, dict], capsys: pytest.CaptureFixture[str], argv: list[str],
                         message: str) -> None:
    path, _ = model
    if argv[:2] == ["--device", "cuda:7"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    assert main.main(["stats", str(path), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and message in captured.err and captured.err.count("\n") == 1


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["stats", str(tmp_path / "absent.safetensors")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# --------------------------------------------------------------------------- the shared corpus
@pytest.mark.parametrize("entry", truth(), ids=lambda e: e["file"])
def test_corpus_good_files(entry: dict) -> None:
    path = CORPUS / entry["file"]
    if path.suffix in (".pt", ".pth", ".bin"):
        pytest.importorskip("core.formats.pytorch_format", reason="PyTorch reader not committed yet")
    with open_checkpoint(str(path)) as ck:
        result = run(ck, use_cache=False)
        analysed = [t for t in ck.tensors if t.name in result.summaries]
        assert result.bytes_read == sum(t.nbytes for t in analysed)
        assert {t.name for t in ck.tensors if t.dtype not in ("C64", "C128")} == set(result.summaries)
        assert sum(result.summaries[t.name].total for t in analysed) == sum(t.elements for t in analysed)
        for t in analysed:
            ts = result.stats(t.name)
            if t.elements and t.elements <= 100_000 and not t.dtype.startswith(("Q", "IQ", "TQ", "MXFP")):
                check(ts, ck.read(t).astype(np.float64), exact=False)
            assert math.isnan(ts.mean) or ts.count > 0
        if any(t.is_float for t in analysed):
            assert result.model() is not None


def test_complex_tensors_are_reported_as_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.safetensors"
    save_file({"freqs": torch.ones(4, dtype=torch.complex64), "w": torch.ones(3)}, str(path))
    out = stats_json(capsys, str(path))
    assert [t["name"] for t in out["tensors"]] == ["w"] and out["skipped"] == {"freqs": "complex values"}
    assert main.main(["stats", str(path), "--tensor", "freqs"]) == 0
    assert "not analysed: 1 tensor(s) (complex values)" in capsys.readouterr().out


def test_findings_name_the_broken_tensors_with_coordinates(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`stats --json` lists the problems: NaN with the first coordinate, an all-zero matrix; text lists them too."""
    rng = np.random.default_rng(8)
    broken = rng.standard_normal((16, 32)).astype(np.float32)
    broken[5, 7] = np.nan
    path = tmp_path / "broken.safetensors"
    from safetensors.numpy import save_file as save_numpy

    save_numpy({"a.weight": broken, "b.weight": np.zeros((8, 8), dtype=np.float32),
               "c.weight": rng.standard_normal((8, 8)).astype(np.float32)}, str(path))
    out = stats_json(capsys, str(path), "--no-cache")
    by_kind = {(f["kind"], f["tensor"]): f for f in out["findings"]}
    nan = by_kind[("non_finite", "a.weight")]
    assert nan["severity"] == "error" and nan["at"] == [[5, 7]] and "1 NaN" in nan["message"]
    assert ("all_zero", "b.weight") in by_kind
    assert not any(f["tensor"] == "c.weight" and f["severity"] == "error" for f in out["findings"])
    from core.findings import findings_json
    from core.stats import run as analyse

    with open_checkpoint(str(path)) as checkpoint:  # the JSON's findings, made from the statistics it wrote,
        assert out["findings"] == findings_json(checkpoint, analyse(checkpoint, use_cache=False))  # are the same
    assert main.main(["stats", str(path), "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert "Findings: 2 problems" in text and "a.weight: 1 NaN" in text and "at (5, 7)" in text
