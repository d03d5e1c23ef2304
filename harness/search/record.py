"""What a search writes to MLflow: each trial's child run is tagged with its study and trial number, and the
sweep's parent run gets the best trial, a table of the top trials and Optuna's figures.

Jobs open their own runs (nested under the sweep's parent by harness.tracking), named after their trial
when the app reads it (harness.search.current_trial; train.py); the sweeper finds a job's runs by the
``job_num`` tag they carry and links both ways: the runs get ``optuna.*`` tags and, if the app did not name
them so, a run name ending in ``-t<trial number>``; the trial gets the user attribute ``mlflow_run_ids``.
The parent is tagged with its study and the trials the study held before this invocation from its start.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pandas as pd

from harness.search import trial_run_name
from harness.search.study import storage_label
from harness.tracking import TrackingSettings
from harness.tracking.experiment_notes import NOTE_TAG
from harness.tracking.loggers import fit_note
from harness.tracking.runs import resolve_parent_run_id

log = logging.getLogger(__name__)


def trials_frame(study: Any) -> pd.DataFrame:
    """One row per trial: number, state, value, duration_s, one column per sampled parameter, run ids."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        duration = (trial.datetime_complete - trial.datetime_start).total_seconds() \
            if trial.datetime_complete and trial.datetime_start else float("nan")
        rows.append({"trial": trial.number, "state": trial.state.name, "value": trial.value,
                     "duration_s": duration, **trial.params,
                     "runs": " ".join(trial.user_attrs.get("mlflow_run_ids", []))})
    return pd.DataFrame(rows)


def top_trials(study: Any, count: int) -> pd.DataFrame:
    """The count best complete trials, best first (ties keep the trial order)."""
    frame = trials_frame(study)
    if frame.empty:
        return frame
    frame = frame[frame["state"] == "COMPLETE"]
    ascending = study.direction.name == "MINIMIZE"
    return frame.sort_values(["value", "trial"], ascending=[ascending, True], kind="stable").head(count)


def continued_line(study_name: str, before: int) -> str:
    """The parent's first words on its study: new, or continued with the trials it held before (before)."""
    if not before:
        return f"**Optuna study `{study_name}`**, new with this invocation."
    return (f"**Optuna study `{study_name}`**, continued: it held {before} trial{'' if before == 1 else 's'} "
            "before this invocation, their runs under earlier sweep parents (tag `optuna.study`); this "
            "parent's runs are this invocation's trials, the best trial and the top trials the study's.")


def describe_study(study: Any, storage: str | None, count: int, before: int = 0) -> str:
    """Markdown for the parent run's page: the study (continued_line, before: the trials it held before this
    invocation), its counts, the best trial and a table of the top count trials, all of the study's."""
    frame = trials_frame(study)
    states = frame["state"].value_counts() if not frame.empty else pd.Series(dtype=int)
    counts = ", ".join(f"{n} {state.lower()}" for state, n in states.items())
    lines = [continued_line(study.study_name, before),
             f"\nThe study ({study.direction.name.lower()}, storage `{storage_label(storage)}`) holds "
             f"{len(frame)} trials ({counts or 'none'})."]
    top = top_trials(study, count)
    if top.empty:
        lines.append("\nNo trial completed.")
        return "\n".join(lines)
    best = top.iloc[0]
    params = [c for c in top.columns if c not in ("trial", "state", "value", "duration_s", "runs")]
    lines.append(f"\nBest trial **#{int(best['trial'])}**: value **{best['value']:.6g}** with "
                 + ", ".join(f"`{p}={best[p]}`" for p in params) + ".")
    shown = top[["trial", "value", *params, "duration_s", "runs"]]
    lines.append(f"\nTop {len(shown)} trials:\n\n" + shown.to_markdown(index=False, floatfmt=".4g"))
    return "\n".join(lines)


def trial_place(trial: Any, settings: TrackingSettings) -> str:
    """Where trial's run is, for a line that names the trial: ``: run <id> under sweep parent <id>, <the
    parent's page in the UI>``; "" when it has no run in settings' store (an untracked search, another
    store)."""
    from mlflow.exceptions import MlflowException

    from harness.tracking import store_client
    from harness.tracking.store import sqlite_path
    from harness.ui import run_url

    run_ids = trial.user_attrs.get("mlflow_run_ids") or []
    if not run_ids or settings.mode == "off":
        return ""
    db = sqlite_path(settings.tracking_uri)
    if db is not None and not db.exists():
        return ""  # a database not there holds no run, and opening it to look would create it
    try:
        run = store_client(settings).get_run(run_ids[0])
    except MlflowException:
        return ""
    parent_run_id = run.data.tags["mlflow.parentRunId"]  # a trial's run is a child of its sweep's parent
    return (f": run {run.info.run_id} under sweep parent {parent_run_id}, "
            f"{run_url(settings.tracking_uri, run.info.experiment_id, parent_run_id)}")


class TrialRecorder:
    """Links trials and runs, and describes the study on the sweep's parent run (nothing when untracked)."""

    def __init__(self, settings: TrackingSettings, study: Any, top_count: int, storage: str | None) -> None:
        self.study, self.top_count, self.storage = study, top_count, storage
        self.before = 0  # the trials the study held when this invocation started (start)
        self.parent_run_id = resolve_parent_run_id("auto") if settings.mode != "off" else None
        self.client = None
        if self.parent_run_id is not None:
            from harness.tracking import store_client

            self.client = store_client(settings)

    def start(self, before: int) -> None:
        """Tag the parent with its study (``optuna.study``, ``optuna.storage``) and the trials the study held
        before this invocation (``optuna.trials_before``; those queued again, which it runs, not counted), and
        say so in its description (continued_line) until describe_parent replaces it: a search stopped
        before its end has it too."""
        self.before = before
        if self.client is None:
            return
        from mlflow.entities import RunTag

        name = self.study.study_name
        tags = {NOTE_TAG: continued_line(name, before), "optuna.study": name,
                "optuna.storage": storage_label(self.storage), "optuna.trials_before": str(before)}
        self.client.log_batch(self.parent_run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def job_runs(self, job: int) -> list[Any]:
        """The runs of Hydra job number job under the sweep's parent."""
        assert self.client is not None
        parent = self.client.get_run(self.parent_run_id)
        return list(self.client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_run_id}' and tags.job_num = '{job}'"))

    def link(self, trial: Any, job: int, value: float | None, error: str) -> None:
        """tag_runs, and list job's runs in the trial's user attribute mlflow_run_ids (before it is told)."""
        if self.client is not None:
            trial.set_user_attr("mlflow_run_ids", self.tag_runs(trial, job, value, error))

    def tag_runs(self, trial: Any, job: int, value: float | None, error: str) -> list[str]:
        """Tag job's runs with trial (study, number, state, value, sampled params) and name them after it if
        the job did not (harness.search.trial_run_name); their ids."""
        assert self.client is not None
        from mlflow.entities import RunTag

        tags = {"optuna.study": self.study.study_name, "optuna.trial": str(trial.number),
                "optuna.state": "COMPLETE" if value is not None else "FAIL",
                "optuna.params": " ".join(f"{k}={v}" for k, v in trial.params.items())}
        if value is not None:
            tags["optuna.value"] = repr(value)
        if error:
            tags["optuna.error"] = error[:5000]
        runs = self.job_runs(job)
        for run in runs:
            named = {**tags, "mlflow.runName": trial_run_name(run.info.run_name, trial.number)}
            self.client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in named.items()])
        return [run.info.run_id for run in runs]

    def tag_interrupted(self, trial: Any, job: int) -> None:
        """tag_runs for a trial its sweep abandoned (already told), as far as the store still answers: the
        sweep is stopping, and its own exception must reach the user, not this one's."""
        if self.client is None:
            return
        try:
            self.tag_runs(trial, job, None, "interrupted: the sweep stopped before this trial ended; its "
                                            "parameters are queued again")
        except Exception as exc:
            log.warning("trial %d: its runs were not tagged: %s: %s", trial.number, type(exc).__name__, exc)

    def describe_parent(self) -> None:
        """Best trial and top-trials table as the parent's description; its figures as artifacts."""
        if self.client is None:
            return
        from mlflow.entities import Metric, RunTag

        from harness.tracking.callback import _now_ms

        frame = trials_frame(self.study)
        now = _now_ms()
        metrics = [Metric("trials", float(len(frame)), now, 0)]
        complete = frame[frame["state"] == "COMPLETE"] if not frame.empty else frame
        if not complete.empty:
            metrics.append(Metric("best_value", float(self.study.best_value), now, 0))
            metrics.append(Metric("best_trial", float(self.study.best_trial.number), now, 0))
        note = describe_study(self.study, self.storage, self.top_count, self.before)
        tags = [RunTag(NOTE_TAG, fit_note(note))]
        self.client.log_batch(self.parent_run_id, metrics=metrics, tags=tags)
        plt = pyplot()
        for name, figure in study_figures(self.study).items():
            self.client.log_figure(self.parent_run_id, figure, f"search/{name}")
            plt.close(figure)


def pyplot():
    """matplotlib.pyplot on the headless Agg backend: Optuna's plots draw through it (the harness's own
    figures use the object API), so each figure is closed once logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def study_figures(study: Any) -> dict[str, Any]:
    """Optuna's optimisation history and, with two or more complete trials, the parameter importances."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as plots

    pyplot()
    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        figures["optimization_history.png"] = plots.plot_optimization_history(study).figure
        complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
            try:
                figures["param_importances.png"] = plots.plot_param_importances(study).figure
            except (RuntimeError, ValueError) as exc:  # e.g. every trial took the same value of each param
                log.info("no parameter-importance figure: %s", exc)
    for figure in figures.values():
        figure.tight_layout()
    return figures
