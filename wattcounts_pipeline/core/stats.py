"""The 95% intervals every table reports, computed one way: Student-t over repetitions, normal over standard
errors that lm-eval or a study gives."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Z95 = 1.96  # normal 0.975 quantile: intervals from a standard error (lm-eval's, a published one)


def t95(n: npt.ArrayLike) -> np.ndarray:
    """Student-t 0.975 quantile for the mean of `n` values (n - 1 degrees of freedom, at least 1), element-wise;
    the half-width of the 95% interval is `t95(n) * std / sqrt(n)`."""
    from scipy import stats  # heavy; only the intervals need it

    return np.asarray(stats.t.ppf(0.975, np.maximum(np.asarray(n) - 1, 1)))
