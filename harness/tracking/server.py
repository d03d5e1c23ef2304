"""Tracking through an MLflow tracking server: reachability check, short HTTP retries, the offline record a
run falls back to when the server goes away, and a local server for tests and laptops.

A server URI (``http(s)://host:port``, from ``tracking.uri`` or ``$MLFLOW_TRACKING_URI``) is checked before
any run is created (harness.tracking.health: no server is one ``ServerUnreachable`` line, not minutes of
MLflow's client retrying). When the server stops answering during a run, the run's logger goes
offline: everything not yet sent (buffered metrics, params, tags, artifacts) is written to an
``OfflineRecord`` (a JSON-lines file in the Hydra job's output folder, else
``<project_root>/mlruns/offline/``) and the run ends with ``ServerLost`` naming that file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.tracking.health import ServerUnreachable, check_server
from harness.tracking.redact import redact
from harness.tracking.store import project_root


class ServerLost(SystemExit):
    """The server stopped answering during a run; the unsent part of the run is in an offline record.

    A SystemExit carrying its one-line message: an uncaught one prints it and exits with status 1 without a
    traceback, like the train app's config errors.
    """

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def server_lost(exc: BaseException) -> bool:
    """True when exc is MLflow's client failing to reach the server, not the server refusing a request.

    The server's own answers (bad parameter, missing run, ...) are RestExceptions; connection failures,
    timeouts and exhausted retries surface as a plain MlflowException ``API request to ... failed``.
    """
    import requests
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, RestException):
        return False
    if isinstance(exc, requests.exceptions.RequestException):
        return True
    return isinstance(exc, MlflowException) and str(exc.message).startswith("API request to")


def offline_dir() -> Path:
    """The running Hydra job's output folder, else ``<project_root>/mlruns/offline``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir)
    except ImportError:
        pass
    return project_root() / "mlruns" / "offline"


class OfflineRecord:
    """What a run could not send, as JSON lines (one object per line, ``kind`` first) plus artifact copies.

    Lines: ``{"kind": "lost", "run_id", "uri", "error", "time"}`` first; for a run that started offline
    (``OfflineRecord.started``) then ``run`` (experiment, run_name, start_time ms: what creating it takes);
    then ``metric`` (key, value, timestamp ms, step), ``param`` / ``tag`` (key, value), ``artifact`` (path:
    the copy under ``<stem>_artifacts/``; artifact_path: its path among the run's artifacts), ``dataset``
    (name, fingerprint, context) and last ``status`` (status, error: the run's error tag or null, end_time
    ms).
    """

    def __init__(self, run_id: str, uri: str, error: BaseException, directory: Path | None = None) -> None:
        directory = directory or offline_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"offline-run-{run_id}.jsonl"
        self.artifact_dir = directory / f"offline-run-{run_id}_artifacts"
        self.run_id, self.uri = run_id, redact(uri)
        self.started_offline = False
        self.write([{"kind": "lost", "run_id": run_id, "uri": self.uri, "error": redact(str(error))[:500],
                     "time": time.time()}])

    @classmethod
    def started(cls, uri: str, error: BaseException, experiment: str, run_name: str | None,
                start_time: int, directory: Path | None = None) -> OfflineRecord:
        """The record of a run that could not be created on the server (error): it gets a local id (MLflow's
        format, uuid4 hex) and its whole life goes to the record. MLflow's API lets no client choose a run's
        id (CreateRun takes none), so the replay creates the run under the id the server gives it, tagged
        ``harness.offline_run_id`` with the local one."""
        record = cls(uuid.uuid4().hex, uri, error, directory)
        record.started_offline = True
        record.write([{"kind": "run", "experiment": experiment, "run_name": run_name,
                       "start_time": start_time}])
        return record

    def write(self, records: list[dict[str, Any]]) -> None:
        with self.path.open("a") as sink:
            sink.writelines(json.dumps(record) + "\n" for record in records)

    def metrics(self, buffer: list[tuple[str, float, int, int]]) -> None:
        """buffer: (key, value, timestamp ms, step) as MlflowLogger buffers them."""
        self.write([{"kind": "metric", "key": key, "value": value, "timestamp": timestamp, "step": step}
                    for key, value, timestamp, step in buffer])

    def pairs(self, kind: str, values: Mapping[str, str]) -> None:
        self.write([{"kind": kind, "key": k, "value": v} for k, v in values.items()])

    def _artifact_target(self, relative: str) -> Path:
        target = self.artifact_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def _artifact_line(self, target: Path, relative: str) -> None:
        self.write([{"kind": "artifact", "path": str(target), "artifact_path": relative}])

    def artifact(self, source: str | Path, artifact_path: str | None = None) -> None:
        """A copy of the file source, kept at ``<stem>_artifacts/<artifact_path>/<name>``."""
        relative = str(Path(artifact_path or "") / Path(source).name)
        target = self._artifact_target(relative)
        shutil.copyfile(source, target)
        self._artifact_line(target, relative)

    def model(self, folder: Path) -> None:
        """The pyfunc model directory folder, kept as the run's artifacts ``<folder name>/``: the replay logs
        them so (no LoggedModel; ``runs:/<run id>/model`` loads it all the same)."""
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.artifact(path, str(path.parent.relative_to(folder.parent)))

    def figure(self, fig: Any, name: str) -> None:
        """fig (a matplotlib Figure) saved as ``<stem>_artifacts/<name>``."""
        target = self._artifact_target(name)
        fig.savefig(target)
        self._artifact_line(target, name)

    def text(self, text: str, name: str) -> None:
        target = self._artifact_target(name)
        target.write_text(text)
        self._artifact_line(target, name)

    def dataset(self, name: str, fingerprint: str, context: str) -> None:
        self.write([{"kind": "dataset", "name": name, "fingerprint": fingerprint, "context": context}])

    def close(self, status: str, error: str | None = None, end_time: int | None = None) -> None:
        end_time = int(time.time() * 1000) if end_time is None else end_time
        self.write([{"kind": "status", "status": status, "error": error, "end_time": end_time}])

    def message(self) -> str:
        if self.started_offline:
            return (f"tracking server {self.uri} did not answer when run {self.run_id} started; the whole "
                    f"run is saved in {self.path} (its replay creates it on the server, under a new run id)")
        return (f"tracking server {self.uri} stopped answering during run {self.run_id}; what it did not "
                f"receive is saved in {self.path}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class LocalServer:
    """A running ``mlflow server`` child process (its own session) and its URI."""

    uri: str
    process: subprocess.Popen

    def kill(self) -> None:
        """SIGKILL the server and its workers at once, like a crashed machine (no graceful shutdown)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextmanager
def local_server(backend_store_uri: str, artifacts_destination: str | Path, *, port: int | None = None,
                 log_path: str | Path | None = None, timeout: float = 180.0) -> Iterator[LocalServer]:
    """Run ``mlflow server`` on 127.0.0.1 (one worker, proxied artifacts) and yield it once /health answers;
    it is stopped (SIGTERM to its process group) on exit. For tests, benchmarks and a one-machine session.

    MLflow's background job runner (huey consumers, several processes) is switched off: the harness never
    submits server-side jobs and the consumers multiply the start-up time.
    """
    port = port or free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", backend_store_uri,
               "--artifacts-destination", str(artifacts_destination)]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in finally
    # its own session, so stopping it reaches the uvicorn worker it spawns
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                check_server(uri, timeout=1.0)
                break
            except ServerUnreachable:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield LocalServer(uri, process)
    finally:
        _stop_session(process)
        if log is not subprocess.DEVNULL:
            log.close()


def _stop_session(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the process's session (it was started with start_new_session), SIGKILL after timeout."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
