"""Help > Legend explains the spectral terms the Spectra tab and the report use."""

from __future__ import annotations


def test_the_legend_explains_alpha(make_window, qtbot) -> None:
    """Help > Legend has the spectral terms, and can open at alpha."""
    from PySide6.QtWidgets import QTextBrowser

    window = make_window()
    window.show_legend("alpha")
    text = window.legend_dialog.findChild(QTextBrowser).toPlainText()
    assert "Alpha: the exponent of the power law" in text and "From 2 to 6 is typical of well-trained layers" in text
    assert "Stable rank" in text
    window.legend_dialog.close()
