"""harness.report reads back what harness.tracking wrote (real MLflow SQLite store in tmp)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from harness.report import metric_history, runs_frame, to_markdown, write_table
from harness.tracking import ensure_store, open_run


def _sweep(settings):
    client, experiment_id = ensure_store(settings)
    parent = client.create_run(experiment_id, run_name="sweep").info.run_id
    for seed in range(3):
        with open_run(settings, run_name=f"s{seed}", parent_run_id=parent) as log:
            log.log_params({"seed": seed})
            for step in range(4):
                log.log_metrics({"loss": float(seed * 10 + step)}, step)
    with open_run(settings, run_name="unrelated") as log:
        log.log_params({"seed": 9})
    return parent


def test_runs_frame_selects_children_of_a_parent_and_filters(tracking_settings):
    parent = _sweep(tracking_settings)
    frame = runs_frame("test", tracking_settings, parent_run_id=parent)
    assert sorted(frame["tags.mlflow.runName"]) == ["s0", "s1", "s2"]
    assert set(frame["status"]) == {"FINISHED"}
    assert sorted(frame["metrics.loss"]) == [3.0, 13.0, 23.0]  # last value of each run
    filtered = runs_frame("test", tracking_settings, parent_run_id=parent, filter="params.seed = '1'")
    assert list(filtered["tags.mlflow.runName"]) == ["s1"]
    everything = runs_frame("test", tracking_settings)
    assert len(everything) == 5  # parent + 3 children + unrelated


def test_runs_frame_leaves_out_runs_a_re_run_superseded(tracking_settings):
    parent = _sweep(tracking_settings)
    client, experiment_id = ensure_store(tracking_settings)
    for name, tags in (("torn-down", {"harness.rerun": "torn down; the job ran again"}), ("signalled", {})):
        run = client.create_run(experiment_id, run_name=name, tags={"mlflow.parentRunId": parent, **tags})
        client.set_terminated(run.info.run_id, "KILLED")
    frame = runs_frame("test", tracking_settings, parent_run_id=parent)
    assert sorted(frame["tags.mlflow.runName"]) == ["s0", "s1", "s2", "signalled"]


def test_runs_frame_unknown_experiment_names_it(tracking_settings):
    with pytest.raises(ValueError, match="experiment 'nope' not found"):
        runs_frame("nope", tracking_settings)


def test_metric_history_has_every_step_in_order(tracking_settings):
    with open_run(tracking_settings) as log:
        for step in (2, 0, 1):
            log.log_metrics({"loss": float(step) / 2}, step)
    history = metric_history(log.run_id, "loss", tracking_settings)
    assert list(history.columns) == ["step", "value", "timestamp"]
    assert list(history["step"]) == [0, 1, 2]
    assert list(history["value"]) == [0.0, 0.5, 1.0]


def test_tables_render_as_markdown_and_csv(tmp_path):
    frame = pd.DataFrame({"model": ["elman", "lstm"], "mse": [0.123456, 1.5]})
    markdown = to_markdown(frame)
    assert markdown.splitlines()[0].replace(" ", "") == "|model|mse|"
    assert "0.1235" in markdown and "| lstm" in markdown
    md_path, csv_path = write_table(frame, tmp_path / "tables" / "result")
    assert md_path.read_text() == markdown + "\n"
    pd.testing.assert_frame_equal(pd.read_csv(csv_path), frame)


def test_reading_runs_leaves_no_process_wide_mlflow_state(tracking_settings, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = mlflow.get_tracking_uri()
    _sweep(tracking_settings)
    frame = runs_frame("test", tracking_settings)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() == before
    assert list(frame.columns[:6]) == ["run_id", "experiment_id", "status", "artifact_uri", "start_time",
                                       "end_time"]
    assert frame["start_time"].is_monotonic_decreasing  # newest first
    assert frame["params.seed"].isna().sum() == 1 and frame["metrics.loss"].isna().sum() == 2
