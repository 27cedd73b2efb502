"""'auto' on a machine without a GPU skips torch for small jobs (importing it costs seconds), never for big ones."""

from __future__ import annotations

import pytest

from core import compute


@pytest.mark.parametrize(("possible", "data_bytes", "impl"), [
    (False, 1 << 20, "numpy"),  # small job, no GPU possible: numpy, no torch import
    (False, compute.TORCH_CPU_WORTH_BYTES, "torch"),  # big job: torch's bincount pays for its import
    (False, None, "torch"),  # size unknown: as before
    (True, 1 << 20, "torch"),  # a GPU may be there: ask torch
])
def test_auto_backend_by_job_size(monkeypatch: pytest.MonkeyPatch, possible: bool, data_bytes: int | None,
                                  impl: str) -> None:
    monkeypatch.setattr(compute, "accelerator_possible", lambda: possible)
    backend = compute.make_backend("auto", data_bytes=data_bytes, threads=1)
    try:
        assert backend.impl == impl
    finally:
        backend.close()


def test_explicit_choices_ignore_the_size_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compute, "accelerator_possible", lambda: False)
    for impl in ("numpy", "torch"):
        backend = compute.make_backend("cpu", impl=impl, data_bytes=1, threads=1)
        assert backend.impl == impl
        backend.close()
