"""A grid sweep's results at a glance: one row per training run of the sweep, in job order, with the values of
the swept keys, the run's status, the steps it did and its task metric. The sweep's closing report prints it
and its parent run's MLflow description shows it (harness.tracking.callback); `python -m harness.report`
aggregates over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.tracking.orphans import STOPPED_AT_TAG, superseded

MAX_ROWS = 40  # a longer sweep's table names how many rows it leaves out (a tag holds 8,000 characters)


def _overrides(run: Any) -> dict[str, str]:
    """The run's recorded overrides (tag ``overrides``, "model=elman task.length=25") as key -> value."""
    pairs = (override.partition("=") for override in run.data.tags.get("overrides", "").split())
    return {key.lstrip("+~"): value for key, sep, value in pairs if sep}


def _swept_value(value: str) -> str:
    """A swept key's value as the table shows it: a fraction of more than 6 significant digits (an Optuna
    trial's sampled 0.011781448719376511) to 4 of them, 0.01178; anything else (an integer such as a seed
    20261201 among them) as the command gave it."""
    try:
        number = float(value)
    except ValueError:
        return value
    if number.is_integer() or float(format(number, ".6g")) == number:
        return value
    return format(number, ".4g")


def _number(value: float | None, digits: str = ".4g") -> str:
    return "" if value is None or math.isnan(value) else format(value, digits)


def _tag_number(tag: str | None) -> float | None:
    return None if tag is None else float(tag)


def _solved(run: Any) -> str:
    solved = run.data.metrics.get("solved")
    return "" if solved is None else "yes" if solved else "no"


def results_rows(runs: Sequence[Any], swept: Sequence[str]) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows) of the training runs among runs (mlflow Runs of one sweep; a re-run job's superseded
    attempt left out), in job order; None when there is none (a study's or another app's children)."""
    trained = sorted((run for run in runs if "metric_name" in run.data.tags and not superseded(run)),
                     key=lambda run: (int(run.data.tags.get("job_num") or 0), run.info.start_time))
    if not trained:
        return None
    metrics = {run.data.tags["metric_name"] for run in trained}
    one_metric = len(metrics) == 1
    header = ["job", "run", *swept, "status", "steps",
              *([f"val {next(iter(metrics))}"] if one_metric else ["metric", "value"]), "solved"]
    rows = []
    for run in trained:
        values, tags, metrics_of = _overrides(run), run.data.tags, run.data.metrics
        metric = tags["metric_name"]
        # objective: the final (or, with early stopping, the best) value; a stopped run has only its last
        value = metrics_of.get("objective", metrics_of.get(f"val/{metric}"))
        # a run a signal stopped logged no steps_done metric, only how far it got
        steps = metrics_of.get("steps_done", _tag_number(tags.get(STOPPED_AT_TAG)))
        diverged = metrics_of.get("diverged_step")
        shown = f"diverged at step {diverged:.0f}" if diverged is not None else _number(value)
        rows.append([tags.get("job_num", ""), run.info.run_name,
                     *(_swept_value(values.get(key, "")) for key in swept),
                     run.info.status.lower(), _number(steps, ".0f"),
                     *([] if one_metric else [metric]), shown, _solved(run)])
    return header, rows


def results_table(runs: Sequence[Any], swept: Sequence[str]) -> str | None:
    """results_rows as a Markdown table (at most MAX_ROWS rows, then how many more), None as there."""
    found = results_rows(runs, swept)
    if found is None:
        return None
    header, rows = found
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        lines.append(f"\n… and {len(rows) - MAX_ROWS} more runs (`python -m harness.report <this run's id>` "
                     "reads them all)")
    return "\n".join(lines)
