"""Tracking through a real ``mlflow server`` (subprocess, proxied artifacts): a parallel sweep, an unreachable
server, a server that dies during a run. Backends: SQLite (a copy of the session's migrated template) and,
where PostgreSQL's server binaries and the psycopg2 driver are installed, a throwaway PostgreSQL cluster."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_train_app import ROOT, TINY, app_env

from harness.nn import load_model
from harness.tracking.server import free_port, local_server

TRAIN = str(ROOT / "experiments" / "train.py")


def server_app_command(uri: str, *args: str, experiment: str = "server") -> list[str]:
    return [sys.executable, TRAIN, *args, "tracking=server", f"tracking.uri={uri}",
            f"tracking.experiment={experiment}"]


def postgres_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture
def postgres_uri(tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL cluster in tmp_path on a free port with an empty database; its SQLAlchemy URI."""
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    if importlib.util.find_spec("psycopg2") is None:
        pytest.skip("the psycopg2 driver MLflow needs for postgresql:// stores is not installed")
    if os.geteuid() == 0:
        pytest.skip("PostgreSQL refuses to run as root")
    data, port = tmp_path / "pgdata", free_port()
    subprocess.run([binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust"], check=True,
                   capture_output=True)
    options = f"-p {port} -k {tmp_path} -c listen_addresses=127.0.0.1"
    subprocess.run([binaries / "pg_ctl", "-D", data, "-l", tmp_path / "pg.log", "-w", "start", "-o", options],
                   check=True, capture_output=True)
    try:
        subprocess.run([binaries / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "mlflow"], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([binaries / "pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_store_uri(request: pytest.FixtureRequest, template_store: Path, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_uri")
    db = tmp_path / "server.db"
    shutil.copyfile(template_store, db)  # already migrated: the server starts without the ~3 s migration
    return f"sqlite:///{db}"


def test_parallel_sweep_sends_every_run_metric_and_artifact_to_the_server(tmp_path: Path,
                                                                          backend_store_uri: str) -> None:
    artifacts = tmp_path / "server_artifacts"
    with local_server(backend_store_uri, artifacts, log_path=tmp_path / "server.log") as server:
        done = subprocess.run(
            server_app_command(server.uri, "-m", *TINY, "seed=0,1", "model=elman,gru",
                               "hydra/launcher=joblib", f"hydra.sweep.dir={tmp_path}/sweep"),
            capture_output=True, text=True, env=app_env(tmp_path), cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        client = MlflowClient(tracking_uri=server.uri)
        experiment = client.get_experiment_by_name("server")
        # proxied artifacts: clients upload through the server, no shared filesystem needed
        assert experiment.artifact_location.startswith("mlflow-artifacts:")
        runs = client.search_runs([experiment.experiment_id])
        (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
        children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert len(runs) == 5 and parent.info.status == "FINISHED" and parent.data.metrics["finished"] == 4.0
        assert sorted(run.info.run_name for run in children) == [
            "bit_sum-elman-s0", "bit_sum-elman-s1", "bit_sum-gru-s0", "bit_sum-gru-s1"]
        assert {run.info.status for run in children} == {"FINISHED"}
        for run in children:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
            assert steps == list(range(1, 9)), run.info.run_name
            assert run.data.params["trainer.steps"] == "8"
        weights = client.download_artifacts(children[0].info.run_id, "model.npz", str(tmp_path))
        assert load_model(weights).hidden_size == 4
    # the server wrote every run's files into its artifacts destination
    assert len(list(artifacts.rglob("model.npz"))) == 4
    assert len(list(artifacts.rglob("loss.png"))) == 4


@pytest.mark.parametrize("how", ["tracking=server", "MLFLOW_TRACKING_URI", "multirun"])
def test_unreachable_server_is_one_line_before_any_run(tmp_path: Path, how: str) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = app_env(tmp_path)
    if how == "MLFLOW_TRACKING_URI":
        env["MLFLOW_TRACKING_URI"] = uri
        command = [sys.executable, TRAIN, *TINY]
    else:
        sweep = ["-m", f"hydra.sweep.dir={tmp_path}/sweep"] if how == "multirun" else []
        command = server_app_command(uri, *sweep, *TINY)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"config error: tracking.uri: no MLflow tracking server answers at {uri} (GET /health: [Errno 111] "
        f"Connection refused); start it (mlflow server ...) or use tracking=local"], done.stderr[-3000:]


def wait_for_metric(client: MlflowClient, process: subprocess.Popen, key: str, timeout: float = 240) -> str:
    """The run id of the first run with a value of key on the server, polled while process runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it flushed metrics"
        experiment = client.get_experiment_by_name("server")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and client.get_metric_history(runs[0].info.run_id, key):
            return runs[0].info.run_id
        time.sleep(0.3)
    raise AssertionError(f"no {key} on the server after {timeout} s")


def test_server_lost_mid_run_keeps_what_it_did_not_receive_in_the_job_folder(tmp_path: Path,
                                                                            template_store: Path) -> None:
    db, artifacts, port = tmp_path / "server.db", tmp_path / "server_artifacts", free_port()
    shutil.copyfile(template_store, db)
    steps = 6000
    command = server_app_command(f"http://127.0.0.1:{port}", *TINY, f"trainer.steps={steps}",
                                 "trainer.eval_interval=1000", "trainer.diagnostics_interval=0",
                                 f"hydra.run.dir={tmp_path}/job")
    with local_server(f"sqlite:///{db}", artifacts, port=port) as server:
        process = subprocess.Popen(command, env=app_env(tmp_path), cwd=tmp_path, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        try:
            run_id = wait_for_metric(MlflowClient(tracking_uri=server.uri), process, "train/loss")
            server.kill()
            _, stderr = process.communicate(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 1, stderr[-3000:]
    record = tmp_path / "job" / f"offline-run-{run_id}.jsonl"
    assert stderr.strip().splitlines()[-1] == (
        f"tracking server http://127.0.0.1:{port} stopped answering during run {run_id}; what it did not "
        f"receive is saved in {record}")
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert lines[0]["kind"] == "lost" and lines[-1] == {"kind": "status", "status": "FINISHED", "error": None}
    offline_steps = {line["step"] for line in lines
                     if line["kind"] == "metric" and line["key"] == "train/loss"}
    assert steps in offline_steps
    saved = {Path(line["path"]).name for line in lines if line["kind"] == "artifact"}
    assert {"model.npz", "loss.png"} <= saved
    # back up on the same store: what the server received plus the offline record is the whole run
    with local_server(f"sqlite:///{db}", artifacts, port=port) as server:
        client = MlflowClient(tracking_uri=server.uri)
        received = {m.step for m in client.get_metric_history(run_id, "train/loss")}
        assert received and received | offline_steps == set(range(1, steps + 1))
        assert client.get_run(run_id).info.status == "RUNNING"  # its end never reached the server


def test_only_failures_to_reach_the_server_count_as_a_lost_server() -> None:
    from mlflow.exceptions import MlflowException, RestException

    from harness.tracking.server import server_lost

    refused = "API request to http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch failed with exception refused"
    assert server_lost(MlflowException(refused))
    # the server answered: a bad request is the caller's error, raised as usual
    assert not server_lost(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}))
    assert not server_lost(ValueError("unrelated"))
