"""Draws a core.report Report on A4 pages with Qt's own PDF writer: real text, vector plots, page numbers.

Layout runs first and records, per page, what to draw where; drawing follows,
so every footer can say "Page N of M". Text from the file (tensor names,
metadata) reaches the page only through plain-text calls (QPainter.drawText)
or html.escape'd QTextDocument HTML, so markup in a name is shown, never run.
"""

from __future__ import annotations

import html
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QMarginsF, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QPageLayout,
    QPageSize,
    QPainter,
    QPainterPath,
    QPdfWriter,
    QPen,
    QTextDocument,
    QTextLayout,
    QTextOption,
)

from core.errors import CheckpointError
from core.export import ExportError, atomic_path
from core.report import Heading, Histogram, KeyValues, LinePlot, Paragraph, PlotGrid, Report, Table, build_report
from core.version import __version__

DPI = 300
FAMILIES = ["DejaVu Sans", "Noto Sans", "Arial", "Helvetica", "sans-serif"]
INK = QColor("#1f2328")
MUTED = QColor("#59636e")
RULE = QColor("#d0d7de")
ZEBRA = QColor("#f3f5f8")
HEAD_BG = QColor("#e6ebf1")
ACCENT = QColor("#1f5fa8")
FILL = QColor(31, 95, 168, 60)
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#ad494a"]

Op = Callable[[QPainter], None]


def mm(value: float) -> float:
    return value * DPI / 25.4


PAGE_W, PAGE_H = mm(210), mm(297)
LEFT, RIGHT, TOP, BOTTOM = mm(18), mm(18), mm(18), mm(20)
CONTENT_W = PAGE_W - LEFT - RIGHT


def font(size: float, bold: bool = False, italic: bool = False) -> QFont:
    f = QFont()
    f.setFamilies(FAMILIES)
    f.setPointSizeF(size)
    f.setBold(bold)
    f.setItalic(italic)
    for tag in ("liga", "clig", "dlig"):  # "ff" must stay two letters: names are searched and copied
        f.setFeature(QFont.Tag(tag), 0)
    return f


class _Layout:
    """Places blocks top to bottom, page by page; ``pages`` holds the drawing operations of each page."""

    def __init__(self, device: QPdfWriter) -> None:
        self.device = device
        self.pages: list[list[Op]] = [[]]
        self.y = TOP
        self.bottom = PAGE_H - BOTTOM
        self._docs: list[QTextDocument] = []  # kept alive until drawn

    # --- pages ----------------------------------------------------------------
    @property
    def page_empty(self) -> bool:
        return self.y <= TOP + 1

    def new_page(self) -> None:
        self.pages.append([])
        self.y = TOP

    def ensure(self, height: float) -> None:
        if self.y + height > self.bottom and not self.page_empty:
            self.new_page()

    def add(self, op: Op) -> None:
        self.pages[-1].append(op)

    def metrics(self, f: QFont) -> QFontMetricsF:
        return QFontMetricsF(f, self.device)

    def wrap(self, text: str, f: QFont, width: float) -> list[str]:
        """Lines of ``text`` no wider than ``width``: broken between words, or anywhere inside a word too long
        for a line (tensor names have no spaces)."""
        fm = self.metrics(f)
        if "\n" not in text and fm.horizontalAdvance(text) <= width:
            return [text]
        option = QTextOption()
        option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        lines: list[str] = []
        for part in text.split("\n"):
            layout = QTextLayout(part, f, self.device)
            layout.setTextOption(option)
            layout.beginLayout()
            while True:
                line = layout.createLine()
                if not line.isValid():
                    break
                line.setLineWidth(width)
                lines.append(part[line.textStart() : line.textStart() + line.textLength()].rstrip())
            layout.endLayout()
        return lines or [""]

    def line_height(self, f: QFont) -> float:
        return self.metrics(f).lineSpacing()

    # --- text -----------------------------------------------------------------
    def document(self, html_text: str, size: float, width: float, color: QColor = INK) -> QTextDocument:
        doc = QTextDocument()
        doc.documentLayout().setPaintDevice(self.device)
        doc.setDefaultFont(font(size))
        doc.setDocumentMargin(0)
        doc.setDefaultStyleSheet(f"body {{ color: {color.name()}; }}")
        doc.setHtml(f"<body>{html_text}</body>")
        doc.setTextWidth(width)
        self._docs.append(doc)
        return doc

    def place_document(self, doc: QTextDocument, x: float, gap_after: float) -> None:
        height = doc.size().height()
        self.ensure(height)
        y = self.y

        def draw(p: QPainter) -> None:
            p.save()
            p.translate(x, y)
            doc.drawContents(p)
            p.restore()

        self.add(draw)
        self.y += height + gap_after

    def line_text(self, text: str, f: QFont, color: QColor = INK, gap_after: float = 0.0, x: float = LEFT,
                  width: float = CONTENT_W, keep_with: float = 0.0) -> None:
        lines = self.wrap(text, f, width)
        height = len(lines) * self.line_height(f)
        self.ensure(height + keep_with)
        self.add(text_op(lines, f, color, x, self.y, width, self.line_height(f)))
        self.y += height + gap_after


def text_op(lines: list[str], f: QFont, color: QColor, x: float, y: float, width: float, step: float,
            align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft) -> Op:
    """Plain text, line by line: whatever the lines hold is shown as characters, never interpreted."""

    def draw(p: QPainter) -> None:
        p.setFont(f)
        p.setPen(color)
        for i, line in enumerate(lines):
            p.drawText(QRectF(x, y + i * step, width, step), int(align), line)

    return draw


# --------------------------------------------------------------------------- blocks
def _heading(lay: _Layout, block: Heading) -> None:
    if block.level == 1:
        if not lay.page_empty:
            lay.new_page()
        lay.line_text(block.text, font(17, bold=True), ACCENT, gap_after=mm(1.5))
        y = lay.y
        lay.add(lambda p: (p.setPen(QPen(ACCENT, mm(0.5))), p.drawLine(QPointF(LEFT, y), QPointF(LEFT + CONTENT_W, y))))
        lay.y += mm(5)
    else:
        lay.y += mm(2.5)
        lay.line_text(block.text, font(12, bold=True), INK, gap_after=mm(2), keep_with=mm(18))


def _paragraph(lay: _Layout, block: Paragraph) -> None:
    if block.style == "term" and ": " in block.text:
        term, _, rest = block.text.partition(": ")
        body = f"<b>{html.escape(term)}:</b> {html.escape(rest)}"
    else:
        body = html.escape(block.text)
    size, color = (8.5, MUTED) if block.style == "note" else (9.5, INK)
    doc = lay.document(body, size, CONTENT_W, color)
    lay.place_document(doc, LEFT, mm(2.5))


def _column_widths(lay: _Layout, block: Table, fonts: tuple[QFont, QFont], pad: float) -> list[float]:
    """Every column as wide as its widest cell; the flexible one (largest relative width) takes the rest
    and wraps. If the fixed columns would squeeze it below 40%, number columns (right-aligned) keep their natural
    width and the text columns share the rest by relative width, so no number is ever broken across lines."""
    flex = max(range(len(block.widths)), key=lambda c: block.widths[c])
    body, head = (lay.metrics(f) for f in fonts)
    natural = []
    for c in range(len(block.widths)):
        cells = [body.horizontalAdvance(row[c]) for row in block.rows]
        if block.columns:
            cells.append(head.horizontalAdvance(block.columns[c]))
        natural.append(max(cells, default=0.0) + 2 * pad + mm(0.5))
    fixed = sum(w for c, w in enumerate(natural) if c != flex)
    if CONTENT_W - fixed >= CONTENT_W * 0.4:
        return [CONTENT_W - fixed if c == flex else w for c, w in enumerate(natural)]
    numbers = [c for c in range(len(natural)) if block.align[c] == "r"]
    texts = [c for c in range(len(natural)) if c not in numbers]
    number_w = sum(natural[c] for c in numbers)
    if texts and number_w <= CONTENT_W * 0.85:  # numbers keep their width (never broken mid-number), text shares
        share = sum(block.widths[c] for c in texts)
        return [natural[c] if c in numbers else (CONTENT_W - number_w) * block.widths[c] / share
                for c in range(len(natural))]
    total = sum(block.widths)
    return [CONTENT_W * w / total for w in block.widths]


def _table(lay: _Layout, block: Table) -> None:
    body_font, bold_font, head_font = font(8), font(8, bold=True), font(8, bold=True)
    pad = mm(1.4)
    widths = _column_widths(lay, block, (bold_font, head_font), pad)
    xs = [LEFT + sum(widths[:i]) for i in range(len(widths))]

    def cell_align(col: int) -> Qt.AlignmentFlag:
        return Qt.AlignmentFlag.AlignRight if block.align[col] == "r" else Qt.AlignmentFlag.AlignLeft

    def indent(row: int, col: int) -> float:
        if col == 0 and block.indents is not None and row >= 0:
            return mm(3.2) * block.indents[row]
        return 0.0

    def cell_lines(cells: list[str], f: QFont, row: int) -> list[list[str]]:
        return [lay.wrap(text, f, widths[c] - 2 * pad - indent(row, c)) for c, text in enumerate(cells)]

    def row_height(cells: list[str], f: QFont, row: int) -> float:
        return max(len(lines) for lines in cell_lines(cells, f, row)) * lay.line_height(f) + 2 * pad * 0.6

    def place_row(cells: list[str], f: QFont, background: QColor | None, row: int, header: bool) -> None:
        height = row_height(cells, f, row)
        y = lay.y
        ops = [text_op(lines, f, INK, xs[c] + pad + indent(row, c), y + pad * 0.6, widths[c] - 2 * pad - indent(row, c),
                       lay.line_height(f), cell_align(c))
               for c, lines in enumerate(cell_lines(cells, f, row))]

        def draw(p: QPainter) -> None:
            if background is not None:
                p.fillRect(QRectF(LEFT, y, CONTENT_W, height), background)
            for op in ops:
                op(p)
            if header:
                p.setPen(QPen(MUTED, mm(0.25)))
                p.drawLine(QPointF(LEFT, y + height), QPointF(LEFT + CONTENT_W, y + height))

        lay.add(draw)
        lay.y += height

    header = block.columns if block.columns else None
    header_h = row_height(header, head_font, -1) if header else 0.0
    fonts = [bold_font if i in block.bold_rows else body_font for i in range(len(block.rows))]
    heights = [row_height(cells, fonts[i], i) for i, cells in enumerate(block.rows)]
    title_f = font(10.5, bold=True)
    title_h = len(lay.wrap(block.title, title_f, CONTENT_W)) * lay.line_height(title_f) + mm(3) if block.title else 0.0
    whole = title_h + header_h + sum(heights)
    if whole <= (lay.bottom - TOP) * 0.45:
        lay.ensure(whole)  # a short table is never split
    if block.title:
        lay.y += mm(1.5)
        lay.line_text(block.title, font(10.5, bold=True), INK, gap_after=mm(1.5),
                      keep_with=header_h + (heights[0] if heights else 0.0))
    first = True
    for i, cells in enumerate(block.rows):
        if first or lay.y + heights[i] > lay.bottom:
            lay.ensure(header_h + heights[i])
            if header:
                place_row(header, head_font, HEAD_BG, -1, True)
            first = False
        place_row(cells, fonts[i], ZEBRA if i % 2 else None, i, False)
    if first and header:  # a table with no rows still shows its header
        lay.ensure(header_h)
        place_row(header, head_font, HEAD_BG, -1, True)
    lay.add(_rule(lay.y))
    lay.y += mm(1)
    if block.note:
        lay.line_text(block.note, font(8, italic=True), MUTED)
    lay.y += mm(3)


def _rule(y: float) -> Op:
    def draw(p: QPainter) -> None:
        p.setPen(QPen(RULE, mm(0.25)))
        p.drawLine(QPointF(LEFT, y), QPointF(LEFT + CONTENT_W, y))

    return draw


def _key_values(lay: _Layout, block: KeyValues) -> None:
    table = Table([], [[k, v] for k, v in block.rows], "ll", [1.3, 3], title=block.title)
    _table(lay, table)


def _plot_grid(lay: _Layout, block: PlotGrid) -> None:
    if block.title:
        lay.y += mm(1.5)
        lay.line_text(block.title, font(10.5, bold=True), INK, gap_after=mm(1.5), keep_with=mm(40))
    gap = mm(5)
    cols = max(1, block.columns)
    width = (CONTENT_W - gap * (cols - 1)) / cols
    height = {1: mm(70), 2: mm(62), 3: mm(48)}.get(cols, mm(48))
    for start in range(0, len(block.plots), cols):
        lay.ensure(height)
        y = lay.y
        for j, plot in enumerate(block.plots[start : start + cols]):
            rect = QRectF(LEFT + j * (width + gap), y, width, height)
            lay.add(_plot_op(plot, rect))
        lay.y += height + mm(3)
    lay.y += mm(1)


def _plot_op(plot: Histogram | LinePlot, rect: QRectF) -> Op:
    if isinstance(plot, Histogram):
        return lambda p: draw_histogram(p, plot, rect)
    return lambda p: draw_lines(p, plot, rect)


def _title_page(lay: _Layout, report: Report) -> None:
    lay.y = TOP + mm(38)
    lay.line_text(report.subtitle.upper(), font(10, bold=True), ACCENT, gap_after=mm(3))
    lay.line_text(report.title, font(28, bold=True), INK, gap_after=mm(4))
    y = lay.y
    lay.add(lambda p: p.fillRect(QRectF(LEFT, y, mm(40), mm(1.2)), ACCENT))
    lay.y += mm(10)
    _table(lay, Table([], [[k, v] for k, v in report.facts], "ll", [1.1, 3]))
    lay.y += mm(4)
    _table(lay, report.files)


DRAWERS: dict[type, Callable[[_Layout, Any], None]] = {
    Heading: _heading, Paragraph: _paragraph, Table: _table, KeyValues: _key_values, PlotGrid: _plot_grid,
}


# --------------------------------------------------------------------------- plots
def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    if not math.isfinite(hi - lo):  # a range wider than float64 (data near -+1.8e308): tick a tenth of it
        return [t * 10.0 for t in nice_ticks(lo / 10.0, hi / 10.0, target) if math.isfinite(t * 10.0)]
    raw = (hi - lo) / max(1, target)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * 0.7)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9 and math.isfinite(value) and len(ticks) < 100:  # hi + ... may be inf
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis over [lo, hi] (lo > 0): decades, thinned to about six; 1-2-5 steps when the
    range spans less than three decades; plain round steps when it spans less than one."""
    a, b = math.floor(math.log10(lo)), min(math.ceil(math.log10(hi)), 308)  # 10.0**309 overflows
    stride = max(1, math.ceil((b - a + 1) / 6))
    decades = [10.0**e for e in range(a, b + 1, stride) if lo <= 10.0**e <= hi]
    if len(decades) >= 3:
        return decades
    steps = [m * 10.0**e for e in range(a, b + 1) for m in (1, 2, 5) if lo <= m * 10.0**e <= hi]
    if len(steps) >= 3:
        return steps
    return [t for t in nice_ticks(lo, hi, 4) if t > 0]


def tick_label(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e5:
        return f"{value:.6g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _axes(p: QPainter, rect: QRectF, title: str, xlabel: str, ylabel: str, legend_w: float = 0.0) -> QRectF:
    """Draws the title and axis labels; returns the inner plotting area."""
    title_f, label_f = font(8.5, bold=True), font(7)
    p.setFont(title_f)
    p.setPen(INK)
    title_h = QFontMetricsF(title_f, p.device()).height()
    p.drawText(QRectF(rect.left(), rect.top(), rect.width(), title_h), int(Qt.AlignmentFlag.AlignLeft), title)
    lh = QFontMetricsF(label_f, p.device()).height()
    area = QRectF(rect.left() + mm(14) + lh, rect.top() + title_h + mm(2), 0, 0)
    area.setRight(rect.right() - mm(2) - legend_w)
    area.setBottom(rect.bottom() - lh * 2 - mm(2.5))
    p.setFont(label_f)
    p.setPen(MUTED)
    p.drawText(QRectF(area.left(), rect.bottom() - lh, area.width(), lh), int(Qt.AlignmentFlag.AlignHCenter), xlabel)
    p.save()
    p.translate(rect.left(), area.bottom())
    p.rotate(-90)
    p.drawText(QRectF(0, 0, area.height(), lh), int(Qt.AlignmentFlag.AlignHCenter), ylabel)
    p.restore()
    return area


def _x_ticks(p: QPainter, lo: float, hi: float, area: QRectF, fx: Callable[[float], float],
             label: Callable[[float], str], integers: bool = False) -> list[tuple[float, str]]:
    """As many round x ticks as fit without their labels touching (at least two where the range allows)."""
    fm = QFontMetricsF(font(7), p.device())
    best: list[tuple[float, str]] = []
    for target in range(8, 1, -1):
        values = [t for t in nice_ticks(lo, hi, target) if lo <= t <= hi and (not integers or float(t).is_integer())]
        ticks = [(fx(t), label(t)) for t in values]
        widths = [fm.horizontalAdvance(text) for _, text in ticks]
        gaps = [ticks[i + 1][0] - ticks[i][0] - (widths[i] + widths[i + 1]) / 2 for i in range(len(ticks) - 1)]
        best = ticks
        if all(g >= mm(1.5) for g in gaps):
            break
    return best


def _frame(p: QPainter, area: QRectF, xticks: list[tuple[float, str]], yticks: list[tuple[float, str]]) -> None:
    """Grid lines, the axis box and tick labels (positions already in device coordinates)."""
    label_f = font(7)
    fm = QFontMetricsF(label_f, p.device())
    p.setFont(label_f)
    for x, text in xticks:
        p.setPen(QPen(RULE, mm(0.15)))
        p.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
        p.setPen(MUTED)
        w = fm.horizontalAdvance(text) + mm(1)
        p.drawText(QRectF(x - w / 2, area.bottom() + mm(1), w, fm.height()), int(Qt.AlignmentFlag.AlignHCenter), text)
    for y, text in yticks:
        p.setPen(QPen(RULE, mm(0.15)))
        p.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
        p.setPen(MUTED)
        p.drawText(QRectF(area.left() - mm(14), y - fm.height() / 2, mm(13), fm.height()),
                   int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), text)
    p.setPen(QPen(MUTED, mm(0.25)))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRect(area)


def _no_data(p: QPainter, area: QRectF, text: str) -> None:
    p.setPen(QPen(RULE, mm(0.25)))
    p.drawRect(area)
    p.setFont(font(8, italic=True))
    p.setPen(MUTED)
    p.drawText(area, int(Qt.AlignmentFlag.AlignCenter), text)


def _x_scale(lo: float, hi: float, area: QRectF) -> tuple[float, float, Callable[[float], float]]:
    if not hi > lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = _finite(lo - pad), _finite(hi + pad)
    return lo, hi, lambda v: area.left() + _fraction(v, lo, hi) * area.width()


def _finite(x: float) -> float:
    """x clamped to float64's finite range (padding an axis at -+1.8e308 must not make it infinite)."""
    return min(max(x, -sys.float_info.max), sys.float_info.max)


def _fraction(v: float, lo: float, hi: float) -> float:
    """(v - lo) / (hi - lo) computed on halves, so no difference overflows for data near -+1.8e308."""
    return (v * 0.5 - lo * 0.5) / (hi * 0.5 - lo * 0.5)


def draw_histogram(p: QPainter, plot: Histogram, rect: QRectF) -> None:
    area = _axes(p, rect, plot.title, plot.xlabel, plot.ylabel if plot.log_y else "count")
    counts, edges = plot.counts, plot.edges
    if not counts or not any(counts):
        _no_data(p, area, "no finite values")
        return
    top = max(counts)
    if plot.log_y:
        y_lo, y_hi = 0.5, top * 1.6

        def fy(c: float) -> float:
            c = max(c, y_lo)
            return area.bottom() - (math.log10(c) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)) \
                * area.height()

        yt = log_ticks(1, max(top, 10))
    else:
        y_hi = top * 1.08

        def fy(c: float) -> float:
            return area.bottom() - c / y_hi * area.height()

        yt = [t for t in nice_ticks(0, y_hi, 4) if t <= y_hi]
    lo, hi, fx = _x_scale(edges[0], edges[-1], area)
    xt = _x_ticks(p, lo, hi, area, fx, tick_label)
    _frame(p, area, xt, [(fy(t), _count_label(t)) for t in yt])
    path = QPainterPath(QPointF(fx(edges[0]), area.bottom()))
    for i, c in enumerate(counts):
        y = fy(c) if c > 0 else area.bottom()
        path.lineTo(fx(edges[i]), y)
        path.lineTo(fx(edges[i + 1]), y)
    path.lineTo(fx(edges[-1]), area.bottom())
    p.save()
    p.setClipRect(area)
    fill = QPainterPath(path)
    fill.closeSubpath()
    p.fillPath(fill, QBrush(FILL))
    p.setPen(QPen(ACCENT, mm(0.3)))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawPath(path)
    p.restore()


def _count_label(value: float) -> str:
    if value >= 1e6:
        return f"1e{round(math.log10(value))}" if math.log10(value).is_integer() else f"{value:.0e}"
    return f"{value:,.0f}"


def draw_lines(p: QPainter, plot: LinePlot, rect: QRectF) -> None:
    series = [s for s in plot.series if s.x]
    legend_f = font(7)
    fm = QFontMetricsF(legend_f, p.device())
    legend_w = max((fm.horizontalAdvance(s.label) for s in series), default=0.0) + mm(8) if series else 0.0
    legend_w = min(legend_w, rect.width() * 0.35)
    area = _axes(p, rect, plot.title, plot.xlabel, plot.ylabel + (" (log scale)" if plot.log_y else ""), legend_w)
    values = [y for s in series for y in s.y if math.isfinite(y) and (y > 0 or not plot.log_y)]
    if not values:
        _no_data(p, area, "no data")
        return
    xs = [x for s in series for x in s.x]
    lo, hi, fx = _x_scale(min(xs), max(xs), area)
    if plot.log_y:
        y_lo, y_hi = min(values), max(values)
        if y_hi <= y_lo:
            y_lo, y_hi = y_lo / 2, y_hi * 2
        span = math.log10(y_hi) - math.log10(y_lo)
        y_lo, y_hi = max(y_lo / 10 ** (span * 0.08), math.ulp(0.0)), _finite(y_hi * 10 ** (span * 0.08))

        def fy(v: float) -> float:
            return area.bottom() - (math.log10(v) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)) \
                * area.height()

        ticks = log_ticks(y_lo, y_hi)
    else:
        y_lo, y_hi = min(values), max(values)
        pad = (y_hi * 0.5 - y_lo * 0.5) * 0.16 or abs(y_hi) * 0.1 or 1.0
        y_lo, y_hi = _finite(y_lo - pad), _finite(y_hi + pad)

        def fy(v: float) -> float:
            return area.bottom() - _fraction(v, y_lo, y_hi) * area.height()

        ticks = [t for t in nice_ticks(y_lo, y_hi, 4) if y_lo <= t <= y_hi]
    xt = _x_ticks(p, lo, hi, area, fx, lambda t: f"{t:.0f}", integers=True)
    _frame(p, area, xt, [(fy(t), tick_label(t)) for t in ticks])
    p.save()
    p.setClipRect(area.adjusted(-mm(1), -mm(1), mm(1), mm(1)))
    for k, s in enumerate(series):
        color = QColor(PALETTE[k % len(PALETTE)])
        points = [QPointF(fx(x), fy(y)) for x, y in zip(s.x, s.y, strict=True)
                  if math.isfinite(y) and (y > 0 or not plot.log_y)]
        if not points:
            continue
        path = QPainterPath(points[0])
        for pt in points[1:]:
            path.lineTo(pt)
        p.setPen(QPen(color, mm(0.35)))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(path)
        if len(points) <= 48:
            p.setBrush(color)
            p.setPen(Qt.PenStyle.NoPen)
            for pt in points:
                p.drawEllipse(pt, mm(0.55), mm(0.55))
    p.restore()
    p.setFont(legend_f)
    for k, s in enumerate(series):
        y = area.top() + k * fm.height() * 1.15
        if y + fm.height() > area.bottom():
            break
        color = QColor(PALETTE[k % len(PALETTE)])
        x = area.right() + mm(3)
        p.fillRect(QRectF(x, y + fm.height() * 0.35, mm(3), mm(0.8)), color)
        p.setPen(INK)
        p.drawText(QRectF(x + mm(4), y, legend_w - mm(4), fm.height()), int(Qt.AlignmentFlag.AlignLeft),
                   fm.elidedText(s.label, Qt.TextElideMode.ElideRight, legend_w - mm(4)))


# --------------------------------------------------------------------------- writing
def _footer(p: QPainter, report: Report, page: int, pages: int) -> None:
    f = font(7.5)
    fm = QFontMetricsF(f, p.device())
    y = PAGE_H - BOTTOM + mm(6)
    p.setPen(QPen(RULE, mm(0.25)))
    p.drawLine(QPointF(LEFT, y), QPointF(LEFT + CONTENT_W, y))
    p.setFont(f)
    p.setPen(MUTED)
    rect = QRectF(LEFT, y + mm(1.5), CONTENT_W, fm.height())
    p.drawText(rect, int(Qt.AlignmentFlag.AlignLeft), fm.elidedText(report.footer, Qt.TextElideMode.ElideRight,
                                                                     CONTENT_W * 0.7))
    p.drawText(rect, int(Qt.AlignmentFlag.AlignRight), f"Page {page} of {pages}")


def render_report(report: Report, path: str) -> int:
    """Draw ``report`` into a new PDF at ``path`` (not atomic: see write_report); returns the page count."""
    ensure_app()
    writer = QPdfWriter(path)
    writer.setResolution(DPI)
    writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                     QMarginsF(0, 0, 0, 0)))
    writer.setTitle(f"{report.title} - Weightscope report")
    writer.setCreator(f"Weightscope {__version__}")
    lay = _Layout(writer)
    _title_page(lay, report)
    lay.new_page()
    for block in report.blocks:
        if isinstance(block, (Histogram, LinePlot)):
            _plot_grid(lay, PlotGrid([block], columns=1))
        else:
            DRAWERS[type(block)](lay, block)
    pages = [ops for ops in lay.pages if ops]
    painter = QPainter()
    if not painter.begin(writer):
        raise ExportError(f"cannot write {path}: the PDF writer could not open it")
    try:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        for number, ops in enumerate(pages, start=1):
            if number > 1:
                writer.newPage()
            for op in ops:
                op(painter)
            _footer(painter, report, number, len(pages))
    finally:
        painter.end()
    return len(pages)


def write_report(checkpoint: Any, result: Any, out_path: str | os.PathLike[str], report: Report | None = None) -> int:
    """Build and write the report atomically (temp file beside ``out_path``, then rename); returns pages.

    Raises ExportError (a CheckpointError) when the target cannot be written.
    """
    report = report or build_report(checkpoint, result)
    with atomic_path(out_path) as tmp:
        pages = render_report(report, tmp)
        if os.path.getsize(tmp) == 0:
            raise ExportError(f"cannot write {out_path}: the PDF came out empty")
    return pages


def export_report_dialog(parent: Any, checkpoint: Any, result: Any = None, **options: Any) -> str | None:
    """File > Export Report (PDF): see gui.report_worker.export_report_dialog."""
    from gui.report_worker import export_report_dialog as run_dialog

    return run_dialog(parent, checkpoint, result, **options)


def ensure_app() -> Any:
    """A QGuiApplication for fonts and painting; offscreen when there is no display. Reuses any existing app."""
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QGuiApplication

    app = QCoreApplication.instance()
    if app is not None:
        if not isinstance(app, QGuiApplication):
            raise CheckpointError("a report needs a QGuiApplication, but a console-only Qt application is running")
        return app
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and os.name == "posix" \
            and not _is_macos():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    return QGuiApplication(["weightscope-report"])


def _is_macos() -> bool:
    import sys

    return sys.platform == "darwin"
