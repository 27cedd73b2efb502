"""The comparison's quick paths (float32 blocks from sums, two threads) give the general path's figures."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.diff import chunk_sums, float32_block_sums, metrics, run


def dense(a: np.ndarray, b: np.ndarray) -> dict:
    """Figures over the finite pairs, densely in float64 (numpy's two-pass std)."""
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    keep = np.isfinite(a64) & np.isfinite(b64)
    a64, b64 = a64[keep], b64[keep]
    d = b64 - a64
    return {"rel_change": np.linalg.norm(d) / np.linalg.norm(a64), "std_a": a64.std(), "std_b": b64.std(),
            "mean_a": a64.mean(), "std_diff": d.std(), "max_abs_diff": np.abs(d).max()}


def check(got: dict, want: dict) -> None:
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-11), key


def test_large_mean_small_spread_is_centred_not_cancelled(tmp_path: Path) -> None:
    """sum(x^2) - sum(x) * mean would lose the spread of values around 1000 to rounding."""
    rng = np.random.default_rng(1)
    a = (1000 + rng.normal(scale=1e-3, size=300_000)).astype(np.float32)
    b = (a + rng.normal(scale=1e-4, size=a.size)).astype(np.float32)
    save_file({"w": a}, str(tmp_path / "a.safetensors"))
    save_file({"w": b}, str(tmp_path / "b.safetensors"))
    got = metrics(run(tmp_path / "a.safetensors", tmp_path / "b.safetensors").tensors["w"].sums)
    check(got, dense(a, b))


def test_nan_and_inf_blocks_take_the_general_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=500_000).astype(np.float32)
    b = (a + rng.normal(scale=0.1, size=a.size)).astype(np.float32)
    a[[5, 200_000]] = np.nan
    b[[7, 400_000]] = [np.inf, -np.inf]
    save_file({"w": a}, str(tmp_path / "a.safetensors"))
    save_file({"w": b}, str(tmp_path / "b.safetensors"))
    got = metrics(run(tmp_path / "a.safetensors", tmp_path / "b.safetensors").tensors["w"].sums)
    assert got["nonfinite"] == 4
    check(got, dense(a, b))


def test_float32_block_sums_equal_the_general_sums() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=5000).astype(np.float32)
    b = a.copy()
    b[::3] += np.float32(0.5)
    b[10] = -b[10] - 7  # the largest |d| is a negative difference
    fast, at = float32_block_sums(a, b)
    general, general_at = chunk_sums(a.astype(np.float64), b.astype(np.float64))
    assert at == general_at == 10 and fast.identical == general.identical
    for key, value in asdict(general).items():
        if isinstance(value, (str, tuple)):
            continue
        assert getattr(fast, key) == pytest.approx(value, rel=1e-12, abs=1e-12), key
    assert float32_block_sums(np.array([np.nan], np.float32), np.array([1.0], np.float32)) is None
    tie, tie_at = float32_block_sums(np.zeros(4, np.float32), np.array([0, -2, 2, 0], np.float32))
    assert tie_at == 1 and tie.max_abs == 2  # equal magnitudes: the first place, as argmax(|d|) says


def test_two_threads_give_the_one_thread_result_bit_for_bit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=(700, 1000)).astype(np.float32)
    b = (a + rng.normal(scale=0.01, size=a.shape)).astype(np.float32)
    save_file({"w": a}, str(tmp_path / "a.safetensors"))
    save_file({"w": b.astype(np.float16)}, str(tmp_path / "b.safetensors"))  # F16 takes the float32 path too
    threaded = run(tmp_path / "a.safetensors", tmp_path / "b.safetensors").tensors["w"].sums
    monkeypatch.setattr("core.diff.THREADED_BLOCKS", 10**9)
    alone = run(tmp_path / "a.safetensors", tmp_path / "b.safetensors").tensors["w"].sums
    assert asdict(threaded) == asdict(alone)
    check(metrics(alone), dense(a, b.astype(np.float16)))
    assert not math.isnan(metrics(alone)["cosine"])


def test_bf16_bit_patterns_decode_in_blocks(tmp_path: Path) -> None:
    """BF16 is read as bit patterns and decoded per block (in both threads): figures and the rank of the
    difference are those of the decoded values, also against a float32 side."""
    import torch
    from safetensors.torch import save_file as save_torch

    from core.diff_rank import TOP_VALUES

    rng = np.random.default_rng(5)
    a = torch.from_numpy(rng.normal(size=(2000, 300)).astype(np.float32)).to(torch.bfloat16)
    update = rng.normal(size=(2000, 3)) @ rng.normal(size=(3, 300))
    b = (a.float() + torch.from_numpy(0.05 * update).float()).to(torch.bfloat16)
    save_torch({"w": a}, str(tmp_path / "a.safetensors"))
    save_torch({"w": b}, str(tmp_path / "b.safetensors"))
    save_torch({"w": b.float()}, str(tmp_path / "b32.safetensors"))
    a_np, b_np = a.float().numpy(), b.float().numpy()
    for other in ("b.safetensors", "b32.safetensors"):
        td = run(tmp_path / "a.safetensors", tmp_path / other, rank=True, device="cpu").tensors["w"]
        check(metrics(td.sums), dense(a_np, b_np))
        assert td.sums.identical == int(np.count_nonzero(a_np == b_np))
        sv = np.linalg.svd(b_np.astype(np.float64) - a_np.astype(np.float64), compute_uv=False)
        np.testing.assert_allclose(td.top_singular_values[:3], sv[:3], rtol=1e-9)
        assert len(td.top_singular_values) == TOP_VALUES
