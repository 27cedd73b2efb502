"""WeightWatcher's spectral metrics of every weight matrix (alpha, norms, ranks), with a plain verdict per layer."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core.commands.common import TerminalProgress, refuse_on_error, stage
from core.commands.stats import choose_tensors
from core.numbers import format_value
from core.text import terminal_safe

_COLUMNS = [("name", 44), ("shape", 16), ("evals", 6), ("alpha", 7), ("xmin", 9), ("D", 6), ("spikes", 6),
            ("λmax", 9), ("log_norm", 8), ("stable_rank", 11), ("rank", 6), ("entropy", 7)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a checkpoint file, a sharded index (*.index.json) or a model folder")
    parser.add_argument("--tensor", action="append", default=[], metavar="NAME",
                        help="analyse only this tensor (repeatable)")
    parser.add_argument("--match", metavar="GLOB", help="analyse only tensors whose name matches this glob")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the spectra cache")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


@refuse_on_error
def run(args: argparse.Namespace) -> int:
    from core.compute import validate_device
    from core.formats import open_checkpoint
    from core.spectra import default_matrices

    validate_device(args.device)
    with stage(f"reading the metadata of {args.path!r}"), open_checkpoint(args.path) as checkpoint:
        if args.tensor or args.match is not None:
            selected = choose_tensors(checkpoint, args.tensor, args.match)
        else:
            selected = default_matrices(checkpoint)
        with stage(f"computing the spectra of {args.path!r}"):
            result = _run_with_progress(checkpoint, selected, args.device, not args.no_cache)
        if args.json:
            sys.stdout.write(json.dumps(spectra_json(result), allow_nan=False) + "\n")
        else:
            sys.stdout.write(spectra_text(checkpoint.path, result))
    return 0


def _run_with_progress(checkpoint: Any, selected: list, device: str, use_cache: bool) -> Any:
    from core.spectra import analyze_spectra

    progress = TerminalProgress() if sys.stderr.isatty() else None
    gen = analyze_spectra(checkpoint, selected, device=device, use_cache=use_cache)
    try:
        while True:
            item = next(gen)
            if progress is not None:
                pct = 100.0 * item.fraction
                line = f"{pct:5.1f}%  {terminal_safe(item.tensor, 120)}  {item.message}"
                _show(progress, line)
    except StopIteration as stop:
        return stop.value
    finally:
        if progress is not None:
            progress.clear()


def _show(progress: Any, text: str) -> None:
    text = text[: progress.columns - 1]
    sys.stderr.write("\r" + text.ljust(progress.width))
    sys.stderr.flush()
    progress.width = len(text)


def spectra_json(result: Any) -> dict[str, Any]:
    return {"device": result.device, "seconds": result.seconds,
            "matrices": [m.to_json() for m in result.matrices.values()], "summary": result.summary()}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return format_value(value)


def spectra_text(path: str, result: Any) -> str:
    lines = [terminal_safe(path), f"device {result.device}   {result.seconds:.2f} s", ""]
    header = "  ".join(f"{title:<{width}}" if i < 2 else f"{title:>{width}}"
                       for i, (title, width) in enumerate(_COLUMNS))
    lines.append(header + "  verdict")
    for m in result.matrices.values():
        name = terminal_safe(m.name, 200)
        shape = "×".join(str(d) for d in m.shape)
        if m.metrics is None:
            lines.append(f"{name:<44}  {shape:<16}  not analysed: {terminal_safe(m.reason, 300)}")
            continue
        k = m.metrics
        cells = [k.n_evals, k.alpha, k.xmin, k.D, k.num_pl_spikes, k.lambda_max, k.log_norm, k.stable_rank,
                 k.matrix_rank, k.entropy]
        row = "  ".join(f"{_cell(v):>{w}}" for v, (_, w) in zip(cells, _COLUMNS[2:], strict=True))
        flag = " (poor power-law fit)" if k.fit_quality == "poor" else ""
        lines.append(f"{name:<44}  {shape:<16}  {row}  {k.verdict}{flag}")
    summary = result.summary()
    lines.append("")
    averages = "   ".join(f"{key} {_cell(summary[key])}" for key in
                          ("alpha", "alpha_weighted", "log_norm", "log_alpha_norm", "log_spectral_norm", "stable_rank"))
    lines.append(f"model averages ({summary['matrices']} matrices): {averages}")
    if summary["verdicts"]:
        lines.append("verdicts: " + ", ".join(f"{n} {v}" for v, n in sorted(summary["verdicts"].items())))
    if summary["not_analysed"]:
        lines.append(f"not analysed: {summary['not_analysed']} tensor(s)")
    lines.append("alpha: how heavy-tailed the layer's eigenvalue spectrum is (WeightWatcher): below 2 over-trained, "
                 "2 to 6 well trained, above 6 under-trained, above 8 the fit is unreliable.")
    return "\n".join(lines) + "\n"
