"""Prediction intervals and their scores.

- gaussian_bounds: mean -+ z_{(1+L)/2} sqrt(var), for models whose forecast variance is known (ARMA).
- conformal_quantiles / conformal_bounds: split conformal prediction (Vovk et al. 2005; Lei et al. 2018).
  For n calibration residuals r_i = |y_i - ŷ_i| of one horizon, the half-width at level L is the
  ceil((n + 1) L)-th smallest r_i (infinite when that exceeds n): for exchangeable errors a new point falls
  in ŷ -+ q with probability >= L.
- coverage: the fraction of points inside [lower, upper].
- winkler_score (Winkler 1972, the interval score of Gneiting & Raftery 2007) at level L, alpha = 1 - L:
  (u - l) + (2 / alpha) (l - y) 1{y < l} + (2 / alpha) (y - u) 1{y > u}, averaged; lower is better.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

DEFAULT_LEVELS = (0.8, 0.95)


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """levels as a tuple of floats in (0, 1), else ValueError naming intervals.levels."""
    if isinstance(levels, str) or not isinstance(levels, Sequence):
        raise ValueError(f"intervals.levels must be a list of numbers in (0, 1), got {levels!r}")
    out = []
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0.0 < level < 1.0:
            raise ValueError(f"intervals.levels must be numbers in (0, 1), got {level!r}")
        out.append(float(level))
    if len(set(out)) != len(out):
        raise ValueError(f"intervals.levels must not repeat a level, got {list(levels)}")
    return tuple(out)


def level_name(level: float) -> str:
    """The level as a metric-name suffix: 0.95 -> "95", 0.975 -> "97_5"."""
    return f"{100 * level:g}".replace(".", "_")


def level_of_name(name: str) -> float:
    """The level a metric-name suffix stands for, level_name's inverse: "97_5" -> 0.975."""
    # exact decimal division, then one rounding: float("99.99") / 100 is not the float 0.9999
    return float(Fraction(name.replace("_", ".")) / 100)


def gaussian_bounds(mean: np.ndarray, variance: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Central interval of probability level of N(mean, variance), elementwise (any equal shapes)."""
    from scipy import stats

    half = stats.norm.ppf(0.5 + level / 2.0) * np.sqrt(np.asarray(variance, dtype=np.float64))
    return mean - half, mean + half


def conformal_quantiles(residuals: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Half-widths (L, H) from absolute calibration residuals (n, H) (NaN entries: no residual there).

    Column h uses its own finite residuals; with n_h of them the half-width at level L is the
    ceil((n_h + 1) L)-th smallest, inf when that rank exceeds n_h (too few points for that level).
    """
    residuals = np.abs(np.asarray(residuals, dtype=np.float64))
    if residuals.ndim != 2:
        raise ValueError(f"residuals must have shape (n, H), got {residuals.shape}")
    out = np.full((len(levels), residuals.shape[1]), np.inf)
    for h in range(residuals.shape[1]):
        column = np.sort(residuals[np.isfinite(residuals[:, h]), h])
        for i, level in enumerate(levels):
            rank = _conformal_rank(len(column), level)
            if 1 <= rank <= len(column):
                out[i, h] = column[rank - 1]
    return out


def _conformal_rank(n: int, level: float) -> int:
    """The rank, among n sorted calibration residuals, of the split-conformal half-width at level."""
    return int(np.ceil((n + 1) * level))


def min_calibration_residuals(level: float) -> int:
    """The fewest calibration residuals of a horizon whose conformal half-width at level is finite
    (ceil(L / (1 - L)): 4 at 80%, 19 at 95%)."""
    n = 1
    while _conformal_rank(n, level) > n:
        n += 1
    return n


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of the (n,) points y with lower <= y <= upper."""
    y = np.asarray(y, dtype=np.float64)
    return float(np.mean((y >= lower) & (y <= upper)))


def winkler_score(y: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float) -> float:
    """Mean Winkler (interval) score of the (n,) points y for intervals [lower, upper] of level (see the
    module docstring)."""
    y = np.asarray(y, dtype=np.float64)
    alpha = 1.0 - level
    penalty = (2.0 / alpha) * (np.maximum(lower - y, 0.0) + np.maximum(y - upper, 0.0))
    return float(np.mean(upper - lower + penalty))
