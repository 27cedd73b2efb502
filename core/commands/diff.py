"""Compare two models tensor by tensor: how far each aligned tensor moved, exact and streamed.

Tensors pair by name, and across llama.cpp's GGUF names (with its q/k row permutation undone), so a GGUF
file compares with the model it was converted from. Figures are over finite values in A's coordinates;
undefined figures are null in --json (snr_db is given only for pairs with a quantised side). --json
lists every compared tensor under "tensors", the --group role|layer entries under "groups" (empty for
tensor and model) and the whole comparison under "model".

--rank adds, per 2-D pair, the top 16 singular values of B - A (largest first) and rank90 (the fewest that
hold 90% of its squared Frobenius norm), from a float64 Gram matrix over the smaller side built in the same
pass (core.diff_rank); non-matrices and Gram matrices above the budget get null and a "rank_note". Results
are cached like statistics, keyed by both files (core.diff_cache); --no-cache neither reads nor writes it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, TextIO

from core.commands.common import drain_with_progress, fail, refuse_on_error, stage
from core.diff import DiffResult, DiffSums, compare, metrics
from core.numbers import format_value, human_bytes, strict_json
from core.text import terminal_safe

GROUPS = ("tensor", "role", "layer", "model")
TENSOR_KEYS = ("rel_change", "cosine", "max_abs_diff", "max_abs_diff_at", "identical_fraction", "snr_db", "mean_a",
               "mean_b", "std_a", "std_b", "mean_diff", "std_diff", "count", "nonfinite", "top_singular_values",
               "rank90", "rank_note")
LISTED = 40  # names shown per list in the text form (--json lists them all)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="model A (the reference): a checkpoint file, a sharded index or a model folder")
    parser.add_argument("b", help="model B, compared against A")
    parser.add_argument("--tensor", action="append", default=[], metavar="NAME",
                        help="compare only this tensor (its name in A or in B; repeatable)")
    parser.add_argument("--match", metavar="GLOB", help="compare only tensors whose name (in A or B) matches")
    parser.add_argument("--group", choices=GROUPS, default="tensor",
                        help="one row per tensor (default), per role, per layer index, or one for the model")
    parser.add_argument("--rank", action="store_true",
                        help="also the top singular values of B - A and rank90 (2-D tensors; Gram matrix per pair)")
    parser.add_argument("--device", default="auto",
                        help="where --rank's Gram arithmetic runs: auto (default: a GPU if present), cpu, cuda, "
                             "cuda:N or mps")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the comparison cache")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


@refuse_on_error
def run(args: argparse.Namespace) -> int:
    with stage(f"comparing {args.a!r} with {args.b!r}"):
        result = _compare_with_progress(args)
    with stage(f"writing the comparison of {args.a!r} with {args.b!r}"):
        if not result.tensors and not (result.only_in_a or result.only_in_b or result.mismatched):
            return fail("no tensors to compare: neither model holds any tensor")
        if args.json:
            write_json(sys.stdout, result, args.group)
        else:
            sys.stdout.write(diff_text(result, args.group))
    return 0


def _compare_with_progress(args: argparse.Namespace) -> DiffResult:
    from core.compute import validate_device
    from core.diff_cache import DiffCache

    validate_device(args.device)
    cache = None if args.no_cache else DiffCache.default()
    return drain_with_progress(compare(args.a, args.b, args.tensor, args.match, rank=args.rank, device=args.device,
                                       cache=cache))


def _json_figures(s: DiffSums) -> dict[str, Any]:
    """metrics() for JSON: undefined (NaN) figures become null, infinities the strings JSON readers accept."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else strict_json(v)) for k, v in metrics(s).items()}


def write_json(out: TextIO, result: DiffResult, group: str) -> None:
    tensors = []
    for td in list(result.tensors.values()):
        figures = _json_figures(td.sums)
        figures.pop("max_abs_diff_tensor")
        tensors.append({"name": td.a.name, "b_name": td.b.name, "shape": list(td.a.shape), "role": td.a.role,
                        "a_dtype": td.a.dtype, "b_dtype": td.b.dtype, **figures,
                        "top_singular_values": td.top_singular_values, "rank90": td.rank90,
                        "rank_note": td.rank_note})
    groups = [] if group in ("tensor", "model") else [
        {"group": label, **_json_figures(sums)} for label, sums in result.group(group)]
    model = result.model()
    document = {"a": result.a, "b": result.b, "only_in_a": result.only_in_a, "only_in_b": result.only_in_b,
                "mismatched": result.mismatched, "tensors": tensors, "groups": groups,
                "model": None if model is None else _json_figures(model),
                "seconds": result.seconds, "bytes_read": result.bytes_read, "device": result.device,
                "rank": result.rank, "cached": result.cached, "notes": result.notes}
    out.write(json.dumps(document, allow_nan=False) + "\n")


_COLUMNS = [("name", 48), ("dtypes", 13), ("rel.change", 10), ("cosine", 10), ("max |B-A|", 10),
            ("at", 14), ("identical", 9), ("SNR dB", 7)]


def diff_text(result: DiffResult, group: str) -> str:
    """The comparison as a table, with the unpaired and mismatched tensors listed after it."""
    lines = [f"A: {terminal_safe(result.a)}", f"B: {terminal_safe(result.b)}",
             f"{len(result.tensors):,} tensor pairs compared in {result.seconds:.2f} s, "
             + ("from the cache" if result.cached else f"read {human_bytes(result.bytes_read)}")
             + f", device {result.device}", ""]
    columns = _COLUMNS + (_RANK_COLUMNS if result.rank and group == "tensor" else [])
    lines.append("  ".join(f"{t:<{w}}" if i < 2 else f"{t:>{w}}" for i, (t, w) in enumerate(columns)).rstrip())
    if group == "tensor":
        for td in list(result.tensors.values()):
            row = _row(td.a.name, f"{td.a.dtype}>{td.b.dtype}" if td.a.dtype != td.b.dtype else td.a.dtype,
                       td.sums)
            lines.append((row.ljust(_TABLE_WIDTH) + _rank_cells(td)).rstrip() if result.rank else row)
    elif group != "model":
        for label, sums in result.group(group):
            lines.append(_row(label, "", sums, with_place=False))
    model = result.model()
    if model is not None:
        if group != "model":
            lines.append("")
        lines.append(_row("model", "", model, with_place=False))
        if model.max_abs == 0:
            lines.append("no value differs")
        elif model.max_abs > 0:
            lines.append(terminal_safe(f"largest |B-A| in {model.max_tensor} at {list(model.max_at)}", 2000))
    lines += _listing("only in A", result.only_in_a) + _listing("only in B", result.only_in_b)
    lines += [""] + [terminal_safe(n, 2000) for n in result.notes] if result.notes else []
    return "\n".join(lines + _mismatched_lines(result.mismatched)) + "\n"


def _mismatched_lines(mismatched: list[dict[str, Any]]) -> list[str]:
    """Pairs not compared, one line each with the reason; pairs compared across dtypes, counted per dtype pair."""
    refused = [m for m in mismatched if not m["compared"]]
    across: dict[str, int] = {}
    for m in mismatched:
        if m["compared"]:
            key = f"{m['a_dtype']} in A, {m['b_dtype']} in B"
            across[key] = across.get(key, 0) + 1
    out: list[str] = []
    if across:
        out += ["", "compared across dtypes (as decoded values): "
                + "; ".join(f"{n:,} pair{'s' if n != 1 else ''} {key}" for key, n in sorted(across.items()))]
    if refused:
        out += ["", f"not compared: {len(refused):,}"]
        for m in refused[:LISTED]:
            b_name = "" if m["b"] == m["a"] else f" <-> {m['b']}"
            out.append(terminal_safe(f"  {m['a']}{b_name}: {m['reason']}", 2000))
        if len(refused) > LISTED:
            out.append(f"  ... and {len(refused) - LISTED:,} more (`--json` lists them all)")
    return out


def _listing(title: str, names: list[str]) -> list[str]:
    if not names:
        return []
    out = ["", f"{title}: {len(names):,}"] + [terminal_safe(f"  {n}", 2000) for n in names[:LISTED]]
    if len(names) > LISTED:
        out.append(f"  ... and {len(names) - LISTED:,} more (`--json` lists them all)")
    return out


def _row(label: str, dtype_text: str, sums: DiffSums, with_place: bool = True) -> str:
    """One table row; ``with_place``: show where the largest difference is (a group's place needs its tensor,
    printed below the table for the model and given in --json)."""
    m = metrics(sums)
    name = terminal_safe(label[-200:], 2000)
    name = name if len(name) <= 48 else "…" + name[-47:]
    shown = with_place and m["max_abs_diff_at"] is not None and m["max_abs_diff"] > 0
    at = ",".join(map(str, m["max_abs_diff_at"])) if shown else ""
    identical = m["identical_fraction"]
    cells = [name, terminal_safe(dtype_text, 13)[:13], format_value(m["rel_change"]), _cosine(m["cosine"]),
             format_value(m["max_abs_diff"]), at[-14:],
             "" if math.isnan(identical) else f"{100 * identical:.2f}%",
             "" if math.isnan(m["snr_db"]) else f"{m['snr_db']:.1f}"]
    return "  ".join(f"{c:<{w}}" if i < 2 else f"{c:>{w}}"
                     for i, (c, (_, w)) in enumerate(zip(cells, _COLUMNS, strict=True))).rstrip()


_RANK_COLUMNS = [("rank90", 6), ("top singular values", 30)]
_TABLE_WIDTH = sum(w for _, w in _COLUMNS) + 2 * (len(_COLUMNS) - 1)


def _rank_cells(td: Any) -> str:
    """rank90 and the top 3 singular values of a tensor row (blank where not a 2-D matrix, see --json)."""
    if td.rank90 is None:
        return ""
    values = " ".join(format_value(v) for v in td.top_singular_values[:3])
    return "  " + f"{td.rank90:>6}" + "  " + f"{values:>30}"


def _cosine(x: float) -> str:
    """Cosines near 1 are what matter: show enough digits to tell 0.999999 from 1."""
    if math.isnan(x):
        return "NaN"
    return "1" if x == 1.0 else f"{x:.7f}"
