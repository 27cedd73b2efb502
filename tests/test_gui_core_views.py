"""core.heatmap and core.depth (the data behind two GUI panels), against plain numpy loops; no Qt."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.depth import STATISTICS, block_pattern, depth_profile, depth_profiles
from core.formats import open_checkpoint
from core.heatmap import block_sizes, compute_heatmap, matrix_shape, reduce_blocks
from tests.conftest import LAYERS, write_llama


def naive_blocks(a: np.ndarray, br: int, bc: int, mode: str) -> np.ndarray:
    rows, cols = a.shape
    out = np.empty((math.ceil(rows / br), math.ceil(cols / bc)))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            block = a[i * br:(i + 1) * br, j * bc:(j + 1) * bc].astype(np.float64)
            out[i, j] = np.abs(block).max() if mode == "absmax" else block.mean()
    return out


@pytest.mark.parametrize("shape, br, bc", [((10, 7), 3, 2), ((9, 8), 3, 4), ((1, 13), 1, 5), ((17, 1), 4, 1)])
@pytest.mark.parametrize("mode", ["absmax", "mean"])
def test_reduce_blocks_matches_loops(shape, br, bc, mode):
    a = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    got = reduce_blocks(a, br, bc, mode)
    assert np.allclose(got, naive_blocks(a, br, bc, mode), rtol=1e-6, atol=1e-7)


def test_streamed_heatmap_equals_whole_matrix(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(2)
    a = rng.standard_normal((1030, 700)).astype(np.float32)
    b = rng.standard_normal((3, 4, 5)).astype(np.float32)
    v = rng.standard_normal(1000).astype(np.float32)
    save_file({"w": a, "cube": b, "vec": v}, str(tmp_path / "m.safetensors"))
    with open_checkpoint(str(tmp_path / "m.safetensors")) as cp:
        for mode in ("absmax", "mean"):
            gen = compute_heatmap(cp, "w", mode, max_pixels=(256, 256), chunk_bytes=64 << 10)
            partials = []
            while True:
                try:
                    partials.append(next(gen))
                except StopIteration as stop:
                    hm = stop.value
                    break
            assert len(partials) > 3 and np.isnan(partials[0].values).any()  # filled in band by band
            assert (hm.block_rows, hm.block_cols) == block_sizes(1030, 700, (256, 256)) == (5, 3)
            assert np.allclose(hm.values, naive_blocks(a, 5, 3, mode), rtol=1e-6, atol=1e-7)
        hm = list_last(compute_heatmap(cp, "cube", "mean"))
        assert matrix_shape((3, 4, 5)) == (3, 20) and np.allclose(hm.values, b.reshape(3, 20))
        hm = list_last(compute_heatmap(cp, "vec", "absmax", max_pixels=(512, 100)))
        assert hm.values.shape == (1, 100) and np.allclose(hm.values, naive_blocks(v[None, :], 1, 10, "absmax"))


def list_last(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_heatmap_can_be_cancelled(tmp_path):
    from safetensors.numpy import save_file

    from core.errors import CancelledError

    save_file({"w": np.zeros((600, 100), np.float32)}, str(tmp_path / "m.safetensors"))
    with open_checkpoint(str(tmp_path / "m.safetensors")) as cp:
        gen = compute_heatmap(cp, "w", chunk_bytes=4096, should_stop=lambda: True)
        with pytest.raises(CancelledError):
            next(gen)


def test_block_pattern():
    assert block_pattern("model.layers.12.mlp.down_proj.weight") == (12, "model.layers.*.mlp.down_proj.weight")
    assert block_pattern("blk.3.attn_q.weight") == (3, "blk.*.attn_q.weight")
    assert block_pattern("lm_head.weight") is None


def test_depth_profile_from_analysis_matches_numpy(tmp_path):
    from core.stats import run

    path, tensors = write_llama(tmp_path / "m")
    with open_checkpoint(str(path)) as cp:
        result = run(cp, use_cache=False, device="cpu")
        profile = depth_profile(cp.tensors, result.summaries, "std")
        all_stats = depth_profiles(cp.tensors, result.summaries)
    assert set(all_stats) == set(STATISTICS)
    assert set(profile) == {"q", "k", "v", "o", "gate", "up", "down", "norm · input_layernorm",
                            "norm · post_attention_layernorm"}
    for label, points in profile.items():
        assert [p[0] for p in points] == list(range(LAYERS)), label
        for _layer, value, name in points:
            assert value == pytest.approx(tensors[name].astype(np.float64).std(), rel=1e-9, abs=1e-12)
    absmax = {s.label: s for s in all_stats["abs_max"]}["down"]
    assert absmax.points[2][1] == 1.5
    outliers = {s.label: s for s in all_stats["outliers"]}["down"]
    assert outliers.points[2][1] >= 1 and outliers.points[0][1] == 0
    with pytest.raises(ValueError):
        depth_profile([], {}, "median")
