"""ARMA order selection against statsforecast's: `python -m harness.benchmarks.arma_selection`.

On each of a few ARMA(2,1) series (2,000 points, phi = (0.6, -0.2), theta = 0.4, mean 1, made by
harness.forecast's series generator), the first 80% is the training part and every model is scored by
one-step-ahead forecasts of the rest with its parameters held fixed. Searches over p, q <= 3 with a
constant, by AIC, each on the exact Gaussian likelihood:
- harness: harness.forecast.select_arma (statsmodels' ARIMA fitted at every grid point), in this process;
- harness n_jobs=2: the same over two worker processes (warm: their start is paid before the timing);
- statsforecast exhaustive: AutoARIMA(stepwise=False, approximation=False, max_order=6), the same 16 orders
  (each also without the mean, as R's auto.arima does: 32 fits);
- statsforecast stepwise: AutoARIMA's Hyndman-Khandakar search (stepwise=True) over the same grid.
statsforecast's choices are turned into forecasts by statsmodels' Kalman filter with statsforecast's
parameters (its "intercept" is the process mean, as statsmodels' "const"), so the forecasts differ only by
the parameters. statsforecast is never a dependency: `pip install statsforecast` adds its columns (skipped
when it is not importable). Each search is timed twice: CPU seconds (this process and, on Linux, its worker
processes; one BLAS thread; numba's code runs in the calling thread), which waiting for a core does not
inflate, and wall seconds, which show what the worker processes buy; medians of the searches run in turn
(interleaved), ratios the medians of per-round ratios; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.benchmarks.train_step import load_average, median_ratio
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


def descendants_cpu_seconds() -> float:
    """User + system CPU seconds of every live descendant process of this one (Linux /proc; 0 elsewhere):
    the joblib workers, which time.process_time does not count."""
    proc = Path("/proc")
    parents, seconds = {}, {}
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, ...
        except OSError:  # the process ended meanwhile
            continue
        pid = int(stat.parent.name)
        parents[pid], seconds[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return sum(seconds[pid] for pid in found)


def interleaved_cpu_and_wall(fns: list[Callable[[], object]], repeats: int
                             ) -> tuple[list[list[float]], list[list[float]], list[object]]:
    """(CPU seconds, wall seconds) of `repeats` calls of each fn, called in turn (fn0, fn1, fn0, ...) after
    one untimed call each (imports, numba's compilation, worker start), and what each untimed call returned;
    CPU counts descendant processes."""
    results = [fn() for fn in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    wall: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, cpu_out, wall_out in zip(fns, cpu, wall, strict=True):
            children0 = descendants_cpu_seconds()  # read outside this process's timed window
            cpu0, wall0 = time.process_time(), time.perf_counter()
            fn()
            wall_out.append(time.perf_counter() - wall0)
            own = time.process_time() - cpu0
            cpu_out.append(own + descendants_cpu_seconds() - children0)
    return cpu, wall, results


def compare_on(series: np.ndarray, repeats: int) -> dict[str, Any]:
    """CPU and wall times, chosen orders and test MSEs of the searches on one series."""
    start = int(TRAIN_SHARE * len(series))
    train, test = series[:start], series[start:]
    searches: dict[str, Callable[[], Any]] = {
        "harness": lambda: select_arma(train, criterion="aic", max_p=MAX_P, max_q=MAX_Q),
        "harness n_jobs=2": lambda: select_arma(train, criterion="aic", max_p=MAX_P, max_q=MAX_Q, n_jobs=2)}
    if _statsforecast() is not None:
        searches["statsforecast exhaustive"] = lambda: statsforecast_search(train, stepwise=False)
        searches["statsforecast stepwise"] = lambda: statsforecast_search(train, stepwise=True)
    cpu, wall, results = (dict(zip(searches, values, strict=True))
                          for values in interleaved_cpu_and_wall(list(searches.values()), repeats))
    predictions, orders = {}, {}
    for name, found in results.items():  # the searches are deterministic: any call's result is theirs
        if name.startswith("harness"):
            orders[name] = found.best.order
            predictions[name] = one_step_forecasts(found.best, series, start)
        else:
            orders[name] = found["order"]
            predictions[name] = forecasts_with(found["order"], found["params"], series, start)
    references = [name for name in searches if not name.startswith("harness")]
    return {
        "cpu": {name: statistics.median(t) for name, t in cpu.items()},
        "wall": {name: statistics.median(t) for name, t in wall.items()},
        "ratio": {(ours, reference, clock): median_ratio(times[ours], times[reference])
                  for ours in ("harness", "harness n_jobs=2") for reference in references
                  for clock, times in (("cpu", cpu), ("wall", wall))},
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
        print(f"\nseries {seed}: {load_average()}")
        for name in row["cpu"]:
            extra = "" if name == "harness" else (
                f"  max |forecast difference| from harness {row['max_forecast_difference'][name]:.2e}")
            print(f"  {name:<26} CPU {row['cpu'][name]:6.2f} s  wall {row['wall'][name]:6.2f} s  order "
                  f"{row['order'][name]}  test MSE {row['test_mse'][name]:.5f}{extra}")
    if "statsforecast exhaustive" in rows[0]["order"]:
        print("\nratios, median over series (per series: median of per-round ratios; target <= 1.00 against "
              "the exhaustive grid):")
        for key in rows[0]["ratio"]:
            ours, reference, clock = key
            values = [r["ratio"][key] for r in rows]
            print(f"  {ours} / {reference}, {clock:<4}: {statistics.median(values):.2f}  "
                  f"(per series {', '.join(f'{v:.2f}' for v in values)})")
    print(load_average())
    return rows


if __name__ == "__main__":
    main()
