"""Gradient-flow diagnostics for Elman networks: where the gradient vanishes or explodes, and why.

Convention (batch rows, as harness.nn): a_t = h_{t-1} W_hh + x_t W_xh + b_h, h_t = g(a_t), with h_t a row of
H (T, B, H). For one sequence, ∂h_t[j]/∂h_{t-1}[i] = g'(a_t[j]) W_hh[i, j], so the Jacobian (rows index h_t,
columns index h_{t-1}) is J_t = diag(g'(a_t)) W_hh^T, and dh_T/dh_k = J_T J_{T-1} ... J_{k+1}, a product of
T - k factors (the "lag"). g'(a_t) is read from h_t itself, so J_t needs no pre-activations.

Since ||diag(g') W^T||_2 <= max|g'| sigma_max(W), ||dh_T/dh_k|| <= (gamma sigma_max(W_hh))^(T-k)
(Pascanu, Mikolov & Bengio 2013) with gamma = max g' = 1 for tanh, relu, identity and 1/4 for sigmoid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.nn.activations import check_activation, derivative_from_output

# max over a of g'(a): the factor gamma of the Pascanu et al. bound
DERIVATIVE_BOUND = {"identity": 1.0, "relu": 1.0, "sigmoid": 0.25, "tanh": 1.0}


def step_gradient_norms(dh: np.ndarray) -> np.ndarray:
    """||dL/dh_t|| for t = 1..T: dh (T, B, H) -> (T,), the batch mean of each sequence's L2 norm at step t."""
    dh = np.asarray(dh)
    if dh.ndim != 3:
        raise ValueError(f"dh must have shape (T, B, H), got shape {dh.shape}")
    return np.linalg.norm(dh, axis=2).mean(axis=1)


def _check_recurrent_matrix(W_hh: np.ndarray) -> np.ndarray:
    W_hh = np.asarray(W_hh)
    if W_hh.ndim != 2 or W_hh.shape[0] != W_hh.shape[1]:
        raise ValueError(f"W_hh must be a square (H, H) matrix, got shape {W_hh.shape}")
    return W_hh


def largest_singular_value(W_hh: np.ndarray) -> float:
    """sigma_max(W_hh), the spectral norm of the (H, H) recurrent matrix."""
    return float(np.linalg.norm(_check_recurrent_matrix(W_hh), ord=2))


def spectral_radius(W_hh: np.ndarray) -> float:
    """max |eigenvalue| of the (H, H) recurrent matrix."""
    return float(np.max(np.abs(np.linalg.eigvals(_check_recurrent_matrix(W_hh)))))


def _scale_to_unit_(P: np.ndarray) -> np.ndarray:
    """Scale each P_b of a stack P (B, n, n) in place by a power of two (exact) so that its largest
    |entry| lies in [0.5, 1); a zero matrix stays as it is. Returns the exponents e (B,) with
    P before = P after * 2**e."""
    # max and -min: the largest |entry| without an |P| temporary
    largest = np.maximum(P.max(axis=(1, 2)), -P.min(axis=(1, 2)))
    # frexp's int32 exponents: np.ldexp runs 6x slower on int64 ones (measured at (32, 64, 64))
    exponent = np.where(largest > 0, np.frexp(largest)[1], np.int32(0))
    np.ldexp(P, -exponent[:, None, None], out=P)
    return exponent


def jacobian_product_norms(W_hh: np.ndarray, H: np.ndarray, activation: str,
                           max_lag: int | None = None) -> np.ndarray:
    """||dh_T/dh_k||_2 for lags T - k = 1..max_lag, batch mean of the per-sequence spectral norms.

    W_hh (H, H); H (T, B, H) hidden states h_1..h_T of the layer; activation its name. max_lag defaults to T
    (the lag-T product is dh_T/dh_0, whose first factor J_1 uses h_1). Returns (max_lag,).
    The running product P_lag = P_{lag-1} J_{T-lag+1} = (P_{lag-1} * g'(a_{T-lag+1})) W_hh^T is carried per
    sequence, rescaled by exact powers of two after each factor so that its largest entry lies in [0.5, 1):
    long products neither underflow nor overflow, and neither does the Gram matrix P^T P whose largest
    eigenvalue is ||P||_2^2. Cost O(max_lag · B · H³), dominated by one symmetric eigenvalue problem per
    sequence and lag (np.linalg.eigvalsh): for a cheap check every N training steps pass a few sequences
    (H[:, :8]) and a moderate max_lag.
    """
    W_hh = _check_recurrent_matrix(W_hh)
    check_activation(activation)
    H = np.asarray(H)
    if H.ndim != 3 or H.shape[2] != W_hh.shape[0]:
        raise ValueError(f"H must have shape (T, B, {W_hh.shape[0]}) to match W_hh, got shape {H.shape}")
    T, B, n = H.shape
    if max_lag is None:
        max_lag = T
    if isinstance(max_lag, bool) or not isinstance(max_lag, int | np.integer) or not 1 <= max_lag <= T:
        raise ValueError(f"max_lag must be an integer in [1, {T}] (T of H), got {max_lag!r}")
    dtype = np.result_type(W_hh.dtype, H.dtype, np.float32)
    W_T = W_hh.T.astype(dtype, copy=False)
    g_prime = derivative_from_output(activation, H[T - max_lag:].astype(dtype, copy=False))  # (max_lag, B, n)
    product = np.broadcast_to(np.eye(n, dtype=dtype), (B, n, n)).copy()
    spare, gram = np.empty_like(product), np.empty_like(product)
    exponent = np.zeros(B, dtype=np.int64)  # product_true = product * 2**exponent, per sequence
    norms = np.empty(max_lag)
    for lag in range(1, max_lag + 1):
        product *= g_prime[max_lag - lag][:, None, :]
        np.matmul(product, W_T, out=spare)
        product, spare = spare, product
        exponent += _scale_to_unit_(product)
        np.matmul(np.swapaxes(product, 1, 2), product, out=gram)
        # eigvalsh (syevd: every eigenvalue) and not LAPACK's syevr for the largest alone: syevr's bisection
        # fails on a largest eigenvalue of high multiplicity, which relu's dead units give (info 2 and a
        # write before its integer workspace, in the scipy-openblas64 0.3.x that NumPy 2.4 links)
        top = np.linalg.eigvalsh(gram)[:, -1]
        norms[lag - 1] = np.mean(np.ldexp(np.sqrt(np.maximum(top, 0.0)).astype(np.float64), exponent))
    return norms


def pascanu_bound(W_hh: np.ndarray, activation: str, max_lag: int) -> np.ndarray:
    """Upper bound (gamma sigma_max(W_hh))^lag on ||dh_T/dh_k|| for lags 1..max_lag; returns (max_lag,)."""
    check_activation(activation)
    if isinstance(max_lag, bool) or not isinstance(max_lag, int | np.integer) or max_lag < 1:
        raise ValueError(f"max_lag must be an integer >= 1, got {max_lag!r}")
    return _powers(DERIVATIVE_BOUND[activation] * largest_singular_value(W_hh), max_lag)


def _powers(rate: float, max_lag: int) -> np.ndarray:
    """rate^lag for lags 1..max_lag, (max_lag,)."""
    return rate ** np.arange(1, max_lag + 1, dtype=np.float64)


@dataclass(frozen=True)
class DecayFit:
    """Least-squares fit log(norm) = log_prefactor + lag log_rate, i.e. norm ≈ C rate^lag.

    rate < 1: the gradient vanishes with the lag; rate > 1: it explodes. n_points counts the usable points.
    """

    rate: float
    log_rate: float
    log_prefactor: float
    n_points: int


def fit_decay_rate(norms: np.ndarray, lags: np.ndarray | None = None) -> DecayFit:
    """Fit norm ≈ C r^lag to a curve (L,) of positive norms; lags default to 1..L.

    Non-positive and non-finite values (underflowed or overflowed products) are left out of the fit; fewer
    than two usable points, or all at the same lag, raise ValueError.
    """
    norms = np.asarray(norms, dtype=np.float64)
    if norms.ndim != 1:
        raise ValueError(f"norms must be a 1-D curve (L,), got shape {norms.shape}")
    lags = np.arange(1, norms.size + 1, dtype=np.float64) if lags is None else np.asarray(lags, np.float64)
    if lags.shape != norms.shape:
        raise ValueError(f"lags must have the shape of norms {norms.shape}, got {lags.shape}")
    usable = np.isfinite(norms) & (norms > 0) & np.isfinite(lags)
    x, y = lags[usable], np.log(norms[usable])
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError(f"norms must contain at least 2 positive finite values at distinct lags to fit a "
                         f"decay rate, got {int(usable.sum())} usable of {norms.size}")
    slope, intercept = np.polyfit(x, y, 1)
    return DecayFit(rate=math.exp(slope), log_rate=float(slope), log_prefactor=float(intercept),
                    n_points=int(x.size))


@dataclass(frozen=True)
class GradientFlowReport:
    """Everything `gradient_flow_report` measures at one training step.

    lag_norms (L,): batch-mean ||dh_T/dh_k|| for lags 1..L. bound (L,): (gamma sigma_max)^lag.
    decay_rate: fitted r with lag_norms ≈ C r^lag (nan when fewer than 2 norms are positive and finite).
    bound_rate: gamma sigma_max(W_hh), the rate of the bound. step_norms (T,): batch-mean ||dL/dh_t||.
    """

    lag_norms: np.ndarray
    bound: np.ndarray
    decay_rate: float
    bound_rate: float
    sigma_max: float
    spectral_radius: float
    step_norms: np.ndarray

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """The scalar fields plus the first/last step norms, keyed `prefix + name`, for `log_metrics`."""
        return {f"{prefix}decay_rate": self.decay_rate, f"{prefix}bound_rate": self.bound_rate,
                f"{prefix}sigma_max": self.sigma_max, f"{prefix}spectral_radius": self.spectral_radius,
                f"{prefix}grad_norm_first_step": float(self.step_norms[0]),
                f"{prefix}grad_norm_last_step": float(self.step_norms[-1])}


def gradient_flow_report(W_hh: np.ndarray, H: np.ndarray, activation: str, dh: np.ndarray,
                         max_lag: int | None = None) -> GradientFlowReport:
    """All gradient-flow diagnostics of one Elman layer in one call.

    W_hh (H, H); H (T, B, H) the layer's hidden states; activation its name; dh (T, B, H) total dL/dh_t
    (from `loss_and_grads(..., return_hidden_grads=True)`); max_lag defaults to T.
    """
    lag_norms = jacobian_product_norms(W_hh, H, activation, max_lag)
    try:
        decay_rate = fit_decay_rate(lag_norms).rate
    except ValueError:
        # all products vanished (e.g. dead relu units): no rate, but the training loop must carry on
        decay_rate = math.nan
    sigma = largest_singular_value(W_hh)
    bound_rate = DERIVATIVE_BOUND[activation] * sigma  # pascanu_bound's rate, its SVD not run again
    return GradientFlowReport(lag_norms=lag_norms, bound=_powers(bound_rate, lag_norms.size),
                              decay_rate=decay_rate, bound_rate=bound_rate,
                              sigma_max=sigma, spectral_radius=spectral_radius(W_hh),
                              step_norms=step_gradient_norms(dh))
