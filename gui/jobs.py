"""The work the window hands to gui.workers: plain functions over core, no Qt, run on pool threads.

Keeping them here (not in widgets) keeps the UI thread's share small: merging
summaries and deriving statistics for a redraw happen on the worker, and the
widget only draws the TensorStats it receives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass

from core.checkpoint import Checkpoint, TensorInfo
from core.stats_summary import Summary, TensorStats
from core.tree import TreeNode, build_tree, fold_repeats

REFRESH_SECONDS = 0.15  # how often a filling-in histogram is re-derived


@dataclass
class OpenedModel:
    """What an open worker hands back: the checkpoint and both shapes of its layer tree."""

    path: str
    checkpoint: Checkpoint
    tree: TreeNode
    folded: TreeNode


def load_model(path: str) -> OpenedModel:
    """Detect, parse headers, classify, and build the layer tree (folded and not)."""
    from core.formats import open_checkpoint

    checkpoint = open_checkpoint(path)
    try:
        tree = build_tree(checkpoint.tensors)
        folded = fold_repeats(tree)
    except BaseException:
        checkpoint.close()
        raise
    return OpenedModel(path, checkpoint, tree, folded)


@dataclass
class SelectionStats:
    """Statistics of a selection; ``fraction`` < 1 while some of its bytes are still unread."""

    stats: TensorStats | None
    fraction: float
    tensors_done: int
    tensors_total: int
    bytes_done: int = 0
    bytes_total: int = 0
    summaries: dict[str, Summary] | None = None  # what the stats merge, per tensor (one being read: partial)


def analysis(checkpoint: Checkpoint, tensors: list[TensorInfo] | None, device: str, chunk_bytes: int,
             should_stop: Callable[[], bool]) -> Generator:
    """core.stats.analyze, on the numpy CPU backend when no GPU can be used.

    Importing torch holds the GIL for long stretches (loading libtorch), which
    freezes the UI thread for a few hundred milliseconds; on a CPU-only
    machine the compiled counting loops (or numpy where they cannot be built)
    do the same exact counting faster, so torch is skipped.
    """
    from core import native_count
    from core.compute import accelerator_possible, make_backend
    from core.stats import analyze

    backend = None
    if device == "cpu" or (device == "auto" and not accelerator_possible()):
        backend = make_backend("cpu", impl="native" if native_count.counter() is not None else "numpy")
    try:
        return (yield from analyze(checkpoint, tensors, device=device, should_stop=should_stop,
                                   chunk_bytes=chunk_bytes, backend=backend))
    finally:
        if backend is not None:
            backend.close()


def _derive(names: list[str], label: str, summaries: dict[str, Summary]) -> TensorStats | None:
    """Exactly what core's AnalysisResult gives for one tensor or a group."""
    from core.stats import AnalysisResult

    result = AnalysisResult(device="", summaries=summaries)
    if len(names) == 1:
        return result.stats(names[0]) if names[0] in summaries else None
    return result.group(names, label)


def selection_stats(checkpoint: Checkpoint, tensors: list[TensorInfo], label: str, known: dict[str, Summary],
                    analyse: bool, device: str, chunk_bytes: int,
                    should_stop: Callable[[], bool]) -> Generator[SelectionStats, None, SelectionStats]:
    """Statistics of ``tensors`` from the summaries already ``known``; with ``analyse``, read the missing
    ones too, yielding a re-derived result every REFRESH_SECONDS as the values come in."""
    from core.stats import analyzable

    names = [t.name for t in tensors]
    usable = [t for t in tensors if analyzable(t)]
    total_bytes = sum(t.nbytes for t in usable)
    summaries = {n: known[n] for n in names if n in known}
    missing = [t for t in usable if t.name not in summaries]

    def snapshot(extra: dict[str, Summary], read_bytes: int) -> SelectionStats:
        merged = {**summaries, **extra}
        done = sum(t.nbytes for t in usable if t.name in summaries) + read_bytes
        return SelectionStats(_derive(names, label, merged), min(1.0, done / total_bytes) if total_bytes else 1.0,
                              sum(1 for t in usable if t.name in merged), len(usable), min(done, total_bytes),
                              total_bytes, merged)

    if missing and analyse:
        gen = analysis(checkpoint, missing, device, chunk_bytes, should_stop)
        last = time.monotonic()
        while True:
            try:
                progress = next(gen)
            except StopIteration as stop:
                summaries.update(stop.value.summaries)
                break
            now = time.monotonic()
            if now - last >= REFRESH_SECONDS:
                last = now
                extra = dict(progress.result.summaries)
                if progress.partial is not None and progress.tensor not in extra:
                    extra[progress.tensor] = progress.partial
                update = snapshot(extra, progress.bytes_done)
                if update.stats is not None:
                    yield update
    return snapshot({}, 0)


def depth_job(tensors: Iterable[TensorInfo], summaries: dict[str, Summary], should_stop: Callable[[], bool]):
    from core.depth import depth_profiles

    return depth_profiles(list(tensors), dict(summaries), should_stop)
