"""harness.forecast.backtest and intervals: h-step ARMA forecasts and intervals equal statsmodels', recursive
RNN forecasts, refits on the expanding window, no leakage, split conformal, Winkler, coverage on ARMA data."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from statsmodels.tsa.arima.model import ARIMA

from harness.forecast.arma import fit_arma, h_step_forecasts
from harness.forecast.backtest import BacktestPlan, dm_by_horizon, run_backtest, score_backtest, score_key
from harness.forecast.intervals import (
    conformal_quantiles,
    coverage,
    level_name,
    level_of_name,
    min_calibration_residuals,
    winkler_score,
)
from harness.forecast.metrics import diebold_mariano
from harness.forecast.models import ArmaForecaster, RnnForecaster, lagged_inputs
from harness.forecast.series import make_series
from harness.forecast.splits import split_series

RNN = {"hidden_size": 6, "lags": 2, "steps": 30, "sequence_length": 32, "batch_size": 4, "burn_in": 4}


def statsmodels_forecast(values: np.ndarray, train_end: int, order: tuple[int, int], origin: int, H: int):
    """statsmodels on its own: fit ARIMA(p, 0, q) + const on values[:train_end], forecast H steps from
    origin."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ARIMA(values[:train_end], order=(order[0], 0, order[1]), trend="c").fit()
        return fitted.apply(values[:origin], refit=False).get_forecast(H)


@pytest.mark.parametrize("order", [(1, 1), (2, 0), (0, 2)])
def test_arma_h_step_forecasts_and_variances_equal_statsmodels(order):
    values = make_series("arma22", n=400, seed=3).values
    fit = fit_arma(values[:250], order)
    origins = np.arange(250, 400, 11)
    mean, variance = h_step_forecasts(fit, values, origins, 6)
    for m, origin in enumerate(origins):
        reference = statsmodels_forecast(values, 250, order, int(origin), 6)
        np.testing.assert_allclose(mean[m], reference.predicted_mean, rtol=0, atol=1e-8)
        np.testing.assert_allclose(variance[m], reference.var_pred_mean, rtol=0, atol=1e-8)


def test_arma_backtest_with_refits_and_intervals_equal_statsmodels():
    values = make_series("arma11", n=360, seed=5).values
    split = split_series(values, train=0.6, val=0.1, test=0.3)
    plan = BacktestPlan(horizon=4, step=9, refit_every=4, levels=(0.8, 0.95))
    bt = run_backtest(lambda: ArmaForecaster(order=(1, 1)), values, split, plan)
    assert bt.interval == "model" and bt.refits == [int(bt.origins[k]) for k in range(0, len(bt.origins), 4)]
    n_val = len(split.val)
    for m, origin in enumerate(bt.origins):
        segment_start = bt.refits[m // 4]
        reference = statsmodels_forecast(values, segment_start - n_val, (1, 1), int(origin), 4)
        np.testing.assert_allclose(bt.forecasts[m], reference.predicted_mean, rtol=0, atol=1e-8)
        for i, level in enumerate(plan.levels):
            bounds = reference.conf_int(alpha=1 - level)
            np.testing.assert_allclose(bt.lower[i, m], bounds[:, 0], rtol=0, atol=1e-8)
            np.testing.assert_allclose(bt.upper[i, m], bounds[:, 1], rtol=0, atol=1e-8)
    rows = bt.origins[:, None] + np.arange(4)[None, :]
    np.testing.assert_array_equal(np.isnan(bt.targets), rows >= len(values))


@pytest.mark.parametrize("model", ["elman", "lstm", "jordan"])
def test_rnn_recursive_forecasts_feed_back_their_own_predictions(model):
    values = make_series("ar2", n=260, seed=1).values
    forecaster = RnnForecaster(model, **RNN).fit(values[:180], values[180:220])
    origins = np.arange(220, 260, 5)
    mean, variance = forecaster.forecast(values, origins, 4)
    assert variance is None
    for m, origin in enumerate(origins):  # one origin at a time, appending each forecast to the inputs
        z = list(forecaster.normalizer_.transform(values[:origin]))
        for h in range(4):
            inputs = lagged_inputs(np.array([*z, 0.0]), RNN["lags"])[:, None, :]
            z.append(forecaster.model_.predict(inputs)[-1, 0, 0])
            assert forecaster.normalizer_.inverse_transform(z[-1]) == pytest.approx(mean[m, h], abs=1e-12)
    np.testing.assert_allclose(mean[:, 0], forecaster.predict(values, 220)[origins - 220], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "make", [lambda: ArmaForecaster(order=(2, 1)), lambda: RnnForecaster("gru", **RNN)], ids=["arma", "rnn"]
)
def test_changing_values_after_an_origin_changes_no_forecast_made_there(make):
    values = make_series("arma22", n=300, seed=2).values
    split = split_series(values, train=0.6, val=0.15, test=0.25)
    plan = BacktestPlan(horizon=3, step=4, refit_every=3)
    clean = run_backtest(make, values, split, plan)
    cut = int(clean.origins[5])
    poisoned = values.copy()
    poisoned[cut:] = 1e3 * np.sin(np.arange(len(values) - cut))
    dirty = run_backtest(make, poisoned, split, plan)
    made_before = clean.origins <= cut
    np.testing.assert_allclose(dirty.forecasts[made_before], clean.forecasts[made_before], rtol=0, atol=1e-12)
    np.testing.assert_allclose(dirty.lower[:, made_before], clean.lower[:, made_before], rtol=0, atol=1e-12)
    assert not np.allclose(dirty.forecasts[~made_before], clean.forecasts[~made_before])


def test_rnn_intervals_are_split_conformal_on_the_validation_part():
    values = make_series("setar", n=400, seed=4).values
    split = split_series(values, train=0.5, val=0.25, test=0.25)
    plan = BacktestPlan(horizon=2, levels=(0.8,))
    bt = run_backtest(lambda: RnnForecaster("elman", **RNN), values, split, plan)
    assert bt.interval == "conformal"
    forecaster = bt.first
    calibration = np.arange(split.train_end, split.val_end)
    mean, _ = forecaster.forecast(values, calibration, 2)
    for h in (1, 2):
        inside = calibration + h - 1 < split.val_end
        residuals = np.sort(np.abs(values[calibration[inside] + h - 1] - mean[inside, h - 1]))
        q = residuals[int(np.ceil((len(residuals) + 1) * 0.8)) - 1]
        np.testing.assert_allclose(bt.upper[0, :, h - 1] - bt.forecasts[:, h - 1], q, rtol=1e-12)
        np.testing.assert_allclose(bt.forecasts[:, h - 1] - bt.lower[0, :, h - 1], q, rtol=1e-12)
    no_val = run_backtest(
        lambda: RnnForecaster("elman", **RNN), values, split_series(values, 0.75, 0.0, 0.25), plan
    )
    assert np.isnan(no_val.lower).all() and "coverage80" not in score_backtest(no_val, plan, [None, None])[1]


def test_conformal_quantiles_rank_rule():
    residuals = np.arange(1.0, 20.0)[:, None]  # n = 19
    np.testing.assert_array_equal(conformal_quantiles(residuals, [0.5, 0.9, 0.95]), [[10.0], [18.0], [19.0]])
    assert conformal_quantiles(residuals[:5], [0.9])[0, 0] == np.inf  # ceil(6 * 0.9) = 6 > 5 points
    with_gap = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, np.nan]])
    np.testing.assert_array_equal(conformal_quantiles(with_gap, [0.5]), [[3.0, 2.0]])


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95, 0.975])
def test_min_calibration_residuals_is_where_the_conformal_half_width_turns_finite(level):
    n = min_calibration_residuals(level)
    residuals = np.arange(1.0, n + 1.0)[:, None]
    assert np.isfinite(conformal_quantiles(residuals, [level])[0, 0])
    assert n == 1 or conformal_quantiles(residuals[:-1], [level])[0, 0] == np.inf
    assert n == math.ceil(Fraction(str(level)) / (1 - Fraction(str(level))))


@pytest.mark.parametrize(("level", "name"), [(0.5, "50"), (0.8, "80"), (0.95, "95"), (0.975, "97_5"),
                                             (0.995, "99_5"), (0.9999, "99_99")])
def test_level_names_in_metric_names_read_back_to_the_same_level(level, name):
    assert level_name(level) == name
    assert level_of_name(name) == level


def test_winkler_score_and_coverage_by_hand():
    y = np.array([0.0, 2.0, -3.0])
    lower, upper = np.full(3, -1.0), np.full(3, 1.0)
    # width 2 each; y = 2 is 1 above (penalty 2 / 0.2 * 1 = 10), y = -3 is 2 below (penalty 20)
    assert winkler_score(y, lower, upper, 0.8) == pytest.approx((2 + 12 + 22) / 3)
    assert coverage(y, lower, upper) == pytest.approx(1 / 3)


def test_scores_per_horizon_and_dm_with_h_minus_one_lags():
    values = make_series("ar2", n=500, seed=6).values
    split = split_series(values)
    plan = BacktestPlan(horizon=3)
    arma = run_backtest(lambda: ArmaForecaster(order=(2, 0)), values, split, plan)
    rnn = run_backtest(lambda: RnnForecaster("elman", **RNN), values, split, plan)
    series = make_series("ar2", n=500, seed=6)
    scores = score_backtest(arma, plan, series.oracle_mse(3))
    psi1 = 0.75  # AR(2) 0.75, -0.5: psi_1 = phi_1, psi_2 = phi_1^2 + phi_2
    assert series.oracle_mse(3) == pytest.approx([1.0, 1.0 + psi1**2, 1.0 + psi1**2 + (psi1**2 - 0.5) ** 2])
    for h in (1, 2, 3):
        keep = np.isfinite(arma.targets[:, h - 1])
        errors = arma.targets[keep, h - 1] - arma.forecasts[keep, h - 1]
        assert scores[h]["mse"] == pytest.approx(np.mean(errors**2))
        assert scores[h]["oracle_ratio"] == pytest.approx(np.mean(errors**2) / series.oracle_mse(3)[h - 1])
        dm = dm_by_horizon(rnn, arma, plan)[h]
        rnn_errors = rnn.targets[keep, h - 1] - rnn.forecasts[keep, h - 1]
        assert (dm["dm_stat"], dm["dm_pvalue"]) == diebold_mariano(rnn_errors, errors, h=h)
    assert len(scores) == 3 and score_key("mse", 1) == "mse" and score_key("mse", 2, "w") == "mse.h2.w"


def test_plan_refuses_bad_settings_in_one_line():
    for kwargs, message in [
        ({"horizon": 0}, "backtest.horizon must be an integer >= 1"),
        ({"step": 1.5}, "backtest.step must be an integer >= 1"),
        ({"refit_every": 0}, "backtest.refit_every must be an integer >= 1 or null"),
        ({"levels": (0.8, 1.0)}, "intervals.levels must be numbers in (0, 1)"),
    ]:
        with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
            BacktestPlan(**kwargs)


def test_arma_95_percent_intervals_cover_95_percent_of_gaussian_arma_data():
    """Over 20 seeds of Gaussian ARMA(1,1) data, the one-step 95 % interval from statsmodels' forecast
    variance (parameters estimated on the training part) covers 95 % +- 2 % of the test points."""
    plan = BacktestPlan(horizon=1, levels=(0.95,))
    covered = []
    for seed in range(20):
        values = make_series("arma11", n=1000, seed=100 + seed).values
        bt = run_backtest(
            lambda: ArmaForecaster(order=(1, 1)), values, split_series(values, 0.5, 0.0, 0.5), plan
        )
        covered.append(score_backtest(bt, plan, [1.0])[1]["coverage95"])
    mean = float(np.mean(covered))
    assert abs(mean - 0.95) <= 0.02, (mean, covered)
