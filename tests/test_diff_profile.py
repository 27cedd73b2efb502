"""The depth profile and the most-changed list, against numpy float64 computed over whole arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.diff import run
from core.diff_profile import ProfilePoint, depth_profile, most_changed

LAYERS = 4


def relative_change(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """‖B−A‖/‖A‖ of several tensors taken together, densely in float64."""
    a = np.concatenate([x.astype(np.float64).ravel() for x, _ in pairs])
    b = np.concatenate([y.astype(np.float64).ravel() for _, y in pairs])
    return float(np.linalg.norm(b - a) / np.linalg.norm(a))


@pytest.fixture
def fine_tune(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A tiny Llama-like model and a copy whose later layers moved more, norms in two tensors per layer."""
    rng = np.random.default_rng(3)
    a: dict[str, np.ndarray] = {"model.embed_tokens.weight": rng.normal(size=(10, 8)).astype(np.float32),
                                "lm_head.weight": rng.normal(size=(10, 8)).astype(np.float32)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        a[p + "self_attn.q_proj.weight"] = rng.normal(size=(8, 8)).astype(np.float32)
        a[p + "mlp.up_proj.weight"] = rng.normal(size=(16, 8)).astype(np.float32)
        a[p + "input_layernorm.weight"] = (1 + rng.normal(scale=0.1, size=8)).astype(np.float32)
        a[p + "post_attention_layernorm.weight"] = (1 + rng.normal(scale=0.1, size=8)).astype(np.float32)
    b = {k: v.copy() for k, v in a.items()}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for leaf in ("self_attn.q_proj.weight", "mlp.up_proj.weight", "input_layernorm.weight"):
            b[p + leaf] += rng.normal(scale=0.01 * (i + 1), size=a[p + leaf].shape).astype(np.float32)
    b["model.embed_tokens.weight"] *= np.float32(1.1)  # outside the layers: not in the profile
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(a, str(pa))
    save_file(b, str(pb))
    return pa, pb, a, b


def test_profile_merges_each_layer_and_role_exactly(fine_tune) -> None:
    pa, pb, a, b = fine_tune
    profile = depth_profile(run(pa, pb))
    assert sorted(profile) == ["attention.q", "mlp.up", "norm"]
    leaves = {"attention.q": ["self_attn.q_proj.weight"], "mlp.up": ["mlp.up_proj.weight"],
              "norm": ["input_layernorm.weight", "post_attention_layernorm.weight"]}
    for role, points in profile.items():
        assert [p.layer for p in points] == list(range(LAYERS))
        for point in points:
            names = [f"model.layers.{point.layer}.{leaf}" for leaf in leaves[role]]
            assert sorted(point.tensors) == sorted(names)
            want = relative_change([(a[n], b[n]) for n in names])
            assert point.rel_change == pytest.approx(want, rel=1e-12)
    norm_0 = profile["norm"][0].rel_change  # two tensors merged, not averaged: one of them is unchanged
    alone = relative_change([(a["model.layers.0.input_layernorm.weight"], b["model.layers.0.input_layernorm.weight"])])
    assert norm_0 < alone
    q = [p.rel_change for p in profile["attention.q"]]
    assert q == sorted(q) and q[0] < q[-1] / 2  # the later layers moved more, as built


def test_profile_orders_layers_numerically_and_skips_outside_tensors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = {f"model.layers.{i}.mlp.down_proj.weight": rng.normal(size=(4, 4)).astype(np.float32) for i in (10, 2, 1)}
    a["model.norm.weight"] = np.ones(4, np.float32)
    b = {k: v + np.float32(0.5) for k, v in a.items()}
    save_file(a, str(tmp_path / "a.safetensors"))
    save_file(b, str(tmp_path / "b.safetensors"))
    profile = depth_profile(run(tmp_path / "a.safetensors", tmp_path / "b.safetensors"))
    assert list(profile) == ["mlp.down"]
    assert [p.layer for p in profile["mlp.down"]] == [1, 2, 10]
    assert isinstance(profile["mlp.down"][0], ProfilePoint)


def test_most_changed_largest_first_undefined_last(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a = {"small.weight": rng.normal(size=(6, 6)).astype(np.float32),
         "large.weight": rng.normal(size=(6, 6)).astype(np.float32),
         "same.weight": rng.normal(size=(6, 6)).astype(np.float32),
         "undefined.weight": np.full((2, 2), np.nan, np.float32),  # no finite pair: relative change undefined
         "from_zero.weight": np.zeros((2, 2), np.float32)}  # ‖A‖ = 0 and B moved: infinite
    b = {k: v.copy() for k, v in a.items()}
    b["small.weight"] += np.float32(0.01)
    b["large.weight"] *= np.float32(3)
    b["from_zero.weight"] += np.float32(1)
    save_file(a, str(tmp_path / "a.safetensors"))
    save_file(b, str(tmp_path / "b.safetensors"))
    result = run(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    order = [td.name for td in most_changed(result, 10)]
    assert order == ["from_zero.weight", "large.weight", "small.weight", "same.weight", "undefined.weight"]
    assert [td.name for td in most_changed(result, 2)] == ["from_zero.weight", "large.weight"]
    assert most_changed(result, 0) == []
    want_large = relative_change([(a["large.weight"], b["large.weight"])])
    assert want_large == pytest.approx(2.0, rel=1e-6)  # independent: B = 3A moves A by twice its own norm
