"""The Spectra tab: WeightWatcher's metrics of every weight matrix in a sortable table, and the selected
matrix's empirical spectral density on log-log axes with its fitted power law and xmin.

The arithmetic is core.spectra's generator, run by a JobSlot while the tab is visible; every finished matrix
adds a row, so a large model fills in as it goes. Names from the file are plain text in every cell.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.checkpoint import Checkpoint
from core.numbers import format_value
from core.spectra import MatrixSpectrum, SpectraProgress, SpectraResult, analyze_spectra
from core.tree import natural_key
from gui.plain import tooltip
from gui.style import panel_header
from gui.workers import JobSlot

COLUMNS = [("name", "Matrix"), ("shape", "Shape"), ("alpha", "alpha"), ("verdict", "Verdict"), ("xmin", "xmin"),
           ("D", "KS D"), ("num_pl_spikes", "Tail"), ("lambda_max", "λmax"), ("log_norm", "log norm"),
           ("stable_rank", "Stable rank"), ("matrix_rank", "Rank"), ("entropy", "Entropy")]
LEGEND = ("alpha measures how heavy-tailed the layer's eigenvalue spectrum is (WeightWatcher): below 2 the layer "
          "may be over-trained, 2 to 6 is typical of a well-trained layer, above 6 under-trained; above 8 the fit "
          "is unreliable.")
ESD_BINS = 60


class SparseLogAxis(pg.AxisItem):
    """A log axis that labels only 1, 2 and 5 times a power of ten: a range under a decade otherwise labels
    every minor tick, and 0.07, 0.08, 0.09 run into each other."""

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pyqtgraph's name)
        strings = super().tickStrings(values, scale, spacing)
        if not self.logMode:
            return strings
        out = []
        for value, text in zip(values, strings, strict=False):
            mantissa = round(10 ** (value - math.floor(value + 1e-9)), 6)
            out.append(text if mantissa in (1.0, 2.0, 5.0) else "")
        return out


def esd_histogram(evals: np.ndarray, bins: int = ESD_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Density of the positive eigenvalues over log-spaced bins: (edges, density), len(edges) == len(density)+1."""
    positive = evals[evals > 0]
    if not len(positive):
        return np.array([1.0, 10.0]), np.zeros(1)
    lo, hi = float(positive.min()), float(positive.max())
    if hi <= lo:
        hi = lo * 1.01
    edges = np.geomspace(lo, hi, bins + 1)
    counts, _ = np.histogram(positive, edges)
    return edges, counts / (len(positive) * np.diff(edges))


def power_law_curve(alpha: float, xmin: float, xmax: float, tail_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The fitted density over [xmin, xmax], scaled by the share of eigenvalues in the tail."""
    x = np.geomspace(xmin, max(xmax, xmin * 1.01), 50)
    return x, tail_fraction * (alpha - 1) / xmin * (x / xmin) ** (-alpha)


class _NumberItem(QTableWidgetItem):
    """A cell that sorts by its number (missing values last)."""

    def __init__(self, value: float | int | None) -> None:
        super().__init__("-" if value is None else str(value) if isinstance(value, int) else format_value(value))
        self.value = math.inf if value is None else float(value)
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return self.value < getattr(other, "value", math.inf)


class _NameItem(QTableWidgetItem):
    """A matrix name that sorts as people count: layers.2 before layers.10 (core.tree.natural_key)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)  # QTableWidgetItem text is never rendered as rich text
        self.key = natural_key(name)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        key = getattr(other, "key", None)
        return self.key < key if key is not None else super().__lt__(other)


class SpectraPanel(QWidget):
    """Computes while visible (cached eigenvalues make a second look instant); rows appear as matrices finish."""

    sig_finished = Signal(object)  # the SpectraResult, when every matrix is done (the Depth tab draws alpha)

    def __init__(self, checkpoint: Checkpoint, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.checkpoint = checkpoint
        self.result: SpectraResult | None = None
        self.done = False
        self._shown: set[str] = set()  # matrices with a row
        self.job = JobSlot("spectra", self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        header, _head, self.title, self.subtitle = panel_header("Spectra of the weight matrices", LEGEND)
        self.subtitle.setWordWrap(True)
        layout.addLayout(header)
        split = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, len(COLUMNS), objectName="spectra_table")
        self.table.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)  # Qt's default indicator is descending
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(0, 320)
        self.plot = pg.PlotWidget(objectName="spectra_esd",
                                  axisItems={side: SparseLogAxis(side) for side in ("bottom", "left")})
        self.plot.setMenuEnabled(False)
        self.plot.setLogMode(x=True, y=True)
        self.plot.setLabel("bottom", "eigenvalue λ = σ²")
        self.plot.setLabel("left", "density")
        self.plot.addLegend(offset=(-10, 10))
        split.addWidget(self.table)
        split.addWidget(self.plot)
        split.setSizes([300, 300])
        layout.addWidget(split, 1)
        self.table.itemSelectionChanged.connect(self._selected)

    # ------------------------------------------------------------------ work
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self.done and not self.job.busy:
            self.start()

    def start(self) -> None:
        checkpoint = self.checkpoint
        self.subtitle.setText("computing…")
        self.job.start(lambda stop: analyze_spectra(checkpoint, should_stop=stop), on_yield=self._progress,
                       on_return=self._finished, on_error=self._failed)

    def cancel(self) -> None:
        self.job.cancel()

    def report_part(self) -> tuple[SpectraResult | None, str | None]:
        """For File > Export Report: the finished spectra, or None and, for a run that has not finished, the
        line that says they are left out."""
        if self.done:
            return self.result, None
        if self.job.busy:
            return None, "The spectra are still being computed: they are not in this report."
        return None, "The spectra did not finish (cancelled or failed): they are not in this report."

    def _progress(self, item: SpectraProgress) -> None:
        self.result = item.result
        self._add_new_rows(item.result)
        text = f"{item.fraction:.0%} · {item.tensor} · {item.message}" if item.message else f"{item.fraction:.0%}"
        self.subtitle.setText(text)
        self.subtitle.setToolTip(tooltip(text))

    def _finished(self, result: SpectraResult) -> None:
        self.result, self.done = result, True
        self.sig_finished.emit(result)
        self._add_new_rows(result)
        summary = result.summary()
        alpha = summary["alpha"]
        text = (f"{summary['matrices']} matrices · mean alpha {format_value(alpha) if alpha is not None else '-'} · "
                f"{result.device} · {result.seconds:.1f} s")
        if summary["not_analysed"]:
            text += f" · {summary['not_analysed']} not analysed"
        self.subtitle.setText(text)
        self.subtitle.setToolTip(tooltip(text + "\n\n" + LEGEND))
        if self.table.rowCount() and not self.table.selectedItems():
            self.table.selectRow(0)

    def _failed(self, exc: BaseException) -> None:
        from gui.errors import reason

        self.subtitle.setText(f"could not compute the spectra: {reason(exc)}")

    # ------------------------------------------------------------------ drawing
    def _add_new_rows(self, result: SpectraResult) -> None:
        """Rows for every finished matrix not shown yet (progress signals may be coalesced)."""
        for name, spectrum in list(result.matrices.items()):
            if name not in self._shown:
                self._shown.add(name)
                self._add_row(spectrum)

    def _add_row(self, spectrum: MatrixSpectrum) -> None:
        sorting = self.table.isSortingEnabled()
        self.table.setSortingEnabled(False)
        row = self.table.rowCount()
        self.table.insertRow(row)
        m = spectrum.metrics
        name = _NameItem(spectrum.name)
        name.setData(Qt.ItemDataRole.UserRole, spectrum.name)
        name.setToolTip(tooltip(spectrum.name))
        self.table.setItem(row, 0, name)
        self.table.setItem(row, 1, QTableWidgetItem("×".join(str(d) for d in spectrum.shape)))
        if m is None:
            self.table.setItem(row, 3, QTableWidgetItem(f"not analysed: {spectrum.reason}"))
            for col in (2, *range(4, len(COLUMNS))):
                self.table.setItem(row, col, _NumberItem(None))
        else:
            verdict = m.verdict + (" (poor power-law fit)" if m.fit_quality == "poor" else "")
            self.table.setItem(row, 3, QTableWidgetItem(verdict))
            for col, (key, _) in enumerate(COLUMNS):
                if col not in (0, 1, 3):
                    self.table.setItem(row, col, _NumberItem(getattr(m, key)))
        self.table.setSortingEnabled(sorting)

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole) if rows else None

    def _selected(self) -> None:
        name = self.selected_name()
        if name is not None and self.result is not None and name in self.result.matrices:
            self.show_matrix(self.result.matrices[name])

    def show_matrix(self, spectrum: MatrixSpectrum) -> None:
        """Draw one matrix's ESD with its fitted power law and xmin."""
        self.plot.clear()
        self.plot.setTitle(spectrum.name if spectrum.metrics is not None else f"{spectrum.name}: not analysed")
        m, evals = spectrum.metrics, spectrum.evals
        if m is None or evals is None:
            return
        edges, density = esd_histogram(evals)
        keep = density > 0
        centres = np.sqrt(edges[:-1] * edges[1:])
        self.plot.plot(centres[keep], density[keep], pen=None, symbol="o", symbolSize=5, name="eigenvalue density")
        if m.alpha is not None and m.xmin is not None and m.num_pl_spikes:
            x, y = power_law_curve(m.alpha, m.xmin, float(evals[-1]), m.num_pl_spikes / len(evals))
            self.plot.plot(x, y, pen=pg.mkPen("#dc2626", width=2), name=f"power law, alpha {m.alpha:.3g}")
            dashed = pg.mkPen("#2563eb", style=Qt.PenStyle.DashLine)
            self.plot.addItem(pg.InfiniteLine(pos=math.log10(m.xmin), angle=90, pen=dashed))
            self.plot.plot([], [], pen=dashed, name=f"xmin {m.xmin:.3g}")
