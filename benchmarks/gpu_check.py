"""One command for a machine with CUDA: speed and CPU-versus-CUDA agreement of spectra and statistics.

    python benchmarks/gpu_check.py            (needs only torch, numpy, safetensors and gguf)

1. Spectra speed: a 4096 x 14336 bf16 matrix (benchmarks/spectra.py) by our engine on CUDA and on the CPU,
   against numpy's float64 SVD (WeightWatcher's CPU path), with the ratio and the largest metric difference.
2. Statistics throughput on a 2 GB bf16 file (benchmarks/stats.py's file) on CUDA and on the CPU, in GB/s.
3. Agreement: spectral metrics of WeightWatcher's reference matrices (tests/data/spectra_reference.npz) and of
   a 2048 x 5120 float32 matrix, CPU against CUDA, to 1e-6 relative; statistics of bf16, fp16, fp32 and fp64
   tensors (NaN, Inf and zeros included), CPU against CUDA: counts exact, moments to 1e-9 relative.

Prints every figure; the exit status is 1 if an agreement check fails, 2 if there is no CUDA device.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SPECTRA_RTOL = 1e-6
STATS_RTOL = 1e-9


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON-like values differ: numbers beyond their tolerance (integers exactly), anything else."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}: keys {sorted(set(a) ^ set(b))}"] if set(a) != set(b) else []
        for key in set(a) & set(b):
            if key in ("seconds", "device"):
                continue
            out += differences(a[key], b[key], f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, bool) or isinstance(b, bool) or (isinstance(a, int) and isinstance(b, int)):
        return [] if a == b else [f"{path}: {a} != {b}"]
    if isinstance(a, float) and isinstance(b, (int, float)):
        tol = SPECTRA_RTOL if path.startswith("spectra") else STATS_RTOL
        ok = (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= tol * max(abs(a), abs(b))
        return [] if ok else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def spectra_speed(folder: str) -> dict:
    import spectra as bench

    path = os.path.join(folder, "mlp.safetensors")
    raw = bench.write_matrix(path, 4096, 14336)
    cuda_s, cuda_m = bench.ours(path, "cuda")
    cuda_again_s, _ = bench.ours(path, "cuda")  # the first call pays CUDA's start-up
    cpu_s, cpu_m = bench.ours(path, "cpu")
    svd_s, svd_m = bench.svd_path(raw)
    return {"cuda_s": cuda_s, "cuda_warm_s": cuda_again_s, "cpu_s": cpu_s, "numpy_svd_s": svd_s,
            "ratio_cuda": svd_s / cuda_again_s, "ratio_cpu": svd_s / cpu_s,
            "cuda_vs_svd": bench.largest_difference(cuda_m, svd_m),
            "cpu_vs_svd": bench.largest_difference(cpu_m, svd_m),
            "cuda_vs_cpu": differences(cuda_m, cpu_m, "spectra")}


def stats_speed(folder: str) -> dict:
    import stats as bench

    from core.stats import run

    path = Path(folder) / "two_gb.safetensors"
    nbytes = bench.write_normal_bf16(path, 2e9)
    out: dict[str, Any] = {"bytes": nbytes}
    for device in ("cuda", "cpu"):
        run(path, device=device, use_cache=False)  # warm: page cache, CUDA context
        start = time.perf_counter()
        result = run(path, device=device, use_cache=False)
        seconds = time.perf_counter() - start
        out[device] = {"seconds": seconds, "gb_per_s": nbytes / seconds / 1e9, "device": result.device}
    return out


def spectra_agreement(folder: str, device: str) -> list[str]:
    from safetensors.numpy import save_file

    from core.spectra import run_spectra

    ref = np.load(ROOT / "tests" / "data" / "spectra_reference.npz")
    tensors = {k.split("/", 1)[1]: ref[k] for k in ref.files if k.startswith("weight/")}
    x = np.random.default_rng(1).standard_normal((2048, 5120), dtype=np.float32) * 0.02
    tensors["f32_2048x5120"] = x
    path = os.path.join(folder, "agree.safetensors")
    save_file(tensors, path)
    cpu = run_spectra(path, device="cpu", use_cache=False, block_bytes=8 << 20)
    cuda = run_spectra(path, device=device, use_cache=False, block_bytes=8 << 20, impl=_impl(device))
    a = [m.to_json() for m in cpu.matrices.values()]
    b = [m.to_json() for m in cuda.matrices.values()]
    return differences(a, b, "spectra")


def stats_agreement(folder: str, device: str) -> list[str]:
    import torch
    from safetensors.torch import save_file

    from core.compute import make_backend
    from core.stats import run, stats_to_json

    g = torch.Generator().manual_seed(2)
    base = torch.randn(3000, 1500, generator=g)
    base[0, :7] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e30, -1e-30])
    tensors = {"bf16": base.to(torch.bfloat16), "f16": base.clamp(-6e4, 6e4).to(torch.float16),
               "f32": base * 3, "f64": base.to(torch.float64) * 1e-3}
    path = os.path.join(folder, "stats.safetensors")
    save_file(tensors, path)
    cpu = run(path, device="cpu", use_cache=False, chunk_bytes=4 << 20)
    cuda = run(path, use_cache=False, chunk_bytes=4 << 20, backend=make_backend(device, impl=_impl(device)))
    out = []
    for name in tensors:
        out += differences(stats_to_json(cpu.stats(name)), stats_to_json(cuda.stats(name)), f"stats.{name}")
    return out + differences(stats_to_json(cpu.model()), stats_to_json(cuda.model()), "stats.model")


def _impl(device: str) -> str | None:
    """On the CPU the other side of the comparison is the torch code (a check of the script without a GPU)."""
    return "torch" if device == "cpu" else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-speed", action="store_true", help="only the agreement checks")
    parser.add_argument("--device", default="cuda", help="compared with the CPU (cpu: numpy against torch)")
    args = parser.parse_args()
    import torch

    if args.device != "cpu" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 2
    name = torch.cuda.get_device_name(0) if args.device != "cpu" else "cpu (numpy against torch)"
    print(f"device: {name}, torch {torch.__version__}, {os.cpu_count()} CPU cores")
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        figures["spectra_agreement"] = spectra_agreement(folder, args.device)
        figures["stats_agreement"] = stats_agreement(folder, args.device)
        if not args.skip_speed and args.device != "cpu":
            figures["spectra_speed"] = spectra_speed(folder)
            figures["stats_speed"] = stats_speed(folder)
    print(json.dumps(figures, indent=1, default=str))
    failed = figures["spectra_agreement"] or figures["stats_agreement"]
    speed = figures.get("spectra_speed")
    if speed and (speed["cuda_vs_svd"][0] > SPECTRA_RTOL or speed["cuda_vs_cpu"]):
        failed = True
    print("agreement:", "FAILED" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
