"""`report --spectra` adds the Spectra section: alpha explained, model averages, alpha by layer, flagged matrices."""

from __future__ import annotations

from pathlib import Path

import pytest

import main
from core.formats import open_checkpoint
from core.report import Heading, KeyValues, LinePlot, PlotGrid, Table
from core.spectra import analyze_spectra, default_matrices
from core.spectra_report import spectra_blocks

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "samples" / "tiny-llama"


def _drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_blocks_flag_exactly_the_matrices_outside_the_healthy_range() -> None:
    with open_checkpoint(str(SAMPLE)) as checkpoint:
        result = _drain(analyze_spectra(checkpoint, default_matrices(checkpoint), device="cpu", use_cache=False))
        blocks = spectra_blocks(checkpoint, result)
    assert isinstance(blocks[0], Heading) and blocks[0].text == "Spectra"
    model = next(b for b in blocks if isinstance(b, KeyValues))
    assert dict(model.rows)["Matrices analysed"] == str(len(result.analysed()))
    plot = next(b for b in blocks if isinstance(b, PlotGrid)).plots[0]
    assert isinstance(plot, LinePlot) and {s.label for s in plot.series} >= {"attention.q", "mlp.down"}
    assert all(s.x == [0.0, 1.0, 2.0, 3.0] for s in plot.series)  # the sample's four layers
    flagged = {m.name for m in result.analysed()
               if m.metrics.verdict != "well trained" or m.metrics.fit_quality != "good"}
    table = next(b for b in blocks if isinstance(b, Table))
    assert {row[0] for row in table.rows} == flagged


def test_report_command_writes_the_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pypdf import PdfReader

    out = tmp_path / "r.pdf"
    assert main.main(["report", str(SAMPLE), "-o", str(out), "--spectra", "--device", "cpu"]) == 0
    text = "\n".join(page.extract_text() for page in PdfReader(str(out)).pages)
    assert "Spectra" in text and "alpha" in text and "Matrices" in text
    plain = main.main(["report", str(SAMPLE), "-o", str(tmp_path / "plain.pdf")])
    assert plain == 0 and "alpha by layer" not in "\n".join(
        p.extract_text() for p in PdfReader(str(tmp_path / "plain.pdf")).pages).replace("\t", " ")

