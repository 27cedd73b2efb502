"""`main.py report ADAPTER [--base BASE]`: the "LoRA adapter" section of the PDF, figures against dense numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pypdf
import pytest
from safetensors.numpy import save_file

import main
from core.numbers import format_value, percent

PREFIX = "base_model.model."
KINDS = {"self_attn.q_proj": (8, 6), "self_attn.v_proj": (4, 6)}
LAYERS = 3
RANK, ALPHA = 2, 5.0  # scale 2.5


def pdf_text(path: Path) -> list[str]:
    return [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(str(path)).pages]


@pytest.fixture
def adapter(tmp_path: Path) -> tuple[Path, Path, dict[str, dict]]:
    """An adapter folder, its base model, and per module the dense float64 truth: ||dW||, singular values,
    ||W|| and the relative update."""
    rng = np.random.default_rng(7)
    base, factors, truth = {"model.embed_tokens.weight": rng.normal(size=(9, 6)).astype(np.float32)}, {}, {}
    for layer in range(LAYERS):
        for kind, (rows, cols) in KINDS.items():
            name = f"model.layers.{layer}.{kind}"
            w = (rng.normal(size=(rows, cols)) * (1 + layer)).astype(np.float32)
            a = rng.normal(size=(RANK, cols)).astype(np.float32)
            b = rng.normal(size=(rows, RANK)).astype(np.float32)
            base[f"{name}.weight"], factors[f"{PREFIX}{name}.lora_A.weight"] = w, a
            factors[f"{PREFIX}{name}.lora_B.weight"] = b
            dense = ALPHA / RANK * b.astype(np.float64) @ a.astype(np.float64)
            values = np.linalg.svd(dense, compute_uv=False)
            truth[name] = {"fro": np.linalg.norm(dense), "values": values[:RANK], "w": np.linalg.norm(w.astype(float)),
                           "share": values[0] ** 2 / np.sum(values**2)}
    (tmp_path / "adapter").mkdir()
    (tmp_path / "base").mkdir()
    save_file(factors, str(tmp_path / "adapter" / "adapter_model.safetensors"))
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA, "target_modules": ["q_proj", "v_proj"],
         "base_model_name_or_path": "org/<b>tiny</b>"}))
    save_file(base, str(tmp_path / "base" / "model.safetensors"))
    return tmp_path / "adapter", tmp_path / "base", truth


def lora_section(pages: list[str]) -> str:
    """The text from the "LoRA adapter" heading to the "Layers" section that follows it."""
    first = next(i for i, t in enumerate(pages) if t.startswith("LoRA adapter"))
    layers = next(i for i, t in enumerate(pages) if t.startswith("Layers"))
    assert first < layers  # right after the summary, before the layer table
    return " ".join(pages[first:layers])


def row_text(name: str, t: dict, compared: bool) -> str:
    row = f"{name} {RANK} {format_value(ALPHA)} {format_value(ALPHA / RANK)} {format_value(t['fro'])}"
    if compared:
        row += f" {format_value(t['w'])} {format_value(t['fro'] / t['w'])}"
    return row + " " + ", ".join(format_value(v) for v in t["values"]) + f" {percent(t['share'], 1.0)}"


def test_adapter_report_has_the_lora_section(qapp, adapter, tmp_path: Path, capsys) -> None:
    folder, _, truth = adapter
    out = tmp_path / "r.pdf"
    assert main.main(["report", str(folder), "-o", str(out), "--no-cache", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("wrote ")
    text = lora_section(pdf_text(out))
    assert "Base model (adapter_config.json) org/<b>tiny</b>" in text  # the file's text, as text
    assert "Target modules q_proj, v_proj Rank r 2 lora_alpha 5 Scale 2.5 = lora_alpha / r Adapted modules 6" in text
    parameters = sum(RANK * (rows + cols) for rows, cols in KINDS.values()) * LAYERS
    assert f"Adapter parameters {parameters:,} Modules" in text  # no base: no share of it
    assert "Module r alpha scale ‖Δ W‖_F Top singular values Top share" in text
    for name, t in truth.items():
        assert row_text(name, t, compared=False) in text, name
    assert "‖W‖" not in text.replace("‖Δ W‖", "")  # nothing about the base without --base
    assert "size of the update ‖ Δ W‖_F by layer" in text


def test_base_adds_the_relative_update_and_its_profile(qapp, adapter, tmp_path: Path, capsys) -> None:
    folder, base, truth = adapter
    out = tmp_path / "r.pdf"
    assert main.main(["report", str(folder), "--base", str(base), "-o", str(out), "--no-cache",
                      "--device", "cpu"]) == 0
    text = lora_section(pdf_text(out))
    parameters = sum(RANK * (rows + cols) for rows, cols in KINDS.values()) * LAYERS
    base_parameters = 9 * 6 + LAYERS * sum(rows * cols for rows, cols in KINDS.values())
    assert f"Adapter parameters {parameters:,} ({percent(parameters, base_parameters)} of the base model's " \
           f"{base_parameters:,}) Compared with base {base}" in text
    assert "0.27 means the update is 27% of the weight's size" in text
    assert "Module r alpha scale ‖Δ W‖_F ‖W‖_F ‖Δ W‖/‖W‖ Top singular values Top share" in text
    for name, t in truth.items():
        assert row_text(name, t, compared=True) in text, name
    assert "relative update ‖ Δ W‖/‖W‖ by layer" in text


def test_base_is_refused_for_a_model_and_a_bad_base_for_an_adapter(qapp, adapter, tmp_path: Path, capsys) -> None:
    folder, base, _ = adapter
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 16)
    for model, other, expected in ((base, base, "--base is for LoRA adapters"),
                                   (folder, garbage, "base model: ")):
        out = tmp_path / "refused.pdf"
        assert main.main(["report", str(model), "--base", str(other), "-o", str(out), "--no-cache"]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], captured.err
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "base", "garbage.safetensors"]


def test_a_model_report_has_no_lora_section(qapp, adapter, tmp_path: Path) -> None:
    _, base, _ = adapter
    out = tmp_path / "r.pdf"
    assert main.main(["report", str(base), "-o", str(out), "--no-cache", "--device", "cpu"]) == 0
    assert not any(page.startswith("LoRA adapter") for page in pdf_text(out))
