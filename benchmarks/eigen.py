"""Time of the spectra engine's eigensolver alone: core.eigen against numpy's eigvalsh on one Gram matrix.

The Gram matrix of a 4096 x 14336 normal matrix (a Llama-3-8B MLP shape; ``--order`` changes 4096) is built
once; each solver then runs ``--repeats`` times, interleaved, with ``--threads`` BLAS threads, and prints the
wall time, the process (CPU) time, whose excess over wall shows BLAS threads spinning, and the largest
difference from numpy's eigenvalues relative to the largest eigenvalue. On a shared machine quote the smallest
of several repeats and the load average printed beside it. ``--json`` prints the figures as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(solve, g: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(wall s, process s, eigenvalues) of one solve of a copy of ``g`` (the solvers may overwrite it)."""
    work = g.copy()
    wall, cpu = time.perf_counter(), time.process_time()
    evals = solve(work)
    return time.perf_counter() - wall, time.process_time() - cpu, evals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (numpy's bundled OpenBLAS)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from core.blas import openblas
    from core.eigen import solver_name, symmetric_eigenvalues

    lib = openblas()
    if lib is not None:
        lib.scipy_openblas_set_num_threads64_(args.threads)
    x = np.random.default_rng(0).standard_normal((args.order, round(args.order * 3.5))) * 0.02
    g = x @ x.T
    del x
    want = np.linalg.eigvalsh(g)
    solvers = {solver_name(args.order): symmetric_eigenvalues, "numpy eigvalsh": np.linalg.eigvalsh}
    runs: dict[str, list[dict]] = {name: [] for name in solvers}
    for _ in range(args.repeats):
        for name, solve in solvers.items():
            wall, cpu, evals = timed(solve, g)
            diff = float(np.max(np.abs(evals - want)) / want[-1])
            runs[name].append({"wall_s": wall, "process_s": cpu, "load": os.getloadavg()[0], "max_rel_diff": diff})
    figures = {"order": args.order, "threads": args.threads, "cores": os.cpu_count(), "runs": runs,
               "best_wall_s": {name: min(r["wall_s"] for r in rs) for name, rs in runs.items()},
               "best_process_s": {name: min(r["process_s"] for r in rs) for name, rs in runs.items()}}
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"Gram matrix of order {args.order}, {args.threads} BLAS thread(s), {os.cpu_count()} cores")
    for name, rs in runs.items():
        for r in rs:
            print(f"{name:22s} wall {r['wall_s']:7.2f} s  process {r['process_s']:7.2f} s  load {r['load']:4.1f}  "
                  f"max diff {r['max_rel_diff']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
