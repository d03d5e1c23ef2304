"""The RNN-vs-ARMA study end to end on tiny settings: real Hydra composition, real statsmodels, real MLflow on
a temporary SQLite store (copied from the session's migrated template), the real app as a subprocess for the
command-line paths (`-m` sweep with the joblib launcher, rebuild=, bad input)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from logged_models import the_logged_model
from mlflow import MlflowClient
from omegaconf import OmegaConf

from harness.environment import blas_description
from harness.forecast.metrics import diebold_mariano
from harness.forecast.series import make_series
from harness.studies import rnn_vs_arma
from harness.tasks import fingerprint
from harness.tracking import TrackingSettings
from harness.tracking.experiment_notes import KIND, KIND_TAG
from harness.tracking.loggers import MAX_TAG_LENGTH
from harness.ui import ui_hint

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "experiments" / "rnn_vs_arma.py"
CONF = ROOT / "conf" / "comparison"

# Two series with a known oracle, the three model kinds the study mixes (ARMA, linear RNN, LSTM), two seeds;
# ARMA orders up to (1, 1) keep statsmodels fast and let the parts be short.
TINY = [
    "series=[ar2,setar]",
    "model=[arma,linear,lstm]",
    "seed=[0,1]",
    "length=300",
    "models.arma.max_p=1",
    "models.arma.max_q=1",
    "rnn.hidden_size=4",
    "rnn.steps=20",
    "rnn.sequence_length=32",
    "rnn.batch_size=4",
    "link.steps=60",
    "figure_window=30",
    "backtest=one_step",
]


def tracking_overrides(settings: TrackingSettings) -> list[str]:
    return [f"tracking.uri={settings.uri}", f"tracking.artifact_root={settings.artifact_root}"]


def composed(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="rnn_vs_arma", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def run_app(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    hydra_dirs = [f"hydra.run.dir={tmp / 'run'}", f"hydra.sweep.dir={tmp / 'sweep'}"]
    return subprocess.run(
        [sys.executable, str(APP), *args, *hydra_dirs], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def cell_runs(settings: TrackingSettings, parent_run_id: str) -> list:
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name("rnn_vs_arma")
    return client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")


def swept_table(grid: list[str], overrides: list[str], store: TrackingSettings, tmp_path: Path
                ) -> pd.DataFrame:
    """The table rebuilt from the parent of a `-m` sweep over grid (joblib launcher), other overrides kept."""
    kept = [o for o in overrides if not o.startswith(("series=", "model="))]
    done = run_app(["-m", *grid, "hydra/launcher=joblib", *kept, *tracking_overrides(store)], tmp_path)
    assert done.returncode == 0, done.stderr
    sweep_parent = (tmp_path / "sweep" / "parent_run_id").read_text().strip()
    experiment = MlflowClient(store.tracking_uri).get_run(sweep_parent).info.experiment_id
    # the summary's table ends with the sweep parent's page in the UI
    assert (f"in the MLflow UI: http://127.0.0.1:5000/#/experiments/{experiment}/runs/{sweep_parent}"
            f"?workflowType=machine_learning  (start it with: python -m harness.ui --uri "
            f"{store.tracking_uri})" in done.stdout.splitlines()), done.stdout
    return rnn_vs_arma.rebuild_table(sweep_parent, store)


@pytest.fixture(scope="module")
def store(template_store: Path, tmp_path_factory: pytest.TempPathFactory) -> TrackingSettings:
    root = tmp_path_factory.mktemp("rnn_vs_arma") / "mlruns"
    root.mkdir()
    shutil.copyfile(template_store, root / "mlflow.db")
    return TrackingSettings(
        mode="local",
        uri=f"sqlite:///{root / 'mlflow.db'}",
        experiment="rnn_vs_arma",
        artifact_root=str(root / "artifacts"),
    )


@pytest.fixture(scope="module")
def study(store: TrackingSettings) -> tuple[rnn_vs_arma.StudyResult, list[str]]:
    """The tiny study run once, sequentially in two worker processes, with what it printed."""
    printed: list[str] = []
    config = rnn_vs_arma.StudyConfig.from_mapping(composed([*TINY, "n_jobs=2", *tracking_overrides(store)]))
    return rnn_vs_arma.run_study(config, store, echo=printed.append), printed


def test_study_logs_a_parent_with_one_child_per_cell(study, store):
    result, printed = study
    client = MlflowClient(store.tracking_uri)
    children = cell_runs(store, result.parent_run_id)
    cells = [run for run in children if run.data.tags["kind"] in ("arma", "rnn")]
    assert sorted(
        (r.data.tags["series"], r.data.tags["model"], r.data.tags["seed"]) for r in cells
    ) == sorted(
        (s, m, str(seed)) for s in ("ar2", "setar") for m in ("arma", "linear", "lstm") for seed in (0, 1)
    )
    assert client.get_run(result.parent_run_id).info.run_name == "rnn_vs_arma-2x3x2 ar2,setar"
    # every run shows where it ran, as a training run does: the parent's environment tags on each child
    environment = {key: value for key, value in client.get_run(result.parent_run_id).data.tags.items()
                   if key.startswith("env.") or key == "git.dirty"}
    assert {"env.python", "env.numpy", "env.statsmodels", "env.blas", "env.platform", "git.dirty"} <= set(
        environment)
    assert environment["env.blas"] == blas_description()
    for run in cells:
        tags, metrics = run.data.tags, run.data.metrics
        assert {key: tags.get(key) for key in environment} == environment
        expected = fingerprint(make_series(tags["series"], n=300, seed=int(tags["seed"])).values)
        assert tags["dataset_fingerprint"] == expected
        assert [{t.key: t.value for t in d.tags}["fingerprint"] for d in run.inputs.dataset_inputs] == [
            expected
        ]
        assert {"mse", "mae", "nmse", "oracle_ratio"} <= set(metrics)
        assert metrics["oracle_ratio"] == pytest.approx(
            metrics["mse"]
        )  # both series have innovation variance 1
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        note = tags["mlflow.note.content"]  # the run page's description
        assert note.startswith(f"**{tags['series']}**, seed {tags['seed']}: **{tags['model']}** (")
        assert f"MSE {metrics['mse']:.4g}; oracle ratio {metrics['oracle_ratio']:.4g}" in note
        assert f"80% interval coverage {metrics['coverage80']:.3g}" in note
        if tags["kind"] == "arma":
            assert f"(ARMA{tags['order']} chosen by AIC)" in note and "Diebold-Mariano" not in note
            p, q = int(metrics["p"]), int(metrics["q"])
            assert tags["order"] == f"({p},{q})" and tags["converged"] in ("true", "false")
            assert (
                "convergence_warnings" in metrics and "coef.const" in metrics and "stderr.sigma2" in metrics
            )
            assert metrics["fit_warnings"] >= metrics["convergence_warnings"] and "constrained" in metrics
            fit = json.loads(Path(client.download_artifacts(run.info.run_id, "arma_fit.json")).read_text())
            assert fit["order"] == [p, q] and fit["psi"][0] == 1.0 and set(fit["bse"]) == set(fit["params"])
        else:
            assert 0.0 <= metrics["dm_pvalue"] <= 1.0 and np.isfinite(metrics["dm_stat"])
            assert f"Diebold-Mariano against arma {metrics['dm_stat']:.3g}" in note and "(RNN)" in note
            curve = client.get_metric_history(run.info.run_id, "train_loss")
            assert [m.step for m in curve] == [10, 20] and "rnn_fit.json" in artifacts
    [link] = [run for run in children if run.data.tags["kind"] == "link"]
    assert link.data.tags["mlflow.note.content"].startswith("RNN-ARMA(1,1) link on arma11")
    assert {"rnn_input_weight", "rnn_feedback_weight", "arma_phi_plus_theta", "arma_minus_theta"} <= set(
        link.data.metrics
    )
    parent_artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {
        "table.md",
        "table.csv",
        "cells.csv",
        "forecast_vs_truth.png",
        "oracle_ratio.png",
        "link_impulse_response.png",
    } <= parent_artifacts
    assert printed[0] == result.summary and printed[1].startswith("RNN-ARMA(1,1) link on arma11")


@pytest.mark.parametrize(("overrides", "name"), [
    ([], "rnn_vs_arma-7x4x3 ar2,arma11,arma22,setar,…"),   # the list cut after its last whole name
    (["preset=sunspots"], "rnn_vs_arma-1x5x5 sunspots"),
    (["series=[csv]", "csv.path=/data/sales.csv", "csv.value=units"], "rnn_vs_arma-1x4x3 csv:sales.csv"),
])
def test_a_parent_run_is_named_by_its_grid_and_its_series(overrides, name):
    # before: by the grid's shape alone, 'rnn_vs_arma-1x4x3' for every CSV series
    assert rnn_vs_arma.parent_run_name(rnn_vs_arma.StudyConfig.from_mapping(composed(overrides))) == name


def test_table_has_mean_and_std_over_seeds_and_dm_only_for_rnns(study):
    result, _ = study
    table = result.table.set_index(["series", "model"])
    assert list(table.index) == [(s, m) for s in ("ar2", "setar") for m in ("arma", "linear", "lstm")]
    assert (table["seeds"] == 2).all()
    cells = result.cells[(result.cells["series"] == "setar") & (result.cells["model"] == "lstm")]
    assert table.loc[("setar", "lstm"), "mse_mean"] == pytest.approx(cells["mse"].mean())
    assert table.loc[("setar", "lstm"), "mse_std"] == pytest.approx(cells["mse"].std(ddof=1))
    assert table.loc[(slice(None), "arma"), "dm_pvalue_mean"].isna().all()
    assert table.loc[(slice(None), ["linear", "lstm"]), "dm_pvalue_mean"].notna().all()


def test_pooled_dm_is_one_test_on_the_stored_errors_of_all_seeds(study, store):
    result, _ = study
    client = MlflowClient(store.tracking_uri)
    runs = sorted((run for run in cell_runs(store, result.parent_run_id)
                   if run.data.tags.get("series") == "setar" and run.data.tags.get("model") == "lstm"),
                  key=lambda run: int(run.data.tags["seed"]))
    assert len(runs) == 2

    def stored(name: str) -> np.ndarray:  # the seeds' curves concatenated in seed order
        return np.concatenate([[m.value for m in sorted(client.get_metric_history(run.info.run_id, name),
                                                         key=lambda m: m.step)] for run in runs])

    expected = diebold_mariano(*(stored(name) for name in rnn_vs_arma.ERROR_CURVES))
    table = result.table.set_index(["series", "model"])
    row = table.loc[("setar", "lstm")]
    assert (row["dm_pooled_stat"], row["dm_pooled_pvalue"]) == expected
    assert table.loc[(slice(None), "arma"), "dm_pooled_pvalue"].isna().all()
    counts = table.loc[(slice(None), ["linear", "lstm"]), ["dm_rnn_better", "dm_rnn_worse"]].sum(axis=1)
    assert (counts <= 2).all()
    legend = result.markdown.split("\n\n", 1)[1]
    assert legend.startswith("- ±: sample standard deviation over the row's seeds (none for one seed)")
    assert "negative favours the RNN" in legend and "Pooled DM: one test on the one-step errors" in legend


def test_progress_lines_number_the_units_as_the_account_does_and_the_link_section_apart(store):
    """The sequential run's progress (stderr on a terminal; here a stream that says it is one) of a study
    going on with unit (ar2, 0) held: [2/2] over the (series x seed) units, as its account counts them, the
    link section unnumbered after it; the study's own numbers do not depend on it (the lines are written
    after the units are complete)."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    config = rnn_vs_arma.StudyConfig.from_mapping(composed([*TINY, "series=[ar2]", "model=[arma,linear]",
                                                            "seed=[0,1]", "tracking=off"]))
    calls = rnn_vs_arma._calls(config, with_link=True, done=frozenset({("ar2", 0)}))
    stream = Terminal()
    logged = []
    units, link = rnn_vs_arma._gather((function(*args) for function, args in calls),
                                      lambda unit, cell: logged.append(cell.model),
                                      rnn_vs_arma.progress_lines(config, 1, with_link=True, stream=stream))
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"\[2/2\] ar2 seed 1: 2 models, \d+ s; link section left", lines[0]), lines
    assert re.fullmatch(r"link section \(arma11 seed 0\): \d+ s; all done in \d+ (s|min)", lines[1]), lines
    assert len(lines) == 2 and logged == ["arma", "linear"] and link is not None
    assert rnn_vs_arma._progress(config, [("ar2", 0)] * 2 + [("ar2", 1)] * 2).startswith("2 of 2 units")
    again = rnn_vs_arma.compute_unit(config, "ar2", 1)
    assert [c.metrics for c in units[0].cells] == [c.metrics for c in again.cells]

    quiet = Terminal()
    off = rnn_vs_arma.StudyConfig.from_mapping(composed([*TINY, "progress=false", "tracking=off"]))
    rnn_vs_arma.progress_lines(off, 0, with_link=False, stream=quiet).finished("ar2 seed 0: 2 models, 1 s")
    assert quiet.getvalue() == ""


def test_the_terminal_gets_series_by_model_grids_of_the_one_step_scores_that_fit_its_width(study):
    """The whole table is 16 columns, up to 450 characters a row; the terminal gets a grid of the mean
    one-step test MSEs with their marks and one of the oracle ratios, each cell read off the table's columns,
    and a line per series and model where the grids are wider than the terminal."""
    result, _ = study
    rows = result.table[(result.table["window"] == "test") & (result.table["h"] == 1)]
    mse, ratio, legend = result.summary.split("\n\n")
    models = ["arma", "linear", "lstm"]

    def grid(markdown: str, corner: str) -> dict[tuple[str, str], str]:
        header, _, *lines = markdown.splitlines()
        assert [cell.strip() for cell in header.strip("|").split("|")] == [corner, *models]
        assert max(len(line) for line in markdown.splitlines()) <= 80
        return {(line.split("|")[1].strip(), model): cell.strip() for line in lines
                for model, cell in zip(models, line.strip("|").split("|")[1:], strict=True)}

    mses, ratios = grid(mse, "test MSE"), grid(ratio, "oracle ratio")
    assert sorted({series for series, _ in mses}) == sorted({series for series, _ in ratios}) == [
        "ar2", "setar"]
    for row in rows.itertuples():
        best = row.mse_mean == rows.loc[rows["series"] == row.series, "mse_mean"].min()
        dm = "" if not row.dm_pooled_pvalue < 0.05 else "+" if row.dm_pooled_stat < 0 else "-"
        marks = ("*" if best else "") + dm
        assert mses[row.series, row.model] == f"{row.mse_mean:#.4g}" + (f" ({marks})" if marks else "")
        assert ratios[row.series, row.model] == f"{row.oracle_ratio_mean:.3f}"
    assert "mean over 2 seeds" in legend and "than arma's" in legend
    assert legend.endswith("the parent run's `table.md`, printed again by the rebuild command below.")
    assert "p<0.05" in legend  # no line break between p and its level
    # narrower than the grids: a line per series and model instead, the same cells
    narrow = rnn_vs_arma.terminal_summary(rows, 0.05, "there", width=40)
    body = narrow.split("\n\n")[0].splitlines()[2:]
    assert [tuple(cell.strip() for cell in line.strip("|").split("|")) for line in body] == [
        (series, model, mses[series, model], ratios[series, model]) for series in ("ar2", "setar")
        for model in models]
    assert all(len(line) <= 40 for line in narrow.split("\n\n")[1].splitlines())  # the legend wrapped


def test_an_arma_cell_on_the_invertibility_boundary_says_so_on_its_page(store):
    """The probe's CSV baseline was ARMA(1,2) with an MA unit root, chosen by AIC, three times worse than
    the mean: an ARMA cell logs its smallest AR and MA root moduli, and its description flags an MA root
    within 1.01 of the unit circle, as auto.arima's rule would reject it."""
    config = rnn_vs_arma.StudyConfig.from_mapping(composed([*TINY, *tracking_overrides(store)]))
    unit = rnn_vs_arma.compute_unit(config, "ar2", 0)
    (cell,) = [c for c in unit.cells if c.model == "arma"]
    fit = cell.forecaster.fit_
    ar_root, ma_root = fit.root_moduli()
    for part, modulus in (("ar", ar_root), ("ma", ma_root)):
        assert cell.metrics.get(f"{part}_root_min_modulus") == modulus
    assert "invertibility boundary" not in rnn_vs_arma.cell_note(cell, config)
    on_the_circle = dataclasses.replace(cell, metrics={**cell.metrics, "ma_root_min_modulus": 1.0})
    assert ("Its MA polynomial has a root at |z| = 1.0000: the fit is on (or past) the invertibility "
            "boundary, which AIC can choose on a short series (auto.arima rejects MA roots within 1.01 of "
            "it); compare a fixed order, +models.arma.order=[p,q].") in rnn_vs_arma.cell_note(on_the_circle,
                                                                                        config)


def test_a_tiny_mse_keeps_its_significant_digits_in_the_table(study):
    """The probe's logistic-map LSTM read 0.0000 ± 0.0000 for an MSE of 3.5e-05: values in the series' units
    (MSE, its interval, MAE, Winkler) too small for their decimals get a power of ten instead."""
    result, _ = study
    columns = [c for c in result.table if c.startswith(("mse_", "mae_", "winkler"))]
    tiny = result.table.assign(**{c: result.table[c] * 1e-6 for c in columns})
    header, _, *lines = rnn_vs_arma.format_table(tiny).split("\n\n")[0].splitlines()
    names = [cell.strip() for cell in header.strip("|").split("|")]
    for row, line in zip(tiny.itertuples(), lines, strict=True):
        cells = dict(zip(names, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        mean, _, std = cells["MSE"].partition(" ± ")
        assert float(mean) == float(f"{row.mse_mean:.3e}") and float(std) == float(f"{row.mse_std:.3e}")
        assert float(cells["MAE"].partition(" ± ")[0]) == float(f"{row.mae_mean:.3e}")
        low, high = cells["MSE 95% t interval"].strip("[]").split(", ")
        assert (float(low), float(high)) == (float(f"{row.mse_low:.3e}"), float(f"{row.mse_high:.3e}"))
    assert "0.0000 ± 0.0000" not in rnn_vs_arma.format_table(tiny)
    assert rnn_vs_arma.format_table(result.table) == result.markdown  # the usual sizes as before


def test_with_tracking_off_the_terminal_gets_the_whole_table_too():
    printed: list[str] = []
    cfg = composed([*TINY, "series=[ar2]", "model=[arma,linear]", "seed=[0]", "link.enabled=false",
                    "tracking=off"])
    settings, config = rnn_vs_arma.check(cfg)
    result = rnn_vs_arma.run_study(config, settings, echo=printed.append)
    assert result.parent_run_id is None and printed == [result.markdown, result.summary]
    assert result.summary.endswith("(every horizon and window, ± over seeds, intervals, DM per seed): above.")
    assert "the test MSE, one seed, and the oracle ratio" in result.summary


def test_rebuilt_table_equals_the_printed_one(study, store):
    result, _ = study
    rebuilt = rnn_vs_arma.rebuild_table(result.parent_run_id, store)
    pd.testing.assert_frame_equal(rebuilt, result.table, check_exact=True)
    assert rnn_vs_arma.format_table(rebuilt) == result.markdown


def test_cli_rebuild_prints_the_same_table(study, store, tmp_path):
    result, _ = study
    # a rebuild reads the store and sets nothing up: an experiment tag that is missing stays missing (before:
    # its UI line came from ensure_store, which gave the experiment its missing tags back)
    client = MlflowClient(store.tracking_uri)
    client.delete_experiment_tag(result.experiment_id, KIND_TAG)
    try:
        done = run_app([f"rebuild={result.parent_run_id}", *tracking_overrides(store)], tmp_path)
        assert KIND_TAG not in client.get_experiment(result.experiment_id).tags
    finally:
        client.set_experiment_tag(result.experiment_id, KIND_TAG, KIND)
    assert done.returncode == 0, done.stderr
    assert result.markdown in done.stdout
    # it ends, as every app does, with the run's page in the UI
    ui_line = ui_hint(store.tracking_uri, (result.experiment_id, result.parent_run_id))
    assert done.stdout.rstrip("\n").endswith(f"\n{ui_line}"), done.stdout[-500:]


def test_joblib_sweep_gives_the_numbers_of_the_sequential_run(study, store, tmp_path):
    result, _ = study
    swept = swept_table(["series=ar2,setar", "model=arma,lstm"], TINY, store, tmp_path)
    swept = swept.set_index(["series", "model"])
    sequential = result.table.set_index(["series", "model"]).loc[swept.index]
    assert len(swept) == 4
    pd.testing.assert_frame_equal(swept, sequential, check_exact=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["series=[ar2,sinus]"], "series must be among"),
        (["model=[arma,transformer]"], "model must be among"),
        (["series=[ar2,arma]", "+series_params.arma.ar=[1.2]"], "series 'arma': ar=[1.2] is not stationary"),
        (["length=40"], "train part of series 'ar2' has 24 points (length=40, "),
        (["length=80"], "link: the training part of series 'arma11' has 48 points, needs >= 100"),
        (["series=[sunspots]", "split.train=[1700,1920]", "split.val=null", "split.test=[1922,1987]"],
         "split of series 'sunspots': split.test must start right after split.train ends, at label 1921"),
        (["series=[sunspots]", "+windows.early=[1700,1710]"],
         "windows.early=[1700, 1710] must select points"),
        (["backtest.horizon=0"], "backtest.horizon must be an integer >= 1, got 0"),
        (["intervals.levels=[0.8,1.5]"], "intervals.levels must be numbers in (0, 1), got 1.5"),
        (["series=[csv]"], "series 'csv': csv.path must name a CSV file, got None"),
        (["progress=maybe"], "progress must be true or false, got 'maybe'"),
    ],
)
def test_bad_input_fails_with_one_line_before_any_run(overrides, message, tracking_settings):
    cfg = composed([*TINY, *overrides, *tracking_overrides(tracking_settings)])
    with pytest.raises(rnn_vs_arma.StudyInputError, match="^" + re.escape(message)) as raised:
        rnn_vs_arma.main(cfg)
    assert "\n" not in str(raised.value)
    client = MlflowClient(tracking_settings.tracking_uri)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_cli_bad_input_exits_non_zero_with_one_line(tracking_settings, tmp_path):
    done = run_app([*TINY, "series=[ar2,nope]", *tracking_overrides(tracking_settings)], tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"config error: series must be among {sorted(rnn_vs_arma.ALL_SERIES_NAMES)}, got 'nope'"
    ]
    client = MlflowClient(tracking_settings.tracking_uri)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


FRESH_FORECASTER = """
import sys, numpy as np, mlflow.pyfunc
series = np.load(sys.argv[1])
for k, uri in enumerate(sys.argv[4:]):
    model = mlflow.pyfunc.load_model(uri)
    np.save(f"{sys.argv[2]}{k}.npy", model.predict(series, params={"start": int(sys.argv[3])}))
"""


@pytest.mark.parametrize("model", ["arma", "lstm"])
def test_each_cell_logs_its_forecaster_as_a_model_that_predicts_exactly_in_a_fresh_process(
        study, store, tmp_path, model):
    result, _ = study
    key = ("ar2", model, "0")
    (run,) = [r for r in cell_runs(store, result.parent_run_id)
              if tuple(r.data.tags.get(tag) for tag in ("series", "model", "seed")) == key]
    assert "one-step-ahead predictions" in run.data.tags["model.description"]
    logged = the_logged_model(MlflowClient(store.tracking_uri), run)
    assert {m.key for m in logged.metrics} >= {"mse", "mae"} and all(m.step == 0 for m in logged.metrics)
    config = rnn_vs_arma.StudyConfig.from_mapping(composed([*TINY, *tracking_overrides(store)]))
    unit = rnn_vs_arma.compute_unit(config, "ar2", 0)  # the same fit again: the study is deterministic
    (cell,) = [c for c in unit.cells if c.model == model]
    np.save(tmp_path / "series.npy", unit.values)
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.tracking_uri}
    done = subprocess.run([sys.executable, "-c", FRESH_FORECASTER, str(tmp_path / "series.npy"),
                           str(tmp_path / "out"), str(unit.test_start), f"runs:/{run.info.run_id}/model",
                           f"models:/{logged.model_id}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for k in range(2):
        predicted = np.load(tmp_path / f"out{k}.npy")
        assert np.array_equal(predicted, cell.forecaster.predict(unit.values, unit.test_start))  # 0 ULP


def test_a_parent_description_too_long_for_mlflow_shows_the_grids_and_the_one_step_rows(study):
    """MLflow keeps 8,000 characters of a description; the default grid's table takes about 15,000 even
    compacted. Its parent then shows the terminal's grids, every series and model, then the one-step rows of
    the whole test part, as many as fit, saying how many do not."""
    result, _ = study
    whole = rnn_vs_arma.parent_note(result.table, ["finding"], "abc")
    assert whole.count(result.markdown) == 1 and whole.count(rnn_vs_arma.terminal_table(result.table)) == 1
    big = pd.concat([result.table.assign(series=result.table["series"] + f"_{copy}", h=h)
                     for copy in range(6) for h in (1, 2, 3)], ignore_index=True)
    note = rnn_vs_arma.parent_note(big, ["finding"], "abc")
    one_step = big[big["h"] == 1]
    assert len(note) <= MAX_TAG_LENGTH
    grid = note[note.index("|test MSE|"):].split("\n\n")[0].splitlines()[2:]
    assert [line.split("|")[1] for line in grid] == list(dict.fromkeys(one_step["series"]))
    assert (f"*The one-step rows of the whole test part: {len(one_step)} of the table's {len(big)} rows "
            f"(MLflow keeps 8,000 characters of a description); every row is in the artifact "
            f"`table.md`.*") in note
    shown = [line.split("|")[1:3] for line in note.splitlines() if line.startswith("|") and "±" in line]
    assert 0 < len(shown) < len(one_step) and shown == [
        [series, model] for series, model in zip(one_step["series"], one_step["model"], strict=True)
    ][:len(shown)]
    assert (f"*{len(one_step) - len(shown)} of {len(one_step)} rows not shown: MLflow keeps 8,000 characters "
            f"of a description; every row is in the artifact `table.md`.*") in note
    assert note.endswith("\n\nfinding\n\nThe table again from the store alone: `python "
                         "experiments/rnn_vs_arma.py rebuild=abc`")
