"""The 95% intervals every table reports, computed one way: Student-t over repetitions, normal over standard
errors that lm-eval or a study gives."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Z95 = 1.96  # normal 0.975 quantile: intervals from a standard error (lm-eval's, a published one)


def t95(n: npt.ArrayLike) -> np.ndarray:
    """Student-t 0.975 quantile for the mean of `n` values (n - 1 degrees of freedom, at least 1), element-wise;
    the half-width of the 95% interval is `t95(n) * std / sqrt(n)`."""
    from scipy import stats  # heavy; only the intervals need it

    return np.asarray(stats.t.ppf(0.975, np.maximum(np.asarray(n) - 1, 1)))


@dataclass(frozen=True)
class RepeatStats:
    """Mean, sample standard deviation, 95 % Student-t confidence interval and coefficient of variation."""

    n: int
    mean: float
    std: float
    ci95_low: float
    ci95_high: float

    @property
    def ci95_half_width(self) -> float:
        return (self.ci95_high - self.ci95_low) / 2

    @property
    def cv(self) -> float:
        """std / |mean|; NaN for a zero mean or a single value."""
        return self.std / abs(self.mean) if self.mean else math.nan


def summarize(values: Sequence[float]) -> RepeatStats:
    """Statistics over repetitions; one value gives NaN spread and interval, never a false zero."""
    if not values:
        raise ValueError("no values to summarize")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return RepeatStats(n=1, mean=mean, std=math.nan, ci95_low=math.nan, ci95_high=math.nan)
    std = statistics.stdev(values)
    half_width = float(t95(len(values))) * std / math.sqrt(len(values))
    return RepeatStats(n=len(values), mean=mean, std=std, ci95_low=mean - half_width, ci95_high=mean + half_width)
