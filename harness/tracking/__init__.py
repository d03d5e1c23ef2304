"""Experiment tracking: the only write path to MLflow.

Contract API (see /work/contract.md)::

    from harness.tracking import TrackingSettings, open_run, MemoryLogger, MlflowLogger
    settings = TrackingSettings(mode="local" | "server" | "off", uri=None, experiment="train",
                                artifact_root=None)
    with open_run(settings, run_name="adding-elman-s0", tags={...},
                  parent_run_id=None | "auto" | run_id) as log:
        log.log_params(nested_dict)            # flattened to dotted keys, str values cut at 6000 chars
        log.set_tags(dict)
        log.log_metrics(dict, step)            # buffered, written with log_batch (<= 1000 values per batch)
        log.log_artifact(path, artifact_path=None)
        log.log_figure(fig, "loss.png"); log.log_text(s, "config.yaml")
        log.log_dataset(name, fingerprint, arrays)   # MLflow dataset input, digest = fingerprint[:36]
        log.run_id                             # None for MemoryLogger

Store: mode "local" uses ``sqlite:///<project_root>/mlruns/mlflow.db`` with artifacts in
``<project_root>/mlruns/artifacts/<experiment>`` (absolute; project_root is the checkout holding
pyproject.toml above this package, or the working directory for a non-editable install).
``uri=`` beats ``$MLFLOW_TRACKING_URI`` beats the default. A plain directory / ``file:`` URI is refused
(MLflow 3 has no file store). Mode "server" needs an http(s) URI. Mode "off" yields a MemoryLogger.

Run ends: normal exit FINISHED; exception FAILED with tag ``error = "Type: message"`` (re-raised);
SIGTERM/SIGINT during the run raise ``RunInterrupted`` (a SystemExit, code 128 + signum) in the main thread,
buffered metrics are flushed and the run ends KILLED. NaN metric values are stored as NaN; ±inf become
±1.797e308 in MLflow's SQL store (no infinity in SQL) - log NaN if that matters.

Additions to the contract:
    ensure_store(settings) -> (MlflowClient, experiment_id)   # schema (file-locked) + experiment, race-safe
    store_client(settings) -> MlflowClient                   # schema ready, no experiment created (readers)
    project_root(), default_tracking_uri(), git_commit()
    TrackingSettings.from_mapping(mapping, **overrides); .tracking_uri; .artifact_location
    flatten_params(dict) -> dict[str, str]; MemoryLogger.history(key) -> (steps, values); MemoryLogger.status
    logger.flush(); open_run(..., flush_every=1000); RunInterrupted; resolve_parent_run_id(...)
    open_run(..., resume_run_id=id) reopens a run (harness.resume); logger.interrupts (Interrupts): signals
    deferred to a clean point with interrupts.deferred() / raise_pending() (the training loop's checkpoint);
    every store write of an MlflowLogger runs inside interrupts.held() (a signal waits for the write's end)
    PARENT_ENV = "HARNESS_PARENT_RUN_ID"

Store checks (harness.tracking.health) before any run: an http(s) URI with ``check_server(uri)`` (GET
/health and /version, 3 s each): ``ServerUnreachable`` (a ConfigError, one line); a database URI's driver and
connection, an SQLite or artifact folder's write access: ``StoreUnusable``. No message holds a password
(harness.tracking.redact).

Tracking server (harness.tracking.server, imported on first use): MLflow's HTTP retries are shortened to ~5 s
unless MLFLOW_HTTP_REQUEST_* are set. A server lost during a run: the logger writes the rest to
``logger.offline`` (an ``OfflineRecord``: ``offline-run-<id>.jsonl`` in the Hydra job folder or
``mlruns/offline``) and open_run ends with ``ServerLost`` (SystemExit, one line naming the file). A sweep
job (a run with a parent) whose run cannot be created because the server is gone runs wholly offline under a
local run id (``OfflineRecord.started``). ``python -m harness.tracking.replay <record or sweep dir> --uri
URI`` (harness.tracking.replay) sends records to the server once it answers again (creating the runs that
started offline) and ends the runs there. ``local_server(backend_store_uri,
artifacts_destination)`` runs ``mlflow server`` for tests.

Metrics of an SQLite store are written by one forked child per process (harness.tracking.writer), which
stores them with harness.tracking.sqlite_metrics.MetricTable: what log_batch stores, at a tenth of its cost.
That child also opens the store and creates a new run of open_run on it (MlflowLogger.opened_by_writer), and
writes the run's tags, params, texts, dataset and artifacts until the run's process needs a client of its own
(a figure, a model): MLflow is imported beside the first training steps, not before them. Folder and file
permissions are checked before the child is asked (StoreUnusable, one line); an error of the child opening the
store (a file that is no database, say) is raised in the run's process within FLUSH_INTERVAL_S.

Hydra multirun parent run: add to the primary config (conf/config.yaml)::

    hydra:
      callbacks:
        sweep:
          _target_: harness.tracking.SweepCallback

It reads ``tracking`` (mode/uri/artifact_root/experiment) and the top-level ``experiment`` of the composed
config; optional arguments ``experiment``, ``mode``, ``uri``, ``artifact_root`` override them. Jobs nest with
``open_run(..., parent_run_id="auto")``.
"""

from typing import Any

from harness.tracking.loggers import Logger, MemoryLogger, MlflowLogger, flatten_params
from harness.tracking.runs import PARENT_ENV, RunInterrupted, open_run, resolve_parent_run_id
from harness.tracking.store import (
    TrackingSettings,
    default_tracking_uri,
    ensure_store,
    git_commit,
    project_root,
    store_client,
)

__all__ = [
    "PARENT_ENV",
    "Logger",
    "MemoryLogger",
    "MlflowLogger",
    "OfflineRecord",
    "RunInterrupted",
    "ServerLost",
    "ServerUnreachable",
    "SweepCallback",
    "TrackingSettings",
    "check_server",
    "default_tracking_uri",
    "ensure_store",
    "flatten_params",
    "git_commit",
    "local_server",
    "open_run",
    "project_root",
    "resolve_parent_run_id",
    "store_client",
]


_SERVER_NAMES = ("OfflineRecord", "ServerLost", "local_server")


def __getattr__(name: str) -> Any:
    # SweepCallback subclasses a Hydra class: import Hydra only when the callback is asked for.
    if name == "SweepCallback":
        from harness.tracking.callback import SweepCallback

        return SweepCallback
    if name in ("ServerUnreachable", "check_server"):
        from harness.tracking import health

        return getattr(health, name)
    if name in _SERVER_NAMES:
        # server.py imports harness.config: load it when a server feature is asked for
        from harness.tracking import server

        return getattr(server, name)
    raise AttributeError(f"module 'harness.tracking' has no attribute {name!r}")
