"""The LoRA section of `info`'s text output, drawn from the same dict as its JSON (file-derived text escaped)."""

from __future__ import annotations

from typing import Any

from core.numbers import format_value, percent
from core.text import terminal_safe

TOP_VALUES = 4  # singular values shown per module in the table (--json lists them all)
MODULE_ROWS = 200


def lora_lines(lora: dict[str, Any]) -> list[str]:
    """The adapter's facts, one row per module (r, alpha, scale, ||dW||, top singular values), and with a base
    model ||W|| and ||dW||/||W|| plus a depth profile."""
    lines = ["LoRA adapter  (update of each module: dW = scale * B @ A, added to the frozen base weight W)"]
    add = lines.append
    add(f"  {'base model':<14} {_text(lora['base_model'])}")
    targets = lora["target_modules"]
    shown = ", ".join(targets) if isinstance(targets, list) else targets
    add(f"  {'targets':<14} {_text(shown)}")
    rule = "alpha / sqrt(r) (rsLoRA)" if lora["use_rslora"] else "alpha / r"
    add(f"  {'rank r':<14} {_text(lora['r'])}   lora_alpha {_text(lora['alpha'])}   scale = {rule}")
    count = f"{lora['adapter_parameters']:,}"
    if lora.get("base_parameters"):
        count += f"  ({percent(lora['adapter_parameters'], lora['base_parameters'])} of the base model's " \
                 f"{lora['base_parameters']:,})"
    add(f"  {'parameters':<14} {count}")
    for note in lora["notes"]:
        add(f"  {'note':<14} {terminal_safe(note, 300)}")
    compared = "base" in lora
    head = f"  {'module':<44} {'r':>4} {'alpha':>7} {'scale':>8} {'||dW||_F':>10}"
    head += f" {'||W||_F':>10} {'rel':>9}" if compared else ""
    add(head + "  top singular values of dW")
    for entry in lora["modules"][:MODULE_ROWS]:
        row = f"  {terminal_safe(entry['name'], 44):<44.44} {entry['r']:>4} {_number(entry['alpha']):>7} " \
              f"{_number(entry['scale']):>8} {_number(entry['delta_fro']):>10}"
        if compared:
            row += f" {_number(entry.get('base_fro')):>10} {_number(entry.get('relative_update')):>9}"
        values = entry["delta_singular_values"][:TOP_VALUES]
        row += "  " + ", ".join(format_value(v) for v in values)
        if len(entry["delta_singular_values"]) > TOP_VALUES:
            row += ", ..."
        for why in (entry.get("not_measured"), entry.get("not_compared")):
            if why:
                row += f"  ({terminal_safe(why, 200)})"
        add(row)
    if len(lora["modules"]) > MODULE_ROWS:
        add(f"  ... {len(lora['modules']) - MODULE_ROWS:,} more modules (see --json)")
    if compared:
        add(f"  compared with {_text(lora['base'])}; rel = ||dW||_F / ||W||_F")
        _profile_lines(lora["depth_profile"], add)
    return lines


def _profile_lines(profile: list[dict[str, Any]], add: Any) -> None:
    if not profile:
        return
    kinds = sorted({row["module"] for row in profile})
    add("  Depth profile of ||dW||_F / ||W||_F")
    add(f"  {'layer':>7} " + " ".join(f"{terminal_safe(k, 18):>18.18}" for k in kinds))
    by_layer: dict[int, dict[str, float]] = {}
    for row in profile:
        by_layer.setdefault(row["layer"], {})[row["module"]] = row["relative_update"]
    for layer in sorted(by_layer)[:MODULE_ROWS]:
        cells = by_layer[layer]
        add(f"  {layer:>7} " + " ".join(f"{_number(cells.get(k)):>18}" for k in kinds))


def _number(value: float | None) -> str:
    return "-" if value is None else format_value(float(value))


def _text(value: object) -> str:
    return "unknown" if value is None else terminal_safe(value, 200)
