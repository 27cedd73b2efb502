"""Which values a group's histogram is of: its weight matrices (the default), all of them, or one per role.

Norm scales sit near 1.0 and weight matrices near 0. Merged into one histogram, a few thousand norm values
stretch the x axis far past the bulk and make up most of "beyond 6σ", so the window shows a group's weight
matrices unless the user asks for all values. Everything here works on per-tensor summaries already
computed: switching scope re-merges them exactly and never reads the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core import dtypes
from core.checkpoint import TensorInfo
from core.stats import AnalysisResult, is_float_summary
from core.stats_summary import HistSpec, Summary, TensorStats

MATRICES, ALL_VALUES, BY_ROLE = "matrices", "all", "roles"
SCOPES = (MATRICES, ALL_VALUES, BY_ROLE)
MATRICES_RULE = ("weight matrices: learned weights of two or more dimensions (attention, MLP, output head, "
                 "convolutions); norm scales, biases and embedding tables are left out")


def is_weight_matrix(t: TensorInfo) -> bool:
    """A learned matrix that multiplies a layer's inputs: kind "weight", 2-D or more, floating point (quants
    included), not a norm. Embedding tables are left out: they are looked up, not multiplied, their scale
    differs from model to model, and "By role" shows them on their own."""
    if t.kind != "weight" or len(t.shape) < 2 or t.role == "norm":
        return False
    found = dtypes.lookup(t.dtype)
    return found is not None and found.is_float


@dataclass
class Scoped:
    """The tensors a scope keeps and the words for them in the panel's subtitle."""

    tensors: list[TensorInfo]
    words: str


def scope_tensors(tensors: list[TensorInfo], scope: str) -> Scoped:
    """The group's tensors that ``scope`` keeps. A group without weight matrices (a folded norm row) falls
    back to all its values and says so, rather than showing nothing."""
    if scope == MATRICES:
        kept = [t for t in tensors if is_weight_matrix(t)]
        if kept:
            return Scoped(kept, "weight matrices")
        return Scoped(list(tensors), "all values (no weight matrices here)")
    if scope == BY_ROLE:
        kept = [t for t in tensors if t.is_parameter]
        return Scoped(kept or list(tensors), "by role")
    return Scoped(list(tensors), "all values")


def role_groups(tensors: Iterable[TensorInfo]) -> dict[str, list[TensorInfo]]:
    """Parameter tensors by role, the role with the most values first (the PDF report's "By role" order)."""
    groups: dict[str, list[TensorInfo]] = {}
    sizes: dict[str, int] = {}
    for t in tensors:
        if not t.is_parameter:
            continue
        groups.setdefault(t.role, []).append(t)
        sizes[t.role] = sizes.get(t.role, 0) + t.elements
    return {role: groups[role] for role in sorted(groups, key=lambda r: (-sizes[r], r))}


@dataclass
class RoleHistogram:
    """One role's merged statistics, and how many of its tensors went into them."""

    role: str
    tensors: int
    stats: TensorStats


def role_histograms(tensors: Iterable[TensorInfo], summaries: dict[str, Summary],
                    spec: HistSpec = HistSpec()) -> list[RoleHistogram]:
    """One exact merged TensorStats per role from the summaries given (floating-point ones: a histogram of
    packed integers says nothing about weights). Roles none of whose tensors are summarised are left out."""
    result = AnalysisResult(device="", summaries=summaries)
    out: list[RoleHistogram] = []
    for role, members in role_groups(tensors).items():
        names = [t.name for t in members if t.name in summaries and is_float_summary(summaries[t.name])]
        stats = result.group(names, role, spec) if names else None
        if stats is not None:
            out.append(RoleHistogram(role, len(names), stats))
    return out
