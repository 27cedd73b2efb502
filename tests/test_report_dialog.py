"""File > Export Report (PDF) as a user meets it: a save dialog, the analysis with progress and cancel, the PDF."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pypdf
import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QProgressDialog, QPushButton
from safetensors.numpy import save_file

from core.formats import open_checkpoint
from core.stats import run
from gui.pdf import export_report_dialog


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("stats-cache")))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    rng = np.random.default_rng(4)
    path = tmp_path / "models" / "mlp.safetensors"
    path.parent.mkdir()
    save_file({"fc1.weight": rng.standard_normal((64, 32)).astype(np.float32),
               "fc1.bias": np.zeros(64, np.float32),
               "fc2.weight": rng.standard_normal((1024, 1024)).astype(np.float32)}, str(path))
    return path


class Answers:
    """Records what the dialogs were asked and answers the save dialog with ``target``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
        self.asked: list[str] = []
        self.warnings: list[str] = []

        def save(parent, caption, directory, filter_):
            self.asked.append(directory)
            return str(target), filter_

        def warn(parent, title, text):
            self.warnings.append(text)
            return QMessageBox.StandardButton.Ok

        monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save))
        monkeypatch.setattr(QMessageBox, "warning", staticmethod(warn))


def test_export_runs_the_analysis_first(qapp, model: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "docs" / "mine"
    out.parent.mkdir()
    answers = Answers(monkeypatch, out)
    with open_checkpoint(str(model)) as ck:
        written = export_report_dialog(None, ck, None, use_cache=False)
    assert written == str(out) + ".pdf" and not answers.warnings
    offered = Path(answers.asked[0])
    assert offered.name == "mlp-report.pdf" and offered.parent != model.parent  # never beside the checkpoint
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(written).pages)
    assert f"{64 * 32 + 64 + 1024 * 1024:,}" in " ".join(text.split())
    assert sorted(p.name for p in model.parent.iterdir()) == ["mlp.safetensors"]


def test_export_with_a_finished_analysis(qapp, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.pdf"
    Answers(monkeypatch, out)
    with open_checkpoint(str(model)) as ck:
        result = run(ck, use_cache=False)
        result.device = "cuda:7 (a device this test names)"
        assert export_report_dialog(None, ck, result) == str(out)
    text = " ".join(" ".join(p.extract_text() for p in pypdf.PdfReader(str(out)).pages).split())
    assert "cuda:7 (a device this test names)" in text  # the given result was used, not a new analysis


def test_unfinished_result_is_completed_first(qapp, model: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The tab's own analysis may still be running: the report reads only what the live result lacks."""
    out = tmp_path / "r.pdf"
    Answers(monkeypatch, out)
    with open_checkpoint(str(model)) as ck:
        partial = run(ck, ["fc1.weight"], use_cache=False)
        assert list(partial.summaries) == ["fc1.weight"]
        assert export_report_dialog(None, ck, partial, use_cache=False) == str(out)
        fc2 = np.asarray(ck.read_tensor("fc2.weight"), dtype=np.float64)
    texts = [" ".join(p.extract_text().split()) for p in pypdf.PdfReader(str(out)).pages]
    assert "Tensors 3 (3 analysed)" in texts[0]
    assert f"1024×1024 F32 {1024 * 1024:,} " in texts[-1]
    row = texts[-1].split("fc2.weight 1024×1024 F32 1,048,576 ")[1].split()
    assert float(row[1]) == pytest.approx(fc2.std(), rel=1e-3)  # printed to 4 significant digits


def test_cancel_stops_the_analysis_and_writes_nothing(qapp, model: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.pdf"
    answers = Answers(monkeypatch, out)

    earlier = set(QApplication.topLevelWidgets())  # dialogs of earlier tests may await deletion

    def press_cancel() -> None:
        dialogs = [w for w in QApplication.topLevelWidgets() if isinstance(w, QProgressDialog) and w not in earlier]
        if not dialogs:
            QTimer.singleShot(20, press_cancel)
            return
        dialogs[0].findChild(QPushButton).click()  # what the user does

    QTimer.singleShot(50, press_cancel)
    with open_checkpoint(str(model)) as ck:
        # 256-byte chunks: 16,000 chunks for fc2, far longer than the 50 ms before Cancel
        assert export_report_dialog(None, ck, None, use_cache=False, chunk_bytes=256) is None
    assert not out.exists() and not answers.warnings
    assert list(tmp_path.glob("*.tmp")) == [] and list(tmp_path.glob(".r.pdf*")) == []


def test_unwritable_target_is_explained(qapp, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = Answers(monkeypatch, tmp_path / "no-such-folder" / "r.pdf")
    with open_checkpoint(str(model)) as ck:
        assert export_report_dialog(None, ck, None, use_cache=False) is None
    assert len(answers.warnings) == 1 and "cannot write" in answers.warnings[0]
    assert "folder" in answers.warnings[0] and "does not exist" in answers.warnings[0]


def test_file_that_shrinks_during_analysis_is_explained(qapp, model: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.pdf"
    answers = Answers(monkeypatch, out)
    with open_checkpoint(str(model)) as ck:
        os.truncate(model, model.stat().st_size // 2)
        assert export_report_dialog(None, ck, None, use_cache=False) is None
    assert len(answers.warnings) == 1 and not out.exists()
