"""Where the arithmetic of the statistics runs: numpy or torch, on the CPU, CUDA or Apple MPS.

A Backend turns an element range of one tensor into a summary (core.stats_summary).
On the CPU the range is cut into blocks of BLOCK_ELEMENTS that worker threads
read and count in parallel (both cores busy; numpy and torch release the GIL),
merged in block order so the result never depends on thread timing. On CUDA a
whole chunk of a plain float tensor is read (in parallel blocks) into a pinned
host buffer, copied to the GPU and counted there; quantised, integer and strided
tensors take the CPU path on every device (dequantising is CPU work anyway).
torch is imported only here, and only when a backend is first made.

Counts (bit patterns, special values, zeros, bf16 keys), min, max and the stored
extremes are integers or exact values, so they are identical on every device and
path; float64 moment sums of F32/F64 data can differ in the last bits between
devices (different summation order), far inside the 1e-9 tolerance.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from core import dtypes, native_count
from core.checkpoint import Checkpoint, TensorInfo
from core.errors import CheckpointError
from core.foreground import give_way
from core.stats_summary import (
    INT_SPAN,
    K_EXTREMES,
    KEYS,
    PATTERN_DTYPES,
    CountStore,
    FloatSummary,
    PatternSummary,
    Summary,
    _key_bounds,
    _key_order,
    f64_keys,
    merge_all,
    pattern_count,
)

# Values per block a worker reads and counts at once. With the compiled counting loops the per-block work in Python
# (summary, merge of 65,536 counts) set the pace at 1 Mi: 2 Mi took the in-process engine from 0.52-0.74 s to
# 0.43-0.47 s for 2 GB of bf16 (4 Mi: no faster, and longer between the pauses that let the window draw).
BLOCK_ELEMENTS = 1 << 21
SMALL_BLOCK = 1 << 14  # below this torch.bincount's fixed cost (ms on a busy machine) exceeds numpy's
_SPECIAL_KEYS = np.r_[0x7F80:0x8000, 0xFF80:0x10000]


def summary_kind(dtype: str) -> str:
    """'pattern' (exact counts), 'float' (moments + bf16 keys) or 'none' (complex: no statistics)."""
    if dtype in PATTERN_DTYPES:
        return "pattern"
    if dtype in ("C64", "C128"):
        return "none"
    return "float"


# --------------------------------------------------------------------------- numpy kernels
def numpy_pattern_counts(raw: np.ndarray, fmt: str) -> np.ndarray:
    flat = raw.reshape(-1)
    if pattern_count(fmt) == 256:
        return np.bincount(flat.view(np.uint8), minlength=256).astype(np.int64)
    return np.bincount(flat.view(np.uint16), minlength=KEYS).astype(np.int64)


def numpy_f32_key_counts(x: np.ndarray) -> np.ndarray:
    """bf16-key counts of float32 values: the top 16 bits of each pattern."""
    return np.bincount(x.view(np.uint32) >> 16, minlength=KEYS)


def numpy_float_summary(x: np.ndarray, dtype_names: tuple[str, ...],
                        f32_key_counts: Callable[[np.ndarray], np.ndarray] = numpy_f32_key_counts) -> FloatSummary:
    """Summary of one block of float (or wide integer) values; ``f32_key_counts`` counts float32 keys (the torch
    backend passes a faster counter: counts are exact, so the summary is the same)."""
    if x.size <= K_EXTREMES:
        return _small_float_summary(x, dtype_names)
    return dense_float_summary(x, dtype_names, f32_key_counts)


def dense_float_summary(x: np.ndarray, dtype_names: tuple[str, ...],
                        f32_key_counts: Callable[[np.ndarray], np.ndarray] = numpy_f32_key_counts) -> FloatSummary:
    """numpy_float_summary through a dense 65,536-entry count array (any size; the definition for tests)."""
    s, x = _start_summary(x, dtype_names)
    if x.dtype == np.float32:
        kc = np.asarray(f32_key_counts(x), dtype=np.int64)
    else:
        x = x.astype(np.float64, copy=False)
        kc = np.bincount(f64_keys(x), minlength=KEYS).astype(np.int64)
    if kc[_SPECIAL_KEYS].any():
        s.nan = int(np.count_nonzero(np.isnan(x)))
        s.pos_inf = int(np.count_nonzero(x == np.inf))
        s.neg_inf = int(np.count_nonzero(x == -np.inf))
        kc[_SPECIAL_KEYS] = 0
        x = x[np.isfinite(x)]
    s.key_counts = kc
    n = len(x)
    if n == 0:
        return s
    if kc[0] or kc[0x8000]:
        s.zeros = int(np.count_nonzero(x == 0))
    s.vmin, s.vmax = float(x.min()), float(x.max())
    e = _scale_exponent(x.dtype == np.float64, s.vmin, s.vmax)
    s.n, s.scale_exp = n, e
    s.mean, s.m2, s.m3, s.m4 = central_moments(np.ldexp(x, -e) if e else x)
    s.bottom, s.top = numpy_extremes(x, kc, x.dtype == np.float64)
    return s


def _start_summary(x: np.ndarray, dtype_names: tuple[str, ...]) -> tuple[FloatSummary, np.ndarray]:
    """An empty summary, with exact value counts for integer data, and the values as floats to summarise."""
    s = FloatSummary.empty(dtype_names)
    if x.dtype.kind in "iub":
        if x.size:
            s.int_base, s.int_counts = _int_counts(x)
        x = x.astype(np.float64)
    return s, x


def _small_float_summary(x: np.ndarray, dtype_names: tuple[str, ...]) -> FloatSummary:
    """numpy_float_summary of at most K_EXTREMES values: the same summary, with its key counts sparse from the
    start (no 512 KiB count array to fill, copy and compact for each of 60,000 one-value tensors)."""
    s, x = _start_summary(x, dtype_names)
    if x.dtype == np.float32:
        keys = x.view(np.uint32) >> 16
    else:
        x = x.astype(np.float64, copy=False)
        keys = f64_keys(x)
    special = (keys & 0x7F80) == 0x7F80  # the _SPECIAL_KEYS: infinities and NaN
    if special.any():
        s.nan = int(np.count_nonzero(np.isnan(x)))
        s.pos_inf = int(np.count_nonzero(x == np.inf))
        s.neg_inf = int(np.count_nonzero(x == -np.inf))
        keys = keys[~special]
        x = x[np.isfinite(x)]
    idx, cnt = np.unique(keys, return_counts=True)
    s.keys = CountStore.from_sparse(KEYS, idx.astype(np.uint16), cnt.astype(np.int64))
    n = len(x)
    if n == 0:
        return s
    s.zeros = int(np.count_nonzero(x == 0))
    s.vmin, s.vmax = float(x.min()), float(x.max())
    e = _scale_exponent(x.dtype == np.float64, s.vmin, s.vmax)
    s.n, s.scale_exp = n, e
    s.mean, s.m2, s.m3, s.m4 = central_moments(np.ldexp(x, -e) if e else x)
    s.bottom = np.sort(x).astype(np.float64)
    s.top = s.bottom.copy()
    return s


MOMENT_BLOCK = 1 << 16  # float64 working arrays of this length stay in the CPU's L2 cache


def central_moments(x: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, M2, M3, M4) of finite values in float64: sums of powers of x - m0 about a first-pass mean m0,
    then shifted exactly to the true mean (the shift is at rounding level, so no cancellation)."""
    n = len(x)
    m0 = float(x.sum(dtype=np.float64)) / n
    d = np.empty(min(n, MOMENT_BLOCK), dtype=np.float64)
    d2 = np.empty_like(d)
    s1 = s2 = s3 = s4 = 0.0
    for i in range(0, n, MOMENT_BLOCK):
        xs = x[i : i + MOMENT_BLOCK]
        k = len(xs)
        dk, d2k = d[:k], d2[:k]
        np.subtract(xs, m0, out=dk, dtype=np.float64)
        np.multiply(dk, dk, out=d2k)
        s1 += float(dk.sum())
        s2 += float(d2k.sum())
        s3 += float(np.einsum("i,i->", d2k, dk))  # einsum, not np.dot: no BLAS threads fighting our workers
        s4 += float(np.einsum("i,i->", d2k, d2k))
    dl = s1 / n
    m2 = s2 - n * dl * dl
    m3 = s3 - 3.0 * dl * s2 + 2.0 * n * dl**3
    m4 = s4 - 4.0 * dl * s3 + 6.0 * dl * dl * s2 - 3.0 * n * dl**4
    return m0 + dl, max(m2, 0.0), m3, max(m4, 0.0)


def _int_counts(x: np.ndarray) -> tuple[int, np.ndarray | None]:
    """Exact counts per value of an integer block whose range is below INT_SPAN (else None)."""
    lo, hi = int(x.min()), int(x.max())
    if hi - lo >= INT_SPAN:
        return 0, None
    offsets = (x - x.dtype.type(lo)).astype(np.intp)  # no overflow: every difference is below INT_SPAN
    return lo, np.bincount(offsets.reshape(-1), minlength=hi - lo + 1).astype(np.int64)


def _scale_exponent(is_f64: bool, vmin: float, vmax: float) -> int:
    """A power of two that keeps fourth powers of F64 values inside float64's range."""
    amax = max(abs(vmin), abs(vmax))
    if is_f64 and (amax > 2.0**200 or 0 < amax < 2.0**-200):
        return math.frexp(amax)[1]
    return 0


def numpy_extremes(x: np.ndarray, kc: np.ndarray, is_f64: bool) -> tuple[np.ndarray, np.ndarray]:
    """The K smallest and K largest values (ascending float64), pre-selected with the bf16 key counts."""
    k = K_EXTREMES
    if len(x) <= k:
        srt = np.sort(x).astype(np.float64)
        return srt, srt.copy()
    order = _key_order()
    lo, hi = _key_bounds()
    oc = kc[order]
    margin = 1 if is_f64 else 0  # a safety margin only: f64_keys already keeps values inside their key
    i_top = int(np.searchsorted(np.cumsum(oc[::-1]), k))
    i_top = max(len(oc) - 1 - i_top - margin, 0)
    cand = x[x >= lo[i_top]]
    if len(cand) < k:
        cand = x
    top = np.sort(np.partition(cand, len(cand) - k)[-k:]).astype(np.float64)
    i_bot = min(int(np.searchsorted(np.cumsum(oc), k)) + margin, len(oc) - 1)
    cand = x[x <= hi[i_bot]]
    if len(cand) < k:
        cand = x
    bottom = np.sort(np.partition(cand, k - 1)[:k]).astype(np.float64)
    return bottom, top


# --------------------------------------------------------------------------- torch kernels
def torch_pattern_counts(t: Any, fmt: str, scratch: Any = None) -> np.ndarray:
    """Bit-pattern counts of a torch tensor of raw patterns (uint8, or int16 viewed uint16).

    With ``scratch`` (a CPU int32 buffer at least as long as ``t``) the patterns are widened by
    zero-extension straight into it: one pass, no allocation.
    """
    import torch

    if pattern_count(fmt) == 256:
        wide = t.view(torch.uint8)
    elif scratch is not None and scratch.numel() >= t.numel():
        wide = scratch[: t.numel()]
        wide.copy_(t.view(torch.uint16))
    else:  # on a device: int16 -> int32 sign-extends, so mask back to 0..65535
        wide = t.view(torch.int16).to(torch.int32)
        wide.bitwise_and_(0xFFFF)
    counts = torch.bincount(wide, minlength=pattern_count(fmt)).cpu().numpy()
    return counts.astype(np.int64, copy=False)


def torch_float_summary(x: Any, dtype_names: tuple[str, ...]) -> FloatSummary:
    """Same as numpy_float_summary, on whatever device ``x`` lives (moments in float64 there)."""
    import torch

    s = FloatSummary.empty(dtype_names)
    if not x.is_floating_point():
        x = x.to(torch.float64)
    if x.dtype == torch.float32:
        keys = (x.view(torch.int32) >> 16) & 0xFFFF
    else:
        x = x.to(torch.float64)
        bits = x.to(torch.float32).view(torch.int32)  # as f64_keys: round toward zero, overflow to the max
        over = bits.view(torch.float32).abs().to(torch.float64) > x.abs()
        keys = ((bits - over.to(torch.int32)) >> 16) & 0xFFFF
        del bits, over
    kc = torch.bincount(keys, minlength=KEYS).cpu().numpy().astype(np.int64)
    del keys
    if kc[_SPECIAL_KEYS].any():
        s.nan = int(torch.isnan(x).sum())
        s.pos_inf = int((x == math.inf).sum())
        s.neg_inf = int((x == -math.inf).sum())
        kc[_SPECIAL_KEYS] = 0
        x = x[torch.isfinite(x)]
    s.key_counts = kc
    n = x.numel()
    if n == 0:
        return s
    if kc[0] or kc[0x8000]:
        s.zeros = int((x == 0).sum())
    vmin, vmax = torch.aminmax(x)
    s.vmin, s.vmax = float(vmin), float(vmax)
    e = _scale_exponent(x.dtype == torch.float64, s.vmin, s.vmax)
    xd = torch.ldexp(x.to(torch.float64), torch.tensor(-e, device=x.device)) if e else x.to(torch.float64, copy=True)
    mean = float(xd.sum()) / n
    xd -= mean
    corr = float(xd.sum()) / n
    xd -= corr
    d2 = xd * xd
    s.n, s.scale_exp, s.mean = n, e, mean + corr
    s.m2, s.m3, s.m4 = float(d2.sum()), float((d2 * xd).sum()), float((d2 * d2).sum())
    del xd, d2
    k = min(K_EXTREMES, n)
    s.top = np.sort(torch.topk(x, k).values.cpu().numpy().astype(np.float64))
    s.bottom = np.sort(torch.topk(x, k, largest=False).values.cpu().numpy().astype(np.float64))
    return s


# --------------------------------------------------------------------------- backends
class Backend:
    """Turns element ranges of tensors into summaries; ``label`` names the device for reports."""

    label = "cpu"
    impl = "numpy"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = max(1, threads or min(os.cpu_count() or 1, 8))
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="stats") if self.threads > 1 else None
        self._local = threading.local()
        self.label = f"cpu ({self.threads} thread{'s' if self.threads > 1 else ''})"

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def summarize_range(self, checkpoint: Checkpoint, t: TensorInfo, start: int, count: int) -> Summary:
        """The summary of elements [start, start+count) of ``t``; blocks start at multiples of BLOCK_ELEMENTS."""
        blocks = [(s, min(BLOCK_ELEMENTS, start + count - s)) for s in range(start, start + count, BLOCK_ELEMENTS)]
        _touch_reader(checkpoint, t)
        if self._pool is None or len(blocks) == 1:
            parts = [self._block(checkpoint, t, s, c) for s, c in blocks]
        else:
            parts = list(self._pool.map(lambda b: self._block(checkpoint, t, *b), blocks))
        result = merge_all(parts)
        assert result is not None
        return result

    def _block(self, checkpoint: Checkpoint, t: TensorInfo, start: int, count: int) -> Summary:
        give_way()
        dt = dtypes.get(t.dtype)
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = np.empty(BLOCK_ELEMENTS * 8, dtype=np.uint8)
        data = checkpoint.read_raw(t, start, count, out=None if dt.is_quantized else buf)
        return self._summarize_array(data, t)

    def _summarize_array(self, data: np.ndarray, t: TensorInfo) -> Summary:
        if summary_kind(t.dtype) == "pattern":
            return PatternSummary(t.dtype, self.pattern_counts(data, t.dtype), (t.dtype,))
        return self.float_summary(data, (t.dtype,))

    def pattern_counts(self, data: np.ndarray, fmt: str) -> np.ndarray:
        return numpy_pattern_counts(data, fmt)

    def float_summary(self, data: np.ndarray, names: tuple[str, ...]) -> FloatSummary:
        return numpy_float_summary(data, names)


class NativeBackend(Backend):
    """The numpy backend with its counting loops compiled (core.native_count): 16-bit patterns, bytes and float32
    keys counted 2.5-4 times as fast as np.bincount, the GIL released while they run. Counts are exact and
    everything else is the numpy path, so results are identical to Backend's."""

    impl = "native"

    def __init__(self, threads: int | None = None) -> None:
        counter = native_count.counter()
        if counter is None:
            raise DeviceError(f"compiled counting is not available ({native_count.unavailable_reason()})")
        super().__init__(threads)
        self._counter = counter
        self.label = self.label[:-1] + ", compiled counting)"

    def pattern_counts(self, data: np.ndarray, fmt: str) -> np.ndarray:
        if pattern_count(fmt) == 256:
            return self._counter.count_u8(data.reshape(-1).view(np.uint8))
        return self._counter.count_u16(data.reshape(-1).view(np.uint16))

    def float_summary(self, data: np.ndarray, names: tuple[str, ...]) -> FloatSummary:
        return numpy_float_summary(data, names, self._counter.count_f32_keys)


class TorchCPUBackend(Backend):
    """16-bit patterns and float32 keys counted with torch.bincount on each worker's int32 scratch: measured 3
    to 4 times np.bincount's speed on 2 cores (np.bincount widens to int64 and scans twice). Counts are exact
    and everything else is the numpy path, so results are identical to Backend's."""

    impl = "torch"

    def _scratch(self) -> Any:
        import torch

        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = torch.empty(BLOCK_ELEMENTS, dtype=torch.int32)
        return scratch

    def pattern_counts(self, data: np.ndarray, fmt: str) -> np.ndarray:
        import torch

        if pattern_count(fmt) == 256:
            return numpy_pattern_counts(data, fmt)
        return torch_pattern_counts(torch.from_numpy(data.reshape(-1).view(np.int16)), fmt, self._scratch())

    def float_summary(self, data: np.ndarray, names: tuple[str, ...]) -> FloatSummary:
        return numpy_float_summary(data, names, self._f32_key_counts)

    def _f32_key_counts(self, x: np.ndarray) -> np.ndarray:
        import torch

        scratch = self._scratch()
        if x.size > scratch.numel() or x.size < SMALL_BLOCK:
            return numpy_f32_key_counts(x)
        keys = scratch[: x.size]
        keys.copy_(torch.from_numpy(x.reshape(-1).view(np.int32)))
        keys.bitwise_right_shift_(16)  # arithmetic shift: negative values keep their sign bits ...
        keys.bitwise_and_(0xFFFF)  # ... which the mask removes
        return torch.bincount(keys, minlength=KEYS).numpy()


class TorchDeviceBackend(Backend):
    """CUDA or MPS: a chunk is read on the CPU (in parallel blocks) and counted on the device."""

    impl = "torch"

    def __init__(self, device: str) -> None:
        super().__init__()
        import torch

        self.device = torch.device(device)
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.device = torch.device("cuda", index)
            self.label = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
        else:
            self.label = str(self.device)
        self._host: np.ndarray | None = None

    def summarize_range(self, checkpoint: Checkpoint, t: TensorInfo, start: int, count: int) -> Summary:
        import torch

        dt = dtypes.get(t.dtype)
        kind = summary_kind(t.dtype)
        if dt.is_quantized or t.strides is not None or not dt.is_float or (self.device.type == "mps"
                                                                           and kind != "pattern"):
            # dequantising is CPU work anyway, integers and strided views are small, and MPS has no float64:
            # those take the CPU path (same results)
            return super().summarize_range(checkpoint, t, start, count)
        nbytes = count * dt.type_size
        if self._host is None or self._host.nbytes < nbytes:
            self._host = None
            pinned = torch.empty(nbytes, dtype=torch.uint8, pin_memory=self.device.type == "cuda")
            self._host = pinned.numpy()
        host = self._host[:nbytes]
        _touch_reader(checkpoint, t)
        blocks = [(s, min(BLOCK_ELEMENTS, start + count - s)) for s in range(start, start + count, BLOCK_ELEMENTS)]

        def read(block: tuple[int, int]) -> None:
            s, c = block
            off = (s - start) * dt.type_size
            checkpoint.read_raw(t, s, c, out=host[off : off + c * dt.type_size])

        if self._pool is not None:
            list(self._pool.map(read, blocks))
        else:
            for b in blocks:
                read(b)
        data = host.view(np.dtype(dt.storage))
        if kind == "pattern":
            raw = torch.from_numpy(data.reshape(-1).view(np.uint8 if data.itemsize == 1 else np.int16))
            counts = torch_pattern_counts(raw.to(self.device, non_blocking=True), t.dtype)
            return PatternSummary(t.dtype, counts, (t.dtype,))
        x = torch.from_numpy(data).to(self.device)
        return torch_float_summary(x, (t.dtype,))


def _touch_reader(checkpoint: Checkpoint, t: TensorInfo) -> None:
    """Open the file's reader on this thread, before worker threads share it."""
    opener = getattr(checkpoint, "_reader", None)
    if opener is not None:
        opener(t.file)


class DeviceError(CheckpointError):
    """The requested device is unknown or not present on this machine."""


DEVICES = ("auto", "cpu", "cuda", "mps")


def validate_device(device: str) -> None:
    """Refuse a device name we do not know (availability is checked when the backend is made)."""
    if device in DEVICES:
        return
    if device.startswith("cuda:") and device[5:].isdigit():
        return
    raise DeviceError(f"unknown device {device!r} (use auto, cpu, cuda, cuda:N or mps)")


# Without compiled counting (core.native_count), below this much data to read "auto" on a machine that cannot have
# a GPU counts with numpy: importing torch costs ~2 s, and its faster counting gains ~0.22 s per GB of bf16
# (measured on a 2-core machine: numpy 0.89 GB/s, torch 1.11 GB/s), so it pays only past about 8 GB; both give
# identical results. With compiled counting torch's CPU path never pays: it counts slower than the native loops.
TORCH_CPU_WORTH_BYTES = 8 << 30
IMPLS = ("native", "numpy", "torch")


def accelerator_possible() -> bool:
    """Whether this machine could have a CUDA or Apple GPU, judged without importing torch."""
    import platform

    system = platform.system()
    if system == "Darwin":
        return platform.machine() == "arm64"
    if system == "Windows":
        return os.path.exists(os.path.join(os.environ.get("SYSTEMROOT", r"C:\Windows"), "System32", "nvcuda.dll"))
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version",
                                            "/dev/dxg"))


def make_backend(device: str = "auto", impl: str | None = None, threads: int | None = None,
                 data_bytes: int | None = None) -> Backend:
    """The backend for ``--device``: auto picks CUDA, then MPS, then the CPU.

    On the CPU the compiled counting loops (``impl="native"``) are used where they could be built, else numpy or
    torch (``impl`` chooses among "native", "numpy" and "torch"); an unavailable device raises DeviceError.
    ``data_bytes`` (how much is to be read) lets "auto" skip importing torch for small jobs on GPU-less machines.
    torch is imported only where a GPU may be present, or where it was asked for, or where it is the fastest
    CPU counter left (no compiled counting, a job above TORCH_CPU_WORTH_BYTES).
    """
    validate_device(device)
    if impl is not None and impl not in IMPLS:
        raise DeviceError(f"unknown implementation {impl!r} (use {', '.join(IMPLS)})")
    cpu_only = device == "cpu" or (device == "auto" and not accelerator_possible())
    if cpu_only and impl in (None, "native") and (impl == "native" or native_count.counter() is not None):
        return NativeBackend(threads)
    if cpu_only and impl is None and data_bytes is not None and data_bytes < TORCH_CPU_WORTH_BYTES:
        return Backend(threads)
    torch = _try_torch() if impl != "numpy" or device != "cpu" else None
    if device != "cpu" and torch is not None:
        if (device.startswith("cuda") or device == "auto") and torch.cuda.is_available():
            if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
                raise DeviceError(f"device {device!r} is not present ({torch.cuda.device_count()} CUDA device(s))")
            return TorchDeviceBackend("cuda" if device == "auto" else device)
        if device in ("mps", "auto") and getattr(torch.backends, "mps", None) is not None \
                and torch.backends.mps.is_available():
            return TorchDeviceBackend("mps")
    if device not in ("auto", "cpu"):
        why = "torch is not installed" if torch is None else "no such accelerator on this machine"
        raise DeviceError(f"device {device!r} is not available ({why})")
    if impl == "native" or (impl is None and native_count.counter() is not None):
        return NativeBackend(threads)
    if impl == "numpy" or (impl is None and torch is None):
        return Backend(threads)
    if torch is None:
        raise DeviceError("the torch CPU backend needs torch, which is not installed")
    return TorchCPUBackend(threads)


def _try_torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch
