"""A model view's Compare tab: added the first time the model is compared with another, then reused.

ModelView holds one CompareTab and asks it, in a line each, whether a comparison reads files (status bar,
Cancel, idle waits) and to stop on close; everything else about comparing lives in gui.panels.compare.
"""

from __future__ import annotations

import os

from gui.panels.compare import ComparePanel, model_name


class CompareTab:
    """The Compare tab of ``view`` (a gui.model_view.ModelView); no tab until ``start``."""

    def __init__(self, view) -> None:
        self.view = view
        self.panel: ComparePanel | None = None

    def start(self, b_path: str) -> ComparePanel:
        """Compare the view's model (A) with ``b_path`` and show the tab."""
        view = self.view
        if self.panel is None:
            self.panel = ComparePanel(view.checkpoint, view.path, view.device)
            self.panel.sig_changed.connect(view.sig_analysis_changed)
            self.panel.sig_error.connect(view.sig_error)
            view.tabs.addTab(self.panel, "Compare")
        path = os.path.abspath(os.fspath(b_path))
        index = view.tabs.indexOf(self.panel)
        view.tabs.setTabToolTip(index, f"What changed from this model to {model_name(path)}: per tensor, per layer, "
                                "and where inside a matrix")
        view.tabs.setCurrentWidget(self.panel)
        self.panel.start(path)
        return self.panel

    @property
    def running(self) -> bool:
        return self.panel is not None and self.panel.running

    def report_part(self) -> tuple:
        """(the finished DiffResult or None, the line saying why a comparison is left out of a report or None)."""
        return self.panel.report_part() if self.panel is not None else (None, None)

    def is_idle(self) -> bool:
        return self.panel is None or self.panel.is_idle()

    def cancel(self) -> None:
        if self.panel is not None:
            self.panel.cancel()

    def shutdown(self) -> None:
        if self.panel is not None:
            self.panel.shutdown()

    def workers(self) -> list:
        """Workers that read the view's model (A) and have not finished: A stays open until they have."""
        return self.panel.workers() if self.panel is not None else []

    def status_text(self, title: str) -> str:
        return self.panel.status_text(title) if self.panel is not None else title

    @property
    def progress_fraction(self) -> float:
        return self.panel.progress_fraction if self.panel is not None else 0.0
