"""harness.seed_stats against hand-computed values: t, bootstrap and Wilson intervals, and a grouped table."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pandas as pd
import pytest

from harness.seed_stats import (
    bootstrap_interval,
    bootstrap_means,
    curve_band,
    summarize_over_seeds,
    t_interval,
    wilson_interval,
    within,
)

# Quantiles from tables: t_{0.975, 3}, t_{0.975, 1}, z_{0.975}
T3, T1, Z = 3.182446305284263, 12.706204736174698, 1.959963984540054


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    p = k / n
    center = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return center - half, center + half


def test_t_interval_is_mean_plus_minus_t_times_standard_error() -> None:
    half = T3 * math.sqrt(5 / 3) / 2                    # s = sqrt(5/3) for 1, 2, 3, 4; n = 4
    assert t_interval([1, 2, 3, 4]) == pytest.approx((2.5 - half, 2.5 + half), rel=1e-14)
    assert t_interval([1, 3]) == pytest.approx((2 - T1, 2 + T1), rel=1e-14)   # s = sqrt(2), se = 1
    assert all(math.isnan(b) for b in t_interval([7.0]))


def test_wilson_interval_matches_the_formula_and_known_values() -> None:
    assert wilson_interval(3, 5) == pytest.approx((0.2307242812760128, 0.8823792257673520), abs=1e-15)
    for k, n in ((0, 5), (3, 4), (5, 5), (1, 10)):
        low, high = wilson_by_hand(k, n)
        assert wilson_interval(k, n) == pytest.approx((max(low, 0.0), min(high, 1.0)), abs=1e-15)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert all(math.isnan(b) for b in wilson_interval(0, 0))


def test_bootstrap_of_two_values_by_hand() -> None:
    # draws of (1, 3) with replacement: means 1, 2, 2, 3, each 1/4 -> P(1) = 1/4, P(2) = 1/2, P(3) = 1/4
    means, probabilities = bootstrap_means([1.0, 3.0])
    assert means.tolist() == [1.0, 2.0, 3.0] and probabilities == pytest.approx([0.25, 0.5, 0.25], abs=1e-15)
    assert bootstrap_interval([1.0, 3.0]) == (1.0, 3.0)
    assert bootstrap_interval([1.0, 3.0], level=0.4) == (2.0, 2.0)   # quantiles 0.3 and 0.7 both at 2
    assert all(math.isnan(b) for b in bootstrap_interval([1.0]))


def test_exact_bootstrap_equals_enumerating_every_sequence_of_draws() -> None:
    values = np.array([0.0, 1.0, 2.0, 10.0, 4.5])
    sequences = np.array(list(product(range(5), repeat=5)))          # all 5^5 equally likely draws
    every_mean = np.sort(values[sequences].mean(axis=1))
    for level in (0.95, 0.8, 0.5):
        alpha = 1 - level
        low = every_mean[math.ceil(alpha / 2 * every_mean.size) - 1]     # inverse CDF
        high = every_mean[math.ceil((1 - alpha / 2) * every_mean.size) - 1]
        assert bootstrap_interval(values, level) == pytest.approx((low, high), abs=1e-12)


def test_large_samples_bootstrap_by_seeded_draws() -> None:
    values = np.arange(12.0)
    assert bootstrap_interval(values) == bootstrap_interval(values)
    low, high = bootstrap_interval(values)
    half = 1.96 * values.std(ddof=0) / math.sqrt(12)                  # normal approximation, roughly
    assert low == pytest.approx(5.5 - half, abs=0.25) and high == pytest.approx(5.5 + half, abs=0.25)


def test_grouped_table_by_hand() -> None:
    frame = pd.DataFrame({
        "model": ["a", "b", "a", "b", "a", "b", "a"],
        "seed": [3, 0, 1, 1, 0, 2, 2],
        "mse": [4.0, 1.0, 2.0, 3.0, 1.0, np.nan, 3.0],
        "solved": [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0],
    })
    table = summarize_over_seeds(frame, ["model"], ["mse"], solved="solved")
    a, b = table.iloc[0], table.iloc[1]
    assert table["model"].tolist() == ["a", "b"] and table["seeds"].tolist() == [4, 3]
    half = T3 * math.sqrt(5 / 3) / 2
    assert (a["mse_n"], a["mse_mean"], a["mse_std"]) == (4, 2.5, pytest.approx(math.sqrt(5 / 3), rel=1e-15))
    assert (a["mse_low"], a["mse_high"]) == pytest.approx((2.5 - half, 2.5 + half), rel=1e-14)
    assert (a["solved"], a["solved_rate"]) == (3, 0.75)
    assert (a["solved_low"], a["solved_high"]) == pytest.approx(wilson_by_hand(3, 4), abs=1e-15)
    # b: the NaN (a diverged seed) is left out of mse but counts as a seed that did not solve
    assert (b["mse_n"], b["mse_mean"], b["mse_std"]) == (2, 2.0, pytest.approx(math.sqrt(2), rel=1e-15))
    assert (b["mse_low"], b["mse_high"]) == pytest.approx((2 - T1, 2 + T1), rel=1e-14)
    assert (b["solved"], b["solved_rate"]) == (1, pytest.approx(1 / 3))
    boot = summarize_over_seeds(frame, ["model"], ["mse"], kind="bootstrap")
    assert (boot.iloc[1]["mse_low"], boot.iloc[1]["mse_high"]) == (1.0, 3.0)
    with pytest.raises(ValueError, match="interval must be one of"):
        summarize_over_seeds(frame, ["model"], ["mse"], kind="normal")


def test_curve_band_per_step() -> None:
    band = curve_band([(np.array([0, 10, 20]), np.array([4.0, 2.0, 1.0])),
                       (np.array([0, 10, 20]), np.array([2.0, np.nan, 3.0])),
                       (np.array([0, 10]), np.array([3.0, 4.0]))])
    assert band["step"].tolist() == [0, 10, 20] and band["n"].tolist() == [3, 2, 2]
    assert band["mean"].tolist() == [3.0, 3.0, 2.0]
    assert (band["low"][0], band["high"][0]) == pytest.approx(t_interval([4.0, 2.0, 3.0]), rel=1e-15)


def test_bounds_cut_a_metrics_interval_to_its_range_and_leave_the_rest() -> None:
    """An MSE cannot be negative: three seeds' t interval [-0.00045, 0.00069] is reported as [0, 0.00069];
    without bounds, and for a metric the bounds do not name, the t interval is unchanged."""
    frame = pd.DataFrame({"seed": [0, 1, 2], "mse": [1e-5, 2e-5, 1e-3], "mae": [1e-5, 2e-5, 1e-3]})
    low, high = t_interval(frame["mse"])
    assert low < 0 < high
    table = summarize_over_seeds(frame, [], ["mse", "mae"], bounds={"mse": (0.0, math.inf)})
    assert (table["mse_low"][0], table["mse_high"][0]) == (0.0, high)
    assert (table["mae_low"][0], table["mae_high"][0]) == (low, high)
    assert within((0.0, 1.0), -0.2, 1.3) == (0.0, 1.0) and within((0.0, 1.0), 0.1, 0.9) == (0.1, 0.9)
    assert all(math.isnan(bound) for bound in within((0.0, math.inf), math.nan, math.nan))
