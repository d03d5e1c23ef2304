"""resume=<parent run id> finishes a stopped gradient-flow study: only the cells the store lacks are computed,
and the table, findings, figures and parent description equal the uninterrupted run's, on real MLflow
(temporary SQLite store) and real Hydra composition. A stopped study is made from a finished one by deleting
child runs, leaving one half-written, and ending the parent KILLED, as a signal or a crash would leave it."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import store_copy
from mlflow import MlflowClient
from test_gradient_studies import ROOT, TINY, children, composed

from harness.config import ConfigError
from harness.studies.gradient_flow import run
from harness.studies.study_run import StudyResult
from harness.tracking import TrackingSettings
from harness.tracking.experiment_notes import NOTE_TAG

CLOSED_FORM = ["study=closed_form", *TINY["closed_form"]]  # the cheapest study: 4 cells (v_f x T)
OUTPUT_FILES = ("table.md", "table.csv", "findings.txt", "closed_form.png")


@pytest.fixture(scope="module")
def store(template_store: Path, tmp_path_factory: pytest.TempPathFactory) -> TrackingSettings:
    return store_copy(template_store, tmp_path_factory.mktemp("resume"), "gradient_flow")


@pytest.fixture(scope="module")
def whole(store: TrackingSettings) -> StudyResult:
    """The tiny closed-form study, uninterrupted."""
    return run(composed(store, *CLOSED_FORM), echo=lambda line: None)


def stopped(store: TrackingSettings) -> str:
    """A second run of the tiny study, left as a stop would leave it: cells (0.5, 8) and (1.5, 4) missing,
    the latter half-written (a cell run still RUNNING), the parent KILLED; returns the parent's id."""
    result = run(composed(store, *CLOSED_FORM), echo=lambda line: None)
    client = MlflowClient(store.tracking_uri)
    for child in children(client, result.parent_run_id):
        if (child.data.tags["cell.v_f"], child.data.tags["cell.T"]) in (("0.5", "8"), ("1.5", "4")):
            client.delete_run(child.info.run_id)
    client.create_run(result.experiment_id, run_name="closed_form-vf1.5-T4", tags={
        "mlflow.parentRunId": result.parent_run_id, "study": "closed_form", "kind": "cell",
        "cell.v_f": "1.5", "cell.T": "4"})
    client.set_terminated(result.parent_run_id, "KILLED")
    return result.parent_run_id


def artifact(client: MlflowClient, run_id: str, name: str) -> bytes:
    return Path(client.download_artifacts(run_id, name)).read_bytes()


def test_a_resumed_study_reports_the_uninterrupted_numbers(whole, store) -> None:
    parent_run_id = stopped(store)
    client = MlflowClient(store.tracking_uri)
    kept = {child.info.run_id for child in children(client, parent_run_id) if child.info.status == "FINISHED"}
    printed: list[str] = []
    # n_jobs changes no number: a resumed study may use other processes than the stopped one
    result = run(composed(store, *CLOSED_FORM, "n_jobs=2", f"resume={parent_run_id}"), echo=printed.append)

    assert result.parent_run_id == parent_run_id and result.cells_computed == 2
    assert printed[0] == (f"resuming study closed_form-4cells ({parent_run_id}): 2 of 4 cells are in the "
                          f"store (deleted unfinished, computed again: closed_form-vf1.5-T4); computing the "
                          f"rest")
    assert printed[1:4] == [whole.outputs.markdown, *whole.outputs.sentences]
    assert printed[4].startswith("closed_form: 2 cells computed and logged in ")
    pd.testing.assert_frame_equal(result.outputs.table, whole.outputs.table, check_exact=True)
    # the cells in the order of a computed study's (the store gives them newest first)
    pd.testing.assert_frame_equal(result.cells[list(whole.cells.columns)], whole.cells, check_exact=True)
    assert result.outputs.sentences == whole.outputs.sentences
    parent, uninterrupted = client.get_run(parent_run_id), client.get_run(whole.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.params == uninterrupted.data.params
    assert parent.data.tags[NOTE_TAG] == uninterrupted.data.tags[NOTE_TAG]
    assert parent.data.tags["resumed"] == ("2 of 4 cells are in the store when it resumed (deleted "
                                           "unfinished, computed again: closed_form-vf1.5-T4)")
    assert "resumed" not in uninterrupted.data.tags
    for name in OUTPUT_FILES:  # the figure too, byte for byte
        assert artifact(client, parent_run_id, name) == artifact(client, whole.parent_run_id, name), name
    assert (parent.data.metrics["cells_computed"], parent.data.metrics["n_jobs"]) == (2, 2)
    # every cell once, the two held ones not computed again, the half-written one deleted
    after = children(client, parent_run_id)
    cells = Counter((child.data.tags["cell.v_f"], child.data.tags["cell.T"]) for child in after)
    assert sorted(cells) == [("0.5", "4"), ("0.5", "8"), ("1.5", "4"), ("1.5", "8")]
    assert set(cells.values()) == {1} and kept < {child.info.run_id for child in after}
    assert {child.info.status for child in after} == {"FINISHED"}


@pytest.mark.parametrize(("change", "message"), [
    (["closed_form.v_x=0.6"], "resume: study {id} ran with other settings: closed_form.v_x: 0.5 there, 0.6 "
                              "here; give the settings it ran with"),
    (["study=spectral", *TINY["spectral"]],
     "resume: run {id} (closed_form-4cells) is not the parent run of a spectral study; allowed: the parent "
     "run id a stopped study printed"),
    (["tracking=off"], "resume: needs the store the study logged to; tracking=off keeps none"),
    (["rebuild={id}"], "resume: give resume=<run id> (finish a stopped study) or rebuild=<run id> (a study's "
                       "table from the store), not both"),
])
def test_resume_refuses_other_settings_before_reopening_the_run(whole, store, change, message) -> None:
    parent_run_id = stopped(store)
    overrides = [*CLOSED_FORM, *(item.format(id=parent_run_id) for item in change), f"resume={parent_run_id}"]
    with pytest.raises(ConfigError) as error:
        run(composed(store, *overrides), echo=lambda line: None)
    assert str(error.value) == message.format(id=parent_run_id)
    client = MlflowClient(store.tracking_uri)
    assert client.get_run(parent_run_id).info.status == "KILLED"
    assert len(children(client, parent_run_id)) == 3  # the half-written cell run is still there too


def test_resume_refuses_a_finished_study(whole, store) -> None:
    with pytest.raises(ConfigError, match=rf"^resume: study {whole.parent_run_id} has finished; nothing is "
                                          r"left to compute$"):
        run(composed(store, *CLOSED_FORM, f"resume={whole.parent_run_id}"), echo=lambda line: None)


def test_resume_with_a_sweep_is_refused_before_any_run(store, tmp_path) -> None:
    command = [sys.executable, str(ROOT / "experiments" / "gradient_flow.py"), "-m", "study=closed_form",
               "closed_form.v_f=0.5,1.5", "resume=abc", f"tracking.uri={store.uri}",
               f"tracking.artifact_root={store.artifact_root}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == ("config error: resume takes one run, not a -m sweep: run "
                                                    "the command without -m")
    assert not (tmp_path / "sweep" / "parent_run_id").exists()
