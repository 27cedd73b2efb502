"""The report's comparison pages: each verdict case, and every figure against numpy float64 over whole arrays."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch

import core.diff_report
from core.diff import run
from core.diff_report import diff_blocks, verdict
from core.report import Heading, KeyValues, LinePlot, Paragraph, PlotGrid, Table

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "samples"
LAYERS = 20
MOVED = range(10, 16)


def layered(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """20 numbered layers of two 8x8 matrices each: 40 tensors."""
    out = {}
    for i in range(LAYERS):
        out[f"model.layers.{i}.self_attn.q_proj.weight"] = rng.normal(size=(8, 8)).astype(np.float32)
        out[f"model.layers.{i}.mlp.down_proj.weight"] = rng.normal(size=(8, 8)).astype(np.float32)
    return out


def write_pair(tmp_path: Path, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[Path, Path]:
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(a, str(pa))
    save_file(b, str(pb))
    return pa, pb


def fine_tuned(a: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """q_proj of layers 10-15 moved by about 5%, everything else as it was."""
    b = {k: v.copy() for k, v in a.items()}
    for i in MOVED:
        k = f"model.layers.{i}.self_attn.q_proj.weight"
        b[k] += (0.05 * rng.normal(size=(8, 8))).astype(np.float32)
    return b


def texts(blocks: list) -> list[str]:
    """Every string a reader sees in the blocks."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading | Paragraph):
            out.append(b.text)
        elif isinstance(b, KeyValues):
            out += [x for row in b.rows for x in row]
        elif isinstance(b, Table):
            out += b.columns + [c for row in b.rows for c in row] + [b.title, b.note]
        elif isinstance(b, PlotGrid):
            for p in b.plots:
                out += [p.title, p.ylabel] + [s.label for s in p.series]
    return out


def table(blocks: list, first_column: str) -> Table:
    return next(b for b in blocks if isinstance(b, Table) and b.columns and b.columns[0] == first_column)


def rel(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    a = np.concatenate([x.astype(np.float64).ravel() for x, _ in pairs])
    b = np.concatenate([y.astype(np.float64).ravel() for _, y in pairs])
    return float(np.linalg.norm(b - a) / np.linalg.norm(a))


def test_fine_tune_verdict_figures_profile_and_most_changed(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    a = layered(rng)
    b = fine_tuned(a, rng)
    result = run(*write_pair(tmp_path, a, b))
    assert verdict(result).startswith("Verdict: B is a fine-tune of A: 6 of 40 tensors changed, most in layers "
                                      "10-15, relative change ")
    blocks = diff_blocks(result)
    whole = {row[0]: row[1] for row in table(blocks, "Figure").rows}
    want = rel([(a[k], b[k]) for k in a])
    assert whole["Relative change"] == f"{100 * want:#.3g}%"
    a64 = np.concatenate([x.astype(np.float64).ravel() for x in a.values()])
    b64 = np.concatenate([b[k].astype(np.float64).ravel() for k in a])
    assert float(whole["Cosine similarity"]) == pytest.approx(a64 @ b64 / np.linalg.norm(a64) / np.linalg.norm(b64),
                                                               abs=1e-7)
    identical = np.mean(a64.view(np.uint64) == b64.view(np.uint64))
    assert whole["Identical values"] == f"{100 * identical:.2f}%"
    assert whole["Frozen tensors"] == "34 of 40"
    assert "SNR" not in whole  # no quantised side
    plot = next(b for b in blocks if isinstance(b, PlotGrid)).plots[0]
    assert isinstance(plot, LinePlot) and [s.label for s in plot.series] == ["attention.q"]
    (q,) = plot.series
    assert q.x == [float(i) for i in range(LAYERS)]
    for layer, y in zip(q.x, q.y, strict=True):
        k = f"model.layers.{int(layer)}.self_attn.q_proj.weight"
        assert y == pytest.approx(100 * rel([(a[k], b[k])]), rel=1e-12)
    assert any("Unchanged in every layer (not drawn): mlp.down." in t for t in texts(blocks))
    top = table(blocks, "Tensor")
    moved = sorted((f"model.layers.{i}.self_attn.q_proj.weight" for i in MOVED),
                   key=lambda k: -rel([(a[k], b[k])]))
    assert [row[0] for row in top.rows] == moved  # unchanged tensors are not "most changed"
    roles = {row[0]: row for row in table(blocks, "Role").rows}
    assert roles["mlp.down"][2:5] == ["0%", "1", "100%"]
    qs = [f"model.layers.{i}.self_attn.q_proj.weight" for i in range(LAYERS)]
    assert roles["attention.q"][2] == f"{100 * rel([(a[k], b[k]) for k in qs]):#.3g}%"


def test_equal_models(tmp_path: Path) -> None:
    a = layered(np.random.default_rng(2))
    pa, pb = write_pair(tmp_path, a, dict(a))
    assert verdict(run(pa, pb)) == "Verdict: B equals A: no value differs (every tensor aligned)."
    extra = dict(a, **{"extra.weight": np.ones(3, np.float32)})
    pa, pb = write_pair(tmp_path, a, extra)
    result = run(pa, pb)
    assert verdict(result) == ("Verdict: B equals A: no value differs (40 tensors compared; 0 only in A, 1 only in "
                               "B, 0 not comparable).")
    blocks = diff_blocks(result)
    assert any(isinstance(b, Paragraph) and b.text == "No tensor changed." for b in blocks)
    whole = {row[0]: row[1] for row in table(blocks, "Figure").rows}
    assert whole["Relative change"] == "0%" and whole["Identical values"] == "100%"
    assert whole["Largest |B−A|"] == "0 (no value differs)"
    assert dict(next(b for b in blocks if isinstance(b, KeyValues)).rows)["Only in B"] == "1: extra.weight"


def test_unrelated_and_distant_models(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    a, other = layered(rng), layered(rng)
    result = run(*write_pair(tmp_path, a, other))
    assert verdict(result).startswith("Verdict: B is not related to A: cosine near 0 (")
    far = {k: (v + rng.normal(size=v.shape)).astype(np.float32) for k, v in a.items()}  # cosine about 0.71
    result = run(*write_pair(tmp_path, a, far))
    match = re.match(r"Verdict: B is distantly related to A \(a long further training or a merge\): cosine "
                     r"(0\.\d{3}), relative change (\d+)%", verdict(result))
    assert match and 0.65 < float(match.group(1)) < 0.75 and 90 < int(match.group(2)) < 110


def test_precision_conversion(tmp_path: Path) -> None:
    a = layered(np.random.default_rng(5))
    pa = tmp_path / "a.safetensors"
    save_file(a, str(pa))
    pb = tmp_path / "b.safetensors"
    save_torch({k: torch.from_numpy(v).to(torch.bfloat16) for k, v in a.items()}, str(pb))
    text = verdict(run(pa, pb))
    assert text.startswith("Verdict: B is A converted to another precision (F32 → BF16): relative change 0.")
    assert text.endswith("no more than rounding, every tensor aligned.")


def test_quantised_copy_of_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(SAMPLE / "tiny-llama", SAMPLE / "tiny-llama.Q8_0.gguf")
    text = verdict(result)
    match = re.fullmatch(r"Verdict: B is a quantised copy of A: SNR (\d+\.\d) dB, every tensor aligned\.", text)
    assert match and 40 < float(match.group(1)) < 50  # 8-bit blocks: ~6 dB per bit, less the block scales
    blocks = diff_blocks(result)
    roles = table(blocks, "Role")
    assert roles.columns[-1] == "SNR"
    assert dict((r[0], r[-1]) for r in roles.rows)["norm"] == "not quantised"  # llama.cpp keeps norms in F32
    assert verdict(run(SAMPLE / "tiny-llama.Q8_0.gguf", SAMPLE / "tiny-llama")).startswith(
        "Verdict: A is a quantised copy of B: SNR ")
    monkeypatch.setattr(core.diff_report, "FAITHFUL_SNR_DB", 60.0)
    assert "differs from the other more than a faithful quantisation would" in verdict(result)


def test_undefined_figures_say_why_never_nan(tmp_path: Path) -> None:
    a = {"model.layers.0.mlp.up_proj.weight": np.full((2, 2), np.nan, np.float32),
         "model.layers.0.mlp.down_proj.weight": np.zeros((2, 2), np.float32)}
    b = {"model.layers.0.mlp.up_proj.weight": np.full((2, 2), np.nan, np.float32),
         "model.layers.0.mlp.down_proj.weight": np.ones((2, 2), np.float32)}
    blocks = diff_blocks(run(*write_pair(tmp_path, a, b)))
    shown = texts(blocks)
    assert not [t for t in shown if re.search(r"\bnan\b(?! or infinite)|\binf\b", t, re.IGNORECASE)]
    assert verdict(run(*write_pair(tmp_path, a, b))) == (
        "Verdict: B differs from A, but how far is not defined: A's compared values are all zeros (every tensor "
        "aligned).")
    rows = {row[0]: row for row in table(blocks, "Tensor").rows}
    assert rows["model.layers.0.mlp.down_proj.weight"][2] == "not defined: A is all zeros, B is not"
    assert rows["model.layers.0.mlp.down_proj.weight"][3] == "not defined: a side is all zeros"
    assert rows["model.layers.0.mlp.up_proj.weight"][2] == "not defined: no finite value pairs"
    whole = {row[0]: row[1] for row in table(blocks, "Figure").rows}
    assert whole["Not finite"] == "4"


def test_names_are_data_and_mismatches_give_reasons(tmp_path: Path) -> None:
    hostile = "<b>bold</b>\n\x1b[31mred & 'quoted'" + "x" * 300
    a = {"resized.weight": np.zeros((4, 4), np.float32), hostile: np.ones(2, np.float32),
         "kept.weight": np.ones((3, 3), np.float32)}
    b = {"resized.weight": np.zeros((4, 5), np.float32), "kept.weight": np.ones((3, 3), np.float32)}
    blocks = diff_blocks(run(*write_pair(tmp_path, a, b)))
    only_a = dict(next(b for b in blocks if isinstance(b, KeyValues)).rows)["Only in A"]
    assert only_a.startswith("1: <b>bold</b> \x1b[31mred & 'quoted'x") and only_a.endswith("…")  # text, clipped
    assert all("\n" not in t for t in texts(blocks))
    refused = table(blocks, "Tensor in A")
    assert refused.rows == [["resized.weight", "", "shapes differ: [4, 4] in A, [4, 5] in B"]]
    assert verdict(run(*write_pair(tmp_path, a, b))).endswith(
        "(1 tensor compared; 1 only in A, 0 only in B, 1 not comparable).")


def test_nothing_in_common(tmp_path: Path) -> None:
    pa, pb = write_pair(tmp_path, {"x.weight": np.ones(2, np.float32)}, {"y.weight": np.ones(2, np.float32)})
    result = run(pa, pb)
    assert verdict(result) == ("Verdict: nothing could be compared: 1 tensor only in A, 1 tensor only in B, 0 pairs "
                               "that could not be compared.")
    assert not any(isinstance(b, Table) and b.columns[:1] == ["Figure"] for b in diff_blocks(result))


def test_rank_column_when_computed(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    a = {"model.layers.0.mlp.up_proj.weight": rng.normal(size=(16, 8)).astype(np.float32),
         "model.layers.0.input_layernorm.weight": np.ones(8, np.float32)}
    b = {k: v.copy() for k, v in a.items()}
    b["model.layers.0.mlp.up_proj.weight"] += (0.1 * rng.normal(size=(16, 2)) @ rng.normal(size=(2, 8))).astype(
        np.float32)  # a rank-2 update
    b["model.layers.0.input_layernorm.weight"] += np.float32(0.5)
    pa, pb = write_pair(tmp_path, a, b)
    without = table(diff_blocks(run(pa, pb)), "Tensor")
    assert "Rank 90%" not in without.columns
    top = table(diff_blocks(run(pa, pb, rank=True, device="cpu")), "Tensor")
    assert top.columns[-1] == "Rank 90%"
    ranks = {row[0]: row[-1] for row in top.rows}
    assert ranks["model.layers.0.mlp.up_proj.weight"] in ("1 of 8", "2 of 8")  # 90% of a rank-2 change's energy
    assert ranks["model.layers.0.input_layernorm.weight"] != "not computed"  # a vector: the engine says why
