"""Time series: shapes, generating processes checked against theory, determinism, splits without leakage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.tsa.arima_process import ArmaProcess

from harness.forecast.series import ARMA_PRESETS, SERIES_NAMES, make_series
from harness.forecast.splits import Normalizer, make_windows, split_series
from harness.tasks import fingerprint


@pytest.mark.parametrize("name", SERIES_NAMES)
def test_shape_dtype_params_and_determinism(name):
    series = make_series(name, n=500, seed=4)
    assert series.values.shape == (500,) and series.values.dtype == np.float64
    assert np.all(np.isfinite(series.values))
    assert series.name == name
    assert series.params == {"name": name, "n": 500, "seed": 4}
    assert series.innovation_variance is None or series.innovation_variance >= 0.0
    again = make_series(**series.params)
    assert fingerprint(series.values) == fingerprint(again.values)
    assert fingerprint(series.values) != fingerprint(make_series(name, n=500, seed=5).values)


def bartlett_standard_errors(acovf: np.ndarray, n: int, lags: int) -> np.ndarray:
    """Large-sample standard errors of the sample autocovariances at lags 0..lags-1 (Bartlett's formula)."""
    gamma = np.concatenate([acovf[:0:-1], acovf])  # gamma_j for j = -(K-1) .. K-1
    centre = len(acovf) - 1
    errors = []
    for k in range(lags):
        j = np.arange(-(centre - k), centre - k + 1)
        variance = np.sum(gamma[centre + j] ** 2 + gamma[centre + j + k] * gamma[centre + j - k]) / n
        errors.append(math.sqrt(variance))
    return np.array(errors)


@pytest.mark.parametrize("name", list(ARMA_PRESETS))
def test_arma_sample_autocovariances_match_theory(name):
    n, lags = 40000, 6
    series = make_series(name, n=n, seed=11, sigma=1.5)
    coefficients = ARMA_PRESETS[name]
    process = ArmaProcess(np.r_[1.0, -np.array(coefficients["ar"])], np.r_[1.0, np.array(coefficients["ma"])])
    theory = process.acovf(200) * 1.5**2
    centred = series.values - series.values.mean()
    sample = np.array([centred[: n - k] @ centred[k:] / n for k in range(lags)])
    errors = bartlett_standard_errors(theory, n, lags)
    assert np.all(np.abs(sample - theory[:lags]) < 4.5 * errors), (sample, theory[:lags], errors)
    assert series.innovation_variance == pytest.approx(1.5**2)
    assert series.true_params == {**coefficients, "sigma2": pytest.approx(2.25)}


def test_arma_burn_in_starts_in_the_stationary_distribution():
    # Without burn-in the first value would have variance sigma**2 = 1 instead of 1 / (1 - 0.95**2) = 10.3.
    first_values = np.array([make_series("arma", n=1, seed=seed, ar=[0.95]).values[0] for seed in range(400)])
    stationary_variance = 1 / (1 - 0.95**2)
    assert abs(first_values.var() - stationary_variance) < 4 * stationary_variance * math.sqrt(2 / 400)


def test_custom_arma_and_refusals():
    series = make_series("arma", n=300, seed=0, ar=[0.5], ma=[-0.3], sigma=0.5)
    assert series.true_params["ar"] == [0.5] and series.true_params["ma"] == [-0.3]
    with pytest.raises(ValueError, match=r"ar=\[1.0\] is not stationary"):
        make_series("arma", ar=[1.0])
    with pytest.raises(ValueError, match=r"ar=\[0.5, 0.6\] is not stationary"):
        make_series("arma", ar=[0.5, 0.6])
    with pytest.raises(ValueError, match=r"ma=\[1.5\] is not invertible"):
        make_series("arma", ma=[1.5])
    with pytest.raises(ValueError, match="ar must be a list of numbers"):
        make_series("arma", ar=0.5)
    with pytest.raises(ValueError, match="sigma"):
        make_series("arma", ar=[0.5], sigma=0.0)
    with pytest.raises(ValueError, match=r"unknown parameter.*'ar'"):
        make_series("ar2", ar=[0.5])


def test_setar_follows_its_two_regimes():
    series = make_series("setar", n=20000, seed=1)
    y = series.values
    previous, current = y[:-1], y[1:]
    residual = current - np.where(previous <= 0.0, 0.6, -0.5) * previous
    # The residuals are the innovations: variance sigma**2 (standard error sigma**2 sqrt(2 / n)) and no
    # correlation with the past.
    assert abs(residual.var() - series.innovation_variance) < 4 * math.sqrt(2 / len(residual))
    assert abs(np.corrcoef(residual, previous)[0, 1]) < 4 / math.sqrt(len(residual))
    with pytest.raises(ValueError, match="phi_low"):
        make_series("setar", phi_low=1.2)


def least_squares_ar_nmse(train: np.ndarray, test: np.ndarray, order: int) -> float:
    """Fit AR(order) with intercept by least squares on train; NMSE of its one-step forecasts of test."""
    X_train, y_train = make_windows(train, order)
    design = np.column_stack([np.ones(len(y_train)), X_train])
    coefficients, *_ = np.linalg.lstsq(design, y_train, rcond=None)
    X_test, y_test = make_windows(test, order)
    prediction = np.column_stack([np.ones(len(y_test)), X_test]) @ coefficients
    return float(np.mean((prediction - y_test) ** 2) / np.var(y_test))


def test_logistic_map_is_deterministic_and_defeats_linear_models():
    series = make_series("logistic", n=6000, seed=2)
    x = series.values
    np.testing.assert_array_equal(x[1:], 4.0 * x[:-1] * (1.0 - x[:-1]))
    assert series.innovation_variance == 0.0
    split = split_series(x)
    for order in range(1, 6):
        assert least_squares_ar_nmse(split.train, split.test, order) > 0.95
    noisy = make_series("logistic", n=2000, seed=2, noise_std=0.05)
    assert noisy.innovation_variance == pytest.approx(0.05**2)
    assert abs(np.std(noisy.values - x[:2000]) - 0.05) < 0.005
    with pytest.raises(ValueError, match="r must lie in"):
        make_series("logistic", r=4.5)


def test_narma10_recursion_and_exogenous_input():
    series = make_series("narma10", n=1000, seed=3)
    y, u = series.values, series.exog
    assert u.shape == y.shape and np.all((u >= 0) & (u <= 0.5))
    t = np.arange(9, 999)
    window_sums = np.array([y[s - 9 : s + 1].sum() for s in t])
    expected = 0.3 * y[t] + 0.05 * y[t] * window_sums + 1.5 * u[t - 9] * u[t] + 0.1
    np.testing.assert_allclose(y[t + 1], expected, rtol=1e-13, atol=0)
    assert series.innovation_variance is None


def test_narma10_redraws_a_diverging_input_deterministically():
    series = make_series("narma10", n=10000, seed=4)  # this seed's first draw of u diverges
    assert series.true_params["redraws"] == 1
    assert np.all(np.isfinite(series.values)) and series.values.max() < 2.0
    np.testing.assert_array_equal(series.values, make_series("narma10", n=10000, seed=4).values)


def test_sine_noise_is_the_optimum():
    series = make_series("sine", n=20000, seed=5, period=25.0, noise_std=0.2)
    phase = series.true_params["phase"]
    signal = np.sin(2 * math.pi * np.arange(20000) / 25.0 + phase)
    residual = series.values - signal
    assert abs(residual.var() - series.innovation_variance) < 4 * 0.04 * math.sqrt(2 / 20000)


def test_random_walk_increments():
    series = make_series("random_walk", n=20000, seed=6, sigma=2.0, drift=0.1)
    increments = np.diff(series.values)
    assert abs(increments.mean() - 0.1) < 4 * 2.0 / math.sqrt(len(increments))
    assert abs(increments.var() - 4.0) < 4 * 4.0 * math.sqrt(2 / len(increments))
    assert series.innovation_variance == 4.0


def test_bouncing_ball_physics():
    series = make_series("bouncing_ball", n=4000, seed=7, dt=0.05, gravity=9.81, max_height=1.0)
    y = series.values
    assert y.min() >= 0.0 and y.max() <= 1.0 + 1e-9
    assert y[-1000:].max() > 0.97  # elastic: the apex does not decay
    # Away from the floor there is no bounce between samples: the second difference is -g dt^2.
    airborne = (y[:-2] > 0.3) & (y[1:-1] > 0.3) & (y[2:] > 0.3)
    second_difference = y[2:] - 2 * y[1:-1] + y[:-2]
    np.testing.assert_allclose(second_difference[airborne], -9.81 * 0.05**2, atol=1e-9)
    assert not np.allclose(second_difference, -9.81 * 0.05**2, atol=1e-3)  # the bounces
    # The height alone does not give the next height: rising and falling through the same height.
    step = np.diff(y)
    assert np.any(step[y[:-1] > 0.5] > 0.05) and np.any(step[y[:-1] > 0.5] < -0.05)
    damped = make_series("bouncing_ball", n=3000, seed=7, restitution=0.8)
    np.testing.assert_array_equal(damped.values[-100:], 0.0)
    with pytest.raises(ValueError, match="restitution"):
        make_series("bouncing_ball", restitution=1.5)


def test_make_series_validation():
    with pytest.raises(ValueError, match="series name must be one of"):
        make_series("arima")
    with pytest.raises(ValueError, match="n must be"):
        make_series("sine", n=0)
    with pytest.raises(ValueError, match="seed must be"):
        make_series("sine", seed=-3)
    with pytest.raises(ValueError, match="noise_std"):
        make_series("sine", noise_std=-1.0)


# --- splits, windows, normalisation ----------------------------------------------------------------------


def test_split_series_keeps_time_order():
    values = np.arange(103, dtype=np.float64)
    split = split_series(values, train=0.6, val=0.2, test=0.2)
    assert (len(split.train), len(split.val), len(split.test)) == (62, 21, 20)
    np.testing.assert_array_equal(np.concatenate([split.train, split.val, split.test]), values)
    assert split.train.max() < split.val.min() and split.val.max() < split.test.min()
    assert split.bounds == {"train": (0, 62), "val": (62, 83), "test": (83, 103)}
    no_val = split_series(values, train=0.8, val=0.0, test=0.2)
    assert len(no_val.val) == 0 and len(no_val.test) == 21


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train": 0.5, "val": 0.2, "test": 0.2}, "train \\+ val \\+ test must equal 1"),
        ({"train": 0.0, "val": 0.5, "test": 0.5}, "train must be"),
        ({"train": 0.9, "val": 0.1, "test": 0.0}, "test must be"),
        ({"train": 0.9, "val": -0.1, "test": 0.2}, "val must be"),
    ],
)
def test_split_series_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        split_series(np.arange(50.0), **kwargs)
    with pytest.raises(ValueError, match="values must be"):
        split_series(np.zeros((5, 2)))


def test_windows_are_one_step_ahead_pairs():
    values = np.arange(20, dtype=np.float64) ** 2
    X, y = make_windows(values, 3)
    assert X.shape == (17, 3) and y.shape == (17,)
    for i in range(17):
        np.testing.assert_array_equal(X[i], values[i : i + 3])
        assert y[i] == values[i + 3]
    X_late, y_late = make_windows(values, 3, start=15)
    np.testing.assert_array_equal(X_late, X[12:])
    np.testing.assert_array_equal(y_late, values[15:])
    with pytest.raises(ValueError, match="window"):
        make_windows(values, 20)
    with pytest.raises(ValueError, match="start"):
        make_windows(values, 3, start=2)


def test_no_test_point_reaches_training_windows_or_normalisation():
    series = make_series("ar2", n=1000, seed=8)
    split = split_series(series.values)
    poisoned = series.values.copy()
    poisoned[split.val_end :] = np.nan  # any use of a test point in training would show up as NaN
    poisoned_split = split_series(poisoned)
    X_train, y_train = make_windows(poisoned_split.train, 10)
    assert np.all(np.isfinite(X_train)) and np.all(np.isfinite(y_train))
    normalizer = Normalizer().fit(poisoned_split.train)
    assert np.isfinite(normalizer.mean) and np.isfinite(normalizer.std)
    assert normalizer.mean == pytest.approx(split.train.mean())
    assert normalizer.std == pytest.approx(split.train.std())
    # Test windows: targets all in the test part, inputs only look back.
    X_test, y_test = make_windows(series.values, 10, start=split.val_end)
    np.testing.assert_array_equal(y_test, split.test)
    assert X_test.shape == (len(split.test), 10)


def test_normalizer_round_trip_and_errors():
    train = np.array([1.0, 2.0, 3.0, 6.0])
    normalizer = Normalizer().fit(train)
    z = normalizer.transform(train)
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0)
    other = np.array([[10.0, -4.0]])
    np.testing.assert_allclose(normalizer.inverse_transform(normalizer.transform(other)), other)
    with pytest.raises(ValueError, match="fit"):
        Normalizer().transform(train)
    with pytest.raises(ValueError, match="train must not be constant"):
        Normalizer().fit(np.ones(5))


def test_fingerprint_covers_dtype_shape_bytes_and_order():
    a = np.arange(6, dtype=np.float64)
    b = np.ones(3)
    reference = fingerprint(a, b)
    assert len(reference) == 64 and int(reference, 16) >= 0
    assert fingerprint(a.copy(), b.copy()) == reference
    strided = np.repeat(a, 2)[::2]
    assert not strided.flags.c_contiguous
    assert fingerprint(strided, b) == reference  # a strided view hashes by its content
    assert fingerprint(b, a) != reference
    assert fingerprint(a.reshape(2, 3), b) != reference
    assert fingerprint(a.astype(np.float32), b) != fingerprint(a, b)
    assert fingerprint(a.view(np.int64), b) != reference
    changed = a.copy()
    changed[3] += 1e-12
    assert fingerprint(changed, b) != reference
    with pytest.raises(ValueError, match="arrays"):
        fingerprint()
    with pytest.raises(ValueError, match="arrays must hold numbers"):
        fingerprint(np.array([object()]))
