"""Completing a stopped sweep: the sweep's command again, with ``trainer.resume_sweep=<its parent run id>``.

    python experiments/train.py -m model=elman,lstm seed=0,1 trainer.resume_sweep=<parent run id>

The launching process (harness.tracking.SweepCallback, on_multirun_start) checks the parent
(`prepare_continuation`: a sweep parent of this app and experiment whose launcher is gone), matches every job
of the grid to the parent's earlier children by configuration (`match_key`: the flattened config runs log
as params, minus tracking.* and resume.RUN_CONTROL_KEYS) and plans each job, before the parent is reopened:

- ``finished``: a FINISHED child has the job's config: the job returns that run's objective and trains and
  logs nothing;
- ``continue``: a KILLED child with a checkpoint: the job continues it as ``trainer.resume`` does (the
  same run, RUNNING again, bit-identical to an uninterrupted one);
- ``new``: no match, or only a FAILED child or a KILLED one without a checkpoint (that one is tagged
  ``harness.rerun`` and counted re-run): the job runs as a new child.

Children tagged ``harness.rerun`` (torn-down attempts, replaced runs) never match; each child matches one job
at most. Children left RUNNING by a process that is gone are ended first, as reap does. The plan goes to
``<sweep dir>/continuation.json``; each job's run reads its entry (`planned_job`) by its Hydra job number
and checks that its config is the one planned.

A study app's sweep (experiments/gradient_flow.py, experiments/rnn_vs_arma.py) continues the same way with
its top-level key, ``resume_sweep=<parent run id>`` (`resume_sweep_key` tells which key an app has). Its
jobs log no run of their own, only cells nested under the parent, each tagged with its job (JOB_TAG: a
digest of the job's match_key and how many cells the job has), so a job is planned by its finished cells
(`_plan_cells`): FINISHED when all are there, CONTINUE when some are (the job computes the rest:
study_run.run_sweep_cells, rnn_vs_arma.run_cells), NEW when none is; cells that did not finish are deleted
when the parent is reopened.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.app import RESUME_SWEEP_KEY, STUDY_RESUME_SWEEP_KEY
from harness.config import ConfigError
from harness.resume import ARTIFACT_DIR, FILENAME, LOCAL_TAG, RUN_CONTROL_KEYS

PLAN_FILE = "continuation.json"
FINISHED, CONTINUE, NEW = "finished", "continue", "new"
CONTINUED_TAG = "harness.continued"  # on the parent: how many times the sweep was continued
# a study app's keys that decide no cell's numbers (a study's cells are pure functions of the rest)
STUDY_CONTROL_KEYS = ("resume", STUDY_RESUME_SWEEP_KEY, "rebuild", "n_jobs", "progress")
JOB_TAG = "harness.sweep_job"  # on a study sweep's cell: "<job_digest of its job's config>/<the job's cells>"

if TYPE_CHECKING:
    from harness.tracking.store import TrackingSettings


def resume_sweep_key(config: Any) -> str | None:
    """The key that continues a sweep of the app whose config this is (an OmegaConf DictConfig or a dict):
    train.py's ``trainer.resume_sweep``, a study app's top-level ``resume_sweep``; None for an app without
    one."""
    trainer = config.get("trainer") or {}
    if RESUME_SWEEP_KEY.partition(".")[2] in trainer:
        return RESUME_SWEEP_KEY
    return STUDY_RESUME_SWEEP_KEY if STUDY_RESUME_SWEEP_KEY in config else None


def match_key(params: Mapping[str, str]) -> str:
    """The part of a run's flattened config (loggers.flatten_params: its MLflow params) that decides its
    numbers, as one string: every key but tracking.*, RUN_CONTROL_KEYS and STUDY_CONTROL_KEYS, sorted."""
    kept = {key: value for key, value in params.items() if not key.startswith("tracking.")
            and key not in RUN_CONTROL_KEYS and key not in STUDY_CONTROL_KEYS}
    return json.dumps(kept, sort_keys=True)


def job_digest(key: str) -> str:
    """A short stable name of a job's match_key, which a study sweep's cells carry (JOB_TAG)."""
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:20]


def tagged_job(tags: Mapping[str, str]) -> tuple[str, int] | None:
    """(job digest, the job's number of cells) of a study sweep's cell run with these tags (its JOB_TAG);
    None for a run without one."""
    digest, _, cells = tags.get(JOB_TAG, "").partition("/")
    return (digest, int(cells)) if cells.isdigit() else None


def job_tag(cfg: Mapping[str, Any], cells: int) -> dict[str, str]:
    """The JOB_TAG of the cells of the study sweep job whose config (a plain dict) is cfg, of cells cells."""
    from harness.tracking.loggers import flatten_params

    return {JOB_TAG: f"{job_digest(match_key(flatten_params(cfg)))}/{cells}"}


@dataclass(frozen=True)
class PlannedJob:
    """What one job of a continued sweep does: action (FINISHED, CONTINUE, NEW), the run it skips or
    continues (or, for NEW, the one it replaces), that run's objective (FINISHED), its match_key."""

    action: str
    key: str
    run_id: str | None = None
    objective: float | None = None


@dataclass(frozen=True)
class Continuation:
    """A checked continuation: the parent run (mlflow Run) and one PlannedJob per job, in job order."""

    parent: Any
    jobs: list[PlannedJob]
    discard: tuple[Any, ...] = ()  # a study sweep's unfinished cell runs (mlflow Runs), deleted on reopen

    def _counts(self) -> list[tuple[int, str]]:
        return [(sum(job.action == action for job in self.jobs), label) for action, label in
                ((FINISHED, "already finished"), (CONTINUE, "continued"), (NEW, "run"))]

    def summary(self) -> str:
        """``3 already finished, 2 continued, 3 run`` (the kinds that occur)."""
        return ", ".join(f"{count} {label}" for count, label in self._counts() if count)

    def counts(self) -> dict[str, float]:
        """The parent's metrics ``jobs_already_finished``, ``jobs_continued``, ``jobs_run``."""
        return {f"jobs_{label.replace(' ', '_')}": float(count) for count, label in self._counts()}

    def reopen(self, client: Any, tags: Mapping[str, str], sweep_dir: Path) -> str:
        """Make the parent this sweep's (tags: its sweep dir and launching process, recorded before it is
        RUNNING again, so that no reaper takes it for the lost launcher's), RUNNING, without the earlier
        stop's error and report; tag the runs the NEW jobs replace re-run; delete the discarded cell runs
        (with their models); write the plan. Returns its id."""
        from mlflow.entities import RunTag

        from harness.tracking.experiment_notes import NOTE_TAG
        from harness.tracking.logged_model import delete_run_and_models
        from harness.tracking.loggers import pair_batches, tag_values
        from harness.tracking.orphans import RERUN_TAG, drop_ending

        run_id, recorded = self.parent.info.run_id, self.parent.data.tags
        drop_ending(client, self.parent)
        if NOTE_TAG in recorded:
            client.delete_tag(run_id, NOTE_TAG)
        count = int(recorded.get(CONTINUED_TAG, "0")) + 1
        for _, batch in pair_batches("tag", tag_values({**tags, CONTINUED_TAG: count})):
            client.log_batch(run_id, **batch)
        client.update_run(run_id, status="RUNNING")
        for number, job in enumerate(self.jobs):
            if job.action == NEW and job.run_id is not None:
                client.log_batch(job.run_id, tags=[RunTag(RERUN_TAG, f"continued sweep: job {number} runs it "
                                                           f"again from scratch")])
        for cell in self.discard:
            delete_run_and_models(client, cell)
        plan = {"parent": run_id, "jobs": {str(number): asdict(job) for number, job in enumerate(self.jobs)}}
        (sweep_dir / PLAN_FILE).write_text(json.dumps(plan, indent=1))
        return run_id


def _no_run(key: str, run_id: str) -> ConfigError:
    """The refusal of a parent run id the store does not hold (key: the app's resume_sweep_key)."""
    return ConfigError(f"{key}: no run {run_id!r} in this store; give the sweep parent's run id (the sweep "
                       f"printed it; also in <sweep dir>/parent_run_id)")


def refuse_a_store_yet_to_be_made(settings: TrackingSettings, parent_run_id: str, key: str) -> None:
    """ConfigError, as for a run the store does not hold, when settings' store is an SQLite database whose
    file does not exist: it holds no run, and opening it to look (ensure_store) would create it, which the
    refusal would leave behind. Called before the store is opened."""
    from harness.tracking.store import sqlite_path

    db = sqlite_path(settings.tracking_uri)
    if db is not None and not db.exists():
        raise _no_run(key, parent_run_id)


def _check_parent(client: Any, experiment_id: str, run_id: str, app: str, key: str) -> Any:
    """The parent run to continue; ConfigError naming key when run_id is no sweep parent of app in this
    experiment, or when its launcher still runs."""
    from mlflow.exceptions import MlflowException

    from harness.tracking.orphans import HOST_TAG, process_gone, process_name

    try:
        parent = client.get_run(run_id)
    except MlflowException as exc:
        raise _no_run(key, run_id) from exc
    tags, name = parent.data.tags, parent.info.run_name
    if parent.info.experiment_id != experiment_id:
        theirs = client.get_experiment(parent.info.experiment_id).name
        raise ConfigError(f"{key}: run {run_id} is in experiment {theirs!r}, not in this sweep's; set "
                          f"tracking.experiment={theirs} as the sweep had it")
    from harness.tracking.callback import SWEPT_TAG, names_a_sweep

    if "mlflow.parentRunId" in tags or SWEPT_TAG not in tags or not names_a_sweep(name or "", app):
        raise ConfigError(f"{key}: run {run_id} ({name}) is not the parent run of a {app}.py sweep; allowed: "
                          f"a sweep parent's run id (<sweep dir>/parent_run_id)")
    if parent.info.status == "RUNNING" and not process_gone(tags):
        where = ("" if tags.get(HOST_TAG) == socket.gethostname()
                 else "; if that host is lost, end it there or with python -m harness.tracking.reap")
        raise ConfigError(f"{key}: sweep {run_id} is still running ({process_name(tags)} launched it and "
                          f"has not ended); allowed: a sweep whose launcher has ended (Ctrl-C it or wait "
                          f"for it){where}")
    return parent


def _has_checkpoint(client: Any, run: Any) -> bool:
    local = run.data.tags.get(LOCAL_TAG)
    if local and Path(local).is_file():
        return True
    return any(item.path == f"{ARTIFACT_DIR}/{FILENAME}"
               for item in client.list_artifacts(run.info.run_id, ARTIFACT_DIR))


def _take_over_orphans(client: Any, children: list[Any], key: str) -> list[Any]:
    """End KILLED, as reap does, the children left RUNNING by a process that is gone; ConfigError for one
    whose process still runs. Returns the children as they are now."""
    from harness.tracking.orphans import end_lost, orphaned, process_name

    running = [run for run in children if run.info.status == "RUNNING"]
    gone = {run.info.run_id for run in orphaned(running)}
    alive = [run for run in running if run.info.run_id not in gone]
    if alive:
        run = alive[0]
        raise ConfigError(f"{key}: job run {run.info.run_name} ({run.info.run_id}) of the sweep is still "
                          f"running ({process_name(run.data.tags)}); allowed: a sweep none of whose jobs "
                          f"runs")
    ended = {run.info.run_id for run in end_lost(client, running, "the continued sweep")}
    return [client.get_run(run.info.run_id) if run.info.run_id in ended else run for run in children]


def _plan(client: Any, children: list[Any], keys: list[str]) -> list[PlannedJob]:
    """One PlannedJob per job match key; each child matches one job at most, a FINISHED child first, then a
    KILLED one (continued if it has a checkpoint, else replaced), then a FAILED one (replaced)."""
    from harness.tracking.orphans import RERUN_TAG

    rank = {"FINISHED": 0, "KILLED": 1, "FAILED": 2}
    candidates: dict[str, list[Any]] = {}
    for run in sorted(children, key=lambda run: run.info.start_time or 0):
        if RERUN_TAG not in run.data.tags and run.info.status in rank:
            candidates.setdefault(match_key(run.data.params), []).append(run)
    planned = []
    for key in keys:
        found = sorted(candidates.get(key, []), key=lambda run: rank[run.info.status])
        if not found:
            planned.append(PlannedJob(NEW, key))
            continue
        run = found[0]
        candidates[key].remove(run)
        if run.info.status == "FINISHED":
            objective = run.data.metrics.get("objective", math.nan)
            planned.append(PlannedJob(FINISHED, key, run.info.run_id, objective))
        elif run.info.status == "KILLED" and _has_checkpoint(client, run):
            planned.append(PlannedJob(CONTINUE, key, run.info.run_id))
        else:
            planned.append(PlannedJob(NEW, key, run.info.run_id))
    return planned


def _plan_cells(children: list[Any], keys: list[str]) -> list[PlannedJob]:
    """One PlannedJob per job match key of a study app's sweep, whose children are its jobs' cells (tagged
    JOB_TAG): FINISHED when the job's cells are all there and finished, CONTINUE when some are (the job
    computes the rest, as resume= finishes a stopped study), NEW when none is."""
    from harness.tracking.orphans import RERUN_TAG

    finished: dict[str, int] = {}
    planned_cells: dict[str, int] = {}
    for run in children:
        job = tagged_job(run.data.tags)
        if run.info.status == "FINISHED" and RERUN_TAG not in run.data.tags and job is not None:
            digest, cells = job
            finished[digest] = finished.get(digest, 0) + 1
            planned_cells[digest] = cells
    planned = []
    for key in keys:
        held = finished.get(job_digest(key), 0)
        action = NEW if not held else FINISHED if held >= planned_cells[job_digest(key)] else CONTINUE
        planned.append(PlannedJob(action, key))
    return planned


def _unfinished_cells(children: list[Any]) -> tuple[Any, ...]:
    """A study sweep's cell runs that did not finish (a signal or a crash while one was logged): deleted when
    the sweep is reopened, so that their jobs log those cells once (as StoppedStudy.discard_unfinished for
    one study)."""
    return tuple(run for run in children if JOB_TAG in run.data.tags and run.info.status != "FINISHED")


def prepare_continuation(client: Any, experiment_id: str, parent_run_id: str, config: Any) -> Continuation:
    """Check the continuation of the sweep parent_run_id by the multirun config (Hydra's DictConfig, its
    jobs composed by harness.app.composed_jobs) and plan its jobs; ConfigError (one line, naming the app's
    resume_sweep_key) before anything is written, but for children whose process is gone, which are ended
    as reap does. A study app's sweep (top-level resume_sweep) is planned by its jobs' cells (_plan_cells)
    and, as resume= is, refused when the sweep ran another git commit."""
    from harness.app import composed_jobs
    from harness.studies.study_resume import check_same_commit
    from harness.tracking.callback import child_runs, sweep_app
    from harness.tracking.loggers import flatten_params

    key = resume_sweep_key(config)
    parent = _check_parent(client, experiment_id, parent_run_id, sweep_app(config), key)
    keys = [match_key(flatten_params(compose())) for _, _, compose in composed_jobs(config)]
    if key == STUDY_RESUME_SWEEP_KEY:
        check_same_commit(key, "sweep", parent_run_id, parent.data.tags)
    children = _take_over_orphans(client, child_runs(client, parent.info.run_id), key)
    if key == STUDY_RESUME_SWEEP_KEY:
        return Continuation(parent, _plan_cells(children, keys), _unfinished_cells(children))
    return Continuation(parent, _plan(client, children, keys))


def not_a_sweep(key: str) -> ConfigError:
    """The refusal of key (the app's resume_sweep_key) given to a run without -m."""
    return ConfigError(f"{key} continues a sweep: run the sweep's command again with -m and {key}=<its "
                       f"parent run id>")


def planned_job(key: str, parent_run_id: str, cfg: Mapping[str, Any], job_num: int | None) -> PlannedJob:
    """The plan's entry for this job (job_num: Hydra's job number, None outside a multirun) of the sweep
    continuing parent_run_id (key: the app's resume_sweep_key); ConfigError when there is none, or it was
    planned for another config."""
    from harness.tracking.loggers import flatten_params
    from harness.tracking.runs import hydra_sweep_dir

    sweep_dir = hydra_sweep_dir()
    if job_num is None or sweep_dir is None:
        raise not_a_sweep(key)
    path = sweep_dir / PLAN_FILE
    plan = json.loads(path.read_text()) if path.is_file() else {}
    entry = plan.get("jobs", {}).get(str(job_num)) if plan.get("parent") == parent_run_id else None
    if entry is None:
        raise ConfigError(f"{key}: {path} plans no job {job_num} of sweep {parent_run_id}")
    job = PlannedJob(**entry)
    if job.key != match_key(flatten_params(cfg)):
        raise ConfigError(f"{key}: job {job_num}'s config is not the one {path} planned for it")
    return job
