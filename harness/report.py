"""Read tracked runs back from MLflow as pandas DataFrames and write them as Markdown / CSV tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.tracking import TrackingSettings, store_client


def _settings(settings: TrackingSettings | None) -> TrackingSettings:
    return settings or TrackingSettings()


def runs_frame(
    experiment: str,
    settings: TrackingSettings | None = None,
    parent_run_id: str | None = None,
    filter: str | None = None,
) -> pd.DataFrame:
    """One row per run of experiment (mlflow.search_runs columns: run_id, status, start_time, metrics.*,
    params.*, tags.*), newest first.

    settings: which store (default: the project's local store; its experiment field is ignored).
    parent_run_id: only the runs nested under that run (a sweep's jobs). filter: an MLflow filter string,
    e.g. ``"metrics.objective > 0.9 and params.seed = '0'"``, combined with the parent filter by ``and``.
    """
    import mlflow

    settings = _settings(settings)
    client = store_client(settings)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"experiment {experiment!r} not found in {settings.tracking_uri}")
    clauses = [f"tags.mlflow.parentRunId = '{parent_run_id}'"] if parent_run_id else []
    if filter:
        clauses.append(filter)
    previous = mlflow.get_tracking_uri()
    # mlflow.search_runs reads the process-wide tracking URI; point it at our store only for this call.
    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        frame = mlflow.search_runs(
            experiment_ids=[found.experiment_id], filter_string=" and ".join(clauses),
            output_format="pandas",
        )
    finally:
        mlflow.set_tracking_uri(previous)
    return frame


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
