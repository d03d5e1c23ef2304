"""Open the MLflow UI on the project's store: ``python -m harness.ui [--port 5000] [--uri sqlite:///...]``.

Runs ``mlflow server`` bound to 127.0.0.1 on the embedded store (``mlruns/mlflow.db``, artifacts in
``mlruns/artifacts``; ``--uri`` or ``$MLFLOW_TRACKING_URI`` name another database store) through
harness.tracking.server.local_server: one uvicorn worker and no background job runner, because on 2 busy
cores MLflow's defaults (4 workers plus the huey job consumers) took over a minute to answer while one worker
answers in seconds and serves one researcher's browser well. Before the server starts, the store's schema is
created under the harness's lock and every experiment lacking them gets the harness's kind and description
tags, so the UI opens on the runs (its training view) for experiments made before those tags too.
"""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from harness.runtime import quiet_library_logs
from harness.tracking.redact import redact, without_userinfo

DEFAULT_PORT = 5000
HOST = "127.0.0.1"
START_TIMEOUT_S = 300.0
# MLflow 3.17's UI keeps one global GenAI / model-training switch (default GenAI, remembered per browser)
# that wins over the experiment's mlflow.experimentKind tag; a URL's workflowType parameter sets it.
TRAINING_VIEW = "workflowType=machine_learning"


def ui_url(port: int = DEFAULT_PORT) -> str:
    return f"http://{HOST}:{port}"


def experiments_url(base: str) -> str:
    """The experiments page of the UI at base, in its training view."""
    return f"{base.rstrip('/')}/#/experiments?{TRAINING_VIEW}"


def _base(tracking_uri: str, port: int) -> str:
    """Where the UI of tracking_uri answers: a tracking server itself, or ``python -m harness.ui``."""
    if urlparse(tracking_uri).scheme in ("http", "https"):
        return without_userinfo(tracking_uri.rstrip("/"))
    return ui_url(port)


def run_url(tracking_uri: str, experiment_id: str, run_id: str, port: int = DEFAULT_PORT) -> str:
    """The page of run_id in the UI: a tracking server's own, or ``python -m harness.ui``'s for a database."""
    return f"{_base(tracking_uri, port)}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


def ui_command(tracking_uri: str) -> str | None:
    """The command that opens the UI on a database store (None for a tracking server: it is its own UI)."""
    from harness.tracking import default_tracking_uri

    if urlparse(tracking_uri).scheme in ("http", "https"):
        return None
    default = tracking_uri == default_tracking_uri()
    return "python -m harness.ui" + ("" if default else f" --uri {redact(tracking_uri)}")


def ui_hint(tracking_uri: str, run: tuple[str, str] | None) -> str:
    """The line every app ends with: the page of run (experiment id, run id) in the UI and, for a database
    store, the command that starts the UI: ``in the MLflow UI: http://127.0.0.1:5000/#/experiments/1/runs/
    <id>?workflowType=machine_learning  (start it with: python -m harness.ui)``; run None: the experiments
    page."""
    url = experiments_url(_base(tracking_uri, DEFAULT_PORT)) if run is None else run_url(tracking_uri, *run)
    command = ui_command(tracking_uri)
    return f"in the MLflow UI: {url}" + (f"  (start it with: {command})" if command else "")


def port_taken(port: int) -> bool:
    """Whether something already listens on HOST:port (a bind to it fails with EADDRINUSE)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _artifact_root(settings) -> Path:
    """Where settings' database store keeps artifacts (``<db dir>/artifacts`` for the default store)."""
    return Path(unquote(urlparse(settings.artifact_location).path)).parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port on {HOST} (default {DEFAULT_PORT})")
    parser.add_argument("--uri", default=None,
                        help="a database store (default: the project's mlruns/mlflow.db)")
    args = parser.parse_args(argv)
    from harness.tracking import TrackingSettings, store_client
    from harness.tracking.health import ServerUnreachable
    from harness.tracking.server import local_server
    from harness.tracking.store import tag_experiments

    try:
        settings = TrackingSettings(uri=args.uri)
    except ValueError as error:
        sys.exit(f"error: --uri: {error}")
    uri = settings.tracking_uri
    if urlparse(uri).scheme in ("http", "https"):
        sys.exit(f"error: --uri: {uri} is a tracking server, which serves its own UI: open {uri}")
    if not 0 < args.port < 65536:
        sys.exit(f"error: --port must be in 1..65535, got {args.port}")
    if port_taken(args.port):
        sys.exit(f"error: port {args.port} on {HOST} is taken (another MLflow UI? if it shows this store, "
                 f"open {ui_url(args.port)}); or pick another: python -m harness.ui --port {args.port + 1}")
    # Ctrl-C, and SIGTERM from a process manager, leave through the with below, which stops the server; a
    # shell's background job starts with SIGINT ignored, so it is set here too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    tag_experiments(store_client(settings))
    try:
        with local_server(uri, _artifact_root(settings), port=args.port, timeout=START_TIMEOUT_S) as server:
            print(f"MLflow UI: {experiments_url(server.uri)}  (store {uri}; up in "
                  f"{time.monotonic() - started:.1f} s; Ctrl-C stops it)", flush=True)
            server.process.wait()
    except ServerUnreachable as error:
        sys.exit(f"error: the MLflow server did not come up: {error}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    quiet_library_logs()
    main()
