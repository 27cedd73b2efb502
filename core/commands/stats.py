"""Exact value statistics per tensor, role, layer or for the whole model, in one streaming pass."""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from core.checkpoint import Checkpoint, TensorInfo
from core.commands.common import analyze_with_progress, fail, refuse_on_error, stage
from core.errors import CheckpointError
from core.numbers import format_value, human_bytes, human_count
from core.stats_summary import HistSpec, TensorStats
from core.taxonomy import group_key, group_order
from core.text import terminal_safe

GROUPS = ("tensor", "role", "layer", "model")
IMPL_CHOICES = ("auto", "native", "numpy", "torch")  # "auto" and core.compute.IMPLS (not imported to build the parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a checkpoint file, a sharded index (*.index.json) or a model folder")
    parser.add_argument("--tensor", action="append", default=[], metavar="NAME",
                        help="analyse only this tensor (repeatable)")
    parser.add_argument("--match", metavar="GLOB", help="analyse only tensors whose name matches this glob")
    parser.add_argument("--group", choices=GROUPS, default="tensor",
                        help="one entry per tensor (default), per role, per layer index, or one for the model")
    parser.add_argument("--bins", type=int, default=256, help="histogram bins (default 256)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--impl", choices=IMPL_CHOICES, default="auto",
                        help="how the CPU counts: auto (default: compiled loops where they can be built, else numpy),"
                             " native, numpy or torch; every choice gives the same figures")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the statistics cache")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


@refuse_on_error
def run(args: argparse.Namespace) -> int:
    if args.bins < 1 or args.bins > 1_000_000:
        return fail(f"--bins must be between 1 and 1000000 (got {args.bins})")
    from core.compute import validate_device
    from core.formats import open_checkpoint
    validate_device(args.device)
    with stage(f"reading the metadata of {args.path!r}"), open_checkpoint(args.path) as checkpoint:
        if checkpoint.format == "config":
            from core.stats import NO_VALUES

            return fail(f"{args.path!r} is {NO_VALUES}")
        selected = choose_tensors(checkpoint, args.tensor, args.match)
        with stage(f"computing the statistics of {args.path!r}"):
            result = analyze_with_progress(checkpoint, selected, device=args.device, use_cache=not args.no_cache,
                                           impl=args.impl)
        from core.findings import findings_json

        def find(stats: dict[str, TensorStats] | None = None) -> list[dict[str, Any]]:
            with stage(f"looking for problems in {args.path!r}"):
                return findings_json(checkpoint, result, stats=stats)

        with stage(f"summarising the statistics of {args.path!r}"):
            spec = HistSpec(bins=args.bins)
            model = result.model(spec)
            if args.json:
                write_stats_json(sys.stdout, result, selected, args.group, spec, model, find)
            else:
                findings = find()
                entries = group_stats(result, selected, args.group, spec)
                sys.stdout.write(stats_text(checkpoint, result, entries, model, args.group))
                sys.stdout.write(findings_text(findings))
    return 0


FINDINGS_SHOWN = 40
WRITE_BATCH = 256  # tensors' JSON texts per write


def findings_text(findings: list[dict[str, Any]]) -> str:
    """The problems found, one line each (most severe first), for the text form."""
    problems = sum(f["severity"] in ("error", "warning") for f in findings)
    if not findings:
        return "\nFindings: no problems found\n"
    lines = ["", f"Findings: {problems:,} problem{'s' if problems != 1 else ''}, "
                 f"{len(findings) - problems:,} note{'s' if len(findings) - problems != 1 else ''}"]
    for f in findings[:FINDINGS_SHOWN]:
        at = f" at {tuple(f['at'][0])}" if f["at"] else ""
        lines.append(terminal_safe(f"  {f['severity']:<7} {f['tensor'][-80:]}: {f['message']}{at}", 400))
    if len(findings) > FINDINGS_SHOWN:
        lines.append(f"  ... and {len(findings) - FINDINGS_SHOWN:,} more (`--json` lists them all)")
    return "\n".join(lines) + "\n"


def write_stats_json(out: TextIO, result: Any, tensors: list[TensorInfo], group: str, spec: HistSpec,
                     model: TensorStats | None,
                     find: Callable[[dict[str, TensorStats] | None], list[dict[str, Any]]] | None = None) -> None:
    """The `stats --json` object, written entry by entry: a million tensors' entries are never all held at once
    (the output of a million empty tensors is 500 MB; holding it as one string took gigabytes). ``find`` gives
    the "findings"; per tensor it is handed the statistics just written (without their histograms), so no
    tensor is derived twice."""
    from core.stats import stats_to_json

    head = json.dumps({"device": result.device, "seconds": result.seconds, "bytes_read": result.bytes_read})
    out.write(head[:-1] + ', "tensors": [')
    derived: dict[str, TensorStats] | None = None
    if group == "tensor":
        derived = {}
        batches = result.json_text_batches([t.name for t in tensors], spec, derived, WRITE_BATCH)
    else:
        batches = ([json.dumps(stats_to_json(ts), allow_nan=False)] for ts in group_stats(result, tensors, group,
                                                                                            spec))
    separator = ""
    for batch in batches:  # joined in batches: a million writes of 500 bytes cost more than the text itself
        if batch:
            out.write(separator + ", ".join(batch))
            separator = ", "
    findings = None if find is None else find(derived)
    tail = {"model": None if model is None else stats_to_json(model),
            **({"skipped": result.skipped} if result.skipped else {}),
            **({"findings": findings} if findings is not None else {})}
    out.write("], " + json.dumps(tail, allow_nan=False)[1:] + "\n")


def choose_tensors(checkpoint: Checkpoint, names: list[str], pattern: str | None) -> list[TensorInfo]:
    """--tensor names (each must exist) and --match glob; neither means every tensor."""
    if not names and pattern is None and checkpoint.unique_names:
        return checkpoint.tensors  # analyze recognises the very list (no million-key lookup)
    by_name = {t.name: t for t in checkpoint.tensors} if names else {}
    chosen: list[TensorInfo] = []
    for name in names:
        if name not in by_name:
            raise CheckpointError(f"no tensor named {name[:200]!r} in this checkpoint")
        chosen.append(by_name[name])
    if pattern is not None:
        matched = [t for t in checkpoint.tensors if fnmatch.fnmatchcase(t.name, pattern)]
        if not matched:
            raise CheckpointError(f"no tensor name matches {pattern[:200]!r}")
        chosen = [t for t in chosen if fnmatch.fnmatchcase(t.name, pattern)] if names else matched
    if not names and pattern is None:
        if len({t.name for t in checkpoint.tensors}) == len(checkpoint.tensors):
            return checkpoint.tensors  # the usual case; analyze recognises the very list (no million-key lookup)
        chosen = list(checkpoint.tensors)
    unique = {t.name: t for t in chosen}
    return list(unique.values())


def group_stats(result: Any, tensors: list[TensorInfo], group: str, spec: HistSpec) -> Iterable[TensorStats]:
    """One TensorStats per tensor (made as they are consumed), role or layer (exact merges), or a single one
    for the model."""
    if group == "tensor":
        return (result.stats(t.name, spec) for t in tensors if t.name in result.summaries)
    if group == "model":
        model = result.model(spec)
        return [] if model is None else [model]
    buckets: dict[str, list[str]] = {}
    for t in tensors:
        buckets.setdefault(group_key(t, group), []).append(t.name)
    keys = list(buckets)
    if group == "layer":
        keys.sort(key=group_order)
    else:
        keys.sort()
    out = []
    for key in keys:
        ts = result.group(buckets[key], key, spec)
        if ts is not None:
            out.append(ts)
    return out


_COLUMNS = [("name", 44), ("dtype", 9), ("count", 9), ("mean", 11), ("std", 10), ("min", 11), ("max", 11),
            ("p1", 11), ("p50", 11), ("p99", 11), ("kurt", 8), (">6σ", 6), ("zeros", 7), ("nan/inf", 8)]


def stats_text(checkpoint: Checkpoint, result: Any, entries: Iterable[TensorStats], model: TensorStats | None,
               group: str) -> str:
    lines = [terminal_safe(checkpoint.path),
             f"device {result.device}   {result.seconds:.2f} s   read {human_bytes(result.bytes_read)}"
             + ("   (from cache)" if result.bytes_read == 0 and result.summaries else ""), ""]
    header = "  ".join(f"{title:<{width}}" if i < 2 else f"{title:>{width}}"
                       for i, (title, width) in enumerate(_COLUMNS))
    lines.append(header.rstrip())
    quant: set[str] = set()
    estimated = model is not None and not model.exact
    for ts in entries:  # one pass: a million tensors' statistics are never all held at once
        lines.append(_row(ts))
        if ts.quant_type:
            quant.add(f"{ts.quant_type} {ts.bits_per_weight:g} bits/weight")
        estimated = estimated or not ts.exact
    if model is not None and group != "model":
        lines.append("")
        lines.append(_row(model))
    if quant:
        lines.append("")
        lines.append("quantised tensors are dequantised and treated as F32: " + ", ".join(sorted(quant)))
    if result.skipped:
        reasons = sorted(set(result.skipped.values()))
        lines.append("")
        lines.append(terminal_safe(f"not analysed: {len(result.skipped)} tensor(s) ({'; '.join(reasons)})", 2000))
    if estimated:
        lines.append("* beyond-6σ count estimated from bf16-resolution bins (many outliers)")
    return "\n".join(lines) + "\n"


def _row(ts: TensorStats) -> str:
    name = _shorten(terminal_safe(ts.name[-200:], 2000), 44)  # the end of a long name tells tensors apart
    if ts.count == 0:  # every empty tensor of a dtype reads alike past its name: a header may list a million
        return f"{name:<44}  {_empty_row_tail(ts.dtype)}".rstrip()
    return _cells_row(ts, name)


@functools.cache
def _empty_row_tail(dtype: str) -> str:
    from core.stats import _derived_empty

    return _cells_row(_derived_empty(dtype, HistSpec(bins=1, log_bins=1)), "")[46:]


def _cells_row(ts: TensorStats, name: str) -> str:
    special = ts.nan + ts.pos_inf + ts.neg_inf
    cells = [name, ts.dtype[:9], human_count(ts.count), format_value(ts.mean), format_value(ts.std),
             format_value(ts.min), format_value(ts.max), format_value(ts.percentiles["1"]),
             format_value(ts.percentiles["50"]), format_value(ts.percentiles["99"]), format_value(ts.kurtosis),
             f"{ts.beyond_6_sigma}{'' if ts.exact else '*'}", human_count(ts.zeros), human_count(special)]
    return "  ".join(f"{c:<{w}}" if i < 2 else f"{c:>{w}}" for i, (c, (_, w)) in enumerate(zip(cells, _COLUMNS,
                                                                                               strict=True))).rstrip()


def _shorten(name: str, width: int) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]
