"""What a report says, as plain data: a title page and a list of blocks (headings, text, tables, plots).

Everything here is computed from a Checkpoint and an AnalysisResult; nothing
knows how it is drawn (gui/pdf.py lays the blocks out on A4 pages). Every
string that comes from the file (tensor names, metadata) stays a plain string:
the drawer must treat it as inert text.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from typing import Any

from core.checkpoint import Checkpoint
from core.findings import (
    KURTOSIS_HELP,
    PEAK_HELP,
    SIBLING_HELP,
    SIBLING_MEANING,
    STATS_ONLY,
    Findings,
    find,
    tensor_stats,
)
from core.memory import memory_summary
from core.numbers import count_with_exact, format_value, human_bytes, human_count, percent
from core.stats_summary import HistSpec, TensorStats
from core.taxonomy import KIND_HELP
from core.tree import TreeNode, build_tree, fold_repeats
from core.version import __version__

HIST_BINS = 120
MAX_TABLE_ROWS = 400
MAX_TENSOR_ROWS = 1500
MAX_FILES = 24
MAX_METADATA = 24
MAX_TEXT = 160
GENERIC_STEMS = {"model", "pytorch_model", "consolidated", "weights", "checkpoint", "adapter_model", "diffusion_model"}


# --------------------------------------------------------------------------- blocks
@dataclass
class Heading:
    text: str
    level: int = 1  # 1 starts a new page


@dataclass
class Paragraph:
    text: str
    style: str = "body"  # "body" | "note" | "term" (a bold lead-in before the first ': ')


@dataclass
class KeyValues:
    rows: list[tuple[str, str]]
    title: str = ""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    align: str  # one of "l" / "r" per column
    widths: list[float]  # relative column widths
    title: str = ""
    indents: list[int] | None = None  # per row: tree depth of the first cell
    bold_rows: set[int] = field(default_factory=set)
    note: str = ""


@dataclass
class Histogram:
    title: str
    edges: list[float]
    counts: list[int]
    xlabel: str = "value"
    ylabel: str = "count (log scale)"
    log_y: bool = True


@dataclass
class Series:
    label: str
    x: list[float]
    y: list[float]


@dataclass
class LinePlot:
    title: str
    series: list[Series]
    xlabel: str = "layer"
    ylabel: str = ""
    log_y: bool = False


@dataclass
class PlotGrid:
    plots: list[Histogram | LinePlot]
    columns: int = 2
    title: str = ""


Block = Heading | Paragraph | KeyValues | Table | Histogram | LinePlot | PlotGrid


@dataclass
class Report:
    title: str
    subtitle: str
    facts: list[tuple[str, str]]  # title page
    files: Table
    blocks: list[Block]
    footer: str
    parameter_count: int = 0
    findings: Findings | None = None


# --------------------------------------------------------------------------- building
def model_name(checkpoint: Checkpoint) -> str:
    """A short name for the title: GGUF general.name, else the folder or file the user opened."""
    name = checkpoint.metadata.get("general.name")
    if isinstance(name, str) and name.strip():
        return clip(name.strip(), 80)
    path = os.path.abspath(checkpoint.path)
    if os.path.isdir(path):
        return os.path.basename(path.rstrip(os.sep)) or path
    base = os.path.basename(path)
    stem = base.split(".")[0] if not base.startswith(".") else base
    if base.endswith(".index.json") or stem in GENERIC_STEMS or stem.startswith("model-0"):
        parent = os.path.basename(os.path.dirname(path))
        if parent:
            return parent
    return stem or base


def default_report_name(checkpoint: Checkpoint) -> str:
    """``<model>-report.pdf`` with characters file systems dislike replaced."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name(checkpoint)).strip("._") or "model"
    return f"{safe[:80]}-report.pdf"


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_report(checkpoint: Checkpoint, result: Any, now: _dt.datetime | None = None) -> Report:
    """The whole report for one analysed checkpoint."""
    now = now or _dt.datetime.now().astimezone()
    name = model_name(checkpoint)
    per_tensor = tensor_stats(result)
    found = find(result, checkpoint, per_tensor)
    blocks: list[Block] = []
    blocks += summary_blocks(checkpoint, result, found)
    blocks += layer_table_blocks(checkpoint, result)
    blocks += plot_blocks(checkpoint, result)
    blocks += findings_blocks(found)
    blocks += legend_blocks()
    blocks += tensor_list_blocks(checkpoint, per_tensor)
    files = files_table(checkpoint)
    return Report(
        title=name,
        subtitle="Checkpoint report",
        facts=[("Verdict", verdict_line(found)), *title_facts(checkpoint, result, now)],
        files=files,
        blocks=blocks,
        footer=f"{clip(name, 60)} · Weightscope {__version__}",
        parameter_count=checkpoint.parameter_count,
        findings=found,
    )


def title_facts(checkpoint: Checkpoint, result: Any, now: _dt.datetime) -> list[tuple[str, str]]:
    analysed = len(result.summaries)
    device = f"{result.device}, {result.seconds:.1f} s, {human_bytes(result.bytes_read)} read"
    if not result.summaries:
        device = "nothing to analyse (no tensors with values)"
    elif result.device == "cache":
        device = "statistics from the local cache (no tensor data read)"
    return [
        ("Format", checkpoint.format),
        ("Parameters", count_with_exact(checkpoint.parameter_count)),
        ("Tensors", f"{len(checkpoint.tensors):,} ({analysed:,} analysed)"),
        ("Size on disk", f"{human_bytes(checkpoint.file_bytes)} in {len(checkpoint.files):,} file"
                         f"{'s' if len(checkpoint.files) != 1 else ''}"),
        ("Date", now.strftime("%Y-%m-%d %H:%M %Z").strip()),
        ("Weightscope", __version__),
        ("Analysis device", device),
    ]


def files_table(checkpoint: Checkpoint) -> Table:
    base = checkpoint.path if os.path.isdir(checkpoint.path) else os.path.dirname(checkpoint.path)
    rows = []
    for f in checkpoint.files[:MAX_FILES]:
        rel = os.path.relpath(f.path, base) if base else os.path.basename(f.path)
        if rel.startswith(".."):
            rel = os.path.basename(f.path)
        rows.append([rel, human_bytes(f.size), f"{f.size:,}"])
    note = f"… and {len(checkpoint.files) - MAX_FILES:,} more files" if len(checkpoint.files) > MAX_FILES else ""
    return Table(["File", "Size", "Bytes"], rows, "lrr", [6, 1.4, 2], title="Files", note=note)


def _share_rows(items: list[tuple[str, int]], total: int) -> list[list[str]]:
    return [[key, human_count(n), f"{n:,}", percent(n, total)] for key, n in items]


VERDICT_ROWS = 12  # problems listed on the first page of the Summary; the Findings section has them all
_VERDICT_PARTS = (("non_finite", "with NaN or Inf"), ("all_zero", "all-zero"),
                  ("few_values", "crushed onto a few values"), ("sibling_outliers", "unlike their siblings"),
                  ("outliers", "with extreme outliers"), ("heavy_tails", "heavy-tailed"))


def verdict_line(found: Findings) -> str:
    """The report's answer in one line: "No problems found in 1,137 tensors" or what kinds of problems."""
    if not found.problems:
        return f"No problems found in {plural(found.analysed, 'tensor')} analysed"
    parts = []
    for attr, words in _VERDICT_PARTS:
        n = sum(1 for f in getattr(found, attr) if f.is_problem)
        if n:
            parts.append(f"{n:,} {words}")
    return f"{plural(found.problems, 'problem')} found: {', '.join(parts)} (see Findings)"


def verdict_blocks(found: Findings) -> list[Block]:
    """The verdict first: what is wrong (if anything), before any table of counts."""
    blocks: list[Block] = [Heading("Verdict", level=2), Paragraph(verdict_line(found) + ".")]
    problems = [f for f in found.all() if f.is_problem]
    if problems:
        blocks.append(Table(["Tensor", "Problem", "Severity"],
                            [[f.tensor, f.title, f.severity] for f in problems[:VERDICT_ROWS]], "lll", [4, 4, 1],
                            note=f"… {len(problems) - VERDICT_ROWS:,} more in Findings"
                            if len(problems) > VERDICT_ROWS else ""))
    return blocks


def count_story_blocks(checkpoint: Checkpoint) -> list[Block]:
    """How the parameter count adds up from the architecture, when it can be derived."""
    from core.count_story import count_story

    story = count_story(checkpoint)
    if story is None:
        return []
    return [Heading("How the count adds up", level=2), *(Paragraph(line, style="note") for line in story.lines())]


def quantization_blocks(checkpoint: Checkpoint) -> list[Block]:
    """For quantised files: the recipe and bits per weight, overall and per type."""
    from core.quantization import headline, quantization_summary

    summary = quantization_summary(checkpoint)
    if summary is None:
        return []
    rows = [[name, f"{e['tensors']:,}", f"{e['parameters']:,}", f"{e['bytes']:,}", f"{e['bits_per_weight']:.4g}"]
            for name, e in summary["by_type"].items()]
    return [Table(["Type", "Tensors", "Parameters", "Bytes", "Bits per weight"], rows, "lrrrr",
                  [2, 1.2, 2.2, 2.2, 1.6], title=f"Quantisation: {headline(summary)}")]


def summary_blocks(checkpoint: Checkpoint, result: Any, found: Findings | None = None) -> list[Block]:
    params = checkpoint.parameter_count
    by_kind = checkpoint.by_kind()
    blocks: list[Block] = [Heading("Summary")]
    if found is not None:
        blocks += verdict_blocks(found)
    blocks.append(Paragraph(
        f"The model holds {human_count(params)} parameters ({params:,}) in "
        f"{plural(len(checkpoint.tensors), 'tensor')}, {human_bytes(checkpoint.file_bytes)} on disk. "
        "Buffers (state that is not learned) add "
        f"{by_kind.get('buffer', 0):,} elements."
        + (f" The file also holds {by_kind['state']:,} values of training state (optimizer moments, EMA copies), "
           "which are not part of the model and not counted as parameters." if by_kind.get("state") else "")))
    kinds = [(k, n) for k, n in by_kind.items() if k not in ("buffer", "state")]
    rows = _share_rows(kinds, params)
    rows.append(["total parameters", human_count(params), f"{params:,}", percent(params, params)])
    rows.append(["buffers (not learned)", human_count(by_kind.get("buffer", 0)), f"{by_kind.get('buffer', 0):,}", ""])
    if by_kind.get("state"):
        rows.append(["training state (not the model)", human_count(by_kind["state"]), f"{by_kind['state']:,}", ""])
    blocks.append(Table(["Kind", "Parameters", "Exact", "Share"], rows, "lrrr", [3, 1.4, 2.2, 1.2],
                        title="Parameters by kind", bold_rows={len(kinds)}))
    roles = sorted(checkpoint.by_role().items(), key=lambda kv: -kv[1])
    blocks.append(Table(["Role", "Parameters", "Exact", "Share"], _share_rows(roles, params), "lrrr",
                        [3, 1.4, 2.2, 1.2], title="Parameters by role"))
    elements = checkpoint.element_count
    dtype_bytes: dict[str, int] = {}
    for t in checkpoint.tensors:
        dtype_bytes[t.dtype] = dtype_bytes.get(t.dtype, 0) + t.nbytes
    dtype_rows = [[d, human_count(n), f"{n:,}", percent(n, elements), human_bytes(dtype_bytes.get(d, 0))]
                  for d, n in sorted(checkpoint.by_dtype().items(), key=lambda kv: -kv[1])]
    blocks.append(Table(["Data type", "Elements", "Exact", "Share", "Stored"], dtype_rows, "lrrrr",
                        [2.2, 1.3, 2.2, 1.1, 1.6], title="Data types (buffers included)"))
    blocks += quantization_blocks(checkpoint)
    if checkpoint.architecture:
        blocks.append(KeyValues(architecture_rows(checkpoint.architecture), title="Architecture"))
        blocks += count_story_blocks(checkpoint)
    blocks.append(KeyValues([("how it was read", clip(checkpoint.safety))]
                            + [("warning", clip(w)) for w in checkpoint.warnings], title="Safety"))
    blocks.append(memory_table(checkpoint))
    model = result.model(STATS_ONLY)
    if model is not None:
        blocks.append(KeyValues(model_stats_rows(model), title="Values of the whole model (floating-point tensors)"))
    meta = metadata_rows(checkpoint.metadata)
    if meta:
        blocks.append(KeyValues(meta, title="File metadata (as written in the file)"))
    return blocks


def architecture_rows(architecture: dict[str, Any]) -> list[tuple[str, str]]:
    """Facts one per row; each config.json claim the tensors contradict on a row of its own."""
    rows = [(k.replace("_", " "), clip(v)) for k, v in architecture.items() if k != "contradictions"]
    rows += [("contradiction", clip(f"{claim}; the tensors' figure is used"))
             for claim in architecture.get("contradictions", [])]
    return rows


def memory_table(checkpoint: Checkpoint) -> Table:
    memory = memory_summary(checkpoint)
    weights = memory["weights"]
    stored = "+".join(sorted({t.dtype for t in checkpoint.tensors if t.is_parameter})) or "-"
    rows = [[f"as stored ({clip(stored, 40)})", human_bytes(weights["stored"]), f"{weights['stored']:,}"]]
    for precision, label in (("fp32", "fp32 (4 bytes)"), ("bf16", "bf16 / fp16 (2 bytes)"),
                             ("int8", "int8 (1 byte)"), ("int4", "int4 (half a byte)")):
        rows.append([label, human_bytes(weights[precision]), f"{weights[precision]:,}"])
    rows.append(["training with Adam (16 bytes, before activations)", human_bytes(memory["training_adam"]),
                 f"{memory['training_adam']:,}"])
    if "kv_cache_per_token_fp16" in memory:
        rows.append(["KV cache per token (fp16)", human_bytes(memory["kv_cache_per_token_fp16"]),
                     f"{memory['kv_cache_per_token_fp16']:,}"])
    if "kv_cache_full_context_fp16" in memory:
        rows.append(["KV cache at full context (fp16)", human_bytes(memory["kv_cache_full_context_fp16"]),
                     f"{memory['kv_cache_full_context_fp16']:,}"])
    return Table(["Weights held at", "Memory", "Bytes"], rows, "lrr", [4.4, 1.4, 2.2], title="Memory")


def model_stats_rows(ts: TensorStats) -> list[tuple[str, str]]:
    p = ts.percentiles
    rows = [
        ("values", f"{ts.count:,} finite"),
        ("mean", format_value(ts.mean)),
        ("standard deviation", format_value(ts.std)),
        ("min / max", f"{format_value(ts.min)} / {format_value(ts.max)}"),
        ("max |w|", format_value(ts.abs_max)),
        ("kurtosis", format_value(ts.kurtosis)),
        ("percentiles 1 / 50 / 99", " / ".join(format_value(p.get(k, math.nan)) for k in ("1", "50", "99"))),
        ("zeros", f"{ts.zeros:,}"),
        ("NaN / +Inf / -Inf", f"{ts.nan:,} / {ts.pos_inf:,} / {ts.neg_inf:,}"),
    ]
    return rows


def metadata_rows(metadata: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in list(metadata.items())[:MAX_METADATA]:
        rows.append((clip(key, 60), _describe_value(value)))
    if len(metadata) > MAX_METADATA:
        rows.append(("…", f"{len(metadata) - MAX_METADATA:,} more entries"))
    return rows


def _describe_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        head = ", ".join(clip(v, 24) for v in value[:5])
        return clip(f"[{len(value):,} items] {head}{', …' if len(value) > 5 else ''}")
    if isinstance(value, dict) and isinstance(value.get("summary"), str):  # a long GGUF array, summarised
        first = value.get("first")
        head = ", ".join(clip(v, 24) for v in first[:5]) if isinstance(first, list) else ""
        return clip(f"{value['summary']} {head}{', …' if head else ''}")
    if isinstance(value, dict):
        return clip(f"{{{len(value):,} keys}} " + ", ".join(clip(k, 24) for k in list(value)[:5]))
    return clip(value)


# --------------------------------------------------------------------------- layer table
LAYER_COLUMNS = ["Layer", "Parameters", "Share", "Mean", "Std", "Max |w|", "Kurtosis"]


def layer_rows(checkpoint: Checkpoint, result: Any) -> tuple[list[list[str]], list[int], int, set[int]]:
    """Rows of the folded tree (single-child chains joined: ``q_proj.weight``), their depths, how many
    rows were left out beyond MAX_TABLE_ROWS, and which rows are groups (have rows below them)."""
    tree = fold_repeats(build_tree(checkpoint.tensors))
    total = checkpoint.parameter_count
    rows: list[list[str]] = []
    depths: list[int] = []
    groups: set[int] = set()
    skipped = 0

    def visit(node: TreeNode, depth: int) -> None:
        nonlocal skipped
        label = node.name
        while len(node.children) == 1:
            node = node.children[0]
            label = f"{label}.{node.name}"
        if len(rows) >= MAX_TABLE_ROWS:
            skipped += 1
        else:
            if node.children:
                groups.add(len(rows))
            rows.append(_layer_row(label, node, result, total))
            depths.append(depth)
        for child in node.children:
            visit(child, depth + 1)

    for child in tree.children:
        visit(child, 0)
    return rows, depths, skipped, groups


def _layer_row(label: str, node: TreeNode, result: Any, total: int) -> list[str]:
    names = [t.name for t in node.all_tensors()]
    ts = result.group(names, label, STATS_ONLY)
    if node.parameters == 0 and node.elements:
        params, share = f"{'state' if node.is_training_state else 'buffer'}, {human_count(node.elements)}", ""
    else:
        params, share = human_count(node.parameters), percent(node.parameters, total)
    if ts is None or ts.count == 0:
        return [label, params, share, "-", "-", "-", "-"]
    kurtosis = format_value(ts.kurtosis) if math.isfinite(ts.kurtosis) or ts.std != 0 else "-"
    return [label, params, share, format_value(ts.mean), format_value(ts.std), format_value(ts.abs_max), kurtosis]


def layer_table_blocks(checkpoint: Checkpoint, result: Any) -> list[Block]:
    rows, depths, skipped, groups = layer_rows(checkpoint, result)
    note = f"… {skipped:,} more rows not shown" if skipped else ""
    return [
        Heading("Layers"),
        Paragraph("The layer tree with repeated blocks folded: a row such as “layers.0-31 (x32)” stands for 32 "
                  "identical blocks, and the rows below it sum or merge the matching tensors of every block. "
                  "Statistics are exact over all the values a row covers.", style="note"),
        Table(LAYER_COLUMNS, rows, "lrrrrrr", [5.2, 1.3, 1.0, 1.2, 1.2, 1.2, 1.2], indents=depths, note=note,
              bold_rows=groups),
    ]


def tensor_list_blocks(checkpoint: Checkpoint, per_tensor: dict[str, TensorStats]) -> list[Block]:
    """The appendix: every tensor by its full name, in file order."""
    rows = []
    for t in checkpoint.tensors[:MAX_TENSOR_ROWS]:
        shape = "×".join(str(d) for d in t.shape) or "scalar"
        ts = per_tensor.get(t.name)
        if ts is None or ts.count == 0:
            stats = ["-", "-", "-"]
        else:
            stats = [format_value(ts.mean), format_value(ts.std), format_value(ts.abs_max)]
        rows.append([t.name, shape, t.dtype, f"{t.elements:,}", *stats])
    extra = len(checkpoint.tensors) - MAX_TENSOR_ROWS
    return [
        Heading("All tensors"),
        Paragraph(f"Every tensor in file order, {len(checkpoint.tensors):,} in all, with its full name as stored.",
                  style="note"),
        Table(["Tensor", "Shape", "Type", "Elements", "Mean", "Std", "Max |w|"], rows, "lllrrrr",
              [6, 1.4, 0.8, 1.3, 1.1, 1.1, 1.1], note=f"… {extra:,} more tensors not shown" if extra > 0 else ""),
    ]


# --------------------------------------------------------------------------- plots
def histogram(ts: TensorStats | None, title: str) -> Histogram:
    if ts is None or len(ts.hist_edges) == 0:
        return Histogram(title, [], [])
    return Histogram(title, [float(x) for x in ts.hist_edges], [int(c) for c in ts.hist_counts])


def log_histogram(ts: TensorStats | None, title: str) -> Histogram:
    if ts is None or len(ts.log_edges) == 0:
        return Histogram(title, [], [], xlabel="log10 |w|")
    return Histogram(title, [float(x) for x in ts.log_edges], [int(c) for c in ts.log_counts], xlabel="log10 |w|")


def role_groups(checkpoint: Checkpoint, result: Any) -> dict[str, list[str]]:
    """Analysed floating-point parameter tensors by role, largest role first."""
    from core.stats import is_float_summary

    groups: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for t in checkpoint.tensors:
        summary = result.summaries.get(t.name)
        if summary is None or not t.is_parameter or not is_float_summary(summary):
            continue
        groups.setdefault(t.role, []).append(t.name)
        sizes[t.role] = sizes.get(t.role, 0) + t.elements
    return {role: groups[role] for role in sorted(groups, key=lambda r: -sizes[r])}


def depth_profiles(checkpoint: Checkpoint, result: Any) -> dict[str, dict[str, list[float]]]:
    """Per line of core.depth (a role's tensor in every block: "q", "down", "norm · input_layernorm"), over
    the block index: std, max |w| and kurtosis. The same lines as the app's depth panel."""
    from core.depth import depth_profiles as block_lines

    lines = block_lines(checkpoint.tensors, dict(list(result.summaries.items())))
    out: dict[str, dict[str, list[float]]] = {}
    for key in ("std", "abs_max", "kurtosis"):
        for line in lines[key]:
            if len(line.points) < 2:
                continue
            entry = out.setdefault(line.label, {"layer": [float(p[0]) for p in line.points]})
            entry[key] = [p[1] for p in line.points]
    return out


def wide_range(series: list[Series], ratio: float = 8.0) -> bool:
    """A log axis only when the positive values span more than ``ratio``: otherwise it hides the detail."""
    values = [y for s in series for y in s.y if math.isfinite(y) and y > 0]
    return bool(values) and max(values) / min(values) > ratio


def plot_blocks(checkpoint: Checkpoint, result: Any) -> list[Block]:
    spec = HistSpec(bins=HIST_BINS, log_bins=HIST_BINS)
    model = result.model(spec)
    blocks: list[Block] = [
        Heading("Value distributions"),
        Paragraph("Histograms count how many values fall in each of "
                  f"{HIST_BINS} equal bins between the smallest and the largest value. The count axis is "
                  "logarithmic so that rare outlying values stay visible next to the bulk.", style="note"),
        PlotGrid([histogram(model, "Whole model: values"), log_histogram(model, "Whole model: magnitudes")]),
    ]
    groups = role_groups(checkpoint, result)
    if groups:
        plots: list[Histogram | LinePlot] = [histogram(result.group(names, role, spec), f"{role}")
                                             for role, names in groups.items()]
        blocks.append(PlotGrid(plots, columns=3 if len(plots) <= 9 else 4, title="By role"))
    profiles = depth_profiles(checkpoint, result)
    blocks.append(Heading("Depth profiles", level=1 if profiles else 2))
    if profiles:
        blocks.append(Paragraph("How each role's weights change from the first layer to the last: a smooth curve is "
                                "typical, a spike marks a layer that differs from its neighbours.", style="note"))
        lines = []
        for key, label in (("std", "standard deviation"), ("abs_max", "max |w|"), ("kurtosis", "kurtosis")):
            series = [Series(role, p["layer"], p[key]) for role, p in profiles.items()]
            lines.append(LinePlot(f"{label} by layer", series, ylabel=label, log_y=wide_range(series)))
        blocks.append(PlotGrid(lines, columns=1))
    else:
        blocks.append(Paragraph("This model has no numbered, repeated layers, so there is no depth profile.",
                                style="note"))
    return blocks


# --------------------------------------------------------------------------- findings and legend
def findings_blocks(found: Findings) -> list[Block]:
    blocks: list[Block] = [Heading("Findings")]
    problems = len(found.non_finite) + sum(1 for f in found.all_zero if f.severity == "warning") + len(found.few_values)
    blocks.append(Paragraph(
        f"{plural(found.analysed, 'tensor')} analysed. {len(found.non_finite):,} with NaN or Inf values, "
        f"{len(found.all_zero):,} all-zero, {len(found.sibling_outliers):,} unlike their siblings in other layers "
        f"({plural(found.sibling_groups, 'family', 'families')} of repeated tensors compared). "
        + ("Nothing here looks broken." if problems == 0 else "Some tensors need a look: see below.")))
    blocks.append(Heading("NaN and infinite values", level=2))
    blocks += _finding_list(found.non_finite, "No NaN or infinite values anywhere.")
    blocks.append(Heading("All-zero tensors", level=2))
    blocks += _finding_list(found.all_zero, "No tensor is entirely zero.")
    if found.few_values:
        blocks.append(Heading("Crushed onto a few values", level=2))
        blocks += _finding_list(found.few_values, "")
    blocks.append(Heading("Largest peak / sigma", level=2))
    blocks.append(Paragraph(PEAK_HELP, style="note"))
    if found.peak_ratio:
        blocks.append(Table(["Tensor", "Peak / σ", "Std", "Max |w|", "Kurtosis"],
                            [[r.tensor, f"{r.value:.1f}", format_value(r.std), format_value(r.abs_max),
                              format_value(r.kurtosis)] for r in found.peak_ratio],
                            "lrrrr", [6, 1.2, 1.2, 1.2, 1.2]))
    blocks.append(Heading("Largest kurtosis", level=2))
    blocks.append(Paragraph(KURTOSIS_HELP, style="note"))
    if found.kurtosis:
        blocks.append(Table(["Tensor", "Kurtosis", "Std", "Max |w|", "Values"],
                            [[r.tensor, format_value(r.value), format_value(r.std), format_value(r.abs_max),
                              f"{r.count:,}"] for r in found.kurtosis],
                            "lrrrr", [6, 1.2, 1.2, 1.2, 1.2]))
    blocks.append(Heading("Unlike their siblings", level=2))
    blocks.append(Paragraph(SIBLING_HELP, style="note"))
    if found.sibling_outliers:
        blocks.append(Table(["Tensor", "Measure", "Value", "Siblings' median", "z"],
                            [[f.tensor, f.measure, format_value(f.value), format_value(f.reference),
                              "∞" if math.isinf(f.z) else f"{f.z:+.1f}"] for f in found.sibling_outliers[:40]],
                            "llrrr", [6, 1.4, 1.2, 1.6, 0.8],
                            note=f"… {len(found.sibling_outliers) - 40:,} more" if len(found.sibling_outliers) > 40
                            else ""))
        blocks.append(Paragraph(SIBLING_MEANING, style="note"))
    elif found.sibling_groups:
        blocks.append(Paragraph("Every repeated tensor is in line with its siblings."))
    else:
        blocks.append(Paragraph("There are not enough repeated layers (at least 4) to compare."))
    return blocks


def _finding_list(items: list, empty: str) -> list[Block]:
    if not items:
        return [Paragraph(empty)]
    blocks: list[Block] = [Table(["Tensor", "What"], [[f.tensor, f.title] for f in items[:60]], "ll", [5, 3],
                                 note=f"… {len(items) - 60:,} more" if len(items) > 60 else "")]
    seen: set[str] = set()
    for f in items:
        if f.explanation not in seen:
            seen.add(f.explanation)
            blocks.append(Paragraph(f.explanation, style="note"))
    return blocks


LEGEND_TERMS = [
    ("Weights", KIND_HELP["weight"]),
    ("Biases", KIND_HELP["bias"]),
    ("Embeddings", KIND_HELP["embedding"]),
    ("Buffers", KIND_HELP["buffer"]),
    ("Training state", KIND_HELP["state"]),
    ("Parameters", "All learned numbers: weights, biases and embeddings. Buffers and training state are not "
                   "counted."),
    ("Roles", "Which part of the network uses a tensor: attention (q, k, v project the input into queries, keys "
              "and values; o mixes the heads back), MLP (up and gate widen, down narrows back), norm (per-feature "
              "scales), embedding, convolution, recurrent (the gates of LSTM and GRU layers), and head (turns the "
              "last hidden state into scores over the vocabulary or the classes)."),
    ("Mean and std", "The average value and the standard deviation, the typical distance of a value from the "
                     "average."),
    ("Max |w|", "The largest magnitude of any value, whatever its sign."),
    ("Kurtosis", "Tail weight: 3 for a Gaussian. Larger values mean more extreme outliers."),
    ("Memory", "Bytes the parameters take at each precision: fp32 4 bytes each, bf16 2, int8 1, int4 half a "
               "byte (quantisation formats add a little for their scales)."),
]


def legend_blocks() -> list[Block]:
    blocks: list[Block] = [Heading("What the words mean", level=2)]
    blocks += [Paragraph(f"{term}: {text}", style="term") for term, text in LEGEND_TERMS]
    return blocks
