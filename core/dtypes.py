"""One naming scheme for element types across safetensors, GGUF and PyTorch.

Names follow safetensors (F32, BF16, I64 ...) and GGUF's quant names (Q4_K,
IQ2_XS, MXFP4 ...). Quantised types store ``block_size`` elements in
``type_size`` bytes; plain types have ``block_size == 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np


@dataclass(frozen=True, slots=True)
class DType:
    name: str
    block_size: int  # elements per block (1 for plain types)
    type_size: int  # bytes per block
    storage: str | None  # numpy dtype of the stored elements; None for quantised blocks
    is_float: bool
    is_quantized: bool = False

    @property
    def bits_per_element(self) -> float:
        return 8.0 * self.type_size / self.block_size

    def nbytes(self, elements: int) -> int:
        """Bytes that ``elements`` values occupy (elements must fill whole blocks)."""
        return (elements // self.block_size) * self.type_size


_PLAIN = [
    DType("F64", 1, 8, "<f8", True),
    DType("F32", 1, 4, "<f4", True),
    DType("F16", 1, 2, "<f2", True),
    DType("BF16", 1, 2, "<u2", True),
    DType("F8_E4M3", 1, 1, "u1", True),
    DType("F8_E5M2", 1, 1, "u1", True),
    DType("F8_E8M0", 1, 1, "u1", True),
    DType("I64", 1, 8, "<i8", False),
    DType("I32", 1, 4, "<i4", False),
    DType("I16", 1, 2, "<i2", False),
    DType("I8", 1, 1, "i1", False),
    DType("U64", 1, 8, "<u8", False),
    DType("U32", 1, 4, "<u4", False),
    DType("U16", 1, 2, "<u2", False),
    DType("U8", 1, 1, "u1", False),
    DType("BOOL", 1, 1, "u1", False),
    DType("C64", 1, 8, "<c8", False),
    DType("C128", 1, 16, "<c16", False),
]
_BY_NAME: dict[str, DType] = {d.name: d for d in _PLAIN}


@cache
def _quant_types() -> dict[str, DType]:
    """GGUF quant types straight from the gguf package's table, so new types come for free."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    out: dict[str, DType] = {}
    for qtype, (block, size) in GGML_QUANT_SIZES.items():
        name = GGMLQuantizationType(qtype).name
        if name in _BY_NAME:
            continue
        out[name] = DType(name, block, size, None, True, is_quantized=True)
    return out


def plain_sizes() -> dict[str, int]:
    """Bytes per element of every plain (not block-quantised) type, by name."""
    return {d.name: d.type_size for d in _PLAIN}


def lookup(name: str) -> DType | None:
    """The DType called ``name``, or None if unknown."""
    found = _BY_NAME.get(name)
    if found is None:
        found = _quant_types().get(name)
    return found


def get(name: str) -> DType:
    found = lookup(name)
    if found is None:
        raise KeyError(name)
    return found


def numpy_storage(name: str) -> np.dtype:
    """numpy dtype of stored elements (BF16 and F8 are raw unsigned bit patterns)."""
    storage = get(name).storage
    if storage is None:
        raise ValueError(f"{name} is block-quantised and has no per-element storage dtype")
    return np.dtype(storage)
