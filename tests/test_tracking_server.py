"""Tracking through a real ``mlflow server`` (subprocess, proxied artifacts): a parallel sweep, an unreachable
server, a server that dies during a run. Backends: SQLite (a copy of the session's migrated template) and,
where PostgreSQL's server binaries and the psycopg driver are installed, a throwaway PostgreSQL
cluster (run as the ``postgres`` system user when the tests run as root)."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from logged_models import loaded_predictions, the_logged_model
from mlflow import MlflowClient
from test_train_app import ROOT, TINY, app_env

from harness.nn import load_model
from harness.tracking.server import OfflineRecord, free_port, local_server

TRAIN = str(ROOT / "experiments" / "train.py")


def server_app_command(uri: str, *args: str, experiment: str = "server") -> list[str]:
    return [sys.executable, TRAIN, *args, "tracking=server", f"tracking.uri={uri}",
            f"tracking.experiment={experiment}"]


def postgres_binaries() -> Path | None:
    """The folder holding initdb, pg_ctl and createdb: on PATH, else /usr/lib/postgresql/<version>/bin.

    Symlinks are resolved: a PATH may link initdb and pg_ctl alone (Debian's /usr/local/bin), not createdb.
    """
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def postgres_account() -> dict[str, Any]:
    """subprocess.run arguments that run PostgreSQL's tools as an unprivileged user.

    PostgreSQL refuses to run as root (CI runs as root): there the tools run as the ``postgres`` system
    user, with root's supplementary groups dropped. Other users run them as themselves.
    """
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("PostgreSQL refuses to run as root and there is no `postgres` system user to run it as")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def run_postgres_tool(command: list[str | Path], account: dict[str, Any], cwd: Path) -> None:
    """Run one of PostgreSQL's tools as account; a failure fails the test with the tool's own message."""
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120, **account)
    if done.returncode != 0:
        pytest.fail(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()}")


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port with an empty database; its SQLAlchemy URI.

    The cluster lives in a mkdtemp folder owned by the user the server runs as, not in tmp_path: pytest's
    tmp_path is under a 0700 folder of the user running pytest, which the ``postgres`` user cannot enter.
    """
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg, the driver of postgresql+psycopg:// stores, is not installed")
    account = postgres_account()
    folder = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    if account:
        os.chown(folder, account["user"], account["group"])
    data, port = folder / "data", free_port()
    try:
        run_postgres_tool([binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust"], account,
                          folder)
        # the unix socket goes into the same folder: the default /var/run/postgresql may not exist
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
        try:
            run_postgres_tool([binaries / "pg_ctl", "-D", data, "-l", folder / "pg.log", "-w", "start",
                               "-o", options], account, folder)
            run_postgres_tool([binaries / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                               "mlflow"], account, folder)
            # the driver named as the README's team server does: what a bare postgresql:// loads depends on
            # the SQLAlchemy version (psycopg2 before 2.1)
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow"
        finally:
            stop = [binaries / "pg_ctl", "-D", data, "-w", "stop", "-m"]
            # fast rolls back open sessions and checkpoints; if it does not end within pg_ctl's wait (60 s),
            # immediate kills the server, so no cluster outlives the test
            for mode in ("fast", "immediate"):
                if subprocess.run([*stop, mode], capture_output=True, cwd=folder, timeout=120,
                                  **account).returncode == 0:
                    break
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])  # postgresql: ~19 s
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
        # MLflow's "🏃 View run ... at" and "🧪 View experiment at" lines, two per run ended (five runs:
        # the jobs' in the joblib workers, the parent's in the launching process): silenced
        assert "View run" not in done.stdout + done.stderr and "View experiment" not in done.stdout
        assert sorted(run.info.run_name for run in children) == [
            "bit_sum-elman-s0", "bit_sum-elman-s1", "bit_sum-gru-s0", "bit_sum-gru-s1"]
        assert {run.info.status for run in children} == {"FINISHED"}
        for run in children:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
            assert steps == list(range(1, 9)), run.info.run_name
            assert run.data.params["trainer.steps"] == "8"
        logged = [the_logged_model(client, run) for run in children]
        weights = client.download_artifacts(children[0].info.run_id, "model.npz", str(tmp_path))
        network = load_model(weights)
        assert network.hidden_size == 4
        X = np.random.default_rng(0).normal(size=(5, 3, network.config["input_size"]))
        predictions, _ = loaded_predictions(tmp_path, server.uri, X, f"runs:/{children[0].info.run_id}/model",
                                            f"models:/{logged[0].model_id}")
        assert all(np.array_equal(predicted, network.predict(X)) for predicted in predictions)
    # the server wrote every run's files into its artifacts destination: <experiment>/<run>/artifacts/
    # the weights, <experiment>/models/<model id>/artifacts/ the pyfunc model with its own copy of them
    assert len(list(artifacts.glob("*/*/artifacts/model.npz"))) == 4
    assert len(list(artifacts.glob("*/models/*/artifacts/artifacts/model.npz"))) == 4
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


@pytest.mark.slow  # the default suite's 10-minute budget; its fast twin stays there
def test_reap_and_report_on_a_server_print_one_line_each_and_no_view_links(tmp_path: Path,
                                                                            template_store: Path) -> None:
    db = tmp_path / "server.db"
    shutil.copyfile(template_store, db)
    with local_server(f"sqlite:///{db}", tmp_path / "server_artifacts") as server:
        client = MlflowClient(tracking_uri=server.uri)
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()  # a run whose process no longer exists, as a SIGKILLed job leaves it on a server
        lost = client.create_run(client.create_experiment("server"), run_name="lost", tags={
            "harness.host": socket.gethostname(), "harness.pid": str(gone.pid)}).info.run_id
        reap = subprocess.run([sys.executable, "-m", "harness.tracking.reap", "--uri", server.uri],
                              capture_output=True, text=True, env=app_env(tmp_path), timeout=120)
        assert reap.returncode == 0, reap.stderr[-3000:]
        # before: MLflow's two "View run" / "View experiment" lines between these
        assert reap.stdout.splitlines() == [f"ended KILLED: {lost} lost",
                                            "1 of 1 RUNNING runs had lost their process on this host"]
        assert client.get_run(lost).info.status == "KILLED"
        unknown = "0123456789abcdef0123456789abcdef"
        report = subprocess.run([sys.executable, "-m", "harness.report", unknown, "--uri", server.uri],
                                capture_output=True, text=True, env=app_env(tmp_path), timeout=120)
        assert report.returncode == 1
        assert report.stderr.splitlines() == [  # before: 23 lines of traceback
            f"error: run {unknown} not found in {server.uri}; a run of another store needs --uri <its "
            "tracking URI> (the sweep's tracking.uri, e.g. --uri http://127.0.0.1:5000)"]


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


def run_until_server_lost(command: list[str], db: Path, artifacts: Path, port: int, tmp_path: Path, *,
                          timeout: float) -> tuple[subprocess.Popen, str, str, str]:
    """Run command against a server on db and port, kill the server once the first run has a train/loss
    value, and let the command finish: (the process, that run's id, its stdout, its stderr)."""
    with local_server(f"sqlite:///{db}", artifacts, port=port) as server:
        process = subprocess.Popen(command, env=app_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            run_id = wait_for_metric(MlflowClient(tracking_uri=server.uri), process, "train/loss")
            server.kill()
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
    return process, run_id, stdout, stderr


@pytest.mark.slow  # ~45 s
def test_server_lost_mid_run_keeps_what_it_did_not_receive_in_the_job_folder(tmp_path: Path,
                                                                            template_store: Path) -> None:
    db, artifacts, port = tmp_path / "server.db", tmp_path / "server_artifacts", free_port()
    shutil.copyfile(template_store, db)
    steps = 6000
    command = server_app_command(f"http://127.0.0.1:{port}", *TINY, f"trainer.steps={steps}",
                                 "trainer.eval_interval=1000", "trainer.diagnostics_interval=0",
                                 f"hydra.run.dir={tmp_path}/job")
    process, run_id, _, stderr = run_until_server_lost(command, db, artifacts, port, tmp_path, timeout=300)
    assert process.returncode == 1, stderr[-3000:]
    record = tmp_path / "job" / f"offline-run-{run_id}.jsonl"
    assert stderr.strip().splitlines()[-1] == (
        f"tracking server http://127.0.0.1:{port} stopped answering during run {run_id}; what it did not "
        f"receive is saved in {record}")
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    end = lines[-1].pop("end_time")  # when the run really ended: the replay gives it to the server
    assert lines[0]["kind"] == "lost" and lines[-1] == {"kind": "status", "status": "FINISHED", "error": None}
    offline_steps = {line["step"] for line in lines
                     if line["kind"] == "metric" and line["key"] == "train/loss"}
    assert steps in offline_steps
    saved = {Path(line["path"]).name for line in lines if line["kind"] == "artifact"}
    assert {"model.npz", "loss.png"} <= saved
    # offline, the pyfunc model is kept as the run's artifacts model/ (no LoggedModel without the server)
    assert "model/MLmodel" in {line["artifact_path"] for line in lines if line["kind"] == "artifact"}
    # back up on the same store: what the server received plus the offline record is the whole run
    with local_server(f"sqlite:///{db}", artifacts, port=port) as server:
        client = MlflowClient(tracking_uri=server.uri)
        received = {m.step for m in client.get_metric_history(run_id, "train/loss")}
        assert received and received | offline_steps == set(range(1, steps + 1))
        assert client.get_run(run_id).info.status == "RUNNING"  # its end never reached the server
        # a LoggedModel the server was left with half-made (lost mid-upload) would hide the replayed files
        experiment_id = client.get_run(run_id).info.experiment_id
        client.create_logged_model(experiment_id, name="model", source_run_id=run_id)
        # the replay sends the rest and ends the run; a second replay changes nothing
        for _ in range(2):
            done = subprocess.run([sys.executable, "-m", "harness.tracking.replay", str(record), "--uri",
                                   server.uri], capture_output=True, text=True, env=app_env(tmp_path),
                                  timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            history = client.get_metric_history(run_id, "train/loss")
            assert sorted(m.step for m in history) == list(range(1, steps + 1))
        summary = done.stdout.strip().splitlines()[-1]  # MLflow prints a link to the run before it
        assert summary.startswith(f"run {run_id} on {server.uri}: replayed ") and summary.endswith("FINISHED")
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.metrics["diverged"] == 0.0
        assert run.info.end_time == end
        assert {"model.npz", "figures", "model"} <= {item.path for item in client.list_artifacts(run_id)}
        assert client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'") == []


def test_replay_refuses_a_file_that_is_no_offline_record(tmp_path: Path) -> None:
    not_a_record = tmp_path / "notes.jsonl"
    not_a_record.write_text('{"kind": "metric"}\n')
    cases = ((not_a_record, "is not an offline run record"), (tmp_path / "gone.jsonl", "no such file"))
    for path, reason in cases:
        done = subprocess.run([sys.executable, "-m", "harness.tracking.replay", str(path)],
                              capture_output=True, text=True, env=app_env(tmp_path), timeout=300)
        assert done.returncode == 1
        assert done.stderr.startswith("replay error: record: ") and reason in done.stderr


def test_only_failures_to_reach_the_server_count_as_a_lost_server() -> None:
    from mlflow.exceptions import MlflowException, RestException

    from harness.tracking.server import server_lost

    refused = "API request to http://127.0.0.1:1/api/2.0/mlflow/runs/log-batch failed with exception refused"
    assert server_lost(MlflowException(refused))
    # the server answered: a bad request is the caller's error, raised as usual
    assert not server_lost(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}))
    assert not server_lost(ValueError("unrelated"))


def replay_command(record: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "harness.tracking.replay", str(record), *args]


def offline_record(folder: Path, run_id: str, uri: str, artifacts: dict[str, str]) -> OfflineRecord:
    """A record as a run that lost its server leaves it: metric values 0..9 and the text artifacts given."""
    record = OfflineRecord(run_id, uri, RuntimeError("connection refused"), directory=folder)
    record.metrics([("loss", float(step), 1000 + step, step) for step in range(10)])
    for name, text in artifacts.items():
        record.text(text, name)
    return record


def test_replay_sends_only_the_records_own_artifacts_and_the_complete_lines(tmp_path: Path,
                                                                             template_store: Path) -> None:
    db = tmp_path / "server.db"
    shutil.copyfile(template_store, db)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the server")
    with local_server(f"sqlite:///{db}", tmp_path / "server_artifacts") as server:
        client = MlflowClient(tracking_uri=server.uri)
        run_id = client.create_run(client.create_experiment("replay")).info.run_id
        env = app_env(tmp_path)
        # an artifact line pointing outside the record's folder (by path, by "..", by a symlink)
        crafted = offline_record(tmp_path / "crafted", run_id, server.uri, {"ok.txt": "fine"})
        crafted.write([{"kind": "artifact", "path": str(secret), "artifact_path": "../../secret.txt"}])
        (crafted.artifact_dir / "link.txt").symlink_to(secret)
        for line in ({"kind": "artifact", "path": str(secret), "artifact_path": "../../secret.txt"},
                     {"kind": "artifact", "path": str(secret), "artifact_path": "link.txt"}):
            crafted.path.write_text(crafted.path.read_text().splitlines()[0] + "\n" + json.dumps(line) + "\n")
            done = subprocess.run(replay_command(crafted.path, "--uri", server.uri), capture_output=True,
                                  text=True, env=env, timeout=300)
            assert done.returncode == 1 and "which is not a file inside" in done.stderr, done.stderr[-2000:]
        # a record renamed to another run, and a record replayed without naming the target
        renamed = crafted.path.with_name("offline-run-0123456789abcdef.jsonl")
        shutil.copyfile(crafted.path, renamed)
        done = subprocess.run(replay_command(renamed, "--uri", server.uri), capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 1 and "not the run of its file name" in done.stderr
        truncated = offline_record(tmp_path / "truncated", run_id, server.uri, {"notes.txt": "kept"})
        truncated.close("FINISHED")
        with truncated.path.open("a") as sink:
            sink.write('{"kind": "metric", "key": "loss", "val')  # the process died writing this line
        lines = len(truncated.path.read_text().splitlines())
        done = subprocess.run(replay_command(truncated.path), capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == 1 and "pass --uri" in done.stderr
        assert client.get_metric_history(run_id, "loss") == []
        assert client.list_artifacts(run_id) == []  # nothing of the refused records reached the server
        done = subprocess.run(replay_command(truncated.path, "--uri", server.uri), capture_output=True,
                              text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        summary = done.stdout.strip().splitlines()[-1]
        assert summary.endswith(f"ended FINISHED; skipped incomplete line {lines}")
        assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == list(range(10))
        assert [item.path for item in client.list_artifacts(run_id)] == ["notes.txt"]
        assert client.get_run(run_id).info.status == "FINISHED"


# a server start and two replays (69 s at load 7-11); a record replayed to a server stays in the default run
@pytest.mark.slow
def test_replay_creates_a_run_that_started_offline_once(tmp_path: Path, template_store: Path) -> None:
    """A sweep job that started while its server was gone holds its whole run under a local id; MLflow's API
    lets no client choose a run id, so the replay creates the run and maps the ids (tag)."""
    db = tmp_path / "server.db"
    shutil.copyfile(template_store, db)
    with local_server(f"sqlite:///{db}", tmp_path / "server_artifacts") as server:
        client = MlflowClient(tracking_uri=server.uri)
        parent = client.create_run(client.create_experiment("sweeps")).info.run_id
        start = 1_700_000_000_000
        name = "bit_sum-elman-s1"
        record = OfflineRecord.started(server.uri, RuntimeError("refused"), "sweeps", name, start,
                                       directory=tmp_path / "sweep" / "1")
        record.pairs("tag", {"mlflow.parentRunId": parent, "mlflow.runName": "bit_sum-elman-s1"})
        record.pairs("param", {"seed": "1"})
        record.metrics([("loss", 1.0 / (step + 1), start + step, step) for step in range(5)])
        record.text("kept", "notes.txt")
        record.close("FINISHED", end_time=start + 60_000)
        local_id = record.run_id
        assert len(local_id) == 32 and int(local_id, 16) >= 0  # MLflow's format: uuid4 hex
        summaries = []
        for _ in range(2):  # the second replay finds the run the first created
            done = subprocess.run(replay_command(tmp_path / "sweep", "--uri", server.uri),
                                  capture_output=True, text=True, env=app_env(tmp_path), timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            summaries.append(done.stdout.strip().splitlines()[-1])
        (run,) = [run for run in client.search_runs([client.get_experiment_by_name("sweeps").experiment_id])
                  if run.info.run_id != parent]
        run_id = run.info.run_id
        assert run_id != local_id and run.data.tags["harness.offline_run_id"] == local_id
        assert summaries[0].startswith(f"run {run_id} (started offline as {local_id}; created now, tag "
                                       f"harness.offline_run_id) on {server.uri}: replayed ")
        assert "created by an earlier replay" in summaries[1] and summaries[1].endswith("ended FINISHED")
        assert run.info.status == "FINISHED" and run.info.run_name == "bit_sum-elman-s1"
        assert (run.info.start_time, run.info.end_time) == (start, start + 60_000)
        assert run.data.tags["mlflow.parentRunId"] == parent and run.data.params == {"seed": "1"}
        assert sorted(m.step for m in client.get_metric_history(run_id, "loss")) == list(range(5))
        assert [item.path for item in client.list_artifacts(run_id)] == ["notes.txt"]


@pytest.mark.slow  # two server starts and a 6000-step job: about 2.5 minutes on a loaded machine
def test_a_server_lost_during_a_sweep_ends_no_sweep_and_loses_no_run(tmp_path: Path,
                                                                     template_store: Path) -> None:
    db, artifacts, port = tmp_path / "server.db", tmp_path / "server_artifacts", free_port()
    shutil.copyfile(template_store, db)
    sweep = tmp_path / "sweep"
    # job 0 trains long enough to lose its server; jobs 1 and 2 start after it is gone
    command = server_app_command(f"http://127.0.0.1:{port}", "-m", *TINY, "trainer.steps=6000,8,8",
                                 "trainer.eval_interval=1000", "trainer.diagnostics_interval=0",
                                 f"hydra.sweep.dir={sweep}")
    process, run_id, stdout, stderr = run_until_server_lost(command, db, artifacts, port, tmp_path,
                                                            timeout=500)
    assert process.returncode == 0, stderr[-3000:]
    output = stderr + stdout
    assert all(f"job {job} went offline" in output for job in range(3))
    records = {job: next((sweep / job).glob("offline-run-*.jsonl")) for job in ("0", "1", "2")}
    assert records["0"].name == f"offline-run-{run_id}.jsonl"
    (parent_record,) = sweep.glob("offline-run-*.jsonl")
    parent_id = parent_record.stem.removeprefix("offline-run-")
    last = stdout.strip().splitlines()[-6:]  # the sweep's last lines say what went offline and what to do
    assert last[0] == (f"sweep {parent_id}: 3 jobs; the tracking server did not answer at its end, which is "
                       f"saved in {parent_record}")
    assert last[1] == "3 jobs kept their runs offline (the tracking server did not answer):"
    assert last[2] == f"  job 0: run {run_id}, lost the server while it ran: {records['0']}"
    for job, line in zip("12", last[3:5], strict=True):
        local_id = records[job].stem.removeprefix("offline-run-")
        assert line == (f"  job {job}: run {local_id}, started offline (local id; the replay creates it "
                        f"under a new one): {records[job]}")
    assert last[5] == (f"send these records and the sweep's own end once the server answers again: "
                       f"python -m harness.tracking.replay {sweep} --uri http://127.0.0.1:{port}")
    with local_server(f"sqlite:///{db}", artifacts, port=port) as server:
        done = subprocess.run(replay_command(sweep, "--uri", server.uri), capture_output=True, text=True,
                              env=app_env(tmp_path), timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        client = MlflowClient(tracking_uri=server.uri)
        runs = client.search_runs([client.get_experiment_by_name("server").experiment_id])
        assert {run.info.status for run in runs} == {"FINISHED"}  # nothing is left RUNNING
        parent = client.get_run(parent_id)
        children = sorted((run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent_id),
                          key=lambda run: run.data.tags["job_num"])
        assert [run.data.tags["job_num"] for run in children] == ["0", "1", "2"]
        assert children[0].info.run_id == run_id
        for run, steps in zip(children, (6000, 8, 8), strict=True):
            history = client.get_metric_history(run.info.run_id, "train/loss")
            assert sorted(m.step for m in history) == list(range(1, steps + 1)), run.info.run_name
            assert run.data.params["trainer.steps"] == str(steps)
            assert "model.npz" in {item.path for item in client.list_artifacts(run.info.run_id)}
        local_id = records["1"].stem.removeprefix("offline-run-")
        assert children[1].data.tags["harness.offline_run_id"] == local_id
        assert parent.data.metrics["jobs"] == 3.0 and parent.data.metrics["offline"] == 3.0
        # its children counted by the replay, as the sweep's end would have counted them
        assert (parent.data.metrics["runs"], parent.data.metrics["finished"]) == (3.0, 3.0)
        assert parent.data.tags["harness.offline_jobs"] == "0 1 2"
        assert f"python -m harness.tracking.replay {sweep}" in parent.data.tags["mlflow.note.content"]
