"""A metric writer in a forked child process, so storing metrics runs beside training, not inside it.

Storing a metric value costs tens of microseconds of Python and SQLite (harness.tracking.sqlite_metrics); at
ten values per training step that is a large part of a small network's step. A thread would not help (the
work holds the GIL); a child process on the second core does. The child is forked, not spawned, so it starts
in milliseconds with MLflow already imported. It opens its own database connections: MLflow caches one
SQLAlchemy engine per URI at class level, which the child inherits with the parent's pool and the SQLite
connections open at fork time; SQLAlchemy forbids using those across a fork, so the child drops every
inherited engine (without closing the parent's connections) before its store builds a new one.

One child serves every run a process opens on one store (``BackgroundMetricWriter.shared``): a sweep's worker
forks it and opens the store's engine once, for its first run, not once per job. The parent sends
``(run id, rows)`` chunks through a pipe; ``sync(run_id)`` waits until every chunk of that run is written and
raises if any failed, so no metric is dropped silently, and a failure of one run never touches the next. The
child ignores SIGINT and SIGTERM, which a terminal or a process-group kill also delivers to it, and finishes
what its parent sent: the parent's own handlers decide when to stop. It ends when the parent exits (an atexit
hook, or the pipe closing if the parent dies). It is forked with os.fork rather than multiprocessing.Process:
a multiprocessing child (a loky worker of the joblib launcher) terminates and joins its multiprocessing
children when it ends, and would wait forever for one that ignores SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Any, ClassVar

from harness.tracking.sqlite_metrics import MetricRow, MetricTable

SYNC_TIMEOUT_S = 300  # the pipe bounds the backlog to seconds of writing; this only catches a stuck child
EXIT_TIMEOUT_S = 10


def fork_available() -> bool:
    """True where a forked child can write (POSIX); elsewhere metrics are written in the calling process."""
    return hasattr(os, "fork")


class BackgroundMetricWriter:
    """Writes metric values of the runs of one SQLite store (tracking_uri) in a child process."""

    _shared: ClassVar[dict[str, BackgroundMetricWriter]] = {}

    @classmethod
    def shared(cls, tracking_uri: str) -> BackgroundMetricWriter:
        """This process's writer for tracking_uri, started on first use (and again if its child died)."""
        writer = cls._shared.get(tracking_uri)
        if writer is None or writer._owner != os.getpid() or not writer.alive():
            writer = cls._shared[tracking_uri] = cls(tracking_uri)
        return writer

    def __init__(self, tracking_uri: str) -> None:
        self._owner = os.getpid()  # a forked copy of this object in another process must not use the pipe
        self._conn, child_conn = multiprocessing.Pipe()
        self._pid: int | None = os.fork()
        if self._pid == 0:
            try:
                _serve(tracking_uri, child_conn, self._conn)
            finally:
                os._exit(1)  # whatever happens, the child never runs on in its copy of the parent's code
        child_conn.close()
        atexit.register(self.close)

    def alive(self) -> bool:
        """Whether the child still runs (a child that ended is reaped here)."""
        if self._pid is None:
            return False
        try:
            ended, _ = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored)
            ended = self._pid
        if ended:
            self._pid = None
        return not ended

    def submit(self, run_id: str, rows: list[MetricRow]) -> None:
        """Queue rows of run_id (at most MLflow's 1000 values per batch) for writing; returns once they are in
        the pipe (a full pipe makes the training wait: the backlog stays bounded)."""
        self._send((run_id, rows))

    def sync(self, run_id: str) -> None:
        """Wait until every submitted row of run_id is in the store; RuntimeError if any could not be written
        (or the child died or hangs: then it is stopped, and the next run starts a new one)."""
        try:
            self._send((run_id, None))
            answered = self._conn.poll(SYNC_TIMEOUT_S)
            outcome = self._conn.recv() if answered else f"no answer within {SYNC_TIMEOUT_S} s"
        except (EOFError, OSError) as exc:
            answered, outcome = False, f"the writer process died ({type(exc).__name__})"
        if not answered:
            self.close(wait=0.0)  # unusable: the next run starts a new child
        if outcome is not None:
            raise RuntimeError(f"background metric writer failed: {outcome}")

    def close(self, wait: float = EXIT_TIMEOUT_S) -> None:
        """End the child once it has written everything sent, killing it after wait seconds (idempotent)."""
        atexit.unregister(self.close)
        if self._owner != os.getpid() or self._conn.closed:
            return
        with contextlib.suppress(OSError):
            self._send(None)
        self._conn.close()
        deadline = time.monotonic() + wait
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.alive():
            os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = None

    def _send(self, message: tuple[str, list[MetricRow] | None] | None) -> None:
        # A signal handler that raises (open_run's SIGTERM/SIGINT) must not cut a message in half: the child
        # would wait for the rest forever. Signals arriving meanwhile are delivered when send returns.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._conn.send(message)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _forget_inherited_engines() -> None:
    """Child process: drop the SQLAlchemy engines MLflow cached in the parent (``SqlAlchemyStore``'s
    ``_engine_map``) as SQLAlchemy prescribes after a fork: ``dispose(close=False)`` leaves the parent's
    connections alone, and the next store of any URI builds an engine (and pool) of its own. The map's lock
    is replaced too, in case a thread of the parent held it at the fork."""
    store_module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    if store_module is None:
        return
    store_class = store_module.SqlAlchemyStore
    store_class._engine_map_lock = threading.Lock()
    for engine in store_class._engine_map.values():
        engine.dispose(close=False)
    store_class._engine_map.clear()


def _serve(tracking_uri: str, conn: Any, parent_end: Any) -> None:
    """Child process: write (run id, rows) chunks until None; answer (run id, None) with that run's first
    error, or None when all its rows are stored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent_end.close()
    _forget_inherited_engines()
    table, opening_error = None, None
    try:
        table = MetricTable(tracking_uri)
    except Exception as exc:
        opening_error = f"{type(exc).__name__}: {exc}"
    errors: dict[str, str] = {}
    try:
        while (message := conn.recv()) is not None:
            run_id, rows = message
            if rows is None:
                conn.send(opening_error or errors.pop(run_id, None))
            elif table is not None and run_id not in errors:
                try:
                    table.write(run_id, rows)
                except Exception as exc:  # reported to the parent at sync, which fails the run
                    errors[run_id] = f"{type(exc).__name__}: {exc}"
    except (EOFError, OSError):
        pass  # the parent is gone: nothing left to report to
    except Exception as exc:  # a message the child cannot read: say so rather than leave the parent waiting
        with contextlib.suppress(OSError):
            conn.send(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
        os._exit(0)  # skip the parent's atexit handlers and inherited finalisers
