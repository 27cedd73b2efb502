"""`main.py memory`: does a model fit on a GPU, what takes the memory, and several models side by side.

Every choice arrives as text and is checked here or by the planner, so a bad value is one `error:` line and
exit status 2 (argparse's own usage errors would print two lines)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from typing import Any

from core.checkpoint import Checkpoint
from core.commands.common import fail, refuse_on_error, stage
from core.gpus import GIB, find_gpu
from core.memory_plan import COMPARE_PRECISIONS, MemoryPlan, compare, plan, single_gpu_fits
from core.memory_words import binary_size, decimal_size, explain
from core.numbers import count_with_exact
from core.planner_errors import PlannerInputError
from core.text import terminal_safe

MAX_GPU_GIB = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="a checkpoint, model folder, config.json or reference model name; several compare")
    parser.add_argument("--gpu", help='a GPU from the catalog, e.g. "RTX 4090 24GB", "H100 80GB", "Apple 64GB"')
    parser.add_argument("--gpu-memory", metavar="GIB", help="a GPU's memory in GiB instead of --gpu")
    parser.add_argument("--gpus", default="1", metavar="N", help="number of GPUs sharing the model (default 1)")
    parser.add_argument("--mode", default="inference", help="inference (default), lora or full")
    parser.add_argument("--optimizer", default="adam", help="adam (default) or adam8bit, for lora and full")
    parser.add_argument("--weights", default="stored",
                        help="stored (default), fp32, bf16, fp16, fp8, int8, int4, or a GGUF type: Q8_0, Q4_K_M ...")
    parser.add_argument("--kv", default="bf16", help="KV cache type: bf16 (default), fp16, fp8, fp32, q8_0, q4_0")
    parser.add_argument("--context", metavar="N", help="tokens of context (default: the model's context length)")
    parser.add_argument("--batch", default="1", metavar="N", help="sequences at once (default 1)")
    parser.add_argument("--explain", action="store_true", help="add each figure's formula and a plain account")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


@refuse_on_error
def run(args: argparse.Namespace) -> int:
    try:
        choices = _choices(args)
    except PlannerInputError as exc:
        return fail(str(exc))
    from core.formats import open_checkpoint

    with contextlib.ExitStack() as stack:
        checkpoints: list[Checkpoint] = []
        for model in args.models:
            with stage(f"reading the metadata of {model!r}"):
                checkpoints.append(stack.enter_context(open_checkpoint(model)))
        try:
            with stage("planning memory"):
                text = _single(args, checkpoints[0], choices) if len(checkpoints) == 1 \
                    else _side_by_side(args, checkpoints, choices)
        except PlannerInputError as exc:
            return fail(str(exc))
    sys.stdout.write(text)
    return 0


def _choices(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's text turned into plan() arguments; a bad value raises PlannerInputError."""
    if args.gpu is not None and args.gpu_memory is not None:
        raise PlannerInputError("give either --gpu or --gpu-memory, not both")
    gpu_name, gpu_bytes = None, None
    if args.gpu is not None:
        gpu = find_gpu(args.gpu)
        gpu_name, gpu_bytes = gpu.name, gpu.memory_bytes
    elif args.gpu_memory is not None:
        gib = _number(args.gpu_memory, "--gpu-memory")
        if not 0 < gib <= MAX_GPU_GIB:
            raise PlannerInputError(f"--gpu-memory must be a positive number of GiB, not {args.gpu_memory[:40]!r}")
        gpu_bytes = round(gib * GIB)
        gpu_name = f"{gib:g} GiB GPU"
    return {
        "gpu_name": gpu_name, "gpu_memory_bytes": gpu_bytes, "gpus": _whole(args.gpus, "--gpus"),
        "mode": args.mode.strip().lower(), "optimizer": args.optimizer.strip().lower(), "weights": args.weights,
        "kv": args.kv, "context": None if args.context is None else _whole(args.context, "--context"),
        "batch": _whole(args.batch, "--batch"),
    }


def _whole(text: str, option: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise PlannerInputError(f"{option} must be a whole number, not {text[:40]!r}") from None
    if value < 1:
        raise PlannerInputError(f"{option} must be at least 1, not {value:,}")
    return value


def _number(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PlannerInputError(f"{option} must be a number, not {text[:40]!r}") from None
    if not math.isfinite(value):
        raise PlannerInputError(f"{option} must be a finite number, not {text[:40]!r}")
    return value


def _plan_kwargs(choices: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in choices.items() if k != "gpu_name"}


def _single(args: argparse.Namespace, checkpoint: Checkpoint, choices: dict[str, Any]) -> str:
    result = plan(checkpoint, name=args.models[0], **_plan_kwargs(choices))
    if args.json:
        return json.dumps(result.to_json(), indent=1) + "\n"
    return plan_text(result, choices["gpu_name"], explain_items=args.explain)


def _side_by_side(args: argparse.Namespace, checkpoints: list[Checkpoint], choices: dict[str, Any]) -> str:
    rows = compare(checkpoints, context=choices["context"], batch=choices["batch"], kv=choices["kv"],
                   names=args.models)
    plans = [plan(c, name=n, **_plan_kwargs(choices)) for c, n in zip(checkpoints, args.models, strict=True)]
    if args.json:
        return json.dumps([{**p.to_json(), "compare": row} for p, row in zip(plans, rows, strict=True)],
                          indent=1) + "\n"
    text = compare_text(rows, plans, choices["gpu_name"])
    if args.explain:
        for p in plans:
            text += f"\n{terminal_safe(p.model)}\n" + explain(p, choices["gpu_name"])
    return text


def _size_cells(n: int) -> str:
    return f"{n:>19,}  {n / 1e9:>10.2f}  {n / GIB:>10.2f}"


def plan_text(result: MemoryPlan, gpu_name: str | None, explain_items: bool = False) -> str:
    """The readable plan: the workload, each item in bytes, GB and GiB, the verdict."""
    lines = [f"Model        {terminal_safe(result.model)}",
             f"Parameters   {count_with_exact(result.parameters)}"]
    if result.active_parameters != result.parameters:
        lines.append(f"Active       {count_with_exact(result.active_parameters)} per token")
    workload = result.mode if result.mode == "inference" else f"{result.mode} fine-tuning, {result.optimizer}"
    lines.append(f"Workload     {workload}; weights {result.weights}, KV cache {result.kv}, context "
                 f"{result.context:,}, batch {result.batch}")
    if result.gpu_bytes is not None:
        lines.append(f"GPU          {result.gpus} x {terminal_safe(gpu_name or '')} "
                     f"({decimal_size(result.gpu_bytes)} = {binary_size(result.gpu_bytes)} each)")
    lines += ["", f"  {'':<18}{'bytes':>19}  {'GB':>10}  {'GiB':>10}"]
    for item in result.items:
        label = "" if item.exact else "  estimate"
        lines.append(f"  {item.name:<18}{_size_cells(item.bytes)}{label}")
        if explain_items:
            lines.append(f"      = {item.formula}")
    lines.append(f"  {'total':<18}{_size_cells(result.total_bytes)}")
    lines.append("")
    if result.capacity_bytes is not None:
        verdict = "yes" if result.fits else "no"
        holds = f"{result.gpus} GPUs hold" if result.gpus > 1 else "1 GPU holds"
        lines.append(f"Fits         {verdict}: needs {decimal_size(result.total_bytes)}, {holds} "
                     f"{decimal_size(result.capacity_bytes)}")
        largest = f"{result.max_context:,} tokens" if result.max_context else "none (not even one token fits)"
        if result.max_context and result.max_context == result.model_context:
            largest += " (the model's full context)"
        lines.append(f"Max context  {largest}")
        lines.append(f"Min GPUs     {result.min_gpus if result.min_gpus else 'more than 4,096'}")
    else:
        lines.append(f"Fits on one  {_smallest_fitting(single_gpu_fits(result.total_bytes))}")
    for note in result.notes:
        lines.append(f"Note         {terminal_safe(note)}")
    text = "\n".join(lines) + "\n"
    if explain_items:
        text += "\n" + explain(result, gpu_name)
    return text


def compare_text(rows: list[dict[str, Any]], plans: list[MemoryPlan], gpu_name: str | None) -> str:
    """Models in columns, figures in rows: the side-by-side table."""
    names = [terminal_safe(_short_name(row["model"]), 40) for row in rows]
    width = max(16, *(len(n) for n in names)) + 2
    out: list[str] = []

    def row(label: str, cells: list[str]) -> None:
        out.append(f"{label:<26}" + "".join(f"{c:>{width}}" for c in cells))

    row("", names)
    row("parameters", [f"{r['parameters']:,}" for r in rows])
    if any(r["active_parameters"] != r["parameters"] for r in rows):
        row("active per token", [f"{r['active_parameters']:,}" for r in rows])
    for kind in ("weight", "bias", "embedding"):
        row(f"  {kind}", [f"{r['by_kind'].get(kind, 0):,}" for r in rows])
    for precision in COMPARE_PRECISIONS:
        row(f"weights {precision}", [both(r["bytes"][precision]) for r in rows])
    kv = rows[0]["kv"]
    row(f"KV per token ({kv})", ["-" if r["kv_bytes_per_token"] is None else binary_size(r["kv_bytes_per_token"])
                                 if r["kv_bytes_per_token"] else "none" for r in rows])
    row("context", [f"{r['context']:,}" for r in rows])
    row("KV at context", ["-" if r["kv_bytes_at_context"] is None else both(r["kv_bytes_at_context"]) for r in rows])
    row("bf16 inference total", [both(r["inference_bf16_bytes"]) for r in rows])
    if gpu_name is not None:
        row(f"fits {terminal_safe(gpu_name, 20)}", [_fit_cell(p) for p in plans])
    out.append("")
    out.append("Smallest GPUs that hold it alone (bf16 weights, inference at that context):")
    for r, name in zip(rows, names, strict=True):
        out.append(f"  {name}: {_smallest_fitting(r['fits_on'])}")
    return "\n".join(out) + "\n"


def _smallest_fitting(names: list[str]) -> str:
    """The cards of the smallest memory size that fits, and how many larger ones also do."""
    if not names:
        return "none in the catalog"
    gpus = sorted((find_gpu(n) for n in names), key=lambda g: g.memory_bytes)
    smallest = [g.name for g in gpus if g.memory_bytes == gpus[0].memory_bytes]
    more = len(gpus) - len(smallest)
    return ", ".join(smallest) + (f" (and {more} larger)" if more else "")


def _short_name(model: str) -> str:
    """A column header: a path's last part, a reference name as typed."""
    return os.path.basename(model.rstrip("/\\")) or model


def both(n: int) -> str:
    return f"{decimal_size(n)}/{binary_size(n)}"


def _fit_cell(p: MemoryPlan) -> str:
    if p.fits:
        return "yes"
    return f"no, {p.min_gpus} GPUs" if p.min_gpus else "no"
