"""Credentials in a tracking URI never reach the store, the artifacts, Hydra's output folders or the terminal.
A real MLflow server on loopback, real Hydra sweeps, and a grep of every file they wrote."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient
from test_train_app import ROOT, TINY, app_env

from harness.tracking.redact import redact
from harness.tracking.server import local_server

SECRET = "pa55-w0rd-XYZ"


def files_holding(folder: Path, needle: bytes) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_redact_hides_user_information_of_every_uri() -> None:
    text = (f"tracking.uri=postgresql+psycopg://mlflow:{SECRET}@db:5432/mlflow and https://{SECRET}@host/x, "
            f"mysql://u:p@ss{SECRET}@h/d; sqlite:////tmp/mlflow.db; a@b.c; http\\://u\\:{SECRET}@h\\:5000")
    assert redact(text) == ("tracking.uri=postgresql+psycopg://***@db:5432/mlflow and https://***@host/x, "
                            "mysql://***@h/d; sqlite:////tmp/mlflow.db; a@b.c; http\\://***@h\\:5000")


def test_credentials_in_a_server_uri_are_found_nowhere(tmp_path: Path, template_store: Path) -> None:
    db, artifacts = tmp_path / "server.db", tmp_path / "server_artifacts"
    shutil.copyfile(template_store, db)
    with local_server(f"sqlite:///{db}", artifacts) as server:
        uri = server.uri.replace("http://", f"http://harness:{SECRET}@")
        outputs = []
        for sweep in (["-m", "seed=0,1", f"hydra.sweep.dir={tmp_path}/mlruns/sweep"], ["seed=2"]):
            command = [sys.executable, str(ROOT / "experiments" / "train.py"), *sweep, *TINY,
                       "tracking=server", f"tracking.uri={uri}", "tracking.experiment=secrets"]
            done = subprocess.run(command, capture_output=True, text=True, env=app_env(tmp_path),
                                  cwd=tmp_path, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            outputs.append(done.stdout + done.stderr)
        client = MlflowClient(tracking_uri=server.uri)
        experiment = client.get_experiment_by_name("secrets")
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == 4  # a parent, two jobs, one single run
        for run in runs:
            if "mlflow.parentRunId" in run.data.tags or run.data.params:
                assert run.data.params["tracking.uri"] == server.uri.replace("http://", "http://***@")
    needle = SECRET.encode()
    leaks = [line for output in outputs for line in output.splitlines() if SECRET in line]
    assert leaks == []
    assert files_holding(tmp_path / "mlruns", needle) == []  # Hydra's folders: .hydra/*.yaml, logs, multirun
    assert files_holding(artifacts, needle) == []  # config.yaml, overrides.yaml, checkpoints, models
    assert needle not in db.read_bytes()  # params, tags, errors
    assert (tmp_path / "mlruns" / "sweep" / "multirun.yaml").is_file()
