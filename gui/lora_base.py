"""Compare a LoRA adapter with its base model off the UI thread: ‖ΔW‖/‖W‖ per module, with progress and cancel.

The job opens the base model, measures any update the panel left unmeasured (large adapters), then reads one
base weight per module (core.lora.match_base) and yields after each, so Cancel stops between modules and the
base model is closed as the job ends, however it ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from core.checkpoint import Checkpoint
from core.errors import CheckpointError
from core.lora import BaseMatch, LoraUpdate

NOT_MEASURED_IN_APP = "not measured in the app"  # the panel's reason for an update it left to this job


@dataclass(frozen=True)
class BaseProgress:
    """How far the comparison is: ``done`` of ``total`` modules, the one being read now."""

    done: int
    total: int
    module: str

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class BaseComparison:
    """What the job hands back: one BaseMatch per update (same order) and the base model's parameter count."""

    matches: list[BaseMatch]
    base_parameters: int


def base_job(adapter: Checkpoint, updates: list[LoraUpdate], base_path: str) -> Callable:
    """A gui.workers job: yields BaseProgress, returns a BaseComparison."""

    def job(_should_stop: Callable[[], bool]) -> Iterator[BaseProgress]:
        from core import lora
        from gui.priority import lower_thread_priority

        lower_thread_priority()
        total = len(updates)
        with lora.open_base(base_path) as base:
            names = {t.name for t in base.tensors}
            matches: list[BaseMatch] = []
            for done, update in enumerate(updates):
                yield BaseProgress(done, total, update.module.name)
                if update.delta_fro is None and update.why_not == NOT_MEASURED_IN_APP:
                    update = lora.measure_module(adapter, update.module)
                matches.append(lora.match_base(update, base, names))
            yield BaseProgress(total, total, "")
            check_related(matches, base_path)
            return BaseComparison(matches, base.parameter_count)

    return job


def check_related(matches: list[BaseMatch], base_path: str) -> None:
    """Refuse a base that holds none of the adapter's weights: the wrong model was picked, one line says so."""
    if not matches or any(m.base_fro is not None for m in matches):
        return
    first = matches[0]
    raise CheckpointError(f"the base model {os.path.basename(base_path.rstrip(os.sep))[:120]!r} has none of the "
                          f"adapter's {len(matches):,} weights ({first.why_not})")
