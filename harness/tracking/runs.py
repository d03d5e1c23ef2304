"""``open_run``: one tracked run that ends FINISHED, FAILED or KILLED, whatever stops it short of SIGKILL.

An exception, SIGTERM/SIGINT (also when Python drops the handler's exception: see stop_requested) or a lost
tracking server all end the run. A process killed without warning (SIGKILL, the out-of-memory killer) cannot,
and loses at most the last FLUSH_INTERVAL_S seconds of metric values: on an SQLite store its metric writer
process (harness.tracking.writer) ends the run KILLED within about a second; elsewhere (a server, another
database), or after a power cut, the run stays RUNNING until ``python -m harness.tracking.reap`` finds it (its
``harness.host`` / ``harness.pid`` tags name a process that is gone) and ends it KILLED in the same words.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.tracking.loggers import MAX_TAG_LENGTH, MemoryLogger, MlflowLogger, pair_batches, tag_values
from harness.tracking.orphans import drop_ending, process_tags
from harness.tracking.redact import redact
from harness.tracking.store import (
    TrackingSettings,
    check_store_folders,
    ensure_store,
    source_tags,
    sqlite_path,
)
from harness.tracking.writer import BackgroundMetricWriter, fork_available

PARENT_ENV = "HARNESS_PARENT_RUN_ID"
PARENT_FILE = "parent_run_id"
SWEPT_FILE = "swept_keys"
# SIGUSR1/SIGUSR2 are what cluster schedulers send before a time limit or a preemption (SLURM's --signal,
# submitit's requeue signal): the run checkpoints and ends KILLED instead of dying RUNNING.
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
_SCHEDULER_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class RunInterrupted(SystemExit):
    """Raised in the main thread when SIGTERM/SIGINT/SIGUSR1/SIGUSR2 arrives during open_run; exits with
    128 + signum.

    A SystemExit, so a training loop's ``except Exception`` cannot swallow it and an uncaught one ends the
    process with the shell's usual code for a signal (143 for SIGTERM, 130 for SIGINT).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.cause = _self_signal_cause

    def __str__(self) -> str:
        cause = f": {self.cause}" if self.cause else ""
        return f"interrupted by {signal.Signals(self.signum).name}{cause}"


_self_signal_cause: str | None = None  # why this process signalled itself (signal_self), for the run's error


def signal_self(signum: int, cause: str) -> None:
    """Stop this process's run with signum as a signal from outside would, for cause (a watcher thread's
    reason, which the run's ``error`` tag then gives after the signal's name)."""
    global _self_signal_cause
    _self_signal_cause = cause
    os.kill(os.getpid(), signum)


def hydra_sweep_dir() -> Path | None:
    """The sweep dir of the running Hydra multirun job, None outside a multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:
        return None
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    sweep_dir = Path(hydra_cfg.sweep.dir)
    if not sweep_dir.is_absolute():
        sweep_dir = Path(hydra_cfg.runtime.cwd) / sweep_dir
    return sweep_dir


def sweep_label(overrides: Sequence[str], named: Sequence[str]) -> str:
    """The part of a sweep job's run name that says what its sweep varies: the job's values of the swept
    keys (``<sweep dir>/swept_keys``, written by SweepCallback) other than those in named, joined by '-'.

    A config group's choice reads as itself (``optimizer=sgd`` -> ``sgd``), a value as the key's last part
    and the value (``task.length=20`` -> ``T20`` with the short names of SHORT_KEYS, ``optimizer.lr=0.01``
    -> ``lr0.01``). "" outside a sweep, when it sweeps nothing beyond named, and in an Optuna search's
    trial: every key a search sweeps is searched, its trial number names the run (harness.search.
    trial_run_name), and a sampled value's 16-17 digits would make the name unreadable.
    """
    from harness.search import current_trial

    if current_trial() is not None:
        return ""
    sweep_dir = hydra_sweep_dir()
    swept_file = None if sweep_dir is None else sweep_dir / SWEPT_FILE
    if swept_file is None or not swept_file.is_file():
        return ""
    swept = [key for key in swept_file.read_text().split() if key not in named]
    values = dict(override.split("=", 1) for override in overrides if "=" in override)
    parts = []
    for key in swept:
        value = values.get(key, values.get(f"+{key}", ""))
        head, _, last = key.rpartition(".")
        parts.append(value if not head else f"{SHORT_KEYS.get(last, last)}{value}")
    return "-".join(parts)


SHORT_KEYS = {"length": "T", "hidden_size": "H"}  # the notes' names: sequence length T, hidden size H


def resolve_parent_run_id(parent_run_id: str | None) -> str | None:
    """parent_run_id, or for "auto": ``$HARNESS_PARENT_RUN_ID``, else the sweep dir's parent_run_id file."""
    if parent_run_id != "auto":
        return parent_run_id
    if os.environ.get(PARENT_ENV):
        return os.environ[PARENT_ENV]
    sweep_dir = hydra_sweep_dir()
    path = None if sweep_dir is None else sweep_dir / PARENT_FILE
    if path is not None and path.is_file():
        return path.read_text().strip() or None
    return None


_stop_signal: int | None = None
_stops_received = 0
_last_stop_signal: int | None = None  # kept when _stop_signal is forgotten: a report names the signal


def stop_requested() -> int | None:
    """The stop signal (SIGTERM/SIGINT/...) this process received whose RunInterrupted may have been lost.

    A handler's exception raised while Python runs a finaliser or a weakref callback (garbage collection can
    start anywhere) is printed as "Exception ignored" and dropped; the signal stays recorded here, and the
    next boundary (open_run's entry and exit, a sweep's next job) raises it again.
    """
    return _stop_signal


def note_stop(signum: int | None) -> None:
    """Record (signum) or forget (None) the stop signal of stop_requested()."""
    global _stop_signal, _stops_received, _last_stop_signal
    _stop_signal = signum
    _stops_received += signum is not None
    _last_stop_signal = signum or _last_stop_signal


def last_stop_signal() -> int | None:
    """The last stop signal this process received (whoever handled it, forgotten or not), None if none."""
    return _last_stop_signal


def stops_received() -> int:
    """How many stop signals this process has received (whoever handled them): a sweep compares the count
    at its end with the one at its start to tell a stop from a crash."""
    return _stops_received


def raise_if_stop_requested() -> None:
    """RunInterrupted for a stop signal whose exception was lost; ordinary code raises it reliably."""
    signum = _stop_signal
    if signum is not None:
        note_stop(None)
        raise RunInterrupted(signum)


class Interrupts:
    """open_run's signal guard: SIGTERM/SIGINT/SIGUSR1/SIGUSR2 become RunInterrupted in the main thread until
    ``quiet()``; ``restore()`` undoes it.

    The hook for loops that must stop at a clean point (the training loop checkpoints there): inside
    ``with interrupts.deferred():`` a signal is only remembered (``pending``); the loop finishes its step,
    saves what it needs, then calls ``raise_pending()``. Signal handlers can only be installed from the main
    thread; elsewhere (thread pools) nothing is installed and the process's own handling applies.
    """

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._quiet = False
        self._deferring = False
        self.pending: int | None = None
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        note_stop(signum)
        if self._quiet:
            return
        if self._deferring:
            self.pending = self.pending or signum
            return
        self.pending = signum
        raise RunInterrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[Interrupts]:
        """Signals arriving inside are remembered in ``pending`` instead of raised (blocks nest)."""
        outer, self._deferring = self._deferring, True
        try:
            yield self
        finally:
            self._deferring = outer

    @contextmanager
    def held(self) -> Iterator[None]:
        """A store write inside is never cut in the middle: a signal arriving meanwhile is raised once the
        block is done (a database write interrupted by the exception kept its transaction, and with it the
        lock of an SQLite store, alive until the exception was gone: ending the run then failed). Inside an
        outer deferred() block, or once the run is closing, the signal is left to it."""
        outer = self._deferring
        with self.deferred():
            yield
        if not outer and not self._quiet:
            self.raise_pending()

    def raise_pending(self) -> None:
        """RunInterrupted for the signal that arrived while deferred, if one did."""
        if self.pending is not None:
            raise RunInterrupted(self.pending)

    def quiet(self) -> None:
        """Ignore further signals while the run is being closed (a second SIGTERM must not abort cleanup)."""
        self._quiet = True

    def restore(self) -> None:
        """Put the previous handlers back; a scheduler's own handler of the signal that ended the run (e.g.
        submitit's requeue on SIGUSR2) then runs, now that the run is closed."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        previous = self._previous.get(self.pending or 0)
        if self.pending in _SCHEDULER_SIGNALS and callable(previous):
            previous(self.pending, None)


def _server_down(exc: BaseException) -> bool:
    """True when exc says the tracking server does not answer (its up-front check, or a request)."""
    from harness.tracking.health import ServerUnreachable
    from harness.tracking.server import server_lost

    return isinstance(exc, ServerUnreachable) or server_lost(exc)


def _offline_logger(settings: TrackingSettings, run_name: str | None, tags: Mapping[str, Any],
                    start_time: int | None, flush_every: int, error: BaseException) -> MlflowLogger:
    """A logger whose run could not be created on the server: everything goes to an OfflineRecord
    (OfflineRecord.started: a local run id; the replay creates the run)."""
    from mlflow import MlflowClient

    from harness.tracking.server import OfflineRecord

    start_time = int(time.time() * 1000) if start_time is None else start_time
    record = OfflineRecord.started(settings.tracking_uri, error, settings.experiment, run_name, start_time)
    record.pairs("tag", tag_values(tags))
    logger = MlflowLogger(MlflowClient(tracking_uri=settings.tracking_uri), record.run_id,
                          flush_every=flush_every)
    logger.offline = record
    print(f"{record.message()}; the run goes on offline", file=sys.stderr)
    return logger


def _status_of(exc: BaseException | None) -> str:
    if exc is None:
        return "FINISHED"
    if isinstance(exc, RunInterrupted | KeyboardInterrupt):
        return "KILLED"
    return "FAILED"


def _error_text(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")[:MAX_TAG_LENGTH]


def _open_here(settings: TrackingSettings, run_name: str | None, all_tags: dict[str, Any], parent: str | None,
               flush_every: int, resume_run_id: str | None, start_time: int | None) -> MlflowLogger:
    """open_run's logger of a run this process opens (a server's, another database's, or SQLite's
    without fork) or reopens (a resumed run) itself."""
    try:
        client, experiment_id = ensure_store(settings)
        if resume_run_id is not None:
            # its last ending's error would stay on the run, FINISHED or not, after it goes on
            drop_ending(client, client.get_run(resume_run_id))
            # The run's process is this one now: recorded before it is RUNNING again, so that no reaper
            # takes it, in between, for the lost process's run.
            for _, batch in pair_batches("tag", process_tags()):
                client.log_batch(resume_run_id, **batch)
            client.update_run(resume_run_id, status="RUNNING")
            run = client.get_run(resume_run_id)
        else:
            run = client.create_run(experiment_id, start_time=start_time, run_name=run_name,
                                    tags=tag_values(all_tags))
    except Exception as exc:
        if not parent or not _server_down(exc):
            raise
        # A job of a sweep whose server is gone: the sweep goes on, this job's run lives offline.
        return _offline_logger(settings, run_name, all_tags, start_time, flush_every, exc)
    # A server's HTTP batches are cheap to send and keep the offline fallback here; a resumed SQLite run's
    # metrics go to the forked writer, which ends the run if this process dies before its first metric.
    background = uses_metric_writer(settings.tracking_uri)
    if background:
        BackgroundMetricWriter.shared(settings.tracking_uri).watch(run.info.run_id)
    return MlflowLogger(client, run.info.run_id, flush_every=flush_every, background=background,
                        experiment_id=experiment_id)


def uses_metric_writer(tracking_uri: str) -> bool:
    """Whether runs on tracking_uri are written by a forked metric writer (harness.tracking.writer): an
    SQLite store, on a system that can fork."""
    return sqlite_path(tracking_uri) is not None and fork_available()


@contextmanager
def open_run(
    settings: TrackingSettings,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    *,
    flush_every: int = 1000,
    resume_run_id: str | None = None,
    start_time: int | None = None,
    end_time: int | None = None,
) -> Iterator[MlflowLogger | MemoryLogger]:
    """Open one run and yield its logger; the run ends FINISHED, FAILED (tag ``error``) or KILLED.

    settings.mode "off" yields a MemoryLogger. parent_run_id: a run id to nest under, None, or "auto" (the
    sweep's parent run: ``$HARNESS_PARENT_RUN_ID`` or the Hydra sweep dir's ``parent_run_id`` file).
    Default tags: ``mlflow.runName``, the source tags (store.source_tags: script, user, git commit),
    ``mlflow.parentRunId`` when nested. While the run is open SIGTERM/SIGINT raise RunInterrupted in the main
    thread: buffered metrics are flushed, the run ends KILLED and the exception propagates (non-zero exit).
    Any exception: buffered metrics are flushed, the run ends FAILED with ``error = "Type: message"``, the
    exception is re-raised. A tracking server that stops answering during the run: the logger records the
    rest offline (MlflowLogger.offline) and the run ends with ServerLost naming the file (printed instead
    when the run has an error of its own, which then propagates). A run with a parent (a sweep's job) that
    cannot be created because the server does not answer runs wholly offline, under a local run id
    (OfflineRecord.started), and ends the same way.
    resume_run_id: reopen that existing run instead (status back to RUNNING, same params and tags; run_name,
    tags and parent_run_id are then not applied) - the caller checks that it exists and may be continued.
    The guard (``logger.interrupts``, an Interrupts) lets a loop defer signals to a clean point.
    start_time / end_time (ms since the epoch): the run's recorded times when its work happened elsewhere
    (a cell computed in a worker process); default: when the run opens and closes.
    """
    raise_if_stop_requested()  # a sweep whose signal was lost between jobs starts no new run
    all_tags: dict[str, Any] = {**process_tags(), **source_tags()}
    if run_name:
        all_tags["mlflow.runName"] = run_name
    all_tags.update(tags or {})
    if settings.mode == "off":
        logger: MlflowLogger | MemoryLogger = MemoryLogger(run_name, all_tags)
    else:
        parent = None if resume_run_id is not None else resolve_parent_run_id(parent_run_id)
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        if resume_run_id is None and uses_metric_writer(settings.tracking_uri):
            # Storing a metric value in SQLite costs tens of microseconds: a forked writer takes that off the
            # training process. It also opens the store and creates the run while this process goes on, so
            # MLflow and its SQL store (about 1.4 s of CPU to import) stay off the way to the first step.
            check_store_folders(settings)
            start_time = int(time.time() * 1000) if start_time is None else start_time
            logger = MlflowLogger.opened_by_writer(settings, run_name, tag_values(all_tags), start_time,
                                                   flush_every=flush_every)
        else:
            logger = _open_here(settings, run_name, all_tags, parent, flush_every, resume_run_id, start_time)

    guard = Interrupts()
    logger.interrupts = guard
    error: BaseException | None = None
    try:
        yield logger
    except BaseException as exc:
        error = exc
        raise
    finally:
        lost_signal = error is None and stop_requested() is not None
        if lost_signal:
            error = RunInterrupted(stop_requested())  # its raise was lost (see stop_requested)
        guard.quiet()
        try:
            flush_error: Exception | None = None
            try:
                logger.flush()
            except Exception as exc:
                flush_error = exc
            final_error = error or flush_error
            status = _status_of(final_error)
            if isinstance(logger, MemoryLogger):
                logger.status = status
            else:
                try:
                    logger.finish(status, None if final_error is None else _error_text(final_error), end_time)
                except Exception as exc:
                    if error is None:
                        raise
                    # The run's own error (a signal above all) goes on up; the sweep's exit, or
                    # harness.tracking.reap, ends the run that could not be ended here.
                    print(f"could not end run {logger.run_id} {status}: {type(exc).__name__}: "
                          f"{redact(str(exc)).splitlines()[0]}", file=sys.stderr)
                if logger.offline is not None:
                    from harness.tracking.server import ServerLost

                    lost = ServerLost(logger.offline.message(), logger.offline.path)
                    if error is None:
                        raise lost
                    print(lost, file=sys.stderr)  # the run's own error goes on up
            if error is None and flush_error is not None:
                raise flush_error
        finally:
            guard.restore()
            if isinstance(error, RunInterrupted):
                note_stop(None)  # it propagates from here
            if lost_signal:
                raise error
            if error is None:
                raise_if_stop_requested()  # a signal during the close: the run is closed, now stop
