"""Bit-pattern counting compiled once per process with llvmlite: the statistics' hot loop at 3.5x np.bincount.

Exact statistics of bf16/f16/fp8 tensors are counts of every bit pattern, and of float32 tensors counts of their
top 16 bits. ``np.bincount`` widens each 2-byte pattern to an 8-byte index and scans twice (0.45-0.5 billion
values a second on one core of the 2-core development machine); this plain loop, compiled by LLVM for the host
CPU, counts 1.6 billion (measured by benchmarks/native_count.py). The kernels are called through ctypes, which
releases the GIL, so the statistics' worker threads count in parallel and the UI thread is never held.

Compiled by core.native_jit (llvmlite: ~0.09 s import, ~0.01 s to compile these three loops; measured).
Nothing from a file reaches the compiled code but values of the declared width, and each is an index into a table
of exactly 2**width entries, so no value can index outside it.

``counter()`` is None where llvmlite is missing, where compiling fails, or where ``WEIGHTSCOPE_NATIVE=0``: the
callers then use numpy, whose counts are the same (the tests hold every kernel equal to np.bincount).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.native_jit import CompiledOnce, compile_functions


@dataclass(frozen=True)
class _Kernel:
    """One compiled loop: count(values, n, table) adds 1 to the int32 table[value >> shift] for each value."""

    name: str
    width: int  # bits per value read from memory
    shift: int  # right shift applied before counting (16 for float32 keys)

    @property
    def table_size(self) -> int:
        return 1 << (self.width - self.shift)


CALL_VALUES = 1 << 30  # values counted per call: no int32 count can overflow
KERNELS = (_Kernel("count_u8", 8, 0), _Kernel("count_u16", 16, 0), _Kernel("count_u32_top16", 32, 16))


class NativeCounter:
    """The compiled kernels, callable on contiguous numpy arrays of the matching item size."""

    def __init__(self, engine: Any, functions: dict[str, Any]) -> None:
        self._engine = engine  # keeps the machine code alive as long as the functions
        self._functions = functions

    def count_u8(self, values: np.ndarray) -> np.ndarray:
        """Counts of each of the 256 byte values (int64), as np.bincount(values.view(uint8), minlength=256)."""
        return self._count(KERNELS[0], values, 1)

    def count_u16(self, values: np.ndarray) -> np.ndarray:
        """Counts of each of the 65,536 16-bit patterns (int64)."""
        return self._count(KERNELS[1], values, 2)

    def count_f32_keys(self, values: np.ndarray) -> np.ndarray:
        """Counts of the top 16 bits of each 32-bit pattern (float32 values' bf16 keys), int64."""
        return self._count(KERNELS[2], values, 4)

    def _count(self, kernel: _Kernel, values: np.ndarray, itemsize: int) -> np.ndarray:
        if values.itemsize != itemsize:
            raise ValueError(f"{kernel.name} counts {itemsize}-byte values, not {values.itemsize}-byte ones")
        flat = np.ascontiguousarray(values).reshape(-1)
        function = self._functions[kernel.name]
        total = None
        for start in range(0, max(flat.size, 1), CALL_VALUES):
            part = flat[start : start + CALL_VALUES]
            table = np.zeros(kernel.table_size, dtype=np.int32)  # half the cache footprint of int64: faster
            function(part.ctypes.data, part.size, table.ctypes.data)
            total = table.astype(np.int64) if total is None else total + table
        return total


def _compile() -> NativeCounter:
    signature = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
    engine, functions = compile_functions(_module_ir(), {k.name: signature for k in KERNELS})
    return NativeCounter(engine, functions)


_COUNTER = CompiledOnce(_compile)


def counter() -> NativeCounter | None:
    """The process's compiled counter, made on first use (thread-safe); None where it cannot be had."""
    return _COUNTER.get()


def unavailable_reason() -> str | None:
    """Why counter() is None (for error messages and skipped tests), or None when it is available."""
    return _COUNTER.reason()


def _module_ir() -> str:
    from llvmlite import ir

    module = ir.Module(name="weightscope_count")
    for kernel in KERNELS:
        _add_kernel(ir, module, kernel)
    return str(module)


def _add_kernel(ir: Any, module: Any, kernel: _Kernel) -> None:
    """void name(iW* values, i64 n, i32* table): for i < n: table[zext(values[i] >> shift)] += 1."""
    i32, i64, item = ir.IntType(32), ir.IntType(64), ir.IntType(kernel.width)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [item.as_pointer(), i64, i32.as_pointer()]),
                     name=kernel.name)
    values, n, table = fn.args
    entry, loop, done = (fn.append_basic_block(label) for label in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, i64(0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(i64)
    i.add_incoming(i64(0), entry)
    value = b.load(b.gep(values, [i]))
    if kernel.shift:
        value = b.lshr(value, item(kernel.shift))  # logical shift: the index stays below 2**(width - shift)
    slot = b.gep(table, [b.zext(value, i64)])
    b.store(b.add(b.load(slot), i32(1)), slot)
    following = b.add(i, i64(1))
    i.add_incoming(following, loop)
    b.cbranch(b.icmp_signed("<", following, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
