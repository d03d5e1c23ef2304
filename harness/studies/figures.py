"""Figures of the RNN-vs-ARMA study, built from plain arrays and the summary table (no MLflow here).

matplotlib is imported inside each function so that importing the study does not pay for it, and the Agg
backend is forced because the study runs headless (terminal, CI, joblib workers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from harness.studies.study_run import pyplot


def forecast_figure(windows: Mapping[str, Mapping[str, np.ndarray]], start: Mapping[str, int]):
    """One panel per series: the truth and every model's one-step forecasts on a window of the test part.

    windows: series name -> {"truth": (W,), <model name>: (W,) one-step predictions of the same points}.
    start: series name -> index in the full series of the window's first point (for the x axis).
    """
    plt = pyplot()
    names = list(windows)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        curves = windows[name]
        steps = start[name] + np.arange(len(curves["truth"]))
        ax.plot(steps, curves["truth"], color="black", linewidth=1.6, label="truth")
        for model, prediction in curves.items():
            if model != "truth":
                ax.plot(steps, prediction, linewidth=1.0, alpha=0.85, label=model)
        ax.set_title(f"{name}: one-step forecasts on the test part", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0, 0].legend(fontsize=7, ncol=len(windows[names[0]]), loc="upper right")
    axes[-1, 0].set_xlabel("t")
    fig.tight_layout()
    return fig


def score_figure(table: pd.DataFrame, series_order: Sequence[str], model_order: Sequence[str]):
    """Grouped bars per series and model: the oracle ratio (test MSE / innovation variance, 1 is the best a
    forecaster can do) where the series has a known innovation variance, otherwise the NMSE; error bars are
    the standard deviation over seeds.

    table: the study's summary table (one row per series and model, `<metric>_mean` / `<metric>_std` columns).
    """
    plt = pyplot()
    has_oracle = [
        s for s in series_order if table.loc[table["series"] == s, "oracle_ratio_mean"].notna().any()
    ]
    no_oracle = [s for s in series_order if s not in has_oracle]
    panels = [
        (names, metric) for names, metric in ((has_oracle, "oracle_ratio"), (no_oracle, "nmse")) if names
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
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


def link_figure(impulse: np.ndarray, pi: np.ndarray, rnn_psi: np.ndarray, arma_psi: np.ndarray, title: str):
    """Note 000's RNN-ARMA(1,1) link: the trained linear RNN laid over the fitted ARMA, lag by lag.

    Left: impulse (K,), the RNN prediction's response to a unit input at lag k = 1..K, over pi (K,), the
    fitted ARMA one-step predictor's weights. Right: rnn_psi (K,), the psi-weights that response implies,
    over arma_psi (K,), the fitted ARMA psi-weights (lags 0..K-1).
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
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
