"""End the runs whose process is gone: what SIGKILL, the OOM killer or a power cut leaves RUNNING.

    python -m harness.tracking.reap [--uri URI] [--experiment NAME] [--dry-run]

Every run open_run creates records the process that owns it (tags ``harness.host``, ``harness.pid`` and, on
Linux, ``harness.pid_start``, the process's start time, so a recycled pid is not taken for the run's
process). A run that is RUNNING while its process no longer exists on this host was never closed: this
command ends it KILLED with an ``error`` tag saying so, and a LoggedModel the process left PENDING
mid-upload deleted (end_lost). What it had sent is in the store: metric
values are flushed at least every FLUSH_INTERVAL_S seconds (harness.tracking.loggers), so at most the last
seconds of a run are missing. A run that was offline (its tracking server lost) keeps the rest in its offline
record; the command names the record to replay. Runs of other hosts, and runs without these tags, are left
alone.

On an SQLite store a run's process seldom leaves it for this command: its metric writer process
(harness.tracking.writer), which outlives it, writes what it was sent and ends the run itself with end_lost
within about a second. A sweep's parent run records its launching process too, and that process's writer
ends it the same way (harness.tracking.SweepCallback); the joblib launcher's workers stop their jobs when
their launcher is gone (harness.joblib_launcher). So a SIGKILLed sweep on an SQLite store leaves nothing for
this command. It is the way for a server's or another database's runs (no writer), and for a run whose
writer died too (a power cut, a SIGKILL of the whole process group: the parent and its job runs alike).

The runs are found and ended by harness.tracking.orphans (end_lost), which the package imports; this module
is only the command, so that ``-m`` runs a module no import has loaded.
"""

from __future__ import annotations

import argparse
import sys

from harness.runtime import quiet_library_logs
from harness.tracking.orphans import all_pages, end_lost, orphaned


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
    found = orphaned(running) if args.dry_run else end_lost(client, running, "harness.tracking.reap")
    verb = "would end" if args.dry_run else "ended"
    for run in found:
        print(f"{verb} KILLED: {run.info.run_id} {run.info.run_name or ''}".rstrip())
        for record in (project_root() / "mlruns").rglob(f"offline-run-{run.info.run_id}.jsonl"):
            print(f"  its offline record: python -m harness.tracking.replay {record} --uri <server>")
    print(f"{len(found)} of {len(running)} RUNNING runs had lost their process on this host")


if __name__ == "__main__":
    quiet_library_logs()
    main()
