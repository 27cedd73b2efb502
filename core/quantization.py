"""How a quantised checkpoint is stored: the GGUF file type by name, bits per weight overall and per type.

A GGUF file says its recipe in ``general.file_type`` (llama.cpp's ``llama_ftype``, e.g. 15 = Q4_K_M), but a
"Q4_K_M" file mixes several block types; the honest single number is the bits the tensor data takes per
parameter, computed here from the tensors' own byte counts.
"""

from __future__ import annotations

from typing import Any

from core import dtypes
from core.checkpoint import Checkpoint

# llama.cpp's llama_ftype (include/llama.h); retired values keep their names so old files still read right.
LLAMA_FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_1_SOME_F16", 5: "Q4_2", 6: "Q4_3", 7: "Q8_0", 8: "Q5_0",
    9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS",
    24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
    32: "BF16", 33: "Q4_0_4_4", 34: "Q4_0_4_8", 35: "Q4_0_8_8", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
    1024: "GUESSED",
}


def file_type_name(value: Any) -> str | None:
    """``general.file_type`` as llama.cpp names it ("Q4_K_M"); None when absent or not a whole number."""
    if type(value) is not int:
        return None
    name = LLAMA_FILE_TYPES.get(value) or _newer_file_type(value)
    return name if name is not None else f"unknown file type {value}"


def _newer_file_type(value: int) -> str | None:
    """Types added to llama.cpp after our table, as the installed gguf package names them."""
    try:
        from gguf.constants import LlamaFileType
        return LlamaFileType(value).name.removeprefix("MOSTLY_")
    except (ImportError, ValueError):
        return None


def bits_per_weight(dtype_name: str) -> float | None:
    """Stored bits per element of a type, scales included: 8 × block bytes / block elements (Q4_K: 4.5)."""
    dt = dtypes.lookup(dtype_name)
    return None if dt is None else dt.bits_per_element


def quantization_summary(checkpoint: Checkpoint) -> dict[str, Any] | None:
    """File type, overall and per-type bits per weight of the parameters; None when nothing is block-quantised."""
    if not any((found := dtypes.lookup(d)) is not None and found.is_quantized for d in checkpoint.by_dtype()):
        return None  # the remembered dtype totals answer without a pass over a million tensors
    by_type: dict[str, dict[str, Any]] = {}
    quantised = False
    for t in checkpoint.tensors:
        if not t.is_parameter:
            continue
        entry = by_type.setdefault(t.dtype, {"tensors": 0, "parameters": 0, "bytes": 0})
        entry["tensors"] += 1
        entry["parameters"] += t.elements
        entry["bytes"] += t.nbytes
        dt = dtypes.lookup(t.dtype)
        quantised = quantised or (dt is not None and dt.is_quantized)
    if not quantised:
        return None
    for entry in by_type.values():
        entry["bits_per_weight"] = _bits(entry["bytes"], entry["parameters"])
    parameters = sum(e["parameters"] for e in by_type.values())
    data_bytes = sum(e["bytes"] for e in by_type.values())
    ordered = dict(sorted(by_type.items(), key=lambda kv: (-kv[1]["parameters"], kv[0])))
    return {
        "file_type": file_type_name(checkpoint.metadata.get("general.file_type")),
        "bits_per_weight": _bits(data_bytes, parameters),
        "by_type": ordered,
    }


def _bits(nbytes: int, elements: int) -> float | None:
    return 8.0 * nbytes / elements if elements else None


def headline(summary: dict[str, Any]) -> str:
    """"Q4_K_M mix · 4.89 bits per weight": the recipe, and the number that decides size and quality."""
    quant_types = [name for name in summary["by_type"] if _is_quantised(name)]
    name = summary["file_type"] or (quant_types[0] if len(quant_types) == 1 else "quantised")
    mix = " mix" if len(quant_types) > 1 else ""
    bits = summary["bits_per_weight"]
    return f"{name}{mix} · {bits:.2f} bits per weight" if bits is not None else f"{name}{mix}"


def _is_quantised(name: str) -> bool:
    dt = dtypes.lookup(name)
    return dt is not None and dt.is_quantized


_K_MEANING = ("\"K\" marks llama.cpp's k-quants: weights come in super-blocks of 256, split into sub-blocks that each "
              "have their own small scale, and the super-block has one 16-bit scale for those scales.")
_I_MEANING = ("\"IQ\" types store groups of weights as indices into a fixed table (codebook) of likely patterns; "
              "they are made with an importance matrix that keeps the weights that matter most precise.")

# type -> what one block holds, in words (the numbers of bits per weight are computed, never written here)
_BLOCK_WORDS: dict[str, str] = {
    "Q4_0": "4-bit values and one 16-bit scale per block",
    "Q4_1": "4-bit values, a 16-bit scale and a 16-bit minimum per block",
    "Q5_0": "5-bit values and one 16-bit scale per block",
    "Q5_1": "5-bit values, a 16-bit scale and a 16-bit minimum per block",
    "Q8_0": "8-bit values and one 16-bit scale per block",
    "Q8_1": "8-bit values, a 16-bit scale and a 16-bit sum per block",
    "Q1_0": "1-bit signs and one 16-bit scale per block",
    "Q2_K": "2-bit values; 16 sub-blocks of 16 with 4-bit scales and minimums",
    "Q3_K": "3-bit values; 16 sub-blocks of 16 with 6-bit scales",
    "Q4_K": "4-bit values; 8 sub-blocks of 32 with 6-bit scales and minimums",
    "Q5_K": "5-bit values; 8 sub-blocks of 32 with 6-bit scales and minimums",
    "Q6_K": "6-bit values; 16 sub-blocks of 16 with 8-bit scales",
    "Q8_K": "8-bit values and a 32-bit scale, with sums of 16 (llama.cpp uses it for intermediate results)",
    "IQ4_NL": "4-bit indices into a fixed non-linear table of 16 values, one 16-bit scale per block",
    "IQ4_XS": "4-bit indices into a non-linear table; 8 sub-blocks of 32 with 6-bit scales",
    "TQ1_0": "ternary weights (-1, 0 or +1) packed five to a byte, one 16-bit scale",
    "TQ2_0": "ternary weights (-1, 0 or +1) in 2 bits each, one 16-bit scale",
    "MXFP4": "4-bit floats (E2M1) sharing one 8-bit power-of-two scale (OCP microscaling)",
    "NVFP4": "4-bit floats (E2M1), with an 8-bit FP8 scale for every 16",
}
DESCRIBED_TYPES = tuple(_BLOCK_WORDS)  # quant types with a block described in words (the Legend lists them)
_PLAIN_WORDS: dict[str, str] = {
    "F32": "32-bit floating point: full precision, stored as is.",
    "F16": "16-bit floating point (half precision), stored as is.",
    "BF16": "bfloat16: 16 bits with the range of 32-bit floats and less precision, stored as is.",
    "F64": "64-bit floating point, stored as is.",
}


def describe_type(name: str) -> str:
    """A type in plain words for tooltips and the Legend: block size, what a block holds, bits per weight."""
    if name in _PLAIN_WORDS:
        return f"{name}: {_PLAIN_WORDS[name]}"
    dt = dtypes.lookup(name)
    if dt is None:
        return f"{name}: a type this program does not know."
    if not dt.is_quantized:
        return f"{name}: {dt.bits_per_element:g} bits per value, stored as is."
    words = _BLOCK_WORDS.get(name, "a block format of llama.cpp")
    text = (f"{name}: blocks of {dt.block_size} weights in {dt.type_size} bytes ({words}): "
            f"{dt.bits_per_element:g} bits per weight.")
    if name.startswith("IQ"):
        text += " " + _I_MEANING
    elif "_K" in name:
        text += " " + _K_MEANING
    return text


def describe_file_type(name: str) -> str:
    """What a llama.cpp recipe name means: the main type, and S/M/L/XS for how many tensors get a larger one."""
    size = name.rsplit("_", 1)[-1] if "_" in name else ""
    sizes = {"S": "small: the fewest tensors get a larger type", "M": "medium: some sensitive tensors (attention "
             "values, MLP down projections) get a larger type", "L": "large: more tensors get a larger type",
             "XS": "extra small", "XXS": "extra extra small"}
    if size in sizes and dtypes.lookup(name) is None:
        return (f"{name} is llama.cpp's recipe: mostly {name.rsplit('_', 1)[0]} blocks, {sizes[size]}; "
                "norms stay 32-bit floats.")
    return f"{name} is llama.cpp's recipe: mostly {name} blocks; norms and a few small tensors stay 32-bit floats."
