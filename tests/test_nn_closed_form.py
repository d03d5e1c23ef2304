"""Note 001, section 2: the scalar linear RNN f_t = f_{t-1} v_f + x_t v_x, prediction y_hat = f_T, and the
closed-form gradients of E = 1/2 sum_i (y_hat_i - y_i)^2, eq. (22) for v_x and (26) for v_f.

The model is Elman(1, 1, 1, activation="identity", bias=False, mode="many_to_one") with W_hy = 1, head
"identity_mse" and reduction "sum", whose loss is sum_i (y_hat_i - y_i)^2 = 2 E.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.nn import Elman

T_BITS = 8


def scalar_linear_rnn(v_x: float, v_f: float) -> Elman:
    model = Elman(1, 1, 1, activation="identity", bias=False, mode="many_to_one", reduction="sum")
    model.params["W_xh"][...] = v_x
    model.params["W_hh"][...] = v_f
    model.params["W_hy"][...] = 1.0
    return model


def bit_sequences(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X (T, n, 1) random bits and the target of eq. (15): y = sum_t x_t, shape (n, 1)."""
    bits = np.random.default_rng(seed).integers(0, 2, (T_BITS, n)).astype(float)
    return bits[..., None], bits.sum(axis=0)[:, None]


@pytest.mark.parametrize(("v_x", "v_f"), [(0.7, 0.9), (1.3, 1.1), (0.5, -0.8), (1.0, 1.0)])
def test_gradients_equal_equations_22_and_26(v_x: float, v_f: float) -> None:
    X, Y = bit_sequences(6, seed=1)
    model = scalar_linear_rnn(v_x, v_f)
    loss, grads, dh = model.loss_and_grads(X, Y, return_hidden_grads=True)

    x = X[..., 0]                                       # (T, I)
    f = np.zeros((T_BITS + 1, x.shape[1]))              # f_0 = 0, then f_1..f_T
    for t in range(1, T_BITS + 1):
        f[t] = f[t - 1] * v_f + x[t - 1] * v_x
    residual = f[T_BITS] - Y[:, 0]                      # y_hat - y per sequence
    powers = v_f ** (T_BITS - np.arange(1, T_BITS + 1))  # v_f^(T - t), t = 1..T
    dE_dvx = np.sum((x @ residual) * powers)                      # eq. (22)
    dE_dvf = np.sum((f[:T_BITS] @ residual) * powers)             # eq. (26)

    assert loss / 2 == pytest.approx(0.5 * np.sum(residual**2), rel=1e-12)
    np.testing.assert_allclose(grads["W_xh"][0, 0] / 2, dE_dvx, rtol=1e-12)
    np.testing.assert_allclose(grads["W_hh"][0, 0] / 2, dE_dvf, rtol=1e-12)
    # eq. (20)/(24): dE/df_t = sum_i (y_hat_i - y_i) v_f^(T - t); t = 1 gives eq. (27)
    np.testing.assert_allclose(dh[:, :, 0].sum(axis=1) / 2, residual.sum() * powers, rtol=1e-12)
    np.testing.assert_allclose(dh[0, :, 0].sum() / 2, residual.sum() * v_f ** (T_BITS - 1), rtol=1e-12)


def test_vanishing_and_exploding_gradient_at_the_first_state() -> None:
    # eq. (28): dE/df_1 shrinks like v_f^(T-1) for |v_f| < 1 and grows for |v_f| > 1
    X, Y = bit_sequences(4, seed=2)
    first = {}
    for v_f in (0.5, 1.5):
        _, _, dh = scalar_linear_rnn(1.0, v_f).loss_and_grads(X, Y, return_hidden_grads=True)
        first[v_f] = np.abs(dh[0] / dh[-1]).max()
    assert first[0.5] == pytest.approx(0.5 ** (T_BITS - 1))
    assert first[1.5] == pytest.approx(1.5 ** (T_BITS - 1))
