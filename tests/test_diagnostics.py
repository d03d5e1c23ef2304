"""harness.diagnostics: Jacobian-product norms vs closed forms and finite differences; bounds, fits."""

import math

import numpy as np
import pytest

from harness.diagnostics import (
    GradientFlowReport,
    fit_decay_rate,
    gradient_flow_report,
    jacobian_product_norms,
    largest_singular_value,
    pascanu_bound,
    spectral_radius,
    step_gradient_norms,
)
from harness.nn import Elman

ACTIVATION_FUNCTIONS = {
    "tanh": np.tanh,
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "identity": lambda a: a,
    "relu": lambda a: np.maximum(a, 0.0),
}


def elman_run(W_xh, W_hh, b, X, activation, h_start, start=0):
    """h_t = g(h_{t-1} W_hh + x_t W_xh + b) for t = start..T-1 from h_start (B, H) -> (T - start, B, H)."""
    g = ACTIVATION_FUNCTIONS[activation]
    h, out = h_start, []
    for t in range(start, X.shape[0]):
        h = g(h @ W_hh + X[t] @ W_xh + b)
        out.append(h)
    return np.stack(out)


def random_elman(seed, T=6, B=3, D=2, n=4, activation="tanh", scale=0.8):
    rng = np.random.default_rng(seed)
    W_xh = rng.normal(size=(D, n))
    W_hh = rng.normal(size=(n, n)) * scale / np.sqrt(n)
    b = rng.normal(size=n) * 0.1
    X = rng.normal(size=(T, B, D))
    H = elman_run(W_xh, W_hh, b, X, activation, np.zeros((B, n)))
    return W_xh, W_hh, b, X, H


@pytest.mark.parametrize("v_f", [0.5, -1.5, 0.9, 1.1])
def test_linear_scalar_rnn_product_norm_is_v_f_to_the_lag(v_f):
    # note 001, eq. 27: for f_t = v_f f_{t-1} + v_x x_t, ∂f_T/∂f_k = v_f^(T-k)
    H = np.random.default_rng(0).normal(size=(30, 4, 1))
    norms = jacobian_product_norms(np.array([[v_f]]), H, "identity")
    expected = np.abs(v_f) ** np.arange(1, 31)
    if v_f in (0.5, -1.5):  # powers of these are exact in binary, and so must the products be
        np.testing.assert_array_equal(norms, expected)
    np.testing.assert_allclose(norms, expected, rtol=1e-13)


def test_long_products_neither_underflow_nor_overflow_early():
    H = np.zeros((1000, 1, 1))
    small = jacobian_product_norms(np.array([[0.5]]), H, "identity")
    large = jacobian_product_norms(np.array([[2.0]]), H, "identity", max_lag=1000)
    np.testing.assert_array_equal(small, 0.5 ** np.arange(1, 1001))  # 2^-1000 is still a float64
    np.testing.assert_array_equal(large, 2.0 ** np.arange(1, 1001))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "identity"])
def test_product_norms_match_finite_difference_jacobians(activation):
    T, B, n = 6, 3, 4
    W_xh, W_hh, b, X, H = random_elman(1, T=T, B=B, n=n, activation=activation, scale=1.5)
    eps = 1e-6
    expected = np.zeros(T)
    for lag in range(1, T + 1):
        k = T - lag  # h_k is H[k - 1] (h_0 = 0 when k = 0)
        h_k = H[k - 1] if k > 0 else np.zeros((B, n))
        jac = np.empty((B, n, n))  # jac[b, j, i] = ∂h_T[j] / ∂h_k[i]
        for i in range(n):
            step = np.zeros((B, n))
            step[:, i] = eps
            up = elman_run(W_xh, W_hh, b, X, activation, h_k + step, start=k)[-1]
            down = elman_run(W_xh, W_hh, b, X, activation, h_k - step, start=k)[-1]
            jac[:, :, i] = (up - down) / (2 * eps)
        expected[lag - 1] = np.mean([np.linalg.norm(jac[s], 2) for s in range(B)])
    np.testing.assert_allclose(jacobian_product_norms(W_hh, H, activation), expected, rtol=1e-6)


def test_product_norms_match_explicit_dense_product_with_relu():
    T, B, n = 5, 2, 3
    _, W_hh, _, _, H = random_elman(2, T=T, B=B, n=n, activation="relu", scale=2.0)
    for s in range(B):
        product = np.eye(n)
        for lag in range(1, T + 1):
            J = np.diag((H[T - lag, s] > 0).astype(float)) @ W_hh.T
            product = product @ J
            single = jacobian_product_norms(W_hh, H[:, s:s + 1], "relu")
            assert single[lag - 1] == pytest.approx(np.linalg.norm(product, 2), rel=1e-12, abs=1e-300)


def test_product_norms_with_a_largest_singular_value_of_high_multiplicity():
    # the gradient-flow study's relu cell at sigma_max 0.5: an orthogonal W_hh scaled to 0.5 and relu's dead
    # units make many singular values of a product exactly equal, so the largest eigenvalue of its Gram
    # matrix is multiple (26-fold of 48 at some lags), where LAPACK syevr's bisection for it failed
    T, B, n = 100, 16, 48
    model = Elman(4, n, 1, activation="relu", recurrent_init="orthogonal", max_singular_value=0.5, seed=0)
    W_hh = model.recurrent_matrix()
    X = np.random.default_rng(np.random.SeedSequence([0, 0])).standard_normal((T, B, 4))
    H = model.hidden_states(X)
    norms = jacobian_product_norms(W_hh, H, "relu")
    expected, most_tied = np.zeros(T), 0
    for s in range(B):
        product = np.eye(n)
        for lag in range(1, T + 1):
            product = product @ (np.diag((H[T - lag, s] > 0).astype(float)) @ W_hh.T)
            singular = np.linalg.svd(product, compute_uv=False)
            expected[lag - 1] += singular[0] / B
            most_tied = max(most_tied, int(np.sum(singular >= singular[0] * (1 - 1e-12))))
    assert most_tied >= 20  # the case is the one that broke syevr, not a generic one
    np.testing.assert_allclose(norms, expected, rtol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_measured_norms_never_exceed_the_pascanu_bound(activation):
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 8))
        W_xh, W_hh, b, X, _ = random_elman(seed, T=25, B=4, n=n, activation=activation)
        W_hh *= rng.uniform(0.3, 0.99) / np.linalg.norm(W_hh, 2)  # contractive: sigma_max < 1
        H = elman_run(W_xh, W_hh, b, X, activation, np.zeros((4, n)))
        norms = jacobian_product_norms(W_hh, H, activation)
        bound = pascanu_bound(W_hh, activation, norms.size)
        assert np.all(norms <= bound * (1 + 1e-12)), seed


def test_pascanu_bound_values():
    W = np.diag([0.8, -0.2])
    np.testing.assert_allclose(pascanu_bound(W, "tanh", 3), [0.8, 0.64, 0.512])
    np.testing.assert_allclose(pascanu_bound(W, "sigmoid", 2), [0.2, 0.04])


def test_singular_value_and_spectral_radius():
    W = np.array([[0.0, 2.0], [0.5, 0.0]])  # eigenvalues ±1, singular values 2 and 0.5
    assert largest_singular_value(W) == pytest.approx(2.0)
    assert spectral_radius(W) == pytest.approx(1.0)
    c, s = np.cos(0.3), np.sin(0.3)
    R = 0.7 * np.array([[c, -s], [s, c]])  # complex eigenvalues of modulus 0.7
    assert spectral_radius(R) == pytest.approx(0.7)


def test_step_gradient_norms_is_batch_mean_of_per_sequence_norms():
    dh = np.zeros((2, 2, 2))
    dh[0, 0] = [3.0, 4.0]
    dh[0, 1] = [0.0, 1.0]
    dh[1, 1] = [6.0, 8.0]
    np.testing.assert_allclose(step_gradient_norms(dh), [3.0, 5.0])


@pytest.mark.parametrize(("rate", "prefactor"), [(0.7, 3.0), (1.3, 0.01), (1e-3, 1.0)])
def test_decay_fit_recovers_a_geometric_sequence(rate, prefactor):
    lags = np.arange(1, 21)
    fit = fit_decay_rate(prefactor * rate ** lags.astype(float))
    assert fit.rate == pytest.approx(rate, rel=1e-10)
    assert fit.log_rate == pytest.approx(math.log(rate), rel=1e-10)
    assert fit.log_prefactor == pytest.approx(math.log(prefactor), abs=1e-9)
    assert fit.n_points == 20


def test_decay_fit_ignores_unusable_points_and_refuses_too_few():
    norms = 2.0 * 0.5 ** np.arange(1, 9, dtype=float)
    norms[[2, 5, 7]] = [0.0, np.inf, np.nan]
    fit = fit_decay_rate(norms)
    assert fit.rate == pytest.approx(0.5, rel=1e-12) and fit.n_points == 5
    with pytest.raises(ValueError, match=r"at least 2 positive finite values .* got 1 usable of 3"):
        fit_decay_rate(np.array([0.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="norms must be a 1-D curve"):
        fit_decay_rate(np.ones((2, 2)))


def test_report_from_an_elman_model_is_consistent():
    model = Elman(2, 6, 1, activation="tanh", mode="many_to_one", seed=3)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(12, 5, 2)), rng.normal(size=(5, 1))
    _, _, dh = model.loss_and_grads(X, Y, return_hidden_grads=True)
    H = model.hidden_states(X)
    report = gradient_flow_report(model.recurrent_matrix(), H, "tanh", dh)
    assert isinstance(report, GradientFlowReport)
    assert report.lag_norms.shape == report.bound.shape == (12,)
    assert report.step_norms.shape == (12,)
    assert np.all(report.lag_norms <= report.bound * (1 + 1e-12))
    assert report.sigma_max == pytest.approx(np.linalg.norm(model.recurrent_matrix(), 2))
    assert report.bound_rate == report.sigma_max
    assert report.decay_rate == pytest.approx(fit_decay_rate(report.lag_norms).rate)
    # loss at step T only: dL/dh_k = (dh_T/dh_k)^T dL/dh_T, so |dL/dh_k| <= ||dh_T/dh_k|| |dL/dh_T|
    for s in range(5):
        seq_norms = jacobian_product_norms(model.recurrent_matrix(), H[:, s:s + 1], "tanh")
        for lag in range(1, 12):
            bound = seq_norms[lag - 1] * np.linalg.norm(dh[-1, s])
            assert np.linalg.norm(dh[-1 - lag, s]) <= bound * (1 + 1e-10)
    assert set(report.scalars("gf/")) == {"gf/decay_rate", "gf/bound_rate", "gf/sigma_max",
                                          "gf/spectral_radius", "gf/grad_norm_first_step",
                                          "gf/grad_norm_last_step"}


def test_report_gives_nan_rate_when_all_products_vanish():
    H = np.zeros((5, 2, 3))  # dead relu units: g' = 0 everywhere
    report = gradient_flow_report(np.eye(3), H, "relu", np.ones((5, 2, 3)))
    np.testing.assert_array_equal(report.lag_norms, 0.0)
    assert math.isnan(report.decay_rate)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: jacobian_product_norms(np.ones((2, 3)), np.ones((4, 1, 2)), "tanh"),
     r"W_hh must be a square \(H, H\) matrix, got shape \(2, 3\)"),
    (lambda: jacobian_product_norms(np.eye(2), np.ones((4, 1, 3)), "tanh"),
     r"H must have shape \(T, B, 2\) to match W_hh, got shape \(4, 1, 3\)"),
    (lambda: jacobian_product_norms(np.eye(2), np.ones((4, 1, 2)), "tahn"),
     r"activation must be one of \['identity', 'relu', 'sigmoid', 'tanh'\], got 'tahn'"),
    (lambda: jacobian_product_norms(np.eye(2), np.ones((4, 1, 2)), "tanh", max_lag=5),
     r"max_lag must be an integer in \[1, 4\] \(T of H\), got 5"),
    (lambda: pascanu_bound(np.eye(2), "tanh", 0), "max_lag must be an integer >= 1, got 0"),
    (lambda: step_gradient_norms(np.ones((3, 2))), r"dh must have shape \(T, B, H\), got shape \(3, 2\)"),
])
def test_input_validation(call, message):
    with pytest.raises(ValueError, match=message):
        call()
