"""The side-by-side memory table as rows of text, so the app's Compare Memory window and the PDF report say the
same thing in the same words. The figures are core.memory_plan.compare()'s; this module only words them."""

from __future__ import annotations

from typing import Any

from core.memory_plan import COMPARE_PRECISIONS
from core.memory_words import binary_size
from core.numbers import human_count

PRECISION_LABELS = {"stored": "as stored", "fp32": "fp32", "bf16": "bf16", "fp8": "fp8", "int4": "int4",
                    "Q8_0": "GGUF Q8_0", "Q4_K_M": "GGUF Q4_K_M"}
# GPUs whose "fits alone" the table shows: consumer cards, the data-centre steps, a big Mac.
SHOWN_GPUS = ("RTX 4090 24GB", "RTX 5090 32GB", "A100 80GB", "H100 80GB", "H200 141GB", "B200 192GB",
              "MI300X 192GB", "Apple 128GB")
KIND_ROWS = (("weight", "… in weight matrices"), ("bias", "… in biases"), ("embedding", "… in embeddings"))


def side_by_side_rows(rows: list[dict[str, Any]]) -> list[tuple[str, list[str], str]]:
    """(row label, one cell per model, what the row means) for compare()'s ``rows``."""
    out: list[tuple[str, list[str], str]] = [
        ("Parameters", [f"{r['parameters']:,}" for r in rows], "Every learned number, exactly"),
        ("Parameters (short)", [human_count(r["parameters"]) for r in rows], ""),
        ("Active per token", [f"{r['active_parameters']:,}" for r in rows],
         "Parameters one token passes through (fewer than all for mixture-of-experts models)"),
    ]
    for kind, label in KIND_ROWS:
        out.append((label, [f"{r['by_kind'].get(kind, 0):,}" for r in rows], f"Parameters {label.removeprefix('… ')}"))
    for precision in COMPARE_PRECISIONS:
        out.append((f"Weights {PRECISION_LABELS.get(precision, precision)}",
                    [binary_size(r["bytes"][precision]) for r in rows],
                    f"The parameters' bytes at {precision} (exact; GGUF mixes estimated)"))
    out.append(("KV cache per token", [_maybe_size(r["kv_bytes_per_token"]) for r in rows],
                "Bytes one more token of context adds, layer by layer"))
    out.append(("KV cache at context", [_maybe_size(r["kv_bytes_at_context"]) for r in rows],
                "Bytes the KV cache takes at the chosen context, batch 1"))
    out.append(("bf16 inference total", [binary_size(r["inference_bf16_bytes"]) for r in rows],
                "Weights + KV cache + estimated activations and runtime overhead"))
    for gpu in SHOWN_GPUS:
        out.append((f"Fits alone on {gpu}", ["yes" if gpu in r["fits_on"] else "no" for r in rows],
                    "Whether one such GPU holds the bf16 inference total"))
    return out


def side_by_side_caption(rows: list[dict[str, Any]]) -> str:
    """What the KV and GPU rows assume, in one line."""
    if not rows:
        return "No models to compare."
    return (f"KV cache in {rows[0]['kv']} at {rows[0]['context']:,} tokens, batch 1. \"Fits alone\": bf16 "
            "inference at that context on one GPU, estimated activations and runtime overhead included.")


def _maybe_size(n: int | None) -> str:
    return "–" if n is None else binary_size(n) if n else "none"


def side_by_side_blocks(rows: list[dict[str, Any]]) -> list:
    """A report page: the side-by-side table, one column per model (core.report blocks, drawn by gui/pdf.py)."""
    from core.report import Heading, Paragraph, Table

    table_rows = [[label, *cells] for label, cells, _ in side_by_side_rows(rows)]
    n = len(rows)
    return [Heading("Memory side by side"),
            Paragraph(side_by_side_caption(rows), "note"),
            Table(columns=["", *(r["model"] for r in rows)], rows=table_rows, align="l" + "r" * n,
                  widths=[2.2] + [1.0] * n)]


def compare_for_report(checkpoint: Any, others: list[str], context: int | str) -> list[dict[str, Any]]:
    """compare() of the reported model and ``others`` (paths or reference model names) at ``context`` tokens.

    A choice the planner cannot honour becomes a refusal (CheckpointError), so the command exits 2 with one line.
    """
    from core.errors import CheckpointError
    from core.formats import open_checkpoint
    from core.memory_plan import compare
    from core.planner_errors import PlannerInputError
    from core.reference_models import reference_models
    from core.report import model_name

    try:
        context = int(context)
    except ValueError:
        raise CheckpointError(f"the memory comparison's context must be a whole number, not {context!r}") from None
    titles = {ref.name: ref.title for ref in reference_models()}
    opened = [open_checkpoint(other) for other in others]
    try:
        names = [model_name(checkpoint)] + [titles.get(o.strip().lower(), model_name(c)) for o, c in
                                            zip(others, opened, strict=True)]
        return compare([checkpoint, *opened], context=context, names=names)
    except PlannerInputError as exc:
        raise CheckpointError(f"cannot compare memory: {exc}") from exc
    finally:
        for c in opened:
            c.close()
