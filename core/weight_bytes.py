"""Bytes a model's weights take at a chosen precision, exactly where the format makes it exact.

Plain types are parameters x bytes each. GGUF quant types store ``block`` weights in ``size`` bytes, so
bits per weight = 8 x size / block (Q4_K 4.5, Q6_K 6.5625, Q8_0 8.5), counted tensor by tensor: llama.cpp
keeps 1-D tensors (norms, biases) in F32 and leaves a matrix whose rows are not a whole number of blocks in
F16. Q4_K_M and Q5_K_M are llama.cpp's per-tensor mixes, followed here for the tensors that decide their size.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from core import dtypes
from core.checkpoint import Checkpoint, TensorInfo
from core.planner_errors import PlannerInputError
from core.taxonomy import layer_index

PLAIN_PRECISIONS: dict[str, Fraction] = {
    "fp32": Fraction(4), "bf16": Fraction(2), "fp16": Fraction(2), "fp8": Fraction(1), "int8": Fraction(1),
    "int4": Fraction(1, 2),
}
# llama.cpp's K-quant mixes: (base type, type for the head and for attn_v/ffn_down in "more bits" layers)
GGUF_MIXES: dict[str, tuple[str, str]] = {"Q4_K_M": ("Q4_K", "Q6_K"), "Q5_K_M": ("Q5_K", "Q6_K")}


@dataclass(frozen=True, slots=True)
class WeightBytes:
    bytes: int
    formula: str
    exact: bool


def parameter_tensors(checkpoint: Checkpoint) -> list[TensorInfo]:
    return [t for t in checkpoint.tensors if t.is_parameter]


def normalise_precision(weights: str) -> str:
    """The canonical spelling of a weight precision ("BF16" -> "bf16", "q4_k_m" -> "Q4_K_M"); unknown names
    raise PlannerInputError."""
    lowered = weights.strip().lower()
    if lowered == "stored" or lowered in PLAIN_PRECISIONS:
        return lowered
    upper = weights.strip().upper()
    if upper in GGUF_MIXES:
        return upper
    found = dtypes.lookup(upper)
    if found is not None and found.is_quantized:
        return upper
    raise PlannerInputError(f"unknown weight precision {weights[:40]!r}; use stored, {', '.join(PLAIN_PRECISIONS)}, "
                            "a GGUF quant type (Q8_0, Q6_K, Q4_K ...) or Q4_K_M / Q5_K_M")


def bits_per_weight(gguf_type: str) -> Fraction:
    """8 x type size / block size of a GGUF quant type: exact, from the gguf package's table."""
    found = dtypes.get(gguf_type)
    return Fraction(8 * found.type_size, found.block_size)


def weight_bytes(checkpoint: Checkpoint, weights: str) -> WeightBytes:
    """Bytes of the learned tensors at ``weights`` (see normalise_precision), with the arithmetic in words."""
    weights = normalise_precision(weights)
    tensors = parameter_tensors(checkpoint)
    params = sum(t.elements for t in tensors)
    if weights == "stored":
        kinds = sorted({t.dtype for t in tensors})
        return WeightBytes(sum(t.nbytes for t in tensors),
                           f"the parameter tensors' bytes as stored ({', '.join(kinds[:6]) or 'no tensors'})", True)
    if weights in PLAIN_PRECISIONS:
        per = PLAIN_PRECISIONS[weights]
        total = -(-params * per.numerator // per.denominator)
        formula = f"{params:,} parameters x {_bytes_word(per)} ({weights})"
        if weights == "int4":
            formula += "; real 4-bit formats add scales (group size 128: about 4.25 bits, see Q4_K)"
        return WeightBytes(total, formula, True)
    if weights in GGUF_MIXES:
        return _mix_bytes(tensors, weights)
    total, fallbacks = 0, 0
    for t in tensors:
        size, fell_back = _tensor_bytes(t, weights)
        total += size
        fallbacks += fell_back
    bits = bits_per_weight(weights)
    formula = f"matrices at {weights}: {_bits_word(bits)} bits per weight (type size x 8 / block size); " \
              "1-D tensors in F32"
    if fallbacks:
        formula += f"; {fallbacks:,} matrices whose rows are not whole blocks in F16"
    return WeightBytes(total, formula, True)


def _tensor_bytes(t: TensorInfo, gguf_type: str) -> tuple[int, int]:
    """(bytes, 1 if the tensor could not take the type) of one tensor quantised the llama.cpp way."""
    if len(t.shape) < 2:
        return t.elements * 4, 0
    quant = dtypes.get(gguf_type)
    if t.shape[-1] % quant.block_size:
        return t.elements * 2, 1
    return t.elements // quant.block_size * quant.type_size, 0


def _more_bits(index: int, count: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers, and every third one between."""
    return index < count // 8 or index >= 7 * count // 8 or (index - count // 8) % 3 == 2


def _mix_bytes(tensors: list[TensorInfo], mix: str) -> WeightBytes:
    base, more = GGUF_MIXES[mix]
    promoted: set[str] = set()
    for role in ("attention.v", "mlp.down"):
        ordered = sorted((t for t in tensors if t.role == role and len(t.shape) >= 2),
                         key=lambda t: (layer_index(t.name) or 0, t.name))
        promoted.update(t.name for i, t in enumerate(ordered) if _more_bits(i, len(ordered)))
    heads = [t for t in tensors if t.role == "head" and len(t.shape) >= 2]
    if not heads:  # tied embeddings: llama.cpp treats the token table as the output head
        heads = [t for t in tensors if t.kind == "embedding" and len(t.shape) >= 2][:1]
    promoted.update(t.name for t in heads)
    total = sum(_tensor_bytes(t, more if t.name in promoted else base)[0] for t in tensors)
    formula = (f"estimate: llama.cpp's {mix} recipe: {more} for the output head and for attn_v and ffn_down in half "
               f"the layers ({len(promoted):,} tensors), {base} elsewhere, 1-D tensors F32; per-model exceptions "
               "(70B attn_v, 8-expert MoE) not followed")
    return WeightBytes(total, formula, False)


def _bytes_word(per: Fraction) -> str:
    if per == 1:
        return "1 byte"
    return f"{per.numerator} bytes" if per.denominator == 1 else f"{float(per):g} bytes"


def _bits_word(bits: Fraction) -> str:
    return f"{float(bits):g}"
