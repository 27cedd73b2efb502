"""LoRA adapters: which modules a PEFT adapter changes, and how far, measured without forming the update.

A LoRA adapter stores, per adapted module, two thin matrices A (r x n) and B (m x r); the model runs with
W + scale * B @ A, scale = alpha / r (alpha / sqrt(r) with rsLoRA). The update is at most rank r, so its
Frobenius norm and singular values come from r x r matrices: with B = Q_B R_B and A^T = Q_A R_A (QR, float64),
the nonzero singular values of B @ A are those of R_B @ R_A^T. A 4096 x 4096 update of rank 16 costs two thin QRs
and a 16 x 16 SVD, never the 16 M-element product.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.checkpoint import Checkpoint, TensorInfo, decode
from core.errors import CheckpointError
from core.lora_config import LoraConfig, config_beside, read_lora_config

PEFT_PREFIX = "base_model.model."
MAX_SIDE_ELEMENTS = 64 << 20  # a LoRA factor larger than this is not read (real ones are a few M elements)
_FACTOR = re.compile(r"(?P<module>.+)\.lora_(?P<embedding>embedding_)?(?P<side>[AB])(?:\.default)?(?:\.weight)?")
_NORM_BLOCK = 1 << 20  # elements converted to float64 at once when summing a base weight's squares


@dataclass(frozen=True)
class LoraModule:
    """One adapted module: its name in the base model, its two factors, and the scale PEFT applies."""

    name: str
    a: TensorInfo
    b: TensorInfo
    r: int
    alpha: float | None
    scale: float


@dataclass
class LoraDescription:
    """What an adapter is, from its tensor names and shapes and its adapter_config.json (no values read)."""

    base_model: str | None
    r: int | None
    alpha: float | None
    use_rslora: bool
    target_modules: list[str] | str | None
    modules: list[LoraModule]
    config_path: str | None
    parameters: int  # elements of the LoRA factors
    notes: list[str] = field(default_factory=list)  # plain facts about how figures were made (no config ...)


@dataclass(frozen=True)
class LoraUpdate:
    """The measured update scale * B @ A of one module; ``singular_values`` largest first, empty if not read."""

    module: LoraModule
    delta_fro: float | None
    singular_values: tuple[float, ...]
    why_not: str | None = None  # why the factors were not measured (too large, not finite ...)

    @property
    def energy_share(self) -> list[float]:
        total = sum(s * s for s in self.singular_values)
        return [s * s / total for s in self.singular_values] if total > 0 else [0.0 for _ in self.singular_values]


def factor_parts(name: str) -> tuple[str, str, bool] | None:
    """(module name without PEFT's prefix, "A" or "B", is an embedding factor) of a LoRA factor's tensor name."""
    match = _FACTOR.fullmatch(name)
    if match is None:
        return None
    return match["module"].removeprefix(PEFT_PREFIX), match["side"], match["embedding"] is not None


def attach_lora(checkpoint: Checkpoint) -> None:
    """Set ``checkpoint.lora`` when the checkpoint is a LoRA adapter; its warnings join the checkpoint's."""
    if not any("lora_" in t.name for t in checkpoint.tensors):
        return
    checkpoint.lora = describe_lora(checkpoint)


def describe_lora(checkpoint: Checkpoint) -> LoraDescription | None:
    """The adapter's modules, ranks, alphas and scales, or None when no tensor pairs as a LoRA factor.

    Raises CheckpointError for an adapter_config.json that is not what PEFT writes; tensors that contradict
    the config (another rank, a factor without its partner) become warnings on the checkpoint."""
    pairs: dict[str, dict[str, TensorInfo]] = {}
    embedding: set[str] = set()
    for t in checkpoint.tensors:
        parts = factor_parts(t.name)
        if parts is None:
            continue
        module, side, is_embedding = parts
        if side in pairs.setdefault(module, {}):
            checkpoint.warnings.append(f"LoRA module {module[:120]!r} has two lora_{side} tensors; the first is used")
            continue
        pairs[module][side] = t
        if is_embedding:
            embedding.add(module)
    if not pairs:
        return None
    config_path = config_beside(checkpoint.path)
    config = read_lora_config(config_path) if config_path is not None else LoraConfig()
    checkpoint.warnings.extend(config.warnings)
    if config.peft_type is not None and config.peft_type != "LORA":
        checkpoint.warnings.append(f"adapter_config.json says peft_type {config.peft_type[:40]!r}; the figures "
                                   "assume plain LoRA (update = scale * B @ A)")
    modules: list[LoraModule] = []
    for name, sides in pairs.items():
        module = _module(name, sides, name in embedding, config, checkpoint.warnings)
        if module is not None:
            modules.append(module)
    notes = []
    if config_path is None:
        notes.append("no adapter_config.json beside the weights: lora_alpha unknown, so scale 1 is used "
                     "(figures are of B @ A itself)")
    elif config.lora_alpha is None:
        notes.append("adapter_config.json gives no lora_alpha: scale 1 is used (figures are of B @ A itself)")
    ranks = Counter(m.r for m in modules)
    r = config.r if config.r is not None else (ranks.most_common(1)[0][0] if ranks else None)
    targets = config.target_modules
    if targets is None:
        targets = sorted({m.name.rsplit(".", 1)[-1] for m in modules})
    return LoraDescription(
        base_model=config.base_model, r=r, alpha=config.lora_alpha, use_rslora=config.use_rslora,
        target_modules=targets, modules=modules, config_path=config_path,
        parameters=sum(m.a.elements + m.b.elements for m in modules), notes=notes)


def _module(name: str, sides: dict[str, TensorInfo], is_embedding: bool, config: LoraConfig,
            warnings: list[str]) -> LoraModule | None:
    """One module's factors checked against each other and the config; None (with a warning) if unusable."""
    shown = repr(name[:120])
    if "A" not in sides or "B" not in sides:
        missing = "lora_B" if "A" in sides else "lora_A"
        warnings.append(f"LoRA module {shown} has no {missing} tensor: not measured")
        return None
    a, b = sides["A"], sides["B"]
    if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[0] < 1:
        warnings.append(f"LoRA module {shown}: factors of shapes {list(a.shape)} and {list(b.shape)} are not "
                        "matrices: not measured")
        return None
    r = a.shape[0]
    if math.prod(b.shape[1:]) != r:
        warnings.append(f"LoRA module {shown}: lora_A has rank {r} but lora_B has shape {list(b.shape)}: "
                        "they do not multiply, not measured")
        return None
    configured = config.rank_for(name)
    if configured is not None and configured != r:
        warnings.append(f"LoRA module {shown}: adapter_config.json gives rank {configured} but its tensors have "
                        f"rank {r}; the scale uses the tensors' rank")
    alpha = config.alpha_for(name)
    return LoraModule(name, a, b, r, alpha, scale_of(alpha, r, config.use_rslora))


def scale_of(alpha: float | None, r: int, use_rslora: bool) -> float:
    """PEFT's scaling: alpha / r, or alpha / sqrt(r) with rsLoRA; 1 when alpha is unknown."""
    if alpha is None:
        return 1.0
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def update_singular_values(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """Singular values of scale * B @ A (largest first) from thin QRs and an r x r SVD; A is r x n, B is m x r."""
    a = np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1)
    b = np.asarray(b, dtype=np.float64).reshape(b.shape[0], -1)
    r_b = np.linalg.qr(b, mode="r")  # min(m, r) x r
    r_a = np.linalg.qr(a.T, mode="r")  # min(n, r) x r
    return np.linalg.svd(r_b @ r_a.T, compute_uv=False) * abs(scale)


def measure(checkpoint: Checkpoint, description: LoraDescription,
            max_side_elements: int = MAX_SIDE_ELEMENTS) -> list[LoraUpdate]:
    """Each module's update norm and singular values, reading its two small factors (in file order)."""
    return [measure_module(checkpoint, m, max_side_elements) for m in description.modules]


def measure_module(checkpoint: Checkpoint, module: LoraModule,
                   max_side_elements: int = MAX_SIDE_ELEMENTS) -> LoraUpdate:
    """One module's update; a factor too large, not floating point, or not finite is named, not measured."""
    for side in (module.a, module.b):
        if side.elements > max_side_elements:
            return LoraUpdate(module, None, (), f"{side.name[:120]!r} has {side.elements:,} elements, over the "
                                                f"{max_side_elements:,} read for a LoRA factor")
        if not side.is_float:
            return LoraUpdate(module, None, (), f"{side.name[:120]!r} is {side.dtype}, not floating point")
    a = checkpoint.read_tensor(module.a).astype(np.float64)
    b = checkpoint.read_tensor(module.b).astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return LoraUpdate(module, None, (), "its factors hold NaN or infinite values")
    values = update_singular_values(a, b, module.scale)
    return LoraUpdate(module, float(math.sqrt(float(np.sum(values * values)))), tuple(float(s) for s in values))


# --- against the base model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseMatch:
    """A module's base weight W and how far the adapter moves it: ||scale * B @ A||_F / ||W||_F."""

    update: LoraUpdate
    base: TensorInfo | None
    base_fro: float | None
    relative_update: float | None
    why_not: str | None = None


def base_weight_name(module: str, base: Checkpoint, names: set[str]) -> str | None:
    """The base tensor an adapted module adds to: ``<module>.weight``, or its llama.cpp name in a GGUF base."""
    from core.name_map import gguf_name, unwrapped

    for candidate in (f"{module}.weight", f"{unwrapped(module)}.weight"):
        if candidate in names:
            return candidate
        if base.format == "gguf":
            mapped = gguf_name(unwrapped(candidate))
            if mapped is not None and mapped in names:
                return mapped
    return None


def frobenius_norm(checkpoint: Checkpoint, tensor: TensorInfo) -> float:
    """||W||_F exactly in float64 over the streamed tensor (chunks of the file, float64 blocks of 1 M elements)."""
    total = 0.0
    for chunk in checkpoint.iter_chunks(tensor, chunk_bytes=16 << 20):
        values = decode(chunk, tensor.dtype)
        for start in range(0, values.size, _NORM_BLOCK):
            block = values[start : start + _NORM_BLOCK].astype(np.float64)
            total += float(np.dot(block, block))
    return math.sqrt(total)


def compare_with_base(updates: list[LoraUpdate], base: Checkpoint) -> list[BaseMatch]:
    """Per module, the base weight's norm and the relative update; a module without a partner says why."""
    names = {t.name for t in base.tensors}
    return [match_base(update, base, names) for update in updates]


def match_base(update: LoraUpdate, base: Checkpoint, names: set[str]) -> BaseMatch:
    """One module against the base (``names``: the base's tensor names), so a caller can stop between modules."""
    module = update.module
    found = base_weight_name(module.name, base, names)
    if found is None:
        return BaseMatch(update, None, None, None, f"no {module.name[:120] + '.weight'!r} in the base model")
    tensor = base.tensor(found)
    rows, cols = module.b.shape[0], math.prod(module.a.shape[1:])
    if tensor.elements != rows * cols:
        return BaseMatch(update, tensor, None, None, f"base weight has shape {list(tensor.shape)}, the "
                                                     f"update {rows} x {cols}")
    if not tensor.is_float and not _dequantised(tensor):
        return BaseMatch(update, tensor, None, None, f"base weight is {tensor.dtype}, not floating point")
    norm = frobenius_norm(base, tensor)
    relative = update.delta_fro / norm if update.delta_fro is not None and norm > 0 else None
    return BaseMatch(update, tensor, norm, relative)


def _dequantised(t: TensorInfo) -> bool:
    from core import dtypes

    return dtypes.get(t.dtype).is_quantized


def depth_profile(matches: list[BaseMatch]) -> list[dict[str, Any]]:
    """Relative update per layer and module kind (``self_attn.q_proj`` ...), in layer order."""
    from core.taxonomy import layer_block

    rows = []
    for match in matches:
        if match.relative_update is None:
            continue
        block = layer_block(match.update.module.name)
        if block is None:
            continue
        layer, kind = block
        rows.append({"layer": layer, "module": kind.lstrip("."), "role": match.base.role if match.base else None,
                     "relative_update": match.relative_update})
    rows.sort(key=lambda row: (row["layer"], row["module"]))
    return rows


# --- as data for `info --json` -----------------------------------------------------------------------------


def lora_json(description: LoraDescription, updates: list[LoraUpdate], matches: list[BaseMatch] | None = None,
              base: Checkpoint | None = None) -> dict[str, Any]:
    """The "lora" value of `info --json`: the config's facts and one entry per adapted module."""
    by_module = {id(m.update): m for m in matches or []}
    modules = []
    for update in updates:
        module = update.module
        entry: dict[str, Any] = {
            "name": module.name, "r": module.r, "alpha": module.alpha, "scale": module.scale,
            "delta_fro": update.delta_fro, "delta_singular_values": list(update.singular_values),
            "energy_share": update.energy_share, "lora_A": module.a.name, "lora_B": module.b.name,
        }
        if update.why_not is not None:
            entry["not_measured"] = update.why_not
        match = by_module.get(id(update))
        if match is not None:
            entry["base_tensor"] = match.base.name if match.base is not None else None
            entry["base_fro"] = match.base_fro
            entry["relative_update"] = match.relative_update
            if match.why_not is not None:
                entry["not_compared"] = match.why_not
        modules.append(entry)
    out: dict[str, Any] = {
        "base_model": description.base_model, "r": description.r, "alpha": description.alpha,
        "use_rslora": description.use_rslora, "target_modules": description.target_modules,
        "config": description.config_path, "adapter_parameters": description.parameters,
        "notes": list(description.notes), "modules": modules,
    }
    if base is not None and matches is not None:
        out["base"] = base.path
        out["base_parameters"] = base.parameter_count
        out["adapter_share_of_base"] = description.parameters / base.parameter_count if base.parameter_count else None
        out["depth_profile"] = depth_profile(matches)
    return out


def open_base(path: str) -> Checkpoint:
    """The base model named by ``--base``, opened like any checkpoint."""
    from core.formats import open_checkpoint

    try:
        return open_checkpoint(path)
    except CheckpointError as exc:
        raise CheckpointError(f"base model: {exc}") from None
