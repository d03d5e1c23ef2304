"""Rolling-origin (expanding window) backtests behind the one forecasting interface, and their scores.

Origins o run every `step` points over the test part, o = val_end, val_end + step, ...; from each the model
forecasts series[o + h - 1] for h = 1..H from series[:o] alone. The first fit is the split's (train, val);
every `refit_every` origins the forecaster is fitted anew on the expanding window: train = series[:o - V],
val = series[o - V:o] with V = len(val) (refit_every None: never, the parameters stay fixed). Forecasts
whose target lies beyond the test part are dropped from the scores.

Intervals at each level: from the model's forecast variance when it has one (ARMA: Gaussian bounds), else by
split conformal prediction per horizon on the validation part (the residuals of forecasts made from origins
inside val, targets inside val), recalibrated at every refit. Without a validation part such a model has no
interval (NaN bounds, blank scores).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.forecast.intervals import (
    DEFAULT_LEVELS,
    check_levels,
    conformal_quantiles,
    coverage,
    gaussian_bounds,
    level_name,
    winkler_score,
)
from harness.forecast.metrics import diebold_mariano, evaluate_forecast
from harness.forecast.models import Forecaster
from harness.forecast.splits import Split

SCORES = ("mse", "mae", "nmse", "oracle_ratio")
PLAN_KEYS = ("horizon", "step", "refit_every")


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}{' or null (never)' if allow_none else ''}, got {value!r}"
        )
    return int(value)


@dataclass(frozen=True)
class BacktestPlan:
    """horizon H (forecasts h = 1..H), step (points between origins), refit_every (origins between refits,
    None: never), levels (interval probabilities)."""

    horizon: int = 1
    step: int = 1
    refit_every: int | None = None
    levels: tuple[float, ...] = DEFAULT_LEVELS

    def __post_init__(self) -> None:
        _check_int("backtest.horizon", self.horizon, 1)
        _check_int("backtest.step", self.step, 1)
        _check_int("backtest.refit_every", self.refit_every, 1, allow_none=True)
        object.__setattr__(self, "levels", check_levels(self.levels))

    @classmethod
    def from_mapping(
        cls, backtest: Mapping[str, Any], levels: Sequence[float] = DEFAULT_LEVELS
    ) -> BacktestPlan:
        """The plan of a config's backtest section (keys PLAN_KEYS) and interval levels."""
        return cls(**backtest, levels=tuple(levels))

    def dm_horizon(self, h: int) -> int:
        """The h the DM test needs: errors of h-step forecasts from origins `step` apart overlap in
        ceil(h / step) - 1 lags."""
        return -(-h // self.step)


@dataclass
class Backtest:
    """One model's backtest on one series.

    origins (M,); forecasts (M, H); targets (M, H) truth, NaN beyond the test part; lower, upper (L, M, H)
    per level (NaN: no interval); interval: "model" (forecast variance) or "conformal"; refits: the origins
    where a fit started a segment; summaries: forecaster.summary() of each fit; first: the first fitted
    forecaster (for its training history and description).
    """

    origins: np.ndarray
    forecasts: np.ndarray
    targets: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    interval: str
    refits: list[int]
    summaries: list[dict[str, Any]]
    first: Any = field(repr=False)


def origins(plan: BacktestPlan, test_start: int, n: int) -> np.ndarray:
    """The origins (M,) of plan over the test part [test_start, n)."""
    return np.arange(test_start, n, plan.step, dtype=np.int64)


def run_backtest(
    make: Callable[[], Forecaster], values: np.ndarray, split: Split, plan: BacktestPlan
) -> Backtest:
    """Backtest the forecasters make() builds on (N,) values with split's parts (see the module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    n, n_val, H = len(values), len(split.val), plan.horizon
    points = origins(plan, split.val_end, n)
    every = len(points) if plan.refit_every is None else plan.refit_every
    forecasts = np.empty((len(points), H))
    lower = np.full((len(plan.levels), len(points), H), np.nan)
    upper = np.full_like(lower, np.nan)
    refits, summaries, first, method = [], [], None, "model"
    for begin in range(0, len(points), every):
        segment = slice(begin, begin + every)
        o = int(points[begin])
        forecaster = make().fit(values[: o - n_val], values[o - n_val : o])
        first = forecaster if first is None else first
        refits.append(o)
        summaries.append(forecaster.summary())
        mean, variance = forecaster.forecast(values, points[segment], H)
        forecasts[segment] = mean
        if variance is not None:
            for i, level in enumerate(plan.levels):
                lower[i, segment], upper[i, segment] = gaussian_bounds(mean, variance, level)
            continue
        method = "conformal"
        if n_val == 0:
            continue
        calibration = np.arange(o - n_val, o)
        cal_mean, _ = forecaster.forecast(values, calibration, H)
        rows = calibration[:, None] + np.arange(H)[None, :]
        truth = np.where(rows < o, values[np.minimum(rows, o - 1)], np.nan)
        half = conformal_quantiles(truth - cal_mean, plan.levels)  # (L, H)
        lower[:, segment] = mean[None] - half[:, None, :]
        upper[:, segment] = mean[None] + half[:, None, :]
    rows = points[:, None] + np.arange(H)[None, :]
    targets = np.where(rows < n, values[np.minimum(rows, n - 1)], np.nan)
    return Backtest(points, forecasts, targets, lower, upper, method, refits, summaries, first)


def score_key(score: str, h: int, window: str | None = None) -> str:
    """Metric name of score at horizon h in window: `mse` (h = 1, whole test part), `mse.h3`,
    `mse.h1.w1955`."""
    return score + ("" if h == 1 and window is None else f".h{h}") + ("" if window is None else f".{window}")


def _scored(bt: Backtest, h: int, window: tuple[int, int] | None) -> np.ndarray:
    """(M,) bool: the origins whose horizon-h target exists and lies in window [lo, hi) (None: anywhere)."""
    keep = np.isfinite(bt.targets[:, h - 1])
    if window is not None:
        target_at = bt.origins + h - 1
        keep &= (target_at >= window[0]) & (target_at < window[1])
    return keep


def score_backtest(
    bt: Backtest, plan: BacktestPlan, oracle: Sequence[float | None], window: tuple[int, int] | None = None
) -> dict[int, dict[str, float]]:
    """Scores per horizon h -> {mse, mae, nmse, oracle_ratio, coverage<L>, winkler<L>} of the forecasts whose
    target lies in window [lo, hi) of positions (None: the whole test part). oracle: (H,) best MSE or None.
    Scores that do not apply (no oracle, no interval, fewer than 1 target) are left out."""
    out: dict[int, dict[str, float]] = {}
    for h in range(1, plan.horizon + 1):
        keep = _scored(bt, h, window)
        if not keep.any():
            continue
        y, yhat = bt.targets[keep, h - 1], bt.forecasts[keep, h - 1]
        scores = evaluate_forecast(y, yhat, oracle[h - 1])
        row = {key: float(scores[key]) for key in SCORES if scores[key] is not None}
        for i, level in enumerate(plan.levels):
            lo, hi = bt.lower[i, keep, h - 1], bt.upper[i, keep, h - 1]
            if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
                row[f"coverage{level_name(level)}"] = coverage(y, lo, hi)
                row[f"winkler{level_name(level)}"] = winkler_score(y, lo, hi, level)
        out[h] = row
    return out


def dm_by_horizon(
    bt: Backtest, reference: Backtest, plan: BacktestPlan, window: tuple[int, int] | None = None
) -> dict[int, dict[str, float]]:
    """Diebold-Mariano test per horizon of bt's squared errors against reference's (same origins and
    targets), with the ceil(h / step) - 1 autocovariance lags overlapping h-step errors need. h -> {dm_stat,
    dm_pvalue}; horizons with fewer than 2 shared targets, or too few for the lags, are left out."""
    out: dict[int, dict[str, float]] = {}
    for h, (errors, ref_errors) in dm_errors(bt, reference, plan, window).items():
        stat, pvalue = diebold_mariano(errors, ref_errors, h=plan.dm_horizon(h))
        out[h] = {"dm_stat": stat, "dm_pvalue": pvalue}
    return out


def dm_errors(
    bt: Backtest, reference: Backtest, plan: BacktestPlan, window: tuple[int, int] | None = None
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """h -> (bt's errors (K,), reference's errors (K,)): truth minus forecast on the K horizon-h targets both
    score in window, the pairs dm_by_horizon tests; horizons with too few targets for the test left out."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for h in range(1, plan.horizon + 1):
        keep = _scored(bt, h, window)
        if keep.sum() <= plan.dm_horizon(h):
            continue
        out[h] = (bt.targets[keep, h - 1] - bt.forecasts[keep, h - 1],
                  reference.targets[keep, h - 1] - reference.forecasts[keep, h - 1])
    return out
