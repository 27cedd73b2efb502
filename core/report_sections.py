"""The report's optional sections (LoRA adapter, Spectra, Comparison, memory side by side) put into a Report.

`main.py report` computes them from its flags; the app's File > Export Report takes what its tab has already
computed. Both insert them here, so the two give the same pages in the same order and can't drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.checkpoint import Checkpoint
from core.report import Report


@dataclass
class ReportSections:
    """The optional parts of a report, each already computed (None: not in this report)."""

    lora: dict[str, Any] | None = None  # core.lora.lora_json's value, as `info --json` gives it
    spectra: Any = None  # a finished core.spectra.SpectraResult
    diff: Any = None  # a finished core.diff.DiffResult (A: the report's model)
    memory: Any = None  # core.memory_side_by_side.compare_for_report's value
    left_out: list[str] = field(default_factory=list)  # one line per part left out because it had not finished

    def any(self) -> bool:
        return any(part is not None for part in (self.lora, self.spectra, self.diff, self.memory))


def add_sections(report: Report, checkpoint: Checkpoint, sections: ReportSections) -> Report:
    """Insert ``sections`` into ``report`` (from core.report.build_report) where each belongs; returns it.

    The LoRA section comes after the summary (what an adapter is comes first); the Spectra section, then the
    comparison pages, before the legend; the comparison's B and verdict go onto the title page; the memory
    comparison ends the report.
    """
    from core.spectra_report import insert_before

    if sections.lora is not None:
        from core.lora_report import lora_blocks

        at = insert_before(report.blocks, "Layers")
        report.blocks[at:at] = lora_blocks(sections.lora)
    if sections.spectra is not None:
        from core.spectra_report import spectra_blocks

        at = insert_before(report.blocks, "What the words mean")
        report.blocks[at:at] = spectra_blocks(checkpoint, sections.spectra)
    if sections.diff is not None:
        from core.diff_report import diff_blocks, title_facts

        at = insert_before(report.blocks, "What the words mean")
        report.blocks[at:at] = diff_blocks(sections.diff)
        report.facts[1:1] = title_facts(sections.diff)
    if sections.memory is not None:
        from core.memory_side_by_side import side_by_side_blocks

        report.blocks.extend(side_by_side_blocks(sections.memory))
    return report


@dataclass(frozen=True)
class BaseFacts:
    """What the LoRA section says of a base model the adapter was compared with: where it is, its size."""

    path: str
    parameter_count: int


def lora_section(checkpoint: Checkpoint, updates: list | None = None, matches: list | None = None,
                 base: BaseFacts | None = None) -> dict[str, Any] | None:
    """The LoRA section's figures (core.lora.lora_json, as `info --json` gives them) from what the app measured:
    ``updates`` (measured here when None), and ``matches`` when the adapter was compared with ``base``. None for
    a checkpoint that is not an adapter."""
    from core import lora

    description = checkpoint.lora
    if description is None:
        return None
    if updates is None:
        updates = lora.measure(checkpoint, description)
    compared = matches is not None and base is not None
    return lora.lora_json(description, updates, matches if compared else None, base if compared else None)
