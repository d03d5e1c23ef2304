"""End the runs whose process is gone: what SIGKILL, the OOM killer or a power cut leaves RUNNING.

    python -m harness.tracking.reap [--uri URI] [--experiment NAME] [--dry-run]

Every run open_run creates records the process that owns it (tags ``harness.host``, ``harness.pid`` and, on
Linux, ``harness.pid_start``, the process's start time, so a recycled pid is not taken for the run's
process). A run that is RUNNING while its process no longer exists on this host was never closed: this
command ends it KILLED with an ``error`` tag saying so. What it had sent is in the store: metric values are
flushed at least every FLUSH_INTERVAL_S seconds (harness.tracking.loggers), so at most the last seconds of a
run are missing. A run that was offline (its tracking server lost) keeps the rest in its offline record;
the command names the record to replay. Runs of other hosts, and runs without these tags, are left alone.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.tracking.redact import end_run

HOST_TAG, PID_TAG, START_TAG = "harness.host", "harness.pid", "harness.pid_start"
RERUN_TAG = "harness.rerun"  # a KILLED run whose job ran again (harness.joblib_launcher): superseded


def superseded(run: Any) -> bool:
    """Whether an mlflow Run is a job's attempt that another run replaced (KILLED, tagged RERUN_TAG)."""
    return run.info.status == "KILLED" and RERUN_TAG in run.data.tags


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


def end_orphans(client: Any, runs: Iterable[Any], reason: str, status: str = "KILLED", *,
                this_process: bool = False) -> list[Any]:
    """End every orphaned run among runs with status and ``error = reason``; returns them."""
    ended = orphaned(runs, this_process=this_process)
    for run in ended:
        tags = run.data.tags
        client.set_tag(run.info.run_id, "error", f"{reason} (process {tags[PID_TAG]} on {tags[HOST_TAG]})")
        end_run(client, run.info.run_id, status)
    return ended


def all_pages(search: Any, *args: Any, **kwargs: Any) -> list[Any]:
    """Every result of an MlflowClient search (search_runs, search_experiments), all pages."""
    found, token = [], None
    while True:
        page = search(*args, max_results=1000, page_token=token, **kwargs)
        found.extend(page)
        token = page.token
        if not token:
            return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", help="the store (default: $MLFLOW_TRACKING_URI, else mlruns/mlflow.db)")
    parser.add_argument("--experiment", help="only this experiment (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs, change nothing")
    args = parser.parse_args(argv)
    from harness.config import ConfigError
    from harness.tracking.redact import redact
    from harness.tracking.store import TrackingSettings, project_root, store_client

    try:
        settings = TrackingSettings(uri=args.uri)
        client = store_client(settings)
    except (ValueError, ConfigError) as exc:
        sys.exit(f"reap error: {redact(str(exc))}")
    if args.experiment:
        experiment = client.get_experiment_by_name(args.experiment)
        if experiment is None:
            sys.exit(f"reap error: experiment: no experiment named {args.experiment!r}")
        experiment_ids = [experiment.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in all_pages(client.search_experiments)]
    running = all_pages(client.search_runs, experiment_ids, filter_string="attributes.status = 'RUNNING'")
    if args.dry_run:
        found = orphaned(running)
    else:
        found = end_orphans(client, running, "the run's process ended without closing it (SIGKILL, out of "
                                              "memory or a power cut); ended KILLED by harness.tracking.reap")
    verb = "would end" if args.dry_run else "ended"
    for run in found:
        print(f"{verb} KILLED: {run.info.run_id} {run.info.run_name or ''}".rstrip())
        for record in (project_root() / "mlruns").rglob(f"offline-run-{run.info.run_id}.jsonl"):
            print(f"  its offline record: python -m harness.tracking.replay {record} --uri <server>")
    print(f"{len(found)} of {len(running)} RUNNING runs had lost their process on this host")


if __name__ == "__main__":
    main()
