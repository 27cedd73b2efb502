"""The PDF report as a reader gets it: opened with pypdf, its pages, text, vector plots and page numbers.

Truth is the model the test writes: its exact parameter count and tensor names. Markup in names and
metadata must come out as the literal characters, never as formatting.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pypdf
import pytest
from safetensors.numpy import save_file

import main
from core.errors import CheckpointError
from core.formats import open_checkpoint
from core.stats import run
from tests.corpus import CORPUS
from tests.test_report_content import llama_tensors

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ["Summary", "Layers", "Value distributions", "Depth profiles", "Findings", "All tensors"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("stats-cache")))


@pytest.fixture
def llama(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    tensors = llama_tensors()
    path = tmp_path / "tiny-llama.safetensors"
    save_file(tensors, str(path))
    return path, tensors


def page_texts(pdf: Path) -> list[str]:
    reader = pypdf.PdfReader(str(pdf))
    return [" ".join(page.extract_text().split()) for page in reader.pages]


def write(path: Path, out: Path) -> int:
    from gui.pdf import write_report

    with open_checkpoint(str(path)) as ck:
        return write_report(ck, run(ck, use_cache=False), out)


def test_known_model_pages_text_and_plots(qapp, llama: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    path, tensors = llama
    out = tmp_path / "report.pdf"
    pages = write(path, out)
    texts = page_texts(out)
    # title, summary (2 pages: its tables run over), layers, distributions, depth, findings (2), all tensors (2):
    # each section starts on a new page
    assert pages == len(texts) == 10
    starts = {name: next(i for i, t in enumerate(texts) if t.startswith(name)) for name in SECTIONS}
    assert list(starts.values()) == sorted(starts.values()) and starts["Summary"] == 1
    assert texts[0].startswith("CHECKPOINT REPORT tiny-llama")
    exact = sum(a.size for a in tensors.values())
    assert f"({exact:,})" in texts[0] and f"{exact:,}" in texts[1]
    everything = " ".join(texts)
    for name in tensors:
        assert name in everything, name
    for i, text in enumerate(texts, start=1):
        assert text.endswith(f"Page {i} of {pages}"), text[-80:]
    reader = pypdf.PdfReader(str(out))
    # step histograms (2 points per bin, 120 bins, 2 + 9 histograms) and depth lines are vector paths
    for number, least in ((starts["Value distributions"], 11 * 240), (starts["Depth profiles"], 3 * 8 * 5)):
        page = reader.pages[number]
        stream = page.get_contents().get_data().decode("latin-1")
        assert len(re.findall(r"(?<=\s)l(?=\s)", stream)) > least  # "x y l": lineto
        xobjects = page["/Resources"].get("/XObject") or {}
        assert not [k for k, v in xobjects.items() if v.get_object().get("/Subtype") == "/Image"]
    distributions = texts[starts["Value distributions"]]
    assert "Whole model: values" in distributions and "count (log scale)" in distributions
    depth = texts[starts["Depth profiles"]]
    assert "standard deviation by layer" in depth and "layer" in depth and " down " in depth  # legend
    findings = " ".join(texts[starts["Findings"]:starts["All tensors"]])
    assert "model.layers.2.mlp.down_proj.weight" in findings and "Unlike their siblings" in findings


def test_markup_in_names_and_metadata_is_shown_literally(qapp, tmp_path: Path) -> None:
    names = ["<b>bold</b>.weight", "<script>alert(1)</script>.weight", "a&amp;b.weight", "x<br/>y.bias",
             "&lt;tag&gt;.weight"]
    rng = np.random.default_rng(1)
    path = tmp_path / "<i>odd<i>&amp;name.safetensors"  # a file name cannot hold "/"
    meta = {"description": "<h1>big</h1> & <a href='http://x'>link</a>", "<b>key</b>": "&nbsp;"}
    save_file({n: rng.standard_normal(8).astype(np.float32) for n in names}, str(path), metadata=meta)
    out = tmp_path / "report.pdf"
    write(path, out)
    everything = " ".join(page_texts(out))
    for name in names:
        assert name in everything, name
    assert "<h1>big</h1> & <a href='http://x'>link</a>" in everything
    assert "<b>key</b>" in everything and "&nbsp;" in everything
    assert "<i>odd<i>&amp;name" in everything  # the title


def test_corpus_metadata_with_script_tags_stays_text(qapp, tmp_path: Path) -> None:
    path = CORPUS / "good" / "safetensors" / "modelaudit-script_injection.safetensors"
    with open_checkpoint(str(path)) as ck:
        scripts = [v for v in ck.metadata.values() if isinstance(v, str) and "<script>" in v]
    assert scripts
    out = tmp_path / "r.pdf"
    write(path, out)
    everything = " ".join(page_texts(out))
    for value in scripts:
        assert " ".join(value.split()) in everything


def test_model_without_tensors(qapp, tmp_path: Path) -> None:
    path = CORPUS / "good" / "gguf" / "ggml-vocab-phi-3.gguf"
    out = tmp_path / "r.pdf"
    write(path, out)
    texts = page_texts(out)
    assert "Parameters 0 Tensors 0 (0 analysed)" in texts[0]
    assert "nothing to analyse" in texts[0]
    assert any("no finite values" in t for t in texts)
    assert any("This model has no numbered, repeated layers" in t for t in texts)
    assert texts[-1].startswith("All tensors") and texts[-1].endswith(f"Page {len(texts)} of {len(texts)}")


def test_long_tables_repeat_their_header(qapp, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    tensors = {f"net.unit{chr(97 + i // 26)}{chr(97 + i % 26)}.weight": rng.standard_normal(4).astype(np.float32)
               for i in range(150)}
    path = tmp_path / "wide.safetensors"
    save_file(tensors, str(path))
    out = tmp_path / "report.pdf"
    write(path, out)
    texts = page_texts(out)
    start = next(i for i, t in enumerate(texts) if t.startswith("All tensors"))
    pages = texts[start:]
    assert len(pages) >= 3  # 150 rows do not fit on one page
    for text in pages:
        assert "Tensor Shape Type Elements Mean Std Max |w|" in text  # the header on every page
    listed = [name for name in tensors if any(f"{name} 4 F32" in t for t in pages)]
    assert listed == list(tensors)
    layers = [t for t in texts[:start] if "Layer Parameters Share Mean Std Max |w| Kurtosis" in t]
    assert len(layers) >= 2  # the layer table (150 rows, no repeats to fold) runs over too


def test_cli_writes_report(qapp, llama: tuple[Path, dict[str, np.ndarray]], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = llama
    out = tmp_path / "out" / "r.pdf"
    out.parent.mkdir()
    assert main.main(["report", str(path), "-o", str(out), "--no-cache", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == f"wrote {out} (10 pages)\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.pdf"]  # no temporary file left behind
    assert len(pypdf.PdfReader(str(out)).pages) == 10
    assert sorted(p.name for p in path.parent.iterdir()) == ["out", "tiny-llama.safetensors"]


@pytest.mark.parametrize("target", ["missing/r.pdf", "folder", "file.txt/r.pdf"])
def test_cli_unwritable_target(qapp, llama: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, target: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = llama
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    assert main.main(["report", str(path), "-o", str(tmp_path / target), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ") and err.count("\n") == 1


def test_cli_refuses_bad_input(qapp, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 5)
    assert main.main(["report", str(bad), "-o", str(tmp_path / "r.pdf")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "r.pdf").exists()


def test_failed_write_keeps_old_file_and_leaves_no_temp(qapp, llama: tuple[Path, dict[str, np.ndarray]],
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gui.pdf

    path, _ = llama
    out = tmp_path / "keep" / "r.pdf"
    out.parent.mkdir()
    out.write_bytes(b"old report")

    def broken(report: object, tmp: str) -> int:
        Path(tmp).write_bytes(b"%PDF-half")
        raise CheckpointError("disk full")

    monkeypatch.setattr(gui.pdf, "render_report", broken)
    with pytest.raises(CheckpointError, match="disk full"):
        write(path, out)
    assert out.read_bytes() == b"old report"
    assert sorted(p.name for p in out.parent.iterdir()) == ["r.pdf"]


@pytest.mark.slow
def test_headless_without_display(llama: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    """`main.py report` in a fresh process with no DISPLAY and no QT_QPA_PLATFORM picks offscreen itself."""
    path, _ = llama
    out = tmp_path / "r.pdf"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "report", str(path), "-o", str(out), "--no-cache"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(pypdf.PdfReader(str(out)).pages) == 10
