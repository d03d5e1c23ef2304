"""Figures of the RNN-vs-ARMA study, built from plain arrays and the summary table (no MLflow here).

Built with matplotlib's object API (study_run.new_figure: no pyplot), which loads on the first figure, so that
importing the study does not pay for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.studies.study_run import new_figure


@dataclass(frozen=True)
class ForecastPanel:
    """One series in the forecast figure.

    x (W,): labels of the window's points (positions, years or dates); truth (W,): their values.
    forecasts: model -> (labels (V,), one-step forecasts (V,)) of the window's forecast points (every point,
    or the backtest's origins). bands: model -> level -> (lower (V,), upper (V,)) one-step intervals.
    """

    x: np.ndarray
    truth: np.ndarray
    forecasts: Mapping[str, tuple[np.ndarray, np.ndarray]]
    bands: Mapping[str, Mapping[float, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)


def forecast_figure(panels: Mapping[str, ForecastPanel]):
    """One panel per series: the truth, every model's one-step forecasts on a window of the test part and
    their prediction intervals as shaded bands (lighter for the wider level)."""
    names = list(panels)
    fig = new_figure((10, 2.4 * len(names)))
    axes = fig.subplots(len(names), 1, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        panel = panels[name]
        ax.plot(panel.x, panel.truth, color="black", linewidth=1.6, label="truth")
        for model, (x, prediction) in panel.forecasts.items():
            (line,) = ax.plot(x, prediction, linewidth=1.0, alpha=0.85, label=model)
            levels = sorted(panel.bands.get(model, {}), reverse=True)
            for k, level in enumerate(levels):
                lower, upper = panel.bands[model][level]
                ax.fill_between(x, lower, upper, color=line.get_color(), alpha=0.08 + 0.08 * k, linewidth=0,
                                label=f"{model} {100 * level:g}%")
        ax.set_title(f"{name}: one-step forecasts and prediction intervals on the test part", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0, 0].legend(fontsize=6, ncol=4, loc="upper right")
    axes[-1, 0].set_xlabel("t")
    fig.tight_layout()
    return fig


def score_figure(table: pd.DataFrame, series_order: Sequence[str], model_order: Sequence[str]):
    """Grouped bars per series and model: the oracle ratio (test MSE / innovation variance, 1 is the best a
    forecaster can do) where the series has a known innovation variance, otherwise the NMSE; error bars are
    the standard deviation over seeds.

    table: the study's summary table (one row per series and model, `<metric>_mean` / `<metric>_std` columns).
    """
    has_oracle = [
        s for s in series_order if table.loc[table["series"] == s, "oracle_ratio_mean"].notna().any()
    ]
    no_oracle = [s for s in series_order if s not in has_oracle]
    panels = [
        (names, metric) for names, metric in ((has_oracle, "oracle_ratio"), (no_oracle, "nmse")) if names
    ]
    fig = new_figure((5.5 * len(panels), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)
    width = 0.8 / len(model_order)
    for ax, (names, metric) in zip(axes[0], panels, strict=True):
        x = np.arange(len(names))
        for k, model in enumerate(model_order):
            rows = table[table["model"] == model].set_index("series").reindex(names)
            ax.bar(
                x + (k - (len(model_order) - 1) / 2) * width,
                rows[f"{metric}_mean"],
                width,
                yerr=rows[f"{metric}_std"].fillna(0.0),
                capsize=2,
                label=model,
            )
        if metric == "oracle_ratio":
            ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        else:
            ax.set_yscale("log")  # NMSE spans orders of magnitude (chaotic maps learned almost exactly)
        ax.set_xticks(x, names, fontsize=8)
        ax.set_ylabel(
            "test MSE / innovation variance" if metric == "oracle_ratio" else "test NMSE", fontsize=8
        )
        ax.set_title("oracle ratio" if metric == "oracle_ratio" else "NMSE (no known oracle)", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def horizon_figure(table: pd.DataFrame, series_order: Sequence[str], model_order: Sequence[str]):
    """One panel per series: test MSE against the horizon h for every model (mean over seeds, std as error
    bars), with the optimal h-step MSE dashed where the series knows it (oracle ratio = MSE / optimum).

    table: summary rows of the whole test part (`series`, `model`, `h`, `mse_mean`, `mse_std`, ...).
    """
    fig = new_figure((3.6 * len(series_order), 3.2))
    axes = fig.subplots(1, len(series_order), squeeze=False)
    for ax, series in zip(axes[0], series_order, strict=True):
        for model in model_order:
            rows = table[(table["series"] == series) & (table["model"] == model)].sort_values("h")
            ax.errorbar(rows["h"], rows["mse_mean"], yerr=rows["mse_std"].fillna(0.0), marker="o",
                        markersize=3, capsize=2, linewidth=1.0, label=model)
            known = rows["oracle_ratio_mean"].notna()
            if model == model_order[0] and known.any():
                optimum = rows.loc[known, "mse_mean"] / rows.loc[known, "oracle_ratio_mean"]
                ax.plot(rows.loc[known, "h"], optimum, color="black", linestyle="--", linewidth=0.8,
                        label="optimum")
        ax.set_title(series, fontsize=9)
        ax.set_xlabel("horizon h", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0, 0].set_ylabel("test MSE", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def link_figure(impulse: np.ndarray, pi: np.ndarray, rnn_psi: np.ndarray, arma_psi: np.ndarray, title: str):
    """Note 000's RNN-ARMA(1,1) link: the trained linear RNN laid over the fitted ARMA, lag by lag.

    Left: impulse (K,), the RNN prediction's response to a unit input at lag k = 1..K, over pi (K,), the
    fitted ARMA one-step predictor's weights. Right: rnn_psi (K,), the psi-weights that response implies,
    over arma_psi (K,), the fitted ARMA psi-weights (lags 0..K-1).
    """
    fig = new_figure((10, 3.6))
    axes = fig.subplots(1, 2)
    panels = (
        (axes[0], np.arange(1, len(impulse) + 1), impulse, pi, "predictor weights (response to x_{t-k})"),
        (axes[1], np.arange(len(rnn_psi)), rnn_psi, arma_psi, "psi-weights (response to e_{t-k})"),
    )
    for ax, lags, rnn, arma, label in panels:
        ax.plot(lags, arma, "o-", color="black", linewidth=1.0, label="fitted ARMA(1,1)")
        ax.plot(
            lags, rnn, "x--", color="tab:red", linewidth=1.0, label="linear RNN (1 unit, output feedback)"
        )
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set_xlabel("lag k")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"RNN-ARMA link, {title}", fontsize=10)
    fig.tight_layout()
    return fig
