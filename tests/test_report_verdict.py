"""The report opens with its verdict, explains quantisation and the count, and never breaks a number in a table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pypdf
from safetensors.numpy import save_file

from core.formats import open_checkpoint
from core.report import Heading, Paragraph, Table, build_report, verdict_line
from core.stats import run
from tests.test_quantization import write_mixed_gguf
from tests.test_report_content import llama_tensors


def report_of(path: Path):
    with open_checkpoint(str(path)) as checkpoint:
        result = run(checkpoint, use_cache=False)
        return build_report(checkpoint, result), checkpoint


def test_broken_model_verdict_comes_first(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    tensors = llama_tensors()
    tensors["model.layers.1.self_attn.q_proj.weight"][0, 0] = np.nan
    tensors["model.layers.0.mlp.up_proj.weight"][:] = 0
    save_file(tensors, str(tmp_path / "m.safetensors"))
    report, _ = report_of(tmp_path / "m.safetensors")
    assert report.facts[0][0] == "Verdict"
    verdict = report.facts[0][1]
    assert verdict == verdict_line(report.findings)
    assert verdict.startswith(f"{report.findings.problems} problem") and "1 with NaN or Inf" in verdict
    assert "1 all-zero" in verdict
    assert [type(b) for b in report.blocks[:3]] == [Heading, Heading, Paragraph]
    assert report.blocks[1].text == "Verdict"
    table = report.blocks[3]
    assert isinstance(table, Table) and table.columns == ["Tensor", "Problem", "Severity"]
    assert table.rows[0][0] == "model.layers.1.self_attn.q_proj.weight" and table.rows[0][2] == "error"


def test_healthy_model_verdict_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    save_file({f"h.{i}.w": (rng.standard_normal((16, 16)) * 0.02).astype(np.float32) for i in range(2)},
              str(tmp_path / "m.safetensors"))
    report, _ = report_of(tmp_path / "m.safetensors")
    assert report.facts[0] == ("Verdict", "No problems found in 2 tensors analysed")
    assert not any(isinstance(b, Table) and b.columns == ["Tensor", "Problem", "Severity"] for b in report.blocks)


def test_quantised_report_has_bits_per_weight_and_the_count_story(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    report, _ = report_of(Path(write_mixed_gguf(tmp_path / "m.gguf")))
    quant = next(b for b in report.blocks if isinstance(b, Table) and (b.title or "").startswith("Quantisation"))
    assert quant.title.startswith("Quantisation: Q4_K_M mix · ")
    q4 = 64 * 256 + 2 * 256 * 512
    assert quant.rows[0] == ["Q4_K", "3", f"{q4:,}", f"{q4 // 256 * 144:,}", "4.5"]
    report, _ = report_of(Path("resources/samples/tiny-llama"))
    story = [b.text for b in report.blocks if isinstance(b, Paragraph) and b.style == "note"]
    assert "This is exactly the 803,968 parameters the file holds." in story


def test_number_columns_keep_their_width(qapp, tmp_path: Path) -> None:
    from PySide6.QtGui import QPdfWriter

    from gui.pdf import DPI, _column_widths, _Layout, font, mm

    writer = QPdfWriter(str(tmp_path / "x.pdf"))
    writer.setResolution(DPI)
    lay = _Layout(writer)
    big = "405,853,388,800"
    table = Table(["Name", "A", "B", "C", "D"], [["x" * 200, big, big, big, big]], "lrrrr", [6, 1, 1, 1, 1])
    pad = mm(1.4)
    widths = _column_widths(lay, table, (font(8, bold=True), font(8, bold=True)), pad)
    need = lay.metrics(font(8, bold=True)).horizontalAdvance(big) + 2 * pad
    assert all(w >= need for w in widths[1:])
    for c in range(1, 5):
        assert lay.wrap(big, font(8), widths[c] - 2 * pad) == [big]


def test_pdf_first_page_carries_the_verdict(qapp, tmp_path: Path, monkeypatch) -> None:
    from gui.pdf import write_report

    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    tensors = llama_tensors()
    tensors["model.layers.1.self_attn.q_proj.weight"][0, 0] = np.inf
    save_file(tensors, str(tmp_path / "m.safetensors"))
    out = tmp_path / "r.pdf"
    with open_checkpoint(str(tmp_path / "m.safetensors")) as checkpoint:
        write_report(checkpoint, run(checkpoint, use_cache=False), out)
    first, second = (" ".join(p.extract_text().split()) for p in pypdf.PdfReader(str(out)).pages[:2])
    assert "Verdict" in first and "with NaN or Inf" in first
    assert second.startswith("Summary Verdict") and "model.layers.1.self_attn.q_proj.weight" in second
