"""Any model by its architecture alone: the tensor list a family's real checkpoint holds, from config.json.

One small module per family (llama.py, mixtral.py, ...) turns a checked config into a Layout; this registry
picks the module by ``model_type`` and turns the layout into TensorInfo records and exact counts. An unknown
family is refused, never guessed: a count is either the real checkpoint's or absent.
"""

from __future__ import annotations

import json
from math import prod
from typing import Any

from core import dtypes
from core.architectures import bert, deepseek_v3, gemma, gpt2, llama, mixtral, phi3, qwen2, qwen3
from core.architectures.layout import ConfigView, Layout
from core.checkpoint import TensorInfo
from core.errors import CheckpointError

_MODULES = (llama, mixtral, qwen2, qwen3, gemma, phi3, deepseek_v3, gpt2, bert)
_BY_TYPE = {model_type: module for module in _MODULES for model_type in module.MODEL_TYPES}
LAYOUT_CACHE_SIZE = 4
_LAYOUTS: dict[str, Layout] = {}  # read-only once built


class UnknownArchitectureError(CheckpointError):
    """config.json names no model_type, or one with no family rules here; the message lists the known ones."""


def known_families() -> list[str]:
    """Every ``model_type`` whose tensor list can be built from its config alone."""
    return sorted(_BY_TYPE)


def family_of(config: dict[str, Any]) -> str:
    """The config's ``model_type`` if it is a known family; else UnknownArchitectureError."""
    model_type = config.get("model_type") if isinstance(config, dict) else None
    known = ", ".join(known_families())
    if not isinstance(model_type, str) or not model_type:
        raise UnknownArchitectureError(f"config.json names no model_type; known families: {known}")
    if model_type not in _BY_TYPE:
        raise UnknownArchitectureError(f"no tensor rules for model_type {model_type[:80]!r}; known families: {known}")
    return model_type


def layout_from_config(config: dict[str, Any]) -> Layout:
    """The family's Layout: every tensor of the real checkpoint, flagged (routed, MTP, scale).

    The last few layouts are kept by the config's canonical JSON: opening a model lists its tensors and then
    counts them, and DeepSeek-V3's 90,000 specs took a third of a second to build each time.
    """
    family = family_of(config)
    try:
        key = json.dumps(config, sort_keys=True, default=str)
    except (TypeError, ValueError):  # keys of mixed types: build afresh
        key = None
    found = _LAYOUTS.get(key) if key is not None else None
    if found is None:
        found = _BY_TYPE[family].layout(ConfigView(config))
        if key is not None:
            if len(_LAYOUTS) >= LAYOUT_CACHE_SIZE:
                _LAYOUTS.pop(next(iter(_LAYOUTS)))
            _LAYOUTS[key] = found
    return found


def tensors_from_config(config: dict[str, Any], *, mtp: bool = False, scales: bool = False) -> list[TensorInfo]:
    """The tensors of the model proper; ``mtp`` adds multi-token-prediction layers, ``scales`` fp8 block scales."""
    return tensors_of(layout_from_config(config), mtp=mtp, scales=scales)


def tensors_of(layout: Layout, *, mtp: bool = False, scales: bool = False) -> list[TensorInfo]:
    out = []
    for spec in layout.specs:
        if (spec.mtp and not mtp) or (spec.scale and not scales):
            continue
        elements = prod(spec.shape)
        out.append(TensorInfo(spec.name, spec.shape, spec.dtype, elements, dtypes.get(spec.dtype).nbytes(elements),
                              "", 0))
    return out


def parameter_counts(config: dict[str, Any]) -> dict[str, int]:
    """``total`` (the published count); for MoE ``active`` per token (shared + top-k routed experts + everything
    else); ``mtp`` for multi-token-prediction layers and ``quantization_scales`` for fp8 scales (of which
    ``mtp_quantization_scales`` in the MTP layers), where present."""
    return counts_of(layout_from_config(config))


def counts_of(layout: Layout) -> dict[str, int]:
    total = routed = mtp = scales = mtp_scales = 0
    for spec in layout.specs:
        n = prod(spec.shape)
        if spec.scale:
            scales += n
            mtp_scales += n if spec.mtp else 0
        elif spec.mtp:
            mtp += n
        else:
            total += n
            routed += n if spec.routed else 0
    out = {"total": total}
    if layout.routed_experts:
        out["active"] = total - routed + routed // layout.routed_experts * layout.experts_per_token
    if mtp:
        out["mtp"] = mtp
    if scales:
        out["quantization_scales"] = scales
    if mtp_scales:
        out["mtp_quantization_scales"] = mtp_scales  # the part of the scales that belongs to the MTP layers
    return out
