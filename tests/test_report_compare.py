"""`main.py report A --compare B`: the comparison pages in the PDF a reader gets, and bad B refused at once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pypdf
import pytest
from safetensors.numpy import save_file

import gui.report_command
import main

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "samples"


def pdf_text(path: Path) -> list[str]:
    """Each page's text with its whitespace made single spaces (pypdf puts tabs between words)."""
    return [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(str(path)).pages]


@pytest.fixture
def fine_tune(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Eight layers; B moved layers 5-6's up-projections by a known amount."""
    rng = np.random.default_rng(21)
    a = {"model.embed_tokens.weight": rng.normal(size=(12, 8)).astype(np.float32)}
    for i in range(8):
        a[f"model.layers.{i}.mlp.up_proj.weight"] = rng.normal(size=(16, 8)).astype(np.float32)
        a[f"model.layers.{i}.mlp.down_proj.weight"] = rng.normal(size=(8, 16)).astype(np.float32)
    b = {k: v.copy() for k, v in a.items()}
    for i in (5, 6):
        b[f"model.layers.{i}.mlp.up_proj.weight"] *= np.float32(1.25)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_file(a, str(tmp_path / "a" / "model.safetensors"))
    save_file(b, str(tmp_path / "b" / "model.safetensors"))
    return tmp_path / "a", tmp_path / "b", a, b


def test_fine_tune_pages_in_the_pdf(qapp, fine_tune, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pa, pb, a, b = fine_tune
    out = tmp_path / "r.pdf"
    assert main.main(["report", str(pa), "--compare", str(pb), "-o", str(out), "--no-cache", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("wrote ")
    pages = pdf_text(out)
    first = next(i for i, t in enumerate(pages) if t.startswith("Comparison"))
    legend = next(i for i, t in enumerate(pages) if "What the words mean" in t)
    assert first < legend  # inserted before the legend
    text = " ".join(pages[first:legend + 1])
    a64 = np.concatenate([v.astype(np.float64).ravel() for v in a.values()])
    b64 = np.concatenate([b[k].astype(np.float64).ravel() for k in a])
    rel = np.linalg.norm(b64 - a64) / np.linalg.norm(a64)
    assert f"Verdict: B is a fine-tune of A: 2 of 17 tensors changed, most in layers 5-6, relative change " \
           f"{100 * rel:#.3g}%." in text
    assert f"Relative change {100 * rel:#.3g}%" in text
    assert f"Compared with (B) {pb} Comparison B is a fine-tune of A: 2 of 17 tensors changed" in pages[0]
    assert "Frozen tensors 15 of 17" in text
    assert "Where B differs from A" in text and "relative change by layer" in text
    for i in (5, 6):  # each moved by 25% (B = 1.25 A, in float32) and kept its direction up to float64 rounding
        assert re.search(rf"model\.layers\.{i}\.mlp\.up_proj\.weight F32 25\.0% (1|>0\.9999999) 0% ", text)


def test_quantised_sample_with_rank(qapp, tmp_path: Path) -> None:
    out = tmp_path / "q.pdf"
    assert main.main(["report", str(SAMPLE / "tiny-llama"), "--compare", str(SAMPLE / "tiny-llama.Q8_0.gguf"),
                      "--rank", "-o", str(out), "--device", "cpu", "--no-cache"]) == 0
    text = " ".join(pdf_text(out))
    snr = re.search(r"Verdict: B is a quantised copy of A: SNR (\d+\.\d) dB, every tensor aligned\.", text)
    assert snr and 40 < float(snr.group(1)) < 50
    assert "Pairs compared 39" in text and "Rank 90%" in text
    assert f"SNR {snr.group(1)} dB" in text  # the whole-model figure matches the verdict


def test_bad_compare_refused_before_the_statistics(qapp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def no_statistics(*args: object, **kwargs: object) -> None:
        raise AssertionError("the statistics ran before B was checked")

    monkeypatch.setattr(gui.report_command, "analyze_with_progress", no_statistics)
    out = tmp_path / "r.pdf"
    missing = tmp_path / "missing\nname.safetensors"
    assert main.main(["report", str(SAMPLE / "tiny-llama"), "--compare", str(missing), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "vocab_size": 100}))
    assert main.main(["report", str(SAMPLE / "tiny-llama"), "--compare", str(config_only), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "architecture without weights" in err and "no values to compare" in err
    assert main.main(["report", str(SAMPLE / "tiny-llama"), "--rank", "-o", str(out)]) == 2
    assert capsys.readouterr().err == "error: --rank needs --compare B: it measures the low-rank structure of B-A\n"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["config-only"]


def test_second_report_reads_the_comparison_from_the_cache(qapp, fine_tune, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    pa, pb, _, _ = fine_tune
    texts = []
    for name in ("first.pdf", "second.pdf", "third.pdf"):
        args = ["report", str(pa), "--compare", str(pb), "-o", str(tmp_path / name), "--device", "cpu"]
        assert main.main(args + (["--no-cache"] if name == "third.pdf" else [])) == 0
        texts.append(" ".join(pdf_text(tmp_path / name)))
    cached = "Time from the comparison cache (no tensor data read)"
    assert cached not in texts[0] and cached in texts[1] and cached not in texts[2]
    verdicts = [re.search(r"Verdict: B is a fine-tune of A: [^.]*\.\d+%\.", t).group(0) for t in texts]
    assert verdicts[0] == verdicts[1] == verdicts[2]
