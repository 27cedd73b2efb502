"""The selection job with a histogram scope: a group's weight matrices, all its values, or one histogram per role.

Runs on a pool thread (gui.workers): picking the scope's tensors out of a million-tensor root, and the
per-role merges, stay off the UI thread. The tensors come from summaries the view already holds; only
those not yet summarised are read, as gui.jobs.selection_stats does for any selection.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

from core.checkpoint import Checkpoint, TensorInfo
from core.histogram_scope import BY_ROLE, RoleHistogram, role_histograms, scope_tensors
from core.numbers import human_count
from core.stats_summary import Summary
from gui.jobs import SelectionStats, selection_stats


@dataclass
class ScopedStats:
    """A selection update, the words for what it covers, and (By role) one histogram per role."""

    update: SelectionStats
    words: str  # "weight matrices · 224 of 291 tensors · 6.48 B values"
    roles: list[RoleHistogram] | None = None


def scope_words(kept: list[TensorInfo], total: int, words: str) -> str:
    """Which values and how many tensors, for the panel's subtitle."""
    count = f"{len(kept):,} of {total:,} tensors" if len(kept) != total else f"{total:,} tensors"
    return f"{words} · {count} · {human_count(sum(t.elements for t in kept))} values"


def scoped_selection_stats(checkpoint: Checkpoint, tensors: list[TensorInfo], label: str, scope: str,
                           known: dict[str, Summary], analyse: bool, device: str, chunk_bytes: int,
                           should_stop: Callable[[], bool]) -> Generator[ScopedStats, None, ScopedStats]:
    """gui.jobs.selection_stats over the tensors ``scope`` keeps, each update labelled with what it covers."""
    scoped = scope_tensors(tensors, scope)
    words = scope_words(scoped.tensors, len(tensors), scoped.words)

    def labelled(update: SelectionStats) -> ScopedStats:
        if scope != BY_ROLE:
            return ScopedStats(update, words)
        roles = role_histograms(scoped.tensors, update.summaries or {})
        return ScopedStats(update, f"by role · {len(roles)} roles · {words.split(' · ', 1)[1]}", roles)

    gen = selection_stats(checkpoint, scoped.tensors, label, known, analyse, device, chunk_bytes, should_stop)
    while True:
        try:
            update = next(gen)
        except StopIteration as stop:
            return labelled(stop.value)
        yield labelled(update)
