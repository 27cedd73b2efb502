"""Does a model fit on a GPU, and what takes the memory? One plan for one workload, item by item.

Facts are exact integers: weights (weight_bytes) and the KV cache (kv_cache, layer by layer). Estimates say
so and carry their assumptions: activations, LoRA adapters, and the runtime overhead (CUDA context and
allocator fragmentation). Several GPUs are assumed to split everything evenly (tensor or pipeline parallel for
inference, FSDP / ZeRO-3 for training), each paying its own runtime overhead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.checkpoint import Checkpoint
from core.gpus import CATALOG
from core.kv_cache import KVLayout, kv_dtype_size, kv_layout
from core.planner_errors import PlannerInputError
from core.weight_bytes import PLAIN_PRECISIONS, normalise_precision, parameter_tensors, weight_bytes

MODES = ("inference", "lora", "full")
OPTIMIZERS = ("adam", "adam8bit")
KV_TYPES = ("bf16", "fp16", "fp8", "fp32", "q8_0", "q4_0")
LORA_RANK = 16
LORA_ROLES = ("attention.q", "attention.k", "attention.v", "attention.o", "attention.qkv")
PREFILL_CHUNK = 2048  # prompt tokens a runtime pushes through a layer at once (llama.cpp 512, vLLM up to 8,192)
CUDA_CONTEXT_BYTES = 512 << 20  # per GPU: CUDA context, cuBLAS workspace, kernels
FRAGMENTATION = 0.05  # of everything else: the allocator's unusable gaps
TRAINING_ACTIVATION_BYTES = 34  # per token and hidden unit of a layer's tensors (Korthikanti et al. 2022, flash attn)
MAX_GPUS = 4096
ASSUMED_CONTEXT = 4096  # when neither the caller nor the model names a context length; the plan says so
UNKNOWN_CONTEXT_LIMIT = 1 << 24  # the search bound for max_context when the model names no context length
# Compare: the precisions a side-by-side table shows, and the workload "fits on" is judged for.
COMPARE_PRECISIONS = ("stored", "fp32", "bf16", "fp8", "int4", "Q8_0", "Q4_K_M")


@dataclass(frozen=True, slots=True)
class PlanItem:
    name: str
    bytes: int
    formula: str
    exact: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "formula": self.formula, "exact": self.exact}


@dataclass
class MemoryPlan:
    """One workload's memory, item by item, against ``gpus`` GPUs of ``gpu_bytes`` each (None: no GPU chosen)."""

    model: str
    parameters: int
    active_parameters: int
    mode: str
    optimizer: str
    weights: str
    kv: str
    context: int
    batch: int
    items: list[PlanItem]
    gpu_bytes: int | None
    gpus: int
    fits: bool | None
    max_context: int | None  # largest context that fits (capped at the model's); None: not even one token
    min_gpus: int | None  # fewest GPUs of this size that hold it; None: more than MAX_GPUS or no GPU chosen
    model_context: int | None  # the context length the model was trained for, when it says
    kv_bytes_per_token: int | None  # None: the KV cache could not be counted
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(item.bytes for item in self.items)

    @property
    def capacity_bytes(self) -> int | None:
        return None if self.gpu_bytes is None else self.gpu_bytes * self.gpus

    def item(self, name: str) -> PlanItem:
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "parameters": self.parameters, "active_parameters": self.active_parameters,
            "mode": self.mode, "optimizer": self.optimizer if self.mode != "inference" else None,
            "weights": self.weights, "kv": self.kv, "context": self.context, "batch": self.batch,
            "items": [item.to_json() for item in self.items], "total_bytes": self.total_bytes,
            "gpu_bytes": self.gpu_bytes, "gpus": self.gpus, "capacity_bytes": self.capacity_bytes,
            "fits": self.fits, "max_context": self.max_context, "min_gpus": self.min_gpus,
            "model_context": self.model_context, "kv_bytes_per_token": self.kv_bytes_per_token,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Workload:
    """What does not change with context or GPU count, computed once per plan."""

    mode: str
    optimizer: str
    weights: str
    kv: str
    batch: int
    weight_item: PlanItem
    training_items: tuple[PlanItem, ...]
    layout: KVLayout | None
    hidden: int | None
    intermediate: int | None
    layers: int | None
    vocab: int | None


def plan(checkpoint: Checkpoint, *, gpu_memory_bytes: int | None, gpus: int = 1, mode: str = "inference",
         optimizer: str = "adam", weights: str = "stored", kv: str = "bf16", context: int | None = None,
         batch: int = 1, name: str | None = None) -> MemoryPlan:
    """The memory ``mode`` needs for ``checkpoint`` and whether it fits on ``gpus`` GPUs of
    ``gpu_memory_bytes`` each. Bad choices raise PlannerInputError with a one-line reason."""
    work = _workload(checkpoint, mode=mode, optimizer=optimizer, weights=weights, kv=kv, batch=batch)
    _check_count(gpus, "the number of GPUs")
    if gpu_memory_bytes is not None and (isinstance(gpu_memory_bytes, bool) or not isinstance(gpu_memory_bytes, int)
                                         or gpu_memory_bytes <= 0):
        raise PlannerInputError(f"GPU memory must be a positive number of bytes, not {gpu_memory_bytes!r}")
    model_context = _model_context(checkpoint)
    assumed = context is None and model_context is None
    if context is None:
        context = model_context or ASSUMED_CONTEXT
    _check_count(context, "the context length")
    items = _items(work, context, gpus)
    notes = _notes(work, context, model_context)
    if assumed:
        notes.insert(0, f"the model does not say its context length: {ASSUMED_CONTEXT:,} tokens assumed (choose one "
                        "with --context)")
    out = MemoryPlan(
        model=name if name is not None else _model_name(checkpoint), parameters=checkpoint.parameter_count,
        active_parameters=active_parameters(checkpoint), mode=work.mode, optimizer=work.optimizer,
        weights=work.weights, kv=work.kv, context=context, batch=batch, items=items, gpu_bytes=gpu_memory_bytes,
        gpus=gpus, fits=None, max_context=None, min_gpus=None, model_context=model_context,
        kv_bytes_per_token=work.layout.bytes_per_token(work.kv) if work.layout is not None else None, notes=notes)
    if gpu_memory_bytes is not None:
        out.fits = out.total_bytes <= gpu_memory_bytes * gpus
        limit = model_context or max(context, UNKNOWN_CONTEXT_LIMIT)
        out.max_context = _largest(1, limit, lambda c: _total(work, c, gpus) <= gpu_memory_bytes * gpus)
        out.min_gpus = _smallest(1, MAX_GPUS, lambda n: _total(work, context, n) <= gpu_memory_bytes * n)
    return out


def active_parameters(checkpoint: Checkpoint) -> int:
    """Parameters one token passes through: fewer than all for mixture-of-experts models that say so."""
    active = checkpoint.architecture.get("active_parameters")
    return active if isinstance(active, int) and not isinstance(active, bool) and active > 0 \
        else checkpoint.parameter_count


def single_gpu_fits(total_bytes: int) -> list[str]:
    """Catalog GPUs that hold ``total_bytes`` (a one-GPU plan's total) alone."""
    return [gpu.name for gpu in CATALOG if total_bytes <= gpu.memory_bytes]


def compare(checkpoints: Sequence[Checkpoint], *, context: int | None = None, batch: int = 1, kv: str = "bf16",
            names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Side by side: per model its parameters by kind, bytes at each precision, KV cache per token and at the
    context, and the catalog GPUs that hold it alone for bf16 inference at that context."""
    rows = []
    for i, checkpoint in enumerate(checkpoints):
        one = plan(checkpoint, gpu_memory_bytes=None, weights="bf16", kv=kv, context=context, batch=batch,
                   name=names[i] if names is not None else None)
        kv_item = next((item for item in one.items if item.name == "KV cache"), None)
        rows.append({
            "model": one.model, "parameters": one.parameters, "active_parameters": one.active_parameters,
            "by_kind": {k: v for k, v in checkpoint.by_kind().items() if k not in ("buffer", "state")},
            "bytes": {p: weight_bytes(checkpoint, p).bytes for p in COMPARE_PRECISIONS},
            "kv": one.kv, "kv_bytes_per_token": one.kv_bytes_per_token, "context": one.context,
            "kv_bytes_at_context": kv_item.bytes if kv_item is not None else None,
            "inference_bf16_bytes": one.total_bytes, "fits_on": single_gpu_fits(one.total_bytes),
        })
    return rows


def _workload(checkpoint: Checkpoint, *, mode: str, optimizer: str, weights: str, kv: str, batch: int) -> _Workload:
    if mode not in MODES:
        raise PlannerInputError(f"unknown workload {mode[:40]!r}; use one of {', '.join(MODES)}")
    if optimizer not in OPTIMIZERS:
        raise PlannerInputError(f"unknown optimizer {optimizer[:40]!r}; use one of {', '.join(OPTIMIZERS)}")
    kv = kv.strip().lower()
    kv_dtype_size(kv)
    _check_count(batch, "the batch size")
    weights = normalise_precision(weights)
    found = weight_bytes(checkpoint, weights)
    weight_item = PlanItem("weights", found.bytes, found.formula, found.exact)
    training: tuple[PlanItem, ...] = ()
    if mode == "full":
        training = _full_training_items(checkpoint, weights, optimizer)
    elif mode == "lora":
        training = _lora_items(checkpoint, optimizer)
    facts = checkpoint.architecture
    return _Workload(mode, optimizer, weights, kv, batch, weight_item, training, kv_layout(checkpoint),
                     _fact(facts, "hidden_size"), _fact(facts, "intermediate_size"), _fact(facts, "layers"),
                     _fact(facts, "vocab_size"))


def _full_training_items(checkpoint: Checkpoint, weights: str, optimizer: str) -> tuple[PlanItem, ...]:
    """Mixed-precision training: gradients at the weights' precision, optimizer moments, and an fp32 master copy
    of the weights unless they already are fp32 (ZeRO's 2 + 2 + 12 bytes per parameter for bf16 and Adam)."""
    tensors = parameter_tensors(checkpoint)
    params = sum(t.elements for t in tensors)
    if weights == "stored":
        if any(t.dtype not in ("F32", "F16", "BF16") for t in tensors):
            raise PlannerInputError("full fine-tuning needs float weights (fp32, bf16 or fp16) and these are stored "
                                    "otherwise; choose --weights bf16, or --mode lora for quantised weights")
        grad_bytes = sum(t.nbytes for t in tensors)
        all_fp32 = all(t.dtype == "F32" for t in tensors)
        grad_formula = "one gradient per parameter at its stored precision"
    elif weights in ("fp32", "bf16", "fp16"):
        per = int(PLAIN_PRECISIONS[weights])
        grad_bytes = params * per
        all_fp32 = weights == "fp32"
        grad_formula = f"{params:,} parameters x {per} bytes ({weights} gradients)"
    else:
        raise PlannerInputError(f"full fine-tuning needs float weights (fp32, bf16 or fp16), not {weights}; "
                                "use --mode lora to train adapters on quantised weights")
    moments = 8 if optimizer == "adam" else 2
    master = 0 if all_fp32 else 4
    what = "two fp32 Adam moments (4 + 4 bytes)" if optimizer == "adam" else "two 8-bit Adam moments (1 + 1 byte)"
    if master:
        what += " + an fp32 master copy of the weights (4 bytes)"
    return (PlanItem("gradients", grad_bytes, grad_formula, True),
            PlanItem("optimizer states", params * (moments + master),
                     f"{params:,} parameters x {moments + master} bytes: {what}", True))


def lora_parameters(checkpoint: Checkpoint, rank: int = LORA_RANK) -> int:
    """Adapter parameters for rank ``rank`` on every attention projection: rank x (rows + columns) each."""
    return sum(rank * (t.shape[0] + t.shape[-1]) for t in checkpoint.tensors
               if t.is_parameter and t.role in LORA_ROLES and len(t.shape) >= 2 and t.kind == "weight")


def _lora_items(checkpoint: Checkpoint, optimizer: str) -> tuple[PlanItem, ...]:
    """LoRA trains small adapters in fp32 beside frozen weights: adapter weights, their gradients and moments."""
    adapters = lora_parameters(checkpoint)
    assumption = f"estimate: rank {LORA_RANK} on the attention projections (q, k, v, o): {adapters:,} adapter " \
                 f"parameters = {LORA_RANK} x (rows + columns) per matrix"
    moments = 8 if optimizer == "adam" else 2
    return (PlanItem("LoRA adapters", adapters * 4, f"{assumption}, x 4 bytes (fp32)", False),
            PlanItem("gradients", adapters * 4, f"{adapters:,} adapter gradients x 4 bytes; the frozen weights have "
                     "none", False),
            PlanItem("optimizer states", adapters * moments, f"{adapters:,} adapter parameters x {moments} bytes "
                     f"({optimizer} moments)", False))


def _items(work: _Workload, context: int, gpus: int) -> list[PlanItem]:
    items = [work.weight_item]
    if work.layout is not None and work.mode != "inference":
        items.append(PlanItem("KV cache", 0, "none while training: each sequence goes through whole, so its keys and "
                              "values are activations, not a cache", True))
    elif work.layout is not None:
        items.append(PlanItem("KV cache", work.layout.bytes_at(context, work.batch, work.kv),
                              work.layout.formula(work.kv), True))
    items.append(_activations(work, context))
    items.extend(work.training_items)
    rest = sum(item.bytes for item in items)
    overhead = gpus * CUDA_CONTEXT_BYTES + int(rest * FRAGMENTATION)
    items.append(PlanItem("runtime overhead", overhead, f"estimate: {CUDA_CONTEXT_BYTES >> 20} MiB per GPU x {gpus} "
                          f"(CUDA context, library workspaces) + {FRAGMENTATION:.0%} of the rest (allocator "
                          "fragmentation)", False))
    return items


def _total(work: _Workload, context: int, gpus: int) -> int:
    return sum(item.bytes for item in _items(work, context, gpus))


def _activations(work: _Workload, context: int) -> PlanItem:
    hidden = work.hidden
    if not hidden:
        return PlanItem("activations", 0, "not estimated: the architecture does not give the hidden size", False)
    if work.mode == "inference":
        chunk = min(context, PREFILL_CHUNK)
        inter = work.intermediate or 4 * hidden
        size = work.batch * chunk * (4 * hidden + 2 * inter) * 2
        return PlanItem("activations", size, f"estimate: one layer's live tensors while a chunk of {chunk:,} prompt "
                        f"tokens passes: batch x {chunk:,} x (4 x {hidden:,} hidden + 2 x {inter:,} intermediate) x "
                        "2 bytes; runtimes differ in chunk size", False)
    layers = work.layers or 1
    tokens = work.batch * context
    kept = layers * tokens * hidden * 2 + TRAINING_ACTIVATION_BYTES * tokens * hidden
    size = kept + tokens * (work.vocab or 0) * 6
    return PlanItem("activations", size, f"estimate, with activation checkpointing (fine-tuning recipes turn it on): "
                    f"each of {layers} layers keeps its bf16 input, batch x context x {hidden:,} x 2 bytes, and one "
                    f"layer at a time is recomputed with all its tensors, {TRAINING_ACTIVATION_BYTES} bytes x batch x "
                    f"context x {hidden:,} (Korthikanti et al. 2022, flash attention); + batch x context x "
                    f"{work.vocab or 0:,} vocabulary x 6 bytes of logits (bf16 and fp32)", False)


def _notes(work: _Workload, context: int, model_context: int | None) -> list[str]:
    notes = []
    if work.layout is None:
        notes.append("KV cache not counted: the architecture does not give its layers, KV heads and head size")
    elif not work.layout.layers:
        notes.append("no KV cache: an encoder-only model reads its whole input at once")
    elif work.layout.windowed_layers:
        notes.append(f"{work.layout.windowed_layers} of {len(work.layout.layers)} layers use a sliding window and "
                     "keep at most that many tokens")
    if model_context is not None and context > model_context:
        notes.append(f"context {context:,} is beyond the {model_context:,} tokens the model was made for")
    return notes


def _model_context(checkpoint: Checkpoint) -> int | None:
    return _fact(checkpoint.architecture, "context_length")


def _model_name(checkpoint: Checkpoint) -> str:
    path = checkpoint.path.rstrip("/\\")
    base = os.path.basename(path)
    if base in ("config.json", "model.safetensors.index.json") or base.endswith(".index.json"):
        base = os.path.basename(os.path.dirname(path)) or base
    return base or path


def _fact(facts: dict[str, Any], key: str) -> int | None:
    value = facts.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _check_count(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlannerInputError(f"{what} must be a whole number of at least 1, not {value!r}")


def _largest(lo: int, hi: int, ok: Callable[[int], bool]) -> int | None:
    """The largest n in [lo, hi] with ok(n), for ok true up to some point and false after; None if ok(lo) fails."""
    if not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _smallest(lo: int, hi: int, ok: Callable[[int], bool]) -> int | None:
    """The smallest n in [lo, hi] with ok(n), for ok false up to some point and true after; None if ok(hi) fails."""
    if not ok(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
