"""What a model's tab has computed beyond the statistics, gathered for File > Export Report (PDF).

The report holds every finished part (the Spectra tab's spectra, the Compare tab's comparison, an adapter's
LoRA figures and its comparison with a base model) without computing any of them again; a part still running,
cancelled or failed is left out, with a line that says so. core.report_sections puts them into the report
exactly as `main.py report` does with the matching flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.checkpoint import Checkpoint
from core.report_sections import BaseFacts, ReportSections, lora_section


@dataclass
class ViewParts:
    """The finished parts of one tab, and one line per part left out."""

    spectra: Any = None  # a finished SpectraResult
    diff: Any = None  # a finished DiffResult
    lora_updates: list | None = None  # the LoRA section's measured updates (None: measured by the report job)
    lora_matches: list | None = None  # the finished comparison with a base model
    lora_base: BaseFacts | None = None
    left_out: list[str] = field(default_factory=list)

    def sections(self, checkpoint: Checkpoint) -> ReportSections:
        """The report's sections; runs in the report's worker, since an adapter's updates the app did not
        measure (a large adapter, or a Summary never shown) are measured here, as `main.py report` does."""
        lora = None
        if checkpoint.lora is not None:
            lora = lora_section(checkpoint, _measured(checkpoint, self.lora_updates), self.lora_matches,
                                self.lora_base)
        return ReportSections(lora=lora, spectra=self.spectra, diff=self.diff, left_out=list(self.left_out))


def _measured(checkpoint: Checkpoint, updates: list | None) -> list | None:
    """``updates`` with those the panel left to others (too large to measure while a file opens) measured."""
    from core import lora
    from gui.lora_base import NOT_MEASURED_IN_APP

    if updates is None:
        return None
    return [lora.measure_module(checkpoint, u.module) if u.delta_fro is None and u.why_not == NOT_MEASURED_IN_APP
            else u for u in updates]


def view_parts(view: Any) -> ViewParts:
    """The finished parts of ``view`` (a gui.model_view.ModelView); panels never built hold none."""
    parts = ViewParts()
    spectra_panel = view.spectra_tab.panel
    if spectra_panel is not None:
        parts.spectra, note = spectra_panel.report_part()
        parts.left_out += [note] if note else []
    parts.diff, note = view.compare.report_part()
    parts.left_out += [note] if note else []
    box = _lora_box(view)
    if box is not None:
        parts.lora_updates, parts.lora_matches, parts.lora_base, note = box.report_part()
        parts.left_out += [note] if note else []
    return parts


def _lora_box(view: Any) -> Any:
    """The Summary's LoRA section, if the Summary has been built and the model is an adapter."""
    from gui.panels.lora import LoraBox

    summary = view.summary_tab.panel
    return summary.findChild(LoraBox, "LoraBox") if summary is not None else None
