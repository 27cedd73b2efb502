"""The report's Spectra section: what alpha means, alpha by layer per role, and the matrices worth a look.

Built from a SpectraResult as plain blocks (core.report), so the PDF writer draws it like every other page.
"""

from __future__ import annotations

from typing import Any

from core.checkpoint import Checkpoint
from core.numbers import format_value
from core.report import Heading, KeyValues, LinePlot, Paragraph, PlotGrid, Series, Table, clip
from core.taxonomy import layer_index

MAX_FLAGGED_ROWS = 60
EXPLANATION = (
    "Each weight matrix's eigenvalues (the squared singular values) are fitted with a power law; its exponent "
    "alpha measures how heavy-tailed the layer's spectrum is, a sign of how well the layer learned, with no data "
    "needed. WeightWatcher's ranges: alpha from 2 to 6 is typical of well-trained layers; under 2, over-trained "
    "(a risk of rank collapse); over 6, under-trained; over 8 the fit itself is unreliable.")


def spectra_blocks(checkpoint: Checkpoint, result: Any) -> list:
    """Heading, explanation, model averages, alpha by layer per role, and the flagged matrices."""
    blocks: list = [Heading("Spectra"), Paragraph(EXPLANATION, style="note")]
    summary = result.summary()
    done = result.analysed()
    rows = [("Matrices analysed", f"{summary['matrices']:,}"),
            ("Not analysed", f"{summary['not_analysed']:,}"),
            ("Mean alpha", _value(summary.get("alpha"))),
            ("Mean alpha-weighted", _value(summary.get("alpha_weighted"))),
            ("Mean log norm", _value(summary.get("log_norm"))),
            ("Device", f"{result.device}, {result.seconds:.1f} s")]
    rows += [(f"Verdict: {name}", f"{count:,}") for name, count in sorted(summary["verdicts"].items())]
    blocks.append(KeyValues(rows, title="Model"))
    series = _alpha_by_layer(checkpoint, done)
    if series:
        blocks.append(PlotGrid([LinePlot("alpha by layer", series, ylabel="alpha")], columns=1))
    flagged = [m for m in done if m.metrics.verdict != "well trained" or m.metrics.fit_quality != "good"]
    skipped = [m for m in result.matrices.values() if m.metrics is None]
    if flagged:
        table_rows = [[clip(m.name, 90), "×".join(str(d) for d in m.shape), _value(m.metrics.alpha),
                       m.metrics.verdict, m.metrics.fit_quality] for m in flagged[:MAX_FLAGGED_ROWS]]
        note = f"and {len(flagged) - MAX_FLAGGED_ROWS:,} more" if len(flagged) > MAX_FLAGGED_ROWS else ""
        blocks.append(Table(["Matrix", "Shape", "alpha", "Verdict", "Fit"], table_rows, "llrll",
                            [5, 1.4, 1, 2.6, 1.2], title="Matrices worth a look", note=note))
    else:
        blocks.append(Paragraph("Every analysed matrix is in the well-trained range with a good fit.", style="note"))
    if skipped:
        table_rows = [[clip(m.name, 90), "×".join(str(d) for d in m.shape), clip(m.reason or "", 80)]
                      for m in skipped[:MAX_FLAGGED_ROWS]]
        blocks.append(Table(["Matrix", "Shape", "Not analysed because"], table_rows, "lll", [5, 1.4, 4],
                            title="Not analysed"))
    return blocks


def insert_before(blocks: list, heading: str) -> int:
    """Where a section goes: before the heading with this text (the legend), else at the end."""
    return next((i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == heading), len(blocks))


def _alpha_by_layer(checkpoint: Checkpoint, done: list) -> list[Series]:
    """One line per role: alpha of each numbered layer's matrix of that role (the mean when a layer has several)."""
    roles = {t.name: t.role for t in checkpoint.tensors}
    points: dict[str, dict[int, list[float]]] = {}
    for m in done:
        index = layer_index(m.name)
        if index is None or m.metrics.alpha is None:
            continue
        points.setdefault(roles.get(m.name, "other"), {}).setdefault(index, []).append(m.metrics.alpha)
    out = []
    for role in sorted(points):
        layers = sorted(points[role])
        out.append(Series(role, [float(i) for i in layers], [sum(points[role][i]) / len(points[role][i])
                                                             for i in layers]))
    return out


def _value(x: float | None) -> str:
    return "-" if x is None else format_value(x)
