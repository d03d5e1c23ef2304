"""Runs whose process is gone: what SIGKILL, the OOM killer or a power cut leaves RUNNING, and how they end.

Every run open_run creates records the process that owns it (tags ``harness.host``, ``harness.pid`` and, on
Linux, ``harness.pid_start``, the process's start time, so a recycled pid is not taken for the run's
process: process_tags). A run that is RUNNING while its process no longer exists on this host was never
closed: end_lost ends it KILLED with an ``error`` tag saying so, and a LoggedModel it was uploading (left
PENDING) deleted. Runs of other hosts, and runs without these tags, are left alone. Who calls it: a dead
trainer's metric writer (harness.tracking.writer), the launching process's writer for a sweep's parent
(harness.tracking.SweepCallback), and ``python -m harness.tracking.reap`` (the command, a module of its own
so that importing harness.tracking does not import the module ``-m`` runs).

A run ended this way is tagged ``harness.reaped`` (REAPED_TAG, naming the lost process); the joblib launcher's
more specific account of a dead worker's run (FAILED, ``WorkerDied``) replaces it (end_orphans(take_over=
True)), whichever of the two comes first: both end runs under one lock per store (ending_lock).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.tracking.redact import end_run

HOST_TAG, PID_TAG, START_TAG = "harness.host", "harness.pid", "harness.pid_start"
# a run whose job ran again: KILLED (torn down with a joblib pool, harness.joblib_launcher), or FAILED or
# KILLED without a checkpoint and replaced in a continued sweep (harness.sweep_continuation): superseded
RERUN_TAG = "harness.rerun"
REAPED_TAG = "harness.reaped"  # a run end_lost ended: the process (_process_identity) whose loss it recorded
# a run a signal stopped: the steps it had done (its steps_done metric is logged only when it ends FINISHED)
STOPPED_AT_TAG = "harness.stopped_at_step"


def superseded(run: Any) -> bool:
    """Whether an mlflow Run is a job's attempt that another run replaced (KILLED or FAILED, tagged
    RERUN_TAG)."""
    return run.info.status in ("KILLED", "FAILED") and RERUN_TAG in run.data.tags


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the process name (field 3, the state, first), None where unknown
    (no such process, or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()  # the name in parentheses may hold spaces


def _start_time(pid: int) -> str | None:
    """The start time of process pid in clock ticks since boot (field 22 of its stat), None where unknown."""
    fields = _stat(pid)
    return None if fields is None else fields[19]


def process_tags() -> dict[str, str]:
    """The tags that name this process: host, pid and (Linux) its start time."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    start = _start_time(os.getpid())
    if start is not None:
        tags[START_TAG] = start
    return tags


def process_gone(tags: dict[str, str]) -> bool:
    """True when the tags name a process of this host that no longer runs (or a new process with its pid)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    pid = int(tags[PID_TAG])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, another user's
    fields = _stat(pid)
    if fields is not None and fields[0] in ("Z", "X"):
        return True  # ended, not yet reaped by its parent
    recorded = tags.get(START_TAG)
    return recorded is not None and fields is not None and fields[19] != recorded


def _this_process(tags: dict[str, str]) -> bool:
    return tags.get(HOST_TAG) == socket.gethostname() and tags.get(PID_TAG) == str(os.getpid())


def orphaned(runs: Iterable[Any], *, this_process: bool = False) -> list[Any]:
    """The RUNNING runs (mlflow Run) whose process is gone; this_process: also those of this process (a
    process at exit holds no open run: one left RUNNING was cut off before open_run could guard it)."""
    return [run for run in runs if run.info.status == "RUNNING"
            and (process_gone(run.data.tags) or (this_process and _this_process(run.data.tags)))]


def process_name(tags: dict[str, str]) -> str:
    """The process a run's tags record, as its ``error`` tag names it: ``process 4711 on host``."""
    return f"process {tags.get(PID_TAG)} on {tags.get(HOST_TAG)}"


def _process_identity(tags: dict[str, str]) -> str:
    """process_name with the process's start time where known (``process 4711 on host, started 98765``):
    REAPED_TAG's value, which a recycled pid does not match."""
    start = f", started {tags[START_TAG]}" if START_TAG in tags else ""
    return f"{process_name(tags)}{start}"


def reaped(run: Any) -> bool:
    """Whether an mlflow Run was ended by end_lost because its process was gone, and not resumed since (a
    resumed run records the process that resumed it)."""
    tags = run.data.tags
    return run.info.status == "KILLED" and tags.get(REAPED_TAG) == _process_identity(tags)


@contextlib.contextmanager
def ending_lock(tracking_uri: str) -> Iterator[None]:
    """Held while runs of the store are ended for a lost process, so that two processes that end the same
    run at the same moment (the metric writer of a dead trainer, the joblib launcher's dead-worker handling)
    do it one after the other, the second seeing what the first did: an flock on ``<db>.ending.lock``
    beside an SQLite database. Other stores have no metric writer, and need none."""
    from harness.tracking.store import lock_beside, sqlite_path

    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    with lock_beside(db, ".ending.lock"):
        yield


def end_orphans(client: Any, runs: Iterable[Any], reason: str, status: str = "KILLED", *,
                this_process: bool = False, take_over: bool = False, mark: bool = False) -> list[Any]:
    """End every run among runs (mlflow Run, read again) that is orphaned with status and ``error = reason
    (process ...)``, and their LoggedModels left PENDING deleted (an upload the lost process had under way);
    returns them as they were. take_over: also the runs end_lost ended (reaped), whose REAPED_TAG goes; mark:
    tag the ended runs REAPED_TAG (end_lost)."""
    from mlflow.entities import RunTag

    # imported here: logged_model imports loggers, which imports writer, which imports this module
    from harness.tracking.logged_model import delete_pending_models

    def candidate(run: Any) -> bool:
        return (take_over and reaped(run)) or bool(orphaned([run], this_process=this_process))

    listed = [run for run in runs if candidate(run)]
    ended = []
    if not listed:
        return ended
    with ending_lock(client.tracking_uri):
        for run in listed:
            run = client.get_run(run.info.run_id)  # under the lock: another process may just have ended it
            if not candidate(run):
                continue
            run_id, recorded = run.info.run_id, run.data.tags
            drop_reaped(client, run)
            tags = [RunTag("error", f"{reason} ({process_name(recorded)})")]
            if mark:
                tags.append(RunTag(REAPED_TAG, _process_identity(recorded)))
            client.log_batch(run_id, tags=tags)
            delete_pending_models(client, run)
            end_run(client, run_id, status)
            ended.append(run)
    return ended


def drop_reaped(client: Any, run: Any) -> None:
    """Take end_lost's account (its ``error`` and REAPED_TAG) off run (an mlflow Run, read under
    ending_lock) when it is reaped: a more specific ending replaces it."""
    if reaped(run):
        drop_ending(client, run)


def drop_ending(client: Any, run: Any) -> None:
    """Take the account of run's last ending (an mlflow Run: its ``error``, end_lost's REAPED_TAG) off it:
    for a run that goes on (a resumed one) or that another ending replaces."""
    for key in ("error", REAPED_TAG, STOPPED_AT_TAG):
        if key in run.data.tags:
            client.delete_tag(run.info.run_id, key)


def end_lost(client: Any, runs: Iterable[Any], by: str) -> list[Any]:
    """End KILLED (tagged REAPED_TAG) the runs (mlflow Run) left RUNNING by a process that is gone, saying
    who ends them (by): what ``python -m harness.tracking.reap`` and a dead trainer's metric writer do."""
    reason = (f"the run's process ended without closing it (SIGKILL, out of memory or a power cut), so the "
              f"last seconds of its metrics may be missing; ended KILLED by {by}")
    return end_orphans(client, runs, reason, mark=True)


def all_pages(search: Any, *args: Any, **kwargs: Any) -> list[Any]:
    """Every result of an MlflowClient search (search_runs, search_experiments), all pages."""
    found, token = [], None
    while True:
        page = search(*args, max_results=1000, page_token=token, **kwargs)
        found.extend(page)
        token = page.token
        if not token:
            return found
