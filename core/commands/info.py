"""Show what a checkpoint holds: format, files, parameter counts by kind and dtype, architecture, layer tree."""

from __future__ import annotations

import argparse
import json
import sys
from json.encoder import encode_basestring_ascii
from typing import Any, TextIO

from core import training_state
from core.checkpoint import Checkpoint, TensorInfo
from core.commands.common import refuse_on_error, stage
from core.count_story import count_story
from core.errors import CheckpointError
from core.memory import memory_summary
from core.number_words import bytes_both_ways, count_in_words
from core.numbers import count_with_exact, human_bytes, human_count, percent, strict_json
from core.quantization import headline, quantization_summary
from core.text import bounded_json, terminal_safe
from core.tree import TreeNode, build_tree, fold_repeats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a checkpoint file, a sharded index (*.index.json) or a model folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    parser.add_argument("--depth", type=int, default=3, help="levels of the layer tree to print (default 3)")
    parser.add_argument("--base", metavar="BASE_MODEL", help="for a LoRA adapter: the base model, to measure each "
                        "update against its weight (||dW|| / ||W||, per module and per layer)")


@refuse_on_error
def run(args: argparse.Namespace) -> int:
    from core.formats import open_checkpoint

    with stage(f"reading the metadata of {args.path!r}"), open_checkpoint(args.path) as checkpoint, \
            stage(f"summarising {args.path!r}"):
        lora = lora_summary(checkpoint, getattr(args, "base", None))
        if args.json:
            write_info_json(checkpoint, sys.stdout, lora)
        else:
            sys.stdout.write(info_text(checkpoint, depth=args.depth, lora=lora))
    return 0


def lora_summary(checkpoint: Checkpoint, base_path: str | None = None) -> dict[str, Any] | None:
    """The "lora" value of `info`: the adapter measured, and against ``base_path`` when given; None otherwise."""
    from core import lora

    if checkpoint.lora is None:
        if base_path is not None:
            raise CheckpointError("--base is for LoRA adapters, and this checkpoint holds no lora_A / lora_B "
                                  "tensors", path=checkpoint.path)
        return None
    updates = lora.measure(checkpoint, checkpoint.lora)
    checkpoint.warnings.extend(f"LoRA module {u.module.name[:120]!r} not measured: {u.why_not}" for u in updates
                               if u.why_not is not None)
    if base_path is None:
        return lora.lora_json(checkpoint.lora, updates)
    with stage(f"measuring the base model {base_path!r}"), lora.open_base(base_path) as base:
        return lora.lora_json(checkpoint.lora, updates, lora.compare_with_base(updates, base), base)


def write_info_json(checkpoint: Checkpoint, out: TextIO, lora: dict[str, Any] | None = None) -> None:
    """``info_json`` as indented JSON, its tensors streamed one compact line each.

    json.dump with indent runs the pure-Python encoder: a million tensors took a minute and a gigabyte
    as 13 million lines. The same JSON value now comes out in a few seconds, in bounded memory.
    """
    head = json.dumps(strict_json(info_json(checkpoint, tensors=False, lora=lora)), indent=1, default=str,
                      allow_nan=False)
    out.write(head[: -len("\n}")] + ',\n "tensors": [')
    encoded: dict[object, str] = {}
    tensors = checkpoint.tensors
    for start in range(0, len(tensors), _TENSORS_PER_WRITE):
        lines = [tensor_json_line(t, encoded) for t in tensors[start : start + _TENSORS_PER_WRITE]]
        out.write(("," if start else "") + "\n  " + ",\n  ".join(lines))
    out.write("\n ]\n}\n" if tensors else "]\n}\n")


_TENSORS_PER_WRITE = 10_000
_encode = json.JSONEncoder(default=str, allow_nan=False).encode


def tensor_json_line(t: TensorInfo, encoded: dict[object, str]) -> str:
    """``t.to_json()`` as one line of JSON; plain fields are formatted directly, repeated ones encoded once."""
    shape = t.shape
    if type(t.name) is not str or type(t.elements) is not int or type(t.nbytes) is not int \
            or type(t.offset) is not int or not all(type(d) is int for d in shape):
        return _encode(strict_json(t.to_json()))  # anything unusual: the general encoder, same result
    kinds = (t.dtype, t.kind, t.role)
    middle = encoded.get(kinds)
    if middle is None:
        middle = encoded[kinds] = f'"dtype": {_encode(t.dtype)}, "kind": {_encode(t.kind)}, "role": {_encode(t.role)}'
    file = encoded.get(t.file)
    if file is None:
        file = encoded[t.file] = _encode(t.file)
    return (f'{{"name": {encode_basestring_ascii(t.name)}, "shape": [{", ".join(map(str, shape))}], {middle}, '
            f'"elements": {t.elements}, "bytes": {t.nbytes}, "file": {file}, "offset": {t.offset}}}')


def info_json(checkpoint: Checkpoint, tensors: bool = True, lora: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything `info --json` prints; ``tensors=False`` leaves out the per-tensor list (streamed apart);
    ``lora`` (from lora_summary) adds the "lora" key of an adapter."""
    out = {
        "format": checkpoint.format,
        "path": checkpoint.path,
        "files": [f.path for f in checkpoint.files],
        "file_bytes": checkpoint.file_bytes,
        "tensor_count": len(checkpoint.tensors),
        "element_count": checkpoint.element_count,
        "parameter_count": checkpoint.parameter_count,
        "by_kind": checkpoint.by_kind(),
        "by_role": checkpoint.by_role(),
        "by_dtype": checkpoint.by_dtype(),
        "memory": memory_summary(checkpoint),
        "quantization": quantization_summary(checkpoint),
        "architecture": bounded_json(checkpoint.architecture),
        "metadata": bounded_json(checkpoint.metadata),
        "safety": checkpoint.safety,
        "warnings": list(checkpoint.warnings),
    }
    if lora is not None:
        out["lora"] = lora
    if tensors:
        out["tensors"] = [t.to_json() for t in checkpoint.tensors]
    return out


def info_text(checkpoint: Checkpoint, depth: int = 3, lora: dict[str, Any] | None = None) -> str:
    lines: list[str] = []
    add = lines.append
    add(f"Format      {checkpoint.format}")
    add(f"Safety      {terminal_safe(checkpoint.safety)}")
    for warning in checkpoint.warnings:
        add(f"Warning     {terminal_safe(warning)}")
    add(f"Files       {len(checkpoint.files)} ({bytes_both_ways(checkpoint.file_bytes)})")
    for f in checkpoint.files[:8]:
        add(f"            {terminal_safe(f.path)}  {human_bytes(f.size)}")
    if len(checkpoint.files) > 8:
        add(f"            ... and {len(checkpoint.files) - 8} more")
    add(f"Tensors     {len(checkpoint.tensors):,}")
    add(f"Parameters  {count_with_exact(checkpoint.parameter_count)}: {count_in_words(checkpoint.parameter_count)}")
    lines.extend(training_state.summary_lines(checkpoint.by_kind(), checkpoint.parameter_count))
    parts = "parameters + buffers" + (" + training state" if checkpoint.by_kind().get("state") else "")
    add(f"Elements    {count_with_exact(checkpoint.element_count)}  ({parts})")
    add("")
    add("By kind")
    total = checkpoint.element_count
    for kind, n in checkpoint.by_kind().items():
        add(f"  {kind:<10} {human_count(n):>10}  {n:>18,}  {percent(n, total):>7}")
    add("By dtype")
    for dtype, n in sorted(checkpoint.by_dtype().items(), key=lambda kv: -kv[1]):
        add(f"  {dtype:<10} {human_count(n):>10}  {n:>18,}  {percent(n, total):>7}")
    _quantization_lines(checkpoint, add)
    if checkpoint.architecture:
        add("Architecture")
        for key, value in checkpoint.architecture.items():
            if key == "contradictions":
                continue
            add(f"  {key:<18} {terminal_safe(value, 200)}")
        for claim in checkpoint.architecture.get("contradictions", []):
            add(f"  {'contradiction':<18} {terminal_safe(claim, 300)}")
    story = count_story(checkpoint)
    if story is not None:
        add("How the count adds up")
        lines.extend(f"  {line}" for line in story.lines())
    if checkpoint.metadata:
        add("Metadata")
        _metadata_lines(checkpoint.metadata, add)
    if lora is not None:
        from core.lora_text import lora_lines

        lines.extend(lora_lines(lora))
    memory = memory_summary(checkpoint)["weights"]
    add("Weights in memory")
    add("  " + "   ".join(f"{name} {human_bytes(n)}" for name, n in memory.items()))
    add("")
    if len(checkpoint.tensors) > TREE_TENSOR_LIMIT:
        add(f"Layer tree  not built for {len(checkpoint.tensors):,} tensors (over {TREE_TENSOR_LIMIT:,}: it would take "
            "minutes and gigabytes); `info --json` lists every tensor")
        return "\n".join(lines) + "\n"
    add("Layer tree (repeated blocks folded)")
    tree = fold_repeats(build_tree(checkpoint.tensors))
    _tree_lines(tree, 0, depth, add, checkpoint.parameter_count)
    return "\n".join(lines) + "\n"


def _quantization_lines(checkpoint: Checkpoint, add: Any) -> None:
    summary = quantization_summary(checkpoint)
    if summary is None:
        return
    add(f"Stored as   {terminal_safe(headline(summary))}")
    for name, entry in summary["by_type"].items():
        tensors = f"{entry['tensors']:,} tensor{'s' if entry['tensors'] != 1 else ''}"
        add(f"  {terminal_safe(name, 10):<10} {tensors:>14} {human_count(entry['parameters']):>10}"
            f" {human_bytes(entry['bytes']):>12}  {entry['bits_per_weight']:.4g} bits per weight")


# The largest real checkpoints list about 100,000 tensors; the tree costs ~1 KB and ~20 us a node to build and fold.
TREE_TENSOR_LIMIT = 250_000


def _tree_lines(node: TreeNode, level: int, depth: int, add: Any, total: int) -> None:
    for child in node.children[:40]:
        label = "  " * level + terminal_safe(child.name, 48)
        shape = ""
        if child.is_leaf and child.tensor is not None:
            shape = f"{list(child.tensor.shape)} {' / '.join(child.dtypes) or child.tensor.dtype}"  # mixed folds
        add(f"  {label:<48.48} {human_count(child.parameters):>9} {percent(child.parameters, total):>7}  {shape}")
        if level + 1 < depth:
            _tree_lines(child, level + 1, depth, add, total)
    if len(node.children) > 40:
        add("  " + "  " * level + f"... {len(node.children) - 40} more")


METADATA_LINES = 40


def _metadata_lines(metadata: dict[str, Any], add: Any) -> None:
    """Key/values as inert one-line text; long arrays by their summary, long or deep values cut."""
    items = list(metadata.items())
    for key, value in items[:METADATA_LINES]:
        if isinstance(value, dict) and "summary" in value:
            value = value["summary"]
        elif isinstance(value, dict | list | tuple):
            value = json.dumps(bounded_json(value, max_string=100, max_items=12, max_depth=4, budget=120),
                               ensure_ascii=False)
        add(f"  {terminal_safe(key, 40):<40} {terminal_safe(value, 100)}")
    if len(items) > METADATA_LINES:
        add(f"  ... {len(items) - METADATA_LINES} more keys (see --json)")
