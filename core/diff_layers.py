"""Which layers a fine-tune moved most: relative change against block index, one line per role.

The lines are those of the Depth profile (core.depth: a role's tensor at every block of A, labelled the
same way), valued by each compared pair's ‖B−A‖/‖A‖, so the two plots read alike.
"""

from __future__ import annotations

import math

from core.depth import DepthSeries, _line_label, _role_order, _unique_labels, profiled_tensors
from core.diff import DiffResult, metrics


def change_profile(result: DiffResult) -> list[DepthSeries]:
    """Relative change per block, one line per role and module (in A's naming), points in block order; tensors
    not compared (yet, or at all) are left out, NaN where a change is undefined (an all-zero A that changed)."""
    compared = list(result.tensors.values())
    changes = {td.name: metrics(td.sums)["rel_change"] for td in compared}
    items = profiled_tensors(td.a for td in compared)
    per_role_patterns: dict[str, set[str]] = {}
    for t, _, pattern in items:
        per_role_patterns.setdefault(t.role, set()).add(pattern)
    lines: dict[tuple[str, str], DepthSeries] = {}
    for t, layer, pattern in items:
        line = lines.get((t.role, pattern))
        if line is None:
            line = lines[(t.role, pattern)] = DepthSeries(_line_label(t, pattern, per_role_patterns), t.role, pattern)
        value = changes[t.name]
        line.points.append((layer, value if math.isfinite(value) else math.nan, t.name))
    out = list(lines.values())
    _unique_labels(out)
    out.sort(key=lambda s: (_role_order(s.role), s.label))
    for line in out:
        line.points.sort(key=lambda p: p[0])
    return out
