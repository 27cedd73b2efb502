"""Where a comparison moved the model: relative change per layer for each role, and the most-changed tensors.

A fine-tune rarely moves every layer alike; the depth profile shows which blocks moved and how far. Each point
merges the exact sums of the tensors of one (layer, role) group (DiffSums.merge), so a point is the relative
change of those tensors taken together, ‖B−A‖/‖A‖, never an average of per-tensor ratios. Tensors outside the
repeated blocks (embeddings, final norm, head) have no depth and are left out of the profile.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from core.diff import DiffResult, DiffSums, TensorDiff, metrics
from core.taxonomy import layer_block


class ProfilePoint(NamedTuple):
    """One layer's relative change for one role, and the tensors merged into it (A's names)."""

    layer: int
    rel_change: float
    tensors: list[str]


def depth_profile(result: DiffResult) -> dict[str, list[ProfilePoint]]:
    """{role: [ProfilePoint sorted by layer]} over the compared tensors inside numbered blocks; roles sorted."""
    sums: dict[tuple[str, int], DiffSums] = {}
    names: dict[tuple[str, int], list[str]] = {}
    for td in list(result.tensors.values()):
        block = layer_block(td.a.name)
        if block is None:
            continue
        key = (td.a.role, block[0])
        sums[key] = sums[key].merge(td.sums) if key in sums else td.sums
        names.setdefault(key, []).append(td.a.name)
    out: dict[str, list[ProfilePoint]] = {}
    for role, layer in sorted(sums):
        point = ProfilePoint(layer, metrics(sums[role, layer])["rel_change"], names[role, layer])
        out.setdefault(role, []).append(point)
    return out


def most_changed(result: DiffResult, n: int) -> list[TensorDiff]:
    """The ``n`` compared tensors with the largest relative change, largest first; undefined (NaN) ones last."""
    def order(td: TensorDiff) -> tuple[bool, float]:
        rel = metrics(td.sums)["rel_change"]
        return math.isnan(rel), -rel if not math.isnan(rel) else 0.0

    return sorted(list(result.tensors.values()), key=order)[:max(0, n)]
