"""The Files section says how the file was read and lists every warning, as plain text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from core.errors import UnsafeFileError


def open_small(tmp_path: Path):
    from safetensors.numpy import save_file

    from core.formats import open_checkpoint

    path = tmp_path / "model.safetensors"
    save_file({"w": np.ones((2, 2), dtype=np.float32)}, str(path))
    return open_checkpoint(str(path))


def test_files_section_shows_the_safety_statement_and_each_warning(qtbot, tmp_path):
    from gui.panels.summary import SummaryPanel

    checkpoint = open_small(tmp_path)
    checkpoint.warnings.append('placeholder object <b style="color:green">VERIFIED SAFE</b> stands for a tensor')
    checkpoint.warnings.append("the file is also a valid ZIP archive (polyglot)")
    try:
        panel = SummaryPanel(checkpoint)
        qtbot.addWidget(panel)
        assert panel.safety_label.text() == "How it was read: data only: read without running code"
        assert [label.text() for label in panel.warning_labels] == [f"⚠ {w}" for w in checkpoint.warnings]
        for label in [panel.safety_label, *panel.warning_labels]:
            assert label.textFormat() == Qt.TextFormat.PlainText
            assert label.parentWidget() is panel.files_table.parentWidget()  # inside the Files box
    finally:
        checkpoint.close()


def test_a_checkpoint_without_warnings_shows_only_the_statement(qtbot, tmp_path):
    from gui.panels.summary import SummaryPanel

    checkpoint = open_small(tmp_path)
    checkpoint.safety = "header only: no values read"
    try:
        panel = SummaryPanel(checkpoint)
        qtbot.addWidget(panel)
        assert panel.safety_label.text() == "How it was read: header only: no values read"
        assert panel.warning_labels == []
    finally:
        checkpoint.close()


def test_refusal_details_record_the_call_and_its_arguments():
    from gui.errors import details

    exc = UnsafeFileError("pickle calls os.system('<b>x</b>')", path="/m/evil.pt")
    exc.call = "os.system"  # set as attributes: works before and after core gives them as arguments
    exc.arguments = "('<!-- hidden --><b>safe</b>',)"
    text = details(exc, "/m/evil.pt")
    lines = text.splitlines()
    assert "Path: /m/evil.pt" in lines
    assert "Call: os.system" in lines
    assert lines[lines.index("Arguments:") + 1] == "('<!-- hidden --><b>safe</b>',)"
    assert "Reason: /m/evil.pt: pickle calls os.system('<b>x</b>')" in lines


def test_refusal_details_without_call_attributes_still_carry_the_reason():
    from gui.errors import details

    exc = UnsafeFileError("pickle calls posix.system('echo hi')")
    text = details(exc)
    assert "Reason: pickle calls posix.system('echo hi')" in text.splitlines()
    assert "Call:" not in text and "Arguments:" not in text
