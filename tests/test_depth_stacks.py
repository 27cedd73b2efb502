"""Depth profiles for models without transformer blocks: CNN, MLP and LSTM stacks in natural index order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from core.checkpoint import TensorInfo
from core.depth import depth_profile, profiled_tensors, stack_positions
from core.formats import open_checkpoint
from core.stats import run
from core.taxonomy import classify


def infos(names: list[tuple[str, tuple[int, ...]]]) -> list[TensorInfo]:
    out = []
    for name, shape in names:
        kind, role = classify(name, shape, "F32")
        n = int(np.prod(shape))
        out.append(TensorInfo(name, shape, "F32", n, 4 * n, "f", 0, kind, role))
    return out


def test_cnn_layers_in_natural_order(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential()
    for i, (cin, cout) in enumerate([(3, 4), (4, 8), (8, 8), (8, 8), (8, 8), (8, 8), (8, 8), (8, 8), (8, 8),
                                     (8, 8), (8, 8)], 1):
        model.add_module(f"conv{i}", nn.Conv2d(cin, cout, 3))
        model.add_module(f"bn{i}", nn.BatchNorm2d(cout))
    model.add_module("fc", nn.Linear(8, 2))
    with torch.no_grad():
        for i in range(1, 12):
            getattr(model, f"conv{i}").weight.mul_(i)  # a std that grows with depth: order is visible in values
    path = tmp_path / "cnn.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    with open_checkpoint(str(path)) as cp:
        result = run(cp, use_cache=False, device="cpu")
        profile = depth_profile(cp.tensors, result.summaries, "std")
    conv = profile["conv"]
    assert [p[0] for p in conv] == list(range(1, 12))  # conv10 and conv11 after conv9, not after conv1
    assert [p[2] for p in conv] == [f"conv{i}.weight" for i in range(1, 12)]
    for _, value, name in conv:
        expected = model.state_dict()[name].double().std(unbiased=False).item()
        assert value == pytest.approx(expected, rel=1e-6)
    assert [p[0] for p in profile["norm"]] == list(range(1, 12))  # batch-norm scales are the norm line


def test_lstm_layers_form_recurrent_lines(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = nn.LSTM(5, 6, num_layers=3, bidirectional=True)
    path = tmp_path / "lstm.safetensors"
    save_file({f"lstm.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(path))
    with open_checkpoint(str(path)) as cp:
        items = profiled_tensors(cp.tensors)
    lines: dict[str, list[tuple[int, str]]] = {}
    for t, position, pattern in items:
        lines.setdefault(pattern, []).append((position, t.name))
        assert t.role == "recurrent" and t.kind == "weight"
    assert set(lines) == {"lstm.weight_ih_l*", "lstm.weight_hh_l*", "lstm.weight_ih_l*_reverse",
                          "lstm.weight_hh_l*_reverse"}
    assert sorted(lines["lstm.weight_hh_l*"]) == [(i, f"lstm.weight_hh_l{i}") for i in range(3)]


def test_resnet_blocks_rank_by_every_number_and_roles_stay_apart() -> None:
    names = [("conv1.weight", (8, 3, 7, 7)), ("bn1.weight", (8,)), ("fc.weight", (10, 8))]
    for layer in (1, 2, 10):
        for block in (0, 1):
            names += [(f"layer{layer}.{block}.conv1.weight", (8, 8, 3, 3)), (f"layer{layer}.{block}.bn1.weight", (8,))]
        names += [(f"layer{layer}.0.downsample.0.weight", (8, 8, 1, 1)), (f"layer{layer}.0.downsample.1.weight", (8,))]
    items = stack_positions(infos(names))
    by_pattern: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for t, position, pattern in items:
        by_pattern.setdefault((t.role, pattern), []).append((position, t.name))
    convs = sorted(by_pattern[("convolution", "layer*.*.conv*.weight")])
    assert [name for _, name in convs] == [f"layer{layer}.{block}.conv1.weight" for layer in (1, 2, 10)
                                           for block in (0, 1)]
    assert [position for position, _ in convs] == list(range(6))
    downsample = by_pattern[("convolution", "layer*.*.downsample.*.weight")]
    assert len(downsample) == 3 and ("other", "layer*.*.downsample.*.weight") in by_pattern
    assert not any(pattern == "conv*.weight" for _, pattern in by_pattern)  # a single stem conv is no stack


def test_transformer_blocks_keep_their_own_profile() -> None:
    names = [(f"model.layers.{i}.mlp.down_proj.weight", (4, 8)) for i in range(3)]
    names += [("vision.conv1.weight", (4, 3, 3, 3)), ("vision.conv2.weight", (4, 4, 3, 3))]
    items = profiled_tensors(infos(names))
    assert [(t.name, pos) for t, pos, _ in items] == [(f"model.layers.{i}.mlp.down_proj.weight", i) for i in range(3)]


def test_huge_and_odd_digits_are_no_stack_positions() -> None:
    names = [("conv" + "9" * 5000 + ".weight", (4, 4, 3, 3)), ("conv².weight", (4, 4, 3, 3)),
             ("conv" + "9" * 5000 + "1.weight", (4, 4, 3, 3))]
    assert stack_positions(infos(names)) == []
