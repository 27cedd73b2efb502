"""What stands out in a model's values, each with a plain-language explanation.

Four questions a reader of a checkpoint asks: which parameters have extreme
values or heavy tails (the top tensors by peak / sigma and by kurtosis), is
anything broken (NaN or Inf), is anything empty (all-zero tensors), and does
any layer behave differently from the same tensor in the other layers
(siblings: ``layers.N.mlp.down_proj.weight`` for every N). Sibling outliers use
the modified z-score of Iglewicz and Hoaglin, 0.6745 (x - median) / MAD, on the
log of std, max |w| and kurtosis (all positive scale-like numbers, so a
ten-fold rise and a ten-fold drop weigh the same). Buffers and training state
(optimizer moments, EMA copies) are checked for NaN and zeros but never ranked
or compared as siblings: they are not the model's parameters.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.numbers import format_value
from core.stats_summary import HistSpec, TensorStats
from core.taxonomy import layer_index

TOP = 10
Z_THRESHOLD = 3.5  # Iglewicz & Hoaglin's cut-off for the modified z-score
MIN_FACTOR = 1.5  # and at least this far from the siblings' median, so tiny MADs do not flag noise
MIN_SIBLINGS = 4
STATS_ONLY = HistSpec(bins=1, log_bins=1)  # derive without paying for display histograms

SIBLING_MEASURES = (("std", "std"), ("abs_max", "max |w|"), ("kurtosis", "kurtosis"))


@dataclass(frozen=True)
class Ranked:
    """One row of a top-N list."""

    tensor: str
    value: float
    std: float
    abs_max: float
    kurtosis: float
    count: int


@dataclass(frozen=True)
class Finding:
    """One thing worth a look: what, where, how much, and why it matters."""

    kind: str  # "non_finite" | "all_zero" | "sibling_outlier"
    tensor: str
    title: str
    explanation: str
    severity: str = "warning"  # "warning" | "note"
    measure: str = ""
    value: float = math.nan
    reference: float = math.nan  # siblings' median for sibling outliers
    z: float = math.nan


@dataclass
class Findings:
    peak_ratio: list[Ranked] = field(default_factory=list)  # max |w - mean| / std, largest first
    kurtosis: list[Ranked] = field(default_factory=list)  # largest first
    non_finite: list[Finding] = field(default_factory=list)
    all_zero: list[Finding] = field(default_factory=list)
    sibling_outliers: list[Finding] = field(default_factory=list)
    sibling_groups: int = 0  # how many sibling families were compared
    analysed: int = 0

    def all(self) -> list[Finding]:
        return [*self.non_finite, *self.all_zero, *self.sibling_outliers]


PEAK_HELP = (
    "Peak / sigma is how many standard deviations the most extreme value lies from the tensor's mean "
    "(for zero-centred weights, max |w| / sigma). A Gaussian tensor of a million values rarely goes past 5; "
    "values far beyond that are outliers that quantisation must keep, and in trained language models a few "
    "such 'super weights' can matter for the whole model."
)
KURTOSIS_HELP = (
    "Kurtosis measures how heavy the tails are: 3 for a Gaussian, about 1.8 for a uniform spread. "
    "Much larger values mean most numbers sit near the centre while a few lie very far out."
)
SIBLING_HELP = (
    "Siblings are the same tensor in every repeated layer (for example the MLP down-projection of each block). "
    "A tensor is flagged when its std, max |w| or kurtosis differs from the siblings' median by a robust "
    f"z-score above {Z_THRESHOLD:g} (median and median absolute deviation, on a log scale) and by at least "
    f"a factor of {MIN_FACTOR:g}."
)

SIBLING_MEANING = ("A layer that differs this much from its siblings was trained, initialised or converted "
                   "differently, or holds outlier features; it is worth checking before quantising or merging.")


def tensor_stats(result: Any, names: Iterable[str] | None = None) -> dict[str, TensorStats]:
    """Statistics (without display histograms) of every analysed tensor, in result order."""
    wanted = result.summaries if names is None else [n for n in names if n in result.summaries]
    return {name: result.stats(name, STATS_ONLY) for name in wanted}


def sibling_key(name: str) -> str | None:
    """``model.layers.*.mlp.down_proj.weight`` for ``model.layers.7.mlp.down_proj.weight``; None outside layers."""
    index = layer_index(name)
    if index is None:
        return None
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part == str(index):
            parts[i] = "*"
            return ".".join(parts)
    return None


def find(result: Any, checkpoint: Any, stats: dict[str, TensorStats] | None = None, top: int = TOP) -> Findings:
    """All findings of one analysis. ``stats`` may be passed in when the caller already derived them."""
    stats = tensor_stats(result) if stats is None else stats
    infos = {t.name: t for t in checkpoint.tensors}
    out = Findings(analysed=len(stats))
    ranked = []
    for name, ts in stats.items():
        info = infos.get(name)
        _check_values(out, name, ts, info)
        if info is not None and not info.is_parameter:
            continue
        if ts.count >= 2 and math.isfinite(ts.std) and ts.std > 0:
            peak = max(abs(ts.max - ts.mean), abs(ts.min - ts.mean)) / ts.std
            ranked.append((name, ts, peak))
    out.peak_ratio = [_ranked(n, ts, p) for n, ts, p in sorted(ranked, key=lambda r: -r[2])[:top]]
    with_kurt = [(n, ts, ts.kurtosis) for n, ts, _ in ranked if math.isfinite(ts.kurtosis)]
    out.kurtosis = [_ranked(n, ts, k) for n, ts, k in sorted(with_kurt, key=lambda r: -r[2])[:top]]
    _siblings(out, stats, infos)
    return out


def _ranked(name: str, ts: TensorStats, value: float) -> Ranked:
    return Ranked(name, value, ts.std, ts.abs_max, ts.kurtosis, ts.count)


def _check_values(out: Findings, name: str, ts: TensorStats, info: Any) -> None:
    bad = ts.nan + ts.pos_inf + ts.neg_inf
    total = ts.count + bad
    if bad:
        parts = [f"{n:,} {label}" for n, label in ((ts.nan, "NaN"), (ts.pos_inf, "+Inf"), (ts.neg_inf, "-Inf")) if n]
        out.non_finite.append(Finding(
            "non_finite", name, f"{', '.join(parts)} of {total:,} values",
            "NaN (not a number) and infinite values are not valid weights: any computation that touches them "
            "returns NaN or Inf. They usually come from a diverged training run or a broken conversion; "
            "the model will not give usable output until they are fixed.",
            value=float(bad)))
    if ts.count and ts.zeros == ts.count and not bad:
        kind = getattr(info, "kind", "weight")
        if kind == "buffer":
            why = ("This is a buffer (state that is not learned), for which zeros are often the expected "
                   "starting value.")
            severity = "note"
        elif kind == "state":
            why = ("This is training state (optimizer moments, momentum or an EMA copy), not part of the model; "
                   "zeros are what optimizers start from and what they keep for parameters that never got a "
                   "gradient.")
            severity = "note"
        elif kind == "bias":
            why = ("All-zero biases are what most layers start from; in a trained model they mean the bias "
                   "was never trained or is unused.")
            severity = "note"
        else:
            why = ("Every value of this tensor is zero, so the layer passes nothing through. In a trained model "
                   "that usually means a pruned or unused part, or weights that were never filled in.")
            severity = "warning"
        out.all_zero.append(Finding("all_zero", name, f"all {ts.count:,} values are zero", why, severity=severity,
                                    value=0.0))


def _siblings(out: Findings, stats: dict[str, TensorStats], infos: dict[str, Any]) -> None:
    families: dict[str, list[str]] = {}
    for name in stats:
        info = infos.get(name)
        if info is not None and not info.is_parameter:
            continue
        key = sibling_key(name)
        if key is not None:
            families.setdefault(key, []).append(name)
    for key, names in families.items():
        if len(names) < MIN_SIBLINGS:
            continue
        out.sibling_groups += 1
        for attr, label in SIBLING_MEASURES:
            values = {n: getattr(stats[n], attr) for n in names}
            values = {n: v for n, v in values.items() if math.isfinite(v) and v > 0}
            if len(values) < MIN_SIBLINGS:
                continue
            for name, z, value, median in outliers(values):
                layer = layer_index(name)
                direction = "higher" if value > median else "lower"
                factor = value / median if value > median else median / value
                out.sibling_outliers.append(Finding(
                    "sibling_outlier", name,
                    f"{label} {format_value(value)} vs {format_value(median)} in the other layers",
                    f"In layer {layer} this tensor's {label} is {factor:.1f} times {direction} than the median of "
                    f"the same tensor across {len(values)} layers ({key}). {SIBLING_MEANING}",
                    measure=label, value=value, reference=median, z=z))
    out.sibling_outliers.sort(key=lambda f: -abs(f.z))


def outliers(values: dict[str, float]) -> list[tuple[str, float, float, float]]:
    """(name, z, value, median) for positive values whose modified z-score of log10 passes the thresholds."""
    logs = {n: math.log10(v) for n, v in values.items()}
    median = statistics.median(logs.values())
    mad = statistics.median(abs(v - median) for v in logs.values())
    min_log = math.log10(MIN_FACTOR)
    found = []
    for name, lv in logs.items():
        dev = lv - median
        if abs(dev) < min_log:
            continue
        z = math.copysign(math.inf, dev) if mad == 0 else 0.6745 * dev / mad
        if abs(z) > Z_THRESHOLD:
            found.append((name, z, values[name], 10.0**median))
    return found
