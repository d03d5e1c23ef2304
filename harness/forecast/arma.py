"""ARMA(p, q) with a constant, fitted by statsmodels' exact Gaussian likelihood (Kalman filter).

Model: x_t - mu = sum_i phi_i (x_{t-i} - mu) + e_t + sum_j theta_j e_{t-j}, e_t ~ N(0, sigma2), with mu the
process mean (statsmodels' lag-polynomial sign convention: ar polynomial [1, -phi_1, ...], ma polynomial
[1, theta_1, ...]). The fitted "const" is mu, not the intercept c = mu (1 - sum_i phi_i) of
x_t = c + sum_i phi_i x_{t-i} + ...: statsmodels' ARIMA with trend "c" puts the constant in the mean.

- fit_arma fits one order on the training part; select_arma searches a (p, q) grid by AIC or BIC and skips
  (but records) fits that failed or did not converge.
- A fit enforces stationarity and invertibility by default (the Kalman filter then starts from the stationary
  distribution). A sinusoid needs AR roots on the unit circle, which such a fit cannot reach: on a noisy sine
  the stationary fits fight the boundary, warn and are skipped, and the order left over forecasts badly.
  `select_arma(unconstrained=True)` also fits every order without those constraints (approximate diffuse
  initialisation, whose first max(p, q + 1) observations statsmodels leaves out of the likelihood). Then every
  fit's criterion is computed on the same observations, t >= max(max_p, max_q + 1), from its per-observation
  log-likelihood, so constrained and unconstrained fits compete fairly.
- one_step_forecasts applies the fitted parameters, held fixed, to a whole series (`results.apply(series)`, no
  refit): the Kalman filter starts from the stationary distribution at index 0 and the prediction for index t
  is E[x_t | x_0 .. x_{t-1}], so the test part is forecast with the training and validation parts as history
  and no look-ahead. (`append` would give the same numbers when the series starts with the training data;
  `apply` does not need that assumption.)
- h_step_forecasts gives the h = 1..H forecasts and their variances from many origins at once, from one
  Kalman filter pass (no look-ahead either), equal to statsmodels' get_forecast at each origin.
- Psi-weights (MA(inf) impulse response) come from arma2ma; pi-weights of the one-step predictor from arma2ar.

statsmodels is imported lazily (about 2 s); its warnings are captured per fit and returned as text, never
printed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CRITERIA = ("aic", "bic")


def minimum_length(p: int, q: int) -> int:
    """Fewest points a part may hold for an ARMA(p, q): 10 per coefficient (+ constant), at least 30."""
    return max(30, 10 * (p + q + 1))


def _check_order(argument: str, order: Any) -> tuple[int, int]:
    if (
        not isinstance(order, tuple | list)
        or len(order) != 2
        or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0 for k in order)
    ):
        raise ValueError(f"{argument} must be a pair (p, q) of non-negative integers, got {order!r}")
    return int(order[0]), int(order[1])


def _check_series(argument: str, values: Any) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{argument} must be a 1-D series of shape (N,), got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{argument} must hold only finite values")
    return values


@dataclass(frozen=True)
class ArmaFit:
    """One fitted ARMA(p, q) with a constant.

    params / bse: name -> estimate / standard error, names as statsmodels gives them ("const", "ar.L1", ...,
    "ma.L1", ..., "sigma2"). ar (p,), ma (q,): phi and theta in the model equation. const: the process mean
    mu (statsmodels' "const"; the intercept is mu (1 - sum(ar))). psi (K,): psi_0 = 1,
    psi_1, ... constrained: stationarity and invertibility were enforced. converged: the optimiser reported
    convergence and raised no ConvergenceWarning; warnings: every
    warning text captured during the fit. results: the statsmodels results object (for forecasting).
    """

    order: tuple[int, int]
    params: dict[str, float]
    bse: dict[str, float]
    ar: np.ndarray
    ma: np.ndarray
    const: float
    sigma2: float
    psi: np.ndarray
    aic: float
    bic: float
    loglike: float
    nobs: int
    converged: bool
    warnings: tuple[str, ...]
    results: Any = field(repr=False, compare=False)
    constrained: bool = True

    def summary(self) -> dict[str, Any]:
        """JSON-able description: order, params, bse, psi, criteria, convergence and warnings."""
        return {
            "order": list(self.order),
            "params": self.params,
            "bse": self.bse,
            "psi": self.psi.tolist(),
            "aic": self.aic,
            "bic": self.bic,
            "loglike": self.loglike,
            "nobs": self.nobs,
            "converged": self.converged,
            "constrained": self.constrained,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class OrderTrial:
    """One grid point of select_arma: its criteria (NaN if the fit failed), convergence, warnings or error;
    constrained: whether the fit enforced stationarity and invertibility."""

    order: tuple[int, int]
    aic: float
    bic: float
    converged: bool
    warnings: tuple[str, ...]
    error: str | None
    constrained: bool = True


@dataclass(frozen=True)
class OrderSelection:
    """Result of select_arma: the chosen fit, the criterion and every grid point tried (in grid order)."""

    best: ArmaFit
    criterion: str
    trials: tuple[OrderTrial, ...]

    @property
    def skipped(self) -> tuple[OrderTrial, ...]:
        """Grid points left out of the choice because the fit failed or did not converge."""
        return tuple(t for t in self.trials if not t.converged)


def fit_arma(train: np.ndarray, order: tuple[int, int], *, maxiter: int | None = None,
             psi_lags: int = 20, constrained: bool = True) -> ArmaFit:
    """Fit ARMA(p, q) with a constant to (N_tr,) train by maximum likelihood.

    maxiter: optimiser iteration cap (None: statsmodels' default). psi_lags: number K of psi-weights reported.
    constrained: enforce stationarity and invertibility (False: neither; see the module docstring).
    A non-converged fit is returned with converged=False (never silently treated as converged).
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.arima.model import ARIMA
    from statsmodels.tsa.arima_process import arma2ma

    p, q = _check_order("order", order)
    train = _check_series("train", train)
    needed = minimum_length(p, q)
    if len(train) < needed:
        raise ValueError(
            f"train has {len(train)} points, too short for ARMA({p},{q}): needs at least {needed}"
        )
    if maxiter is not None and (isinstance(maxiter, bool) or not isinstance(maxiter, int) or maxiter < 1):
        raise ValueError(f"maxiter must be None or a positive integer, got {maxiter!r}")
    if isinstance(psi_lags, bool) or not isinstance(psi_lags, int) or psi_lags < 1:
        raise ValueError(f"psi_lags must be a positive integer, got {psi_lags!r}")
    fit_kwargs = {} if maxiter is None else {"method_kwargs": {"maxiter": maxiter}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = ARIMA(train, order=(p, 0, q), trend="c", enforce_stationarity=constrained,
                        enforce_invertibility=constrained).fit(**fit_kwargs)
    texts = tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    non_convergence = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    converged = bool(results.mle_retvals.get("converged", True)) and not non_convergence
    names = list(results.param_names)
    values = np.asarray(results.params, dtype=np.float64)
    errors = np.asarray(results.bse, dtype=np.float64)
    return ArmaFit(
        order=(p, q),
        params={n: float(v) for n, v in zip(names, values, strict=True)},
        bse={n: float(v) for n, v in zip(names, errors, strict=True)},
        ar=np.asarray(results.arparams, dtype=np.float64).reshape(p),
        ma=np.asarray(results.maparams, dtype=np.float64).reshape(q),
        const=float(values[names.index("const")]),
        sigma2=float(values[names.index("sigma2")]),
        psi=np.asarray(arma2ma(results.polynomial_ar, results.polynomial_ma, lags=psi_lags), dtype=float),
        aic=float(results.aic),
        bic=float(results.bic),
        loglike=float(results.llf),
        nobs=int(results.nobs),
        converged=converged,
        warnings=texts,
        results=results,
        constrained=constrained,
    )


def select_arma(train: np.ndarray, *, criterion: str = "aic", max_p: int = 3, max_q: int = 3,
                maxiter: int | None = None, psi_lags: int = 20, unconstrained: bool = False
                ) -> OrderSelection:
    """Fit every ARMA(p, q), 0 <= p <= max_p, 0 <= q <= max_q, on (N_tr,) train; keep the lowest criterion.

    unconstrained: also fit every order without enforced stationarity and invertibility, all criteria then on
    the observations t >= max(max_p, max_q + 1) (see the module docstring). Fits that raise or do not
    converge are recorded in `trials` and left out of the choice; if none is left, RuntimeError lists why
    each failed.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}")
    max_p, max_q = _check_order("(max_p, max_q)", (max_p, max_q))
    train = _check_series("train", train)
    needed = minimum_length(max_p, max_q)
    if len(train) < needed:
        raise ValueError(
            f"train has {len(train)} points, too short for the grid up to ARMA({max_p},{max_q}): "
            f"needs at least {needed}"
        )
    burn = max(max_p, max_q + 1) if unconstrained else 0
    trials, best, best_score = [], None, np.inf
    for constrained in (True, False) if unconstrained else (True,):
        for p in range(max_p + 1):
            for q in range(max_q + 1):
                try:
                    fit = fit_arma(train, (p, q), maxiter=maxiter, psi_lags=psi_lags, constrained=constrained)
                except (ValueError, np.linalg.LinAlgError) as error:
                    reason = f"{type(error).__name__}: {error}"
                    trials.append(OrderTrial((p, q), np.nan, np.nan, False, (), reason, constrained))
                    continue
                scores = _criteria(fit, burn)
                trials.append(OrderTrial((p, q), scores["aic"], scores["bic"], fit.converged, fit.warnings,
                                         None, constrained))
                if fit.converged and scores[criterion] < best_score:
                    best, best_score = fit, scores[criterion]
    if best is None:
        reasons = "; ".join(
            f"ARMA{t.order}: {t.error or ', '.join(t.warnings) or 'not converged'}" for t in trials
        )
        raise RuntimeError(f"no ARMA order in the grid converged: {reasons}")
    return OrderSelection(best=best, criterion=criterion, trials=tuple(trials))


def _criteria(fit: ArmaFit, burn: int) -> dict[str, float]:
    """AIC and BIC of fit (NaN stays NaN): statsmodels' own for burn 0, else from the log-likelihood of the
    observations t >= burn, with k = len(params) estimated parameters."""
    if burn == 0:
        return {"aic": fit.aic, "bic": fit.bic}
    loglike = float(np.sum(np.asarray(fit.results.llf_obs)[burn:]))
    k = len(fit.params)
    return {"aic": -2.0 * loglike + 2.0 * k, "bic": -2.0 * loglike + k * float(np.log(fit.nobs - burn))}


def one_step_forecasts(fit: ArmaFit, series: np.ndarray, start: int) -> np.ndarray:
    """One-step-ahead predictions (N - start,) of series[start:] with fit's parameters held fixed.

    Prediction k is E[series[start + k] | series[:start + k]] under the fitted model (Kalman filter over the
    whole (N,) series from its stationary initial state; no parameter is re-estimated).
    """
    series = _check_series("series", series)
    if isinstance(start, bool) or not isinstance(start, int | np.integer) or not 0 <= start < len(series):
        raise ValueError(f"start must be an integer in [0, {len(series) - 1}], got {start!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit's warnings were captured already; filtering adds no news
        applied = fit.results.apply(series, refit=False)
    return np.asarray(applied.fittedvalues, dtype=np.float64)[start:]


def _matrix(array: np.ndarray, name: str) -> np.ndarray:
    """The time-invariant system matrix `array[..., 0]` (ARMA with a constant has no time-varying one)."""
    if array.shape[-1] != 1 and not np.all(array == array[..., :1]):
        raise ValueError(f"the ARMA state-space {name} must not vary with time")
    return array[..., 0]


def h_step_forecasts(fit: ArmaFit, series: np.ndarray, origins: np.ndarray, horizon: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts (M, H) of series[o + h - 1], h = 1..H, from each origin o in (M,) origins, and their
    variances (M, H), with fit's parameters held fixed and only series[:o] known at origin o.

    One Kalman filter over the whole (N,) series (statsmodels' `apply`, no refit) gives the predicted state
    a_o = E[s_o | x_0..x_{o-1}] and its covariance P_o at every origin; then, for j = 0..H-1,
    x̂_{o+j} = d + Z a_{o+j}, Var = Z P_{o+j} Z' + H_obs, a_{o+j+1} = c + T a_{o+j},
    P_{o+j+1} = T P_{o+j} T' + R Q R' -- what statsmodels' get_forecast computes origin by origin (the tests
    hold the two equal to 1e-8). The filter is causal, so nothing after an origin enters its forecasts.
    """
    series = _check_series("series", series)
    origins = np.asarray(origins)
    if origins.ndim != 1 or not np.issubdtype(origins.dtype, np.integer) or (
        len(origins) and (origins.min() < 1 or origins.max() > len(series))
    ):
        raise ValueError(f"origins must be a 1-D integer array with values in [1, {len(series)}]")
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit's warnings were captured already
        filtered = fit.results.apply(series, refit=False).filter_results
    Z = _matrix(filtered.design, "design")  # (1, k)
    T = _matrix(filtered.transition, "transition")  # (k, k)
    R = _matrix(filtered.selection, "selection")  # (k, r)
    RQR = R @ _matrix(filtered.state_cov, "state_cov") @ R.T
    c = _matrix(filtered.state_intercept, "state_intercept")  # (k,)
    d = _matrix(filtered.obs_intercept, "obs_intercept")  # (1,)
    h_obs = _matrix(filtered.obs_cov, "obs_cov")  # (1, 1)
    a = filtered.predicted_state[:, origins].T  # (M, k)
    P = np.moveaxis(filtered.predicted_state_cov[:, :, origins], -1, 0)  # (M, k, k)
    mean = np.empty((len(origins), horizon))
    variance = np.empty((len(origins), horizon))
    for j in range(horizon):
        mean[:, j] = d[0] + a @ Z[0]
        variance[:, j] = np.einsum("i,mij,j->m", Z[0], P, Z[0]) + h_obs[0, 0]
        a = c + a @ T.T
        P = T @ P @ T.T + RQR
    return mean, variance


def predictor_weights(ar: np.ndarray, ma: np.ndarray, lags: int = 20) -> np.ndarray:
    """Pi-weights (lags,) of the ARMA one-step predictor: x̂_t - mu = sum_{k>=1} pi_k (x_{t-k} - mu).

    ar (p,), ma (q,) as in the model equation. They are minus the AR(inf) coefficients theta(B)^{-1} phi(B)
    beyond lag 0, so pi_1 = phi_1 + theta_1 and, for ARMA(1,1), pi_k = (phi + theta)(-theta)^{k-1}.
    """
    from statsmodels.tsa.arima_process import arma2ar

    ar_poly = np.r_[1.0, -np.asarray(ar, dtype=np.float64)]
    ma_poly = np.r_[1.0, np.asarray(ma, dtype=np.float64)]
    return -np.asarray(arma2ar(ar_poly, ma_poly, lags=lags + 1), dtype=np.float64)[1:]


def psi_from_predictor_weights(pi: np.ndarray, lags: int = 20) -> np.ndarray:
    """Psi-weights (lags,) of the process whose one-step predictor has weights pi (K,) (pi_1 .. pi_K).

    x_t = sum_k pi_k x_{t-k} + e_t inverts to x_t = sum_j psi_j e_{t-j} with psi_0 = 1 and
    psi_j = sum_{k=1}^{min(j, K)} pi_k psi_{j-k}; exact up to psi_K when the true pi vanish beyond K.
    """
    pi = np.asarray(pi, dtype=np.float64)
    if pi.ndim != 1:
        raise ValueError(f"pi must be a 1-D array (K,), got shape {pi.shape}")
    psi = np.zeros(lags)
    psi[0] = 1.0
    for j in range(1, lags):
        k = min(j, len(pi))
        psi[j] = pi[:k] @ psi[j - 1 :: -1][:k]
    return psi


def linear_rnn_impulse_response(W_xh: np.ndarray, W_hh: np.ndarray, W_hy: np.ndarray, lags: int = 20
                                ) -> np.ndarray:
    """Response (lags,) of a linear Elman net's output o_t to a unit input value x_{t-k}, k = 1..lags.

    The net is fed D lagged values at step t, (x_{t-1}, ..., x_{t-D}): h_t = u_t W_xh + h_{t-1} W_hh,
    o_t = h_t W_hy with W_xh (D, H), W_hh (H, H), W_hy (H, 1). x_{t-k} enters through row d of W_xh at step
    t - k + 1 + d and is carried k - 1 - d steps, so g_k = sum_{d < min(D, k)} W_xh[d] W_hh^(k-1-d) W_hy.
    These are the predictor's pi-weights; psi_from_predictor_weights turns them into psi-weights.
    """
    W_xh, W_hh, W_hy = (np.asarray(W, dtype=np.float64) for W in (W_xh, W_hh, W_hy))
    if W_xh.ndim != 2 or W_hh.shape != (W_xh.shape[1],) * 2 or W_hy.shape != (W_xh.shape[1], 1):
        raise ValueError(
            f"W_xh, W_hh, W_hy must have shapes (D, H), (H, H), (H, 1), "
            f"got {W_xh.shape}, {W_hh.shape}, {W_hy.shape}"
        )
    if isinstance(lags, bool) or not isinstance(lags, int | np.integer) or lags < 1:
        raise ValueError(f"lags must be a positive integer, got {lags!r}")
    D = W_xh.shape[0]
    carried = [W_hy[:, 0]]  # carried[m] = W_hh^m W_hy, (H,)
    for _ in range(1, lags):
        carried.append(W_hh @ carried[-1])
    return np.array([sum(W_xh[d] @ carried[k - 1 - d] for d in range(min(D, k))) for k in range(1, lags + 1)])
