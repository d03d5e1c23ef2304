"""The checks every test of a run's pyfunc model makes: its one LoggedModel, and what a fresh process that
loads it by URI predicts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import LoggedModel, LoggedModelStatus

FRESH_PROCESS = """
import sys, numpy as np, mlflow.pyfunc
X = np.load(sys.argv[1])
for k, uri in enumerate(sys.argv[3:]):
    np.save(f"{sys.argv[2]}{k}.npy", mlflow.pyfunc.load_model(uri).predict(X))
import harness
print(harness.__file__)
"""


def the_logged_model(client: MlflowClient, run) -> LoggedModel:
    """The run's one LoggedModel: named "model", READY, made by the run, among the run's outputs, with the
    run's params, source tags and the model's description (the run's tag model.description) as its own."""
    run_id = run.info.run_id
    (model,) = client.search_logged_models(experiment_ids=[run.info.experiment_id],
                                           filter_string=f"source_run_id = '{run_id}'")
    assert (model.name, model.status, model.source_run_id) == ("model", LoggedModelStatus.READY, run_id)
    run = client.get_run(run_id)
    assert model.model_id in {output.model_id for output in run.outputs.model_outputs}
    assert model.tags["mlflow.note.content"] == run.data.tags["model.description"]
    source = {key: value for key, value in run.data.tags.items() if key.startswith("mlflow.source.")}
    assert source and source.items() <= model.tags.items()  # the UI's "Logged from"
    assert model.params == run.data.params
    return model


def loaded_predictions(tmp_path: Path, tracking_uri: str, X: np.ndarray, *uris: str) -> tuple[list, str]:
    """What mlflow.pyfunc.load_model(uri).predict(X) gives for each uri in a fresh process that does not
    import this tree's harness, and the path of the harness package it used."""
    np.save(tmp_path / "X.npy", X)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["MLFLOW_TRACKING_URI"] = tracking_uri  # the user's process, not the harness
    command = [sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "X.npy"), str(tmp_path / "Y"), *uris]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [np.load(tmp_path / f"Y{k}.npy") for k in range(len(uris))], done.stdout
