"""Spectral metrics: against WeightWatcher 0.7.7's own results (tests/data/spectra_reference.npz, made by
tests/data/make_spectra_reference.py) and against numpy's SVD of matrices the tests write, in every layout,
dtype and device path; reasons for matrices that cannot be analysed; the cache; the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import main
from core.checkpoint import TensorInfo
from core.eigen import symmetric_eigenvalues
from core.errors import CancelledError
from core.gram import matrix_layout
from core.powerlaw_fit import fit_power_law
from core.spectra import analyze_spectra, gram_message, run_spectra
from core.spectra_metrics import compute_metrics

REFERENCE = Path(__file__).parent / "data" / "spectra_reference.npz"
RTOL = 1e-6


def reference() -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]], dict[str, float]]:
    ref = np.load(REFERENCE)
    columns = [str(c) for c in ref["columns"]]
    weights = {k.split("/", 1)[1]: ref[k] for k in ref.files if k.startswith("weight/")}
    metrics = {name: dict(zip(columns, ref[f"metrics/{name}"], strict=True)) for name in weights}
    summary = dict(zip((str(c) for c in ref["summary_columns"]), ref["summary"], strict=True))
    return weights, metrics, summary


def svd_evals(w: np.ndarray) -> np.ndarray:
    """Independent truth: squared singular values by numpy's float64 SVD."""
    return np.sort(np.linalg.svd(w.astype(np.float64), compute_uv=False) ** 2)


def close(got: float, want: float, rtol: float = RTOL) -> bool:
    return abs(got - want) <= rtol * max(abs(want), 1e-300)


def write(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


# --------------------------------------------------------------------------- WeightWatcher's own figures
def test_every_metric_matches_weightwatcher(tmp_path: Path) -> None:
    weights, expected, summary = reference()
    result = run_spectra(write(tmp_path / "ref.safetensors", weights), use_cache=False, device="cpu")
    assert set(result.matrices) == set(weights)
    for name, want in expected.items():
        m = result.matrices[name].metrics
        assert m is not None, result.matrices[name].reason
        for column, value in want.items():
            got = m.n_evals if column == "num_evals" else getattr(m, column)
            assert close(got, value), (name, column, got, value)
    for key, value in summary.items():
        assert close(result.summary()[key], value), (key, result.summary()[key], value)


def test_rank_counts_float32_rounding_noise_as_weightwatcher_does(tmp_path: Path) -> None:
    """A product of rank-20 factors stored as float32: its other 52 singular values are rounding noise (~1e-8 of
    the largest, lost in the Gram matrix's eigenvalues) yet above numpy's float64 tolerance, so the rank is
    numpy's matrix_rank of the float64 matrix (72, WeightWatcher's too), and the entropy uses that rank."""
    weights, _, _ = reference()
    w = weights["low_rank"]
    result = run_spectra(write(tmp_path / "low.safetensors", {"w": w}), use_cache=False, device="cpu")
    m = result.matrices["w"].metrics
    assert m is not None and m.matrix_rank == np.linalg.matrix_rank(w.astype(np.float64)) == 72
    ev = svd_evals(w)
    p = ev / ev.sum() + 1e-10
    assert close(m.entropy, -np.sum(p * np.log(p)) / np.log(72 + 1e-10))


# --------------------------------------------------------------------------- eigenvalues against the SVD
@pytest.mark.parametrize("shape", [(300, 70), (70, 300), (129, 129), (1, 40)])
@pytest.mark.parametrize("block_bytes", [1 << 26, 4000])
def test_eigenvalues_equal_squared_singular_values(tmp_path: Path, shape: tuple[int, int], block_bytes: int) -> None:
    """Tall (one pass), wide (pairs of row blocks) and square matrices, in one block or many."""
    w = (np.random.default_rng(1).standard_normal(shape) * 0.03).astype(np.float32)
    path = write(tmp_path / "m.safetensors", {"w": w})
    result = run_spectra(path, use_cache=False, device="cpu", block_bytes=block_bytes)
    spectrum = result.matrices["w"]
    if min(shape) < 8:
        assert spectrum.reason == f"too few eigenvalues for a fit: {min(shape)} (at least 8)"
        return
    want = svd_evals(w)
    assert spectrum.evals is not None and len(spectrum.evals) == min(shape)
    np.testing.assert_allclose(spectrum.evals, want, rtol=0, atol=1e-12 * want[-1])
    assert close(spectrum.metrics.lambda_max, want[-1], 1e-12)
    assert close(spectrum.metrics.log_norm, math.log10(float((w.astype(np.float64) ** 2).sum())), 1e-12)


def test_conv_kernels_are_pooled_slices_with_weightwatchers_normalisation(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    torch_layout = rng.standard_normal((24, 10, 3, 3)).astype(np.float32)  # (out, in, kh, kw)
    kernel_first = rng.standard_normal((2, 3, 40, 24)).astype(np.float32)  # kernel dims first: slices W[i, j]
    path = write(tmp_path / "conv.safetensors", {"a": torch_layout, "b": kernel_first})
    result = run_spectra(path, use_cache=False, device="cpu", block_bytes=3000)
    want_a = np.sort(np.concatenate([svd_evals(torch_layout[:, :, i, j]) for i in range(3) for j in range(3)])) / 2
    want_b = np.sort(np.concatenate([svd_evals(kernel_first[i, j]) for i in range(2) for j in range(3)])) / 2
    for name, want in (("a", want_a), ("b", want_b)):
        got = result.matrices[name].evals
        assert got is not None and len(got) == len(want)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * want[-1])
    assert result.matrices["a"].metrics.matrix_rank == 90


def test_bf16_matrix_is_analysed_as_its_stored_values(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    w = torch.randn(160, 48, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    save_torch({"w": w}, str(tmp_path / "bf16.safetensors"))
    result = run_spectra(tmp_path / "bf16.safetensors", use_cache=False, device="cpu")
    want = svd_evals(w.float().numpy())
    np.testing.assert_allclose(result.matrices["w"].evals, want, rtol=0, atol=1e-12 * want[-1])


def test_gguf_q8_0_matrix_is_dequantised_block_by_block(tmp_path: Path) -> None:
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    from tests.test_stats_values import write_gguf

    x = (np.random.default_rng(4).standard_normal((96, 256)) * 0.02).astype(np.float32)
    q8 = quants.quantize(x, Q.Q8_0)
    write_gguf(tmp_path / "q8.gguf", {"blk.0.ffn_up.weight": (q8, Q.Q8_0)})
    result = run_spectra(tmp_path / "q8.gguf", use_cache=False, device="cpu", block_bytes=20000)
    spectrum = result.matrices["blk.0.ffn_up.weight"]
    assert spectrum.shape == (96, 256)
    want = svd_evals(quants.dequantize(q8, Q.Q8_0).reshape(96, 256))
    np.testing.assert_allclose(spectrum.evals, want, rtol=0, atol=1e-12 * want[-1])


def test_numpy_and_torch_cpu_paths_agree(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    weights, _, _ = reference()
    path = write(tmp_path / "ref.safetensors", weights)
    a = run_spectra(path, use_cache=False, device="cpu", block_bytes=5000)
    b = run_spectra(path, use_cache=False, device="cpu", impl="torch", block_bytes=5000)
    assert a.device == "cpu" and b.device == "cpu"
    for name in weights:
        ma, mb = a.matrices[name].metrics.to_json(), b.matrices[name].metrics.to_json()
        for key, value in ma.items():
            if isinstance(value, float):
                assert close(mb[key], value, 1e-9), (name, key)
            else:
                assert mb[key] == value, (name, key)


def test_symmetric_solver_matches_numpy_on_a_large_matrix() -> None:
    x = np.random.default_rng(5).standard_normal((600, 300))
    g = x.T @ x
    want = np.linalg.eigvalsh(g)
    np.testing.assert_allclose(symmetric_eigenvalues(g.copy()), want, rtol=0, atol=1e-11 * want[-1])


def test_power_law_fit_recovers_a_known_exponent() -> None:
    rng = np.random.default_rng(6)
    alpha, xmin = 2.5, 1.0
    sample = xmin * (1 - rng.random(4000)) ** (-1 / (alpha - 1))  # inverse CDF of a continuous power law
    fit = fit_power_law(sample)
    assert fit is not None and abs(fit.alpha - alpha) < 0.1 and fit.D < 0.03
    assert fit_power_law(np.array([1.0])) is None and fit_power_law(np.zeros(50)) is None


def test_verdicts_follow_weightwatchers_ranges() -> None:
    from core.spectra_metrics import verdict

    assert verdict(1.5).startswith("over-trained")
    assert verdict(3.0) == "well trained"
    assert verdict(7.0) == "under-trained"
    assert verdict(9.0) == "under-trained (fit unreliable)"
    assert verdict(None) == "no power-law fit"


# --------------------------------------------------------------------------- reasons, size, progress, cancel
def test_matrices_that_cannot_be_analysed_say_why(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    nan = rng.standard_normal((64, 32)).astype(np.float32)
    nan.reshape(-1)[rng.choice(nan.size, 12, replace=False)] = np.nan
    inf = rng.standard_normal((64, 32)).astype(np.float32)
    inf[3, 4] = np.inf
    good = rng.standard_normal((64, 32)).astype(np.float32)
    tensors = {"nan": nan, "inf": inf, "zero": np.zeros((40, 20), np.float32), "vector": np.ones(50, np.float32),
               "narrow": rng.standard_normal((100, 4)).astype(np.float32), "ints": np.ones((30, 30), np.int64),
               "good": good}
    path = write(tmp_path / "bad.safetensors", tensors)
    result = run_spectra(path, list(tensors), use_cache=False, device="cpu", block_bytes=3000)
    reasons = {name: m.reason for name, m in result.matrices.items()}
    assert reasons == {"nan": "12 NaN values", "inf": "1 Inf value", "zero": "all values are zero",
                       "vector": "not a matrix (1-D)", "narrow": "too few eigenvalues for a fit: 4 (at least 8)",
                       "ints": "not floating point (I64)", "good": None}
    assert result.matrices["nan"].to_json()["reason"] == "not analysed: 12 NaN values"
    assert result.summary()["matrices"] == 1 and result.summary()["not_analysed"] == 6
    default = run_spectra(path, use_cache=False, device="cpu")  # default: 2-D and 4-D parameters only
    assert "vector" not in default.matrices and "good" in default.matrices


def test_no_matrix_is_too_large_and_the_progress_says_what_it_costs() -> None:
    t = TensorInfo(name="w", shape=(16384, 53248), dtype="BF16", elements=16384 * 53248, nbytes=2 * 16384 * 53248,
                   file="x", offset=0)
    assert gram_message(matrix_layout(t)) == "Gram 16384² float64 = 2.00 GiB"
    conv = TensorInfo(name="c", shape=(64, 32, 3, 3), dtype="F32", elements=64 * 32 * 9, nbytes=4 * 64 * 32 * 9,
                      file="x", offset=0)
    assert gram_message(matrix_layout(conv)) == "9 × Gram 32² float64 = 72.00 KiB"


def test_progress_and_cancel(tmp_path: Path) -> None:
    w = np.random.default_rng(8).standard_normal((400, 64)).astype(np.float32)
    path = write(tmp_path / "m.safetensors", {"a": w, "b": w.T.copy()})
    stop = False
    seen = []
    gen = analyze_spectra(path, use_cache=False, device="cpu", block_bytes=20000, should_stop=lambda: stop)
    seen.append(next(gen))
    stop = True
    with pytest.raises(CancelledError):
        for item in gen:
            seen.append(item)
    assert seen[0].message == "Gram 64² float64 = 32.00 KiB" and 0 < seen[0].fraction < 0.5
    assert not seen[-1].result.matrices  # cancelled inside the first matrix
    items = list(analyze_spectra(path, use_cache=False, device="cpu", block_bytes=20000))
    fractions = [i.fraction for i in items]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(items) > 4


# --------------------------------------------------------------------------- cache
def test_cached_figures_equal_fresh_ones_and_a_changed_file_is_recomputed(tmp_path: Path, cache_dir: Path) -> None:
    rng = np.random.default_rng(9)
    path = write(tmp_path / "m.safetensors", {"w": rng.standard_normal((120, 50)).astype(np.float32),
                                              "nan": np.full((20, 20), np.nan, np.float32)})
    fresh = run_spectra(path, device="cpu")
    again = run_spectra(path, device="cpu")
    assert fresh.device == "cpu" and again.device == "cache" and again.matrices["w"].cached
    assert again.matrices["w"].metrics == fresh.matrices["w"].metrics
    assert again.matrices["nan"].reason == fresh.matrices["nan"].reason == "400 NaN values"
    assert list((cache_dir / "weightscope-spectra").glob("*.npz"))
    write(path, {"w": rng.standard_normal((120, 50)).astype(np.float32),  # same size, new values
                 "nan": np.full((20, 20), np.nan, np.float32)})
    changed = run_spectra(path, device="cpu")
    assert changed.device == "cpu" and not changed.matrices["w"].cached
    assert changed.matrices["w"].metrics == run_spectra(path, device="cpu", use_cache=False).matrices["w"].metrics
    assert changed.matrices["w"].metrics != fresh.matrices["w"].metrics


# --------------------------------------------------------------------------- the command
def test_command_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights, expected, _ = reference()
    hostile = "evil\x1b[31m\u202e.weight"
    path = write(tmp_path / "ref.safetensors", {**weights, hostile: weights["tall"], "bias": np.ones(8, np.float32)})
    assert main.main(["spectra", str(path), "--json", "--no-cache", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "cpu" and set(out["summary"]) >= {"alpha", "log_norm", "stable_rank", "verdicts"}
    rows = {m["name"]: m for m in out["matrices"]}
    assert "bias" not in rows and rows[hostile]["alpha"] == rows["tall"]["alpha"]
    assert set(rows["heavy"]) >= {"name", "shape", "n_evals", "lambda_max", "log_norm", "log_spectral_norm",
                                  "stable_rank", "alpha", "xmin", "D", "sigma", "num_pl_spikes", "alpha_weighted",
                                  "log_alpha_norm", "matrix_rank", "entropy", "verdict"}
    assert close(rows["heavy"]["alpha"], expected["heavy"]["alpha"]) and rows["heavy"]["shape"] == [256, 128]
    assert main.main(["spectra", str(path), "--match", "*a*", "--tensor", "bias", "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert "bias" in text and "not analysed: not a matrix (1-D)" in text
    assert main.main(["spectra", str(path), "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert "\x1b" not in text and "\u202e" not in text and "evil" in text
    assert "model averages (8 matrices)" in text and "well trained" in text


@pytest.mark.parametrize("argv, message", [
    (["--tensor", "nope"], "no tensor named 'nope'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--match", "zzz*"], "no tensor name matches"),
])
def test_command_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                       message: str) -> None:
    path = write(tmp_path / "m.safetensors", {"w": np.ones((10, 10), np.float32)})
    assert main.main(["spectra", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_command_refuses_a_file_that_is_not_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\xff" * 100)
    assert main.main(["spectra", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.safetensors"]


def test_metrics_of_a_known_spectrum() -> None:
    """Hand-checkable: eigenvalues 1..10, N = 10."""
    ev = np.arange(1.0, 11.0)
    m = compute_metrics(ev, 10)
    assert m.lambda_max == 10 and close(m.log_norm, math.log10(55)) and close(m.stable_rank, 5.5)
    assert m.matrix_rank == 10 and close(m.log_spectral_norm, 1.0)
    p = ev / 55 + 1e-10
    assert close(m.entropy, -np.sum(p * np.log(p)) / np.log(10 + 1e-10))
    assert close(m.alpha_weighted, m.alpha * 1.0) and close(m.log_alpha_norm, math.log10(np.sum(ev**m.alpha)))


# --------------------------------------------------------------------------- memory
def test_peak_memory_is_the_gram_matrix_and_a_few_blocks(tmp_path: Path) -> None:
    """A 16384 x 1024 float32 matrix (64 MiB; a sparse file of zeros) in 1 MiB blocks: the Gram matrix is 8 MiB,
    so the analysis adds well under the matrix's own size to the process's peak RSS (after the one-time set-up
    of imports and eigensolvers, which does not grow with the matrix)."""
    import subprocess
    import sys

    from tests.test_bounded_memory import _sparse_safetensors

    path = tmp_path / "big.safetensors"
    _sparse_safetensors(path, "w", "F32", [16384, 1024], 4)
    code = ("import resource, sys, numpy\n"
            "from core.spectra import run_spectra\n"
            "from core.formats import open_checkpoint\n"
            "run_spectra(sys.argv[1], use_cache=False, device='cpu', block_bytes=1 << 20)\n"  # imports, warm-up
            "from core.eigen import symmetric_eigenvalues\n"
            "symmetric_eigenvalues(numpy.eye(1024))\n"  # the eigensolvers' one-time setup (MKL's library: ~120 MB)
            "hwm = lambda: next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:'))\n"
            "before = hwm()\n"  # not ru_maxrss: it carries the peak of pytest's memory, forked before exec
            "r = run_spectra(sys.argv[2], use_cache=False, device='cpu', block_bytes=1 << 20)\n"
            "after = hwm()\n"
            "print(r.matrices['w'].reason, (after - before) / 1024)\n")
    small = write(tmp_path / "small.safetensors", {"w": np.ones((300, 20), np.float32)})
    proc = subprocess.run([sys.executable, "-c", code, str(small), str(path)], capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    reason, _, grown = proc.stdout.strip().rpartition(" ")
    assert reason == "all values are zero"
    assert float(grown) < 8 + 24  # MiB: the Gram matrix, a few 1 MiB blocks, BLAS buffers; the matrix is 64


def test_torch_engine_reads_a_wide_matrix_once_in_column_blocks(tmp_path: Path, monkeypatch) -> None:
    """The GPU engine's code (run here on the CPU) takes a wide matrix in column blocks, every element read once,
    and its eigenvalues equal numpy's SVD; a wide conv kernel's slices go the same way."""
    pytest.importorskip("torch")
    import core.gram

    rng = np.random.default_rng(11)
    wide = (rng.standard_normal((40, 300)) * 0.02).astype(np.float32)
    conv = (rng.standard_normal((6, 40, 3, 3)) * 0.02).astype(np.float32)  # slices of 6 x 40: wide
    path = write(tmp_path / "wide.safetensors", {"w": wide, "conv.weight": conv})
    calls = {"columns": 0, "cross": 0}
    columns, cross = core.gram.TorchGram.add_columns, core.gram.TorchGram.add_cross
    monkeypatch.setattr(core.gram.TorchGram, "add_columns",
                        lambda self, g, a: (calls.__setitem__("columns", calls["columns"] + 1), columns(self, g, a)))
    monkeypatch.setattr(core.gram.TorchGram, "add_cross",
                        lambda self, *a: (calls.__setitem__("cross", calls["cross"] + 1), cross(self, *a)))
    torch_run = run_spectra(path, use_cache=False, device="cpu", impl="torch", block_bytes=40 * 64 * 8)
    numpy_run = run_spectra(path, use_cache=False, device="cpu", block_bytes=40 * 64 * 8)
    assert calls["cross"] == 0 and calls["columns"] >= 300 // 64
    want = svd_evals(wide)
    np.testing.assert_allclose(torch_run.matrices["w"].evals, want, rtol=0, atol=1e-12 * want[-1])
    np.testing.assert_allclose(torch_run.matrices["conv.weight"].evals, numpy_run.matrices["conv.weight"].evals,
                               rtol=0, atol=1e-12 * numpy_run.matrices["conv.weight"].evals[-1])
