"""Every tracked run logs its network as an MLflow pyfunc model (signature, (T, B, D) input example, the code
it needs) that a fresh process loads with mlflow.pyfunc and that predicts model.predict's bits; the run
records its environment (versions, BLAS, git state and the diff of uncommitted changes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.models import Model
from test_configs import composed
from test_resume import store_overrides
from test_train_app import TINY, runs_of

from harness.environment import git_changes
from harness.nn import load_model
from harness.run import run

FRESH_PROCESS = """
import sys, numpy as np, mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
import harness
print(harness.__file__)
np.save(sys.argv[3], model.predict(np.load(sys.argv[2])))
"""


@pytest.mark.parametrize("overrides", [("task=bit_sum",),
                                       ("task=reversal", "task.n_symbols=3", "model=lstm")])
def test_logged_model_loads_in_a_fresh_process_and_predicts_to_zero_ulp(tmp_path: Path, tracking_settings,
                                                                        overrides: tuple[str, ...]) -> None:
    run(composed(*TINY, *overrides, *store_overrides(tracking_settings), "trainer.progress=false"))
    (tracked,) = runs_of(tracking_settings)
    run_id = tracked.info.run_id
    client = MlflowClient(tracking_settings.tracking_uri)
    network = load_model(client.download_artifacts(run_id, "model.npz", str(tmp_path)))
    X = np.random.default_rng(5).normal(size=(11, 7, network.config["input_size"]))
    np.save(tmp_path / "X.npy", X)

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["MLFLOW_TRACKING_URI"] = tracking_settings.tracking_uri  # the user's process, not the harness
    command = [sys.executable, "-c", FRESH_PROCESS, f"runs:/{run_id}/model", str(tmp_path / "X.npy"),
               str(tmp_path / "Y.npy")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{os.sep}code{os.sep}harness{os.sep}" in done.stdout, "the model's own copy of the code was used"
    predicted = np.load(tmp_path / "Y.npy")
    expected = network.predict(X)
    assert predicted.dtype == expected.dtype and np.array_equal(predicted, expected)  # 0 ULP

    local = Path(client.download_artifacts(run_id, "model", str(tmp_path / "art")))
    info = Model.load(str(local / "MLmodel"))
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
