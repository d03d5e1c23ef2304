"""Scores of one-step-ahead forecasts: error measures and the Diebold-Mariano test (statistics over seeds:
harness.seed_stats).

Diebold-Mariano (Diebold & Mariano 1995) with the small-sample correction of Harvey, Leybourne & Newbold
(1997), computed by statsmodels' `diebold_mariano_test(harvey_adj=True, lags=h - 1, horizon=h)`: for loss
differentials d_t = L(e1_t) - L(e2_t), t = 1..n, and forecast horizon h,

    DM   = mean(d) / sqrt(V / n),   V = gamma_0 + 2 sum_{k=1}^{h-1} (1 - k / h) gamma_k   (gamma_k: /n)
    DM*  = DM * sqrt((n + 1 - 2h + h(h - 1) / n) / n)

and DM* is compared with Student's t with n - 1 degrees of freedom, two-sided. DM* < 0 means forecast 1 has
the lower expected loss.

The long-run variance V uses Newey-West (Bartlett) weights 1 - k/h, as R's forecast::dm.test does with
varestimator = "bartlett". The 1995 paper's truncated sum gamma_0 + 2 sum gamma_k (R's default "acf") can be
negative for h >= 2 on ordinary data, e.g. e1 = [1.5, 0, 1.5, 0, 1.6, 0.1], e2 = [0, 1.5, 0, 1.5, 0, 1.4],
h = 2, where it gave "significant at any level" for two equally good forecasts; R then falls back to h = 1.
The Bartlett weights make V a sum of squares, so it is never negative and is zero only when d is constant:
no fallback is needed. At h = 1 both estimators are gamma_0 and the test is the classic one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LOSSES = ("squared", "absolute")
_CRITERIA = {"squared": "mse", "absolute": "mae"}  # statsmodels' names of the losses


def _pair(y_true: Any, y_pred: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = (np.asarray(v, dtype=np.float64) for v in (y_true, y_pred))
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(
            f"{names[0]} and {names[1]} must be non-empty 1-D arrays of equal shape (N,), "
            f"got {a.shape} and {b.shape}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError(f"{names[0]} and {names[1]} must hold only finite values")
    return a, b


def evaluate_forecast(y_true: np.ndarray, y_pred: np.ndarray, innovation_variance: float | None = None, *,
                      train_variance: float | None = None) -> dict[str, float | None]:
    """Scores of (N,) predictions y_pred of (N,) y_true.

    mse, mae; nmse = mse / variance of y_true (ddof 0; None for a constant test part); oracle_ratio =
    mse / innovation_variance (the best achievable one-step MSE when the process is known; None when not
    given or not > 0); nmse_train = mse / train_variance when given (scale of the training part).
    """
    y_true, y_pred = _pair(y_true, y_pred, ("y_true", "y_pred"))
    errors = y_true - y_pred
    mse = float(np.mean(errors**2))
    variance = float(np.var(y_true))
    scores: dict[str, float | None] = {
        "mse": mse,
        "mae": float(np.mean(np.abs(errors))),
        "nmse": mse / variance if variance > 0 else None,
        "oracle_ratio": None,
    }
    if innovation_variance is not None and innovation_variance > 0:
        scores["oracle_ratio"] = mse / float(innovation_variance)
    if train_variance is not None:
        if not train_variance > 0:
            raise ValueError(f"train_variance must be None or > 0, got {train_variance!r}")
        scores["nmse_train"] = mse / float(train_variance)
    return scores


def diebold_mariano(e1: np.ndarray, e2: np.ndarray, h: int = 1, loss: str = "squared") -> tuple[float, float]:
    """Two-sided Diebold-Mariano test (HLN-corrected, t_{n-1}) of equal accuracy of two (N,) forecast errors.

    Returns (statistic, p_value) of statsmodels' diebold_mariano_test (see the module docstring). A constant
    loss differential has no variance to scale by: identical losses everywhere give (0.0, 1.0), a constant
    non-zero differential gives (+-inf, 0.0), the limit of the statistic as its variance goes to zero.
    """
    from statsmodels.tsa.stattools import diebold_mariano_test

    e1, e2 = _pair(e1, e2, ("e1", "e2"))
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    n = len(e1)
    if isinstance(h, bool) or not isinstance(h, int | np.integer) or not 1 <= h < n:
        raise ValueError(f"h must be an integer in [1, {n - 1}] (N = {n} errors), got {h!r}")
    d = e1**2 - e2**2 if loss == "squared" else np.abs(e1) - np.abs(e2)
    if np.all(d == d[0]):
        return (0.0, 1.0) if d[0] == 0.0 else (float(np.copysign(np.inf, d[0])), 0.0)
    # statsmodels scores forecasts of y; with y = 0 and forecasts -e the forecast errors are e themselves
    zero = np.zeros(n)
    result = diebold_mariano_test(zero, -e1, -e2, lags=int(h) - 1, criterion=_CRITERIA[loss], harvey_adj=True,
                                  horizon=int(h))
    return float(result.statistic), float(result.pvalue)

