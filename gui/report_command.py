"""Write a PDF report of a checkpoint: summary, layer table, value plots, findings. Runs with no display."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.commands.common import analyze_with_progress, drain_with_progress, fail, refuse_on_error, stage
from core.text import terminal_safe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a checkpoint file, a sharded index (*.index.json) or a model folder")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.pdf", help="where to write the PDF")
    parser.add_argument("--device", default="auto", help="where statistics run: auto (default), cpu, cuda, cuda:N, mps")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the statistics (and comparison) cache")
    parser.add_argument("--memory-compare", nargs="+", default=[], metavar="MODEL",
                        help="add a page comparing this model's memory with these (files or reference model names)")
    parser.add_argument("--spectra", action="store_true",
                        help="add the Spectra section (alpha of every weight matrix; takes longer on large models)")
    parser.add_argument("--compare", metavar="B",
                        help="add the comparison pages: what changed from this model (A) to model B")
    parser.add_argument("--rank", action="store_true",
                        help="with --compare: also the low-rank structure of each change (rank holding 90%%)")
    parser.add_argument("--base", metavar="BASE_MODEL",
                        help="for a LoRA adapter: its base model, to add each module's relative update ||dW||/||W|| "
                             "and its depth profile to the LoRA adapter section")
    parser.add_argument("--memory-context", default="8192", metavar="N",
                        help="tokens of context for the memory comparison's KV cache (default 8192)")


@refuse_on_error
def run(args: argparse.Namespace) -> int:
    from core.compute import validate_device
    from core.export import check_writable
    from core.formats import open_checkpoint

    check_writable(args.output)  # before a long analysis, not after
    validate_device(args.device)
    with stage(f"reading the metadata of {args.path!r}"), open_checkpoint(args.path) as checkpoint:
        compared = None
        if args.memory_compare:  # before the long analysis: a bad name or context is refused at once
            from core.memory_side_by_side import compare_for_report

            compared = compare_for_report(checkpoint, args.memory_compare, args.memory_context)
        diff = None
        if args.compare is not None:  # before the long statistics: a bad B is refused at once
            with stage(f"comparing {args.path!r} with {args.compare!r}"):
                diff = _compare_with_progress(checkpoint, args.compare, args.rank, args.device, not args.no_cache)
        elif args.rank:
            return fail("--rank needs --compare B: it measures the low-rank structure of B-A")
        lora = _lora_with_base(checkpoint, args.base)  # before the long statistics: a bad base is refused at once
        with stage(f"computing the statistics of {args.path!r}"):
            result = analyze_with_progress(checkpoint, device=args.device, use_cache=not args.no_cache)
        spectra = None
        if args.spectra:
            with stage(f"computing the spectra of {args.path!r}"):
                from core.commands.spectra import _run_with_progress
                from core.spectra import default_matrices

                spectra = _run_with_progress(checkpoint, default_matrices(checkpoint), args.device,
                                             not args.no_cache)
        with stage(f"writing the report of {args.path!r} to {args.output!r}"):
            from core.report import build_report
            from core.report_sections import ReportSections, add_sections
            from gui.pdf import ensure_app, write_report

            ensure_app()
            sections = ReportSections(lora=lora, spectra=spectra, diff=diff, memory=compared)
            report = add_sections(build_report(checkpoint, result), checkpoint, sections)
            pages = write_report(checkpoint, result, args.output, report=report)
    sys.stdout.write(f"wrote {terminal_safe(args.output)} ({pages} pages)\n")
    return 0


def _lora_with_base(checkpoint: Any, base: str | None) -> dict[str, Any] | None:
    """The adapter's LoRA figures (with ``base``: against the base model), as `info --json` gives them; None for
    a checkpoint that is not an adapter (and --base refused for it)."""
    from core.commands.info import lora_summary

    if base is None and checkpoint.lora is None:
        return None
    with stage(f"measuring the LoRA adapter {checkpoint.path!r}"):
        return lora_summary(checkpoint, base)


def _compare_with_progress(checkpoint: Any, other: str, rank: bool, device: str, use_cache: bool) -> Any:
    """The comparison of the open model (A) with ``other`` (B), with progress on a terminal; cached like
    ``main.py diff`` (a second report of the same pair reads no tensor data)."""
    from core.diff import compare
    from core.diff_cache import DiffCache

    cache = DiffCache.default() if use_cache else None
    return drain_with_progress(compare(checkpoint, other, rank=rank, device=device, cache=cache))
