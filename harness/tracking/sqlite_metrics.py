"""Metric values written into an MLflow SQLite store with one bulk insert per chunk.

``SqlAlchemyStore.log_batch`` builds an ORM object per value and lets SQLAlchemy's unit of work flush them:
about 90 µs of CPU per value here, which for a short run is more than its training costs and, in a parallel
sweep, competes with the training for the cores. ``MetricTable`` stores the same rows through MLflow's own
table definitions (``SqlMetric``, ``SqlLatestMetric``) with SQLAlchemy Core: about a third of the cost. It
keeps log_batch's rules, and tests/test_tracking.py holds it to them value for value against log_batch on
the installed MLflow:
- every metric name is checked by MLflow's own validation (once per name);
- NaN is stored as value 0 with ``is_nan``, ±inf as ±1.797e308 (``SqlAlchemyStore.sanitize_metric_value``);
- a value identical to one already stored (key, value, timestamp, step) is dropped, not an error;
- ``latest_metrics`` keeps, per key, the value with the largest (step, timestamp, value);
- a run that is not active (deleted) refuses new values.
"""

from __future__ import annotations

from typing import Any

MetricRow = tuple[str, float, int, int]  # (key, value, timestamp ms, step)


class MetricTable:
    """Writes metric values of any run of an SQLite tracking store (tracking_uri: ``sqlite:///...``)."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        # A store of its own: its engine carries MLflow's SQLite settings; nothing is shared with a caller.
        self._store = SqlAlchemyStore(tracking_uri, default_artifact_root=None)
        self._checked_keys: set[str] = set()

    def write(self, run_id: str, rows: list[MetricRow]) -> None:
        """Store rows of run run_id in one transaction; raises MlflowException as log_batch would."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun
        from mlflow.utils.validation import _validate_metric
        from sqlalchemy import insert, select, update

        records: list[dict[str, Any]] = []
        latest: dict[str, dict[str, Any]] = {}
        for key, value, timestamp, step in rows:
            if key not in self._checked_keys:
                _validate_metric(key, value, timestamp, step)
                self._checked_keys.add(key)
            is_nan, stored = self._store.sanitize_metric_value(value)
            record = {"run_uuid": run_id, "key": key, "value": stored, "timestamp": timestamp,
                      "step": step, "is_nan": is_nan}
            records.append(record)
            if key not in latest or _order(record) > _order(latest[key]):
                latest[key] = record
        if not records:
            return
        metrics, latest_metrics = SqlMetric.__table__, SqlLatestMetric.__table__
        with self._store.engine.begin() as conn:
            stage = conn.execute(select(SqlRun.lifecycle_stage).where(SqlRun.run_uuid == run_id))
            stage = stage.scalar_one_or_none()
            if stage != "active":
                raise MlflowException(f"The run {run_id} must be in the 'active' state. Current state "
                                      f"is {stage}.", INVALID_PARAMETER_VALUE)
            # The primary key spans every column: an identical value is already there, which log_batch
            # also drops.
            conn.execute(insert(metrics).prefix_with("OR IGNORE"), records)
            stored_latest = {
                row.key: row for row in conn.execute(select(latest_metrics).where(
                    latest_metrics.c.run_uuid == run_id, latest_metrics.c.key.in_(list(latest))))
            }
            new = [record for key, record in latest.items() if key not in stored_latest]
            for key, record in latest.items():
                if key in stored_latest and _order(record) > _order(stored_latest[key]._mapping):
                    conn.execute(update(latest_metrics)
                                 .where(latest_metrics.c.run_uuid == run_id, latest_metrics.c.key == key)
                                 .values(value=record["value"], timestamp=record["timestamp"],
                                         step=record["step"], is_nan=record["is_nan"]))
            if new:
                conn.execute(insert(latest_metrics), new)


def _order(record: Any) -> tuple[int, int, float]:
    """The order in which log_batch decides which value of a key is the latest."""
    return (record["step"], record["timestamp"], record["value"])
