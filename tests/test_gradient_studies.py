"""The gradient-flow studies: the closed forms of note 001 hold to round-off, the Pascanu et al. bound holds
and is tight for the linear case, and each study records a parent run, children, table and figures (real
Hydra, real MLflow store from conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from harness.seed_stats import wilson_interval
from harness.studies.gradient_flow import (
    ClosedFormConfig,
    SpectralConfig,
    StudyInputError,
    closed_form_cell,
    run,
    spectral_cell,
    summarize_sweep,
)
from harness.tracking import PARENT_ENV, open_run

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TINY = {
    "closed_form": ["closed_form.v_f=[0.5,1.5]", "closed_form.T=[4,8]"],
    "spectral": ["spectral.activation=[identity,tanh]", "spectral.sigma_max=[0.9,1.5]", "spectral.T=12",
                 "spectral.hidden_size=8", "spectral.batches=2", "spectral.batch_size=4"],
    "remedies": ["remedies.method=[sgd_clip,gru]", "remedies.T=[5]", "remedies.seed=[0,1]",
                 "remedies.steps=6", "remedies.eval_interval=3", "remedies.eval_batch_size=16",
                 "remedies.log_every=2", "remedies.hidden_size=4"],
}


def composed(settings, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="gradient_flow", overrides=[
            f"tracking.uri={settings.uri}", f"tracking.artifact_root={settings.artifact_root}",
            f"tracking.experiment={settings.experiment}", "n_jobs=1", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


def ui_line(settings, parent) -> str:
    """The line a study ends with: its parent run's page in the UI, and the command that starts the UI on
    the (non-default) store."""
    return (f"in the MLflow UI: http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}/runs/"
            f"{parent.info.run_id}?workflowType=machine_learning  (start it with: python -m harness.ui --uri "
            f"{settings.tracking_uri})")


def environment_of(run) -> dict[str, str]:
    """The tags that say where a run ran (harness.environment.environment_tags)."""
    return {key: value for key, value in run.data.tags.items()
            if key.startswith("env.") or key == "git.dirty"}


def children(client: MlflowClient, parent_run_id: str) -> list:
    parent = client.get_run(parent_run_id)
    return client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")


def artifact_names(client: MlflowClient, run_id: str) -> set[str]:
    return {item.path for item in client.list_artifacts(run_id)}


def test_closed_form_matches_note001_to_round_off() -> None:
    config = ClosedFormConfig()
    cells = {(v_f, T): closed_form_cell(config, v_f, T) for v_f, T in config.cells()}
    for cell in cells.values():
        for name in ("dE_df1", "dE_dvx", "dE_dvf"):
            assert cell.metrics[f"rel_error_{name}"] < 1e-10, (cell.name, name, cell.metrics)
    # eq. 28: the gradient reaching f_1 vanishes for v_f < 1 and explodes for v_f > 1 as T grows
    assert abs(cells[(0.5, 128)].metrics["measured_dE_df1"]) < 1e-30
    assert abs(cells[(1.5, 128)].metrics["measured_dE_df1"]) > 1e40
    lags, values = cells[(0.5, 8)].curves["abs_dE_df_by_lag"]
    np.testing.assert_array_equal(lags, np.arange(8))
    np.testing.assert_allclose(values[1:] / values[:-1], 0.5, rtol=1e-12)


def test_closed_form_residuals_are_not_zero_at_v_f_one() -> None:
    # v_x = 1 and v_f = 1 would solve the task exactly and make every relative error 0/0
    cell = closed_form_cell(ClosedFormConfig(), 1.0, 16)
    assert cell.metrics["residual_sum"] != 0 and cell.metrics["theory_dE_df1"] != 0


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("sigma_max", [0.5, 0.9, 1.5])
def test_measured_jacobian_norms_never_exceed_the_bound(activation: str, sigma_max: float) -> None:
    config = SpectralConfig(T=40, hidden_size=16, batches=2, batch_size=8, recurrent_init="glorot")
    cell = spectral_cell(config, activation, sigma_max)
    lags, norms = cell.curves["lag_norm"]
    _, bound = cell.curves["bound"]
    np.testing.assert_array_equal(lags, np.arange(1, 41))
    assert np.all(norms <= bound * (1 + 1e-12))
    assert cell.metrics["max_log_excess"] <= 1e-12
    assert cell.metrics["measured_rate"] < cell.metrics["bound_rate"]


def test_decay_rate_equals_the_bound_for_the_linear_network_and_not_for_tanh() -> None:
    config = SpectralConfig(T=30, hidden_size=12, batches=2, batch_size=4)
    for sigma in (0.5, 1.0, 1.5):
        linear = spectral_cell(config, "identity", sigma).metrics
        assert linear["measured_rate"] == pytest.approx(sigma, rel=1e-9)
        assert abs(linear["log_rate_gap"]) < 1e-9
    saturated = spectral_cell(replace(config, input_std=3.0), "tanh", 2.0).metrics
    assert saturated["rate_ratio"] < 0.9 and saturated["saturated_fraction"] > 0.05


def test_spectral_study_logs_lag_norms_with_the_lag_as_step(tracking_settings) -> None:
    result = run(composed(tracking_settings, "study=spectral", *TINY["spectral"]), echo=lambda _: None)
    client = MlflowClient(tracking_settings.tracking_uri)
    runs = children(client, result.parent_run_id)
    assert len(runs) == 4
    for child in runs:
        history = sorted(client.get_metric_history(child.info.run_id, "lag_norm"), key=lambda m: m.step)
        assert [m.step for m in history] == list(range(1, 13))
        assert all(m.value > 0 for m in history)
    assert {"table.md", "table.csv", "cells.csv", "findings.txt", "spectral_rates.png",
            "spectral_lag_norms.png"} <= artifact_names(client, result.parent_run_id)
    assert any("never exceeds" in sentence for sentence in result.outputs.sentences)
    # the table rebuilt from the store alone equals the one computed in process
    rebuilt = run(composed(tracking_settings, "study=spectral", f"rebuild={result.parent_run_id}"),
                  echo=lambda _: None)
    pd.testing.assert_frame_equal(rebuilt.outputs.table, result.outputs.table)
    assert "spectral_lag_norms.png" in artifact_names(client, rebuilt.parent_run_id)


def test_infinite_metrics_read_back_infinite(tracking_settings) -> None:
    """A single relu unit dies within 12 steps: no decay rate, an infinite gap (MLflow's store keeps inf as
    the largest float64); the table and findings rebuilt from the store are the run's, exactly."""
    dead = ["spectral.activation=[relu]", "spectral.sigma_max=[0.5]", "spectral.T=12",
            "spectral.hidden_size=1", "spectral.batches=1", "spectral.batch_size=2"]
    result = run(composed(tracking_settings, "study=spectral", *dead), echo=lambda _: None)
    assert result.outputs.table["log_rate_gap"].tolist() == [np.inf]
    rebuilt = run(composed(tracking_settings, "study=spectral", f"rebuild={result.parent_run_id}"),
                  echo=lambda _: None)
    pd.testing.assert_frame_equal(rebuilt.outputs.table, result.outputs.table, check_exact=True)
    assert rebuilt.outputs.sentences == result.outputs.sentences


@pytest.mark.parametrize("study", ["closed_form", "remedies"])
def test_study_records_parent_children_table_and_figures(tracking_settings, study: str) -> None:
    echoed: list[str] = []
    result = run(composed(tracking_settings, f"study={study}", *TINY[study]), echo=echoed.append)
    client = MlflowClient(tracking_settings.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["study"] == study
    assert len(children(client, result.parent_run_id)) == 4
    # where it ran, as a training run and the comparison record it (before: no env.* tags at all)
    environment = environment_of(parent)
    assert {"env.python", "env.numpy", "env.blas", "env.platform", "git.dirty"} <= set(environment)
    assert environment["env.numpy"] == np.__version__
    assert all(environment_of(child) == environment for child in children(client, result.parent_run_id))
    names = artifact_names(client, result.parent_run_id)
    assert {"table.md", "table.csv", "cells.csv", "findings.txt"} <= names
    assert any(name.endswith(".png") for name in names)
    assert result.outputs.markdown in echoed
    # it ends, as the other apps do, with its parent's page in the MLflow UI and the command that opens it
    assert echoed[-1] == ui_line(tracking_settings, parent)
    table = pd.read_csv(client.download_artifacts(result.parent_run_id, "table.csv"))
    assert len(table) == (4 if study == "closed_form" else 2)


def test_remedies_cells_log_gradient_norms_and_clipping(tracking_settings) -> None:
    result = run(composed(tracking_settings, "study=remedies", *TINY["remedies"]), echo=lambda _: None)
    client = MlflowClient(tracking_settings.tracking_uri)
    by_method = {run_.data.tags["cell.method"]: run_ for run_ in children(client, result.parent_run_id)}
    clipped = by_method["sgd_clip"]
    assert 0.0 <= clipped.data.metrics["clip_fraction"] <= 1.0
    assert by_method["gru"].data.metrics["clip_fraction"] >= 0.0
    steps = [m.step for m in client.get_metric_history(clipped.info.run_id, "train/grad_norm")]
    assert steps == [2, 4, 6]
    table = result.outputs.table
    assert set(table.columns) >= {"method", "T", "success_rate", "clip_fraction_mean", "grad_norm_median"}
    assert table["seeds"].tolist() == [2, 2]
    for _, row in table.iterrows():  # the success rate's interval is the shared aggregation's Wilson interval
        assert (row["success_low"], row["success_high"]) == wilson_interval(int(row["solved"]), 2)


def test_bad_input_fails_before_any_run(tracking_settings) -> None:
    with pytest.raises(StudyInputError, match="study must be one of"):
        run(composed(tracking_settings, "study=nope"))
    with pytest.raises(StudyInputError, match=r"remedies\.method must be among"):
        run(composed(tracking_settings, "study=remedies", "remedies.method=[sgd,adamw]"))
    with pytest.raises(StudyInputError, match=r"spectral\.activation"):
        run(composed(tracking_settings, "study=spectral", "spectral.activation=tahn"))
    client = MlflowClient(tracking_settings.tracking_uri)
    experiment = client.get_experiment_by_name(tracking_settings.experiment)
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_sweep_job_cells_nest_under_the_sweep_parent_with_the_sequential_numbers(tracking_settings,
                                                                              monkeypatch) -> None:
    sequential = run(composed(tracking_settings, "study=closed_form", *TINY["closed_form"]),
                     echo=lambda _: None)
    with open_run(tracking_settings, run_name="sweep-parent") as sweep_parent:
        parent_run_id = sweep_parent.run_id
    monkeypatch.setenv(PARENT_ENV, parent_run_id)  # what SweepCallback sets for the jobs of a -m sweep
    for v_f in (0.5, 1.5):  # two "jobs", one grid value each
        run(composed(tracking_settings, "study=closed_form", f"closed_form.v_f={v_f}", "closed_form.T=[4,8]"),
            sweep=True)
    client = MlflowClient(tracking_settings.tracking_uri)
    assert len(children(client, parent_run_id)) == 4
    for child in children(client, parent_run_id):  # a sweep job's cells record where they ran too
        assert environment_of(child)["env.numpy"] == np.__version__ and "git.dirty" in child.data.tags
    rebuilt = run(composed(tracking_settings, "study=closed_form", f"rebuild={parent_run_id}"),
                  echo=lambda _: None)
    pd.testing.assert_frame_equal(rebuilt.outputs.table, sequential.outputs.table)
    echoed: list[str] = []  # what a -m sweep ends with (harness.studies.sweep_summary)
    summarize_sweep(composed(tracking_settings, "study=closed_form"), parent_run_id, echo=echoed.append)
    assert echoed[-2].startswith(f"sweep parent run {parent_run_id}; its table again: ")
    assert echoed[-1] == ui_line(tracking_settings, client.get_run(parent_run_id))


@pytest.mark.slow
def test_hydra_sweep_gives_the_sequential_numbers(tracking_settings, tmp_path: Path) -> None:
    sequential = run(composed(tracking_settings, "study=closed_form", *TINY["closed_form"]),
                     echo=lambda _: None)
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, str(ROOT / "experiments" / "gradient_flow.py"), "-m", "study=closed_form",
               "closed_form.v_f=0.5,1.5", "closed_form.T=[4,8]", f"tracking.uri={tracking_settings.uri}",
               f"tracking.artifact_root={tracking_settings.artifact_root}",
               f"tracking.experiment={tracking_settings.experiment}", f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HARNESS_PARENT_RUN_ID", None)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    parent_run_id = (sweep_dir / "parent_run_id").read_text().strip()
    client = MlflowClient(tracking_settings.tracking_uri)
    # four cells, and the summary the sweep's end made from the store (SweepSummaryCallback)
    kinds = sorted(run.data.tags["kind"] for run in children(client, parent_run_id))
    assert kinds == ["cell"] * 4 + ["summary"]
    rebuilt = run(composed(tracking_settings, "study=closed_form", f"rebuild={parent_run_id}"),
                  echo=lambda _: None)
    pd.testing.assert_frame_equal(rebuilt.outputs.table, sequential.outputs.table)
    assert sequential.outputs.markdown in done.stdout  # the sweep printed the sequential run's table
    # one UI line, the summary's, with the sweep parent's page: the sweep callback prints none for a study
    assert done.stdout.count("in the MLflow UI: ") == 1 and f"/runs/{parent_run_id}?" in done.stdout
