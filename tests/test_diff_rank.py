"""`diff --rank`: the singular values of B - A against numpy's SVD of the dense float64 difference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import main
from core.diff import run
from core.diff_rank import TOP_VALUES, singular_summary
from core.errors import CheckpointError

EPS_SCALE = 1e-7  # Gram eigenvalues are exact to ~eps * sigma_1^2: small singular values to ~1e-8 * sigma_1


def planted(rng: np.random.Generator, shape: tuple[int, int], rank: int, scale: float = 0.1) -> tuple:
    """A float32 matrix and the same plus a rank-``rank`` update, rounded to float32."""
    a = rng.normal(size=shape).astype(np.float32)
    update = rng.normal(size=(shape[0], rank)) @ rng.normal(size=(rank, shape[1]))
    return a, (a + scale * update).astype(np.float32)


def dense_truth(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    """Singular values (largest first) of the float64 difference, and rank90 by its definition."""
    sv = np.linalg.svd(b.astype(np.float64) - a.astype(np.float64), compute_uv=False)
    energy = sv**2
    held = np.cumsum(energy) / energy.sum()
    return sv, int(np.argmax(held >= 0.9) + 1)


def assert_spectrum(got: list[float], rank90: int, a: np.ndarray, b: np.ndarray, planted_rank: int) -> None:
    sv, want_rank90 = dense_truth(a, b)
    assert len(got) == min(TOP_VALUES, min(a.shape))
    assert rank90 == want_rank90 <= planted_rank
    np.testing.assert_allclose(got[:planted_rank], sv[:planted_rank], rtol=1e-9)
    np.testing.assert_allclose(got, sv[:len(got)], rtol=0, atol=EPS_SCALE * sv[0])  # the float32 rounding noise
    assert got == sorted(got, reverse=True)


@pytest.fixture
def shapes_pair(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A wide and a tall matrix with planted rank-4 updates, a square frozen one, a vector and a 3-D tensor."""
    rng = np.random.default_rng(11)
    a, b = {}, {}
    a["wide.weight"], b["wide.weight"] = planted(rng, (24, 90), 4)
    a["tall.weight"], b["tall.weight"] = planted(rng, (100, 20), 4)
    a["frozen.weight"] = rng.normal(size=(16, 16)).astype(np.float32)
    b["frozen.weight"] = a["frozen.weight"].copy()
    a["bias"] = rng.normal(size=9).astype(np.float32)
    b["bias"] = a["bias"] + 1
    a["cube.weight"] = rng.normal(size=(2, 3, 4)).astype(np.float32)
    b["cube.weight"] = a["cube.weight"] * 2
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(a, str(pa))
    save_file(b, str(pb))
    return pa, pb, a, b


@pytest.mark.parametrize("chunk, band", [(1 << 21, 1 << 22), (60, 48), (1, 1)])
def test_planted_rank_4_update_matches_dense_svd(shapes_pair, monkeypatch: pytest.MonkeyPatch, chunk: int,
                                                 band: int) -> None:
    pa, pb, a, b = shapes_pair
    monkeypatch.setattr("core.diff.WIDE_BAND_ELEMENTS", band)  # wide: 1, 2 or 90 column bands
    monkeypatch.setattr("core.diff.BAND_READ_ELEMENTS", chunk)  # their rows read 1, some or all at a time
    result = run(pa, pb, rank=True, device="cpu", chunk_elements=chunk)
    assert result.device == "cpu" and result.rank
    for name in ("wide.weight", "tall.weight"):
        td = result.tensors[name]
        assert_spectrum(td.top_singular_values, td.rank90, a[name], b[name], 4)
        assert td.rank_note is None
    frozen = result.tensors["frozen.weight"]
    assert frozen.rank90 == 0 and frozen.top_singular_values == [0.0] * 16
    assert result.tensors["bias"].rank90 is None and result.tensors["bias"].rank_note == "not a 2-D matrix (1-D)"
    assert result.tensors["cube.weight"].top_singular_values is None


def test_band_reading_keeps_every_other_figure(shapes_pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Column bands read the values in another order: the figures (and the place of the maximum) stay."""
    pa, pb, _, _ = shapes_pair
    monkeypatch.setattr("core.diff.WIDE_BAND_ELEMENTS", 48)
    plain, ranked = run(pa, pb), run(pa, pb, rank=True, device="cpu", chunk_elements=77)
    for name, td in plain.tensors.items():
        got, want = ranked.tensors[name].sums, td.sums
        assert (got.count, got.identical, got.max_abs, got.max_at) == (want.count, want.identical, want.max_abs,
                                                                       want.max_at)
        assert got.ss_d == pytest.approx(want.ss_d, rel=1e-12) and got.s_ab == pytest.approx(want.s_ab, rel=1e-12)
    assert plain.tensors["wide.weight"].rank90 is None  # without rank: no figure, and no note either
    assert plain.tensors["wide.weight"].rank_note is None


def test_torch_engine_on_the_cpu_agrees_with_numpy(shapes_pair) -> None:
    pa, pb, _, _ = shapes_pair
    numpy_result = run(pa, pb, rank=True, device="cpu")
    torch_result = run(pa, pb, rank=True, device="cpu", gram_impl="torch")
    assert torch_result.device == "torch-cpu"
    for name in ("wide.weight", "tall.weight"):
        want, got = numpy_result.tensors[name], torch_result.tensors[name]
        assert got.rank90 == want.rank90
        sigma1 = want.top_singular_values[0]
        np.testing.assert_allclose(got.top_singular_values[:4], want.top_singular_values[:4], rtol=1e-9)
        np.testing.assert_allclose(got.top_singular_values, want.top_singular_values, atol=EPS_SCALE * sigma1)


def test_a_full_rank_change_needs_many_directions(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 30)).astype(np.float32)
    b = (a + rng.normal(size=(40, 30))).astype(np.float32)
    save_file({"w": a}, str(tmp_path / "a.safetensors"))
    save_file({"w": b}, str(tmp_path / "b.safetensors"))
    td = run(tmp_path / "a.safetensors", tmp_path / "b.safetensors", rank=True, device="cpu").tensors["w"]
    sv, rank90 = dense_truth(a, b)
    assert td.rank90 == rank90 > 10
    np.testing.assert_allclose(td.top_singular_values, sv[:16], rtol=1e-9)


def test_gram_budget_and_nonfinite_values_give_a_reason(shapes_pair, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pa, pb, _, _ = shapes_pair
    monkeypatch.setattr("core.diff_rank.MAX_GRAM_ORDER", 20)
    result = run(pa, pb, rank=True, device="cpu")
    assert result.tensors["wide.weight"].rank90 is None
    assert result.tensors["wide.weight"].rank_note == "its smaller side (24) is above the Gram budget of 20"
    assert result.tensors["tall.weight"].rank90 is not None  # 20 columns: within the budget
    a = np.ones((5, 6), np.float32)
    b = a.copy()
    b[2, 3] = np.nan
    save_file({"w": a}, str(tmp_path / "na.safetensors"))
    save_file({"w": b}, str(tmp_path / "nb.safetensors"))
    td = run(tmp_path / "na.safetensors", tmp_path / "nb.safetensors", rank=True, device="cpu").tensors["w"]
    assert td.rank90 is None and "NaN or infinite" in td.rank_note
    assert td.sums.nonfinite == 1  # the other figures still cover the finite pairs


def test_singular_summary_edges() -> None:
    assert singular_summary(np.array([0.0, 0.0])) == ([0.0, 0.0], 0)
    assert singular_summary(np.array([-1e-30, 9.0, 1.0])) == ([3.0, 1.0, 0.0], 1)  # 90% exactly: one direction
    top, r90 = singular_summary(np.arange(40, dtype=np.float64))
    assert len(top) == TOP_VALUES and top[0] == math.sqrt(39) and r90 > 16  # rank90 counts all, not just the top


def test_unknown_or_absent_device_is_refused(shapes_pair, capsys: pytest.CaptureFixture[str]) -> None:
    pa, pb, _, _ = shapes_pair
    with pytest.raises(CheckpointError, match="unknown device"):
        run(pa, pb, rank=True, device="tpu")
    assert main.main(["diff", str(pa), str(pb), "--rank", "--device", "gpu0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown device 'gpu0'") and err.count("\n") == 1


def test_cli_rank_json_and_text(shapes_pair, capsys: pytest.CaptureFixture[str]) -> None:
    pa, pb, a, b = shapes_pair
    assert main.main(["diff", str(pa), str(pb), "--rank", "--device", "cpu", "--json", "--no-cache"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["device"] == "cpu" and doc["rank"] is True and doc["cached"] is False
    by_name = {t["name"]: t for t in doc["tensors"]}
    wide = by_name["wide.weight"]
    assert_spectrum(wide["top_singular_values"], wide["rank90"], a["wide.weight"], b["wide.weight"], 4)
    assert by_name["bias"]["top_singular_values"] is None and by_name["bias"]["rank90"] is None
    assert main.main(["diff", str(pa), str(pb), "--json", "--no-cache"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert all(t["top_singular_values"] is None and t["rank90"] is None for t in plain["tensors"])
    assert main.main(["diff", str(pa), str(pb), "--rank", "--device", "cpu", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "device cpu" in out.splitlines()[2] and "rank90" in out.splitlines()[4]
    row = next(line for line in out.splitlines() if line.startswith("tall.weight "))
    sv, rank90 = dense_truth(a["tall.weight"], b["tall.weight"])
    cells = row.split()
    assert int(cells[-4]) == rank90 and [float(x) for x in cells[-3:]] == pytest.approx(sv[:3], rel=1e-3)


@pytest.mark.parametrize("band", [1 << 22, 40])
def test_rank_across_a_llama_cpp_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, band: int) -> None:
    """q/k rows permuted back before the Gram (k_proj is wide: column bands); an unchanged F16 conversion has
    rank90 0 everywhere, a Q8_0 one the singular values of its dequantisation error."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    from tests.test_diff import HEADS, KV_HEADS, llama_cpp_permute, llama_weights, write_gguf

    monkeypatch.setattr("core.diff.WIDE_BAND_ELEMENTS", band)
    weights = llama_weights(np.random.default_rng(8))
    save_file(weights, str(tmp_path / "model.safetensors"))
    write_gguf(tmp_path / "model.gguf", weights)
    unchanged = run(tmp_path / "model.safetensors", tmp_path / "model.gguf", rank=True, device="cpu")
    matrices = [td for td in unchanged.tensors.values() if len(td.a.shape) == 2]
    assert len(matrices) == 2 * 7 + 2 and all(td.rank90 == 0 for td in matrices)
    write_gguf(tmp_path / "model.Q8_0.gguf", weights, quant=GGMLQuantizationType.Q8_0)
    result = run(tmp_path / "model.safetensors", tmp_path / "model.Q8_0.gguf", rank=True, device="cpu",
                 chunk_elements=64)
    for name in ("model.layers.1.self_attn.k_proj.weight", "model.layers.0.self_attn.q_proj.weight",
                 "model.layers.0.mlp.down_proj.weight"):
        w = weights[name]
        heads = HEADS if "q_proj" in name else KV_HEADS
        permuted = name.endswith(("q_proj.weight", "k_proj.weight"))
        back = dequantize(quantize(llama_cpp_permute(w, heads) if permuted else w, GGMLQuantizationType.Q8_0),
                          GGMLQuantizationType.Q8_0)
        if permuted:
            back = back[np.argsort(llama_cpp_permute(np.arange(w.shape[0])[:, None], heads)[:, 0])]
        td = result.tensors[name]
        sv, rank90 = dense_truth(w, back)
        assert td.rank90 == rank90, name
        np.testing.assert_allclose(td.top_singular_values, sv[:len(td.top_singular_values)], rtol=1e-9)


def test_auto_on_a_machine_without_a_gpu_does_not_import_torch(shapes_pair) -> None:
    """torch's import costs about 2 s: the CPU path (numpy) must not pay it."""
    import subprocess
    import sys

    from core.compute import accelerator_possible

    if accelerator_possible():
        pytest.skip("this machine could have a GPU: auto may rightly import torch")
    pa, pb, _, _ = shapes_pair
    code = ("import sys; from core.diff import run; r = run(sys.argv[1], sys.argv[2], rank=True); "
            "print(r.device, r.tensors['tall.weight'].rank90, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(pa), str(pb)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert out[0] == "cpu" and 1 <= int(out[1]) <= 4 and out[2] == "False"


def test_an_absent_accelerator_is_one_error_line(shapes_pair, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    pa, pb, _, _ = shapes_pair
    assert main.main(["diff", str(pa), str(pb), "--rank", "--device", "cuda", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device 'cuda' is not available") and err.count("\n") == 1
