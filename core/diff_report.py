"""The report's comparison pages: what changed between model A and model B, in plain words.

Built from a DiffResult (core.diff) as plain blocks (core.report), so the PDF writer draws them like every other
page. Every name and path comes from a user's files: it goes into the blocks as data, clipped, never as markup.
A figure that has no value says why ("not defined: A is all zeros") instead of showing NaN.

The verdict sentence is derived from the whole-model figures with these thresholds:

- equal: every compared value pair is equal (‖B−A‖ = 0);
- not related: |cosine| < UNRELATED_COSINE (independent random weights give a cosine near 0);
- quantised: some pair has a quantised side; faithful when the SNR is at least FAITHFUL_SNR_DB;
- converted: every pair's dtypes differ, none quantised, relative change at most CONVERTED_REL_CHANGE (rounding);
- fine-tune: cosine at least FINE_TUNE_COSINE; the layers that moved most are those within half of the largest
  per-layer relative change (MOST_MOVED_SHARE);
- otherwise distantly related (a long further training, a merge).
"""

from __future__ import annotations

import math
from typing import Any

from core import dtypes
from core.diff import DiffResult, DiffSums, TensorDiff, metrics
from core.diff_profile import depth_profile, most_changed
from core.report import (
    Block,
    Heading,
    KeyValues,
    LinePlot,
    Paragraph,
    PlotGrid,
    Series,
    Table,
    clip,
    plural,
    wide_range,
)
from core.taxonomy import NO_LAYER

UNRELATED_COSINE = 0.2
FINE_TUNE_COSINE = 0.9
FAITHFUL_SNR_DB = 20.0  # Q8_0 gives ~45 dB, Q4_K ~25 dB; under 20 dB the copy is no longer close to its source
CONVERTED_REL_CHANGE = 1e-2  # float16 / bfloat16 rounding moves a tensor by about 0.05% / 0.4%
MOST_MOVED_SHARE = 0.5
MOST_CHANGED_ROWS = 20
LISTED_NAMES = 5
MISMATCH_ROWS = 20
NAME_CHARS = 90

FIGURE_HELP = {
    "rel_change": "How far B moved from A, as a share of A's size (‖B−A‖ / ‖A‖): 0 is unchanged, about 1% a "
                  "light fine-tune, 100% or more a different model.",
    "cosine": "Whether A and B point the same way, all values taken as one vector: 1 is the same direction, "
              "0 unrelated.",
    "identical_fraction": "The share of values that are bit-for-bit equal in A and B; a frozen tensor shows 100%.",
    "max_abs_diff": "The largest single difference |B−A| and where it is (A's tensor and coordinates).",
    "snr_db": "Signal-to-noise ratio of the quantised side against the other: each 6 dB halves the error; "
              "40 dB and more is a faithful copy, under 20 dB a loose one.",
    "mean_diff": "The average of B−A: far from 0 when B shifted every value one way.",
    "std_diff": "The spread of B−A: the typical size of a change.",
}


def diff_blocks(result: DiffResult) -> list[Block]:
    """The comparison pages: verdict, what was compared, whole-model figures, roles, depth, most changed."""
    blocks: list[Block] = [Heading("Comparison"), Paragraph(verdict(result), style="term")]
    blocks += compared_blocks(result)
    model = result.model()
    if model is None:
        return blocks
    blocks += model_blocks(result, model)
    blocks += role_blocks(result)
    blocks += profile_blocks(result)
    blocks += most_changed_blocks(result)
    return blocks


def title_facts(result: DiffResult) -> list[tuple[str, str]]:
    """The title page's lines about the comparison: model B (data, clipped) and the verdict."""
    return [("Compared with (B)", clip(result.b, NAME_CHARS)),
            ("Comparison", verdict(result).removeprefix("Verdict: "))]


# --------------------------------------------------------------------------- verdict
def verdict(result: DiffResult) -> str:
    """One sentence that answers "how does B relate to A", from the whole-model figures (thresholds above)."""
    model = result.model()
    if model is None or model.count == 0:
        return (f"Verdict: nothing could be compared: {plural(len(result.only_in_a), 'tensor')} only in A, "
                f"{plural(len(result.only_in_b), 'tensor')} only in B, {plural(len(_refused(result)), 'pair')} "
                "that could not be compared.")
    m = metrics(model)
    aligned = _aligned_words(result)
    if model.n and model.ss_d == 0 and model.nonfinite == 0:
        return f"Verdict: B equals A: no value differs ({aligned})."
    cosine = m["cosine"]
    if model.n == 0:
        return f"Verdict: no compared value pair is finite in both models (NaN or infinite), so how far B moved " \
               f"is not defined ({aligned})."
    if math.isnan(cosine):
        side = "A" if model.ss_a == 0 else "B"
        return f"Verdict: B differs from A, but how far is not defined: {side}'s compared values are all zeros " \
               f"({aligned})."
    if abs(cosine) < UNRELATED_COSINE:
        return f"Verdict: B is not related to A: cosine near 0 ({_cosine(cosine)}), relative change " \
               f"{_share(m['rel_change'])}."
    if model.quantised:
        side = _quantised_side(result)
        snr = _snr(m["snr_db"])
        if not math.isnan(m["snr_db"]) and m["snr_db"] < FAITHFUL_SNR_DB:
            return f"Verdict: {side} is a quantised model that differs from the other more than a faithful " \
                   f"quantisation would: SNR {snr} (a faithful copy has {FAITHFUL_SNR_DB:.0f} dB or more), {aligned}."
        other = "A" if side == "B" else "B"
        return f"Verdict: {side} is a quantised copy of {other}: SNR {snr}, {aligned}."
    if _converted(result, m["rel_change"]):
        return f"Verdict: B is A converted to another precision ({_dtype_pairs(result)}): relative change " \
               f"{_share(m['rel_change'])}, no more than rounding, {aligned}."
    changed = sum(1 for td in result.tensors.values() if td.sums.ss_d != 0 or td.sums.identical != td.sums.count)
    where = _where_words(result)
    if math.isfinite(cosine) and cosine >= FINE_TUNE_COSINE:
        return f"Verdict: B is a fine-tune of A: {changed:,} of {len(result.tensors):,} tensors changed{where}, " \
               f"relative change {_share(m['rel_change'])}."
    return f"Verdict: B is distantly related to A (a long further training or a merge): cosine {_cosine(cosine)}, " \
           f"relative change {_share(m['rel_change'])}, {changed:,} of {len(result.tensors):,} tensors changed{where}."


def _aligned_words(result: DiffResult) -> str:
    unpaired = len(result.only_in_a) + len(result.only_in_b) + len(_refused(result))
    if not unpaired:
        return "every tensor aligned"
    return f"{plural(len(result.tensors), 'tensor')} compared; {len(result.only_in_a):,} only in A, " \
           f"{len(result.only_in_b):,} only in B, {len(_refused(result)):,} not comparable"


def _quantised_side(result: DiffResult) -> str:
    """"B" unless only A holds quantised tensors."""
    in_b = any(dtypes.get(td.b.dtype).is_quantized for td in result.tensors.values())
    in_a = any(dtypes.get(td.a.dtype).is_quantized for td in result.tensors.values())
    return "A" if in_a and not in_b else "B"


def _converted(result: DiffResult, rel_change: float) -> bool:
    return all(td.a.dtype != td.b.dtype for td in result.tensors.values()) and math.isfinite(rel_change) \
        and rel_change <= CONVERTED_REL_CHANGE


def _dtype_pairs(result: DiffResult) -> str:
    pairs = sorted({f"{clip(td.a.dtype, 20)} → {clip(td.b.dtype, 20)}" for td in result.tensors.values()})
    return ", ".join(pairs[:3]) + (f" and {len(pairs) - 3} more" if len(pairs) > 3 else "")


def moved_layers(result: DiffResult) -> list[int]:
    """The layers that moved most: per-layer relative change (exact merges) within MOST_MOVED_SHARE of the
    largest, in layer order; empty without numbered layers or without a change."""
    per_layer = [(int(key.split()[-1]), metrics(sums)["rel_change"]) for key, sums in result.group("layer")
                 if key != NO_LAYER]
    finite = [rel for _, rel in per_layer if math.isfinite(rel)]
    if not finite or max(finite) <= 0:
        return []
    top = max(finite)
    return [layer for layer, rel in per_layer if math.isfinite(rel) and rel >= MOST_MOVED_SHARE * top] \
        or [layer for layer, rel in per_layer if rel == top]


def _where_words(result: DiffResult) -> str:
    layers = moved_layers(result)
    total = sum(1 for key, _ in result.group("layer") if key != NO_LAYER)
    if not layers:
        return ""
    if len(layers) == total and total > 2:
        return f", spread across all {total:,} layers"
    return f", most in {_layer_ranges(layers)}"


def _layer_ranges(layers: list[int]) -> str:
    """"layer 3", "layers 10-15", "layers 2, 7-9 and 12" (at most four runs, then "and N more")."""
    runs: list[list[int]] = []
    for layer in layers:
        if runs and layer == runs[-1][1] + 1:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer])
    words = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs]
    if len(words) > 4:
        words = [*words[:4], f"{len(runs) - 4} more runs"]
    text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return ("layer " if len(layers) == 1 else "layers ") + text


# --------------------------------------------------------------------------- sections
def compared_blocks(result: DiffResult) -> list[Block]:
    """What was compared: both paths (data), the pairs, the unpaired names, the pairs not compared and why."""
    refused = _refused(result)
    across = [m for m in result.mismatched if m["compared"]]
    rows = [("A (reference)", clip(result.a, NAME_CHARS)), ("B (compared)", clip(result.b, NAME_CHARS)),
            ("Pairs compared", f"{len(result.tensors):,}"),
            ("Only in A", _names_cell(result.only_in_a)),
            ("Only in B", _names_cell(result.only_in_b)),
            ("Not comparable", f"{len(refused):,}")]
    if across:
        rows.append(("Compared across dtypes", f"{len(across):,} (as decoded values): {_across_words(across)}"))
    if result.cached:
        rows.append(("Time", "from the comparison cache (no tensor data read)"))
    elif result.bytes_read:
        rows.append(("Time", f"{result.seconds:.1f} s"))
    if result.rank:
        rows.append(("Low-rank figures computed on", clip(result.device, 40)))
    blocks: list[Block] = [Heading("What was compared", level=2), KeyValues(rows)]
    blocks += [Paragraph(clip(note, 400), style="note") for note in result.notes[:MISMATCH_ROWS]]
    blocks.append(Paragraph("Tensors pair by name, GGUF names mapped to Hugging Face ones (with llama.cpp's q/k row "
                            "order undone). Values are compared as decoded, in A's coordinates.", style="note"))
    if refused:
        table_rows = [[clip(m["a"], NAME_CHARS), "" if m["b"] == m["a"] else clip(m["b"], NAME_CHARS),
                       clip(m["reason"], 120)] for m in refused[:MISMATCH_ROWS]]
        blocks.append(Table(["Tensor in A", "In B (when named otherwise)", "Not compared because"], table_rows,
                            "lll", [4, 3, 4], title="Pairs not compared",
                            note=_more(len(refused), MISMATCH_ROWS)))
    return blocks


def model_blocks(result: DiffResult, model: DiffSums) -> list[Block]:
    """The whole-model figures, each with what it says, and the frozen tensors."""
    m = metrics(model)
    rows = [["Relative change", _rel_text(m["rel_change"], model), FIGURE_HELP["rel_change"]],
            ["Cosine similarity", _cosine_text(m["cosine"], model), FIGURE_HELP["cosine"]],
            ["Identical values", _identical(m["identical_fraction"]), FIGURE_HELP["identical_fraction"]],
            ["Largest |B−A|", _largest(m), FIGURE_HELP["max_abs_diff"]]]
    if model.quantised:
        rows.append(["SNR", _snr(m["snr_db"]), FIGURE_HELP["snr_db"]])
    rows += [["Mean of B−A", _value(m["mean_diff"], model), FIGURE_HELP["mean_diff"]],
             ["Std of B−A", _value(m["std_diff"], model), FIGURE_HELP["std_diff"]],
             ["Values compared", f"{model.count:,}", "Value pairs read from both files."]]
    if model.nonfinite:
        rows.append(["Not finite", f"{model.nonfinite:,}", "Pairs where a side is NaN or infinite: left out of "
                                                             "every figure above except identical values."])
    frozen = [td for td in result.tensors.values() if td.sums.count and td.sums.identical == td.sums.count]
    rows.append(["Frozen tensors", f"{len(frozen):,} of {len(result.tensors):,}",
                 "Tensors whose every value is bit-for-bit the same in A and B (100% identical)."])
    return [Heading("Whole model", level=2),
            Table(["Figure", "Value", "What it says"], rows, "lll", [1.6, 2.4, 4.8])]


def role_blocks(result: DiffResult) -> list[Block]:
    """One row per role: the exact merge of its tensors."""
    groups = result.group("role")
    if not groups:
        return []
    counts: dict[str, int] = {}
    for td in result.tensors.values():
        counts[td.a.role] = counts.get(td.a.role, 0) + 1
    quantised = any(sums.quantised for _, sums in groups)
    columns = ["Role", "Tensors", "Rel. change", "Cosine", "Identical", "Max |B−A|"] + (["SNR"] if quantised else [])
    rows = []
    for role, sums in groups:
        m = metrics(sums)
        row = [role, f"{counts.get(role, 0):,}", _rel_text(m["rel_change"], sums), _cosine_text(m["cosine"], sums),
               _identical(m["identical_fraction"]), _value(m["max_abs_diff"], sums)]
        if quantised:
            row.append(_snr(m["snr_db"]) if sums.quantised else "not quantised")
        rows.append(row)
    widths = [2, 1, 1.6, 1.6, 1.3, 1.4] + ([1.4] if quantised else [])
    return [Heading("By role", level=2), Table(columns, rows, "lrrrrr" + ("r" if quantised else ""), widths)]


def profile_blocks(result: DiffResult) -> list[Block]:
    """Relative change by layer, one line per role that moved: which layers moved most. A page of its own, so
    the plot never parts from its heading."""
    profile = depth_profile(result)
    blocks: list[Block] = [Heading("Where B differs from A")]
    if not profile:
        return [*blocks, Paragraph("Neither model has numbered, repeated layers in common, so there is no depth "
                                   "profile.", style="note")]
    moved = {role: points for role, points in profile.items() if any(p.rel_change != 0 for p in points)}
    still = [role for role in profile if role not in moved]
    note = "Relative change ‖B−A‖/‖A‖ in percent, of each role's tensors in each layer taken together."
    if moved:
        series = [Series(role, [float(p.layer) for p in points], [100 * p.rel_change for p in points])
                  for role, points in moved.items()]
        log_y = wide_range(series) and not any(y == 0 for s in series for y in s.y)
        if log_y:
            note += " The axis is logarithmic."
        blocks.append(PlotGrid([LinePlot("relative change by layer", series, ylabel="relative change %",
                                         log_y=log_y)], columns=1))
    if still:
        note += f" Unchanged in every layer (not drawn): {', '.join(still)}."
    blocks.append(Paragraph(note, style="note"))
    return blocks


def most_changed_blocks(result: DiffResult) -> list[Block]:
    """The tensors that moved most (unchanged ones are left out), with the rank of the change when computed."""
    top = [td for td in most_changed(result, MOST_CHANGED_ROWS) if td.sums.ss_d != 0 or math.isnan(_rel(td))]
    blocks: list[Block] = [Heading("Most changed tensors", level=2)]
    if not top:
        return [*blocks, Paragraph("No tensor changed.", style="note")]
    with_rank = result.rank
    with_snr = any(td.sums.quantised for td in top)
    columns = ["Tensor", "Dtypes", "Rel. change", "Cosine", "Identical", "Max |B−A|"]
    widths = [4.6, 1.5, 1.3, 1.4, 1.2, 1.3]
    columns += ["SNR"] if with_snr else []
    widths += [1.2] if with_snr else []
    columns += ["Rank 90%"] if with_rank else []
    widths += [1.1] if with_rank else []
    rows = []
    for td in top:
        m = metrics(td.sums)
        dtype_text = clip(td.a.dtype, 20) if td.a.dtype == td.b.dtype else \
            f"{clip(td.a.dtype, 20)} → {clip(td.b.dtype, 20)}"
        row = [clip(td.name, NAME_CHARS), dtype_text, _rel_text(m["rel_change"], td.sums),
               _cosine_text(m["cosine"], td.sums), _identical(m["identical_fraction"]),
               _value(m["max_abs_diff"], td.sums)]
        if with_snr:
            row.append(_snr(m["snr_db"]) if td.sums.quantised else "not quantised")
        if with_rank:
            row.append(_rank_text(td))
        rows.append(row)
    blocks.append(Paragraph(f"The {plural(len(top), 'changed tensor')} with the largest relative change, largest "
                            "first (unchanged tensors are left out).", style="note"))
    blocks.append(Table(columns, rows, "ll" + "r" * (len(columns) - 2), widths))
    if with_rank:
        blocks.append(Paragraph("Rank 90%: how many singular directions of B−A hold 90% of the change's energy, "
                                "of the most the matrix can have; a small number means a low-rank update (as LoRA "
                                "makes).",
                                style="note"))
    return blocks


# --------------------------------------------------------------------------- figures as words
def _rel(td: TensorDiff) -> float:
    return metrics(td.sums)["rel_change"]


def _rank_text(td: TensorDiff) -> str:
    """rank90 when the comparison computed it (``--rank``), else why not."""
    if td.rank90 is not None:
        return f"{td.rank90:,} of {min(td.a.shape):,}" if len(td.a.shape) == 2 else f"{td.rank90:,}"
    return clip(td.rank_note, 40) if td.rank_note else "not computed"


def _refused(result: DiffResult) -> list[dict[str, Any]]:
    return [m for m in result.mismatched if not m["compared"]]


def _names_cell(names: list[str]) -> str:
    if not names:
        return "0"
    shown = ", ".join(clip(n, 60) for n in names[:LISTED_NAMES])
    return f"{len(names):,}: {shown}" + (f" and {len(names) - LISTED_NAMES:,} more" if len(names) > LISTED_NAMES
                                         else "")


def _across_words(across: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for m in across:
        key = f"{clip(m['a_dtype'], 20)} in A, {clip(m['b_dtype'], 20)} in B"
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{n:,} {key}" for key, n in sorted(counts.items())[:4])


def _more(total: int, shown: int) -> str:
    return f"… and {total - shown:,} more" if total > shown else ""


def _no_pairs(sums: DiffSums) -> str | None:
    return "not defined: no finite value pairs" if sums.n == 0 else None


def _share(x: float) -> str:
    """A ratio as a percentage with three significant digits ("2.13%"), or why it has none."""
    if math.isnan(x):
        return "not defined"
    if math.isinf(x):
        return "not defined (A is all zeros)"
    if x == 0:
        return "0%"
    pct = 100 * x
    return f"{pct:,.0f}%" if pct >= 99.5 else f"{pct:#.3g}%"  # "#": 2.00% beside 2.13%, never "100.%"


def _rel_text(x: float, sums: DiffSums) -> str:
    if math.isinf(x):
        return "not defined: A is all zeros, B is not"
    return _no_pairs(sums) or _share(x)


def _cosine(x: float) -> str:
    """Cosines near 1 are what matter: enough digits to tell 0.999999 from 1."""
    if x == 1.0:
        return "1"
    text = f"{x:.7f}" if abs(x) >= 0.99 else f"{x:.3f}"
    return ">0.9999999" if text == "1.0000000" else text  # not 1: some direction changed, by rounding at least


def _cosine_text(x: float, sums: DiffSums) -> str:
    if math.isnan(x):
        return _no_pairs(sums) or "not defined: a side is all zeros"
    return _cosine(x)


def _identical(x: float) -> str:
    """100% only when every value is identical; a share that rounds to 100% or 0% says it is just short."""
    if math.isnan(x):
        return "not defined: no values"
    if x == 1 or x == 0:
        return f"{100 * x:.0f}%"
    text = f"{100 * x:.2f}%"
    return ">99.99%" if text == "100.00%" else "<0.01%" if text == "0.00%" else text


def _snr(x: float) -> str:
    if math.isnan(x):
        return "not defined: the reference side is all zeros"
    if math.isinf(x):
        return "no error (exact)"
    return f"{x:.1f} dB"


def _value(x: float, sums: DiffSums) -> str:
    from core.numbers import format_value

    return (_no_pairs(sums) or "not defined") if math.isnan(x) else format_value(x)


def _largest(m: dict[str, Any]) -> str:
    from core.numbers import format_value

    if math.isnan(m["max_abs_diff"]):
        return "not defined: no finite value pairs"
    if m["max_abs_diff"] == 0:
        return "0 (no value differs)"
    return f"{format_value(m['max_abs_diff'])} in {clip(m['max_abs_diff_tensor'] or '', NAME_CHARS)} at " \
           f"{list(m['max_abs_diff_at'] or [])}"
