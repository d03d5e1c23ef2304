"""resume_sweep=<sweep parent run id> finishes a stopped `experiments/rnn_vs_arma.py -m` sweep: a job whose
cells the store holds computes nothing, a job with some computes only the units it lacks and logs only the
missing cells, and the cells and the rebuilt table equal an uninterrupted sweep's exactly. Real Hydra
multiruns (subprocesses), real statsmodels, real MLflow on a temporary SQLite store. The stopped sweep is made
from a finished one by deleting cell runs, leaving one half-written and ending the parent KILLED, as a signal
or a crash would leave them (a real SIGINT's account is test_study_sweep_continue's)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from test_resume import store_overrides
from test_rnn_vs_arma import APP, TINY, composed
from test_study_sweep_continue import numbers_by
from test_sweep_continue import refused
from test_train_app import app_env, runs_of

from harness.studies import rnn_vs_arma
from harness.sweep_continuation import JOB_TAG, resume_sweep_key
from harness.tracking import ensure_store
from harness.tracking.callback import job_states
from harness.tracking.experiment_notes import NOTE_TAG

# two jobs, (ar2, arma) and (ar2, linear), of two seeds each
SWEEP = ("-m", "series=ar2", "model=arma,linear", "seed=[0,1]",
         *[o for o in TINY if not o.startswith(("series=", "model=", "seed="))])


def sweep(tmp_path: Path, settings, *args: str, experiment: str = "test") -> subprocess.CompletedProcess:
    """experiments/rnn_vs_arma.py -m run from tmp_path on the store of settings."""
    done = subprocess.run([sys.executable, str(APP), *SWEEP, *args, *store_overrides(settings)[:2],
                           f"tracking.experiment={experiment}"],
                          capture_output=True, text=True, env=app_env(tmp_path), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def cells(settings, experiment: str = "test") -> list:
    return [run for run in runs_of(settings, experiment) if run.data.tags.get("kind") in ("arma", "rnn")]


def numbers(settings, experiment: str = "test") -> dict[tuple[str, ...], list[dict[str, float]]]:
    """(job tag, model, seed) -> the metrics of each finished cell run of it (one for a sweep that logged
    each cell once)."""
    return numbers_by(cells(settings, experiment), ("model", "seed"))


def parent_of(settings, experiment: str = "test"):
    (parent,) = [run for run in runs_of(settings, experiment) if "mlflow.parentRunId" not in run.data.tags]
    return parent


def test_a_stopped_comparison_sweep_continues_to_the_uninterrupted_numbers(tmp_path: Path,
                                                                           tracking_settings) -> None:
    sweep(tmp_path, tracking_settings, experiment="uninterrupted")
    reference = numbers(tracking_settings, "uninterrupted")
    whole = rnn_vs_arma.rebuild_table(parent_of(tracking_settings, "uninterrupted").info.run_id,
                                      dataclasses.replace(tracking_settings, experiment="uninterrupted"))
    assert len(reference) == 4 and all(len(found) == 1 for found in reference.values())
    sweep(tmp_path, tracking_settings)
    client = MlflowClient(tracking_settings.tracking_uri)
    parent = parent_of(tracking_settings)
    by_job = {run.data.tags["model"]: run.data.tags[JOB_TAG] for run in cells(tracking_settings)}
    # the linear job lost seed 1's cell, half-written (its run left KILLED); the arma job finished
    kept = {run.info.run_id for run in cells(tracking_settings) if run.data.tags["model"] == "arma"
            or run.data.tags["seed"] == "0"}
    (lost,) = [run for run in cells(tracking_settings) if run.info.run_id not in kept]
    client.delete_run(lost.info.run_id)
    half = client.create_run(parent.info.experiment_id, run_name=lost.info.run_name, tags={
        **{key: value for key, value in lost.data.tags.items() if key != NOTE_TAG}})
    client.set_terminated(half.info.run_id, "KILLED")
    client.set_terminated(parent.info.run_id, "KILLED")

    done = sweep(tmp_path, tracking_settings, f"resume_sweep={parent.info.run_id}")

    assert numbers(tracking_settings) == reference
    assert kept <= {run.info.run_id for run in cells(tracking_settings)}  # not logged again
    assert half.info.run_id not in {run.info.run_id for run in runs_of(tracking_settings)}  # deleted
    of = f"under sweep {parent.info.run_id}"
    said = dict(line.split(": ", 1) for line in done.stdout.splitlines() if of in line)
    assert sorted(said) == ["job 0", "job 1"] and sorted(said.values()) == [
        f"1 of 2 cells finished before, {of}; computing the rest",
        f"2 of 2 cells finished before, {of}; not computed again"]
    assert by_job["linear"] != by_job["arma"]
    table = rnn_vs_arma.rebuild_table(parent.info.run_id, tracking_settings)
    pd.testing.assert_frame_equal(table, whole, check_exact=True)
    again = client.get_run(parent.info.run_id)
    assert again.info.status == "FINISHED" and again.data.tags["harness.continued"] == "1"
    assert (again.data.metrics["jobs_already_finished"], again.data.metrics["jobs_continued"]) == (1.0, 1.0)


def test_a_comparison_sweep_continuation_refuses_bad_input_in_one_line(tmp_path: Path,
                                                                      tracking_settings) -> None:
    sweep(tmp_path, tracking_settings)
    parent, cell = parent_of(tracking_settings), cells(tracking_settings)[0]
    key, script = "config error: resume_sweep", {"script": "rnn_vs_arma.py"}
    test = "tracking.experiment=test"
    assert refused(tmp_path, tracking_settings, *SWEEP, test, f"resume_sweep={cell.info.run_id}",
                   **script) == (
        f"{key}: run {cell.info.run_id} ({cell.info.run_name}) is not the parent run of a rnn_vs_arma.py "
        f"sweep; allowed: a sweep parent's run id (<sweep dir>/parent_run_id)")
    one_run = ("series=[ar2]", "model=[arma]", *SWEEP[4:])
    assert refused(tmp_path, tracking_settings, *one_run, test, f"resume_sweep={parent.info.run_id}",
                   **script) == (
        f"{key} continues a sweep: run the sweep's command again with -m and resume_sweep=<its parent run "
        f"id>")


def test_a_stopped_comparison_sweep_names_its_resume_sweep_command():
    """The key a stopped sweep's account and error tag name (SweepCallback; test_study_sweep_continue stops a
    real one with SIGINT) is this app's."""
    assert resume_sweep_key(composed([])) == "resume_sweep"


def test_a_study_job_that_logged_part_of_its_cells_counts_as_stopped_not_finished(tracking_settings):
    """A stopped sweep's account (job_states): the probe's Ctrl-C'd comparison sweep said `3 finished` when
    only 2 jobs had all their cells; a job with a cell still to log was counted finished."""
    client, experiment_id = ensure_store(tracking_settings)
    parent = client.create_run(experiment_id).info.run_id
    made = [("0", "a/2"), ("0", "a/2"), ("1", "b/2"), ("2", None)]  # job 2: a training run, no job tag
    for job, tag in made:
        tags = {"mlflow.parentRunId": parent, "job_num": job, **({JOB_TAG: tag} if tag else {})}
        client.set_terminated(client.create_run(experiment_id, tags=tags).info.run_id, "FINISHED")
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert job_states({0, 1, 2, 3}, children, {}) == {"finished": [0, 2], "failed": [], "stopped": [1],
                                                      "started": [3]}
