"""File > Export Report (PDF) from the app holds every section the tab has finished, page for page as
`main.py report` gives them with the matching flags; a part still running or cancelled is left out and named."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pypdf
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog
from safetensors.numpy import save_file

import main
from core.formats import open_checkpoint
from core.report import Heading, build_report
from core.report_sections import ReportSections, add_sections
from core.stats import run
from tests.conftest import llama_tensors

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"
LEGEND = "What the words mean"
SECONDS = re.compile(r"\d+(\.\d+)? s\b")  # run times differ between two runs; every figure must not


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A 4-layer Llama-like model A and a B with two matrices moved by 10% and 30%."""
    rng = np.random.default_rng(3)
    a = llama_tensors()
    b = {k: v.copy() for k, v in a.items()}
    for name, size in (("model.layers.1.self_attn.q_proj.weight", 0.1), ("model.layers.3.mlp.down_proj.weight", 0.3)):
        noise = rng.normal(size=a[name].shape)
        b[name] = (a[name] + size * np.linalg.norm(a[name]) * noise / np.linalg.norm(noise)).astype(np.float32)
    for side, tensors in (("a", a), ("b", b)):
        (tmp_path / side).mkdir()
        save_file(tensors, str(tmp_path / side / "model.safetensors"))
    return tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors"


def pages_of(path: Path) -> list[str]:
    return [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(str(path)).pages]


def section(pages: list[str], first: str, end: str) -> str:
    """The text from the page starting with ``first`` up to ``end``, footers and run times taken out."""
    text = " ".join(pages)
    start = text.index(first)
    body = text[start: text.index(end, start + len(first))]
    body = SECONDS.sub("_ s", re.sub(r"\S+ · Weightscope \S+ Page \d+ of \d+", "", body))
    return re.sub(r"Device [^,]*, _ s", "Device _", body)  # computed here (cpu) or read from the cache


def title_page(pages: list[str]) -> str:
    """The title page without what differs between two runs: how long they took, the minute they ran."""
    return re.sub(r"\d\d:\d\d UTC", "_ UTC", SECONDS.sub("_ s", pages[0]))


def cli_report(tmp_path: Path, *args: str) -> list[str]:
    out = tmp_path / "cli.pdf"
    assert main.main(["report", *args, "-o", str(out), "--device", "cpu", "--no-cache"]) == 0  # computed anew
    return pages_of(out)


def export(window, qtbot, monkeypatch: pytest.MonkeyPatch, out: Path) -> list[str]:
    """File > Export Report (PDF) to ``out``, the save dialog answered; the PDF's pages as text."""
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a: (str(out), "")))
    window.action_export_report.trigger()
    assert out.is_file()
    return pages_of(out)


def show_spectra(view, qtbot) -> None:
    view.tabs.setCurrentWidget(view.spectra_tab)
    qtbot.waitUntil(lambda: view.spectra_tab.panel is not None and view.spectra_tab.panel.done, timeout=60000)


# --------------------------------------------------------------------------- the shared insertion, no Qt
def test_sections_go_where_the_command_puts_them(pair) -> None:
    from core.diff import run as diff_run
    from core.spectra import analyze_spectra

    a, b = pair
    with open_checkpoint(str(a)) as checkpoint:
        plain = build_report(checkpoint, run(checkpoint, use_cache=False))
        gen = analyze_spectra(checkpoint)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                spectra = stop.value
                break
        diff = diff_run(a, b)
        report = add_sections(build_report(checkpoint, run(checkpoint, use_cache=False)), checkpoint,
                              ReportSections(spectra=spectra, diff=diff))
    headings = [block.text for block in report.blocks if isinstance(block, Heading)]
    plain_headings = [block.text for block in plain.blocks if isinstance(block, Heading)]
    at, legend, plain_legend = headings.index("Spectra"), headings.index(LEGEND), plain_headings.index(LEGEND)
    assert at < headings.index("Comparison") < legend  # the spectra, then the comparison, before the legend
    assert headings[:at] == plain_headings[:plain_legend] and headings[legend:] == plain_headings[plain_legend:]
    assert report.facts[0] == plain.facts[0] and report.facts[1][0] == "Compared with (B)"
    assert len(report.facts) == len(plain.facts) + 2
    assert not ReportSections().any() and ReportSections(diff=diff).any()


# --------------------------------------------------------------------------- the app's export
def test_a_plain_tab_gives_the_plain_report(make_window, qtbot, open_model, pair, tmp_path: Path, monkeypatch,
                                            dialogs) -> None:
    a, _ = pair
    window = make_window()
    open_model(window, a)
    pages = export(window, qtbot, monkeypatch, tmp_path / "app.pdf")
    text = " ".join(pages)
    assert LEGEND in text and "Spectra" not in text and "Comparison" not in text and "Compared with (B)" not in text
    assert dialogs == []  # nothing was left out: nothing to say
    assert section(pages, "Layers", LEGEND) == section(cli_report(tmp_path, str(a)), "Layers", LEGEND)


def test_finished_comparison_and_spectra_are_in_the_export(make_window, qtbot, open_model, pair, tmp_path: Path,
                                                           monkeypatch, dialogs) -> None:
    a, b = pair
    window = make_window()
    view = open_model(window, a)
    view.compare_with(str(b))
    qtbot.waitUntil(window.is_idle, timeout=60000)
    assert view.compare.panel.state == "done"
    show_spectra(view, qtbot)
    app = export(window, qtbot, monkeypatch, tmp_path / "app.pdf")
    cli = cli_report(tmp_path, str(a), "--spectra", "--compare", str(b))
    assert dialogs == []
    # the same pages, same figures, same order: Spectra, then the comparison, then the legend
    assert section(app, "Spectra", LEGEND) == section(cli, "Spectra", LEGEND)
    assert "Comparison Verdict: B is a fine-tune of A: 2 of " in section(app, "Spectra", LEGEND)
    assert " ".join(app).index("Spectra Each weight matrix") < " ".join(app).index("Comparison Verdict")
    assert title_page(app) == title_page(cli) and f"Compared with (B) {b}" in app[0]


def test_rank_figures_come_with_the_comparison(make_window, qtbot, open_model, pair, tmp_path: Path, monkeypatch,
                                               dialogs) -> None:
    a, b = pair
    window = make_window()
    view = open_model(window, a)
    view.compare_with(str(b))
    qtbot.waitUntil(window.is_idle, timeout=60000)
    view.compare.panel.rank_box.setChecked(True)  # compares again, with the rank of each change
    qtbot.waitUntil(lambda: view.compare.panel.state == "done" and window.is_idle(), timeout=60000)
    app = export(window, qtbot, monkeypatch, tmp_path / "app.pdf")
    cli = cli_report(tmp_path, str(a), "--compare", str(b), "--rank")
    assert section(app, "Comparison Verdict", LEGEND) == section(cli, "Comparison Verdict", LEGEND)
    assert "Spectra Each weight matrix" not in " ".join(app)  # the Spectra tab was never shown
    assert title_page(app) == title_page(cli)


def test_adapter_with_its_base_gives_the_lora_section(make_window, qtbot, open_model, tmp_path: Path, monkeypatch,
                                                      dialogs) -> None:
    from gui.panels.lora import LoraBox

    adapter, base = SAMPLES / "tiny-llama-lora", SAMPLES / "tiny-llama"
    window = make_window()
    view = open_model(window, adapter)
    plain = export(window, qtbot, monkeypatch, tmp_path / "plain.pdf")  # an adapter's report always has it
    assert section(plain, "LoRA adapter", "Layers") == section(cli_report(tmp_path, str(adapter)), "LoRA adapter",
                                                               "Layers")
    assert "Relative update" not in section(plain, "LoRA adapter", "Layers")
    box = view.summary.findChild(LoraBox, "LoraBox")
    box.compare_with_base(str(base))
    qtbot.waitUntil(lambda: box.base_state == "done", timeout=30000)
    app = export(window, qtbot, monkeypatch, tmp_path / "app.pdf")
    cli = cli_report(tmp_path, str(adapter), "--base", str(base.resolve()))
    lora = section(app, "LoRA adapter", "Layers")
    assert lora == section(cli, "LoRA adapter", "Layers")
    assert f"Compared with base {base.resolve()}" in lora and "Depth profile relative update" in lora
    assert dialogs == []


# --------------------------------------------------------------------------- parts not finished
def test_spectra_still_computing_are_left_out_and_named(make_window, qtbot, open_model, pair, tmp_path: Path,
                                                        monkeypatch, dialogs) -> None:
    import gui.panels.spectra as spectra_panel

    release = threading.Event()
    real = spectra_panel.analyze_spectra

    def slow_spectra(checkpoint, should_stop):
        """The real spectra, begun only once the test releases them."""
        while not release.is_set() and not should_stop():
            release.wait(0.02)
        return (yield from real(checkpoint, should_stop=should_stop))

    monkeypatch.setattr(spectra_panel, "analyze_spectra", slow_spectra)
    a, _ = pair
    window = make_window()
    view = open_model(window, a)
    view.tabs.setCurrentWidget(view.spectra_tab)
    qtbot.waitUntil(lambda: view.spectra_tab.panel is not None and view.spectra_tab.panel.job.busy, timeout=10000)
    try:
        pages = export(window, qtbot, monkeypatch, tmp_path / "app.pdf")
    finally:
        release.set()
    assert "Spectra Each weight matrix" not in " ".join(pages) and LEGEND in " ".join(pages)
    assert [d["text"] for d in dialogs] == [f"Wrote {tmp_path / 'app.pdf'}.\nThe spectra are still being computed: "
                                            "they are not in this report."]
    qtbot.waitUntil(lambda: not view.spectra_tab.panel.job.busy, timeout=10000)


def test_cancelled_comparison_is_left_out_and_named(make_window, qtbot, open_model, pair, tmp_path: Path,
                                                    monkeypatch, dialogs) -> None:
    a, b = pair
    window = make_window()
    view = open_model(window, a)
    view.compare_with(str(b))
    view.compare.cancel()
    assert view.compare.panel.state == "cancelled"
    qtbot.waitUntil(window.is_idle, timeout=30000)
    pages = export(window, qtbot, monkeypatch, tmp_path / "app.pdf")
    text = " ".join(pages)
    assert "Comparison Verdict" not in text and "Compared with (B)" not in text
    assert len(dialogs) == 1 and dialogs[0]["text"].splitlines()[1] == \
        "The comparison with b was cancelled: it is not in this report."
    assert dialogs[0]["format"] == Qt.TextFormat.PlainText  # B's name comes from the user's files


def test_updates_the_app_left_unmeasured_are_measured_for_the_report(make_window, qtbot, open_model, tmp_path: Path,
                                                                     monkeypatch, dialogs) -> None:
    import gui.panels.lora as lora_panel

    monkeypatch.setattr(lora_panel, "MEASURE_LIMIT", 0)  # as for an adapter too large to measure while it opens
    adapter = SAMPLES / "tiny-llama-lora"
    window = make_window()
    view = open_model(window, adapter)
    box = view.summary.findChild(lora_panel.LoraBox, "LoraBox")
    assert all(u.delta_fro is None for u in box.updates)
    app = export(window, qtbot, monkeypatch, tmp_path / "app.pdf")
    lora = section(app, "LoRA adapter", "Layers")
    assert lora == section(cli_report(tmp_path, str(adapter)), "LoRA adapter", "Layers")
    assert "not measured in the app" not in lora


def test_sample_against_its_quantised_copy_with_rank_and_spectra(make_window, qtbot, open_model, tmp_path: Path,
                                                                  monkeypatch, dialogs) -> None:
    a, b = SAMPLES / "tiny-llama", SAMPLES / "tiny-llama.Q8_0.gguf"
    window = make_window()
    view = open_model(window, a)
    view.compare_with(str(b))
    panel = view.compare.panel
    panel.rank_box.setChecked(True)
    qtbot.waitUntil(lambda: panel.state == "done" and window.is_idle(), timeout=60000)
    show_spectra(view, qtbot)
    app = export(window, qtbot, monkeypatch, tmp_path / "app.pdf")
    cli = cli_report(tmp_path, str(a), "--spectra", "--compare", str(b), "--rank")
    shown = section(app, "Spectra", LEGEND)
    assert shown == section(cli, "Spectra", LEGEND)
    assert "Verdict: B is a quantised copy of A: SNR " in shown  # the verdict of a Q8_0 copy
    ranked = r"SNR Rank 90% model\.layers\.\d\.\S+ ?weight F32 → Q8_0 \S+% \S+ \S+% \S+ \S+ dB \d+ of 64"
    assert re.search(ranked, shown)  # the rank column of the most changed tensors
    assert dialogs == []
