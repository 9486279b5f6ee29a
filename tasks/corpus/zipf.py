"""Zipf's law as a discrete power law, fitted by maximum likelihood (Clauset, Shalizi and Newman 2009).

The data are the types' frequencies f ≥ 1. Above a threshold xmin they are modelled as
P(f) = f^−α / ζ(α, xmin), with ζ the Hurwitz zeta function. For each candidate xmin (each distinct
frequency with at least `min_tail` types at or above it) α is the exact discrete maximum-likelihood
estimate, and the xmin kept is the one whose fit has the smallest Kolmogorov–Smirnov distance to
the data above it. A least-squares line on a log-log plot is biased and is not used.

Two exponents describe the same law: α, of the frequency distribution (near 2 for words), and
s = 1 / (α − 1), of the rank–frequency curve f(r) ∝ r^−s (near 1 for words). Both are reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import zeta

from tasks.errors import InvalidParameterError

ALPHA_RANGE = (1.0001, 10.0)
MIN_TAIL = 50
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
_SEARCH_STEPS = 64

Floats = NDArray[np.float64]


class PowerLawFit(BaseModel):
    """A discrete power law fitted to the tail of a frequency distribution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(
        description="α: exponent of the frequency distribution, P(f) ∝ f^−α for f ≥ xmin, by discrete maximum "
        "likelihood. Near 2 for words."
    )
    rank_exponent: float = Field(
        description="s = 1 / (α − 1): exponent of the rank–frequency curve f(r) ∝ r^−s, the form Zipf stated. "
        "Near 1 for words."
    )
    xmin: int = Field(ge=1, description="Smallest frequency the power law describes; chosen to minimise ks_distance.")
    tail_size: int = Field(ge=1, description="Types with frequency ≥ xmin: the data the fit used.")
    ks_distance: float = Field(
        ge=0.0,
        le=1.0,
        description="Kolmogorov–Smirnov distance: the largest gap between the empirical and the fitted CDF of "
        "frequencies ≥ xmin. Smaller is closer.",
    )


def fit_power_law(values: Sequence[int] | NDArray[np.int64], min_tail: int = MIN_TAIL) -> PowerLawFit | None:
    """The discrete power law that fits `values` (integers ≥ 1) best; None without `min_tail` values to fit.

    A tail needs two distinct values, or α has no finite estimate.
    """
    data = np.asarray(values, dtype=np.int64)
    if data.size and data.min() < 1:
        raise InvalidParameterError(
            f"a power law is fitted to integers ≥ 1, got {int(data.min())}; drop zeros and negatives first"
        )
    distinct, counts = np.unique(data, return_counts=True)
    tail_sizes = np.cumsum(counts[::-1])[::-1]
    log_sums = np.cumsum((np.log(distinct) * counts)[::-1], dtype=np.float64)[::-1]
    candidates = np.flatnonzero(tail_sizes[:-1] >= min_tail)
    if not candidates.size:
        return None
    alphas = _maximum_likelihood(distinct[candidates].astype(np.float64), tail_sizes[candidates], log_sums[candidates])
    distances = [_ks_distance(distinct[start:], counts[start:], alpha) for start, alpha in zip(candidates, alphas)]
    best = int(np.argmin(distances))
    start, alpha = int(candidates[best]), float(alphas[best])
    return PowerLawFit(
        alpha=alpha,
        rank_exponent=1.0 / (alpha - 1.0),
        xmin=int(distinct[start]),
        tail_size=int(tail_sizes[start]),
        ks_distance=float(distances[best]),
    )


def _maximum_likelihood(xmins: Floats, sizes: NDArray[np.int64], log_sums: Floats) -> Floats:
    """For each candidate, the α that maximises the log-likelihood −n ln ζ(α, xmin) − α Σ ln f.

    ln ζ(α, xmin) is convex in α (a log-sum-exp of linear functions), so the negative
    log-likelihood has one minimum in ALPHA_RANGE, which a golden-section search finds; all
    candidates are searched at once.
    """
    low = np.full(len(xmins), ALPHA_RANGE[0])
    high = np.full(len(xmins), ALPHA_RANGE[1])

    def negative_log_likelihood(alpha: Floats) -> Floats:
        result: Floats = sizes * np.log(zeta(alpha, xmins)) + alpha * log_sums
        return result

    for _ in range(_SEARCH_STEPS):
        step = _GOLDEN * (high - low)
        left_better = negative_log_likelihood(high - step) < negative_log_likelihood(low + step)
        low, high = np.where(left_better, low, high - step), np.where(left_better, low + step, high)
    result: Floats = (low + high) / 2.0
    return result


def _ks_distance(values: NDArray[np.int64], counts: NDArray[np.int64], alpha: float) -> float:
    """Largest gap between the empirical CDF of `values` and the fitted one, over every integer ≥ values[0].

    Between two observed values the empirical CDF is flat while the model's rises, so the gap is
    checked at each observed value v and at v − 1.
    """
    empirical = np.cumsum(counts) / counts.sum()
    before = np.concatenate(([0.0], empirical[:-1]))
    support = values.astype(np.float64)
    normaliser = zeta(alpha, support[0])
    at_value = 1.0 - zeta(alpha, support + 1.0) / normaliser
    before_value = 1.0 - zeta(alpha, support) / normaliser
    return float(max(np.abs(empirical - at_value).max(), np.abs(before - before_value).max()))
