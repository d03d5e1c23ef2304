"""Finishing a study that a signal or a crash stopped (``resume=<parent run id>``): which parent run goes on,
and which of its child runs the store already holds.

A study's cells are pure functions of its settings, so the cells a stopped run logged are those that a new run
with the same settings would compute: the resumed run computes only the others, under the same parent, and
every number it reports is the uninterrupted run's. `stopped_study` checks all of that before any run is
reopened; every refusal is one line naming ``resume``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.config import ConfigError
from harness.report import RunNotFound, find_run
from harness.tracking import TrackingSettings
from harness.tracking.logged_model import delete_run_and_models
from harness.tracking.loggers import flatten_params
from harness.tracking.orphans import process_gone, process_name
from harness.tracking.redact import redact
from harness.tracking.store import entry_point, git_commit

KEY = "resume"
COMMIT_TAG = "mlflow.source.git.commit"
RESUMED_TAG = "resumed"  # on a resumed study's parent: what the store held when it resumed
SHOWN_DIFFERENCES = 3  # settings named in a refusal; the rest are counted


@dataclass(frozen=True)
class StoppedStudy:
    """The parent run of a stopped study (run_id in experiment_id) with the metric keys it holds, its
    finished child runs and those that did not finish (mlflow Run objects, oldest first)."""

    run_id: str
    experiment_id: str
    metric_keys: frozenset[str]
    children: tuple[Any, ...]
    unfinished: tuple[Any, ...] = ()

    def announce(self, parent: Any, run_name: str, held: str, echo: Any, also: str = "") -> None:
        """Echo what a resumed study prints first and tag its reopened parent (a logger of open_run) with it
        (``resumed``: the run's duration in the UI includes the pause): held, how much of it the store holds
        (``2 of 4 cells are``), also, what else it holds (``, and the link section``)."""
        names = ", ".join(run.info.run_name for run in self.unfinished)
        deleted = f" (deleted unfinished, computed again: {names})" if names else ""
        echo(f"resuming study {run_name} ({self.run_id}): {held} in the store{also}{deleted}; computing the "
             f"rest")
        parent.set_tags({RESUMED_TAG: f"{held} in the store{also} when it resumed{deleted}"})

    def discard_unfinished(self, tracking_uri: str) -> None:
        """Delete the child runs that did not finish (a process killed while logging one), with their models,
        so that the resumed study logs their cells once; called once every check has passed."""
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri)
        for child in self.unfinished:
            delete_run_and_models(client, child)


def resume_hint(run_id: str | None) -> str:
    """What a stopped study's account tells the user to do next (run_id None: tracking off, nothing kept):
    in an app, the whole command that finishes it (its overrides and resume=run_id), as a stopped training
    run gives its own."""
    if run_id is None:
        return "tracking=off keeps no cells: run the same command again, which computes every cell again"
    command = _resume_command(run_id)
    if command is None:
        return f"to finish it, run the same command with {KEY}={run_id}: only the cells it lacks are computed"
    return f"to finish it: {command} (only the cells it lacks are computed)"


def _resume_command(run_id: str) -> str | None:
    """The shell command of this Hydra app with its overrides, resume= given run_id; None outside an app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    overrides = [override for override in HydraConfig.get().overrides.task
                 if not override.lstrip("+~").startswith(f"{KEY}=")]
    return shlex.join(["python", entry_point(), *overrides, f"{KEY}={run_id}"])


def check_run_keys(cfg: Mapping[str, Any]) -> None:
    """ConfigError when cfg's resume or rebuild is given empty (``resume=`` with an unset shell variable ran
    a whole new study), or both are given."""
    for key in (KEY, "rebuild"):
        if key in cfg and cfg[key] is not None and not str(cfg[key]).strip():
            raise ConfigError(f"{key}: empty; give a parent run id (a study printed it), or leave {key} out")
    if cfg.get(KEY) and cfg.get("rebuild"):
        raise ConfigError(f"{KEY}: give {KEY}=<run id> (finish a stopped study) or rebuild=<run id> (a "
                          f"study's table from the store), not both")


def stopped_study(run_id: str, settings: TrackingSettings, study: str, params: Mapping[str, Any]
                  ) -> StoppedStudy:
    """The stopped parent run run_id of study to finish with the settings whose parent params are params
    (what the study logs on its parent, unflattened); ConfigError (one line) when tracking is off, the store
    has no such run, it is no parent of study in settings' experiment, it finished, its process still runs,
    it ran other code (another git commit) or with other params. Nothing in the store changes here (see
    StoppedStudy.discard_unfinished)."""
    if settings.mode == "off":
        raise ConfigError(f"{KEY}: needs the store the study logged to; tracking=off keeps none")
    try:
        client, parent = find_run(run_id, settings)
    except RunNotFound as exc:
        raise ConfigError(f"{KEY}: {exc}; give the parent run id the stopped study printed") from None
    info, tags = parent.info, parent.data.tags
    if tags.get("study") != study or tags.get("kind") != "parent" or "mlflow.parentRunId" in tags:
        raise ConfigError(f"{KEY}: run {run_id} ({info.run_name}) is not the parent run of a {study} study; "
                          f"allowed: the parent run id a stopped study printed")
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is None or experiment.experiment_id != info.experiment_id:
        theirs = client.get_experiment(info.experiment_id).name
        raise ConfigError(f"{KEY}: run {run_id} is in experiment {theirs!r}, not {settings.experiment!r}; "
                          f"set tracking.experiment={theirs} as the study had it")
    if info.status == "FINISHED":
        raise ConfigError(f"{KEY}: study {run_id} has finished; nothing is left to compute")
    if info.status == "RUNNING" and not process_gone(tags):
        raise ConfigError(f"{KEY}: study {run_id} is still running ({process_name(tags)} has not ended); "
                          f"allowed: a study whose process has ended (Ctrl-C it or wait for it)")
    check_same_commit(KEY, "study", run_id, tags)
    _check_same_params(run_id, parent.data.params, flatten_params(params))
    children = _children(client, info.experiment_id, run_id)
    return StoppedStudy(run_id, info.experiment_id, frozenset(parent.data.metrics),
                        tuple(child for child in children if child.info.status == "FINISHED"),
                        tuple(child for child in children if child.info.status != "FINISHED"))


def check_same_commit(key: str, what: str, run_id: str, tags: Mapping[str, str]) -> None:
    """ConfigError naming key when the run run_id (a study or a sweep, what; tags: its tags) ran the code of
    another git commit than this checkout's: its cells and new ones would mix two versions in one table."""
    ran, here = tags.get(COMMIT_TAG), git_commit()
    if ran and here and ran != here:
        raise ConfigError(f"{key}: {what} {run_id} ran the code of commit {ran[:12]}, this checkout is at "
                          f"{here[:12]}: its cells and new ones would mix two versions in one table; resume "
                          f"from a checkout of {ran[:12]}, or run the {what} afresh")


def _check_same_params(run_id: str, logged: Mapping[str, str], wanted: Mapping[str, str]) -> None:
    """ConfigError naming the first settings whose logged and wanted values differ (inside a JSON object
    value, such as a model's keywords, the keys that differ: ``models.lstm.steps: 600 there, 700 here``)."""
    differ = sorted(difference for key in logged.keys() | wanted.keys() if logged.get(key) != wanted.get(key)
                    for difference in _differences(key, logged.get(key), wanted.get(key)))
    if not differ:
        return
    shown = "; ".join(f"{key}: {redact(there)} there, {redact(here)} here"
                      for key, there, here in differ[:SHOWN_DIFFERENCES])
    more = f" (and {len(differ) - SHOWN_DIFFERENCES} more)" if len(differ) > SHOWN_DIFFERENCES else ""
    raise ConfigError(f"{KEY}: study {run_id} ran with other settings: {shown}{more}; give the settings it "
                      f"ran with")


def _differences(key: str, there: str | None, here: str | None) -> list[tuple[str, str, str]]:
    """(key, there, here) of one differing param, or of each differing entry of two JSON objects."""
    try:
        objects = json.loads(there or ""), json.loads(here or "")
    except ValueError:
        objects = None
    if objects is None or not all(isinstance(value, dict) for value in objects):
        return [(key, there or "(none)", here or "(none)")]
    old, new = objects
    return [(f"{key}.{name}", json.dumps(old[name]) if name in old else "(none)",
             json.dumps(new[name]) if name in new else "(none)")
            for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]


def held_job_cells(settings: TrackingSettings, parent_run_id: str, job: str) -> list[Any]:
    """The finished cell runs under the sweep parent parent_run_id of the sweep job whose JOB_TAG value
    (harness.sweep_continuation.job_tag) is job, oldest first."""
    from harness.sweep_continuation import JOB_TAG

    client, parent = find_run(parent_run_id, settings)
    return [run for run in _children(client, parent.info.experiment_id, parent_run_id)
            if run.data.tags.get(JOB_TAG) == job and run.info.status == "FINISHED"]


def _children(client: Any, experiment_id: str, run_id: str) -> list[Any]:
    """Every active child run of run_id, oldest first (all pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run_id}'",
                                  order_by=["attributes.start_time ASC"], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs
