"""The config's own parameter count beside the header's: a difference means a missing shard, extra tensors
or an edited config, and a person vetting the download should be told in one line.

Called from open_checkpoint's _finish for every model with a config.json (and for config-only models,
where the count is the only one there is). Unknown families and incomplete configs are skipped: no guess is
shown as a count (describe() already names the config's claims that the tensors contradict).
"""

from __future__ import annotations

from typing import Any

from core.architectures import counts_of, layout_from_config
from core.checkpoint import Checkpoint
from core.errors import CheckpointError


def add_config_counts(checkpoint: Checkpoint, config: dict[str, Any]) -> None:
    """Set architecture["config_parameters"] (and active / MTP counts); warn when the weights disagree."""
    try:
        layout = layout_from_config(config)
    except CheckpointError:  # an unknown family or a config too incomplete to count: no count, never a guess
        return
    counts = counts_of(layout)
    arch = checkpoint.architecture
    arch["config_parameters"] = counts["total"]
    if "active" in counts:
        arch["active_parameters"] = counts["active"]
    if "mtp" in counts:
        arch["mtp_parameters"] = counts["mtp"]
    if checkpoint.format == "config" or layout.partial or arch.get("contradictions"):
        return  # nothing to compare, or describe() already named the config's false claims, one line each
    held = checkpoint.parameter_count
    mtp, scales = counts.get("mtp", 0), counts.get("quantization_scales", 0)
    total, main_scales = counts["total"], scales - counts.get("mtp_quantization_scales", 0)
    if held not in (total, total + mtp, total + main_scales, total + mtp + scales):  # with or without MTP, scales
        checkpoint.warnings.append(f"config.json describes {total:,} parameters; the weights hold {held:,}: "
                                   "a missing shard, extra tensors or an edited config")
