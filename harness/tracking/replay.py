"""Send an offline record to the tracking server once it answers again, and end the run there.

    python -m harness.tracking.replay mlruns/hydra/runs/<date>/offline-run-<run id>.jsonl [--uri URI]

A run whose server stopped answering kept what the server did not receive in an OfflineRecord
(harness.tracking.server); on the server that run is still RUNNING. Replaying the record logs its metrics,
params, tags, dataset inputs and artifacts to the same run (by default on the server named in the record) and
ends it with the status the run really ended with. Replaying twice changes nothing: metric values the server
already holds are not sent again (the batch in flight when the server went away may have reached it), params
and tags are set to the same values, artifacts are overwritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.tracking.loggers import MAX_METRICS_PER_BATCH, dataset_input, pair_batches

REPLAYED = ("metric", "param", "tag", "dataset", "artifact")


@dataclass
class Replayed:
    """What a replay sent: counts per kind and the final status."""

    run_id: str
    uri: str
    counts: dict[str, int] = field(default_factory=dict)
    already_stored: int = 0  # metric values of the record the server held before the replay
    status: str | None = None

    def summary(self) -> str:
        sent = ", ".join(f"{count} {kind}{'s' if count != 1 else ''}" for kind, count in self.counts.items())
        held = f" ({self.already_stored} metric values were already there)" if self.already_stored else ""
        ended = f"ended {self.status}" if self.status else "left RUNNING (the record has no end status)"
        return f"run {self.run_id} on {self.uri}: replayed {sent or 'nothing'}{held}; {ended}"


def read_record(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the record's ``lost`` line, the other lines in order); ValueError naming the path if it is no
    offline record."""
    if not path.is_file():
        raise ValueError(f"record: no such file {path}")
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines or lines[0].get("kind") != "lost":
        raise ValueError(f"record: {path} is not an offline run record (its first line must be kind 'lost')")
    return lines[0], lines[1:]


def _not_stored(client: Any, run_id: str, metrics: list[Any]) -> list[Any]:
    """The metrics (mlflow Metric) that run_id does not hold yet. Sending a stored value again is harmless
    but slow: the store answers it by looking up every value of the batch."""
    stored = {(m.key, m.step, m.timestamp, m.value)
              for key in {metric.key for metric in metrics} for m in client.get_metric_history(run_id, key)}
    return [m for m in metrics if (m.key, m.step, m.timestamp, m.value) not in stored]


def replay(path: Path, uri: str | None = None) -> Replayed:
    """Log the record at path to its run on uri (default: the server the record names); see the module."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from harness.tracking.server import check_server, configure_http_retries

    lost, lines = read_record(path)
    uri = uri or lost["uri"]
    check_server(uri)
    configure_http_retries()
    client = MlflowClient(tracking_uri=uri)
    run_id = lost["run_id"]
    done = Replayed(run_id, uri)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_kind.setdefault(line["kind"], []).append(line)

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
    for line in by_kind.get("artifact", []):
        parent = str(Path(line["artifact_path"]).parent)
        client.log_artifact(run_id, line["path"], None if parent == "." else parent)
    done.counts = {kind: len(by_kind[kind]) for kind in REPLAYED if kind in by_kind}
    done.already_stored = len(metrics) - len(unsent)
    for line in by_kind.get("status", [])[-1:]:
        if line["error"] is not None:
            client.set_tag(run_id, "error", line["error"])
        client.set_terminated(run_id, line["status"])
        done.status = line["status"]
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, help="an offline-run-<run id>.jsonl file")
    parser.add_argument("--uri", help="the tracking server to send it to (default: the one in the record)")
    args = parser.parse_args(argv)
    from harness.config import ConfigError

    try:
        print(replay(args.record, args.uri).summary())
    except (ValueError, ConfigError) as exc:
        sys.exit(f"replay error: {exc}")


if __name__ == "__main__":
    main()
