"""Build tests/data/spectra_reference.npz: WeightWatcher 0.7.7's own results on seeded float32 matrices.

Run once in a separate environment that has weightwatcher==0.7.7 and torch (never in the app's venv):

    python3 -m venv /tmp/wwvenv && /tmp/wwvenv/bin/pip install weightwatcher==0.7.7 torch==2.13.0
    /tmp/wwvenv/bin/python tests/data/make_spectra_reference.py

The weights and WeightWatcher's per-layer details and summary go into one small .npz, so the tests compare
our engine with WeightWatcher without needing it installed.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import numpy as np
import torch
import weightwatcher as ww

COLUMNS = ["num_evals", "lambda_max", "log_norm", "log_spectral_norm", "stable_rank", "alpha", "xmin", "D", "sigma",
           "num_pl_spikes", "alpha_weighted", "log_alpha_norm", "matrix_rank", "entropy"]
SUMMARY = ["log_norm", "alpha", "alpha_weighted", "log_alpha_norm", "log_spectral_norm", "stable_rank"]


def matrices(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Seeded float32 weights of the shapes and kinds the tests need (torch layout: out x in [x kh x kw])."""
    low_rank = rng.standard_normal((160, 20)) @ rng.standard_normal((20, 72)) * 0.05
    return {
        "tall": (rng.standard_normal((200, 64)) * 0.05).astype(np.float32),
        "wide": (rng.standard_normal((96, 300)) * 0.02).astype(np.float32),
        "heavy": (rng.standard_t(2.5, (256, 128)) * 0.03).astype(np.float32),
        "low_rank": low_rank.astype(np.float32),
        "small": (rng.standard_normal((30, 12)) * 0.1).astype(np.float32),
        "conv": (rng.standard_normal((16, 8, 3, 3)) * 0.1).astype(np.float32),
        "conv_wide": (rng.standard_normal((12, 40, 2, 3)) * 0.05).astype(np.float32),
    }


class Net(torch.nn.Module):
    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.names = list(weights)
        for name, w in weights.items():
            if w.ndim == 2:
                layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            else:
                layer = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], bias=False)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(w))
            setattr(self, name, layer)


def main() -> int:
    logging.disable(logging.CRITICAL)
    weights = matrices(np.random.default_rng(20261129))
    watcher = ww.WeightWatcher(model=Net(weights))
    details = watcher.analyze(plot=False)
    summary = watcher.get_summary(details)
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        out[f"weight/{name}"] = w
        row = details[details["longname"] == name]
        if len(row) != 1:
            raise SystemExit(f"WeightWatcher did not analyse {name}")
        out[f"metrics/{name}"] = np.array([float(row[c].iloc[0]) for c in COLUMNS], np.float64)
    out["columns"] = np.array(COLUMNS)
    out["summary"] = np.array([float(summary[k]) for k in SUMMARY], np.float64)
    out["summary_columns"] = np.array(SUMMARY)
    out["about"] = np.array(json.dumps({"weightwatcher": ww.__version__, "torch": torch.__version__,
                                        "numpy": np.__version__}))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spectra_reference.npz")
    np.savez(path, **out)
    print(details[["longname", *COLUMNS]].to_string())
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
