"""The comparison on real and CSV series with a rolling-origin backtest, horizons and intervals: per-horizon
metrics on the children, dataset name and source, figures on the parent, rebuild from the store, a `-m`
sweep, and the classic sunspot preset against statsmodels' own AR(9)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from statsmodels.tsa.arima.model import ARIMA
from test_rnn_vs_arma import cell_runs, composed, store, swept_table, tracking_overrides

from harness.forecast.datasets import real_series
from harness.studies import rnn_vs_arma

REAL = [
    "series=[sunspots,csv]",
    "model=[arma,linear]",
    "seed=[0]",
    "models.arma.max_p=2",
    "models.arma.max_q=1",
    "rnn.hidden_size=4",
    "rnn.steps=20",
    "rnn.sequence_length=16",
    "rnn.batch_size=4",
    "rnn.burn_in=2",
    "link.enabled=false",
    "figure_window=20",
    "backtest.horizon=2",
    "backtest.step=2",
    "backtest.refit_every=10",
]


@pytest.fixture(scope="module")
def nile_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    nile = real_series("nile")
    file = tmp_path_factory.mktemp("data") / "nile.csv"
    pd.DataFrame({"year": [f"{y}-01-01" for y in nile.index], "flow": nile.values}).to_csv(file, index=False)
    return file


__all__ = ["store"]  # the module-scoped store fixture of test_rnn_vs_arma, a fresh copy for this module


def real_overrides(nile_csv: Path) -> list[str]:
    return [*REAL, f"csv.path={nile_csv}", "csv.value=flow", "csv.date=year"]


@pytest.fixture(scope="module")
def study(store, nile_csv) -> rnn_vs_arma.StudyResult:
    config = rnn_vs_arma.StudyConfig.from_mapping(
        composed([*real_overrides(nile_csv), *tracking_overrides(store)])
    )
    return rnn_vs_arma.run_study(config, store, echo=lambda _: None)


def test_children_hold_per_horizon_scores_intervals_and_the_data_source(study, store, nile_csv):
    client = MlflowClient(store.tracking_uri)
    runs = cell_runs(store, study.parent_run_id)
    assert sorted((r.data.tags["series"], r.data.tags["model"]) for r in runs) == [
        ("csv", "arma"),
        ("csv", "linear"),
        ("sunspots", "arma"),
        ("sunspots", "linear"),
    ]
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        for h in ("", ".h2"):
            assert {
                f"{s}{h}"
                for s in ("mse", "mae", "nmse", "coverage80", "winkler80", "coverage95", "winkler95")
            } <= set(metrics)
        assert "oracle_ratio" not in metrics  # real data: no known optimum
        test_points = {"sunspots": 309 - 247, "csv": 100 - 80}[tags["series"]]
        assert metrics["refits"] == math.ceil(
            math.ceil(test_points / 2) / 10
        )  # origins 2 apart, refit every 10
        assert tags["interval"] == ("model" if tags["kind"] == "arma" else "conformal")
        if tags["kind"] == "rnn":
            assert {"dm_stat", "dm_pvalue", "dm_stat.h2", "dm_pvalue.h2"} <= set(metrics)
        [dataset] = run.inputs.dataset_inputs
        assert dataset.dataset.name == tags["series"] and dataset.dataset.source_type == "local"
        source = str(nile_csv.resolve()) if tags["series"] == "csv" else real_series("sunspots").source
        assert source in dataset.dataset.source
        forecasts = pd.read_csv(client.download_artifacts(run.info.run_id, "forecasts.csv"))
        assert set(forecasts["h"]) == {1, 2} and {"lower80", "upper95"} <= set(forecasts.columns)
        one_step = forecasts[forecasts["h"] == 1]
        assert metrics["mse"] == pytest.approx(
            np.mean((one_step["truth"] - one_step["forecast"]) ** 2), rel=1e-12
        )
    parent_artifacts = {a.path for a in client.list_artifacts(study.parent_run_id)}
    assert {
        "table.md",
        "table.csv",
        "cells.csv",
        "forecast_vs_truth.png",
        "mse_by_horizon.png",
    } <= parent_artifacts
    assert "Blank: DM columns on ARMA rows (only RNNs are tested against arma)" in study.markdown
    assert "oracle ratio for" in study.markdown
    assert "| h " in study.markdown.replace("|   h", "| h ")


def test_legend_names_the_series_whose_conformal_intervals_are_blank():
    # nile's 10 validation points: 80% intervals up to h = 7, no 95% interval at any horizon
    table = pd.DataFrame({"series": ["nile", "nile", "ar2"], "h": [1, 8, 8], "seeds": [3, 3, 3],
                          "variant": "", "reference": "arma", "identical_seeds": 0, "dm_pvalue_mean": 0.5,
                          "oracle_ratio_mean": [np.nan, np.nan, 0.9], "coverage80_mean": [0.8, np.nan, 0.8],
                          "coverage95_mean": [np.nan, np.nan, 0.95]})
    assert ("; cover and Winkler at 80% for nile at h = 8 and at 95% for nile, where an RNN's "
            "split-conformal interval has too few calibration residuals (it needs 4 at 80%, 19 at 95%; a "
            "validation part of n points gives n - h + 1 at horizon h, none without a validation part).") in \
        rnn_vs_arma.table_legend(table)
    table["coverage80_mean"], table["coverage95_mean"] = 0.8, 0.95
    assert "cover and Winkler" not in rnn_vs_arma.table_legend(table)


def test_legend_names_exactly_the_blank_oracle_cells():
    # the quick start's case: setar and sine have a one-step optimum only, narma10 none, ar2 every horizon
    table = pd.DataFrame({"series": ["ar2"] * 3 + ["setar"] * 3 + ["sine"] * 3 + ["narma10"] * 3,
                          "h": [1, 2, 3] * 4, "seeds": 3, "variant": "", "reference": "arma",
                          "identical_seeds": 0, "dm_pvalue_mean": 0.5,
                          "oracle_ratio_mean": [1.0, 1.1, 1.2, 1.157, np.nan, np.nan, 1.01, np.nan, np.nan,
                                                np.nan, np.nan, np.nan],
                          "coverage80_mean": 0.8})
    legend = rnn_vs_arma.table_legend(table)
    assert "oracle ratio for narma10, setar at h = 2-3, sine at h = 2-3 (no known optimum, or an " in legend
    table["oracle_ratio_mean"] = 1.0
    assert "oracle ratio" not in rnn_vs_arma.table_legend(table).split("Blank:")[1]


def test_blank_where_gives_horizons_as_runs():
    table = pd.DataFrame({"series": ["a"] * 5 + ["b"] * 2, "h": [1, 2, 3, 5, 6, 1, 2]})
    assert rnn_vs_arma.blank_where(table, table["h"] > 1) == "a at h = 2-3, 5-6, b at h = 2"
    assert rnn_vs_arma.blank_where(table, table["series"] == "b") == "b"
    assert rnn_vs_arma.blank_where(table, table["h"] > 9) == ""


def test_rebuilt_table_equals_the_study_table(study, store):
    rebuilt = rnn_vs_arma.rebuild_table(study.parent_run_id, store)
    pd.testing.assert_frame_equal(rebuilt, study.table, check_exact=True)
    assert list(zip(rebuilt["series"], rebuilt["h"], rebuilt["model"], strict=True)) == [
        (s, h, m) for s in ("sunspots", "csv") for h in (1, 2) for m in ("arma", "linear")
    ]


# 34 s at load 7-11; test_rnn_vs_arma's joblib sweep against the sequential run stays in the default run
@pytest.mark.slow
def test_sweep_on_real_and_csv_series_gives_the_sequential_numbers(study, store, nile_csv, tmp_path):
    keys = ["series", "window", "h", "model"]
    grid = ["series=sunspots,csv", "model=arma,linear"]
    swept = swept_table(grid, real_overrides(nile_csv), store, tmp_path).set_index(keys)
    sequential = study.table.set_index(keys).loc[swept.index]
    assert len(swept) == 8
    pd.testing.assert_frame_equal(swept, sequential, check_exact=True)


def test_sunspot_preset_is_the_classic_split_with_statsmodels_ar9():
    cfg = composed(["preset=sunspots", "model=[ar9]", "seed=[0]", "tracking=off"])
    config = rnn_vs_arma.StudyConfig.from_mapping(cfg)
    assert config.reference == "ar9" and config.plan.horizon == 1
    rnn_vs_arma.validate(config)
    unit = rnn_vs_arma.compute_unit(config, "sunspots", 0)
    [cell] = unit.cells
    sunspots = real_series("sunspots")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ARIMA(sunspots.values[:221], order=(9, 0, 0), trend="c").fit()
        predicted = fitted.apply(sunspots.values[:288], refit=False).fittedvalues[221:]
    errors = sunspots.values[221:288] - predicted
    assert (unit.test_start, len(unit.values)) == (221, 288) and cell.metrics["p"] == 9
    assert cell.metrics["mse"] == pytest.approx(np.mean(errors**2), rel=1e-9)
    assert cell.metrics["mse.h1.1921-1955"] == pytest.approx(np.mean(errors[:35] ** 2), rel=1e-9)
    assert cell.metrics["mae.h1.1921-1955"] == pytest.approx(np.mean(np.abs(errors[:35])), rel=1e-9)
    table = rnn_vs_arma.summarize(rnn_vs_arma.cells_frame([unit]), ["sunspots"], ["ar9"],
                                  rnn_vs_arma.cell_errors([unit]))
    assert list(table["window"]) == ["test", "1921-1955"]


@pytest.mark.parametrize("preset", ["sunspots", "full_backtest"])
def test_every_preset_passes_the_up_front_checks(preset):
    _, config = rnn_vs_arma.check(composed([f"preset={preset}", "tracking=off"]))
    assert config.plan.horizon == {"sunspots": 1, "full_backtest": 10}[preset]


def test_memory_check_uses_the_length_of_a_csv_series(tmp_path, tracking_settings):
    """A CSV series is checked by its own length (config.length is only the generated series' length): a
    hidden size that fits at length=100 but not at the CSV's 500,000 points is refused in one line naming
    the CSV, before any run."""
    from harness.config import available_memory

    points, file = 500_000, tmp_path / "long.csv"
    pd.DataFrame({"y": np.random.default_rng(0).normal(size=points)}).to_csv(file, index=False)
    overrides = ["series=[csv]", "model=[arma,linear]", "seed=[0,1]", "n_jobs=2", "length=100",
                 "link.enabled=false", f"csv.path={file}", "csv.value=y",
                 *tracking_overrides(tracking_settings)]

    def needed(hidden: int, n: int) -> int:
        config = rnn_vs_arma.StudyConfig.from_mapping(composed([*overrides, f"rnn.hidden_size={hidden}"]))
        return 2 * rnn_vs_arma._unit_bytes(config, n)

    # The smallest hidden size that needs twice the memory available now at the CSV's length: the margin
    # keeps the refusal certain when memory frees up before the study checks it.
    available = available_memory()
    low, high = 1, 1 << 20
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if needed(middle, points) <= 2 * available else (low, middle)
    assert needed(low, 100) < available / 10
    with pytest.raises(rnn_vs_arma.StudyInputError,
                       match=rf"^series 'csv' \({points} points\) with models .* needs at least") as raised:
        rnn_vs_arma.main(composed([*overrides, f"rnn.hidden_size={low}"]))
    assert "\n" not in str(raised.value)
    client = MlflowClient(tracking_settings.tracking_uri)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
