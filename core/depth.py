"""Depth profiles: one statistic of each repeated block's tensors against the block index.

A line per role (q, k, v, o, up, gate, down, norms ...) makes an odd layer
stand out: a kurtosis spike in one down_proj, a norm whose scale drifts. When
a role has several tensors per block (two norms in a Llama block), each gets
its own line, named by its module. Only weight-kind tensors are profiled;
biases would double the lines for little insight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from core.checkpoint import TensorInfo
from core.stats_summary import HistSpec, Summary, TensorStats, derive
from core.taxonomy import _LAYER_INDEX, ROLES, split_name

STATISTICS: dict[str, tuple[str, Callable[[TensorStats], float]]] = {
    "std": ("Std (σ)", lambda ts: ts.std),
    "abs_max": ("Max |w|", lambda ts: ts.abs_max),
    "kurtosis": ("Kurtosis", lambda ts: ts.kurtosis),
    "l2": ("L2 norm", lambda ts: ts.l2),
    "outliers": ("Outliers beyond 6σ", lambda ts: float(ts.beyond_6_sigma)),
}
ROLE_SHORT = {
    "attention.q": "q", "attention.k": "k", "attention.v": "v", "attention.o": "o", "attention.qkv": "qkv",
    "mlp.up": "up", "mlp.gate": "gate", "mlp.down": "down", "mlp.gate_up": "gate_up", "norm": "norm",
}
_CHEAP = HistSpec(bins=1, log_bins=1)


@dataclass
class DepthSeries:
    """One line of a depth profile: a role's tensor at every block, in block order."""

    label: str
    role: str
    pattern: str  # the tensor name with its block index replaced by "*"
    points: list[tuple[int, float, str]] = field(default_factory=list)  # (layer, value, tensor name)


def block_pattern(name: str) -> tuple[int, str] | None:
    """(block index, name with the index replaced by '*') for a tensor inside a repeated block."""
    match = _LAYER_INDEX.search(name)
    if match is None:
        return None
    start, end = match.span(1)
    return int(match.group(1)), f"{name[:start]}*{name[end:]}"


def _role_order(role: str) -> int:
    return ROLES.index(role) if role in ROLES else len(ROLES)


def profiled_tensors(tensors: Iterable[TensorInfo]) -> list[tuple[TensorInfo, int, str]]:
    """(tensor, block, pattern) for every weight-kind tensor inside a numbered block."""
    out = []
    for t in tensors:
        if t.kind != "weight":
            continue
        found = block_pattern(t.name)
        if found is not None:
            out.append((t, found[0], found[1]))
    return out


def depth_profiles(tensors: Iterable[TensorInfo], summaries: dict[str, Summary],
                   should_stop: Callable[[], bool] | None = None) -> dict[str, list[DepthSeries]]:
    """Every statistic of STATISTICS -> its series, from one derive per tensor.

    Tensors without a summary (not analysed yet, complex) are left out.
    """
    items = profiled_tensors(tensors)
    per_role_patterns: dict[str, set[str]] = {}
    for t, _, pattern in items:
        per_role_patterns.setdefault(t.role, set()).add(pattern)
    series: dict[str, dict[str, DepthSeries]] = {key: {} for key in STATISTICS}
    for t, layer, pattern in items:
        summary = summaries.get(t.name)
        if summary is None:
            continue
        if should_stop is not None and should_stop():
            from core.errors import CancelledError

            raise CancelledError("depth profile cancelled")
        ts = derive(summary, t.name, _CHEAP)
        short = ROLE_SHORT.get(t.role, t.role)
        if len(per_role_patterns[t.role]) > 1:
            module = split_name(pattern)[0].rpartition(".")[2]
            leaf = split_name(pattern)[1]
            short = f"{short} · {module}" if leaf in ("weight", "") else f"{short} · {module}.{leaf}"
        for key, (_, fn) in STATISTICS.items():
            line = series[key].get(pattern)
            if line is None:
                line = series[key][pattern] = DepthSeries(short, t.role, pattern)
            value = float(fn(ts))
            line.points.append((layer, value if math.isfinite(value) else math.nan, t.name))
    out: dict[str, list[DepthSeries]] = {}
    for key, by_pattern in series.items():
        lines = sorted(by_pattern.values(), key=lambda s: (_role_order(s.role), s.label))
        for line in lines:
            line.points.sort()
        out[key] = lines
    return out


def depth_profile(tensors: Iterable[TensorInfo], summaries: dict[str, Summary],
                  statistic: str = "std") -> dict[str, list[tuple[int, float, str]]]:
    """label -> [(layer, value, tensor name)] for one statistic (see STATISTICS)."""
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r} (use {', '.join(STATISTICS)})")
    return {s.label: s.points for s in depth_profiles(tensors, summaries)[statistic]}
