"""ARMA order selection against statsforecast's: `python -m harness.benchmarks.arma_selection`.

On each of a few ARMA(2,1) series (2,000 points, phi = (0.6, -0.2), theta = 0.4, mean 1, made by
harness.forecast's series generator), the first 80% is the training part and every model is scored by
one-step-ahead forecasts of the rest with its parameters held fixed. Three searches over p, q <= 3 with a
constant, by AIC, each on the exact Gaussian likelihood:
- harness: harness.forecast.select_arma (statsmodels' ARIMA fitted at every grid point);
- statsforecast exhaustive: AutoARIMA(stepwise=False, approximation=False, max_order=6), the same 16 orders
  (each also without the mean, as R's auto.arima does: 32 fits);
- statsforecast stepwise: AutoARIMA's Hyndman-Khandakar search (stepwise=True) over the same grid.
statsforecast's choices are turned into forecasts by statsmodels' Kalman filter with statsforecast's
parameters (its "intercept" is the process mean, as statsmodels' "const"), so the forecasts differ only by
the parameters. statsforecast is never a dependency: `pip install statsforecast` adds its columns (skipped
when it is not importable). Times are CPU seconds of this process (one BLAS thread; numba's code runs in the
calling thread), medians of the searches run in turn (interleaved), the ratio the median of per-round
ratios; the load average is printed.
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.benchmarks.train_step import interleaved_seconds, load_average, median_ratio
from harness.forecast import make_series, one_step_forecasts, select_arma
from harness.runtime import pin_blas_to_one_thread

AR, MA, MEAN = [0.6, -0.2], [0.4], 1.0
MAX_P = MAX_Q = 3
TRAIN_SHARE = 0.8


def _statsforecast() -> Any:
    try:
        from statsforecast.models import AutoARIMA
    except ImportError:
        return None
    return AutoARIMA


def statsforecast_search(train: np.ndarray, stepwise: bool) -> dict[str, Any]:
    """AutoARIMA over p, q <= MAX_P, MAX_Q (no differencing, no seasonal part, a mean) by AIC on the exact
    likelihood: {"order": (p, q), "params": statsmodels-ordered [const, ar..., ma..., sigma2]}."""
    AutoARIMA = _statsforecast()
    model = AutoARIMA(d=0, D=0, max_p=MAX_P, max_q=MAX_Q, max_P=0, max_Q=0, max_order=MAX_P + MAX_Q,
                      seasonal=False, stepwise=stepwise, approximation=False, ic="aic", allowmean=True,
                      allowdrift=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(train)
    fitted = model.model_
    p, q = fitted["arma"][0], fitted["arma"][1]
    coef = fitted["coef"]
    params = [coef.get("intercept", 0.0), *(coef[f"ar{i}"] for i in range(1, p + 1)),
              *(coef[f"ma{j}"] for j in range(1, q + 1)), fitted["sigma2"]]
    return {"order": (p, q), "params": np.asarray(params, dtype=np.float64)}


def forecasts_with(order: tuple[int, int], params: np.ndarray, series: np.ndarray, start: int) -> np.ndarray:
    """One-step predictions (N - start,) of series[start:] by statsmodels' Kalman filter at fixed params."""
    from statsmodels.tsa.arima.model import ARIMA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        filtered = ARIMA(series, order=(order[0], 0, order[1]), trend="c").filter(params)
    return np.asarray(filtered.fittedvalues, dtype=np.float64)[start:]


def compare_on(series: np.ndarray, repeats: int) -> dict[str, Any]:
    """Times, chosen orders and test MSEs of the searches on one series."""
    start = int(TRAIN_SHARE * len(series))
    train, test = series[:start], series[start:]
    searches: dict[str, Callable[[], Any]] = {
        "harness": lambda: select_arma(train, criterion="aic", max_p=MAX_P, max_q=MAX_Q)}
    if _statsforecast() is not None:
        searches["statsforecast exhaustive"] = lambda: statsforecast_search(train, stepwise=False)
        searches["statsforecast stepwise"] = lambda: statsforecast_search(train, stepwise=True)
    times = dict(zip(searches, interleaved_seconds(list(searches.values()), repeats, min_time=0.0),
                     strict=True))
    selection = searches["harness"]()
    predictions = {"harness": one_step_forecasts(selection.best, series, start)}
    orders = {"harness": selection.best.order}
    for name in searches:
        if name != "harness":
            found = searches[name]()
            orders[name] = found["order"]
            predictions[name] = forecasts_with(found["order"], found["params"], series, start)
    return {
        "seconds": {name: statistics.median(t) for name, t in times.items()},
        "ratio": {name: median_ratio(times["harness"], t) for name, t in times.items() if name != "harness"},
        "order": orders,
        "test_mse": {name: float(np.mean((pred - test) ** 2)) for name, pred in predictions.items()},
        "max_forecast_difference": {name: float(np.max(np.abs(pred - predictions["harness"])))
                                    for name, pred in predictions.items() if name != "harness"},
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=3, help="series (seeds 0, 1, ...), default 3")
    parser.add_argument("--length", type=int, default=2000, help="points per series, default 2000")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per series, default 3")
    args = parser.parse_args(argv)
    pin_blas_to_one_thread()
    print(f"ARMA order selection over p, q <= {MAX_P}, AIC, exact likelihood; ARMA(2,1) series of "
          f"{args.length} points, train {TRAIN_SHARE:.0%}; {load_average()}")
    if _statsforecast() is None:
        print("statsforecast is not importable: its columns are skipped (pip install statsforecast)")
    rows = []
    for seed in range(args.series):
        series = MEAN + make_series("arma", n=args.length, seed=seed, ar=AR, ma=MA).values
        row = compare_on(series, args.repeats)
        rows.append(row)
        print(f"\nseries {seed}:")
        for name, seconds in row["seconds"].items():
            extra = "" if name == "harness" else (
                f"  harness/this {row['ratio'][name]:.2f}, max |forecast difference| "
                f"{row['max_forecast_difference'][name]:.2e}")
            print(f"  {name:<26} {seconds:7.2f} s  order {row['order'][name]}  test MSE "
                  f"{row['test_mse'][name]:.5f}{extra}")
    if len(rows) > 1 and "statsforecast exhaustive" in rows[0]["ratio"]:
        ratios = [r["ratio"]["statsforecast exhaustive"] for r in rows]
        print(f"\nharness / statsforecast exhaustive, median over series: {statistics.median(ratios):.2f} "
              f"(target <= 1.00)")
    print(load_average())
    return rows


if __name__ == "__main__":
    main()
