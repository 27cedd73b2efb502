"""The power-law fit of an eigenvalue tail, as WeightWatcher 0.7.7 does it by default (its 'ww' fit).

Continuous maximum likelihood over the eigenvalues above EVALS_THRESH: for every candidate xmin (each sorted
eigenvalue but the largest) alpha = 1 + n / sum(ln(x_i / xmin)) over the n eigenvalues >= xmin, and the
Kolmogorov-Smirnov distance D between that power law and the tail; the xmin with the smallest D wins (Clauset
et al. 2009). Fewer than SMALL_N eigenvalues take WeightWatcher's small-sample variant (bias-corrected alpha,
at least SMALL_N_MIN_TAIL in the tail, D penalised by 0.868 / sqrt(n)). Written from those definitions, in
the same arithmetic order, so results agree with WeightWatcher's to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EVALS_THRESH = 1e-5  # eigenvalues at or below this are left out of the fit (WeightWatcher's EVALS_THRESH)
SMALL_N = 20  # below this many eigenvalues, the small-sample fit
SMALL_N_MIN_TAIL = 8
SMALL_N_TAIL_BONUS = 0.868


@dataclass(frozen=True)
class PowerLawFit:
    """The fitted tail: exponent, where it starts, how well it fits, and how many eigenvalues it covers."""

    alpha: float
    xmin: float
    D: float  # WeightWatcher's name for the KS distance
    sigma: float
    num_pl_spikes: int  # eigenvalues >= xmin (of all eigenvalues, as WeightWatcher counts them)


def fit_power_law(evals: np.ndarray) -> PowerLawFit | None:
    """The 'ww' fit of ``evals`` (any order); None where it fails (fewer than two eigenvalues above the threshold,
    or no finite alpha), as WeightWatcher reports status 'failed'."""
    evals = np.asarray(evals, dtype=np.float64)
    data = np.sort(evals[evals > EVALS_THRESH])
    if len(data) < 2:
        return None
    with np.errstate(all="ignore"):
        found = _fit_small(data) if len(data) < SMALL_N else _fit_standard(data)
    if found is None or not math.isfinite(found[0]):
        return None
    alpha, xmin, d, sigma = found
    return PowerLawFit(alpha=alpha, xmin=xmin, D=d, sigma=sigma, num_pl_spikes=int(np.count_nonzero(evals >= xmin)))


def _fit_standard(data: np.ndarray) -> tuple[float, float, float, float]:
    n_all = len(data)
    log_data = np.log(data)
    alphas = np.zeros(n_all - 1)
    ds = np.ones(n_all - 1)
    ramp = np.arange(n_all, dtype=np.float64)
    for i in range(n_all - 1):
        n = float(n_all - i)
        alpha = 1 + n / (np.sum(log_data[i:]) - n * log_data[i])
        alphas[i] = alpha
        if alpha > 1:
            ds[i] = np.max(np.abs(1 - (data[i:] / data[i]) ** (-alpha + 1) - ramp[: n_all - i] / n))
    sigmas = (alphas - 1) / np.sqrt(n_all - np.arange(n_all - 1))
    best = int(np.argmin(ds))
    return float(alphas[best]), float(data[best]), float(ds[best]), float(sigmas[best])


def _fit_small(data: np.ndarray) -> tuple[float, float, float, float] | None:
    n_all = len(data)
    log_data = np.log(data)
    alphas = np.zeros(n_all - 1)
    ds = np.ones(n_all - 1)
    objective = np.full(n_all - 1, np.inf)
    for i in range(n_all - 1):
        n_tail = n_all - i
        if n_tail < SMALL_N_MIN_TAIL:
            continue
        n = float(n_tail)
        s = np.sum(log_data[i:]) - n * log_data[i]
        if s <= 1e-12:
            continue
        alpha = 1.0 + (n - 1.0) / s
        alphas[i] = alpha
        if alpha <= 1.0:
            continue
        fitted = 1.0 - (data[i:] / data[i]) ** (1.0 - alpha)
        d = float(np.max(np.abs(np.arange(n_tail, dtype=np.float64) / n - fitted)))
        ds[i] = d
        objective[i] = d - SMALL_N_TAIL_BONUS / np.sqrt(n)
    sigmas = (alphas - 1.0) / np.sqrt(n_all - np.arange(n_all - 1))
    if np.isfinite(objective).any():
        best = int(np.nanargmin(objective))
        return float(alphas[best]), float(data[best]), float(ds[best]), float(sigmas[best])
    n = float(n_all)  # no candidate kept: the whole sample is the tail
    s = np.sum(log_data) - n * log_data[0]
    if s <= 1e-12:
        return 1.0, float(data[0]), 1.0, 0.0
    alpha = 1.0 + (n - 1.0) / s
    d = float(np.max(np.abs(np.arange(n_all, dtype=np.float64) / n - (1.0 - (data / data[0]) ** (1.0 - alpha)))))
    return float(alpha), float(data[0]), d, float(sigmas[0]) if len(sigmas) else 0.0
