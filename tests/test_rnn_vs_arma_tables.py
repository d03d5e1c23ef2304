"""What the comparison's closing table says, on real runs with small settings (real Hydra, statsmodels, MLflow
on a temporary SQLite store, Optuna): an Optuna search's trials are rows of their own with the objective named
and put on its scale, the DM column names the reference model actually used, a fit that every seed repeats
bit for bit is one result (no ±, no interval), and the legend names the blank interval cells per level."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from test_rnn_vs_arma import composed, run_app, store, tracking_overrides

from harness.search.study import default_storage
from harness.seed_stats import t_interval
from harness.studies import rnn_vs_arma

__all__ = ["store"]  # the module-scoped store fixture of test_rnn_vs_arma, a fresh copy for this module

SMALL_RNN = ["rnn.hidden_size=4", "rnn.steps=20", "rnn.sequence_length=16", "rnn.batch_size=4",
             "rnn.burn_in=2"]


def markdown_rows(markdown: str) -> list[dict[str, str]]:
    """The Markdown table's body rows as {header: cell} (the legend after it left out)."""
    lines = markdown.split("\n\n", 1)[0].splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]


def legend_line(markdown: str, start: str) -> str:
    (line,) = [line for line in markdown.split("\n\n", 1)[1].splitlines() if line.startswith(f"- {start}")]
    return line


def test_a_search_table_has_one_row_per_trial_and_names_its_objective_and_scale(tracking_settings, tmp_path):
    done = run_app(["-m", "hparams_search=rnn_forecaster", "hydra.sweeper.n_trials=2", "seed=[0,1]",
                    "length=300", "models.arma.max_p=1", "models.arma.max_q=1", "rnn.steps=20",
                    *tracking_overrides(tracking_settings)], tmp_path)
    assert done.returncode == 0, done.stderr
    settings = dataclasses.replace(tracking_settings, experiment="search_rnn_forecaster")
    study = optuna.load_study(study_name="rnn_forecaster", storage=default_storage(settings))
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 2  # two models, not one
    parent = (tmp_path / "sweep" / "parent_run_id").read_text().strip()
    table = rnn_vs_arma.rebuild_table(parent, settings)
    markdown = rnn_vs_arma.format_table(table)
    # the terminal gets the one-step grid, a column per trial, with the search's objective under it
    header = next(line for line in done.stdout.splitlines() if line.startswith("| test MSE"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns == ["test MSE", "lstm trial 0", "lstm trial 1"]
    assert legend_line(markdown, "Search objective") in done.stdout
    # one row per trial, each pooling its own two seeds (the probe's table had one row of "seeds 4")
    assert [(row["model"], row["variant"], row["seeds"]) for row in markdown_rows(markdown)] == [
        ("lstm", "trial 0", "2"), ("lstm", "trial 1", "2")]
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment).experiment_id
    runs = [run for run in client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
            if run.data.tags.get("kind") == "rnn"]
    for row in table.itertuples():
        trial = row.variant.removeprefix("trial ")
        mse = [run.data.metrics["mse"] for run in sorted(runs, key=lambda run: int(run.data.tags["seed"]))
               if run.data.tags["optuna.trial"] == trial]
        assert len(mse) == 2 and row.mse_mean == np.mean(mse)
    # the objective is named, with each trial's value on its own (normalised validation) scale
    line = legend_line(markdown, "Search objective")
    assert "best_val_mse" in line and "standardised by its training part's mean and standard" in line
    assert "not on the scale of the MSE column" in line
    for trial in study.trials:
        params = " ".join(f"{key}={value}" for key, value in trial.params.items())
        assert f"trial {trial.number} ({params}): {trial.value:.6g}" in line
    assert "DM columns on ARMA rows" not in markdown  # the search's grid has no ARMA row
    best = [run.data.metrics["best_val_mse"] for run in runs]
    assert min(best) > table["mse_mean"].max()  # the two scales the table now tells apart really differ


def test_variants_are_never_pooled_and_sort_naturally():
    cells = rnn_vs_arma._cells([
        {"series": "a", "window": "test", "h": 1, "model": "lstm", "variant": variant, "reference": "arma",
         "seed": seed, "mse": value}
        for variant, values in (("trial 10", (1.0, 2.0)), ("trial 9", (3.0, 5.0)))
        for seed, value in enumerate(values)])
    table = rnn_vs_arma.summarize(cells, ["a"], ["lstm"], {})
    assert list(zip(table["variant"], table["seeds"], table["mse_mean"], strict=True)) == [
        ("trial 9", 2, 4.0), ("trial 10", 2, 1.5)]


def test_intervals_of_bounded_scores_are_cut_to_their_range_and_the_legend_says_so():
    """Three seeds' MSEs with one far out: the t interval of the mean reaches below 0 and is cut there (the
    mean MSE is >= 0: the cut interval covers it whenever the uncut one does); its upper end, and MAE's
    interval that stays above 0, are the t interval's; a coverage's interval stays in [0, 1]."""
    mse, mae, cover = (1e-5, 2e-5, 1e-3), (0.5, 0.6, 0.7), (0.5, 1.0, 1.0)
    cells = rnn_vs_arma._cells([
        {"series": "logistic", "window": "test", "h": 2, "model": "elman", "variant": "", "reference": "arma",
         "seed": seed, "mse": mse[seed], "mae": mae[seed], "coverage95": cover[seed], "winkler95": mse[seed]}
        for seed in range(3)])
    table = rnn_vs_arma.summarize(cells, ["logistic"], ["elman"], {}).iloc[0]
    for metric, values, (lowest, highest) in (("mse", mse, (0, math.inf)), ("winkler95", mse, (0, math.inf)),
                                              ("coverage95", cover, (0, 1))):
        low, high = t_interval(values)
        assert low < lowest or high > highest  # the uncut interval leaves the range
        assert (table[f"{metric}_low"], table[f"{metric}_high"]) == (max(low, lowest), min(high, highest))
    assert (table["mae_low"], table["mae_high"]) == t_interval(mae)
    assert rnn_vs_arma.metric_bounds(["dm_pvalue", "dm_stat", "nmse"]) == {"dm_pvalue": (0.0, 1.0),
                                                                           "nmse": (0.0, math.inf)}
    row, = markdown_rows(rnn_vs_arma.format_table(rnn_vs_arma.summarize(cells, ["logistic"], ["elman"], {})))
    # a mean MSE of 3.4e-04 keeps its significant digits, its interval in the same format
    assert row["MSE"].startswith(f"{np.mean(mse):.3e} ± ")
    assert row["MSE 95% t interval"] == f"[0.000e+00, {t_interval(mse)[1]:.3e}]"
    legend = rnn_vs_arma.format_table(rnn_vs_arma.summarize(cells, ["logistic"], ["elman"], {}))
    assert "cut at 0 where it would reach below (the mean MSE is >= 0" in legend


@pytest.fixture(scope="module")
def sunspots(store) -> rnn_vs_arma.StudyResult:
    """The sunspot preset (reference ar9) with AIC's ARMA next to it and a linear RNN, two seeds."""
    config = rnn_vs_arma.StudyConfig.from_mapping(composed([
        "preset=sunspots", "model=[ar9,arma,linear]", "seed=[0,1]", "models.arma.max_p=2",
        "models.arma.max_q=1", *SMALL_RNN, *tracking_overrides(store)]))
    return rnn_vs_arma.run_study(config, store, echo=lambda _: None)


def test_the_dm_column_and_legend_name_the_reference_actually_used(sunspots):
    markdown = sunspots.markdown
    header = markdown.splitlines()[0]
    assert "| DM stat vs ar9 " in header and "ARMA" not in header
    assert "squared errors against ar9's (the reference)" in legend_line(markdown, "DM: ")
    assert "DM columns on ARMA rows (only RNNs are tested against ar9)" in legend_line(markdown, "Blank: ")
    rows = markdown_rows(markdown)
    assert [row["DM stat vs ar9"] != "" for row in rows] == [row["model"] == "linear" for row in rows]


def test_a_fit_every_seed_repeats_is_one_result_and_rnn_seeds_stay_a_sample(sunspots, store):
    table = sunspots.table.set_index(["window", "model"])
    cells = sunspots.cells
    for model in ("ar9", "arma"):  # real data and a fit that does not depend on the seed: one result
        row = table.loc[("test", model)]
        one = cells[(cells["model"] == model) & (cells["window"] == "test")]
        assert one["mse"].nunique() == 1 and len(one) == 2
        assert (row["seeds"], row["identical_seeds"], row["mse_mean"]) == (1, 2, one["mse"].iloc[0])
        assert math.isnan(row["mse_std"]) and math.isnan(row["mse_low"]) and math.isnan(row["mse_high"])
    linear = table.loc[("test", "linear")]
    assert (linear["seeds"], linear["identical_seeds"]) == (2, 0) and linear["mse_std"] > 0
    for row in markdown_rows(sunspots.markdown):
        if row["model"] == "linear":
            assert row["seeds"] == "2" and " ± " in row["MSE"] and row["MSE 95% t interval"].startswith("[")
        else:  # no zero-width interval, no ± 0.0000, and cells printed with their digits
            assert row["seeds"] == "1 (2 identical)" and row["MSE 95% t interval"] == ""
            assert "±" not in "".join(row.values()) and re.fullmatch(r"\d+\.\d{4}", row["MSE"])
            assert re.fullmatch(r"\d\.\d{3}", row["cover 80%"])
    assert "all k seeds gave bit-identical" in legend_line(sunspots.markdown, "Seeds `1 (k identical)`")
    # the terminal's legend counts seeds as the rows do (the probe read "mean over 1-3 seeds" as seed ids)
    assert ("the test MSE, mean over 2 seeds (ar9 on sunspots, arma on sunspots: one fit that every seed "
            "repeats bit for bit)") in sunspots.summary
    rebuilt = rnn_vs_arma.rebuild_table(sunspots.parent_run_id, store)
    assert rnn_vs_arma.format_table(rebuilt) == sunspots.markdown


def test_synthetic_seeds_are_never_taken_for_one_fit():
    config = rnn_vs_arma.StudyConfig.from_mapping(composed([
        "series=[ar2]", "model=[arma]", "seed=[0,1]", "length=200", "models.arma.max_p=1",
        "models.arma.max_q=1", "link.enabled=false", "backtest=one_step", "tracking=off"]))
    units = [rnn_vs_arma.compute_unit(config, "ar2", seed) for seed in (0, 1)]
    table = rnn_vs_arma.summarize(rnn_vs_arma.cells_frame(units), ["ar2"], ["arma"], {})
    assert list(table["seeds"]) == [2] and list(table["identical_seeds"]) == [0]
    assert "identical" not in rnn_vs_arma.format_table(table)


def test_the_nile_legend_names_exactly_the_blank_interval_cells_per_level(store):
    # 10 validation points: an RNN's 80% intervals at h = 1-3 (needs 4 residuals), none at 95% (needs 19)
    config = rnn_vs_arma.StudyConfig.from_mapping(composed([
        "series=[nile]", "model=[arma,linear]", "seed=[0]", "split.train=0.7", "split.val=0.1",
        "split.test=0.2", "models.arma.max_p=1", "models.arma.max_q=1", "link.enabled=false", *SMALL_RNN,
        *tracking_overrides(store)]))
    result = rnn_vs_arma.run_study(config, store, echo=lambda _: None)
    rows = markdown_rows(result.markdown)
    assert [row["h"] for row in rows if row["model"] == "linear"] == ["1", "2", "3"]
    assert all(row["cover 80%"] and row["Winkler 80%"] for row in rows)
    assert [row["cover 95%"] == "" for row in rows] == [row["model"] == "linear" for row in rows]
    blank = legend_line(result.markdown, "Blank: ")
    assert "; cover and Winkler at 95% for nile, where an RNN's split-conformal interval" in blank
    assert "80%" not in blank.split("cover and Winkler", 1)[1].split(", where")[0]
