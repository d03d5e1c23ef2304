"""resume=<parent run id> finishes a stopped comparison: only the units the store lacks are computed, and the
table, cells and parent description equal the uninterrupted run's, on real MLflow (temporary SQLite store),
real statsmodels and real Hydra composition. A stopped study is made from a finished one by deleting child
runs, leaving one half-written, and ending the parent KILLED, as a signal or a crash would leave it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import store_copy
from mlflow import MlflowClient
from mlflow.entities import Param
from test_rnn_vs_arma import TINY, composed, run_app, tracking_overrides

from harness.config import ConfigError
from harness.forecast.series import make_series
from harness.studies import rnn_vs_arma
from harness.tracking import TrackingSettings
from harness.tracking.experiment_notes import NOTE_TAG
from harness.tracking.logged_model import delete_models
from harness.tracking.loggers import flatten_params
from harness.tracking.store import git_commit


@pytest.fixture(scope="module")
def store(template_store: Path, tmp_path_factory: pytest.TempPathFactory) -> TrackingSettings:
    return store_copy(template_store, tmp_path_factory.mktemp("resume"), "rnn_vs_arma")


def config_of(store: TrackingSettings, *extra: str) -> rnn_vs_arma.StudyConfig:
    return rnn_vs_arma.StudyConfig.from_mapping(composed([*TINY, *extra, *tracking_overrides(store)]))


@pytest.fixture(scope="module")
def whole(store: TrackingSettings) -> rnn_vs_arma.StudyResult:
    """The tiny study, uninterrupted."""
    return rnn_vs_arma.run_study(config_of(store), store, echo=lambda line: None)


def stopped(store: TrackingSettings, config: rnn_vs_arma.StudyConfig | None = None) -> str:
    """A second run of the tiny study (or of config), left as a stop would leave it: unit (setar, 1) and one
    cell of unit (ar2, 0) missing, a half-written cell run still RUNNING (its model logged), the parent
    KILLED; returns the parent's id."""
    result = rnn_vs_arma.run_study(config or config_of(store), store, echo=lambda line: None)
    client = MlflowClient(store.tracking_uri)
    for run in children(client, result.parent_run_id):
        cell = (run.data.tags["series"], run.data.tags.get("model"), run.data.tags["seed"])
        if cell[::2] == ("setar", "1") or cell == ("ar2", "lstm", "0"):
            client.delete_run(run.info.run_id)
            delete_models(client, run)  # a cell never logged has no model either
    half = client.create_run(result.experiment_id, run_name="ar2-arma-s1", tags={
        "mlflow.parentRunId": result.parent_run_id, "study": "rnn_vs_arma", "kind": "arma", "series": "ar2",
        "model": "arma", "seed": "1"})
    client.create_logged_model(result.experiment_id, name="model", source_run_id=half.info.run_id)
    client.set_terminated(result.parent_run_id, "KILLED")
    return result.parent_run_id


def children(client: MlflowClient, parent_run_id: str) -> list:
    experiment = client.get_experiment_by_name("rnn_vs_arma")
    return client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")


def test_a_resumed_study_reports_the_uninterrupted_numbers(whole, store) -> None:
    parent_run_id = stopped(store)
    client = MlflowClient(store.tracking_uri)
    printed: list[str] = []
    config = config_of(store, f"resume={parent_run_id}")
    resume = rnn_vs_arma.study_to_resume(parent_run_id, config, store)
    assert len(resume.children) == 8 + 1  # 12 cells less 4 deleted, the link section; the RUNNING one gone
    result = rnn_vs_arma.run_study(config, store, echo=printed.append, resume=resume)

    assert result.parent_run_id == parent_run_id
    assert printed[0] == (f"resuming study rnn_vs_arma-2x3x2 ar2,setar ({parent_run_id}): 2 of 4 units "
                          f"(series x seed), 8 of 12 cells are in the store, and the link section (deleted "
                          f"unfinished, computed again: ar2-arma-s1); computing the rest")
    pd.testing.assert_frame_equal(result.table, whole.table, check_exact=True)
    assert result.markdown == whole.markdown and printed[1:] == [whole.summary, whole.link.summary]
    parent = client.get_run(parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["resumed"] == ("2 of 4 units (series x seed), 8 of 12 cells are in the store, "
                                           "and the link section when it resumed (deleted unfinished, "
                                           "computed again: ar2-arma-s1)")
    assert parent.data.tags[NOTE_TAG] == rnn_vs_arma.parent_note(whole.table, [whole.link.summary],
                                                                 parent_run_id)
    # every cell once, the half-written one deleted
    cells = Counter((r.data.tags["series"], r.data.tags["model"], r.data.tags["seed"])
                    for r in children(client, parent_run_id) if r.data.tags["kind"] in ("arma", "rnn"))
    grid = [(s, m, str(n)) for s in ("ar2", "setar") for m in ("arma", "linear", "lstm") for n in (0, 1)]
    assert sorted(cells) == sorted(grid) and set(cells.values()) == {1}
    # the half-written run's model went with it: every model's run is live, every cell run has one model
    models = client.search_logged_models([result.experiment_id])
    assert all(client.get_run(m.source_run_id).info.lifecycle_stage == "active" for m in models)
    made = Counter(m.source_run_id for m in models)
    cell_runs = [r.info.run_id for r in children(client, parent_run_id) if r.data.tags["kind"] != "link"]
    assert {made[run_id] for run_id in cell_runs} == {1}
    artifacts = {a.path for a in client.list_artifacts(parent_run_id)}
    assert {"table.md", "table.csv", "cells.csv", "forecast_vs_truth.png", "oracle_ratio.png",
            "link_impulse_response.png"} <= artifacts
    pd.testing.assert_frame_equal(result.cells, whole.cells, check_exact=True)
    assert rnn_vs_arma.rebuild_table(parent_run_id, store).equals(whole.table)


def test_a_resumed_study_computes_a_missing_link_section(whole, store) -> None:
    parent_run_id = stopped(store)
    client = MlflowClient(store.tracking_uri)
    (link,) = [r for r in children(client, parent_run_id) if r.data.tags["kind"] == "link"]
    client.delete_run(link.info.run_id)
    printed: list[str] = []
    config = config_of(store)
    resume = rnn_vs_arma.study_to_resume(parent_run_id, config, store)
    result = rnn_vs_arma.run_study(config, store, echo=printed.append, resume=resume)
    assert printed[-1] == whole.link.summary and result.link.metrics == whole.link.metrics
    assert [r.data.tags["kind"] for r in children(client, parent_run_id)].count("link") == 1
    # the parent held the section already: its metrics are not logged twice
    assert len(client.get_metric_history(parent_run_id, "link.rnn_input_weight")) == 1


def test_a_link_section_the_parent_lacks_is_copied_to_it_once(whole, store) -> None:
    """A stop between the link's child run and its copy on the parent (_log_link's order): the resumed study
    copies the child's metrics and figure to the parent, once."""
    client = MlflowClient(store.tracking_uri)
    config = config_of(store)
    parent = client.create_run(whole.experiment_id, run_name="rnn_vs_arma-2x3x2 ar2,setar",
                               tags={"study": "rnn_vs_arma", "kind": "parent"}).info.run_id
    params = flatten_params(rnn_vs_arma._study_params(config))
    client.log_batch(parent, params=[Param(key, value) for key, value in params.items()])
    source = rnn_vs_arma.run_study(config, store, echo=lambda line: None)
    for run in children(client, source.parent_run_id):
        tags = run.data.tags
        if tags["kind"] == "link" or (tags["series"], tags["seed"]) == ("ar2", "0"):
            client.set_tag(run.info.run_id, "mlflow.parentRunId", parent)
    client.set_terminated(parent, "KILLED")
    result = rnn_vs_arma.run_study(config, store, echo=lambda line: None,
                                   resume=rnn_vs_arma.study_to_resume(parent, config, store))
    pd.testing.assert_frame_equal(result.table, whole.table, check_exact=True)
    stored = client.get_run(parent).data.metrics
    assert {key: stored[f"link.{key}"] for key in whole.link.metrics} == whole.link.metrics
    assert len(client.get_metric_history(parent, "link.rnn_input_weight")) == 1
    assert "link_impulse_response.png" in {a.path for a in client.list_artifacts(parent)}


def test_a_resumed_study_logs_the_cells_of_an_uninterrupted_one_in_their_order(store) -> None:
    """Three horizons and a window: a cell has six rows, read back from the store in another order."""
    multi = [*(o for o in TINY if not o.startswith("backtest=")), "backtest=default", "+windows.w1=[250,280]"]
    config = rnn_vs_arma.StudyConfig.from_mapping(composed([*multi, *tracking_overrides(store)]))
    whole = rnn_vs_arma.run_study(config, store, echo=lambda line: None)
    parent_run_id = stopped(store, config)
    result = rnn_vs_arma.run_study(config, store, echo=lambda line: None,
                                   resume=rnn_vs_arma.study_to_resume(parent_run_id, config, store))
    assert whole.cells["h"].nunique() == 3 and whole.cells["window"].nunique() == 2
    pd.testing.assert_frame_equal(result.cells, whole.cells, check_exact=True)
    pd.testing.assert_frame_equal(result.table, whole.table, check_exact=True)
    client = MlflowClient(store.tracking_uri)
    texts = [Path(client.download_artifacts(run_id, "cells.csv")).read_text()
             for run_id in (whole.parent_run_id, parent_run_id)]
    assert texts[0] == texts[1]


def test_resume_refuses_a_study_of_other_code(whole, store) -> None:
    parent_run_id = stopped(store)
    client = MlflowClient(store.tracking_uri)
    client.set_tag(parent_run_id, "mlflow.source.git.commit", "0" * 40)
    here = git_commit()
    with pytest.raises(ConfigError) as error:
        rnn_vs_arma.study_to_resume(parent_run_id, config_of(store), store)
    assert str(error.value) == (f"resume: study {parent_run_id} ran the code of commit 000000000000, this "
                                f"checkout is at {here[:12]}: its cells and new ones would mix two versions "
                                f"in one table; resume from a checkout of 000000000000, or run the study "
                                f"afresh")


@pytest.mark.parametrize(("change", "message"), [
    (["length=310"], "resume: study {id} ran with other settings: length: 300 there, 310 here; give the "
                     "settings it ran with"),
    (["tracking=off"], "resume: needs the store the study logged to; tracking=off keeps none"),
    # a model's keywords are one JSON param: the keys inside that differ are named, not the whole objects
    (["rnn.steps=21"], "resume: study {id} ran with other settings: models.linear.steps: 20 there, 21 here; "
                       "models.lstm.steps: 20 there, 21 here; give the settings it ran with"),
])
def test_resume_refuses_other_settings(whole, store, change, message) -> None:
    parent_run_id = stopped(store)
    cfg = composed([*TINY, *tracking_overrides(store), *change])
    settings, config = rnn_vs_arma.check(cfg)
    with pytest.raises(ConfigError) as error:
        rnn_vs_arma.study_to_resume(parent_run_id, config, settings)
    assert str(error.value) == message.format(id=parent_run_id)


def test_resume_refuses_a_finished_study_a_child_and_an_unknown_run(whole, store) -> None:
    config = config_of(store)
    with pytest.raises(ConfigError, match=rf"^resume: study {whole.parent_run_id} has finished; nothing is"):
        rnn_vs_arma.study_to_resume(whole.parent_run_id, config, store)
    child = children(MlflowClient(store.tracking_uri), whole.parent_run_id)[0].info
    with pytest.raises(ConfigError, match=rf"^resume: run {child.run_id} \(.+\) is not the parent run of a "
                                          r"rnn_vs_arma study; allowed: the parent run id a stopped study"):
        rnn_vs_arma.study_to_resume(child.run_id, config, store)
    with pytest.raises(ConfigError, match=r"^resume: run 0123abcd not found in sqlite:///.+; give the "):
        rnn_vs_arma.study_to_resume("0123abcd", config, store)


def test_resume_with_rebuild_or_a_sweep_is_refused_before_any_run(store, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"^resume: give resume=<run id> \(finish a stopped study\) or "):
        rnn_vs_arma.check(composed([*TINY, "resume=abc", "rebuild=abc"]))
    for key in ("resume", "rebuild"):  # `resume=$ID` with ID unset ran a whole new study
        with pytest.raises(ConfigError) as error:
            rnn_vs_arma.check(composed([*TINY, f"{key}="]))
        refusal = f"{key}: empty; give a parent run id (a study printed it), or leave {key} out"
        assert str(error.value) == refusal
    done = run_app(["-m", "series=ar2,setar", "resume=abc", *TINY[1:], *tracking_overrides(store)], tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == ("config error: resume takes one run, not a -m sweep: run "
                                                    "the command without -m")
    assert not (tmp_path / "sweep" / "parent_run_id").exists()



def test_resume_refuses_a_series_whose_data_changed(store, tmp_path) -> None:
    """A CSV series is not in the parent's params: its file's values are checked by fingerprint."""
    data = tmp_path / "sales.csv"
    values = make_series("ar2", 300, seed=0).values
    pd.DataFrame({"units": values}).to_csv(data, index=False)
    overrides = ["series=[csv]", f"csv.path={data}", "csv.value=units", "model=[arma]", "seed=[0]",
                 "link.enabled=false", *TINY[3:]]
    config = rnn_vs_arma.StudyConfig.from_mapping(composed([*overrides, *tracking_overrides(store)]))
    result = rnn_vs_arma.run_study(config, store, echo=lambda line: None)
    client = MlflowClient(store.tracking_uri)
    half = client.create_run(result.experiment_id, run_name="csv-arma-s0", tags={
        "mlflow.parentRunId": result.parent_run_id, "study": "rnn_vs_arma", "kind": "arma"}).info.run_id
    client.set_terminated(result.parent_run_id, "KILLED")
    pd.DataFrame({"units": values * 2}).to_csv(data, index=False)
    refusal = (rf"^resume: study {result.parent_run_id} forecast another csv series \(seed 0\) than this "
               r"command draws \(dataset fingerprint \w+, here \w+\): its data changed since; run the study "
               r"afresh$")
    with pytest.raises(ConfigError, match=refusal):
        rnn_vs_arma.study_to_resume(result.parent_run_id, config, store)
    assert client.get_run(half).info.lifecycle_stage == "active"  # a refusal changes nothing in the store
