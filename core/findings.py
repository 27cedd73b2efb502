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

The same findings are also one flat list for the window and ``stats --json``
(``Findings.all``, ``findings_json``): the largest outliers, heavy tails and
tensors crushed onto a few distinct values join them there. With
``read_values`` a streamed pass over only the flagged tensors (core.locate)
adds coordinates: where the outlier sits, where the first NaN are, and an
exact distinct-value count where the summary gave only a bound.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from core.levels import summary_levels
from core.numbers import format_value
from core.stats_summary import HistSpec, TensorStats
from core.taxonomy import layer_index

TOP = 10
Z_THRESHOLD = 3.5  # Iglewicz & Hoaglin's cut-off for the modified z-score
MIN_FACTOR = 1.5  # and at least this far from the siblings' median, so tiny MADs do not flag noise
MIN_SIBLINGS = 4
STATS_ONLY = HistSpec(bins=1, log_bins=1)  # derive without paying for display histograms

SIBLING_MEASURES = (("std", "std"), ("abs_max", "max |w|"), ("kurtosis", "kurtosis"))
OUTLIER_SIGMA = 12.0  # peak / sigma: a Gaussian of a billion values stays near 6
OUTLIER_TOP = 5
HEAVY_TAIL_KURTOSIS = 30.0  # a Gaussian has 3
HEAVY_TAIL_TOP = 5
FEW_VALUES = 16  # what 4 bits can tell apart
FEW_VALUES_MIN_COUNT = 64  # smaller tensors have few values anyway
READ_BUDGET = 1 << 30  # bytes the streamed passes of one find() may read
SEVERITY_ORDER = {"error": 0, "warning": 1, "note": 2}


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

    kind: str  # "non_finite" | "all_zero" | "sibling_outlier" | "outlier" | "heavy_tail" | "few_values"
    tensor: str
    title: str
    explanation: str
    severity: str = "warning"  # "error" (broken values) | "warning" (a problem) | "note" (worth knowing)
    measure: str = ""
    value: float = math.nan
    reference: float = math.nan  # siblings' median for sibling outliers
    z: float = math.nan
    at: tuple[tuple[int, ...], ...] | None = None  # coordinates where it applies, when a streamed pass found them

    @property
    def message(self) -> str:
        """One line in plain words (the tensor is named separately)."""
        return self.title

    @property
    def is_problem(self) -> bool:
        return self.severity in ("error", "warning")


@dataclass
class Findings:
    peak_ratio: list[Ranked] = field(default_factory=list)  # max |w - mean| / std, largest first
    kurtosis: list[Ranked] = field(default_factory=list)  # largest first
    non_finite: list[Finding] = field(default_factory=list)
    all_zero: list[Finding] = field(default_factory=list)
    sibling_outliers: list[Finding] = field(default_factory=list)
    sibling_groups: int = 0  # how many sibling families were compared
    analysed: int = 0
    outliers: list[Finding] = field(default_factory=list)  # the top of peak_ratio beyond OUTLIER_SIGMA
    heavy_tails: list[Finding] = field(default_factory=list)  # the top of kurtosis, outliers left out
    few_values: list[Finding] = field(default_factory=list)  # crushed onto at most FEW_VALUES values

    def all(self) -> list[Finding]:
        """Every finding, most severe first (stable: within a severity, in the order of the lists)."""
        items = [*self.non_finite, *self.all_zero, *self.few_values, *self.sibling_outliers, *self.outliers,
                 *self.heavy_tails]
        return sorted(items, key=lambda f: SEVERITY_ORDER.get(f.severity, 3))

    @property
    def problems(self) -> int:
        """Findings that are problems (errors and warnings), not notes."""
        return sum(1 for f in self.all() if f.is_problem)


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
    """Statistics (without display histograms) of every analysed tensor that holds values, in result order.
    Empty tensors are left out: they can have no finding, and a header may list a million of them."""
    summaries = dict(result.summaries)
    wanted = summaries if names is None else [n for n in names if n in summaries]
    return {name: result.stats(name, STATS_ONLY) for name in wanted if summaries[name].total > 0}


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


def find(result: Any, checkpoint: Any, stats: dict[str, TensorStats] | None = None, top: int = TOP, *,
         read_values: bool = False, should_stop: Callable[[], bool] | None = None) -> Findings:
    """All findings of one analysis. ``stats`` may be passed in when the caller already derived them.
    ``read_values`` adds coordinates and exact distinct counts by streamed passes over the flagged tensors only
    (the checkpoint must be open); without it nothing is read."""
    stats = tensor_stats(result) if stats is None else stats
    infos = {t.name: t for t in checkpoint.tensors} if stats else {}  # no values held: a million empties, no map
    out = Findings(analysed=len(result.summaries))
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
    _outliers_and_tails(out, ranked)
    budget = [READ_BUDGET if read_values else 0]
    _few_values(out, result, stats, infos, checkpoint, budget, should_stop)
    if read_values:
        _locate_all(out, stats, infos, checkpoint, budget, should_stop)
    return out


def _outliers_and_tails(out: Findings, ranked: list[tuple[str, TensorStats, float]]) -> None:
    for name, ts, peak in sorted(ranked, key=lambda r: -r[2])[:OUTLIER_TOP]:
        if peak < OUTLIER_SIGMA:
            break
        extreme = ts.max if abs(ts.max - ts.mean) >= abs(ts.min - ts.mean) else ts.min
        out.outliers.append(Finding(
            "outlier", name, f"a value of {format_value(extreme)} lies {peak:.0f} standard deviations from the mean "
            f"(std {format_value(ts.std)})", PEAK_HELP, severity="note", measure="peak / sigma", value=peak))
    flagged = {f.tensor for f in out.outliers}
    tails = [(n, ts) for n, ts, _ in ranked if math.isfinite(ts.kurtosis) and ts.kurtosis >= HEAVY_TAIL_KURTOSIS
             and n not in flagged]
    for name, ts in sorted(tails, key=lambda r: -r[1].kurtosis)[:HEAVY_TAIL_TOP]:
        out.heavy_tails.append(Finding(
            "heavy_tail", name, f"heavy tails: kurtosis {format_value(ts.kurtosis)} (a Gaussian has 3)",
            KURTOSIS_HELP, severity="note", measure="kurtosis", value=ts.kurtosis))


FEW_VALUES_HELP = ("A weight tensor normally holds thousands of different values. One with only a handful was "
                   "rounded onto a coarse grid, by a quantisation that kept too few levels or by a broken "
                   "conversion, and has lost most of what it learned. Ternary and binary models store a few "
                   "levels by design.")


def _few_values(out: Findings, result: Any, stats: dict[str, TensorStats], infos: dict[str, Any], checkpoint: Any,
                budget: list[int], should_stop: Callable[[], bool] | None) -> None:
    from core.locate import distinct_values

    for name, ts in stats.items():
        info = infos.get(name)
        if (info is not None and not info.is_parameter) or ts.count < FEW_VALUES_MIN_COUNT or ts.zeros == ts.count:
            continue
        summary = result.summaries.get(name)
        if summary is None:
            continue
        levels = summary_levels(summary, FEW_VALUES)
        if levels.count > FEW_VALUES or levels.count < 2:  # one value: constant, not crushed
            continue
        values = levels.values
        if not levels.exact:  # a bound from bf16 bins: only a streamed count can tell
            if info is None or info.nbytes > budget[0]:
                continue
            budget[0] -= info.nbytes
            found = distinct_values(checkpoint, info, FEW_VALUES, should_stop=should_stop)
            if found is None or len(found) < 2:
                continue
            values = found
        shown = ", ".join(format_value(v) for v in values)
        out.few_values.append(Finding(
            "few_values", name, f"only {len(values)} distinct values ({shown}) in {ts.count:,}",
            FEW_VALUES_HELP, severity="warning", measure="distinct values", value=float(len(values))))


def _locate_all(out: Findings, stats: dict[str, TensorStats], infos: dict[str, Any], checkpoint: Any,
                budget: list[int], should_stop: Callable[[], bool] | None) -> None:
    """Coordinates for outliers and the first NaN / Inf, by one streamed pass per flagged tensor, within budget."""
    from core.locate import locate

    wanted: dict[str, tuple[bool, bool]] = {}
    for f in out.outliers:
        wanted[f.tensor] = (True, False)
    for f in out.non_finite:
        peak, _ = wanted.get(f.tensor, (False, False))
        wanted[f.tensor] = (peak, True)
    found = {}
    for name, (peak, non_finite) in wanted.items():
        info = infos.get(name)
        if info is None or info.nbytes > budget[0]:
            continue
        budget[0] -= info.nbytes
        found[name] = locate(checkpoint, info, stats[name].mean, want_peak=peak, want_non_finite=non_finite,
                             should_stop=should_stop)
    out.outliers = [_with_at(f, found[f.tensor].peak_at) if f.tensor in found else f for f in out.outliers]
    out.non_finite = [_with_at(f, *found[f.tensor].non_finite_at) if f.tensor in found else f
                      for f in out.non_finite]


def _with_at(f: Finding, *at: tuple[int, ...] | None) -> Finding:
    coords = tuple(a for a in at if a is not None)
    return replace(f, at=coords or None)


def findings_json(checkpoint: Any, result: Any, should_stop: Callable[[], bool] | None = None,
                  stats: dict[str, TensorStats] | None = None) -> list[dict]:
    """The findings as ``stats --json`` lists them: {kind, severity, tensor, message, at}, most severe first.
    ``at`` is a list of coordinates (each a list of indices) or None. Reads only the flagged tensors.
    ``stats``: the tensors' statistics when the caller derived them already (see tensor_stats)."""
    found = find(result, checkpoint, stats, read_values=True, should_stop=should_stop)
    return [{"kind": f.kind, "severity": f.severity, "tensor": f.tensor, "message": f.message,
             "at": [list(c) for c in f.at] if f.at is not None else None} for f in found.all()]


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
            severity="error", value=float(bad)))
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
