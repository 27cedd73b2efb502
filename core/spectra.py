"""The spectral engine: WeightWatcher's metrics of every weight matrix, as a generator the GUI can drive.

For each matrix (core.gram: 2-D weights, conv kernels as WeightWatcher slices them) the Gram matrix is built
from row blocks read from the file, its eigenvalues found in float64, and the metrics derived from them
(core.spectra_metrics). ``analyze_spectra`` yields a SpectraProgress after every block product, asks
``should_stop`` between blocks (CancelledError), and never fails a run for one matrix: NaN or Inf values, an
all-zero matrix, too few eigenvalues or a tensor that is no matrix become that matrix's reason. No matrix is
skipped for its size; the progress message says what its Gram matrix costs. Eigenvalues are cached on disk
(core.spectra_cache), keyed like the statistics.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import dtypes
from core.checkpoint import Checkpoint, TensorInfo
from core.errors import CancelledError, CheckpointError
from core.exact_rank import gram_cannot_decide, singular_values
from core.gram import DEFAULT_BLOCK_BYTES, MatrixLayout, accumulate, gram_steps, make_gram_engine, matrix_layout
from core.numbers import human_bytes
from core.spectra_metrics import MIN_EVALS, SpectralMetrics, compute_metrics, summarize

CACHED_DEVICE_LABEL = "cache"


@dataclass
class MatrixSpectrum:
    """One tensor's spectrum and metrics, or the reason it has none."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    evals: np.ndarray | None = None  # ascending, WeightWatcher's normalisation applied
    metrics: SpectralMetrics | None = None
    reason: str | None = None  # why not analysed ("12 NaN values")
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.metrics is None:
            out.update(n_evals=0, verdict="not analysed", reason=f"not analysed: {self.reason}")
        else:
            out.update(self.metrics.to_json())
        return out


@dataclass
class SpectraResult:
    """Spectra of the matrices analysed so far (only ever grows: the GUI thread may read it meanwhile)."""

    device: str
    seconds: float = 0.0
    matrices: dict[str, MatrixSpectrum] = field(default_factory=dict)

    def analysed(self) -> list[MatrixSpectrum]:
        return [m for m in list(self.matrices.values()) if m.metrics is not None]

    def summary(self) -> dict[str, Any]:
        """WeightWatcher's model averages, and how many matrices got each verdict."""
        done = self.analysed()
        verdicts: dict[str, int] = {}
        for m in done:
            assert m.metrics is not None
            verdicts[m.metrics.verdict] = verdicts.get(m.metrics.verdict, 0) + 1
        return {**summarize([m.metrics for m in done if m.metrics is not None]), "matrices": len(done),
                "not_analysed": len(self.matrices) - len(done), "verdicts": verdicts}


@dataclass
class SpectraProgress:
    """Yielded after every block product and at each matrix's end; ``done``/``total`` in arithmetic units."""

    done: float
    total: float
    tensor: str
    message: str
    tensor_done: bool
    result: SpectraResult

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 1.0


def default_matrices(checkpoint: Checkpoint) -> list[TensorInfo]:
    """The model's weight matrices and conv kernels (2-D and 4-D parameters): what WeightWatcher analyses."""
    return [t for t in checkpoint.tensors if len(t.shape) in (2, 4) and t.is_parameter]


def why_not_matrix(t: TensorInfo) -> str | None:
    """Why ``t`` gets no spectrum before any of it is read, or None."""
    from core.stats import why_not_analyzable

    layout = matrix_layout(t)
    if isinstance(layout, str):
        return layout
    why = why_not_analyzable(t)
    if why is not None:
        return why
    found = dtypes.lookup(t.dtype)
    if found is None or not found.is_float:
        return f"not floating point ({t.dtype})"
    if layout.n_evals < MIN_EVALS:
        return f"too few eigenvalues for a fit: {layout.n_evals} (at least {MIN_EVALS})"
    return None


def gram_message(layout: MatrixLayout) -> str:
    """What the matrix costs, for the progress line ("Gram 16384² float64 = 2 GiB")."""
    orders = sorted({g.gram_order for g in layout.groups})
    slices = sum(g.slices for g in layout.groups)
    n = orders[-1]
    head = f"{slices} × " if slices > 1 else ""
    return f"{head}Gram {n}² float64 = {human_bytes(layout.gram_bytes)}"


def analyze_spectra(
    checkpoint: Checkpoint | str | os.PathLike[str],
    tensors: Iterable[TensorInfo | str] | None = None,
    *,
    device: str = "auto",
    use_cache: bool = True,
    should_stop: Callable[[], bool] | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    impl: str | None = None,
) -> Generator[SpectraProgress, None, SpectraResult]:
    """Stream the spectra of ``tensors`` (default: default_matrices); returns the SpectraResult.

    ``device``: auto, cpu, cuda, cuda:N or mps (an unavailable one raises DeviceError); ``impl="torch"`` runs
    the torch code on the CPU (agreement tests). Raises CancelledError between blocks once ``should_stop()``.
    """
    from core.compute import validate_device

    validate_device(device)
    own = not isinstance(checkpoint, Checkpoint)
    if own:
        from core.formats import open_checkpoint

        checkpoint = open_checkpoint(os.fspath(checkpoint))
    assert isinstance(checkpoint, Checkpoint)
    run = _Run(checkpoint, device, impl, max(1, int(block_bytes)), should_stop)
    try:
        selected = default_matrices(checkpoint) if tensors is None else _named(checkpoint, tensors)
        return (yield from run.each(selected, use_cache))
    finally:
        run.close()
        if own:
            checkpoint.close()


def run_spectra(checkpoint: Checkpoint | str | os.PathLike[str], tensors: Iterable[TensorInfo | str] | None = None,
                **kwargs: Any) -> SpectraResult:
    """``analyze_spectra`` without progress."""
    gen = analyze_spectra(checkpoint, tensors, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _named(checkpoint: Checkpoint, tensors: Iterable[TensorInfo | str]) -> list[TensorInfo]:
    by_name = {t.name: t for t in checkpoint.tensors}
    out: dict[str, TensorInfo] = {}
    for item in tensors:
        name = item if isinstance(item, str) else item.name
        if name not in by_name:
            raise CheckpointError(f"no tensor named {name[:200]!r} in this checkpoint")
        out[name] = by_name[name]
    return list(out.values())


def _cost(layout: MatrixLayout) -> float:
    """Multiply-adds of the Gram matrices and their eigensolvers: a proxy for time."""
    return float(sum(g.slices * (g.rows * g.cols * g.gram_order + g.gram_order**3) for g in layout.groups))


class _NonFiniteError(Exception):
    pass


class _Run:
    """One analysis: the engine (made when a matrix must really be computed), the cache, the clock."""

    def __init__(self, checkpoint: Checkpoint, device: str, impl: str | None, block_bytes: int,
                 should_stop: Callable[[], bool] | None) -> None:
        self.checkpoint, self.device, self.impl = checkpoint, device, impl
        self.block_bytes, self.should_stop = block_bytes, should_stop
        self.engine: Any = None
        if device not in ("auto", "cpu") or impl is not None:
            self._engine()  # an explicit device must exist even when everything is cached

    def _engine(self) -> Any:
        if self.engine is None:
            self.engine = make_gram_engine(self.device, self.impl)
        return self.engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def _stop_if_asked(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise CancelledError("spectral analysis cancelled")

    def each(self, selected: list[TensorInfo], use_cache: bool) -> Generator[SpectraProgress, None, SpectraResult]:
        start = time.perf_counter()
        result = SpectraResult(device=self.engine.label if self.engine is not None else CACHED_DEVICE_LABEL)
        cache = None
        if use_cache:
            from core.spectra_cache import SpectraCache

            cache = SpectraCache.default()
        plans = [(t, why_not_matrix(t)) for t in selected]
        costs = [0.0 if why else _cost(matrix_layout(t)) for t, why in plans]  # type: ignore[arg-type]
        total, done = sum(costs), 0.0
        everything = self.checkpoint.tensors
        try:
            for (t, why), cost in zip(plans, costs, strict=True):
                self._stop_if_asked()
                spectrum = MatrixSpectrum(t.name, tuple(t.shape), t.dtype)
                found = cache.get(t, everything) if cache is not None and why is None else None
                if why is not None:
                    spectrum.reason = why
                elif found is not None:
                    spectrum.evals, spectrum.reason = found[0], found[1] or None
                    spectrum.cached = True
                else:
                    layout = matrix_layout(t)
                    assert not isinstance(layout, str)
                    result.device = self._engine().label
                    message = gram_message(layout)
                    gen = self._spectrum(t, layout, cost)
                    while True:
                        try:
                            step = next(gen)
                        except StopIteration as stop:
                            spectrum.evals, reason = stop.value
                            spectrum.reason = reason or None
                            break
                        result.seconds = time.perf_counter() - start
                        yield SpectraProgress(done + min(step, cost), total, t.name, message, False, result)
                    if cache is not None:
                        cache.put(t, (spectrum.evals, spectrum.reason or ""), everything)
                if spectrum.evals is not None:
                    layout = matrix_layout(t)
                    assert not isinstance(layout, str)
                    spectrum.metrics = compute_metrics(spectrum.evals, layout.n_large)
                result.matrices[t.name] = spectrum
                done += cost
                result.seconds = time.perf_counter() - start
                yield SpectraProgress(done, total, t.name, "", True, result)
        finally:
            if cache is not None:
                cache.flush()
        if cache is not None:
            cache.prune()
        result.seconds = time.perf_counter() - start
        return result

    def _spectrum(self, t: TensorInfo, layout: MatrixLayout, cost: float) -> Generator[float, None,
                                                                                       tuple[np.ndarray | None, str]]:
        """Yields arithmetic done so far within this matrix; returns (sorted eigenvalues, "") or (None, reason)."""
        engine = self.engine
        column_blocks = getattr(engine, "column_blocks", False)
        steps = sum(gram_steps(g, self.block_bytes, column_blocks) + g.slices for g in layout.groups)
        unit = cost / max(1, steps)
        done = 0.0
        pooled: list[np.ndarray] = []

        def check(block: np.ndarray) -> None:
            if not np.isfinite(block).all():
                raise _NonFiniteError

        try:
            for group in layout.groups:
                grams = None
                for item in accumulate(engine, self.checkpoint, t, group, self.block_bytes, check):
                    if item is None:
                        done += unit
                        yield done
                        self._stop_if_asked()
                    else:
                        grams = item
                undecided = []
                for s in range(group.slices):
                    pooled.append(engine.eigenvalues(grams, s))
                    if gram_cannot_decide(pooled[-1], group.rows, group.cols):
                        undecided.append((len(pooled) - 1, s))
                    done += unit
                    yield done
                    self._stop_if_asked()
                del grams
                for index, s in undecided:  # the rank needs what the Gram lost: the matrix's own singular values
                    for sv in singular_values(self.checkpoint, t, group, s, self.block_bytes):
                        if sv is None:
                            yield done
                            self._stop_if_asked()
                        else:
                            pooled[index] = sv * sv
        except _NonFiniteError:
            return None, self._non_finite_reason(t)
        except np.linalg.LinAlgError:  # never seen on a finite Gram matrix; a reason, not a failed run
            return None, "the eigensolver did not converge"
        evals = np.sort(np.maximum(np.concatenate(pooled), 0.0)) * layout.scale
        if evals[-1] <= 0:
            return None, "all values are zero"
        return evals, ""

    def _non_finite_reason(self, t: TensorInfo) -> str:
        """Count NaN and Inf over the whole tensor, chunk by chunk (the Gram matrix is abandoned)."""
        nan = inf = 0
        step = max(1, self.block_bytes // 8)
        for first in range(0, t.elements, step):
            self._stop_if_asked()
            x = self.checkpoint.read(t, first, min(step, t.elements - first))
            nan += int(np.count_nonzero(np.isnan(x)))
            inf += int(np.count_nonzero(np.isinf(x)))
        parts = [f"{nan} NaN value{'s' if nan != 1 else ''}"] if nan else []
        parts += [f"{inf} Inf value{'s' if inf != 1 else ''}"] if inf else []
        return " and ".join(parts) or "non-finite values"
