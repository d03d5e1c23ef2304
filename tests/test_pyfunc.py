"""Every tracked run logs its network as an MLflow pyfunc model (signature, (T, B, D) input example, the code
it needs), its one LoggedModel, that a fresh process loads with mlflow.pyfunc by run and by model id and that
predicts model.predict's bits; the run records its environment (versions, BLAS, git state and the diff of
uncommitted changes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from logged_models import loaded_predictions, the_logged_model
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from test_configs import composed
from test_resume import store_overrides
from test_train_app import TINY, runs_of

from harness.environment import git_changes
from harness.nn import load_model
from harness.run import run


@pytest.mark.parametrize("overrides", [("task=bit_sum",),
                                       ("task=reversal", "task.n_symbols=3", "model=lstm")])
def test_logged_model_loads_in_a_fresh_process_and_predicts_to_zero_ulp(tmp_path: Path, tracking_settings,
                                                                        overrides: tuple[str, ...]) -> None:
    run(composed(*TINY, *overrides, *store_overrides(tracking_settings), "trainer.progress=false"))
    (tracked,) = runs_of(tracking_settings)
    run_id = tracked.info.run_id
    client = MlflowClient(tracking_settings.tracking_uri)
    logged = the_logged_model(client, tracked)
    steps = int(tracked.data.metrics["steps_done"])
    (output,) = client.get_run(run_id).outputs.model_outputs
    assert output.step == steps
    assert {m.key for m in logged.metrics} >= {"steps_done", "solved", "objective"}
    assert all(m.step == steps and m.model_id == logged.model_id for m in logged.metrics)
    network = load_model(client.download_artifacts(run_id, "model.npz", str(tmp_path)))
    X = np.random.default_rng(5).normal(size=(11, 7, network.config["input_size"]))

    predictions, used = loaded_predictions(tmp_path, tracking_settings.tracking_uri, X,
                                           f"runs:/{run_id}/model", f"models:/{logged.model_id}")
    assert f"{os.sep}code{os.sep}harness{os.sep}" in used, "the model's own copy of the code was used"
    expected = network.predict(X)
    for predicted in predictions:
        assert predicted.dtype == expected.dtype and np.array_equal(predicted, expected)  # 0 ULP

    # the files are the model's alone, not the run's too
    assert "model" not in {item.path for item in client.list_artifacts(run_id)}
    local = Path(download_artifacts(artifact_uri=logged.artifact_location, dst_path=str(tmp_path / "art"),
                                    tracking_uri=tracking_settings.tracking_uri))
    info = Model.load(str(local / "MLmodel"))
    assert (info.run_id, info.model_id, info.artifact_path) == (run_id, logged.model_id,
                                                                logged.artifact_location)
    (spec,) = info.signature.inputs.inputs
    assert spec.shape == (-1, -1, network.config["input_size"]) and spec.type == np.dtype("float64")
    example = np.asarray(json.loads((local / info.saved_input_example_info["artifact_path"]).read_text()))
    assert example.ndim == 3 and example.shape[1] == 2 and example.shape[2] == network.config["input_size"]
    assert "(T, B, D)" in info.metadata["description"]
    assert tracked.data.tags["model.description"] == info.metadata["description"]


def test_run_records_its_environment(tmp_path: Path, tracking_settings) -> None:
    run(composed(*TINY, *store_overrides(tracking_settings), "trainer.progress=false"))
    (tracked,) = runs_of(tracking_settings)
    tags = tracked.data.tags
    assert tags["env.numpy"] == np.__version__ and tags["env.python"] == sys.version.split()[0]
    assert tags["env.mlflow"] and tags["env.statsmodels"] and "1 thread" in tags["env.blas"]
    assert len(tags["mlflow.source.git.commit"]) == 40
    artifacts = {item.path for item in MlflowClient(tracking_settings.tracking_uri).list_artifacts(
        tracked.info.run_id)}
    assert tags["git.dirty"] in ("true", "false")
    assert ("git_diff.patch" in artifacts) == (tags["git.dirty"] == "true")


def test_git_changes_tell_a_clean_tree_from_a_dirty_one(tmp_path: Path) -> None:
    repo, plain = tmp_path / "repo", tmp_path / "plain"
    repo.mkdir(), plain.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                       capture_output=True)

    git("init", "-q")
    (repo / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("commit", "-qm", "a")
    assert git_changes(repo) == (False, "")
    (repo / "a.txt").write_text("two\n")
    (repo / "new.txt").write_text("x\n")
    dirty, patch = git_changes(repo)
    assert dirty and "-one\n+two\n" in patch and patch.endswith("# untracked: new.txt\n")
    assert git_changes(plain) is None


def test_a_model_upload_that_fails_leaves_no_model_and_the_earlier_one_found(tmp_path: Path,
                                                                             tracking_settings) -> None:
    """A LoggedModel whose logging fails on the way (here: a folder with no MLmodel) is deleted, not left
    FAILED: runs:/<run id>/model takes the run's newest model whatever its status, and must still find the
    run's earlier READY one."""
    from harness.tracking.logged_model import log_logged_model

    run(composed(*TINY, *store_overrides(tracking_settings), "trainer.progress=false"))
    (tracked,) = runs_of(tracking_settings)
    client = MlflowClient(tracking_settings.tracking_uri)
    logged = the_logged_model(client, tracked)
    (tmp_path / "broken").mkdir()
    with pytest.raises(MlflowException, match="MLmodel"):
        log_logged_model(client, tracked.info.run_id, tmp_path / "broken", "no files")
    assert the_logged_model(client, tracked).model_id == logged.model_id
    network = load_model(client.download_artifacts(tracked.info.run_id, "model.npz", str(tmp_path)))
    X = np.random.default_rng(5).normal(size=(3, 2, network.config["input_size"]))
    (predicted,), _ = loaded_predictions(tmp_path, tracking_settings.tracking_uri, X,
                                         f"runs:/{tracked.info.run_id}/model")
    assert np.array_equal(predicted, network.predict(X))
