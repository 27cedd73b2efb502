"""WeightWatcher's per-matrix metrics from a matrix's eigenvalues, and a verdict in plain words.

Definitions as in WeightWatcher 0.7.7 (weightwatcher.py apply_norm_metrics, RMT_Util.py): eigenvalues are
lambda = sigma^2 of W (not divided by N); log_norm = log10(sum lambda); log_spectral_norm = log10(lambda_max);
stable_rank = sum lambda / lambda_max; alpha, xmin, D, sigma, num_pl_spikes from the power-law fit
(core.powerlaw_fit); alpha_weighted = alpha * log_spectral_norm; log_alpha_norm = log10(sum lambda^alpha);
entropy = -sum p ln p / ln(rank) with p = lambda / sum lambda + 1e-10.

matrix_rank is WeightWatcher's: numpy's matrix_rank of the float64 matrix, singular values above sigma_max * N
* eps (N the larger side). That is far below what a Gram matrix's eigenvalues resolve, so core.spectra replaces
the eigenvalues of a matrix whose Gram spectrum reaches rounding level by its exact singular values squared
(core.exact_rank), and every eigenvalue counted here is then accurate enough for the threshold (the rounding
noise of a low-rank product stored in float32 counts as rank, as in WeightWatcher).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.powerlaw_fit import fit_power_law

ENTROPY_EPSILON = 1e-10  # WeightWatcher's EPSILON
OVER_TRAINED_BELOW = 2.0
UNDER_TRAINED_ABOVE = 6.0
UNRELIABLE_ABOVE = 8.0
KS_CRITICAL = 1.36  # D above 1.36 / sqrt(tail size): the tail is no power law at the 5% level (Kolmogorov)
MIN_EVALS = 8  # WeightWatcher's default min_evals: fewer eigenvalues give no fit

METRIC_NAMES = ("lambda_max", "log_norm", "log_spectral_norm", "stable_rank", "alpha", "xmin", "D", "sigma",
                "num_pl_spikes", "alpha_weighted", "log_alpha_norm", "matrix_rank", "entropy")
SUMMARY_NAMES = ("log_norm", "alpha", "alpha_weighted", "log_alpha_norm", "log_spectral_norm", "stable_rank")


@dataclass(frozen=True)
class SpectralMetrics:
    """One matrix's metrics; the fit's fields are None when the power-law fit failed."""

    n_evals: int
    lambda_max: float
    log_norm: float
    log_spectral_norm: float
    stable_rank: float
    alpha: float | None
    xmin: float | None
    D: float | None
    sigma: float | None
    num_pl_spikes: int | None
    alpha_weighted: float | None
    log_alpha_norm: float | None
    matrix_rank: int
    entropy: float
    verdict: str
    fit_quality: str  # "good", "poor" (KS test rejects the power law at 5%), "unreliable" (alpha > 8), "failed"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def compute_metrics(evals: np.ndarray, n_large: int) -> SpectralMetrics:
    """Metrics of the eigenvalues ``evals`` of a matrix whose larger side is ``n_large`` (conv slices pooled).

    Negative eigenvalues (a Gram matrix's rounding around zero) count as zero.
    """
    ev = np.sort(np.maximum(np.asarray(evals, dtype=np.float64), 0.0))
    total = float(np.sum(ev))
    lam_max = float(ev[-1])
    rank = count_rank(ev, n_large)
    fit = fit_power_law(ev)
    log_spectral = math.log10(lam_max)
    if fit is not None:
        alpha = fit.alpha
        with np.errstate(divide="ignore", over="ignore"):
            log_alpha_norm = float(np.log10(np.sum(ev**alpha)))
        rejected = KS_CRITICAL / math.sqrt(max(1, fit.num_pl_spikes)) < fit.D
        quality = "unreliable" if alpha > UNRELIABLE_ABOVE else "poor" if rejected else "good"
    else:
        alpha, log_alpha_norm, quality = None, None, "failed"
    return SpectralMetrics(
        n_evals=len(ev), lambda_max=lam_max, log_norm=math.log10(total), log_spectral_norm=log_spectral,
        stable_rank=total / lam_max, alpha=alpha, xmin=None if fit is None else fit.xmin,
        D=None if fit is None else fit.D, sigma=None if fit is None else fit.sigma,
        num_pl_spikes=None if fit is None else fit.num_pl_spikes,
        alpha_weighted=None if alpha is None else alpha * log_spectral, log_alpha_norm=log_alpha_norm,
        matrix_rank=rank, entropy=_entropy(ev, rank), verdict=verdict(alpha), fit_quality=quality)


def count_rank(evals: np.ndarray, n_large: int) -> int:
    """numpy's matrix_rank from eigenvalues: singular values (their square roots) above sigma_max * N * eps."""
    sv = np.sqrt(np.maximum(np.asarray(evals, dtype=np.float64), 0.0))
    return int(np.count_nonzero(sv > float(sv.max(initial=0.0)) * n_large * np.finfo(np.float64).eps))


def _entropy(ev: np.ndarray, rank: int) -> float:
    p = ev / np.sum(ev) + ENTROPY_EPSILON
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(-np.sum(p * np.log(p)) / np.log(rank + ENTROPY_EPSILON))


def verdict(alpha: float | None) -> str:
    """WeightWatcher's documented ranges for alpha, in plain words."""
    if alpha is None:
        return "no power-law fit"
    if alpha < OVER_TRAINED_BELOW:
        return "over-trained (rank collapse risk)"
    if alpha > UNRELIABLE_ABOVE:
        return "under-trained (fit unreliable)"
    if alpha > UNDER_TRAINED_ABOVE:
        return "under-trained"
    return "well trained"


def summarize(metrics: list[SpectralMetrics]) -> dict[str, float | None]:
    """Model averages as WeightWatcher's get_summary gives them (matrices without a fit leave alpha's means)."""
    out: dict[str, float | None] = {}
    for name in SUMMARY_NAMES:
        values = [getattr(m, name) for m in metrics if getattr(m, name) is not None]
        out[name] = float(np.mean(values)) if values else None
    return out
