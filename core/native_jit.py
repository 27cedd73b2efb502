"""Small loops compiled once per process with llvmlite, shared by the statistics' counting (core.native_count) and
the spectra's widening of stored values to float64 (core.native_widen).

Why llvmlite: LLVM code for the host CPU (AVX-512 where present) without numba's 0.45 s of import and type
inference, nor a disk cache a packaged app cannot always write; no compiler needs to be installed. The functions
are called through ctypes, which releases the GIL. Where llvmlite is missing, compiling fails, or
``WEIGHTSCOPE_NATIVE=0``, ``CompiledOnce.get`` is None and the callers use numpy, whose results the tests hold
equal.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

SWITCH = "WEIGHTSCOPE_NATIVE"


class CompiledOnce:
    """A value built on first use (thread-safe), or None with the reason it could not be built."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._done = False
        self._value: Any = None
        self._why: str | None = None

    def get(self) -> Any:
        if not self._done:
            with self._lock:
                if not self._done:
                    self._value, self._why = self._make()
                    self._done = True
        return self._value

    def reason(self) -> str | None:
        """Why get() is None (for error messages and skipped tests), or None when it is available."""
        self.get()
        return self._why

    def _make(self) -> tuple[Any, str | None]:
        if os.environ.get(SWITCH) == "0":
            return None, f"switched off by {SWITCH}=0"
        try:
            return self._build(), None
        except Exception as exc:  # any failure (no llvmlite, no JIT on this platform) means numpy
            return None, f"{type(exc).__name__}: {exc}"


def compile_functions(module_ir: str, signatures: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Compile LLVM IR for this CPU; returns the engine (keep it alive as long as the functions) and each named
    function as a ctypes function of its signature."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = llvm.parse_assembly(module_ir)
    module.verify()
    engine = llvm.create_mcjit_compiler(module, _target_machine(llvm))
    engine.finalize_object()
    functions = {name: signature(engine.get_function_address(name)) for name, signature in signatures.items()}
    return engine, functions


def _target_machine(llvm: Any) -> Any:
    """Code for this CPU's instruction set (AVX-512 where present), or generic code where LLVM cannot tell."""
    target = llvm.Target.from_default_triple()
    try:
        return target.create_target_machine(opt=3, cpu=llvm.get_host_cpu_name(),
                                            features=llvm.get_host_cpu_features().flatten())
    except RuntimeError:
        return target.create_target_machine(opt=3)

