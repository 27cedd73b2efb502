"""Where the shared corpus lives and what it must contain, read from its own truth file."""

from __future__ import annotations

import json
import os
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
if not CORPUS.is_dir():  # CI clones the repo with ../shared beside it; allow an override too
    CORPUS = Path(os.environ.get("WEIGHTSCOPE_CORPUS", CORPUS))


def truth() -> list[dict]:
    """Expected tensor and element counts of every good file, from MANIFEST's machine-readable twin."""
    return json.loads((CORPUS / "truth.json").read_text())


def bad_files() -> list[Path]:
    """Every file that must be refused (hostile, malformed, unsupported)."""
    out: list[Path] = []
    for folder in ("hostile", "malformed", "unsupported"):
        out += sorted(p for p in (CORPUS / folder).rglob("*") if p.is_file())
    return out
