"""harness.forecast.arma: ARMA fits, order search, convergence flags, one-step forecasts without look-ahead.
"""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.tsa.arima_process import ArmaProcess, arma2ma

from harness.forecast.arma import (
    fit_arma,
    linear_rnn_impulse_response,
    minimum_length,
    one_step_forecasts,
    predictor_weights,
    psi_from_predictor_weights,
    select_arma,
)
from harness.forecast.metrics import evaluate_forecast
from harness.forecast.models import ArmaForecaster

PHI, THETA, MU = 0.6, 0.4, 2.0


def simulate_arma11(n: int, seed: int, phi: float = PHI, theta: float = THETA, mu: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(n,) ARMA(1,1) values around mu and the (n,) unit-variance innovations that drove them."""
    burnin = 500
    e = np.random.default_rng(seed).standard_normal(n + burnin)
    x = ArmaProcess([1.0, -phi], [1.0, theta]).generate_sample(n, distrvs=lambda size: e, burnin=burnin)
    return x + mu, e[burnin:]


@pytest.fixture(scope="module")
def long_arma11() -> tuple[np.ndarray, np.ndarray]:
    return simulate_arma11(3000 + 8000, seed=11, mu=MU)


@pytest.fixture(scope="module")
def fitted_long(long_arma11):
    return fit_arma(long_arma11[0][:3000], (1, 1))


def test_fit_recovers_arma11_within_three_standard_errors(fitted_long):
    fit = fitted_long
    assert fit.converged and fit.order == (1, 1)
    truth = {"const": MU, "ar.L1": PHI, "ma.L1": THETA, "sigma2": 1.0}
    for name, value in truth.items():
        assert abs(fit.params[name] - value) < 3 * fit.bse[name], (name, fit.params[name], fit.bse[name])
    assert fit.ar.shape == (1,) and fit.ma.shape == (1,)
    np.testing.assert_allclose(fit.psi, arma2ma([1, -fit.ar[0]], [1, fit.ma[0]], lags=20))
    assert fit.summary()["psi"][:2] == pytest.approx([1.0, fit.ar[0] + fit.ma[0]])


def test_one_step_forecasts_reach_the_oracle_on_a_long_test_part(long_arma11, fitted_long):
    # 8000 test points: the sampling sd of mean(e^2) is sqrt(2/8000) ~ 1.6%, so 5% is ~3 sd.
    x, e = long_arma11
    prediction = ArmaForecaster(order=(1, 1)).fit(x[:3000], x[3000:3000]).predict(x, 3000)
    scores = evaluate_forecast(x[3000:], prediction, innovation_variance=1.0)
    assert abs(scores["oracle_ratio"] - 1.0) < 0.05
    # against the realised innovations the only gap is parameter error (and the filter's start-up, long gone)
    assert scores["mse"] / np.mean(e[3000:] ** 2) == pytest.approx(1.0, abs=0.01)
    np.testing.assert_array_equal(prediction, one_step_forecasts(fitted_long, x, 3000))


def test_apply_on_the_whole_series_equals_appending_to_the_training_data(long_arma11, fitted_long):
    x = long_arma11[0][:3500]
    appended = fitted_long.results.append(x[3000:], refit=False)
    np.testing.assert_allclose(one_step_forecasts(fitted_long, x, 3000), appended.fittedvalues[3000:],
                               rtol=0, atol=1e-10)


def test_forecasts_use_no_future_values(long_arma11, fitted_long):
    x = long_arma11[0][:3400].copy()
    start, k = 3000, 3100
    before = one_step_forecasts(fitted_long, x, start)
    x[k] += 5.0
    after = one_step_forecasts(fitted_long, x, start)
    changed = np.flatnonzero(before != after) + start
    assert changed.min() == k + 1  # the prediction of x[k] itself uses only x[:k]
    np.testing.assert_array_equal(before[: k + 1 - start], after[: k + 1 - start])


def test_order_search_picks_the_true_order_by_bic():
    y, _ = simulate_arma11(1000, seed=0, phi=0.8, theta=0.6)
    selection = select_arma(y, criterion="bic", max_p=2, max_q=2)
    assert selection.best.order == (1, 1)
    assert len(selection.trials) == 9
    assert selection.best.bic == min(t.bic for t in selection.trials if t.converged)


def test_non_converged_fit_is_flagged_with_its_warning(long_arma11):
    fit = fit_arma(long_arma11[0][:1000], (1, 1), maxiter=1)
    assert not fit.converged
    assert any("ConvergenceWarning" in text for text in fit.warnings)
    forecaster = ArmaForecaster(order=(1, 1), maxiter=1).fit(long_arma11[0][:1000], np.empty(0))
    summary = forecaster.summary()
    assert summary["converged"] is False and summary["warnings"]


def test_order_search_skips_and_records_non_converged_fits(long_arma11):
    message = r"no ARMA order in the grid converged: ARMA\(0, 0\): ConvergenceWarning"
    with pytest.raises(RuntimeError, match=message):
        select_arma(long_arma11[0][:1000], max_p=1, max_q=1, maxiter=1)
    selection = select_arma(long_arma11[0][:1000], max_p=1, max_q=1, maxiter=6)
    assert selection.best.converged
    for trial in selection.skipped:
        assert not trial.converged and trial.warnings
    assert all(t.order != selection.best.order for t in selection.skipped)


def test_too_short_parts_raise_a_value_error_naming_the_problem(long_arma11):
    x = long_arma11[0]
    forecaster = ArmaForecaster(order=(1, 1)).fit(x[:200], np.empty(0))
    needed = minimum_length(1, 1)
    message = rf"test part series\[start:\] has 20 points, too short for ARMA\(1,1\): needs at least {needed}"
    with pytest.raises(ValueError, match=message):
        forecaster.predict(x[:220], 200)
    with pytest.raises(ValueError, match=r"train has 25 points, too short for ARMA\(1,1\)"):
        fit_arma(x[:25], (1, 1))
    with pytest.raises(ValueError, match=r"too short for the grid up to ARMA\(3,3\)"):
        select_arma(x[:60])
    for bad in (0, 2.5, True):  # refused before any grid point is fitted, as fit_arma refuses it
        with pytest.raises(ValueError, match=rf"psi_lags must be a positive integer, got {bad!r}"):
            select_arma(x, psi_lags=bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": (1,)}, "order must be None or a pair"),
        ({"order": (1, -1)}, "order must be None or a pair"),
        ({"criterion": "hqic"}, r"criterion must be one of \['aic', 'bic'\], got 'hqic'"),
        ({"max_p": -1}, "max_p must be an integer >= 0"),
        ({"maxiter": 0}, "maxiter must be an integer >= 1 or None"),
    ],
)
def test_arma_forecaster_validates_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArmaForecaster(**kwargs)


def test_predictor_weights_of_arma11_follow_the_closed_form():
    pi = predictor_weights([PHI], [THETA], lags=8)
    np.testing.assert_allclose(pi, (PHI + THETA) * (-THETA) ** np.arange(8), rtol=1e-12)
    np.testing.assert_allclose(psi_from_predictor_weights(predictor_weights([0.5, -0.2], [0.3, 0.1], 40), 12),
                               arma2ma([1, -0.5, 0.2], [1, 0.3, 0.1], lags=12), atol=1e-12)


def test_linear_rnn_impulse_response_matches_running_the_network():
    rng = np.random.default_rng(3)
    D, H, K = 2, 3, 7
    W_xh, W_hy = rng.normal(size=(D, H)), rng.normal(size=(H, 1))
    W_hh = 0.5 * rng.normal(size=(H, H))
    x = np.zeros(K + 1)
    x[0] = 1.0  # unit impulse at time 0; the net fed (x_{t-1}, x_{t-2}) at step t
    h, outputs = np.zeros(H), []
    for t in range(1, K + 1):
        u = np.array([x[t - 1], x[t - 2] if t >= 2 else 0.0])
        h = u @ W_xh + h @ W_hh
        outputs.append((h @ W_hy)[0])
    np.testing.assert_allclose(linear_rnn_impulse_response(W_xh, W_hh, W_hy, K), outputs, rtol=1e-12)
    scalar = linear_rnn_impulse_response([[PHI + THETA]], [[-THETA]], [[1.0]], 8)
    np.testing.assert_allclose(scalar, predictor_weights([PHI], [THETA], lags=8), rtol=1e-12)
    with pytest.raises(ValueError, match="W_xh, W_hh, W_hy must have shapes"):
        linear_rnn_impulse_response(W_xh, W_hh, np.ones((H, 2)))


def test_const_is_the_process_mean_not_the_intercept():
    # x_t - 5 = 0.5 (x_{t-1} - 5) + e_t: mean 5, intercept c = 5 (1 - 0.5) = 2.5
    rng = np.random.default_rng(0)
    e = rng.standard_normal(3000)
    x = np.empty(3000)
    x[0] = 5.0
    for t in range(1, 3000):
        x[t] = 5.0 + 0.5 * (x[t - 1] - 5.0) + e[t]
    fit = fit_arma(x, (1, 0))
    assert fit.const == pytest.approx(x.mean(), abs=0.01)
    assert abs(fit.const - 2.5) > 2.0


def noisy_sine(seed: int, n: int = 1500):
    from harness.forecast.series import make_series
    from harness.forecast.splits import split_series

    series = make_series("sine", n=n, seed=seed)
    return series, split_series(series.values, train=0.6, val=0.2, test=0.2)


def test_an_unconstrained_fit_puts_the_sine_on_the_unit_circle_and_forecasts_near_the_oracle():
    series, split = noisy_sine(0)
    fit = fit_arma(split.train, (2, 2), constrained=False)
    roots = np.roots(np.r_[1.0, -fit.ar][::-1])  # of 1 - phi_1 z - phi_2 z^2
    np.testing.assert_allclose(np.abs(roots), 1.0, atol=0.01)
    np.testing.assert_allclose(np.abs(np.angle(roots)), 2 * np.pi / 20.0, rtol=0.01)  # period 20
    prediction = one_step_forecasts(fit, series.values, split.val_end)
    assert evaluate_forecast(split.test, prediction, series.innovation_variance)["oracle_ratio"] < 1.6
    assert fit.summary()["constrained"] is False
    ar_root, ma_root = fit.root_moduli()  # as the summary and the comparison's ARMA cells report them
    assert ar_root == pytest.approx(np.abs(fit.results.arroots).min(), rel=1e-12)
    assert ma_root == pytest.approx(np.abs(fit.results.maroots).min(), rel=1e-12)
    assert ar_root == pytest.approx(1.0, abs=0.01)
    summary = fit.summary()
    assert (summary["ar_root_min_modulus"], summary["ma_root_min_modulus"]) == (ar_root, ma_root)


def test_root_moduli_are_none_for_a_part_the_order_leaves_out(long_arma11):
    fit = fit_arma(long_arma11[0][:600], (1, 0))
    assert fit.root_moduli()[1] is None and fit.root_moduli()[0] == pytest.approx(1 / abs(fit.ar[0]))


def test_unconstrained_search_scores_every_fit_on_the_same_observations(long_arma11):
    y = long_arma11[0][:600]
    selection = select_arma(y, max_p=1, max_q=1, unconstrained=True)
    assert [t.constrained for t in selection.trials] == [True] * 4 + [False] * 4
    burn = 2  # max(max_p, max_q + 1)
    for trial in selection.trials:
        fit = fit_arma(y, trial.order, constrained=trial.constrained)
        loglike = float(np.sum(fit.results.llf_obs[burn:]))
        assert trial.aic == pytest.approx(-2 * loglike + 2 * len(fit.params), rel=1e-12)
    assert selection.best.order == (1, 1)  # stationary data: the same choice with or without constraints


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_order_search_with_unconstrained_fits_is_a_fair_baseline_on_the_noisy_sine(seed: int):
    series, split = noisy_sine(seed)
    ratios = {}
    for unconstrained in (False, True):
        forecaster = ArmaForecaster(unconstrained=unconstrained).fit(split.train, split.val)
        prediction = forecaster.predict(series.values, split.val_end)
        ratios[unconstrained] = evaluate_forecast(split.test, prediction, series.innovation_variance)[
            "oracle_ratio"]
    assert ratios[True] < 1.5 < ratios[False]
