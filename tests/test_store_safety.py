"""Stores the harness creates or is pointed at: created complete before anyone can see them, private to the
user, and refused in one line (no password in it) when they cannot work. Real MLflow, real SQLite, real
processes."""

from __future__ import annotations

import http.server
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from test_train_app import ROOT, TINY, app_env

from harness.tracking import TrackingSettings, ensure_store
from harness.tracking.health import ServerUnreachable, StoreUnusable, check_server
from harness.tracking.server import free_port

SECRET = "s3cr3t-pw"

# An outside MLflow process (the UI, a notebook) that opens the store the moment its file appears.
_OUTSIDE_READER = textwrap.dedent("""
    import pathlib, sqlite3, sys, time
    from mlflow import MlflowClient
    db = pathlib.Path(sys.argv[1])
    print("ready", flush=True)
    while not db.exists():
        time.sleep(0.0005)
    seen = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    tables = {row[0] for row in seen.execute("select name from sqlite_master where type = 'table'")}
    version = None
    if "alembic_version" in tables:
        version = seen.execute("select version_num from alembic_version").fetchone()
    seen.close()
    print(len(tables), version[0] if version else None, flush=True)
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
""")


def _schema(db: Path) -> tuple[int, str]:
    with sqlite3.connect(db) as connection:
        tables = connection.execute("select count(*) from sqlite_master where type = 'table'").fetchone()[0]
        return tables, connection.execute("select version_num from alembic_version").fetchone()[0]


def test_a_new_store_is_whole_when_an_outside_reader_first_sees_it_and_private(tmp_path: Path,
                                                                              template_store: Path) -> None:
    root = tmp_path / "fresh" / "mlruns"
    db = root / "mlflow.db"
    reader = subprocess.Popen([sys.executable, "-c", _OUTSIDE_READER, str(db)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert reader.stdout.readline().strip() == "ready"
        settings = TrackingSettings(uri=f"sqlite:///{db}", experiment="race",
                                    artifact_root=str(root / "artifacts"))
        client, experiment_id = ensure_store(settings)
        client.create_run(experiment_id)
        out, err = reader.communicate(timeout=120)
    finally:
        if reader.poll() is None:
            reader.kill()
    assert reader.returncode == 0, err[-3000:]
    tables, version = out.split()
    assert (int(tables), version) == _schema(template_store)  # the whole schema, at MLflow's head revision
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "artifacts").stat().st_mode) == 0o700
    assert not list(root.glob(".*.creating"))


class _NotMlflow(http.server.BaseHTTPRequestHandler):
    """Another service: answers /health, knows nothing of MLflow."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK" if self.path == "/health" else b"<html>not found</html>")

    def log_message(self, *args) -> None:
        pass


def test_a_service_that_is_no_mlflow_server_is_refused_in_one_line() -> None:
    service = http.server.HTTPServer(("127.0.0.1", 0), _NotMlflow)
    thread = threading.Thread(target=service.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://user:{SECRET}@127.0.0.1:{service.server_port}"
        with pytest.raises(ServerUnreachable, match="is not an MLflow tracking server") as caught:
            check_server(uri)
    finally:
        service.shutdown()
    assert SECRET not in str(caught.value) and "\n" not in str(caught.value)
    unreachable = r"no MLflow tracking server answers at http://\*\*\*@"
    with pytest.raises(ServerUnreachable, match=unreachable) as got:
        check_server(f"http://user:{SECRET}@127.0.0.1:{free_port()}")
    assert SECRET not in str(got.value)


@pytest.mark.parametrize(("uri", "expected"), [
    (f"mysql://mlflow:{SECRET}@127.0.0.1/mlflow",
     "needs the database driver 'MySQLdb': pip install 'mysqlclient'"),
    (f"postgresql+psycopg2://mlflow:{SECRET}@127.0.0.1/mlflow", "pip install 'psycopg2-binary'"),
    (f"postgresql+psycopg://mlflow:{SECRET}@127.0.0.1:{free_port()}/mlflow", "does not accept a connection"),
], ids=["mysql-no-driver", "psycopg2-no-driver", "psycopg-refused"])  # stable ids: the port is random
def test_a_database_store_that_cannot_work_is_one_line_without_the_password(uri: str, expected: str) -> None:
    with pytest.raises(StoreUnusable) as caught:
        ensure_store(TrackingSettings(uri=uri, experiment="x"))
    message = str(caught.value)
    assert expected in message and SECRET not in message and "\n" not in message, message


def test_an_unwritable_sqlite_path_or_artifact_root_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnusable, match=r"tracking.uri: cannot write to .*a-file \("):
        ensure_store(TrackingSettings(uri=f"sqlite:///{blocker}/mlflow.db", experiment="x"))
    with pytest.raises(StoreUnusable, match=r"tracking.artifact_root: cannot write to"):
        ensure_store(TrackingSettings(uri=f"sqlite:///{tmp_path}/ok/mlflow.db", experiment="x",
                                      artifact_root=str(blocker / "artifacts")))
    assert not (tmp_path / "ok").exists()  # refused before the store was created


def test_the_train_app_refuses_an_unreachable_database_in_one_line(tmp_path: Path) -> None:
    uri = f"postgresql+psycopg://mlflow:{SECRET}@127.0.0.1:{free_port()}/mlflow"
    command = [sys.executable, str(ROOT / "experiments" / "train.py"), *TINY, f"tracking.uri={uri}"]
    done = subprocess.run(command, capture_output=True, text=True, env=app_env(tmp_path), cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and SECRET not in done.stderr, done.stderr[-3000:]
    assert "does not accept a connection" in done.stderr
