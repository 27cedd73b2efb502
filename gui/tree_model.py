"""The layer tree as a QAbstractItemModel over core.tree, and a proxy that sorts and filters it.

The model only adapts: nodes, counts and folding come from core.tree. One
top-level row stands for the whole model so that it, like any group, can be
selected to see its merged statistics.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt

from core.numbers import human_bytes, human_count, percent
from core.taxonomy import KIND_HELP
from core.tree import TreeNode

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
NODE_ROLE = Qt.ItemDataRole.UserRole + 2
MARK_ROLE = Qt.ItemDataRole.UserRole + 3  # the worst severity of the findings below a row, or None
MARK_COLOURS = {"error": "#dc2626", "warning": "#d97706", "note": "#2563eb"}
SEVERITY_RANK = {"error": 0, "warning": 1, "note": 2}
MARK_LINES = 5  # findings named in a row's tooltip; the rest are counted

Index = QModelIndex | QPersistentModelIndex
DISPLAY, DECORATION, TOOLTIP, ALIGNMENT, FOREGROUND = (int(r) for r in (
    Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.DecorationRole, Qt.ItemDataRole.ToolTipRole,
    Qt.ItemDataRole.TextAlignmentRole, Qt.ItemDataRole.ForegroundRole))
ANSWERED_ROLES = frozenset((DISPLAY, DECORATION, TOOLTIP, ALIGNMENT, FOREGROUND, int(SORT_ROLE), int(NODE_ROLE),
                            int(MARK_ROLE)))
RIGHT_ALIGNED = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


@dataclass(frozen=True)
class Column:
    title: str
    help: str
    numeric: bool = False


COLUMNS = (
    Column("Name", "The tensor or group, from the dotted names in the file. Folded rows such as "
                   "\"layers.0-31 (x32)\" stand for identical repeated blocks; their counts add up all of them."),
    Column("Kind / role", "Kind: weight, bias, embedding or buffer. Role: the part of the network that uses it "
                          "(attention q/k/v/o, MLP up/gate/down, norm, embedding, head)."),
    Column("Shape", "The tensor's dimensions, e.g. 4096 × 11008 (rows × columns)."),
    Column("Dtype", "How each number is stored: F32 = 4 bytes, BF16/F16 = 2 bytes, Q4_K etc. = quantised blocks."),
    Column("Parameters", "Learned numbers in this row: weights + biases + embeddings (buffers are not counted).",
           True),
    Column("Weights", KIND_HELP["weight"], True),
    Column("Biases", KIND_HELP["bias"], True),
    Column("Embeddings", KIND_HELP["embedding"], True),
    Column("Bytes", "Bytes this row takes in the file, at its stored dtype.", True),
    Column("Share", "This row's parameters as a share of the whole model's parameters.", True),
)
COL_NAME, COL_KIND, COL_SHAPE, COL_DTYPE, COL_PARAMS, COL_WEIGHTS, COL_BIASES, COL_EMBEDDINGS, COL_BYTES, COL_SHARE = \
    range(len(COLUMNS))


def shape_text(shape: tuple[int, ...]) -> str:
    return " × ".join(str(d) for d in shape) if shape else "scalar"


def _natural_key(text: str) -> str:
    return re.sub(r"\d+", lambda m: m.group(0).zfill(12), text.lower())


class LayerTreeModel(QAbstractItemModel):
    """Read-only adapter: rows are TreeNodes; one root row for the whole model."""

    def __init__(self, root: TreeNode, title: str, total_parameters: int | None = None, parent=None) -> None:
        super().__init__(parent)
        self._title = title
        self._root = root
        self._total = total_parameters if total_parameters is not None else root.parameters
        self._parents: dict[int, TreeNode | None] = {}
        self._rows: dict[int, int] = {}
        self._findings: dict[str, list[tuple[str, str]]] = {}  # tensor name -> (severity, plain line)
        self._marks: dict[int, tuple[str, list[str]]] = {}  # id(node) -> (worst severity, lines below it)
        self._texts: dict[tuple[int, int], str] = {}  # (id(node), column) -> the cell's text
        self._index_tree(root)

    # -- structure ------------------------------------------------------------
    def set_root(self, root: TreeNode) -> None:
        self.beginResetModel()
        self._root = root
        self._texts = {}
        self._index_tree(root)
        self._marks = self._compute_marks()
        self.endResetModel()

    def set_findings(self, findings: dict[str, list[tuple[str, str]]]) -> None:
        """Mark the rows whose tensors (or folded groups holding them) have findings: tensor name ->
        [(severity, plain line)]. The mark is a dot coloured by the worst severity; its tooltip says what."""
        old = set(self._marks)
        self._findings = findings
        self._marks = self._compute_marks()
        for node in self._root.walk():
            if id(node) in old or id(node) in self._marks:
                index = self.index_of(node, COL_NAME)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole, Qt.ItemDataRole.ToolTipRole,
                                                     MARK_ROLE])

    def mark(self, node: TreeNode) -> tuple[str, list[str]] | None:
        """(worst severity, lines) of the findings at or below ``node``; None when it has none."""
        return self._marks.get(id(node))

    def _compute_marks(self) -> dict[int, tuple[str, list[str]]]:
        if not self._findings:
            return {}
        marks: dict[int, tuple[str, list[str]]] = {}
        for node in reversed(list(self._root.walk())):  # children before parents
            severity, lines = "", []
            for t in node.tensors:
                for sev, line in self._findings.get(t.name, ()):
                    lines.append(line)
                    severity = sev if not severity or SEVERITY_RANK.get(sev, 3) < SEVERITY_RANK.get(severity, 3) \
                        else severity
            for child in node.children:
                below = marks.get(id(child))
                if below is not None:
                    lines.extend(below[1])
                    if not severity or SEVERITY_RANK.get(below[0], 3) < SEVERITY_RANK.get(severity, 3):
                        severity = below[0]
            if lines:
                marks[id(node)] = (severity, lines)
        return marks

    @property
    def root(self) -> TreeNode:
        return self._root

    def _index_tree(self, root: TreeNode) -> None:
        self._parents = {id(root): None}
        self._rows = {id(root): 0}
        stack = [root]
        while stack:
            node = stack.pop()
            for row, child in enumerate(node.children):
                self._parents[id(child)] = node
                self._rows[id(child)] = row
                stack.append(child)
        self._above = {child: (self._rows[id(parent)], parent)  # id(node) -> (its parent's row, its parent)
                       for child, parent in self._parents.items() if parent is not None}

    def node(self, index: Index) -> TreeNode | None:
        return index.internalPointer() if index.isValid() else None

    def index_of(self, node: TreeNode, column: int = 0) -> QModelIndex:
        if id(node) not in self._rows:
            return QModelIndex()
        return self.createIndex(self._rows[id(node)], column, node)

    def find_tensor(self, name: str) -> QModelIndex:
        """The row showing exactly this one tensor (absent when folding merged it with others)."""
        for node in self._root.walk():
            if len(node.tensors) == 1 and node.tensors[0].name == name and not node.children:
                return self.index_of(node)
        return QModelIndex()

    def find_path(self, path: str) -> QModelIndex:
        node = self._root.find(path)
        return self.index_of(node) if node is not None else QModelIndex()

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:
        if not parent.isValid():
            return self.createIndex(row, column, self._root) if row == 0 else QModelIndex()
        node = parent.internalPointer()
        if 0 <= row < len(node.children):
            return self.createIndex(row, column, node.children[row])
        return QModelIndex()

    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]
        """A view and its proxy ask this hundreds of times per paint (branch lines, mapping): one dict lookup."""
        above = self._above.get(id(index.internalPointer())) if index.isValid() else None
        return self.createIndex(above[0], 0, above[1]) if above is not None else QModelIndex()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802
        if not parent.isValid():
            return 1
        if parent.column() > 0:
            return 0
        return len(parent.internalPointer().children)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].title
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section].help
        if role == Qt.ItemDataRole.TextAlignmentRole and COLUMNS[section].numeric:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # -- cells ----------------------------------------------------------------
    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        """A cell's value; a view asks for nine roles of every visible cell at each paint, so the common ones
        are answered from a cache of texts and plain int comparisons (12 ms -> a few ms for a screen of rows)."""
        if role not in ANSWERED_ROLES or not index.isValid():
            return None
        node: TreeNode = index.internalPointer()
        col = index.column()
        if role == DISPLAY:
            return self._text(node, col)
        if role == ALIGNMENT:
            return RIGHT_ALIGNED if COLUMNS[col].numeric else None
        if role == FOREGROUND:
            return _grey() if col != COL_NAME and self._text(node, col) == "–" else None
        if role == SORT_ROLE:
            return self._sort_key(node, col)
        if role == NODE_ROLE:
            return node
        if role == MARK_ROLE:
            found = self._marks.get(id(node))
            return found[0] if found else None
        if role == DECORATION and col == COL_NAME:
            found = self._marks.get(id(node))
            return _dot(found[0]) if found else None
        if role == TOOLTIP:
            from gui.plain import tooltip

            text = self._tooltip(node, col)
            found = self._marks.get(id(node)) if col == COL_NAME else None
            if found:
                severity, lines = found
                more = f"\n… and {len(lines) - MARK_LINES:,} more" if len(lines) > MARK_LINES else ""
                text += (f"\n\n{len(lines):,} finding{'s' if len(lines) != 1 else ''} here (worst: {severity}; "
                         "see the Findings tab):\n" + "\n".join(f"• {line}" for line in lines[:MARK_LINES]) + more)
            return tooltip(text)  # tensor names from the file: shown, never rendered
        return None

    def _text(self, node: TreeNode, col: int) -> str:
        """``_display``, computed once per node and column (nodes never change; ``set_root`` starts afresh)."""
        key = (id(node), col)
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = self._display(node, col)
        return text

    def _is_root(self, node: TreeNode) -> bool:
        return node is self._root

    def _display(self, node: TreeNode, col: int) -> str:
        leaf = node.tensor if not node.children else None
        if col == COL_NAME:
            return self._title if self._is_root(node) else node.name
        if col == COL_KIND:
            if leaf is not None:
                return f"{leaf.kind} · {leaf.role}"
            blocks = f"{node.repeat} blocks · " if node.repeat > 1 else ""
            state = node.by_kind.get("state", 0)
            if state and not node.parameters:  # optimizer moments, schedulers, EMA copies: not the model
                blocks = f"training state · {human_count(state)} values · "
            return f"{blocks}{node.tensor_count:,} tensor{'s' if node.tensor_count != 1 else ''}"
        if col == COL_SHAPE:
            return shape_text(leaf.shape) if leaf is not None else ""
        if col == COL_DTYPE:
            return ", ".join(node.dtypes)
        if col == COL_PARAMS:
            return _count(node.parameters)
        if col in (COL_WEIGHTS, COL_BIASES, COL_EMBEDDINGS):
            return _count(node.by_kind.get(("weight", "bias", "embedding")[col - COL_WEIGHTS], 0))
        if col == COL_BYTES:
            return human_bytes(node.nbytes)
        if col == COL_SHARE:
            if not node.parameters and node.by_kind.get("state", 0):
                return "–"  # not a share of the model: its values are training state
            return percent(node.parameters, self._total) if self._total else "–"
        return ""

    def _sort_key(self, node: TreeNode, col: int):
        if col == COL_NAME:
            return _natural_key(node.name)
        if col in (COL_PARAMS, COL_SHARE):
            return node.parameters
        if col in (COL_WEIGHTS, COL_BIASES, COL_EMBEDDINGS):
            return node.by_kind.get(("weight", "bias", "embedding")[col - COL_WEIGHTS], 0)
        if col == COL_BYTES:
            return node.nbytes
        if col == COL_SHAPE:
            leaf = node.tensor if not node.children else None
            return leaf.elements if leaf is not None else -1
        return self._display(node, col)

    def _tooltip(self, node: TreeNode, col: int) -> str:
        leaf = node.tensor if not node.children else None
        if col == COL_NAME:
            what = node.path or self._title
            if leaf is not None and len(node.tensors) == 1:
                return f"{leaf.name}\n{KIND_HELP.get(leaf.kind, '')}"
            if node.repeat > 1:
                from core.number_words import count_in_words

                alike = "similar" if node.differences else "identical"
                text = (f"{what}\n{node.repeat} {alike} blocks folded into one row; every count here is the sum "
                        f"over all {node.repeat}: one block = {count_in_words(node.parameters // node.repeat)} × "
                        f"{node.repeat}. Untick \"Fold repeated blocks\" to see each one.")
                if node.differences:
                    text += "\nThe blocks differ only in quantisation:\n" + "\n".join(node.differences)
                return text
            return f"{what}\n{node.tensor_count:,} tensors below this row."
        if col == COL_KIND and leaf is not None:
            return KIND_HELP.get(leaf.kind, "")
        if col in (COL_PARAMS, COL_WEIGHTS, COL_BIASES, COL_EMBEDDINGS):
            value = node.parameters if col == COL_PARAMS else node.by_kind.get(
                ("weight", "bias", "embedding")[col - COL_WEIGHTS], 0)
            return f"{value:,} exactly.\n{COLUMNS[col].help}"
        if col == COL_BYTES:
            return f"{node.nbytes:,} bytes.\n{COLUMNS[col].help}"
        return COLUMNS[col].help


_GREY: list[object] = []


def _grey():
    """The colour of "–" (nothing to count) cells, made once."""
    if not _GREY:
        from PySide6.QtGui import QColor

        _GREY.append(QColor("#9ca3af"))
    return _GREY[0]


def _count(n: int) -> str:
    return human_count(n) if n else "–"


_DOTS: dict[str, object] = {}


def _dot(severity: str):
    """A small filled circle in the severity's colour (made once per colour)."""
    if severity not in _DOTS:
        from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap

        pixmap = QPixmap(12, 12)
        pixmap.fill(QColor(0, 0, 0, 0))
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QColor(MARK_COLOURS.get(severity, "#6b7280")).darker(130))
        painter.setBrush(QColor(MARK_COLOURS.get(severity, "#6b7280")))
        painter.drawEllipse(1, 1, 10, 10)
        painter.end()
        _DOTS[severity] = QIcon(pixmap)
    return _DOTS[severity]


# --------------------------------------------------------------------------- filtering
FILTER_MODES = ("Substring", "Glob", "Regex")


def make_matcher(text: str, mode: str) -> Callable[[str], bool] | None:
    """A case-insensitive test for one name; None for an empty pattern. Raises re.error for a bad regex."""
    text = text.strip()
    if not text:
        return None
    if mode == "Regex":
        pattern = re.compile(text, re.IGNORECASE)
        return lambda s: pattern.search(s) is not None
    if mode == "Glob":
        glob = text.lower()
        return lambda s: fnmatch.fnmatchcase(s.lower(), glob)
    needle = text.lower()
    return lambda s: needle in s.lower()


MAX_REUSED_CELLS = 20_000  # painted cells whose answers the proxy keeps (a few screens of rows; ~10 MB at most)


class TreeFilterProxy(QSortFilterProxyModel):
    """Sorts by the model's SORT_ROLE; keeps a row if its path, its name or one of its tensors' names matches,
    along with its ancestors (so matches stay in context) and its children."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setRecursiveFilteringEnabled(True)
        self.setAutoAcceptChildRows(True)
        self._matcher: Callable[[str], bool] | None = None
        self.error = ""
        # what multiData answered, per painted cell: (internal id, row, column) -> {role: value}. A proxy
        # index's internal id names its parent's mapping, so the key holds only until the mapping or the data
        # change; every signal that says so empties it.
        self._cells: dict[tuple[int, int, int], dict[int, Any]] = {}
        for signal in (self.modelReset, self.layoutChanged, self.rowsInserted, self.rowsRemoved, self.rowsMoved,
                       self.columnsInserted, self.columnsRemoved, self.dataChanged):
            signal.connect(self._forget_cells)

    def _forget_cells(self, *_args: object) -> None:
        self._cells.clear()

    def set_pattern(self, text: str, mode: str = "Substring") -> bool:
        """Apply a filter; False (and ``error`` set, filter cleared) for an invalid regex."""
        try:
            matcher = make_matcher(text, mode)
            self.error = ""
        except re.error as exc:
            matcher, self.error = None, f"invalid regular expression: {exc}"
        self.beginFilterChange()
        self._matcher = matcher
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        return not self.error

    def multiData(self, index: Index, roleDataSpan) -> None:  # noqa: N802, N803
        """Every role a delegate asks of a painted cell (seven), in one Python call, answered from ``_cells``
        after the cell's first paint: through Qt's own proxy each role was a source index() plus a data() call
        across the Python boundary (~1,300 calls per paint of the tree); computed, each cell still cost a
        mapping to the source (a Python index() call) and seven data() calls at every repaint."""
        key = (index.internalId(), index.row(), index.column())
        cell = self._cells.get(key)
        if cell is None:
            if len(self._cells) >= MAX_REUSED_CELLS:  # scrolling through a million rows must not keep them all
                self._cells.clear()
            cell = self._cells[key] = {}
        source = None
        for role_data in roleDataSpan:
            role = role_data.role()
            if role in cell:
                value = cell[role]
            elif role in ANSWERED_ROLES:
                if source is None:
                    source = self.mapToSource(index)
                value = cell[role] = self.sourceModel().data(source, role)
            else:
                value = None
            if value is None:
                role_data.clearData()
            else:
                role_data.setData(value)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:  # noqa: N802
        if self._matcher is None:
            return True
        model = self.sourceModel()
        node = model.node(model.index(source_row, 0, source_parent))
        if node is None or node is model.root:
            return False  # the root row stays only as an ancestor of matches
        match = self._matcher
        return match(node.path) or match(node.name) or any(match(t.name) for t in node.tensors)
