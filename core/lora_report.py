"""The report's "LoRA adapter" section: what the adapter changes and how far, from the same dict as `info --json`.

Built from core.lora.lora_json's value as plain blocks (core.report), so the PDF shows the figures a reader
also gets from `main.py info ADAPTER --json`. Module names, the base model's name and paths come from the
user's files: they go into the blocks as data, clipped, never as markup.
"""

from __future__ import annotations

from typing import Any

from core.numbers import format_value, percent
from core.report import Block, Heading, KeyValues, LinePlot, Paragraph, PlotGrid, Series, Table, clip, wide_range

MODULE_ROWS = 400
TOP_VALUES = 3
NAME_CHARS = 90
EXPLANATION = (
    "A LoRA adapter stores, for each module it adapts, two thin matrices A (r × inputs) and B (outputs × r); the "
    "fine-tuned model runs with W + scale·B·A, where W is the frozen base weight and scale = lora_alpha / r "
    "(lora_alpha / √r with rsLoRA). ‖ΔW‖_F is the size (root of the sum of squares) of the update ΔW = scale·B·A, "
    "and its singular values say along how many directions it moves W; both come from r × r matrices, without "
    "forming ΔW. The top share is the part of the update's energy (its squared size) along its largest direction.")
RELATIVE_HELP = (
    "Relative update ‖ΔW‖ / ‖W‖: how big the adapter's change is next to the weight it changes; 0.27 means the "
    "update is 27% of the weight's size.")


def lora_blocks(lora: dict[str, Any]) -> list[Block]:
    """Heading, explanation, the adapter's facts, the module table and, with a base model, the depth profile."""
    compared = "base" in lora
    blocks: list[Block] = [Heading("LoRA adapter"), Paragraph(EXPLANATION, style="note"),
                           KeyValues(fact_rows(lora), title="Adapter")]
    blocks += [Paragraph(f"Note: {clip(note, 300)}", style="note") for note in lora["notes"]]
    if compared:
        blocks.append(Paragraph(RELATIVE_HELP, style="note"))
    blocks.append(module_table(lora))
    plots = []
    if compared and lora["depth_profile"]:
        series = profile_series(lora["depth_profile"], "relative_update")
        plots.append(LinePlot("relative update ‖ΔW‖/‖W‖ by layer", series, ylabel="‖ΔW‖ / ‖W‖",
                              log_y=wide_range(series)))
    norms = norm_profile(lora["modules"])
    if norms:
        series = profile_series(norms, "delta_fro")
        plots.append(LinePlot("size of the update ‖ΔW‖_F by layer", series, ylabel="‖ΔW‖_F",
                              log_y=wide_range(series)))
    if plots:
        blocks.append(PlotGrid(plots, columns=1 if len(plots) == 1 else 2, title="Depth profile"))
    return blocks


def fact_rows(lora: dict[str, Any]) -> list[tuple[str, str]]:
    """Base model, targets, rank, alpha, scale, module count and adapter parameters (against the base's when known)."""
    targets = lora["target_modules"]
    shown = ", ".join(targets) if isinstance(targets, list) else targets
    rule = "lora_alpha / √r (rsLoRA)" if lora["use_rslora"] else "lora_alpha / r"
    scales = sorted({m["scale"] for m in lora["modules"]})
    scale = "-" if not scales else format_value(scales[0]) if len(scales) == 1 else \
        f"{format_value(scales[0])} to {format_value(scales[-1])} (per-module patterns)"
    parameters = f"{lora['adapter_parameters']:,}"
    if lora.get("base_parameters"):
        parameters += f" ({percent(lora['adapter_parameters'], lora['base_parameters'])} of the base model's " \
                      f"{lora['base_parameters']:,})"
    rows = [("Base model (adapter_config.json)", _text(lora["base_model"])),
            ("Target modules", _text(shown)),
            ("Rank r", _text(lora["r"])),
            ("lora_alpha", "unknown" if lora["alpha"] is None else format_value(float(lora["alpha"]))),
            ("Scale", f"{scale} = {rule}"),
            ("Adapted modules", f"{len(lora['modules']):,}"),
            ("Adapter parameters", parameters)]
    if "base" in lora:
        rows.append(("Compared with base", clip(lora["base"], NAME_CHARS)))
    return rows


def module_table(lora: dict[str, Any]) -> Table:
    """One row per module: r, alpha, scale, ‖ΔW‖_F (‖W‖_F and the relative update with a base), the top singular
    values and the top direction's energy share; a module not measured or not compared says why below."""
    compared = "base" in lora
    columns = ["Module", "r", "alpha", "scale", "‖ΔW‖_F"]
    columns += ["‖W‖_F", "‖ΔW‖/‖W‖"] if compared else []
    columns += ["Top singular values", "Top share"]
    rows, reasons = [], []
    for entry in lora["modules"][:MODULE_ROWS]:
        values = entry["delta_singular_values"]
        shown = ", ".join(format_value(v) for v in values[:TOP_VALUES]) + (", …" if len(values) > TOP_VALUES else "")
        row = [clip(entry["name"], NAME_CHARS), str(entry["r"]), _number(entry["alpha"]), _number(entry["scale"]),
               _number(entry["delta_fro"])]
        if compared:
            row += [_number(entry.get("base_fro")), _number(entry.get("relative_update"))]
        share = entry["energy_share"]
        row += [shown or "-", percent(share[0], 1.0) if share and sum(share) > 0 else "-"]
        rows.append(row)
        for why in (entry.get("not_measured"), entry.get("not_compared")):
            if why:
                reasons.append(f"{clip(entry['name'], 60)}: {clip(why, 160)}")
    notes = []
    if len(lora["modules"]) > MODULE_ROWS:
        notes.append(f"and {len(lora['modules']) - MODULE_ROWS:,} more modules (main.py info ADAPTER --json lists "
                     "them all)")
    notes += reasons[:20] + ([f"and {len(reasons) - 20:,} more modules without a figure"] if len(reasons) > 20 else [])
    widths = [4.6, 0.4, 0.7, 0.6, 0.9] + ([0.9, 1.1] if compared else []) + [2.6, 0.9]
    return Table(columns, rows, "l" + "r" * (len(columns) - 3) + "lr", widths, title="Modules",
                 note="; ".join(notes))


def norm_profile(modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """‖ΔW‖_F per layer and module kind, like core.lora.depth_profile's rows (no base needed)."""
    from core.taxonomy import layer_block

    rows = []
    for entry in modules:
        block = layer_block(entry["name"])
        if block is None or entry["delta_fro"] is None:
            continue
        rows.append({"layer": block[0], "module": block[1].lstrip("."), "delta_fro": entry["delta_fro"]})
    return sorted(rows, key=lambda row: (row["layer"], row["module"]))


def profile_series(rows: list[dict[str, Any]], key: str) -> list[Series]:
    """One line per module kind (q_proj, v_proj ...), its layers in order; kinds named by their last part when
    that is unambiguous."""
    by_kind: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        by_kind.setdefault(row["module"], []).append((row["layer"], row[key]))
    short = {kind: kind.rsplit(".", 1)[-1] for kind in by_kind}
    if len(set(short.values())) < len(short):
        short = {kind: kind for kind in by_kind}
    return [Series(clip(short[kind], 40), [float(layer) for layer, _ in points], [float(v) for _, v in points])
            for kind, points in sorted(by_kind.items())]


def _number(value: float | None) -> str:
    return "-" if value is None else format_value(float(value))


def _text(value: object) -> str:
    return "not named" if value is None else clip(str(value), NAME_CHARS)
