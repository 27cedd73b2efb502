"""A tensor name cannot become a spreadsheet formula in the exported CSV; our numbers stay numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from core.export import write_stats_csv
from core.formats import open_checkpoint
from core.stats import run

FORMULA_NAMES = ['=HYPERLINK("http://evil.example","click")', "-foo", "+1+1", "@SUM(A1:A9)", "\tcmd", "\rcmd",
                 "-0.5"]


def test_formula_names_are_neutralised_and_numbers_kept(tmp_path: Path) -> None:
    names = [*FORMULA_NAMES, "plain.weight", "x=1"]
    path = tmp_path / "m.safetensors"
    save_file({n: np.full(4, -0.5 - i, np.float32) for i, n in enumerate(names)}, str(path))
    out = tmp_path / "stats.csv"
    with open_checkpoint(str(path)) as ck:
        write_stats_csv(run(ck, use_cache=False), out, checkpoint=ck)
    with open(out, encoding="utf-8", newline="") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"'" + n for n in FORMULA_NAMES} | {"plain.weight", "x=1"}
    for i, name in enumerate(names):
        cell = "'" + name if name in FORMULA_NAMES else name
        row = rows[cell]
        assert float(row["mean"]) == -0.5 - i  # written as a plain number, read back exactly
        assert row["min"] == repr(-0.5 - i) and not row["min"].startswith("'")
        assert row["shape"] == "4" and row["dtype"] == "F32"
