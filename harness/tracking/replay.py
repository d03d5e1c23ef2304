"""Send offline records to the tracking server once it answers again, and end their runs there.

    python -m harness.tracking.replay mlruns/hydra/runs/<date>/offline-run-<run id>.jsonl --uri URI
    python -m harness.tracking.replay mlruns/hydra/multiruns/<date> --uri URI    # every record of a sweep

A run whose server stopped answering kept what the server did not receive in an OfflineRecord
(harness.tracking.server); on the server that run is still RUNNING. Replaying the record logs its metrics,
params, tags, dataset inputs and artifacts to the same run and ends it with the status (and at the time) the
run really ended with. A run that started while the server was gone (a sweep's job) exists only in its
record, under a local run id: MLflow's API lets no client choose a run id, so the replay creates it (same
experiment, name, start time and parent) under the id the server assigns and tags it
``harness.offline_run_id`` with the local one, and says so. Replaying twice changes nothing: a run created
before is found by that tag, metric values the server already holds are not sent again (the batch in flight
when the server went away may have reached it), params and tags are set to the same values, artifacts are
overwritten. A folder (a sweep's) replays every record in it, its jobs' before the sweep parent's own; a
sweep parent whose end went offline gets its children counted then (``finished``, ``failed``, ...), as its
end would have.

A record is a plain file anyone may have edited, so it is checked before anything is sent: its run id must be
the one in its file name, and every artifact it names must lie inside its own ``<stem>_artifacts/`` folder
(resolved, so no ``..`` or symlink leads out). The target server is ``--uri``, else ``$MLFLOW_TRACKING_URI``
when that is the server the record names; a record is never sent to a server only because it names it. A line
cut short (the process died while writing it) is skipped and named; the complete lines are replayed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.runtime import quiet_library_logs
from harness.tracking.logged_model import NAME as MODEL_NAME
from harness.tracking.logged_model import delete_models
from harness.tracking.loggers import MAX_METRICS_PER_BATCH, dataset_input, pair_batches
from harness.tracking.redact import end_run, redact

REPLAYED = ("metric", "param", "tag", "dataset", "artifact")
FIELDS = {"lost": ("run_id", "uri"), "run": ("experiment", "run_name", "start_time"),
          "metric": ("key", "value", "timestamp", "step"), "param": ("key", "value"), "tag": ("key", "value"),
          "dataset": ("name", "fingerprint", "context"), "artifact": ("artifact_path",),
          "sweep": ("time",), "status": ("status", "error")}
RECORD_PREFIX = "offline-run-"
OFFLINE_ID_TAG = "harness.offline_run_id"


@dataclass
class Replayed:
    """What a replay sent: counts per kind and the final status."""

    run_id: str
    uri: str
    counts: dict[str, int] = field(default_factory=dict)
    already_stored: int = 0  # metric values of the record the server held before the replay
    status: str | None = None
    skipped: list[int] = field(default_factory=list)  # numbers of the lines that were not complete
    local_id: str | None = None  # the record's own id, for a run that started offline
    created: bool = False  # this replay created the run (else an earlier one had)

    def summary(self) -> str:
        sent = ", ".join(f"{count} {kind}{'s' if count != 1 else ''}" for kind, count in self.counts.items())
        held = f" ({self.already_stored} metric values were already there)" if self.already_stored else ""
        ended = f"ended {self.status}" if self.status else "left RUNNING (the record has no end status)"
        skipped = (f"; skipped incomplete line{'s' if len(self.skipped) > 1 else ''} "
                   f"{', '.join(map(str, self.skipped))}" if self.skipped else "")
        mapped = ""
        if self.local_id is not None:
            how = "created now" if self.created else "created by an earlier replay"
            mapped = f" (started offline as {self.local_id}; {how}, tag {OFFLINE_ID_TAG})"
        return (f"run {self.run_id}{mapped} on {self.uri}: replayed {sent or 'nothing'}{held}; "
                f"{ended}{skipped}")


@dataclass
class Record:
    """An offline record read and checked: its ``lost`` line, the complete lines after it in order (each
    artifact line with ``source``, the resolved file to upload), and the numbers of incomplete lines."""

    lost: dict[str, Any]
    lines: list[dict[str, Any]]
    skipped: list[int]


def _complete(text: str) -> dict[str, Any] | None:
    """The line's object if it parses and has every field of its kind, else None."""
    try:
        line = json.loads(text)
    except ValueError:
        return None
    if not isinstance(line, dict) or line.get("kind") not in FIELDS:
        return None
    return line if all(name in line for name in FIELDS[line["kind"]]) else None


def read_record(path: Path) -> Record:
    """The record at path, checked (see the module docstring); ValueError naming the path and the line if it
    is no offline record, names another run or an artifact outside its folder."""
    if not path.is_file():
        raise ValueError(f"record: no such file {path}")
    lines: list[dict[str, Any]] = []
    skipped: list[int] = []
    for number, text in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if text.strip():
            line = _complete(text)
            if line is None:
                skipped.append(number)
            else:
                lines.append(line)
    if not lines or lines[0]["kind"] != "lost" or skipped[:1] == [1]:
        raise ValueError(f"record: {path} is not an offline run record (its first line must be kind 'lost')")
    lost = lines.pop(0)
    if path.name != f"{RECORD_PREFIX}{lost['run_id']}.jsonl":
        raise ValueError(f"record: {path} names run {lost['run_id']!r}, not the run of its file name")
    folder = path.with_name(f"{path.stem}_artifacts").resolve()
    for line in lines:
        if line["kind"] == "artifact":
            source = (folder / str(line["artifact_path"])).resolve()
            if not source.is_relative_to(folder) or not source.is_file():
                raise ValueError(f"record: {path} names artifact {line['artifact_path']!r}, which is not a "
                                 f"file inside {folder}; nothing was sent")
            line["source"] = source
    return Record(lost, lines, skipped)


def target_uri(record: Record, uri: str | None) -> str:
    """uri, else ``$MLFLOW_TRACKING_URI`` if that is the record's server; ValueError asking for --uri."""
    if uri:
        return uri
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured and redact(configured) == record.lost["uri"]:
        return configured
    where = f"the configured server is {redact(configured)}" if configured else "no server is configured"
    raise ValueError(f"uri: the record was sent to {record.lost['uri']} and {where}; pass --uri "
                     f"<server> to choose where run {record.lost['run_id']} goes")


def _not_stored(client: Any, run_id: str, metrics: list[Any]) -> list[Any]:
    """The metrics (mlflow Metric) that run_id does not hold yet. Sending a stored value again is harmless
    but slow: the store answers it by looking up every value of the batch."""
    stored = {(m.key, m.step, m.timestamp, m.value)
              for key in {metric.key for metric in metrics} for m in client.get_metric_history(run_id, key)}
    return [m for m in metrics if (m.key, m.step, m.timestamp, m.value) not in stored]


def _created_run(uri: str, local_id: str, started: dict[str, Any]) -> tuple[str, bool]:
    """(server run id, created now) of the run that started offline as local_id: the one an earlier replay
    created (tag OFFLINE_ID_TAG), else a new run in the record's experiment (created if missing)."""
    from harness.tracking.store import TrackingSettings, ensure_store

    client, experiment_id = ensure_store(TrackingSettings(mode="server", uri=uri,
                                                          experiment=started["experiment"]))
    found = client.search_runs([experiment_id], filter_string=f"tags.{OFFLINE_ID_TAG} = '{local_id}'",
                               max_results=1)
    if found:
        return found[0].info.run_id, False
    run = client.create_run(experiment_id, start_time=started["start_time"], run_name=started["run_name"],
                            tags={OFFLINE_ID_TAG: local_id})
    return run.info.run_id, True


def replay(path: Path, uri: str | None = None) -> Replayed:
    """Log the record at path to its run on uri (see target_uri); see the module docstring."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from harness.tracking.health import check_server, configure_http_retries

    record = read_record(path)
    lost, lines = record.lost, record.lines
    uri = target_uri(record, uri)
    check_server(uri)
    configure_http_retries()
    client = MlflowClient(tracking_uri=uri)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_kind.setdefault(line["kind"], []).append(line)
    run_id = lost["run_id"]
    done = Replayed(run_id, redact(uri), skipped=record.skipped)
    for started in by_kind.pop("run", [])[:1]:
        run_id, done.created = _created_run(uri, lost["run_id"], started)
        done.run_id, done.local_id = run_id, lost["run_id"]

    metrics = [Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in by_kind.get("metric", [])]
    unsent = _not_stored(client, run_id, metrics)
    for start in range(0, len(unsent), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=unsent[start:start + MAX_METRICS_PER_BATCH])
    for kind in ("param", "tag"):
        values = {line["key"]: line["value"] for line in by_kind.get(kind, [])}
        for _, batch in pair_batches(kind, values):
            client.log_batch(run_id, **batch)
    for line in by_kind.get("dataset", []):
        entry = dataset_input(line["name"], line["fingerprint"], line["context"])
        client.log_inputs(run_id, datasets=[entry])
    if any(Path(line["artifact_path"]).parts[0] == MODEL_NAME for line in by_kind.get("artifact", [])):
        # the model went offline: a LoggedModel the lost server was left with (PENDING, no files) would hide
        # these files from runs:/<run id>/model, which looks for the run's LoggedModel first
        delete_models(client, client.get_run(run_id))
    for line in by_kind.get("artifact", []):
        parent = str(Path(line["artifact_path"]).parent)
        client.log_artifact(run_id, str(line["source"]), None if parent == "." else parent)
    done.counts = {kind: len(by_kind[kind]) for kind in REPLAYED if kind in by_kind}
    done.already_stored = len(metrics) - len(unsent)
    for line in by_kind.get("sweep", [])[:1]:
        # A sweep parent whose end went offline: its children are counted now, as its end would have.
        from harness.tracking.callback import count_metrics, summarize_children

        counted = count_metrics(summarize_children(client, run_id), line["time"])
        client.log_batch(run_id, metrics=_not_stored(client, run_id, counted))
    for line in by_kind.get("status", [])[-1:]:
        if line["error"] is not None:
            client.set_tag(run_id, "error", line["error"])
        end_run(client, run_id, line["status"], line.get("end_time"))
        done.status = line["status"]
    return done


def records_in(path: Path) -> list[Path]:
    """path itself if it is a file, else the offline records of the folder path (a sweep's): its jobs' (one
    folder down) first, then its own (the sweep parent's end)."""
    if not path.is_dir():
        return [path]
    pattern = f"{RECORD_PREFIX}*.jsonl"
    return sorted(path.glob(f"*/{pattern}")) + sorted(path.glob(pattern))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, nargs="+", metavar="record",
                        help="an offline-run-<run id>.jsonl file, or a folder (a sweep's) holding records")
    parser.add_argument("--uri", help="the tracking server to send it to (default: $MLFLOW_TRACKING_URI when "
                        "it is the server the record names)")
    args = parser.parse_args(argv)
    from harness.config import ConfigError

    paths = [record for path in args.records for record in records_in(path)]
    if not paths:
        sys.exit(f"replay error: record: no {RECORD_PREFIX}*.jsonl in {', '.join(map(str, args.records))}")
    failed = 0
    for path in paths:
        try:
            print(replay(path, args.uri).summary())
        except (ValueError, ConfigError) as exc:
            if len(paths) == 1:
                sys.exit(f"replay error: {exc}")
            print(f"replay error: {exc}", file=sys.stderr)
            failed += 1
    if failed:
        sys.exit(f"replay error: {failed} of {len(paths)} records were not sent")


if __name__ == "__main__":
    quiet_library_logs()
    main()
