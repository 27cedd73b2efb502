"""'auto' on a machine without a GPU counts with the compiled loops; without them it skips torch for small jobs
(importing it costs seconds), never for big ones."""

from __future__ import annotations

import sys

import pytest

from core import compute, native_count


@pytest.mark.parametrize("data_bytes", [1 << 20, compute.TORCH_CPU_WORTH_BYTES, None])
def test_auto_without_a_gpu_uses_compiled_counting(monkeypatch: pytest.MonkeyPatch, data_bytes: int | None) -> None:
    if native_count.counter() is None:
        pytest.skip(f"no compiled counting here: {native_count.unavailable_reason()}")
    monkeypatch.setattr(compute, "accelerator_possible", lambda: False)
    imported = "torch" in sys.modules
    backend = compute.make_backend("auto", data_bytes=data_bytes, threads=1)
    backend.close()
    assert backend.impl == "native"
    assert compute.make_backend("cpu", threads=1).impl == "native"
    assert imported or "torch" not in sys.modules  # choosing it imported no torch


@pytest.mark.parametrize(("possible", "data_bytes", "impl"), [
    (False, 1 << 20, "numpy"),  # small job, no GPU possible: numpy, no torch import
    (False, compute.TORCH_CPU_WORTH_BYTES, "torch"),  # big job: torch's bincount pays for its import
    (False, None, "torch"),  # size unknown: as before
    (True, 1 << 20, "torch"),  # a GPU may be there: ask torch
])
def test_auto_backend_by_job_size_without_compiled_counting(monkeypatch: pytest.MonkeyPatch, possible: bool,
                                                            data_bytes: int | None, impl: str) -> None:
    monkeypatch.setattr(compute, "accelerator_possible", lambda: possible)
    monkeypatch.setattr(native_count, "counter", lambda: None)
    backend = compute.make_backend("auto", data_bytes=data_bytes, threads=1)
    try:
        assert backend.impl == impl
    finally:
        backend.close()


def test_explicit_choices_ignore_the_size_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compute, "accelerator_possible", lambda: False)
    for impl in ("numpy", "torch", "native"):
        backend = compute.make_backend("cpu", impl=impl, data_bytes=1, threads=1)
        assert backend.impl == impl
        backend.close()


def test_a_machine_that_might_have_a_gpu_but_has_none_counts_natively(monkeypatch: pytest.MonkeyPatch) -> None:
    if native_count.counter() is None:
        pytest.skip(f"no compiled counting here: {native_count.unavailable_reason()}")
    monkeypatch.setattr(compute, "accelerator_possible", lambda: True)  # torch is asked, and finds no GPU here
    backend = compute.make_backend("auto", data_bytes=1 << 20, threads=1)
    backend.close()
    assert backend.impl == "native"


def test_unknown_implementation_is_refused() -> None:
    with pytest.raises(compute.DeviceError, match="unknown implementation"):
        compute.make_backend("cpu", impl="fortran")
