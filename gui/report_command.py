"""Write a PDF report of a checkpoint: summary, layer table, value plots, findings. Runs with no display."""

from __future__ import annotations

import argparse
import sys

from core.commands.common import refuse_on_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a checkpoint file, a sharded index (*.index.json) or a model folder")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.pdf", help="where to write the PDF")
    parser.add_argument("--device", default="auto", help="where statistics run: auto (default), cpu, cuda, cuda:N, mps")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the statistics cache")


@refuse_on_error
def run(args: argparse.Namespace) -> int:
    from core.commands.stats import _Progress  # the stats command's one-line terminal progress
    from core.compute import validate_device
    from core.export import check_writable
    from core.formats import open_checkpoint
    from core.stats import analyze

    check_writable(args.output)  # before a long analysis, not after
    validate_device(args.device)
    with open_checkpoint(args.path) as checkpoint:
        progress = _Progress() if sys.stderr.isatty() else None
        gen = analyze(checkpoint, device=args.device, use_cache=not args.no_cache)
        try:
            while True:
                item = next(gen)
                if progress is not None:
                    progress.show(item.bytes_done, item.bytes_total, item.tensor)
        except StopIteration as stop:
            result = stop.value
        finally:
            if progress is not None:
                progress.clear()
        from gui.pdf import ensure_app, write_report

        ensure_app()
        pages = write_report(checkpoint, result, args.output)
    sys.stdout.write(f"wrote {args.output} ({pages} pages)\n")
    return 0
