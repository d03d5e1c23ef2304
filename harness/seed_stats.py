"""Results over seeds: mean, standard deviation and a named 95% confidence interval of each final metric,
and the solved rate with its Wilson interval, per group of runs that differ only in their seed.

Intervals (level 0.95 unless given):
    t          mean ± t_{1-α/2, n-1} s / √n (s the sample standard deviation, ddof 1)
    bootstrap  percentile bootstrap of the mean: the α/2 and 1-α/2 quantiles (inverse CDF) of the mean of n
               values drawn with replacement; exact (every multiset of draws, weighted by its multinomial
               probability) while there are at most EXACT_BOOTSTRAP_LIMIT multisets (n <= 9), else
               BOOTSTRAP_RESAMPLES seeded draws
    Wilson     (p̂ + z²/2n ± z √(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n), z = Φ⁻¹(1-α/2), for k solved of n
One value gives no interval (NaN). NaN values (a diverged run's metric) are left out of a metric's
statistics and counted in its ``<metric>_n``.

A metric that cannot leave a range (an MSE >= 0, a coverage in [0, 1]) may have its interval cut to that range
(summarize_over_seeds' bounds): the t interval is symmetric about the mean and, with few seeds and a skewed
metric, reaches below 0 ([-0.0000, 0.0010] for an MSE of 3 seeds). The mean the interval is for lies in the
range too, so the cut interval covers it exactly when the uncut one does (a confidence set intersected with
the parameter's known range keeps its coverage) and stops showing impossible values. A t interval of log
MSE would not be the answer: it is an interval of the geometric mean, another quantity than the mean in the
table's MSE column, and it fails for an MSE of 0 (a noise-free series fitted exactly).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cache
from itertools import combinations_with_replacement

import numpy as np
import pandas as pd

INTERVALS = ("t", "bootstrap")
EXACT_BOOTSTRAP_LIMIT = 50_000
BOOTSTRAP_RESAMPLES = 20_000
INTERVAL_NAMES = {"t": "t", "bootstrap": "bootstrap percentile"}


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of values (n >= 2; NaN bounds otherwise)."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return math.nan, math.nan
    half = t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


@cache
def _multisets(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every multiset of n draws from range(n) (M, n) and its probability n! / (Π c_i!) / n^n (M,)."""
    draws = np.array(list(combinations_with_replacement(range(n), n)))
    counts = np.apply_along_axis(np.bincount, 1, draws, minlength=n)
    log_weight = math.lgamma(n + 1) - np.vectorize(math.lgamma)(counts + 1.0).sum(axis=1)
    return draws, np.exp(log_weight - n * math.log(n))


def bootstrap_means(values: Sequence[float], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(means, probabilities) of the bootstrap distribution of the mean of values, means sorted ascending."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if math.comb(2 * n - 1, n) <= EXACT_BOOTSTRAP_LIMIT:
        draws, probabilities = _multisets(n)
    else:
        draws = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
        probabilities = np.full(BOOTSTRAP_RESAMPLES, 1.0 / BOOTSTRAP_RESAMPLES)
    means = x[draws].mean(axis=1)
    order = np.argsort(means, kind="stable")
    return means[order], probabilities[order]


def bootstrap_interval(values: Sequence[float], level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of values (n >= 2; NaN bounds otherwise)."""
    if len(values) < 2:
        return math.nan, math.nan
    means, probabilities = bootstrap_means(values, seed)
    cumulative = np.cumsum(probabilities)
    alpha = 1 - level
    # inverse CDF: the first mean whose cumulative probability reaches the quantile (round-off tolerated)
    low = means[np.searchsorted(cumulative, alpha / 2 - 1e-12)]
    high = means[min(np.searchsorted(cumulative, 1 - alpha / 2 - 1e-12), means.size - 1)]
    return float(low), float(high)


def wilson_interval(solved: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate solved / n (NaN bounds for n = 0)."""
    from scipy.stats import norm

    if n == 0:
        return math.nan, math.nan
    z = norm.ppf(0.5 + level / 2)
    p = solved / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def interval(values: Sequence[float], kind: str, level: float = 0.95) -> tuple[float, float]:
    """The interval named kind ("t" or "bootstrap") of the mean of values."""
    if kind not in INTERVALS:
        raise ValueError(f"interval must be one of {list(INTERVALS)}, got {kind!r}")
    return t_interval(values, level) if kind == "t" else bootstrap_interval(values, level)


def within(bounds: tuple[float, float], low: float, high: float) -> tuple[float, float]:
    """The interval [low, high] cut to bounds (lowest, highest value the metric can take); NaN stays NaN."""
    lowest, highest = bounds
    return (low if math.isnan(low) else min(max(low, lowest), highest),
            high if math.isnan(high) else max(min(high, highest), lowest))


def summarize_over_seeds(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str],
                         solved: str | None = None, kind: str = "t", level: float = 0.95,
                         seed_column: str = "seed", bounds: Mapping[str, tuple[float, float]] | None = None
                         ) -> pd.DataFrame:
    """One row per group of frame's rows sharing the values of by (groups in order of first appearance).

    frame: one row per run (a seed_column plus the by and metric columns). Columns: by, ``seeds`` (rows in
    the group), per metric ``<m>_n`` (finite values), ``<m>_mean``, ``<m>_std`` (ddof 1; NaN below 2),
    ``<m>_low``, ``<m>_high`` (the kind interval); with solved (a 0/1 column): ``solved``, ``solved_rate``,
    ``solved_low``, ``solved_high`` (Wilson). Values are taken in seed order, so the sums do not depend
    on the order the runs arrived in. bounds: metric -> (lowest, highest) value it can take; its interval
    is cut to that range (within; the module's docstring says why that keeps its coverage).
    """
    interval(np.zeros(2), kind, level)  # validates kind before any work
    rows = []
    groups = frame.groupby(list(by), sort=False, dropna=False) if by else [((), frame)]
    for key, group in groups:
        group = group.sort_values(seed_column, kind="stable") if seed_column in group else group
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row["seeds"] = len(group)
        for metric in metrics:
            values = pd.to_numeric(group[metric], errors="coerce").to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            low, high = interval(values, kind, level)
            if bounds and metric in bounds:
                low, high = within(bounds[metric], low, high)
            row.update({f"{metric}_n": values.size,
                        f"{metric}_mean": float(values.mean()) if values.size else math.nan,
                        f"{metric}_std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
                        f"{metric}_low": low, f"{metric}_high": high})
        if solved is not None:
            outcomes = pd.to_numeric(group[solved], errors="coerce").fillna(0.0).to_numpy() > 0.5
            low, high = wilson_interval(int(outcomes.sum()), outcomes.size, level)
            row.update({"solved": int(outcomes.sum()), "solved_rate": float(outcomes.mean()),
                        "solved_low": low, "solved_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def curve_band(curves: Sequence[tuple[np.ndarray, np.ndarray]], kind: str = "t",
               level: float = 0.95) -> pd.DataFrame:
    """Mean and interval over seeds of learning curves, per step.

    curves: one (steps (S_i,), values (S_i,)) per seed. Columns: step, n (seeds with a finite value at
    that step), mean, low, high; only steps some seed logged.
    """
    by_step: dict[int, list[float]] = {}
    for steps, values in curves:
        for step, value in zip(np.asarray(steps).tolist(), np.asarray(values, dtype=float).tolist(),
                               strict=True):
            if math.isfinite(value):
                by_step.setdefault(int(step), []).append(value)
    rows = []
    for step in sorted(by_step):
        values = by_step[step]
        low, high = interval(values, kind, level)
        rows.append({"step": step, "n": len(values), "mean": float(np.mean(values)), "low": low,
                     "high": high})
    return pd.DataFrame(rows, columns=["step", "n", "mean", "low", "high"])
