"""A metric writer in a forked child process, so storing metrics runs beside training, not inside it.

Storing a metric value costs tens of microseconds of Python and SQLite (harness.tracking.sqlite_metrics); at
ten values per training step that is a large part of a small network's step. A thread would not help (the
work holds the GIL); a child process on the second core does. The child is forked, not spawned, so it starts
in milliseconds with what the parent has imported (MLflow too, if the parent has it). It opens its own
database connections: MLflow caches one SQLAlchemy engine per URI at class level, which the child inherits
with the parent's pool and the SQLite connections open at fork time; SQLAlchemy forbids using those across a
fork, so the child drops every inherited engine (without closing the parent's connections) before its store
builds a new one.

One child serves every run a process opens on one store (``BackgroundMetricWriter.shared``): a sweep's worker
forks it and opens the store's engine once, for its first run, not once per job. The parent sends
``(run, rows)`` chunks through a pipe; ``sync(run)`` waits until every chunk of that run is written and
raises if any failed, so no metric is dropped silently, and a failure of one run never touches the next.

The child can also open a run (``open(run, request)``): a process that has not imported MLflow yet forks the
child first, the child imports MLflow, opens the store and creates the run on the other core, and the
parent trains meanwhile; the run's first tags, params, texts, dataset and artifacts reach the store through
the child too (``call``), in order, and ``opened(run)`` gives the run's id once the child has made it.
Importing MLflow and its SQL store (about 1.4 s of CPU) thus leaves the way to the first training step.
``run`` is then a key the parent chose; the child maps it to the run's id.

The child ignores SIGINT and SIGTERM, which a terminal or a process-group kill also delivers to it, and
finishes what its parent sent: the parent's own handlers decide when to stop. It ends when the parent exits
(an atexit hook, or the pipe closing if the parent dies). A parent killed without warning (SIGKILL, the
out-of-memory killer) cannot end its runs: the child, which sees the pipe close without the closing
message, writes everything it had received, then ends every run it served that is still RUNNING and whose
process is gone as ``python -m harness.tracking.reap`` would (end_lost: KILLED, an ``error`` tag naming
the lost process), and exits; a parent that still runs is waited for TRAINER_EXIT_WAIT_S at most and its
runs are left to it. A run the parent made and ends by itself joins them with ``watch(run_id)``: the parent
run of a sweep (harness.tracking.SweepCallback), whose launching process would otherwise leave it RUNNING.
It is forked with os.fork rather than multiprocessing.Process: a multiprocessing child (a loky worker of the
joblib launcher) terminates and joins its multiprocessing children when it ends, and would wait forever for
one that ignores SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from typing import Any, ClassVar

from harness.tracking.orphans import end_lost, process_gone, process_tags
from harness.tracking.sqlite_metrics import MetricRow, MetricTable

SYNC_TIMEOUT_S = 300  # the pipe bounds the backlog to seconds of writing; this only catches a stuck child
EXIT_TIMEOUT_S = 10
# A process's files close just before it becomes a zombie: the pipe's end is seen a moment before the
# process is gone.
TRAINER_EXIT_WAIT_S = 2.0


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

    @classmethod
    def close_shared(cls, tracking_uri: str) -> None:
        """End this process's writer for tracking_uri, if it has one, once it has written what it was sent
        (a later shared() starts a new one)."""
        writer = cls._shared.pop(tracking_uri, None)
        if writer is not None:
            writer.close()

    def __init__(self, tracking_uri: str) -> None:
        self._owner = os.getpid()  # a forked copy of this object in another process must not use the pipe
        self._opened: dict[str, tuple[str | None, str | None, BaseException | None]] = {}
        # run -> (sync number, outcome) answers not yet taken: a sync interrupted by a signal leaves its
        # answer to the run's next sync, which reports its error too
        self._synced: dict[str, list[tuple[int, str | None]]] = {}
        self._syncs = itertools.count()
        self._conn, child_conn = multiprocessing.Pipe()
        parent = process_tags()  # read before the fork: the child cannot tell a dead parent's start time
        self._pid: int | None = os.fork()
        if self._pid == 0:
            try:
                _serve(tracking_uri, child_conn, self._conn, parent)
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

    def submit(self, run: str, rows: list[MetricRow]) -> None:
        """Queue rows of run (a run id, or the key of a run the child opened; at most MLflow's 1000 values per
        batch) for writing; returns once they are in the pipe (a full pipe makes the training wait: the
        backlog stays bounded)."""
        self._send(("rows", run, rows))

    def open(self, run: str, request: dict[str, Any]) -> None:
        """Let the child open the store and create a run under key run: request holds ensure_store's
        ``settings`` and create_run's ``run_name``, ``tags`` (strings) and ``start_time``."""
        self._send(("open", run, request))

    def watch(self, run_id: str) -> None:
        """Count run_id, a run this process made and ends itself (a sweep's parent), among the runs the child
        ends should this process die without closing the pipe: it is left alone if it has ended by then."""
        self._send(("watch", run_id))

    def call(self, run: str, method: str, *args: Any) -> None:
        """Queue ``MlflowLogger.<method>(*args)`` on the run the child opened under key run (small arguments:
        the pipe carries them while the child may still be opening the store)."""
        self._send(("call", run, method, args))

    def opened(self, run: str, wait: bool = True) -> tuple[str, str] | None:
        """(run id, experiment id) of the run the child opened under key run; None while it is not made yet
        and wait is False. The child's error (the store cannot be opened, say) is raised here."""
        while run not in self._opened:
            if not wait and not self._answer_waiting():
                return None
            self._receive()
        run_id, experiment_id, error = self._opened[run]
        if error is not None:
            raise error
        return run_id, experiment_id

    def sync(self, run: str) -> None:
        """Wait until every submitted row and call of run is in the store; RuntimeError if any could not be
        written (or the child died or hangs: then it is stopped, and the next run starts a new one)."""
        number = next(self._syncs)
        try:
            self._send(("sync", run, number))
        except OSError as exc:
            self.close(wait=0.0)
            raise RuntimeError(f"background metric writer failed: the writer process died "
                               f"({type(exc).__name__})") from exc
        while all(answered < number for answered, _ in self._synced.get(run, [])):
            self._receive()
        outcomes = [outcome for _, outcome in self._synced.pop(run) if outcome is not None]
        if outcomes:
            raise RuntimeError(f"background metric writer failed: {outcomes[0]}")

    def _answer_waiting(self) -> bool:
        try:
            return self._conn.poll(0)
        except (EOFError, OSError):
            return True  # _receive tells what happened

    def _receive(self) -> None:
        """Read the child's next answer into _opened / _synced; a child that died or hangs answers every run
        waiting for it with that failure (and is stopped)."""
        try:
            answered = self._conn.poll(SYNC_TIMEOUT_S)
            answer = self._conn.recv() if answered else None
            failure = None if answered else f"no answer within {SYNC_TIMEOUT_S} s"
        except (EOFError, OSError) as exc:
            answer, failure = None, f"the writer process died ({type(exc).__name__})"
        if failure is not None:
            self.close(wait=0.0)  # unusable: the next run starts a new child
            raise RuntimeError(f"background metric writer failed: {failure}")
        kind, run, *outcome = answer
        if kind == "failed":
            self.close(wait=0.0)
            raise RuntimeError(f"background metric writer failed: {outcome[0]}")
        if kind == "opened":
            self._opened[run] = tuple(outcome)
        else:
            self._synced.setdefault(run, []).append((outcome[0], outcome[1]))

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

    def _send(self, message: tuple[Any, ...] | None) -> None:
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


class _ChildRuns:
    """Child process: the runs it writes to, the ones it opened itself (keyed by the parent's key) and the
    first error of each run."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._table: MetricTable | None = None
        self.run_ids: dict[str, str] = {}  # key of a run opened here -> its run id
        self.loggers: dict[str, Any] = {}  # key -> the MlflowLogger of a run opened here
        self.errors: dict[str, str] = {}
        self.unopened: dict[str, str] = {}  # key -> why its run could not be opened (sticky)
        # the ids of the runs written to (or watched) and not ended here, in order
        self.served: dict[str, None] = {}

    def table(self) -> MetricTable:
        if self._table is None:  # the store may not exist before the child's first run opens it
            self._table = MetricTable(self.tracking_uri)
        return self._table

    def handle(self, message: tuple[Any, ...], conn: Any) -> None:
        kind, run, *rest = message
        if kind == "sync":
            conn.send(("synced", run, rest[0], self.unopened.get(run) or self.errors.pop(run, None)))
        elif kind == "open":
            conn.send(("opened", run, *self._open(run, rest[0])))
        elif kind == "watch":
            self.served[run] = None
        elif run in self.unopened or run in self.errors:
            return  # the run failed: its first error is what sync reports
        else:
            try:
                if kind == "rows":
                    run_id = self.run_ids.get(run, run)
                    self.served[run_id] = None
                    self.table().write(run_id, rest[0])
                else:
                    method, args = rest
                    getattr(self.loggers[run], method)(*args)
                    if method == "finish":
                        self.served.pop(self.run_ids[run], None)
            except Exception as exc:  # reported to the parent at sync, which fails the run
                self.errors[run] = f"{type(exc).__name__}: {exc}"

    def end_abandoned(self, parent: dict[str, str]) -> None:
        """The parent (process_tags) ended without closing the pipe: once it is gone, end the runs served
        here that are still RUNNING and whose process is gone, as harness.tracking.reap would."""
        if not self.served:
            return
        deadline = time.monotonic() + TRAINER_EXIT_WAIT_S
        while not process_gone(parent):
            if time.monotonic() > deadline:
                return  # it runs on (the pipe closed another way): its runs are its own
            time.sleep(0.01)
        from harness.tracking.store import TrackingSettings, store_client

        client = store_client(TrackingSettings(uri=self.tracking_uri))
        end_lost(client, [client.get_run(run_id) for run_id in self.served], "its metric writer process")

    def _open(self, run: str, request: dict[str, Any]) -> tuple[str | None, str | None, BaseException | None]:
        from harness.tracking.loggers import MlflowLogger
        from harness.tracking.store import ensure_store

        try:
            client, experiment_id = ensure_store(request["settings"])
            created = client.create_run(experiment_id, start_time=request["start_time"],
                                        run_name=request["run_name"], tags=request["tags"])
        except Exception as exc:
            self.unopened[run] = f"{type(exc).__name__}: {exc}"
            return None, None, _sendable(exc)
        run_id = self.run_ids[run] = created.info.run_id
        self.served[run_id] = None
        self.loggers[run] = MlflowLogger(client, run_id)
        return run_id, experiment_id, None


def _sendable(exc: BaseException) -> BaseException:
    """exc if it survives the pipe (pickling) as itself, else a RuntimeError with its type and message."""
    try:
        if type(pickle.loads(pickle.dumps(exc))) is type(exc):
            return exc
    except Exception:
        pass
    return RuntimeError(f"{type(exc).__name__}: {exc}")


def _serve(tracking_uri: str, conn: Any, parent_end: Any, parent: dict[str, str]) -> None:
    """Child process: handle the parent's messages (rows, opens, calls, syncs) until None; answer a sync with
    that run's first error, or None when all its rows and calls are stored, and an open with the run's id and
    experiment id, or the error that prevented it. A pipe that closes before None: the parent (process_tags)
    died, and the runs it left RUNNING are ended here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A loky worker's default multiprocessing context spawns, and a lock made in that context (tqdm's, for an
    # MLflow progress bar) is a named semaphore registered with the resource tracker until it is finalised,
    # which this child's os._exit skips: the tracker then warned of "leaked semaphore objects" at the end of
    # every joblib sweep. This child spawns nothing, so its locks need no name: the fork context's have none.
    multiprocessing.set_start_method("fork", force=True)
    parent_end.close()
    _forget_inherited_engines()
    runs = _ChildRuns(tracking_uri)
    try:
        while (message := conn.recv()) is not None:
            runs.handle(message, conn)
    except (EOFError, OSError):
        # The parent is gone, nobody to report to: what goes wrong here leaves its runs to reap.
        with contextlib.suppress(Exception):
            runs.end_abandoned(parent)
    except Exception as exc:  # a message the child cannot read: say so rather than leave the parent waiting
        with contextlib.suppress(OSError):
            conn.send(("failed", None, f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
        os._exit(0)  # skip the parent's atexit handlers and inherited finalisers
