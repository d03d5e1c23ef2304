"""Scores of one-step-ahead forecasts: error measures, the Diebold-Mariano test, mean and std over seeds.

Diebold-Mariano (Diebold & Mariano 1995) with the small-sample correction of Harvey, Leybourne & Newbold
(1997): for loss differentials d_t = L(e1_t) - L(e2_t), t = 1..n, and forecast horizon h,

    DM   = mean(d) / sqrt(V / n),   V = gamma_0 + 2 sum_{k=1}^{h-1} gamma_k   (gamma_k: autocovariance, /n)
    DM*  = DM * sqrt((n + 1 - 2h + h(h - 1) / n) / n)

and DM* is compared with Student's t with n - 1 degrees of freedom, two-sided. DM* < 0 means forecast 1 has
the lower expected loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

LOSSES = ("squared", "absolute")


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

    Returns (statistic, p_value). Identical losses everywhere give (0.0, 1.0); a constant non-zero loss
    differential (zero variance) gives (+-inf, 0.0).
    """
    from scipy import stats

    e1, e2 = _pair(e1, e2, ("e1", "e2"))
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    n = len(e1)
    if isinstance(h, bool) or not isinstance(h, int | np.integer) or not 1 <= h < n:
        raise ValueError(f"h must be an integer in [1, {n - 1}] (N = {n} errors), got {h!r}")
    d = e1**2 - e2**2 if loss == "squared" else np.abs(e1) - np.abs(e2)
    mean = float(np.mean(d))
    centred = d - mean
    long_run = float(centred @ centred) / n
    for k in range(1, h):
        long_run += 2.0 * float(centred[k:] @ centred[:-k]) / n
    if long_run <= 0.0 or not np.isfinite(long_run):
        if mean == 0.0:
            return 0.0, 1.0
        return float(np.copysign(np.inf, mean)), 0.0
    statistic = mean / np.sqrt(long_run / n) * np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    p_value = 2.0 * float(stats.t.sf(abs(statistic), df=n - 1))
    return float(statistic), p_value


def aggregate_over_seeds(rows: Iterable[Mapping[str, float | None]]) -> dict[str, dict[str, float]]:
    """Mean and sample std (ddof 1; 0 for one row) over rows of each numeric key, ignoring None / NaN.

    Returns key -> {"mean", "std", "n"}; keys never numeric in any row are left out.
    """
    values: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            numeric = isinstance(value, int | float | np.number) and not isinstance(value, bool)
            if numeric and np.isfinite(value):
                values.setdefault(key, []).append(float(value))
    return {
        key: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
        for key, v in values.items()
    }
