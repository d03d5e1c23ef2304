"""ARMA(p, q) with a constant, fitted by statsmodels' exact Gaussian likelihood (Kalman filter).

Model: x_t - mu = sum_i phi_i (x_{t-i} - mu) + e_t + sum_j theta_j e_{t-j}, e_t ~ N(0, sigma2), with mu the
process mean (statsmodels' lag-polynomial sign convention: ar polynomial [1, -phi_1, ...], ma polynomial
[1, theta_1, ...]). The fitted "const" is mu, not the intercept c = mu (1 - sum_i phi_i) of
x_t = c + sum_i phi_i x_{t-i} + ...: statsmodels' ARIMA with trend "c" puts the constant in the mean.

- fit_arma fits one order on the training part; select_arma searches a (p, q) grid by AIC or BIC and skips
  (but records) fits that failed or did not converge. Both return what statsmodels' `ARIMA(...).fit()` fitted
  point after point returns, bit for bit (tested against it on many series), in 70-95% of its CPU time:
  the Kalman filter of every likelihood evaluation takes its steady state once the state covariance repeats
  exactly (_steady_state_arima), and only the chosen fit gets standard errors and smoothed results.
  `select_arma(n_jobs=2)` spreads the grid over two processes, for the wall time; same numbers. Both run
  with every BLAS on one thread (harness.runtime.one_blas_thread), whether or not the caller pinned them: a
  threaded OpenBLAS made a search 5.5-6.2x slower under load.
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

import copy
import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.processes import results_in_processes
from harness.runtime import one_blas_thread

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

    def root_moduli(self) -> tuple[float | None, float | None]:
        """The smallest |z| of the roots of the AR polynomial 1 - phi_1 z - ... - phi_p z^p and of the MA
        polynomial 1 + theta_1 z + ... + theta_q z^q (None without such a part): below 1 the fit is not
        stationary / not invertible, at 1 it sits on the boundary (a sine's AR roots; an MA unit root, which
        an order search may choose on a short series); statsmodels' arroots and maroots."""
        def smallest(roots: np.ndarray) -> float | None:
            return float(np.abs(roots).min()) if len(roots) else None

        return smallest(self.results.arroots), smallest(self.results.maroots)

    def summary(self) -> dict[str, Any]:
        """JSON-able description: order, params, bse, psi, criteria, convergence and warnings, the smallest
        moduli of the AR and MA roots (root_moduli)."""
        ar_root, ma_root = self.root_moduli()
        return {
            "ar_root_min_modulus": ar_root,
            "ma_root_min_modulus": ma_root,
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
    The result is what `ARIMA(...).fit()` returns, bit for bit (see `_Estimate`).
    """
    p, q = _check_order("order", order)
    train = _check_series("train", train)
    needed = minimum_length(p, q)
    if len(train) < needed:
        raise ValueError(
            f"train has {len(train)} points, too short for ARMA({p},{q}): needs at least {needed}"
        )
    _check_maxiter(maxiter)
    _check_psi_lags(psi_lags)
    with _statsmodels_on_one_blas_thread():
        return _estimate(train, (p, q), constrained, maxiter, 0).arma_fit(train, psi_lags)


def _check_maxiter(maxiter: Any) -> None:
    if maxiter is not None and (isinstance(maxiter, bool) or not isinstance(maxiter, int) or maxiter < 1):
        raise ValueError(f"maxiter must be None or a positive integer, got {maxiter!r}")


def _check_psi_lags(psi_lags: Any) -> None:
    if isinstance(psi_lags, bool) or not isinstance(psi_lags, int) or psi_lags < 1:
        raise ValueError(f"psi_lags must be a positive integer, got {psi_lags!r}")


def select_arma(train: np.ndarray, *, criterion: str = "aic", max_p: int = 3, max_q: int = 3,
                maxiter: int | None = None, psi_lags: int = 20, unconstrained: bool = False,
                n_jobs: int = 1) -> OrderSelection:
    """Fit every ARMA(p, q), 0 <= p <= max_p, 0 <= q <= max_q, on (N_tr,) train; keep the lowest criterion.

    unconstrained: also fit every order without enforced stationarity and invertibility, all criteria then on
    the observations t >= max(max_p, max_q + 1) (see the module docstring). Fits that raise or do not
    converge are recorded in `trials` and left out of the choice; if none is left, RuntimeError lists why
    each failed. n_jobs: processes the grid's fits are spread over (1: this process; a study that already
    runs its cells side by side should keep 1, or the cores are oversubscribed); it changes no number.
    Every grid point is fitted exactly as fit_arma does; only the chosen one gets its standard errors and
    smoothed results (the others' would be discarded), so `best` is fit_arma's result bit for bit.
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
    _check_maxiter(maxiter)
    _check_psi_lags(psi_lags)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, got {n_jobs!r}")
    burn = max(max_p, max_q + 1) if unconstrained else 0
    grid = [(p, q, constrained) for constrained in ((True, False) if unconstrained else (True,))
            for p in range(max_p + 1) for q in range(max_q + 1)]
    calls = [(_estimate_or_error, (train, (p, q), constrained, maxiter, burn)) for p, q, constrained in grid]
    with _statsmodels_on_one_blas_thread():
        with results_in_processes(calls, int(n_jobs)) as results:
            estimates = list(results)
        trials, best = _trials_and_best(grid, estimates, criterion)
        return OrderSelection(best=best.arma_fit(train, psi_lags), criterion=criterion, trials=trials)


def _trials_and_best(grid: list[tuple[int, int, bool]], estimates: list[_Estimate | str], criterion: str
                     ) -> tuple[tuple[OrderTrial, ...], _Estimate]:
    """select_arma's record of every grid point (p, q, constrained) and its estimate (_estimate_or_error),
    and the converged estimate with the lowest criterion; RuntimeError listing why each failed if none."""
    trials, best, best_score = [], None, np.inf
    for (p, q, constrained), estimate in zip(grid, estimates, strict=True):
        if isinstance(estimate, str):
            trials.append(OrderTrial((p, q), np.nan, np.nan, False, (), estimate, constrained))
            continue
        trials.append(OrderTrial((p, q), estimate.aic, estimate.bic, estimate.converged, estimate.warnings,
                                 None, constrained))
        score = estimate.aic if criterion == "aic" else estimate.bic
        if estimate.converged and score < best_score:
            best, best_score = estimate, score
    if best is None:
        reasons = "; ".join(
            f"ARMA{t.order}: {t.error or ', '.join(t.warnings) or 'not converged'}" for t in trials
        )
        raise RuntimeError(f"no ARMA order in the grid converged: {reasons}")
    return tuple(trials), best


@contextmanager
def _statsmodels_on_one_blas_thread() -> Iterator[None]:
    """The block with statsmodels loaded, and SciPy's BLAS with it, then every BLAS on one thread
    (harness.runtime.one_blas_thread limits only the libraries loaded before it)."""
    _steady_state_arima()
    with one_blas_thread():
        yield


# The smallest positive float64: the Kalman filter takes its steady state only once the predicted state
# covariance repeats exactly (see _steady_state_arima).
_EXACT_STEADY_STATE = float(np.nextafter(0.0, 1.0))


@functools.cache
def _steady_state_arima() -> type:
    """statsmodels' ARIMA whose constant mean is stored as a time-invariant observation intercept.

    ARIMA carries the mean as the regression on a column of ones, a (1, N) observation intercept, so
    statsmodels' Kalman filter sees a time-varying model and updates the state covariance P_t at every step
    of every likelihood evaluation. Stored as (1, 1) (the same value), the model is time-invariant and the
    filter may switch to its steady state, skipping the covariance recursions, once
    ||P_{t+1|t} - P_{t|t-1}||^2 < tolerance. With tolerance the smallest positive float that happens only when
    the two are equal in floating point (differences below 1e-162 aside); from then on every step would
    compute the same bits again, so the log-likelihood is unchanged bit for bit and the optimiser takes
    exactly the same path. For ARMA fits P_t repeats after a few dozen steps (MA roots near the unit circle
    take longer), which saves about a quarter of each evaluation.
    """
    from statsmodels.tsa.arima.model import ARIMA

    class SteadyStateARIMA(ARIMA):
        def update(self, params, *args, **kwargs):
            result = super().update(params, *args, **kwargs)
            self.ssm["obs_intercept"] = self.ssm["obs_intercept"][:, :1]
            return result

    return SteadyStateARIMA


def _arima_options(order: tuple[int, int], constrained: bool) -> dict[str, Any]:
    return {"order": (order[0], 0, order[1]), "trend": "c", "enforce_stationarity": constrained,
            "enforce_invertibility": constrained}


def _warning_texts(caught: list) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))


@dataclass(frozen=True)
class _Estimate:
    """One maximum-likelihood fit without the parts only the chosen fit needs (standard errors, smoother).

    The optimisation is statsmodels' `ARIMA(...).fit()` itself (same start, optimiser and settings; the
    model only stores its mean time-invariant, _steady_state_arima), ended by one Kalman filter pass for the
    criteria instead of the smoother and the covariance matrix. mlefit: statsmodels' optimiser result (with
    the unconstrained-space parameters), detached from its model so that it pickles. aic / bic: on the
    observations t >= burn (statsmodels' own for burn 0).
    """

    order: tuple[int, int]
    constrained: bool
    mlefit: Any
    aic: float
    bic: float
    converged: bool
    warnings: tuple[str, ...]

    def arma_fit(self, train: np.ndarray, psi_lags: int) -> ArmaFit:
        """The full fit: statsmodels' results at the optimum, as the end of `ARIMA.fit` builds them
        (mlemodel.MLEModel.fit: smoothed at mlefit.params with the default covariance, its optimiser output
        attached; arima.model.ARIMA.fit: fit_details)."""
        from statsmodels.tsa.arima.model import ARIMA
        from statsmodels.tsa.arima_process import arma2ma

        p, q = self.order
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = ARIMA(train, **_arima_options(self.order, self.constrained))
            results = model.smooth(self.mlefit.params, transformed=False, includes_fixed=False)
        mlefit = copy.copy(self.mlefit)
        mlefit.model = model
        results._results.mlefit = mlefit
        results._results.mle_retvals = mlefit.mle_retvals
        results._results.mle_settings = mlefit.mle_settings
        results.fit_details = mlefit
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
            converged=self.converged,
            warnings=tuple(dict.fromkeys(self.warnings + _warning_texts(caught))),
            results=results,
            constrained=self.constrained,
        )


def _estimate(train: np.ndarray, order: tuple[int, int], constrained: bool, maxiter: int | None,
              burn: int) -> _Estimate:
    """Fit ARMA(order) on (N_tr,) train (see _Estimate); raises what statsmodels raises."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.statespace.kalman_filter import MEMORY_NO_SMOOTHING

    fit_kwargs = {} if maxiter is None else {"method_kwargs": {"maxiter": maxiter}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _steady_state_arima()(train, **_arima_options(order, constrained))
        model.ssm.tolerance = _EXACT_STEADY_STATE
        model.ssm.set_conserve_memory(MEMORY_NO_SMOOTHING)  # the final pass filters, it does not smooth
        results = model.fit(cov_type="none", **fit_kwargs)
    non_convergence = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    converged = bool(results.mle_retvals.get("converged", True)) and not non_convergence
    if burn == 0:
        aic, bic = float(results.aic), float(results.bic)
    else:
        loglike = float(np.sum(np.asarray(results.llf_obs)[burn:]))
        k = len(results.params)
        aic, bic = -2.0 * loglike + 2.0 * k, -2.0 * loglike + k * float(np.log(results.nobs - burn))
    mlefit = copy.copy(results.mlefit)
    mlefit.model = None
    return _Estimate(order, constrained, mlefit, aic, bic, converged, _warning_texts(caught))


def _estimate_or_error(train: np.ndarray, order: tuple[int, int], constrained: bool, maxiter: int | None,
                       burn: int) -> _Estimate | str:
    """_estimate, or the text of the error of a fit that failed (a grid point select_arma records)."""
    try:
        return _estimate(train, order, constrained, maxiter, burn)
    except (ValueError, np.linalg.LinAlgError) as error:
        return f"{type(error).__name__}: {error}"


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
