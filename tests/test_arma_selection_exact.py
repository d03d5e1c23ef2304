"""select_arma / fit_arma against plain statsmodels: every grid point fitted by `ARIMA(...).fit()` one after
another is the reference, and the harness must give the same bits (trials' criteria, convergence flags and
warnings, the chosen order, its params, standard errors, log-likelihoods and forecasts), whatever n_jobs.

The lean tests run in the default suite; the broad one (many seeds, orders, lengths and the main job's series,
with and without the unconstrained fits) is marked slow.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from harness.forecast.arma import fit_arma, select_arma
from harness.forecast.series import make_series


def plain_fit(train: np.ndarray, order: tuple[int, int], constrained: bool = True,
              maxiter: int | None = None):
    """(results, converged, warning texts) of statsmodels' ARIMA fitted the ordinary way."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.arima.model import ARIMA

    kwargs = {} if maxiter is None else {"method_kwargs": {"maxiter": maxiter}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = ARIMA(train, order=(order[0], 0, order[1]), trend="c", enforce_stationarity=constrained,
                        enforce_invertibility=constrained).fit(**kwargs)
    converged = bool(results.mle_retvals["converged"]) and not any(
        issubclass(w.category, ConvergenceWarning) for w in caught)
    texts = tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    return results, converged, texts


def reference_selection(train: np.ndarray, max_p: int, max_q: int, unconstrained: bool,
                        criterion: str = "aic"):
    """[(order, constrained, aic, bic, converged, warnings)] of the grid and the chosen (order, constrained),
    every point fitted the ordinary way, criteria on t >= max(max_p, max_q + 1) with unconstrained fits."""
    burn = max(max_p, max_q + 1) if unconstrained else 0
    rows, best, best_score = [], None, np.inf
    for constrained in (True, False) if unconstrained else (True,):
        for p in range(max_p + 1):
            for q in range(max_q + 1):
                results, converged, texts = plain_fit(train, (p, q), constrained)
                loglike = float(np.sum(results.llf_obs[burn:]))
                k = len(results.params)
                aic = float(results.aic) if burn == 0 else -2 * loglike + 2 * k
                bic = (float(results.bic) if burn == 0
                       else -2 * loglike + k * float(np.log(results.nobs - burn)))
                rows.append(((p, q), constrained, aic, bic, converged, texts))
                score = aic if criterion == "aic" else bic
                if converged and score < best_score:
                    best, best_score = ((p, q), constrained), score
    return rows, best


def assert_same_fit(fit, results, converged: bool, texts: tuple[str, ...]) -> None:
    """fit (an ArmaFit) holds exactly what the plain statsmodels results hold."""
    names = list(results.param_names)
    assert list(fit.params) == names and list(fit.bse) == names
    np.testing.assert_array_equal(list(fit.params.values()), results.params)
    np.testing.assert_array_equal(list(fit.bse.values()), results.bse)
    np.testing.assert_array_equal(fit.results.cov_params(), results.cov_params())
    np.testing.assert_array_equal(fit.results.llf_obs, results.llf_obs)
    np.testing.assert_array_equal(fit.results.fittedvalues, results.fittedvalues)
    assert (fit.loglike, fit.aic, fit.bic, fit.nobs) == (results.llf, results.aic, results.bic, results.nobs)
    assert fit.converged == converged and fit.warnings == texts
    assert fit.results.mle_retvals.keys() == results.mle_retvals.keys()
    np.testing.assert_array_equal(fit.results.mle_retvals["gopt"], results.mle_retvals["gopt"])
    series = np.r_[fit.results.model.endog[:, 0], np.linspace(-1.0, 1.0, 40)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(fit.results.apply(series).fittedvalues,
                                      results.apply(series).fittedvalues)
        np.testing.assert_array_equal(fit.results.forecast(7), results.forecast(7))


def assert_same_selection(train: np.ndarray, max_p: int, max_q: int, unconstrained: bool, n_jobs: int = 1,
                          criterion: str = "aic") -> None:
    selection = select_arma(train, max_p=max_p, max_q=max_q, unconstrained=unconstrained, n_jobs=n_jobs,
                            criterion=criterion)
    rows, best = reference_selection(train, max_p, max_q, unconstrained, criterion)
    got = [(t.order, t.constrained, t.aic, t.bic, t.converged, t.warnings) for t in selection.trials]
    assert got == rows
    assert (selection.best.order, selection.best.constrained) == best
    assert_same_fit(selection.best, *plain_fit(train, *best))


def arma21(n: int, seed: int) -> np.ndarray:
    return 1.0 + make_series("arma", n=n, seed=seed, ar=[0.6, -0.2], ma=[0.4]).values


@pytest.mark.parametrize("order", [(0, 0), (2, 1), (1, 3)])
def test_fit_arma_is_statsmodels_fit_bit_for_bit(order: tuple[int, int]):
    train = arma21(400, seed=3)
    fit = fit_arma(train, order)
    assert_same_fit(fit, *plain_fit(train, order))
    restored = pickle.loads(pickle.dumps(fit.results))  # the results pickle (the pyfunc model carries them)
    np.testing.assert_array_equal(restored.params, fit.results.params)
    assert type(restored.model).__name__ == "ARIMA"


def test_fit_arma_keeps_a_non_converged_fit_as_statsmodels_leaves_it():
    train = arma21(400, seed=4)
    fit = fit_arma(train, (2, 2), maxiter=2)
    assert not fit.converged
    assert_same_fit(fit, *plain_fit(train, (2, 2), maxiter=2))


def test_order_selection_is_the_plain_grid_bit_for_bit():
    assert_same_selection(arma21(300, seed=0), 2, 2, unconstrained=False)


def test_order_selection_with_unconstrained_fits_on_the_sine_is_the_plain_grid_bit_for_bit():
    sine = make_series("sine", n=300, seed=1).values
    assert_same_selection(sine, 1, 2, unconstrained=True, criterion="bic")


def test_order_selection_over_two_processes_gives_the_same_bits():
    train = arma21(300, seed=2)
    one, two = (select_arma(train, max_p=1, max_q=2, n_jobs=n) for n in (1, 2))
    assert one.trials == two.trials
    assert one.best.params == two.best.params and one.best.bse == two.best.bse
    np.testing.assert_array_equal(one.best.results.fittedvalues, two.best.results.fittedvalues)


@pytest.mark.parametrize("n_jobs", [0, -1, 1.5, True])
def test_order_selection_refuses_a_bad_n_jobs(n_jobs):
    with pytest.raises(ValueError, match="n_jobs must be a positive integer"):
        select_arma(arma21(300, seed=0), n_jobs=n_jobs)


# The main job's series (conf/comparison/rnn_vs_arma.yaml: 1500 points, training part 60%, unconstrained
# fits too) and ARMA series of several orders and lengths.
MAIN_JOB_SERIES = ["ar2", "arma11", "arma22", "setar", "logistic", "narma10", "sine"]
ARMA_SERIES = [([0.6, -0.2], [0.4]), ([0.9], []), ([], [0.8, 0.3]), ([0.5, 0.2, -0.3], [-0.5]),
               ([-0.7], [0.7])]


@pytest.mark.slow
@pytest.mark.parametrize("name", MAIN_JOB_SERIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_order_selection_is_the_plain_grid_on_the_main_jobs_series(name: str, seed: int):
    assert_same_selection(make_series(name, n=1500, seed=seed).values[:900], 3, 3, unconstrained=True)


@pytest.mark.slow
@pytest.mark.parametrize("coefficients", ARMA_SERIES)
@pytest.mark.parametrize("n", [120, 600, 2000])
@pytest.mark.parametrize("seed", range(4))
def test_order_selection_is_the_plain_grid_on_arma_series(coefficients, n: int, seed: int):
    ar, ma = coefficients
    values = make_series("arma", n=n, seed=seed, ar=ar, ma=ma).values
    assert_same_selection(values[: int(0.8 * n)], 3, 3, unconstrained=seed % 2 == 1)
