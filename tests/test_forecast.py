"""harness.forecast.models and harness.forecast.metrics: one interface for ARMA and RNN, no look-ahead,
scores, DM test, and note 000's RNN-ARMA link (a linear recurrent predictor learns the ARMA(1,1)
predictor)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from statsmodels.tsa.arima_process import ArmaProcess

from harness.forecast.arma import fit_arma, predictor_weights, psi_from_predictor_weights
from harness.forecast.metrics import diebold_mariano, evaluate_forecast
from harness.forecast.models import (
    ArmaForecaster,
    Forecaster,
    RnnForecaster,
    fit_linear_recurrent_predictor,
    lagged_inputs,
)
from harness.tracking import MemoryLogger


def arma11(n: int, seed: int, phi: float = 0.6, theta: float = 0.4) -> np.ndarray:
    """(n,) ARMA(1,1) with unit-variance innovations, drawn with statsmodels' ArmaProcess."""
    rng = np.random.default_rng(seed)
    return ArmaProcess([1.0, -phi], [1.0, theta]).generate_sample(n, distrvs=rng.standard_normal, burnin=500)


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    return arma11(1500, seed=5)


@pytest.fixture(scope="module")
def rnn(series) -> RnnForecaster:
    return RnnForecaster(hidden_size=8, steps=200, eval_every=20, seed=3).fit(series[:900], series[900:1200])


def test_both_forecasters_satisfy_the_one_interface(series, rnn):
    arma = ArmaForecaster(order=(1, 1)).fit(series[:900], series[900:1200])
    for forecaster in (arma, rnn):
        assert isinstance(forecaster, Forecaster)
        prediction = forecaster.predict(series, 1200)
        assert prediction.shape == (300,) and np.all(np.isfinite(prediction))
        summary = forecaster.summary()
        assert summary["kind"] in ("arma", "rnn")
        json.dumps(summary)  # JSON-able, so a study can log it as an artifact


@pytest.mark.parametrize("model", ["elman", "jordan", "lstm", "gru"])
def test_rnn_forecasts_use_no_future_values(series, model):
    forecaster = RnnForecaster(model, hidden_size=4, lags=3, steps=20, seed=1)
    forecaster.fit(series[:900], series[900:1200])
    x = series.copy()
    start, k = 1200, 1250
    before = forecaster.predict(x, start)
    x[k] += 5.0
    after = forecaster.predict(x, start)
    np.testing.assert_allclose(before[: k + 1 - start], after[: k + 1 - start], rtol=0, atol=1e-12)
    assert abs(after[k + 1 - start] - before[k + 1 - start]) > 1e-6


def test_lagged_inputs_only_look_back():
    X = lagged_inputs(np.array([1.0, 2.0, 3.0, 4.0]), 2)
    np.testing.assert_array_equal(X, [[0, 0], [1, 0], [2, 1], [3, 2]])


def test_rnn_learns_an_arma_series_close_to_the_oracle(series, rnn):
    scores = evaluate_forecast(series[1200:], rnn.predict(series, 1200), innovation_variance=1.0)
    assert scores["oracle_ratio"] < 1.15
    naive = evaluate_forecast(series[1200:], np.zeros(300), innovation_variance=1.0)
    assert scores["mse"] < 0.6 * naive["mse"]


def test_rnn_keeps_the_best_validation_parameters_and_logs_the_curve(series):
    logger = MemoryLogger()
    forecaster = RnnForecaster(hidden_size=4, steps=60, eval_every=10, seed=2, logger=logger)
    forecaster.fit(series[:900], series[900:1200])
    history = forecaster.history_
    np.testing.assert_array_equal(history["step"], [10, 20, 30, 40, 50, 60])
    assert forecaster.best_val_mse_ == pytest.approx(np.min(history["val_mse"]))
    assert forecaster.best_step_ == history["step"][np.argmin(history["val_mse"])]
    z = forecaster.normalizer_.transform(series[:1200])
    val_prediction = forecaster.normalizer_.transform(forecaster.predict(series[:1200], 900))
    assert np.mean((val_prediction - z[900:]) ** 2) == pytest.approx(forecaster.best_val_mse_, rel=1e-9)
    assert [step for step, _ in logger.metrics["val_mse"]] == [10, 20, 30, 40, 50, 60]
    assert {"train_loss", "grad_norm"} <= set(logger.metrics)


def test_rnn_patience_stops_early(series):
    forecaster = RnnForecaster(hidden_size=4, steps=400, lr=0.2, eval_every=5, patience=2, seed=0)
    forecaster.fit(series[:900], series[900:1200])
    assert forecaster.steps_run_ < 400
    assert forecaster.steps_run_ - forecaster.best_step_ == 2 * 5


def test_rnn_is_deterministic_and_normalises_on_the_training_part_only(series):
    def run(values: np.ndarray, seed: int) -> np.ndarray:
        return RnnForecaster(hidden_size=4, steps=30, seed=seed).fit(values[:900], values[900:1200]).predict(
            values, 1200)

    first = run(series, 7)
    np.testing.assert_array_equal(first, run(series, 7))
    assert not np.array_equal(first, run(series, 8))
    # an affine change of units changes nothing but the units of the predictions
    np.testing.assert_allclose(run(50.0 + 100.0 * series, 7), 50.0 + 100.0 * first, rtol=1e-6)
    # a test part far from the training scale is not re-normalised with its own statistics
    shifted = series.copy()
    shifted[1200:] += 10.0
    forecaster = RnnForecaster(hidden_size=4, steps=30, seed=7).fit(series[:900], series[900:1200])
    assert forecaster.normalizer_.mean == pytest.approx(np.mean(series[:900]))
    np.testing.assert_array_equal(forecaster.predict(shifted, 1200)[:1], first[:1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "bidirectional"}, "model must be one of"),
        ({"lags": 0}, "lags must be an integer >= 1"),
        ({"sequence_length": 8, "burn_in": 8}, "burn_in must be < sequence_length=8"),
        ({"lr": 0}, "lr must be a positive number"),
        ({"patience": 0}, "patience must be an integer >= 1 or None"),
        ({"optimizer": "adamw"}, "adamw"),
        ({"model": "lstm", "model_kwargs": {"num_layers": 0}}, "num_layers must be a positive integer"),
    ],
)
def test_rnn_forecaster_validates_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RnnForecaster(**kwargs)


def test_predict_before_fit_and_bad_start_raise(series, rnn):
    with pytest.raises(ValueError, match="must be fit before predict"):
        RnnForecaster().predict(series, 10)
    with pytest.raises(ValueError, match=r"start must be an integer in \[0, 1499\]"):
        rnn.predict(series, 1500)


# ----------------------------------------------------------------------------------- RNN-ARMA link (note 000)


@pytest.mark.parametrize(("phi", "theta"), [(0.6, 0.4), (0.8, -0.5)])
def test_linear_recurrent_predictor_learns_the_arma11_predictor(phi, theta):
    x = arma11(10000, seed=21, phi=phi, theta=theta)
    learned = fit_linear_recurrent_predictor(x, seed=0)
    assert learned.feedback_weight == pytest.approx(-theta, abs=0.05)
    assert learned.input_weight == pytest.approx(phi + theta, abs=0.05)
    assert abs(learned.intercept) < 0.05
    assert learned.loss == pytest.approx(1.0, abs=0.05)
    fitted = fit_arma(x, (1, 1), psi_lags=10)
    # both estimate the same predictor from the same data: they agree more closely than either with the truth
    np.testing.assert_allclose(learned.impulse[:10], predictor_weights(fitted.ar, fitted.ma, 10), atol=0.02)
    np.testing.assert_allclose(psi_from_predictor_weights(learned.impulse, 10), fitted.psi, atol=0.02)


# ------------------------------------------------------------------------------------------------ metrics


def test_evaluate_forecast_by_hand():
    scores = evaluate_forecast([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 5.0, 4.0], innovation_variance=0.5,
                               train_variance=2.0)
    # errors 0, 1, -2, 0: mse 5/4, mae 3/4; var of the truth 1.25
    assert scores == {"mse": 1.25, "mae": 0.75, "nmse": 1.0, "oracle_ratio": 2.5, "nmse_train": 0.625}
    assert evaluate_forecast([1.0, 1.0], [1.0, 2.0])["nmse"] is None
    assert evaluate_forecast([1.0, 2.0], [1.0, 2.0], innovation_variance=0.0)["oracle_ratio"] is None
    with pytest.raises(ValueError, match="y_true and y_pred must be non-empty 1-D arrays of equal shape"):
        evaluate_forecast([1.0, 2.0], [1.0])


def test_diebold_mariano_by_hand():
    e1, e2 = np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4)
    # d = e1^2 - e2^2 = 0, 3, 8, 15: mean 6.5; centred -6.5, -3.5, 1.5, 8.5: gamma_0 = 129 / 4 = 32.25,
    # gamma_1 = (22.75 - 5.25 + 12.75) / 4 = 30.25 / 4; HLN factor sqrt((n + 1 - 2h + h(h - 1)/n) / n)
    statistic, p_value = diebold_mariano(e1, e2)
    expected = 6.5 / np.sqrt(32.25 / 4) * np.sqrt(3 / 4)
    assert statistic == pytest.approx(expected, rel=1e-12)
    assert p_value == pytest.approx(2 * stats.t.sf(expected, df=3), rel=1e-12)
    assert p_value == pytest.approx(0.14171516342257268, rel=1e-9)
    # h = 2: Newey-West weight 1 - 1/2 on gamma_1, V = 32.25 + 2 * 0.5 * 30.25 / 4
    statistic, p_value = diebold_mariano(e1, e2, h=2)
    expected = 6.5 / np.sqrt((32.25 + 30.25 / 4) / 4) * np.sqrt(0.375)
    assert statistic == pytest.approx(expected, rel=1e-12)
    assert p_value == pytest.approx(2 * stats.t.sf(expected, df=3), rel=1e-12)
    assert diebold_mariano(e2, e1)[0] == pytest.approx(-diebold_mariano(e1, e2)[0])
    # absolute loss: d = 0, 1, 2, 3
    assert diebold_mariano(e1, e2, loss="absolute")[0] == pytest.approx(
        1.5 / np.sqrt(1.25 / 4) * np.sqrt(3 / 4), rel=1e-12)


def test_diebold_mariano_is_finite_where_the_truncated_long_run_variance_is_negative():
    # two equally good forecasts (the example): gamma_0 + 2 gamma_1 < 0 at h = 2
    e1, e2 = np.array([1.5, 0, 1.5, 0, 1.6, 0.1]), np.array([0, 1.5, 0, 1.5, 0, 1.4])
    d = e1**2 - e2**2
    n, centred = len(d), d - d.mean()
    gamma = [float(centred[k:] @ centred[: n - k]) / n for k in (0, 1)]
    assert gamma[0] + 2 * gamma[1] < 0  # what returned (inf, p = 0) before
    statistic, p_value = diebold_mariano(e1, e2, h=2)
    variance = gamma[0] + gamma[1]  # Bartlett weight 1/2
    expected = d.mean() / np.sqrt(variance / n) * np.sqrt((n + 1 - 4 + 2 / n) / n)
    assert statistic == pytest.approx(expected, rel=1e-12)
    assert p_value == pytest.approx(2 * stats.t.sf(abs(expected), df=n - 1), rel=1e-12)
    assert p_value > 0.5


def test_diebold_mariano_degenerate_cases_and_validation():
    e = np.array([0.5, -1.0, 2.0])
    assert diebold_mariano(e, e) == (0.0, 1.0)
    assert diebold_mariano(e, -e) == (0.0, 1.0)  # same squared losses
    assert diebold_mariano(np.full(3, 2.0), np.ones(3)) == (np.inf, 0.0)
    with pytest.raises(ValueError, match=r"h must be an integer in \[1, 2\]"):
        diebold_mariano(e, e, h=3)
    with pytest.raises(ValueError, match=r"loss must be one of \['squared', 'absolute'\]"):
        diebold_mariano(e, e, loss="pinball")


def test_diebold_mariano_p_values_are_uniform_under_the_null():
    rng = np.random.default_rng(0)
    p_values = np.array([diebold_mariano(rng.standard_normal(100), rng.standard_normal(100))[1]
                         for _ in range(1000)])
    assert 0.03 <= np.mean(p_values < 0.05) <= 0.07
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    # and it detects a real difference
    e = rng.standard_normal((2, 400))
    statistic, p_value = diebold_mariano(0.5 * e[0], e[1])
    assert statistic < 0 and p_value < 1e-6

