"""Stored matrix values widened to float64 in one compiled pass, counting the non-finite ones on the way.

The spectral engine multiplies float64 blocks. numpy turns a block of bf16 patterns into float64 in four passes
(widen to 32 bits, shift, the NaN/Inf check, the cast), each writing a temporary; on the 2-core machine that
work, done by the reader thread while both cores multiply, slowed every block product. This loop reads each
value once and writes its float64 once (compiled by core.native_jit).

``widener()`` is None where compiling is not possible; callers then use numpy (the tests hold both equal, NaN and
Inf patterns included).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from core.native_jit import CompiledOnce, compile_functions

SOURCES = {"BF16": ("widen_bf16", np.uint16), "F32": ("widen_f32", np.float32)}  # stored dtype -> kernel, array


class NativeWidener:
    """The compiled loops: widen(values, out) for the stored dtypes in SOURCES."""

    def __init__(self, engine: Any, functions: dict[str, Any]) -> None:
        self._engine = engine  # keeps the machine code alive as long as the functions
        self._functions = functions

    def handles(self, dtype_name: str, values: np.ndarray) -> bool:
        """Whether ``values`` (as read: bf16 patterns as uint16) can be widened here."""
        kernel = SOURCES.get(dtype_name)
        return kernel is not None and values.dtype == kernel[1] and values.flags.c_contiguous

    def widen(self, dtype_name: str, values: np.ndarray, out: np.ndarray) -> int:
        """out[...] = the float64 values of ``values`` (same size, both C-contiguous); returns how many are NaN
        or infinite."""
        if not self.handles(dtype_name, values):
            raise ValueError(f"cannot widen {dtype_name} values of dtype {values.dtype}")
        if out.dtype != np.float64 or out.size != values.size or not out.flags.c_contiguous:
            raise ValueError("out must be a C-contiguous float64 array of the same size")
        function = self._functions[SOURCES[dtype_name][0]]
        return int(function(values.ctypes.data, values.size, out.ctypes.data))


def _compile() -> NativeWidener:
    signature = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
    engine, functions = compile_functions(_module_ir(), {name: signature for name, _ in SOURCES.values()})
    return NativeWidener(engine, functions)


_WIDENER = CompiledOnce(_compile)


def widener() -> NativeWidener | None:
    """The process's compiled widener, made on first use (thread-safe); None where it cannot be had."""
    return _WIDENER.get()


def unavailable_reason() -> str | None:
    return _WIDENER.reason()


def _module_ir() -> str:
    from llvmlite import ir

    module = ir.Module(name="weightscope_widen")
    _add_kernel(ir, module, "widen_bf16", ir.IntType(16))
    _add_kernel(ir, module, "widen_f32", ir.FloatType())
    return str(module)


def _add_kernel(ir: Any, module: Any, name: str, item: Any) -> None:
    """i64 name(item* values, i64 n, double* out): out[i] = double(values[i]); returns the count of non-finite
    values (x - x is NaN exactly for NaN and +-Inf). bf16 items are bit patterns: the float32 of ``p << 16``."""
    i32, i64, f64 = ir.IntType(32), ir.IntType(64), ir.DoubleType()
    fn = ir.Function(module, ir.FunctionType(i64, [item.as_pointer(), i64, f64.as_pointer()]), name=name)
    values, n, out = fn.args
    entry, loop, done = (fn.append_basic_block(label) for label in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, i64(0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(i64)
    bad = b.phi(i64)
    i.add_incoming(i64(0), entry)
    bad.add_incoming(i64(0), entry)
    value = b.load(b.gep(values, [i]))
    if isinstance(item, ir.IntType):
        value = b.bitcast(b.shl(b.zext(value, i32), i32(16)), ir.FloatType())
    wide = b.fpext(value, f64)
    b.store(wide, b.gep(out, [i]))
    difference = b.fsub(wide, wide)
    counted = b.add(bad, b.zext(b.fcmp_unordered("uno", difference, difference), i64))
    following = b.add(i, i64(1))
    i.add_incoming(following, loop)
    bad.add_incoming(counted, loop)
    b.cbranch(b.icmp_signed("<", following, n), loop, done)
    b.position_at_end(done)
    result = b.phi(i64)
    result.add_incoming(i64(0), entry)
    result.add_incoming(counted, loop)
    b.ret(result)
