"""The Findings tab: one line per problem in plain words, so a broken model does not look like a healthy one.

The findings themselves come from core.findings (the same list the report and
``stats --json`` give); this widget only lists them with a severity icon and
tells the view which one the user clicked, so it can select the tensor.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QStyle, QVBoxLayout, QWidget

from core.findings import Finding, Findings
from gui.plain import tooltip
from gui.style import panel_header

SEVERITY_ICONS = {"error": QStyle.StandardPixmap.SP_MessageBoxCritical,
                  "warning": QStyle.StandardPixmap.SP_MessageBoxWarning,
                  "note": QStyle.StandardPixmap.SP_MessageBoxInformation}
SEVERITY_WORDS = {"error": "broken values", "warning": "problem", "note": "worth knowing"}
FINDING_ROLE = Qt.ItemDataRole.UserRole + 1


def problem_headline(problems: int, notes: int, tensors: int) -> str:
    """'3 problems found' or 'No problems found in 1,137 tensors', with notes counted apart."""
    head = (f"{problems:,} problem{'s' if problems != 1 else ''} found" if problems
            else f"No problems found in {tensors:,} tensor{'s' if tensors != 1 else ''}")
    return head + (f" · {notes:,} note{'s' if notes != 1 else ''}" if notes else "")


def finding_line(f: Finding) -> str:
    """The list's text for one finding: tensor, what, and where."""
    where = ""
    if f.at:
        shown = ", ".join("(" + ", ".join(str(i) for i in c) + ")" for c in f.at[:3])
        where = f" · at {shown}{' …' if len(f.at) > 3 else ''}"
    return f"{f.tensor}: {f.message}{where}"


class FindingsPanel(QWidget):
    """Lists findings; ``sig_finding_activated`` carries the clicked Finding."""

    sig_finding_activated = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.findings: Findings | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        header, _controls, self.title, self.subtitle = panel_header("Findings", "Waiting for the whole-model analysis…")
        layout.addLayout(header)
        for label in (self.title, self.subtitle):
            label.setWordWrap(True)  # plain sentences: a narrow window wraps them, never cuts them
        self.list = QListWidget(objectName="findings_list")
        self.list.setWordWrap(True)
        self.list.setAlternatingRowColors(True)
        self.list.setUniformItemSizes(False)
        layout.addWidget(self.list, 1)
        self.list.itemClicked.connect(self._clicked)
        self.list.itemActivated.connect(self._clicked)

    def set_waiting(self, text: str) -> None:
        self.findings = None
        self.list.clear()
        self.title.setText("Findings")
        self.subtitle.setText(text)

    def set_findings(self, found: Findings, note: str = "") -> None:
        """Show ``found``; ``note`` says when they cover only part of the model (a cancelled analysis)."""
        self.findings = found
        items = found.all()
        problems = sum(1 for f in items if f.is_problem)
        self.title.setText(problem_headline(problems, len(items) - problems, found.analysed))
        self.subtitle.setText(note or ("Click a line to select its tensor in the tree." if items else
                                       "No NaN or Inf, no all-zero weights, no tensor crushed onto a few values, "
                                       "no layer unlike its siblings, no extreme outliers."))
        self.list.clear()
        style = self.style()
        for f in items:
            item = QListWidgetItem(style.standardIcon(SEVERITY_ICONS.get(f.severity, SEVERITY_ICONS["note"])),
                                   finding_line(f))
            item.setData(FINDING_ROLE, f)
            item.setToolTip(tooltip(f"{SEVERITY_WORDS.get(f.severity, f.severity)}: {f.tensor}\n{f.explanation}"))
            self.list.addItem(item)

    def lines(self) -> list[str]:
        """The shown lines, for tests and copying."""
        return [self.list.item(i).text() for i in range(self.list.count())]

    def _clicked(self, item: QListWidgetItem) -> None:
        f = item.data(FINDING_ROLE)
        if f is not None:
            self.sig_finding_activated.emit(f)
