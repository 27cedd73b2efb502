"""core.diff_heatmap: the image of |B - A| equals numpy's blockwise max over the dense difference."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.diff_heatmap import compute_diff_heatmap
from core.errors import CancelledError, CheckpointError
from core.formats import open_checkpoint
from core.name_map import align
from tests.test_diff import llama_weights, write_gguf


def blockwise_max(d: np.ndarray, br: int, bc: int) -> np.ndarray:
    """The reference: max |d| of each br x bc block, by explicit slicing (no reshape trick)."""
    rows, cols = d.shape
    out = np.empty((math.ceil(rows / br), math.ceil(cols / bc)), np.float64)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.abs(d[i * br:(i + 1) * br, j * bc:(j + 1) * bc]).max()
    return out


def drain(gen):
    snapshots = []
    while True:
        try:
            snapshots.append(next(gen))
        except StopIteration as stop:
            return stop.value, snapshots


def write_pair(tmp_path: Path, a: dict, b: dict) -> tuple:
    save_file(a, str(tmp_path / "a.safetensors"))
    save_file(b, str(tmp_path / "b.safetensors"))
    ca, cb = open_checkpoint(str(tmp_path / "a.safetensors")), open_checkpoint(str(tmp_path / "b.safetensors"))
    return ca, cb, {p.a.name: p for p in align(ca, cb).pairs}


@pytest.mark.parametrize("chunk", [1 << 22, 50_000, 1500])  # whole tensor, bands of rows, tiles narrower than a row
def test_blockwise_max_of_the_difference(tmp_path: Path, chunk: int) -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(1030, 700)).astype(np.float32)
    b = a + rng.normal(scale=1e-3, size=a.shape).astype(np.float32)
    b[517, 311] += 5.0  # one spike: one pixel must show it
    ca, cb, pairs = write_pair(tmp_path, {"w": a}, {"w": b})
    try:
        image, snapshots = drain(compute_diff_heatmap(ca, cb, pairs["w"], chunk_elements=chunk))
    finally:
        ca.close()
        cb.close()
    assert (image.block_rows, image.block_cols) == (3, 2) and image.values.shape == (344, 350)
    want = blockwise_max(b.astype(np.float64) - a.astype(np.float64), 3, 2)
    np.testing.assert_allclose(image.values, want.astype(np.float32), rtol=0, atol=0)
    assert np.unravel_index(int(np.argmax(image.values)), image.values.shape) == (517 // 3, 311 // 2)
    if chunk < a.size:  # it fills in as it goes: the first snapshot has blocks not read yet
        assert len(snapshots) > 1 and np.isnan(snapshots[0].values).any()
    assert not np.isnan(image.values).any()


def test_vectors_and_unchanged_tensors(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    v = rng.normal(size=3000).astype(np.float32)
    w = v.copy()
    w[::7] = 0
    ca, cb, pairs = write_pair(tmp_path, {"v": v, "same": v}, {"v": w, "same": v})
    try:
        image, _ = drain(compute_diff_heatmap(ca, cb, pairs["v"], chunk_elements=100))
        same, _ = drain(compute_diff_heatmap(ca, cb, pairs["same"]))
    finally:
        ca.close()
        cb.close()
    want = blockwise_max((w.astype(np.float64) - v)[None, :], 1, 6)
    np.testing.assert_array_equal(image.values, want.astype(np.float32))
    assert same.values.shape == (1, 500) and not same.values.any()


def test_nan_blocks_stay_nan(tmp_path: Path) -> None:
    a = np.ones((8, 8), np.float32)
    b = a.copy()
    b[0, 0] = np.nan
    b[7, 7] = np.inf
    ca, cb, pairs = write_pair(tmp_path, {"w": a}, {"w": b})
    try:
        image, _ = drain(compute_diff_heatmap(ca, cb, pairs["w"], max_pixels=(4, 4)))
    finally:
        ca.close()
        cb.close()
    assert np.isnan(image.values[0, 0]) and np.isnan(image.values[3, 3])
    assert np.count_nonzero(np.isnan(image.values)) == 2 and np.nanmax(image.values) == 0


@pytest.mark.parametrize("chunk", [1 << 22, 64])
def test_gguf_q_k_rows_are_unpermuted(tmp_path: Path, chunk: int) -> None:
    """A faithful F16 conversion (llama.cpp permutes q/k rows) draws as zero; a changed row shows where A has it."""
    weights = llama_weights(np.random.default_rng(5))
    save_file(weights, str(tmp_path / "model.safetensors"))
    changed = {k: v.copy() for k, v in weights.items()}
    name = "model.layers.1.self_attn.k_proj.weight"
    changed[name][3, 5] += 1.0
    write_gguf(tmp_path / "model.gguf", changed)
    ca, cb = open_checkpoint(str(tmp_path / "model.safetensors")), open_checkpoint(str(tmp_path / "model.gguf"))
    try:
        pairs = {p.a.name: p for p in align(ca, cb).pairs}
        assert pairs[name].b_rows is not None
        q, _ = drain(compute_diff_heatmap(ca, cb, pairs["model.layers.0.self_attn.q_proj.weight"],
                                          chunk_elements=chunk))
        k, _ = drain(compute_diff_heatmap(ca, cb, pairs[name], chunk_elements=chunk))
    finally:
        ca.close()
        cb.close()
    assert not q.values.any()
    want = changed[name].astype(np.float16).astype(np.float64) - weights[name]  # what F16 storage keeps
    assert np.count_nonzero(want) == 1
    np.testing.assert_array_equal(k.values, want.astype(np.float32))
    # the control: read in the file's own row order, the unchanged q matrix would differ everywhere
    ca, cb = open_checkpoint(str(tmp_path / "model.safetensors")), open_checkpoint(str(tmp_path / "model.gguf"))
    try:
        raw = replace(pairs["model.layers.0.self_attn.q_proj.weight"], b_rows=None)
        unpermuted, _ = drain(compute_diff_heatmap(ca, cb, raw, chunk_elements=chunk))
    finally:
        ca.close()
        cb.close()
    assert np.count_nonzero(unpermuted.values) > unpermuted.values.size // 2


def test_shape_mismatch_and_cancel(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    a = {"w": rng.normal(size=(64, 64)).astype(np.float32), "r": np.zeros((4, 4), np.float32)}
    b = {"w": a["w"] + 1, "r": np.zeros((4, 5), np.float32)}
    ca, cb, pairs = write_pair(tmp_path, a, b)
    try:
        with pytest.raises(CheckpointError, match="'r' has shape"):
            drain(compute_diff_heatmap(ca, cb, pairs["r"]))
        calls = []
        gen = compute_diff_heatmap(ca, cb, pairs["w"], chunk_elements=64 * 8,
                                   should_stop=lambda: calls.append(1) or len(calls) > 2)
        with pytest.raises(CancelledError):
            drain(gen)
        assert len(calls) == 3  # stopped at the third tile of eight, not after the whole matrix
    finally:
        ca.close()
        cb.close()
