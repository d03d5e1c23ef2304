"""Forecasting: series, splits, ARMA and recurrent forecasters behind one interface, and their scores.

- series: synthetic series generators with their known optimum (make_series, SERIES_NAMES).
- splits: time-ordered train/validation/test splits, lagged windows, training-only normalisation.
- arma: statsmodels ARMA fits, order selection, one-step forecasts, psi- and pi-weights.
- models: the Forecaster interface (ArmaForecaster, RnnForecaster) and note 000's RNN-ARMA link.
- metrics: error measures, the Diebold-Mariano test, mean and std over seeds.

Pure NumPy / statsmodels (imported lazily): no Hydra, no MLflow.
"""

from __future__ import annotations

from harness.forecast.arma import ArmaFit, OrderSelection, fit_arma, one_step_forecasts, select_arma
from harness.forecast.metrics import diebold_mariano, evaluate_forecast
from harness.forecast.models import (
    ArmaForecaster,
    Forecaster,
    LinearPredictorFit,
    RnnForecaster,
    fit_linear_recurrent_predictor,
)
from harness.forecast.series import ARMA_PRESETS, SERIES_NAMES, Series, make_series, series_parameters
from harness.forecast.splits import Normalizer, Split, make_windows, split_series

__all__ = [
    "ARMA_PRESETS",
    "SERIES_NAMES",
    "ArmaFit",
    "ArmaForecaster",
    "Forecaster",
    "LinearPredictorFit",
    "Normalizer",
    "OrderSelection",
    "RnnForecaster",
    "Series",
    "Split",
    "diebold_mariano",
    "evaluate_forecast",
    "fit_arma",
    "fit_linear_recurrent_predictor",
    "make_series",
    "make_windows",
    "one_step_forecasts",
    "select_arma",
    "series_parameters",
    "split_series",
]
