"""Metric values written into an MLflow SQLite store with one bulk insert per chunk.

``SqlAlchemyStore.log_batch`` builds an ORM object per value and lets SQLAlchemy's unit of work flush them:
about 90 µs of CPU per value here, which for a short run is more than its training costs and, in a parallel
sweep, competes with the training for the cores. ``MetricTable`` inserts the same rows into MLflow's own
tables (the statement is compiled from ``SqlMetric``, so its columns are the installed MLflow's) with one
executemany of plain tuples: about 10 µs per value, most of it SQLite's own. It keeps log_batch's rules,
and tests/test_tracking.py holds it to them value for value against log_batch on the installed MLflow:
- every metric name is checked by MLflow's own validation (once per name);
- NaN is stored as value 0 with ``is_nan``, ±inf as ±1.797e308 (``SqlAlchemyStore.sanitize_metric_value``);
- a value identical to one already stored (key, value, timestamp, step) is dropped, not an error;
- ``latest_metrics`` keeps, per key, the value with the largest (step, timestamp, value);
- a run that is not active (deleted) refuses new values.
"""

from __future__ import annotations

import operator
from typing import Any

MetricRow = tuple[str, float, int, int]  # (key, value, timestamp ms, step)
COLUMNS = ("run_uuid", "key", "value", "timestamp", "step", "is_nan")  # the order of a stored record


class MetricTable:
    """Writes metric values of any run of an SQLite tracking store (tracking_uri: ``sqlite:///...``)."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow.store.tracking.dbmodels.models import SqlMetric
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from sqlalchemy import insert

        # A store of its own: its engine carries MLflow's SQLite settings; nothing is shared with a caller.
        self._store = SqlAlchemyStore(tracking_uri, default_artifact_root=None)
        self._checked_keys: set[str] = set()
        # The primary key spans every column: "OR IGNORE" drops a value identical to a stored one, as
        # log_batch does.
        statement = insert(SqlMetric.__table__).prefix_with("OR IGNORE")
        compiled = statement.compile(dialect=self._store.engine.dialect, column_keys=list(COLUMNS))
        self._insert_sql = str(compiled)
        positions = (COLUMNS.index(name) for name in compiled.positiontup)
        self._in_statement_order = operator.itemgetter(*positions)

    def write(self, run_id: str, rows: list[MetricRow]) -> None:
        """Store rows of run run_id in one transaction; raises MlflowException as log_batch would."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlRun
        from mlflow.utils.validation import _validate_metric
        from sqlalchemy import insert, select, update

        values: list[tuple[Any, ...]] = []
        latest: dict[str, tuple[Any, ...]] = {}  # key -> the record (COLUMNS order) that comes last
        for key, value, timestamp, step in rows:
            if key not in self._checked_keys:
                _validate_metric(key, value, timestamp, step)
                self._checked_keys.add(key)
            is_nan, stored = self._store.sanitize_metric_value(value)
            record = (run_id, key, stored, timestamp, step, is_nan)
            values.append(self._in_statement_order(record))
            if key not in latest or _order(record) > _order(latest[key]):
                latest[key] = record
        if not values:
            return
        table = SqlLatestMetric.__table__
        with self._store.engine.begin() as conn:
            stage = conn.execute(select(SqlRun.lifecycle_stage).where(SqlRun.run_uuid == run_id))
            stage = stage.scalar_one_or_none()
            if stage != "active":
                raise MlflowException(f"The run {run_id} must be in the 'active' state. Current state "
                                      f"is {stage}.", INVALID_PARAMETER_VALUE)
            conn.exec_driver_sql(self._insert_sql, values)
            stored_latest = {row.key: (run_id, row.key, row.value, row.timestamp, row.step, row.is_nan)
                             for row in conn.execute(select(table).where(table.c.run_uuid == run_id,
                                                                         table.c.key.in_(list(latest))))}
            for key, record in latest.items():
                if key in stored_latest and _order(record) > _order(stored_latest[key]):
                    conn.execute(update(table).where(table.c.run_uuid == run_id, table.c.key == key)
                                 .values(dict(zip(COLUMNS[2:], record[2:], strict=True))))
            new = [dict(zip(COLUMNS, record, strict=True)) for key, record in latest.items()
                   if key not in stored_latest]
            if new:
                conn.execute(insert(table), new)


def _order(record: tuple[Any, ...]) -> tuple[int, int, float]:
    """(step, timestamp, value) of a record in COLUMNS order: log_batch's latest value of a key is the one
    with the largest."""
    return (record[4], record[3], record[2])
