"""Time of the spectral metrics of one Llama-3-8B MLP matrix: our engine against WeightWatcher's CPU path.

1. Writes a 4096 x 14336 bf16 matrix (normal values, std 0.02; ``--rows``/``--cols`` change the shape) to a
   temporary safetensors file.
2. Ours: ``core.spectra.run_spectra`` (``--device``, default cpu; no cache): the 4096^2 float64 Gram matrix
   streamed from the file, float64 eigenvalues, the metrics. Its one-time start-up (imports, and the
   eigensolver's setup: loading MKL from torch's library, checks, warm-up) is paid once per process, whatever
   the number of matrices: it is timed apart, on a small 1024 x 2048 matrix analysed first, as the baseline's
   own start-up (importing numpy) is not timed. The cold figure (start-up plus the matrix) is printed too.
3. WeightWatcher's CPU path: the same matrix as float64 (bf16 -> float32 -> float64, as WeightWatcher's
   W.astype(float)), numpy's full SVD (singular values only), eigenvalues sigma^2, then the same metrics.
4. Steps 2 and 3 run ``--repeat`` times (default 3), taking turns, so that a spell of load from other programs
   (this 2-core machine's times vary by 20% from minute to minute) falls on both; the figures are the medians.
5. Prints every time, the medians, their ratio (per matrix) and the largest relative difference of any metric
   (target: >= 5x faster, metrics equal to 1e-6 relative), and the cold ratio (start-up plus the first run of
   ours; no target). ``--json`` prints the figures as one JSON object.

The exit status is 1 if a target is missed. The machine's other load shifts both times: quote figures from
an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_RATIO = 5.0
TOLERANCE = 1e-6


def write_matrix(path: str, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A bf16 safetensors file of one normal matrix; returns the bf16 bit patterns."""
    x = (np.random.default_rng(seed).standard_normal((rows, cols), dtype=np.float32) * 0.02)
    bits = x.view(np.uint32)
    raw = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
    header = json.dumps({"w": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [0, raw.nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        raw.tofile(f)
        f.flush()
        os.fsync(f.fileno())  # written back to disk now, not by the kernel while a run is timed
    return raw


def start_up(folder: str, device: str) -> float:
    """Seconds of the engine's one-time start-up: imports, and a first small analysis (the eigensolver's setup)."""
    path = os.path.join(folder, "start-up.safetensors")
    write_matrix(path, 1024, 2048, seed=1)  # a Gram matrix of order 1024: the MKL solver is set up too
    start = time.perf_counter()
    from core.spectra import run_spectra

    result = run_spectra(path, device=device, use_cache=False)
    assert result.matrices["w"].metrics is not None
    return time.perf_counter() - start


def ours(path: str, device: str) -> tuple[float, dict]:
    from core.spectra import run_spectra

    start = time.perf_counter()
    result = run_spectra(path, device=device, use_cache=False)
    seconds = time.perf_counter() - start
    metrics = result.matrices["w"].metrics
    assert metrics is not None, result.matrices["w"].reason
    return seconds, {"device": result.device, **metrics.to_json()}


def svd_path(raw: np.ndarray) -> tuple[float, dict]:
    from core.spectra_metrics import compute_metrics

    start = time.perf_counter()
    w = (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    sv = np.linalg.svd(w, compute_uv=False)
    metrics = compute_metrics(np.sort(sv * sv), max(w.shape))
    return time.perf_counter() - start, metrics.to_json()


def largest_difference(a: dict, b: dict) -> tuple[float, str]:
    worst, which = 0.0, ""
    for key, want in b.items():
        got = a.get(key)
        if isinstance(want, bool) or not isinstance(want, (int, float)) or not isinstance(got, (int, float)):
            continue
        rel = abs(got - want) / max(abs(want), 1e-300)
        if rel > worst:
            worst, which = rel, key
    return worst, which


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=14336)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, taking turns (medians are compared)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from core.eigen import solver_name

    ours_runs: list[float] = []
    svd_runs: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "matrix.safetensors")
        raw = write_matrix(path, args.rows, args.cols)
        startup_s = start_up(folder, args.device)
        for _ in range(max(1, args.repeat)):
            seconds, ours_m = ours(path, args.device)
            ours_runs.append(seconds)
            seconds, svd_m = svd_path(raw)
            svd_runs.append(seconds)
    ours_s, svd_s = statistics.median(ours_runs), statistics.median(svd_runs)
    ratio = svd_s / ours_s
    diff, key = largest_difference(ours_m, svd_m)
    figures = {"shape": [args.rows, args.cols], "device": ours_m["device"], "ours_s": ours_s,
               "startup_s": startup_s, "cold_ratio": svd_s / (startup_s + ours_runs[0]),
               "numpy_svd_s": svd_s, "ratio": ratio, "ours_runs_s": ours_runs, "numpy_svd_runs_s": svd_runs,
               "max_rel_diff": diff, "max_rel_diff_metric": key,
               "eigensolver": solver_name(min(args.rows, args.cols)), "alpha": ours_m["alpha"],
               "cores": os.cpu_count()}
    if args.json:
        print(json.dumps(figures))
    else:
        def runs(values: list[float]) -> str:
            return ", ".join(f"{v:.2f}" for v in values)

        print(f"matrix {args.rows} x {args.cols} bf16, {os.cpu_count()} cores, {len(ours_runs)} runs of each")
        print(f"ours ({ours_m['device']}, {figures['eigensolver']}): {ours_s:8.2f} s median of {runs(ours_runs)} "
              f"(after a one-time start-up of {startup_s:.2f} s per process)")
        print(f"numpy float64 SVD (WeightWatcher's CPU path):   {svd_s:8.2f} s median of {runs(svd_runs)}")
        print(f"ratio {ratio:.2f}x (target >= {TARGET_RATIO:g}x); largest metric difference {diff:.2e} ({key}); "
              f"alpha {ours_m['alpha']:.6g}")
        print(f"cold, start-up and the first run: {startup_s + ours_runs[0]:.2f} s, ratio {figures['cold_ratio']:.2f}x "
              "(no target)")
    return 0 if ratio >= TARGET_RATIO and diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
