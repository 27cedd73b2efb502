"""Pairing across a leading prefix one side's names carry: a Lightning module's ``self.model``, PEFT's wrapper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from core.diff import run
from core.formats import open_checkpoint
from core.name_map import align


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"emb.weight": rng.normal(size=(10, 4)).astype(np.float32),
            "lstm.weight_ih_l0": rng.normal(size=(16, 4)).astype(np.float32),
            "lstm.bias_ih_l0": rng.normal(size=(16,)).astype(np.float32),
            "head.weight": rng.normal(size=(10, 4)).astype(np.float32)}


@pytest.fixture
def lightning_and_export(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A Lightning-style checkpoint (state_dict of a module kept as ``self.model``, Adam state beside it) and the
    inner model's weights exported to safetensors after one tensor moved."""
    a = _weights()
    b = {k: v.copy() for k, v in a.items()}
    b["head.weight"] += np.float32(0.01) * np.ones_like(b["head.weight"])
    ckpt = tmp_path / "epoch=3.ckpt"
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": torch.from_numpy(v) for k, v in a.items()},
                "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(10, 4)}}, "param_groups": []}]}, ckpt)
    exported = tmp_path / "exported.safetensors"
    save_file(b, str(exported))
    return ckpt, exported, a, b


@pytest.mark.parametrize("lightning_first", [True, False])
def test_lightning_module_prefix_pairs_with_the_exported_model(lightning_and_export, lightning_first: bool) -> None:
    ckpt, exported, a, b = lightning_and_export
    result = run(ckpt, exported) if lightning_first else run(exported, ckpt)
    assert len(result.tensors) == 4  # every weight paired, the optimizer state left over
    leftover = result.only_in_a if lightning_first else result.only_in_b
    assert leftover == ["optimizer_states.0.state.0.exp_avg"]
    for td in result.tensors.values():
        bare = td.a.name.rsplit("model.", 1)[-1] if lightning_first else td.a.name
        first, second = (a[bare], b[bare]) if lightning_first else (b[bare], a[bare])
        d = second.astype(np.float64) - first.astype(np.float64)
        expected = np.linalg.norm(d) / np.linalg.norm(first.astype(np.float64))
        assert td.sums.ss_d == pytest.approx(float(d.ravel() @ d.ravel()), rel=1e-12)
        if bare == "head.weight":
            assert np.sqrt(td.sums.ss_d / td.sums.ss_a) == pytest.approx(expected, rel=1e-12)
        else:
            assert td.sums.identical == td.sums.count
    assert any("prefix 'model.'" in note for note in result.notes)


def test_prefix_pairing_needs_equal_shapes_and_never_steals_exact_names(tmp_path: Path) -> None:
    w = _weights()
    save_file({"model.head.weight": w["head.weight"], "emb.weight": w["emb.weight"]}, str(tmp_path / "a.safetensors"))
    save_file({"head.weight": w["head.weight"][:, :2].copy(), "emb.weight": w["emb.weight"]},
              str(tmp_path / "b.safetensors"))
    with open_checkpoint(str(tmp_path / "a.safetensors")) as ca, open_checkpoint(str(tmp_path / "b.safetensors")) as cb:
        aligned = align(ca, cb)
    assert [(p.a.name, p.b.name) for p in aligned.pairs] == [("emb.weight", "emb.weight")]
    assert aligned.only_in_a == ["model.head.weight"] and aligned.only_in_b == ["head.weight"]
    assert not aligned.notes


def test_peft_style_wrapper_prefix_pairs(tmp_path: Path) -> None:
    w = _weights()
    save_file({f"base_model.model.{k}": v for k, v in w.items()}, str(tmp_path / "wrapped.safetensors"))
    save_file(w, str(tmp_path / "plain.safetensors"))
    result = run(tmp_path / "plain.safetensors", tmp_path / "wrapped.safetensors")
    assert len(result.tensors) == 4 and not result.only_in_a and not result.only_in_b
    assert all(td.sums.identical == td.sums.count for td in result.tensors.values())
    assert result.tensors["head.weight"].b.name == "base_model.model.head.weight"
