"""A metric writer in a forked child process, so MLflow's per-value cost runs beside training, not inside it.

MLflow's SQL store spends about 0.1-0.2 ms of Python (its ORM) per metric value; at ten values per training
step that is most of a small network's step. A thread would not help (the ORM holds the GIL); a child process
on the second core does. The child is forked, not spawned, so it starts in milliseconds with MLflow already
imported; it opens its own database connections (a fork never reuses the parent's SQLite connections).

The parent sends chunks of (key, value, timestamp ms, step) through a pipe; ``close()`` waits until every
chunk is written and raises if the child failed, so no metric is dropped silently. The child ignores SIGINT
and SIGTERM, which a terminal or a process-group kill also delivers to it, and finishes what its parent sent:
the parent's own handlers decide when to stop. If the parent dies, the pipe closes and the child exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from typing import Any

MetricRow = tuple[str, float, int, int]
CLOSE_TIMEOUT_S = 300  # the pipe bounds the backlog to seconds of writing; this only catches a stuck child


def fork_available() -> bool:
    """True where a forked child can write (POSIX); elsewhere metrics are written in the calling process."""
    return "fork" in multiprocessing.get_all_start_methods()


class BackgroundMetricWriter:
    """Writes the metrics of one run of a database-backed store (tracking_uri) in a child process."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(tracking_uri, run_id, child_conn, self._conn), daemon=True,
            name=f"mlflow-metric-writer-{run_id[:8]}",
        )
        self._process.start()
        child_conn.close()

    def submit(self, rows: list[MetricRow]) -> None:
        """Queue rows (at most MLflow's 1000 values per batch) for writing; returns once they are in the pipe
        (a full pipe makes the training wait: the backlog stays bounded)."""
        self._send(rows)

    def close(self) -> None:
        """Wait until every submitted row is in the store; raise RuntimeError if the child failed."""
        try:
            self._send(None)
            if self._conn.poll(CLOSE_TIMEOUT_S):
                outcome = self._conn.recv()
            else:
                self._process.kill()
                outcome = f"no answer within {CLOSE_TIMEOUT_S} s"
        except (EOFError, OSError) as exc:
            outcome = f"the writer process died ({type(exc).__name__})"
        finally:
            self._conn.close()
            self._process.join()
        if outcome is not None:
            raise RuntimeError(f"background metric writer failed: {outcome}")

    def _send(self, message: list[MetricRow] | None) -> None:
        # A signal handler that raises (open_run's SIGTERM/SIGINT) must not cut a message in half: the child
        # would wait for the rest forever. Signals arriving meanwhile are delivered when send returns.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._conn.send(message)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _serve(tracking_uri: str, run_id: str, conn: Any, parent_end: Any) -> None:
    """Child process: write every chunk received until None, then answer None (success) or the error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent_end.close()
    from mlflow.entities import Metric
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store, error = None, None
    try:
        # A store of its own: fresh engine and connections, nothing shared with the parent's.
        store = SqlAlchemyStore(tracking_uri, default_artifact_root=None)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    try:
        while (rows := conn.recv()) is not None:
            if store is not None and error is None:
                try:
                    store.log_batch(run_id, [Metric(k, v, t, s) for k, v, t, s in rows], [], [])
                except Exception as exc:  # reported to the parent, which fails the run
                    error = f"{type(exc).__name__}: {exc}"
        conn.send(error)
    except (EOFError, OSError):
        pass  # the parent is gone: nothing left to report to
    except Exception as exc:  # a message the child cannot read: say so rather than leave the parent waiting
        with contextlib.suppress(OSError):
            conn.send(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
        os._exit(0)  # skip the parent's atexit handlers and inherited finalisers
