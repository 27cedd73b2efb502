"""Depth profiles: one statistic of each repeated block's tensors against the block index.

A line per role (q, k, v, o, up, gate, down, norms ...) makes an odd layer
stand out: a kurtosis spike in one down_proj, a norm whose scale drifts. When
a role has several tensors per block (two norms in a Llama block), each gets
its own line, named by its module. Only weight-kind tensors are profiled;
biases would double the lines for little insight.

Models without transformer blocks (CNNs, MLPs, LSTMs) get lines too: tensors
whose names differ only in their numbers (``conv1``..``conv5``, ``features.0``,
``layer3.1.conv2``, ``weight_ih_l1``) form a stack, ordered by those numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

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
    "convolution": "conv", "recurrent": "recurrent",
}
_DIGIT_RUNS = re.compile(r"([0-9]+)")
_MAX_STACK_DIGITS = 9  # longer digit runs are names, not positions
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
    """(tensor, block, pattern) for every weight-kind tensor inside a numbered block.

    Transformer blocks (``layers.N``) when the model has them; otherwise numbered stacks (see stack_positions).
    """
    weights = [t for t in tensors if t.kind == "weight"]
    out = []
    for t in weights:
        found = block_pattern(t.name)
        if found is not None:
            out.append((t, found[0], found[1]))
    return out or stack_positions(weights)


def stack_pattern(name: str) -> tuple[tuple[int, ...], str] | None:
    """(the numbers in a name, the name with each ASCII digit run replaced by '*'); None without numbers."""
    pieces = _DIGIT_RUNS.split(name)
    numbers = pieces[1::2]
    if not numbers or any(len(n) > _MAX_STACK_DIGITS for n in numbers):
        return None
    return tuple(int(n) for n in numbers), "*".join(pieces[0::2])


def stack_positions(tensors: Iterable[TensorInfo]) -> list[tuple[TensorInfo, int, str]]:
    """(tensor, position, pattern) for tensors of one role whose names differ only in their numbers.

    A stack needs two or more members. The position is the number itself for one-number names (``conv3`` -> 3,
    ``features.6`` -> 6) and the rank in natural order otherwise (``layer2.0.conv1`` after ``layer1.1.conv3``).
    """
    stacks: dict[tuple[str, str], list[tuple[tuple[int, ...], TensorInfo]]] = {}
    for t in tensors:
        found = stack_pattern(t.name)
        if found is not None:
            stacks.setdefault((t.role, found[1]), []).append((found[0], t))
    out = []
    for (_, pattern), members in stacks.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda m: m[0])
        single = all(len(numbers) == 1 for numbers, _ in members)
        for rank, (numbers, t) in enumerate(members):
            out.append((t, numbers[0] if single else rank, pattern))
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
    series: dict[str, dict[tuple[str, str], DepthSeries]] = {key: {} for key in STATISTICS}
    for t, layer, pattern in items:
        summary = summaries.get(t.name)
        if summary is None:
            continue
        if should_stop is not None and should_stop():
            from core.errors import CancelledError

            raise CancelledError("depth profile cancelled")
        ts = derive(summary, t.name, _CHEAP)
        short = _line_label(t, pattern, per_role_patterns)
        for key, (_, fn) in STATISTICS.items():
            line = series[key].get((t.role, pattern))
            if line is None:
                line = series[key][(t.role, pattern)] = DepthSeries(short, t.role, pattern)
            value = float(fn(ts))
            line.points.append((layer, value if math.isfinite(value) else math.nan, t.name))
    out: dict[str, list[DepthSeries]] = {}
    for key, by_pattern in series.items():
        _unique_labels(list(by_pattern.values()))
        lines = sorted(by_pattern.values(), key=lambda s: (_role_order(s.role), s.label))
        for line in lines:
            line.points.sort(key=lambda p: p[0])
        out[key] = lines
    return out


ALPHA_LABEL = "Alpha (spectra)"


def alpha_profile(tensors: Iterable[TensorInfo], spectra: Any) -> list[DepthSeries]:
    """The power-law exponent alpha of each block's matrices (a core.spectra.SpectraResult), one line per role as
    depth_profiles draws its statistics: an under-trained layer (alpha over 6) stands out. Matrices without a
    fit are left out."""
    items = profiled_tensors(tensors)
    per_role_patterns: dict[str, set[str]] = {}
    for t, _, pattern in items:
        per_role_patterns.setdefault(t.role, set()).add(pattern)
    lines: dict[tuple[str, str], DepthSeries] = {}
    for t, layer, pattern in items:
        found = spectra.matrices.get(t.name)
        alpha = None if found is None or found.metrics is None else found.metrics.alpha
        if alpha is None or not math.isfinite(alpha):
            continue
        line = lines.get((t.role, pattern))
        if line is None:
            line = lines[(t.role, pattern)] = DepthSeries(_line_label(t, pattern, per_role_patterns), t.role, pattern)
        line.points.append((layer, float(alpha), t.name))
    out = sorted(lines.values(), key=lambda s: (_role_order(s.role), s.label))
    _unique_labels(out)
    for line in out:
        line.points.sort(key=lambda p: p[0])
    return out


def _line_label(t: TensorInfo, pattern: str, per_role_patterns: dict[str, set[str]]) -> str:
    """A line's name: its role ("down"), with its module when a role has several lines ("norm · input_layernorm")."""
    short = ROLE_SHORT.get(t.role, t.role)
    if len(per_role_patterns[t.role]) > 1:
        module = split_name(pattern)[0].rpartition(".")[2]
        leaf = split_name(pattern)[1]
        short = f"{short} · {module}" if leaf in ("weight", "") else f"{short} · {module}.{leaf}"
    return short


def _unique_labels(lines: list[DepthSeries]) -> None:
    """Lines that would share a label (CNN stacks such as ``features.*`` and ``layer*.*.downsample.*``) are
    named by their whole pattern instead, so a legend or a report keyed by label keeps every line."""
    seen: dict[str, int] = {}
    for line in lines:
        seen[line.label] = seen.get(line.label, 0) + 1
    for line in lines:
        if seen[line.label] > 1:
            pattern = line.pattern.removesuffix(".weight")
            line.label = f"{ROLE_SHORT.get(line.role, line.role)} · {pattern}"


def depth_profile(tensors: Iterable[TensorInfo], summaries: dict[str, Summary],
                  statistic: str = "std") -> dict[str, list[tuple[int, float, str]]]:
    """label -> [(layer, value, tensor name)] for one statistic (see STATISTICS)."""
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r} (use {', '.join(STATISTICS)})")
    return {s.label: s.points for s in depth_profiles(tensors, summaries)[statistic]}
