"""python -m harness.report <sweep parent>: a real sweep (subprocess, real Hydra and MLflow) grouped over
seeds, printed and logged to its parent run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import store_copy
from mlflow import MlflowClient
from test_train_app import TINY, app, runs_of

from harness.report import main
from harness.seed_report import group_label, seed_markdown, seed_report
from harness.seed_stats import summarize_over_seeds, t_interval, wilson_interval
from harness.tracking import TrackingSettings
from harness.tracking.server import free_port


@pytest.fixture(scope="module")
def store(template_store: Path, tmp_path_factory: pytest.TempPathFactory) -> TrackingSettings:
    return store_copy(template_store, tmp_path_factory.mktemp("seed_report"), "test")


@pytest.fixture(scope="module")
def sweep(store: TrackingSettings):
    """One 2 x 3 sweep (hidden size x seed) shared by the module's tests."""
    workdir = Path(store.artifact_root).parents[1]
    done = app(workdir, store, "-m", *TINY, "model.hidden_size=4,8", "seed=0,1,2")
    assert done.returncode == 0, done.stderr
    runs = runs_of(store)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent.info.run_id, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_runs_are_grouped_by_what_the_sweep_varies_except_the_seed(sweep, store) -> None:
    parent_id, children = sweep
    report = seed_report(parent_id, store)
    assert report.groups == ["model.hidden_size"] and report.table["model.hidden_size"].tolist() == ["4", "8"]
    assert report.table["seeds"].tolist() == [3, 3]
    assert "objective" in report.metrics and not any(m.startswith("train/") for m in report.metrics)
    for _, row in report.table.iterrows():
        size = row["model.hidden_size"]
        members = sorted((r for r in children if r.data.params["model.hidden_size"] == size),
                         key=lambda r: int(r.data.params["seed"]))
        objective = [r.data.metrics["objective"] for r in members]
        assert row["objective_mean"] == np.mean(objective)
        assert (row["objective_low"], row["objective_high"]) == t_interval(objective)
        solved = sum(r.data.metrics["solved"] for r in members)
        assert (row["solved_low"], row["solved_high"]) == wilson_interval(int(solved), 3)
        assert report.runs[f"model.hidden_size={size}"] == [r.info.run_id for r in members]


def test_the_command_prints_the_table_and_logs_it_with_band_plots(sweep, store, capsys,
                                                                   tmp_path: Path) -> None:
    parent_id, _ = sweep
    main([parent_id, "--uri", store.tracking_uri, "--interval", "bootstrap"])
    out = capsys.readouterr().out
    assert "95% bootstrap percentile interval of the mean" in out and "solved [Wilson 95%]" in out
    client = MlflowClient(store.tracking_uri)
    logged = {a.path for a in client.list_artifacts(parent_id, "seeds")}
    assert logged == {"seeds/table.md", "seeds/table.csv", "seeds/train_loss.png", "seeds/val_loss.png"}
    table = Path(client.download_artifacts(parent_id, "seeds/table.md", str(tmp_path))).read_text()
    assert table.strip() in out


def test_a_run_that_is_no_sweep_parent_is_one_line(sweep, store) -> None:
    _, children = sweep
    with pytest.raises(SystemExit, match=f"error: run {children[0].info.run_id} has no child runs"):
        main([children[0].info.run_id, "--uri", store.tracking_uri])


HINT = ("; a run of another store needs --uri <its tracking URI> (the sweep's tracking.uri, e.g. --uri "
        "http://127.0.0.1:5000)")


def test_a_run_the_store_does_not_hold_is_one_line_naming_the_id_and_the_store(
        sweep, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    unknown = "0123456789abcdef0123456789abcdef"  # e.g. a server sweep's parent, looked up in the local store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)  # the store without --uri
    for argv in ([unknown], [unknown, "--uri", store.tracking_uri], ["not-an-id"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert str(stop.value) == f"error: run {argv[0]} not found in {store.tracking_uri}{HINT}"
    missing = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    with pytest.raises(SystemExit) as stop:
        main([unknown, "--uri", missing])
    assert str(stop.value) == (f"error: run {unknown} not found: there is no store at {missing} "
                               f"(no such file){HINT}")
    assert not (tmp_path / "none").exists()  # the look-up created no store
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(SystemExit) as stop:
        main([unknown, "--uri", server])
    assert str(stop.value) == (f"error: run {unknown} not looked up: no MLflow tracking server answers at "
                               f"{server} (GET /health: [Errno 111] Connection refused){HINT}")
    assert capsys.readouterr().out == ""


def test_a_parameter_that_does_not_apply_to_a_group_is_a_blank_cell() -> None:
    # an Elman/LSTM sweep: the LSTM runs log no model.activation (None in runs_frame, NaN once grouped)
    frame = pd.DataFrame({"model.name": ["elman", "elman", "lstm", "lstm"],
                          "model.activation": ["tanh", "tanh", None, None], "seed": [0, 1, 0, 1],
                          "objective": [1.0, 2.0, 3.0, 4.0]})
    groups = ["model.name", "model.activation"]
    table = summarize_over_seeds(frame, groups, ["objective"], solved=None, kind="t")
    markdown = seed_markdown(table, groups, ["objective"], "t")
    rows = [line.split("|")[1:3] for line in markdown.splitlines() if line.startswith("| lstm")]
    assert [cell.strip() for cell in rows[0]] == ["lstm", ""]
    assert "nan" not in markdown and "a blank parameter does not apply" in markdown
    assert [group_label(row, groups) for _, row in table.iterrows()] == [
        "model.name=elman model.activation=tanh", "model.name=lstm"]
