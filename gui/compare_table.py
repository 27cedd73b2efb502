"""The per-tensor table of a comparison: a QAbstractTableModel that grows while the comparison runs.

Rows are appended as pairs finish (``refresh``), each row's figures worked out once (core.diff.metrics).
Sorting is the model's own (``sort``): by the numbers themselves, undefined figures (NaN) last either way,
re-applied as rows arrive; selections survive it through persistent indexes. Tensor names are data: a
table view paints DisplayRole as plain text, and tooltips go through gui.plain.tooltip.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from core.diff import DiffResult, TensorDiff, metrics
from core.numbers import format_value
from gui.plain import tooltip

# (header, tooltip, key into the row's figures or None for text columns)
COLUMNS = [
    ("Tensor", "The tensor's name in A (B's name when it differs is in the tooltip)", None),
    ("A dtype", "How A stores the tensor", None),
    ("B dtype", "How B stores the tensor", None),
    ("Rel. change", "‖B−A‖ / ‖A‖: 0 means unchanged, 0.01 a 1% nudge, 1 a change as large as the tensor", "rel_change"),
    ("Cosine", "cos(A, B): 1 means the same direction; below 0.99 the tensor was really changed", "cosine"),
    ("Max |B−A|", "The largest change of a single value", "max_abs_diff"),
    ("At", "Where the largest change is (A's coordinates)", None),
    ("Identical %", "Share of values whose bits are the same in A and B: 100% for a frozen tensor", "identical"),
    ("SNR dB", "For a quantised side: 10·log10(‖signal‖² / ‖B−A‖²); 40 dB is noise at 1% of the signal",
     "snr_db"),
    ("Rank 90%", "How many singular directions of B−A hold 90% of its energy (with --rank)", "rank90"),
]
COL_NAME, COL_A_DTYPE, COL_B_DTYPE, COL_REL, COL_COSINE, COL_MAX, COL_AT, COL_IDENTICAL, COL_SNR, COL_RANK = \
    range(len(COLUMNS))
NUMERIC = {i for i, (_, _, key) in enumerate(COLUMNS) if key is not None}


@dataclass
class CompareRow:
    """One compared pair as the table shows it."""

    name: str
    b_name: str
    a_dtype: str
    b_dtype: str
    figures: dict[str, Any]
    rank90: int | None
    singular_values: list[float] | None = None  # of B−A, largest first (a comparison with rank)
    rank_note: str | None = None  # why a pair asked for its rank has none
    values: tuple[float, ...] = ()  # per column, what it sorts by (NaN for text columns and undefined figures)

    def __post_init__(self) -> None:
        self.values = tuple(self._value(column) for column in range(len(COLUMNS)))

    def value(self, column: int) -> float:
        """The number a numeric column sorts by (NaN when undefined)."""
        return self.values[column]

    def _value(self, column: int) -> float:
        if column not in NUMERIC:
            return math.nan
        if column == COL_IDENTICAL:
            return 100.0 * self.figures["identical_fraction"]
        if column == COL_RANK:
            return math.nan if self.rank90 is None else float(self.rank90)
        return float(self.figures[COLUMNS[column][2]])


def row_of(td: TensorDiff) -> CompareRow:
    rank = td.rank90  # set when the comparison computed the difference's rank (compare(rank=True))
    return CompareRow(td.a.name, td.b.name, td.a.dtype, td.b.dtype, metrics(td.sums),
                      int(rank) if rank is not None else None, td.top_singular_values, td.rank_note)


def rank_tooltip(row: CompareRow) -> str:
    """The singular values behind a rank, or why there is none."""
    if row.singular_values:
        shown = ", ".join(format_value(v) for v in row.singular_values[:8])
        more = " …" if len(row.singular_values) > 8 else ""
        return f"Top singular values of B−A: {shown}{more}"
    return row.rank_note or COLUMNS[COL_RANK][1]


def cell_text(row: CompareRow, column: int) -> str:
    if column == COL_NAME:
        return row.name
    if column == COL_A_DTYPE:
        return row.a_dtype
    if column == COL_B_DTYPE:
        return row.b_dtype
    if column == COL_AT:  # where nothing changed there is no place of the largest change
        at = row.figures.get("max_abs_diff_at")
        return "" if at is None or not row.figures["max_abs_diff"] else "[" + ", ".join(str(i) for i in at) + "]"
    value = row.value(column)
    if column == COL_RANK:
        return "" if math.isnan(value) else str(int(value))
    if math.isnan(value):
        return "—"
    if column == COL_IDENTICAL:
        return f"{value:.3g}%" if 0 < value < 100 else f"{value:.0f}%"
    if column == COL_COSINE:  # 0.999993 is not 1: six decimals, exact 1 only when nothing changed
        return "1" if value == 1 else f"{value:.6f}"
    if column == COL_SNR:
        return format_value(value) if math.isinf(value) else f"{value:.1f}"
    return format_value(value)


def _sort_key(row: CompareRow, column: int, order: Qt.SortOrder) -> tuple[bool, float]:
    """Ascending key of a figure under ``order``: by value (negated when descending), NaN last either way."""
    value = row.values[column]
    if value != value:
        return True, 0.0
    return False, -value if order == Qt.SortOrder.DescendingOrder else value


class CompareTableModel(QAbstractTableModel):
    """Rows of compared pairs; ``refresh(result)`` appends the pairs finished since the last call."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: list[CompareRow] = []
        self._keys: list[tuple[bool, float]] | None = None  # sort keys of ``rows`` under a numeric sort
        self._seen = 0
        self._sort: tuple[int, Qt.SortOrder] | None = None

    def reset(self) -> None:
        self.beginResetModel()
        self.rows, self._seen = [], 0
        self._keys = [] if self._sort is not None and self._sort[0] in NUMERIC else None
        self.endResetModel()

    def refresh(self, result: DiffResult) -> list[CompareRow]:
        """Append the pairs the result gained (its dict only grows); returns the new rows."""
        done = list(result.tensors.values())  # one C-level copy: safe while the worker adds to the dict
        new = [row_of(td) for td in done[self._seen:]]
        self._seen = len(done)
        if not new:
            return []
        if self._sort is None:
            first = len(self.rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            self.rows.extend(new)
            self.endInsertRows()
        else:
            self.layoutAboutToBeChanged.emit()
            keep = self._persistent_names()
            if self._keys is not None:  # a numeric sort: each new row goes in its place (bisect), no re-sort
                column, order = self._sort
                for row in new:
                    key = _sort_key(row, column, order)
                    at = bisect.bisect_right(self._keys, key)
                    self._keys.insert(at, key)
                    self.rows.insert(at, row)
            else:
                self.rows.extend(new)
                self._sort_rows(*self._sort)
            self._restore_persistent(keep)
            self.layoutChanged.emit()
        return new

    @property
    def has_rank(self) -> bool:
        return any(row.rank90 is not None for row in self.rows)

    # -- Qt's model interface ---------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, column = self.rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return cell_text(row, column)
        if role == Qt.ItemDataRole.UserRole:
            return row.value(column) if column in NUMERIC else cell_text(row, column)
        if role == Qt.ItemDataRole.ToolTipRole and column == COL_RANK:
            return tooltip(rank_tooltip(row))
        if role == Qt.ItemDataRole.ToolTipRole and column == COL_NAME:
            text = row.name if row.b_name == row.name else f"{row.name}\nin B: {row.b_name}"
            return tooltip(text)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section][1]
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """By value for figures (NaN last both ways), by text for names and dtypes; kept as rows arrive."""
        if not 0 <= column < len(COLUMNS):
            self._sort = None
            return
        self.layoutAboutToBeChanged.emit()
        keep = self._persistent_names()
        self._sort = (column, order)
        self._sort_rows(column, order)
        self._restore_persistent(keep)
        self.layoutChanged.emit()

    def _sort_rows(self, column: int, order: Qt.SortOrder) -> None:
        """A stable sort; for figures, the sort keys are kept so that rows arriving later are inserted in place."""
        if column in NUMERIC:
            keyed = sorted(((_sort_key(r, column, order), r) for r in self.rows), key=lambda k: k[0])
            self._keys = [k for k, _ in keyed]
            self.rows = [r for _, r in keyed]
        else:
            self._keys = None
            self.rows.sort(key=lambda r: cell_text(r, column), reverse=order == Qt.SortOrder.DescendingOrder)

    def _persistent_names(self) -> list[tuple[QPersistentModelIndex, str, int]]:
        return [(p, self.rows[p.row()].name, p.column()) for p in self.persistentIndexList()
                if 0 <= p.row() < len(self.rows)]

    def _restore_persistent(self, keep: list[tuple[QPersistentModelIndex, str, int]]) -> None:
        if not keep:
            return
        where = {row.name: i for i, row in enumerate(self.rows)}
        for persistent, name, column in keep:
            self.changePersistentIndex(persistent, self.index(where[name], column))

    def row_of_name(self, name: str) -> int:
        """The row of A's tensor ``name`` (or of B's name), -1 if it is not in the table (yet)."""
        for i, row in enumerate(self.rows):
            if row.name == name or row.b_name == name:
                return i
        return -1
