"""Commands that need values refuse an architecture-only model in one line (no 'no such file')."""

from __future__ import annotations

from pathlib import Path

import pytest

import main


@pytest.mark.parametrize("argv", [["stats", "gpt2"], ["stats", "llama-3.1-8b", "--json"]])
def test_stats_of_a_config_only_model_is_refused_plainly(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("error: ") and "no values to analyse" in captured.err


def test_analysis_of_a_config_only_model_raises_the_reason() -> None:
    from core.errors import CheckpointError
    from core.formats import open_checkpoint
    from core.stats import run

    with open_checkpoint("qwen2.5-0.5b") as checkpoint, pytest.raises(CheckpointError, match="no values to analyse"):
        run(checkpoint)


def test_report_of_a_config_only_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.pdf"
    assert main.main(["report", "gpt2", "-o", str(out)]) == 2
    assert "no values to analyse" in capsys.readouterr().err and not out.exists()
