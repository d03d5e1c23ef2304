"""One forecasting interface for ARMA models and recurrent networks: a comparison never branches on the kind.

    forecaster.fit(train (N_tr,), val (N_va,)) -> forecaster
    forecaster.predict(series (N,), start) -> (N - start,)   one-step-ahead predictions of series[start:],
                                                             prediction k using only series[:start + k]
    forecaster.forecast(series (N,), origins (M,), H) -> (mean (M, H), variance (M, H) or None)
                                                 mean[m, h - 1] forecasts series[origins[m] + h - 1]
                                                 from series[:origins[m]] alone
    forecaster.summary() -> JSON-able dict of what was fitted

ArmaForecaster: ARMA(p, q) with a constant (harness.forecast.arma), order fixed or chosen by AIC/BIC on the
training part; the parameters are held fixed on later data (no refit). RnnForecaster: a recurrent network fed
the last `lags` values (y_{t-1}, ..., y_{t-lags}) that predicts y_t, trained with teacher forcing
(identity_mse, many_to_many) on the training part, early-stopped on the validation part; at prediction time it
runs over the whole series so its state has seen everything before t. The RNN standardises with the training
part's mean and std only and returns predictions in the series' units.

fit_linear_recurrent_predictor is note 000's RNN-ARMA link: the optimal one-step predictor of an invertible
ARMA(1, 1) x_t = phi x_{t-1} + e_t + theta e_{t-1} is x̂_{t+1} = phi x_t + theta e_t with e_t = x_t - x̂_t, i.e.

    x̂_{t+1} = (phi + theta) x_t - theta x̂_t (+ (1 - phi) mu for a mean mu),

a one-unit linear Elman net whose state is the prediction: input weight phi + theta, feedback weight -theta.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from harness.forecast.arma import (
    CRITERIA,
    ArmaFit,
    OrderSelection,
    fit_arma,
    h_step_forecasts,
    linear_rnn_impulse_response,
    minimum_length,
    one_step_forecasts,
    select_arma,
)
from harness.forecast.splits import Normalizer

RNN_MODELS = {"elman": "Elman", "jordan": "Jordan", "lstm": "LSTM", "gru": "GRU"}
FORECAST_BATCH = 64  # origins forecast side by side; bounds the (T, B, 4H) activations an LSTM keeps


@runtime_checkable
class Forecaster(Protocol):
    """What every forecaster offers (see the module docstring)."""

    def fit(self, train: np.ndarray, val: np.ndarray) -> Forecaster: ...

    def predict(self, series: np.ndarray, start: int) -> np.ndarray: ...

    def forecast(self, series: np.ndarray, origins: np.ndarray, horizon: int
                 ) -> tuple[np.ndarray, np.ndarray | None]: ...

    def summary(self) -> dict[str, Any]: ...


def _series(argument: str, values: Any, *, allow_empty: bool = False) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or (len(values) == 0 and not allow_empty):
        raise ValueError(f"{argument} must be a {'' if allow_empty else 'non-empty '}1-D series (N,), "
                         f"got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{argument} must hold only finite values")
    return values


def _start(start: Any, n: int) -> int:
    if isinstance(start, bool) or not isinstance(start, int | np.integer) or not 0 <= start < n:
        raise ValueError(f"start must be an integer in [0, {n - 1}] (series has N={n} points), got {start!r}")
    return int(start)


def _origins(origins: Any, n: int) -> np.ndarray:
    origins = np.asarray(origins)
    if origins.ndim != 1 or not np.issubdtype(origins.dtype, np.integer) or (
        len(origins) and (origins.min() < 1 or origins.max() > n)
    ):
        raise ValueError(f"origins must be a 1-D integer array with values in [1, {n}] (series has N={n} "
                         f"points)")
    return origins.astype(np.int64)


def _positive_int(argument: str, value: Any, *, allow_none: bool = False, minimum: int = 1) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}{' or None' if allow_none else ''}, "
                         f"got {value!r}")
    return int(value)


class ArmaForecaster:
    """ARMA(p, q) with a constant, order fixed (order=(p, q)) or chosen by criterion over p<=max_p, q<=max_q
    (unconstrained: among fits with and without enforced stationarity and invertibility, select_arma;
    n_jobs: processes the order search's fits are spread over, 1 inside a study that runs cells side by side).

    fit uses the training part only (the information criterion does the model choice, so val is not needed);
    fit_ is the ArmaFit used, selection_ the OrderSelection (None for a fixed order). A fixed-order fit that
    did not converge is kept but flagged (fit_.converged False, fit_.warnings; summary() reports both).
    """

    def __init__(self, order: tuple[int, int] | list[int] | None = None, criterion: str = "aic",
                 max_p: int = 3, max_q: int = 3, maxiter: int | None = None, psi_lags: int = 20,
                 unconstrained: bool = False, n_jobs: int = 1):
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {list(CRITERIA)}, got {criterion!r}")
        self.order = None if order is None else tuple(order)
        self.criterion, self.max_p, self.max_q = criterion, max_p, max_q
        self.maxiter, self.psi_lags = maxiter, psi_lags
        if not isinstance(unconstrained, bool):
            raise ValueError(f"unconstrained must be true or false, got {unconstrained!r}")
        self.unconstrained = unconstrained
        _positive_int("max_p", max_p, minimum=0)
        _positive_int("max_q", max_q, minimum=0)
        _positive_int("psi_lags", psi_lags)
        _positive_int("maxiter", maxiter, allow_none=True)
        self.n_jobs = _positive_int("n_jobs", n_jobs)
        if self.order is not None and (
            len(self.order) != 2
            or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0 for k in self.order)
        ):
            raise ValueError(f"order must be None or a pair (p, q) of non-negative integers, got {order!r}")
        self.fit_: ArmaFit | None = None
        self.selection_: OrderSelection | None = None

    def fit(self, train: np.ndarray, val: np.ndarray) -> ArmaForecaster:
        """Fit on (N_tr,) train; (N_va,) val is checked but unused (see the class docstring)."""
        train = _series("train", train)
        _series("val", val, allow_empty=True)
        if self.order is None:
            self.selection_ = select_arma(train, criterion=self.criterion, max_p=self.max_p, max_q=self.max_q,
                                          maxiter=self.maxiter, psi_lags=self.psi_lags,
                                          unconstrained=self.unconstrained, n_jobs=self.n_jobs)
            self.fit_ = self.selection_.best
        else:
            self.fit_ = fit_arma(train, self.order, maxiter=self.maxiter, psi_lags=self.psi_lags)
        return self

    def predict(self, series: np.ndarray, start: int) -> np.ndarray:
        """(N - start,) one-step predictions of series[start:] with the fitted parameters held fixed.

        The part scored, series[start:], must hold at least minimum_length(p, q) points.
        """
        if self.fit_ is None:
            raise ValueError("ArmaForecaster must be fit before predict")
        series = _series("series", series)
        start = _start(start, len(series))
        p, q = self.fit_.order
        needed = minimum_length(p, q)
        if len(series) - start < needed:
            raise ValueError(f"test part series[start:] has {len(series) - start} points, too short for "
                             f"ARMA({p},{q}): needs at least {needed}")
        return one_step_forecasts(self.fit_, series, start)

    def forecast(self, series: np.ndarray, origins: np.ndarray, horizon: int
                 ) -> tuple[np.ndarray, np.ndarray]:
        """h = 1..H forecasts (M, H) from each origin and their model variances (M, H) (h_step_forecasts)."""
        if self.fit_ is None:
            raise ValueError("ArmaForecaster must be fit before forecast")
        series = _series("series", series)
        origins = _origins(origins, len(series))
        return h_step_forecasts(self.fit_, series, origins, _positive_int("horizon", horizon))

    def summary(self) -> dict[str, Any]:
        """The fit (order, params, bse, psi, criteria, converged, warnings) and the order-search trials."""
        if self.fit_ is None:
            raise ValueError("ArmaForecaster must be fit before summary")
        criterion = self.criterion if self.order is None else None
        out = {"kind": "arma", "criterion": criterion, **self.fit_.summary()}
        if self.selection_ is not None:
            out["trials"] = [
                {"order": list(t.order), "aic": t.aic, "bic": t.bic, "converged": t.converged,
                 "constrained": t.constrained, "warnings": list(t.warnings), "error": t.error}
                for t in self.selection_.trials
            ]
        return out


def lagged_inputs(z: np.ndarray, lags: int) -> np.ndarray:
    """(N, ..., lags) inputs from (N, ...) z: X[t, ..., i] = z[t - 1 - i], zeros before the series starts."""
    X = np.zeros((*np.shape(z), lags), dtype=np.float64)
    for lag in range(1, lags + 1):
        X[lag:, ..., lag - 1] = z[:-lag]
    return X


class RnnForecaster:
    """A recurrent network predicting y_t from (y_{t-1}, ..., y_{t-lags}), trained by teacher forcing.

    model: "elman" | "jordan" | "lstm" | "gru" (built as harness.nn.<Class>(lags, hidden_size, 1,
    activation=activation, seed=seed, **model_kwargs); activation is not passed to lstm/gru), or a callable
    factory(input_size, seed) -> model with the harness.nn API (identity_mse head, many_to_many mode).
    Training: `steps` optimiser steps of make_optimizer(optimizer, lr=lr, clip_norm=clip_norm,
    **optimizer_kwargs) on mini-batches of batch_size chunks of sequence_length consecutive training points at
    random offsets, the first burn_in targets of each chunk masked (the chunk starts from a zero state);
    sequence_length=None trains on the whole training part as one sequence (batch of 1, no burn-in).
    Early stopping: every eval_every steps the model predicts the validation part one step ahead (running over
    train + val) and the parameters with the lowest validation MSE are kept; patience (evaluations without
    improvement, None: never) stops early. Without a validation part the final parameters are kept.
    logger (log_metrics(dict, step)) receives train_loss, grad_norm and val_mse at every evaluation.
    After fit: model_, normalizer_, history_ (dict of (E,) arrays "step", "train_loss", "val_mse"),
    best_step_, best_val_mse_ (normalised units), steps_run_, diverged_ (a non-finite loss stopped training).
    """

    def __init__(self, model: str | Callable[[int, int], Any] = "elman", *, hidden_size: int = 16,
                 activation: str = "tanh", lags: int = 1, optimizer: str = "adam", lr: float = 1e-2,
                 clip_norm: float | None = 1.0, steps: int = 500, sequence_length: int | None = 64,
                 batch_size: int = 16, burn_in: int = 8, eval_every: int = 10, patience: int | None = None,
                 seed: int = 0, logger: Any = None, model_kwargs: dict[str, Any] | None = None,
                 optimizer_kwargs: dict[str, Any] | None = None):
        known = model in RNN_MODELS if isinstance(model, str) else callable(model)
        if not known:
            raise ValueError(
                f"model must be one of {list(RNN_MODELS)} or a factory(input_size, seed), got {model!r}"
            )
        self.model, self.activation, self.optimizer = model, activation, optimizer
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.lags = _positive_int("lags", lags)
        self.steps = _positive_int("steps", steps)
        self.sequence_length = _positive_int("sequence_length", sequence_length, allow_none=True, minimum=2)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.burn_in = _positive_int("burn_in", burn_in, minimum=0)
        if self.sequence_length is not None and self.burn_in >= self.sequence_length:
            raise ValueError(f"burn_in must be < sequence_length={self.sequence_length}, got {burn_in!r}")
        self.eval_every = _positive_int("eval_every", eval_every)
        self.patience = _positive_int("patience", patience, allow_none=True)
        self.seed = _positive_int("seed", seed, minimum=0)
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        self.lr = float(lr)
        self.clip_norm = clip_norm
        self.logger = logger
        self.model_kwargs = dict(model_kwargs or {})
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.model_: Any = None
        self.normalizer_: Normalizer | None = None
        self.history_: dict[str, np.ndarray] = {}
        self.best_step_: int | None = None
        self.best_val_mse_: float | None = None
        self.steps_run_ = 0
        self.diverged_ = False
        # build both once so that a bad model or optimizer keyword fails here, before any study runs
        self._build_model()
        self._make_optimizer()

    def _make_optimizer(self) -> Any:
        from harness.optim import make_optimizer

        return make_optimizer(self.optimizer, lr=self.lr, clip_norm=self.clip_norm, **self.optimizer_kwargs)

    def _build_model(self) -> Any:
        if callable(self.model):
            return self.model(self.lags, self.seed)
        import harness.nn

        cls = getattr(harness.nn, RNN_MODELS[self.model], None)
        if cls is None:
            raise ValueError(f"model {self.model!r} is not available in harness.nn")
        kwargs = {"seed": self.seed, **self.model_kwargs}
        if self.model in ("elman", "jordan"):
            kwargs["activation"] = self.activation
        return cls(self.lags, self.hidden_size, 1, **kwargs)

    def _batch(self, X: np.ndarray, z: np.ndarray, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Inputs (S, B, lags), targets (S, B, 1), mask (S, B) or None for one training mini-batch."""
        if self.sequence_length is None or self.sequence_length >= len(z):
            return X[:, None, :], z[:, None, None], None
        S = self.sequence_length
        offsets = rng.integers(0, len(z) - S + 1, size=self.batch_size)
        index = offsets[None, :] + np.arange(S)[:, None]
        mask = np.ones((S, self.batch_size))
        mask[: self.burn_in] = 0.0
        return X[index], z[index][:, :, None], mask

    def fit(self, train: np.ndarray, val: np.ndarray) -> RnnForecaster:
        """Train on (N_tr,) train, early-stop on (N_va,) val (may be empty); see the class docstring."""
        train = _series("train", train)
        val = _series("val", val, allow_empty=True)
        if len(train) <= self.lags:
            raise ValueError(f"train must hold more than lags={self.lags} points, got {len(train)}")
        self.normalizer_ = Normalizer().fit(train)
        z_train = self.normalizer_.transform(train)
        z_all = self.normalizer_.transform(np.concatenate([train, val]))
        X_train = lagged_inputs(z_train, self.lags)
        X_all = lagged_inputs(z_all, self.lags)[:, None, :]
        model = self._build_model()
        opt = self._make_optimizer()
        rng = np.random.default_rng([self.seed, 1])  # a stream apart from the model's initialisation
        history: dict[str, list[float]] = {"step": [], "train_loss": [], "val_mse": []}
        best_params, best_val, best_step, since_best = copy.deepcopy(model.params), np.inf, 0, 0
        losses, norms = [], []
        step, diverged = 0, False
        for step in range(1, self.steps + 1):
            X, Y, mask = self._batch(X_train, z_train, rng)
            loss, grads = model.loss_and_grads(X, Y, mask)
            info = opt.step(model.params, grads, loss=loss)
            losses.append(loss)
            norms.append(info.grad_norm)
            if step % self.eval_every and step != self.steps:
                continue
            val_mse = np.nan
            if len(val):
                predicted = model.predict(X_all)[len(train):, 0, 0]
                val_mse = float(np.mean((predicted - z_all[len(train):]) ** 2))
            metrics = {"train_loss": float(np.mean(losses)), "grad_norm": float(np.mean(norms))}
            if len(val):
                metrics["val_mse"] = val_mse
            if self.logger is not None:
                self.logger.log_metrics(metrics, step)
            for key, value in (("step", step), ("train_loss", metrics["train_loss"]), ("val_mse", val_mse)):
                history[key].append(value)
            losses, norms = [], []
            if not np.isfinite(metrics["train_loss"]):
                diverged = True
                break  # the best parameters so far are kept
            if len(val) and val_mse < best_val:
                best_params, best_val, best_step, since_best = copy.deepcopy(model.params), val_mse, step, 0
            elif len(val):
                since_best += 1
                if self.patience is not None and since_best >= self.patience:
                    break
        if len(val) and best_step > 0:
            model.params.update(best_params)
        self.model_, self.steps_run_, self.diverged_ = model, step, diverged
        self.best_step_ = best_step if len(val) else step
        self.best_val_mse_ = float(best_val) if len(val) and best_step > 0 else None
        self.history_ = {key: np.asarray(values, dtype=np.float64) for key, values in history.items()}
        return self

    def predict(self, series: np.ndarray, start: int) -> np.ndarray:
        """(N - start,) one-step predictions of series[start:] in the series' units (one pass over series)."""
        if self.model_ is None or self.normalizer_ is None:
            raise ValueError("RnnForecaster must be fit before predict")
        series = _series("series", series)
        start = _start(start, len(series))
        X = lagged_inputs(self.normalizer_.transform(series), self.lags)[:, None, :]
        return self.normalizer_.inverse_transform(self.model_.predict(X)[start:, 0, 0])

    def forecast(self, series: np.ndarray, origins: np.ndarray, horizon: int) -> tuple[np.ndarray, None]:
        """Recursive h = 1..H forecasts (M, H) from each origin (no model variance: None).

        From origin o the network reads series[:o], then is fed its own forecasts in place of the unknown
        values o, o+1, ... The origins run side by side as a batch of sequences that all start at t = 0, so
        each state has seen the whole past, as in predict. Pass j over the batch makes the step-j forecasts
        exact (they only read steps before j), so H passes give all of them; h = 1 is predict's own pass.
        """
        if self.model_ is None or self.normalizer_ is None:
            raise ValueError("RnnForecaster must be fit before forecast")
        series = _series("series", series)
        origins = _origins(origins, len(series))
        horizon = _positive_int("horizon", horizon)
        z = np.append(self.normalizer_.transform(series), 0.0)  # a slot for origin N's unused input
        one_step = self.model_.predict(lagged_inputs(z, self.lags)[:, None, :])[:, 0, 0]  # (N + 1,)
        out = np.empty((len(origins), horizon))
        out[:, 0] = one_step[origins]
        for first in range(0, len(origins) if horizon > 1 else 0, FORECAST_BATCH):
            chunk = origins[first : first + FORECAST_BATCH]
            steps = np.arange(chunk.max() + horizon)[:, None]  # (L, 1)
            known = steps < chunk[None, :]  # (L, B): values the origin has seen
            padded = np.zeros(len(steps))
            padded[: min(len(steps), len(z) - 1)] = z[: min(len(steps), len(z) - 1)]
            values = np.where(known, padded[:, None], 0.0)
            values[chunk, np.arange(len(chunk))] = one_step[chunk]
            for _ in range(1, horizon):
                predicted = self.model_.predict(lagged_inputs(values, self.lags))[:, :, 0]  # (L, B)
                values = np.where(known, values, predicted)
            rows = chunk[:, None] + np.arange(horizon)[None, :]  # (B, H)
            out[first : first + len(chunk), 1:] = values[rows[:, 1:], np.arange(len(chunk))[:, None]]
        return self.normalizer_.inverse_transform(out), None

    def summary(self) -> dict[str, Any]:
        """Model name, sizes, training settings and the early-stopping outcome."""
        if self.model_ is None:
            raise ValueError("RnnForecaster must be fit before summary")
        return {
            "kind": "rnn",
            "model": self.model if isinstance(self.model, str) else type(self.model_).__name__,
            "hidden_size": self.hidden_size, "activation": self.activation, "lags": self.lags,
            "optimizer": self.optimizer, "lr": self.lr, "clip_norm": self.clip_norm, "steps": self.steps,
            "sequence_length": self.sequence_length, "batch_size": self.batch_size, "burn_in": self.burn_in,
            "steps_run": self.steps_run_, "diverged": self.diverged_, "best_step": self.best_step_,
            "best_val_mse": self.best_val_mse_,
            "normalizer": {"mean": self.normalizer_.mean, "std": self.normalizer_.std},
        }


@dataclass(frozen=True)
class LinearPredictorFit:
    """A one-unit linear recurrent predictor x̂_t = a x_{t-1} + c x̂_{t-1} + b (note 000's RNN-ARMA link).

    input_weight a (= W_xh), feedback_weight c (= W_hh), intercept b (= b_h); W_hy = 1 and b_y = 0 are held
    fixed so the state is the prediction. impulse (K,): response of x̂_t to a unit input at x_{t-k}, k = 1..K.
    loss: training MSE at the last step. model: the trained harness.nn Elman.
    """

    input_weight: float
    feedback_weight: float
    intercept: float
    impulse: np.ndarray
    loss: float
    model: Any


def fit_linear_recurrent_predictor(series: np.ndarray, *, steps: int = 500, lr: float = 0.05,
                                   sequence_length: int = 100, burn_in: int = 30, impulse_lags: int = 20,
                                   seed: int = 0) -> LinearPredictorFit:
    """Train a 1-unit linear Elman net (input x_{t-1}, state = prediction of x_t) on (N,) series by BPTT.

    Full-batch Adam over the non-overlapping chunks of sequence_length points (first burn_in targets of each
    chunk masked, since a chunk starts from a zero state); W_xh and W_hh start at 0. impulse_lags: length K
    of the reported impulse response. For an invertible ARMA(1, 1) the weights should approach phi + theta
    and -theta.
    """
    from harness.nn import Elman
    from harness.optim import make_optimizer

    series = _series("series", series)
    S = _positive_int("sequence_length", sequence_length, minimum=2)
    burn_in = _positive_int("burn_in", burn_in, minimum=0)
    if burn_in >= S or len(series) < S:
        raise ValueError(f"series (N={len(series)}) must hold one chunk of sequence_length={S} points with "
                         f"burn_in={burn_in} < sequence_length")
    chunks = len(series) // S
    z = series[: chunks * S].reshape(chunks, S).T  # (S, chunks): chunk b is series[b S : (b + 1) S]
    X = np.zeros_like(z)
    X[1:] = z[:-1]
    X[0, 1:] = z[-1, :-1]  # the first input of a chunk is the last point of the previous one
    mask = np.ones_like(z)
    mask[:burn_in] = 0.0
    model = Elman(1, 1, 1, activation="identity", seed=seed)
    model.params.update({"W_xh": np.zeros((1, 1)), "W_hh": np.zeros((1, 1)), "W_hy": np.ones((1, 1)),
                         "b_h": np.zeros(1), "b_y": np.zeros(1)})
    trainable = ("W_xh", "W_hh", "b_h")
    opt = make_optimizer("adam", lr=lr)
    loss = np.nan
    for _ in range(_positive_int("steps", steps)):
        loss, grads = model.loss_and_grads(X[:, :, None], z[:, :, None], mask)
        params = {k: model.params[k] for k in trainable}
        opt.step(params, {k: grads[k] for k in trainable}, loss=loss)
        model.params.update(params)
    W_xh, W_hh, W_hy = model.params["W_xh"], model.params["W_hh"], model.params["W_hy"]
    return LinearPredictorFit(
        input_weight=float(W_xh[0, 0]),
        feedback_weight=float(W_hh[0, 0]),
        intercept=float(model.params["b_h"][0]),
        impulse=linear_rnn_impulse_response(W_xh, W_hh, W_hy, impulse_lags),
        loss=float(loss),
        model=model,
    )
