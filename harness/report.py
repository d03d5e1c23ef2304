"""Read tracked runs back from MLflow as pandas DataFrames and write them as Markdown / CSV tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.config import ConfigError
from harness.runtime import quiet_library_logs
from harness.tracking import TrackingSettings, store_client
from harness.tracking.orphans import superseded
from harness.tracking.redact import redact
from harness.tracking.store import sqlite_path

SEARCH_PAGE = 1000  # runs per search request
# MLflow's error codes for an id its store does not hold: SQL stores and servers say the first, a file
# store (and a server over one) the second for an id that is not a run id's shape
NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


class RunNotFound(ValueError):
    """A run id the store does not hold, or a store that cannot be read; the message names both."""


def _settings(settings: TrackingSettings | None) -> TrackingSettings:
    return settings or TrackingSettings()


def find_run(run_id: str, settings: TrackingSettings | None = None):
    """(MlflowClient, Run) of run_id in settings' store (default: the project's local store).

    Raises RunNotFound, one line naming run_id and the store, when the store does not hold the run, an
    SQLite store's file does not exist (nothing is created for the look-up), or the store cannot be
    reached; MLflow's own exception was a page of traceback.
    """
    from mlflow.exceptions import MlflowException

    settings = _settings(settings)
    uri = settings.tracking_uri
    where = redact(uri)
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise RunNotFound(f"run {run_id} not found: there is no store at {where} (no such file)")
    try:
        client = store_client(settings)
    except ConfigError as exc:  # a server that does not answer, a database that takes no connection
        reason = str(exc).removeprefix("tracking.uri: ").split("; ")[0]
        raise RunNotFound(f"run {run_id} not looked up: {reason}") from None
    try:
        return client, client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code not in NOT_FOUND_CODES:
            raise
        raise RunNotFound(f"run {run_id} not found in {where}") from None


def runs_frame(
    experiment: str,
    settings: TrackingSettings | None = None,
    parent_run_id: str | None = None,
    filter: str | None = None,
) -> pd.DataFrame:
    """One row per run of experiment, newest first: columns run_id, experiment_id, status, artifact_uri,
    start_time, end_time (UTC timestamps), then metrics.* (latest values, NaN where a run lacks one),
    params.* and tags.* (None where missing) - the layout of mlflow.search_runs, read through an explicit
    MlflowClient so no process-wide tracking state is touched.

    settings: which store (default: the project's local store; its experiment field is ignored).
    parent_run_id: only the runs nested under that run (a sweep's jobs). filter: an MLflow filter string,
    e.g. ``"metrics.objective > 0.9 and params.seed = '0'"``, combined with the parent filter by ``and``.
    Runs a sweep job's re-run superseded (tagged harness.rerun: the job was torn down with a joblib pool, or
    replaced in a continued sweep, and ran again) are left out, so no result counts twice.
    """
    settings = _settings(settings)
    client = store_client(settings)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"experiment {experiment!r} not found in {settings.tracking_uri}")
    clauses = [f"tags.mlflow.parentRunId = '{parent_run_id}'"] if parent_run_id else []
    if filter:
        clauses.append(filter)
    runs, token = [], None
    while True:
        page = client.search_runs([found.experiment_id], filter_string=" and ".join(clauses),
                                  max_results=SEARCH_PAGE, order_by=["attributes.start_time DESC"],
                                  page_token=token)
        runs.extend(run for run in page if not superseded(run))
        token = page.token
        if not token:
            break
    return _frame_of(runs)



def _frame_of(runs) -> pd.DataFrame:
    """The search_runs layout of a list of mlflow Run objects (see runs_frame)."""
    info = pd.DataFrame(
        {
            "run_id": [run.info.run_id for run in runs],
            "experiment_id": [run.info.experiment_id for run in runs],
            "status": [run.info.status for run in runs],
            "artifact_uri": [run.info.artifact_uri for run in runs],
            "start_time": pd.to_datetime([run.info.start_time for run in runs], unit="ms", utc=True),
            "end_time": pd.to_datetime([run.info.end_time for run in runs], unit="ms", utc=True),
        }
    )
    parts = [info]
    for prefix in ("metrics", "params", "tags"):
        values = pd.DataFrame([getattr(run.data, prefix) for run in runs], index=info.index)
        if prefix == "metrics":
            values = values.astype(float)
        else:
            values = values.astype(object).where(values.notna(), None)
        parts.append(values.add_prefix(f"{prefix}.").sort_index(axis=1))
    return pd.concat(parts, axis=1)


def metric_history(run_id: str, key: str, settings: TrackingSettings | None = None) -> pd.DataFrame:
    """Every logged value of metric key in run_id: columns step, value, timestamp (ms), sorted by step."""
    client = store_client(_settings(settings))
    history = client.get_metric_history(run_id, key)
    frame = pd.DataFrame(
        {"step": [m.step for m in history], "value": [m.value for m in history],
         "timestamp": [m.timestamp for m in history]},
        columns=["step", "value", "timestamp"],
    )
    return frame.sort_values(["step", "timestamp"], kind="stable").reset_index(drop=True)


def to_markdown(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """frame as a GitHub Markdown table (index dropped), floats formatted with floatfmt."""
    return frame.to_markdown(index=False, floatfmt=floatfmt)


def write_table(frame: pd.DataFrame, stem: str | Path, floatfmt: str = ".4g") -> tuple[Path, Path]:
    """Write frame to ``<stem>.md`` (Markdown) and ``<stem>.csv`` (full precision); returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    markdown, csv = stem.with_name(stem.name + ".md"), stem.with_name(stem.name + ".csv")
    markdown.write_text(to_markdown(frame, floatfmt) + "\n")
    frame.to_csv(csv, index=False)
    return markdown, csv


def main(argv: list[str] | None = None) -> None:
    """``python -m harness.report <sweep parent run id>``: the sweep's results over seeds
    (harness.seed_report), printed and logged to the parent run."""
    import argparse
    import sys

    from harness.seed_report import DEFAULT_CURVES, log_seed_report, seed_report
    from harness.seed_stats import INTERVALS

    parser = argparse.ArgumentParser(prog="python -m harness.report", description=main.__doc__)
    parser.add_argument("parent_run_id", help="the sweep's parent run (id in <sweep dir>/parent_run_id)")
    parser.add_argument("--interval", choices=INTERVALS, default="t",
                        help="95%% interval of the mean: Student t (default) or percentile bootstrap")
    parser.add_argument("--metrics", help="comma-separated final metrics (default: all but per-step ones)")
    parser.add_argument("--curves", default=",".join(DEFAULT_CURVES),
                        help="comma-separated metrics drawn as bands over seeds per step "
                             "(default: %(default)s)")
    parser.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else the embedded store)")
    parser.add_argument("--no-log", action="store_true", help="print only; log nothing to the parent run")
    args = parser.parse_args(argv)
    try:
        settings = TrackingSettings(mode="server" if (args.uri or "").startswith("http") else "local",
                                    uri=args.uri)
        report = seed_report(args.parent_run_id, settings, kind=args.interval,
                             metrics=args.metrics.split(",") if args.metrics else None)
    except RunNotFound as exc:
        sys.exit(f"error: {exc}; a run of another store needs --uri <its tracking URI> (the sweep's "
                 "tracking.uri, e.g. --uri http://127.0.0.1:5000)")
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    print(report.markdown)
    for name, status in report.skipped:
        print(f"left out: {name} ({status.lower()})")
    if not args.no_log:
        curves = tuple(c for c in args.curves.split(",") if c)
        written = log_seed_report(args.parent_run_id, report, settings, curves)
        print(f"logged to run {args.parent_run_id}: {', '.join(written)}")


if __name__ == "__main__":
    quiet_library_logs()
    # harness.report's main, not __main__'s: seed_report raises harness.report's RunNotFound, which a class
    # of this second copy of the module would not catch
    from harness.report import main as package_main

    package_main()
