"""SweepCallback: one parent MLflow run per Hydra multirun, every job nested under it."""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.config import ConfigError
from harness.joblib_launcher import LostJob, TornDown
from harness.search import SWEEPER_TARGET
from harness.tracking.experiment_notes import NOTE_TAG
from harness.tracking.loggers import tag_values
from harness.tracking.orphans import (
    HOST_TAG,
    PID_TAG,
    RERUN_TAG,
    all_pages,
    drop_reaped,
    end_orphans,
    ending_lock,
    orphaned,
    process_gone,
    process_tags,
    reaped,
    superseded,
)
from harness.tracking.redact import end_run, redact, redact_folder, redact_log_records
from harness.tracking.runs import (
    PARENT_ENV,
    PARENT_FILE,
    SWEPT_FILE,
    RunInterrupted,
    last_stop_signal,
    note_stop,
    raise_if_stop_requested,
    stop_requested,
    stops_received,
    uses_metric_writer,
)
from harness.tracking.store import TrackingSettings, ensure_store, source_tags
from harness.tracking.sweep_results import results_table
from harness.tracking.writer import BackgroundMetricWriter
from harness.ui import ui_hint

CHILD_STATUSES = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")
SWEPT_TAG = "harness.swept_keys"  # the parent's swept keys, "model task.length"
RERUN = "RERUN"  # the count of runs whose job ran again (orphans.superseded): not a signal, not a failure
WORKER_CLOSE_TIMEOUT_S = 20.0


def sweep_settings(config: DictConfig, **overrides: Any) -> TrackingSettings:
    """TrackingSettings from a composed config: its ``tracking`` node, experiment from ``tracking.experiment``
    or the top-level ``experiment`` key, app the one the config sweeps (sweep_app); overrides (the callback's
    own arguments) win when not None."""
    tracking = config.get("tracking") or {}
    experiment = overrides.pop("experiment", None) or tracking.get("experiment") or config.get("experiment")
    return TrackingSettings.from_mapping(tracking, experiment=experiment, app=sweep_app(config), **overrides)


class SweepCallback(Callback):
    """Hydra callback (``hydra.callbacks``) that gives a multirun one parent run.

    on_multirun_start: creates the store schema and experiment once (before any job, so parallel jobs never
    race in migrations), starts a parent run named by sweep_run_name (tag ``harness.swept_keys``: the
    swept keys, also in ``<sweep dir>/swept_keys`` for the jobs' run names), writes its id to
    ``<sweep dir>/parent_run_id`` and sets ``$HARNESS_PARENT_RUN_ID`` (both read by
    ``open_run(parent_run_id="auto")`` in-process, in joblib/loky workers and in submitit jobs).
    on_multirun_end: counts the launched jobs and the child runs by status, logs ``jobs``/``runs``/
    ``finished``/``failed``/``killed``/``running`` on the parent, prints the failed runs with their error and
    ends the parent FINISHED (a sweep continues past failed jobs and reports them at the end).
    Runs of jobs that fail before opening one are not counted (they never reach the store); the job is.
    SIGTERM/SIGINT to the launching process stop the sweep: the signal is passed on to the launcher's worker
    processes (joblib's loky workers), whose runs end KILLED with their metrics flushed, before the launcher
    tears the workers down (up to WORKER_CLOSE_TIMEOUT_S). A signal whose exception Python drops (raised
    inside a finaliser) still stops the sweep at the next job's start (runs.stop_requested). While the parent
    run is being created or ended, and while the exit ends an abandoned one, signals are only recorded: a
    signal after the last job ends the parent KILLED (tag ``error``), then the process exits with 128 +
    signum; a second Ctrl-C never cuts the parent's end short.
    A sweep that stops before on_multirun_end (a signal, Hydra rejecting a job's overrides, a crash, a dead
    worker) still ends its parent at exit: KILLED after a signal, else FAILED, with the reason in its
    ``error`` tag (a job that raised: which one and its exception, from JOB_ERROR_FILE); every child run
    still RUNNING whose process is gone ends KILLED after a signal, else FAILED. Its report counts the
    basic sweeper's planned jobs by how far they got (job_states; ``4 jobs (2 stopped, 2 not started)``) and
    names those that never started.
    A job attempt a launcher reports lost (on_job_end with a harness.joblib_launcher.LostJob: its worker
    died, or was torn down with the pool) has its runs ended at once: those left RUNNING FAILED with the
    cause, and so are those the dead worker's metric writer ended as reap does (reaped), whichever came
    first; when the job runs again, all of them KILLED and tagged ``harness.rerun`` (counted as re-run).
    The parent's description gets the report (after a study's table, when it has one).
    The parent records the launching process (process_tags). A launching process killed without warning
    (SIGKILL, the out-of-memory killer) runs no exit: on an SQLite store its metric writer process
    (harness.tracking.writer, ``watch``) ends the parent KILLED as reap does, with the basic launcher's job
    run; elsewhere ``python -m harness.tracking.reap`` does. The joblib launcher's workers stop their jobs
    themselves then (harness.joblib_launcher).
    With ``trainer.resume_sweep=<parent run id>`` (a study app's: ``resume_sweep=``) the sweep continues
    that parent instead of creating one (harness.sweep_continuation: checked and planned before it is
    reopened; the report counts the jobs already finished, continued and run); the rest is as above.
    Arguments (all optional) override the config's ``tracking`` node: experiment, mode, uri, artifact_root.
    """

    def __init__(
        self,
        experiment: str | None = None,
        mode: str | None = None,
        uri: str | None = None,
        artifact_root: str | None = None,
    ) -> None:
        self.overrides = {"experiment": experiment, "mode": mode, "uri": uri, "artifact_root": artifact_root}
        self.settings: TrackingSettings | None = None
        self.parent_run_id: str | None = None
        self._previous_env: str | None = None
        self._previous_sigterm: Any = None
        self._previous_sigint: Any = None
        self._killed = False
        self._signal: int | None = None  # the first stop signal the launching process received
        self._sweep_dir: Path | None = None
        self._stopping_workers = False
        self._deferring = False
        # the basic launcher's jobs run in this process: between two of them Hydra composes the next job's
        # config, and an exception raised inside OmegaConf leaves it half-done (a later OmegaConf call then
        # fails on it and the sweep ended as a config error); a signal there is recorded, raised at the next
        # job's start (on_job_start) or at the sweep's end (on_multirun_end)
        self._jobs_here = False
        self._between_jobs = False
        self._stops_at_start = 0
        self._died: list[str] = []  # the lost jobs whose worker died (WorkerDied), for the parent's error
        # job number -> "job 2 (seed=2)" of every job the basic sweeper's grid plans; None for other sweepers,
        # which choose their jobs as they go
        self._planned: dict[int, str] | None = None
        self.continuation: Any = None  # harness.sweep_continuation.Continuation of the app's resume_sweep
        self._resume_key: str | None = None  # the key that continues this app's sweeps (resume_sweep_key)
        self._search = False  # an Optuna search (harness.search), which resumes by its study's name
        self._started_ms = 0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        redact_log_records()  # the launcher logs every job's overrides
        settings = sweep_settings(config, **self.overrides)
        from harness.sweep_continuation import resume_sweep_key

        # train.py's trainer.resume_sweep, the study apps' resume_sweep (harness.sweep_continuation)
        self._resume_key = resume_sweep_key(config)
        resume_sweep = OmegaConf.select(config, self._resume_key, default=None) if self._resume_key else None
        self._search = OmegaConf.select(config, "hydra.sweeper._target_", default=None) == SWEEPER_TARGET
        if settings.mode == "off":
            if resume_sweep is not None:
                sys.exit(f"config error: {self._resume_key} needs the tracking store the sweep ran on; "
                         "tracking=off has none")
            return
        self._stops_at_start = stops_received()
        self._started_ms = _now_ms()
        try:
            if resume_sweep is not None:
                from harness.sweep_continuation import prepare_continuation, refuse_a_store_yet_to_be_made

                refuse_a_store_yet_to_be_made(settings, str(resume_sweep), self._resume_key)
            client, experiment_id = ensure_store(settings)
            if resume_sweep is not None:
                self.continuation = prepare_continuation(client, experiment_id, str(resume_sweep), config)
        except ConfigError as exc:
            # Hydra reports a callback's exception with a traceback; SystemExit leaves with the one line.
            sys.exit(f"config error: {exc}")
        sweep_dir = self._sweep_dir = Path(config.hydra.sweep.dir).resolve()
        # the process tags: reap and this process's metric writer can tell when the launching process is gone
        tags = {"harness.sweep_dir": redact(str(sweep_dir)), **process_tags(), **source_tags()}
        swept = swept_keys(config)
        tags[SWEPT_TAG] = " ".join(swept)
        self._planned = planned_jobs(config)
        if threading.current_thread() is threading.main_thread():
            # SIGTERM's default action skips atexit: turn it into an exit that runs it. Installed before the
            # parent exists, so no signal finds the default action with a parent RUNNING.
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._exit_on_sigterm)
            self._previous_sigint = signal.signal(signal.SIGINT, self._exit_on_sigterm)
        with self._signals_deferred():  # a signal inside create_run would leave a parent nobody knows of
            sweep_dir.mkdir(parents=True, exist_ok=True)
            if self.continuation is None:
                parent_run_id = client.create_run(experiment_id, run_name=sweep_run_name(config, swept),
                                                  tags=tags).info.run_id
            else:
                parent_run_id = self.continuation.reopen(client, tags, sweep_dir)
            self.settings, self.parent_run_id = settings, parent_run_id
            if uses_metric_writer(settings.tracking_uri):
                # SIGKILL skips atexit: the metric writer, which outlives this process, then ends the parent
                BackgroundMetricWriter.shared(settings.tracking_uri).watch(parent_run_id)
            atexit.register(self._end_abandoned_parent)
            (sweep_dir / PARENT_FILE).write_text(parent_run_id)
            (sweep_dir / SWEPT_FILE).write_text("\n".join(swept))
            self._previous_env = os.environ.get(PARENT_ENV)
            os.environ[PARENT_ENV] = parent_run_id
            launcher = OmegaConf.select(config, "hydra.launcher._target_", default="") or ""
            self._jobs_here = self._between_jobs = launcher.endswith(".BasicLauncher")

    @contextlib.contextmanager
    def _signals_deferred(self) -> Iterator[None]:
        """Inside, SIGTERM/SIGINT are only recorded (runs.stop_requested); once the block is done the
        recorded one is raised as RunInterrupted."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        raise_if_stop_requested()

    def _exit_on_sigterm(self, signum: int, frame: Any) -> None:
        note_stop(signum)
        self._killed = True
        self._signal = self._signal or signum
        if self._stopping_workers or self._deferring or (self._jobs_here and self._between_jobs):
            return  # a second signal while the workers close their runs, the parent is being written, or
            # Hydra is between two jobs of this process
        self._stopping_workers = True
        try:
            self._stop_workers(signum)
        finally:
            self._stopping_workers = False
        raise RunInterrupted(signum)

    def _stop_workers(self, signum: int) -> None:
        """Pass signum on to the launcher's worker processes and wait until the runs they hold are closed.

        The joblib launcher kills its loky workers (SIGKILL) as soon as the signal's exception reaches it; a
        worker told first ends its run KILLED with its metrics flushed. Only the parent of a sweep with
        worker processes waits here: the basic launcher's jobs run in this process, under their own guard.
        """
        workers = multiprocessing.active_children()
        if not workers or self.settings is None or self.parent_run_id is None:
            return
        for worker in workers:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(worker.pid, signum)
        client, _ = ensure_store(self.settings)
        deadline = time.monotonic() + WORKER_CLOSE_TIMEOUT_S
        while time.monotonic() < deadline:
            if not [run for run in self._running_children(client) if not process_gone(run.data.tags)]:
                return
            time.sleep(0.1)

    def _running_children(self, client: Any) -> list[Any]:
        return self._children(client, "attributes.status = 'RUNNING'")

    def _children(self, client: Any, condition: str) -> list[Any]:
        """The runs nested under the parent that meet condition (an MLflow search filter)."""
        return child_runs(client, self.parent_run_id, condition)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._jobs_here = True  # also a joblib sweep of one worker, which joblib runs in this process
        self._between_jobs = False
        redact_hydra_outputs(config)
        raise_if_stop_requested()  # the basic launcher: a signal recorded or lost between jobs stops it here

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._between_jobs = True
        redact_hydra_outputs(config)  # the job's log
        job_return = kwargs.get("job_return")
        lost = getattr(job_return, "_return_value", None)
        if isinstance(lost, LostJob):
            if self.settings is not None and self.parent_run_id is not None:
                self._end_runs_of_lost_job(lost)
        elif getattr(job_return, "status", None) == JobStatus.FAILED and isinstance(lost, BaseException):
            record_job_error(config, lost)

    def _end_runs_of_lost_job(self, lost: LostJob) -> None:
        """End the runs of the lost job attempt (its worker's, opened since it started). TornDown (the job
        runs again and logs them again): all of them KILLED, tagged and described as re-run, finished ones
        too (a study's cells). Otherwise those left RUNNING, and those its metric writer ended when the worker
        died (end_lost), end FAILED with the cause."""
        client, _ = ensure_store(self.settings)
        runs = [run for run in self._children(client, f"attributes.start_time >= {lost.since_ms}")
                if (run.data.tags.get(PID_TAG), run.data.tags.get(HOST_TAG)) == (str(lost.pid), lost.host)]
        if not isinstance(lost, TornDown):
            self._died.append(f"{type(lost).__name__}: {lost}")
            # also the run its metric writer ended when the worker died (end_lost), before or after this
            end_orphans(client, runs, self._died[-1], status="FAILED", take_over=True)
            return
        with ending_lock(client.tracking_uri):
            for run in runs:
                run_id = run.info.run_id
                drop_reaped(client, client.get_run(run_id))  # its writer's account was the attempt's
                client.set_tag(run_id, RERUN_TAG, str(lost))
                client.set_tag(run_id, NOTE_TAG, f"**Torn down, run again.** Job {lost.job_num} was {lost}: "
                               f"the runs of its next attempt supersede this one.")
                end_run(client, run_id, "KILLED")

    def _end_abandoned_parent(self) -> None:
        """Ends a parent that on_multirun_end never reached, so no sweep is left RUNNING."""
        if self.settings is None or self.parent_run_id is None:
            return
        # A second Ctrl-C must not abort this: Python drops an exception raised in an atexit callback, and
        # the parent would stay RUNNING.
        self._deferring = True
        client, _ = ensure_store(self.settings)
        # A job's own run catches a signal first (open_run ends it KILLED, or raises it once the run is
        # closed): the count of signals and the children tell too; a run its metric writer ended when its
        # process died (reaped) is no signal's, nor is a re-run one.
        # only those that ended since this sweep started: a continued sweep's parent holds earlier ones
        killed_children = [run for run in self._children(client, "attributes.status = 'KILLED'")
                           if (run.info.end_time or 0) >= self._started_ms]
        killed = (self._killed or stops_received() > self._stops_at_start
                  or any(not (superseded(run) or reaped(run)) for run in killed_children))
        status = "KILLED" if killed else "FAILED"
        # Runs whose worker was torn down (or died) before closing them; a process still running (a worker
        # being torn down) is given a few seconds, another host's (a cluster job) is never touched. The
        # sweep's account replaces a metric writer's.
        reason = ("the sweep was stopped before this job could end its run" if killed
                  else "the job's worker process died before it could end its run (killed, or out of memory)")
        end_orphans(client, killed_children, reason, status=status, take_over=True)
        deadline = time.monotonic() + WORKER_CLOSE_TIMEOUT_S
        while True:
            running = self._running_children(client)
            end_orphans(client, running, reason, status=status, this_process=True)
            if len(orphaned(running, this_process=True)) == len(running) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # A sweeper raises a failed job's exception (Hydra's basic sweeper does, after the batch), such as a
        # dead worker's.
        errors = job_errors(self._sweep_dir)
        failures = [*self._died, *(f"{self._job_name(num)}: {error}" for num, error in errors.items())]
        parent = client.get_run(self.parent_run_id)
        if killed:
            signum = self._signal or last_stop_signal()
            by = signal.Signals(signum).name if signum else "a signal"
            why = f"stopped by {by}; {self._how_to_complete(parent)}"
        elif failures:
            why = f"a failed job: {'; '.join(failures)}"
        else:
            why = "rejected overrides or a crash in the launcher; see the launching terminal"
        from mlflow.entities import RunTag

        children = child_runs(client, self.parent_run_id)  # as the orphans' ends above left them
        counts, table, study_note = self._account(parent, children)
        jobs, detail, unstarted = self._jobs_account(children, errors)
        stopped = f"the sweep stopped before its end ({why})"
        command = self._completing_command() if killed else ""
        again = f"to complete it: {command}" if command else ""
        print(format_sweep_report(self.parent_run_id, counts, jobs, detail=detail),
              *(f"  {line}" for line in filter(None, [*unstarted, stopped, again])), *filter(None, [table]),
              ui_hint(self.settings.tracking_uri, (parent.info.experiment_id, self.parent_run_id)),
              sep="\n", flush=True)
        note = "\n\n".join(filter(None, [f"**Stopped before its end** ({why}).",
                                         command and f"To complete it: `{command}`", study_note,
                                         sweep_note(counts, jobs, detail=detail, more=unstarted), table]))
        tags = tag_values({"error": stopped, NOTE_TAG: note})
        client.log_batch(self.parent_run_id, tags=[RunTag(key, value) for key, value in tags.items()])
        end_run(client, self.parent_run_id, status)
        self.settings = self.parent_run_id = None

    def _completing_command(self) -> str:
        """The command that completes the stopped sweep, to copy: this process's command line (``python
        <script> <its arguments>``) with the app's resume_sweep key set to the parent (a search's and an app's
        without one: the same command)."""
        import shlex

        args = sys.argv[1:]
        if self._resume_key and not self._search:
            args = [arg for arg in args if not arg.startswith(f"{self._resume_key}=")]
            args.append(f"{self._resume_key}={self.parent_run_id}")
        return redact(shlex.join(["python", sys.argv[0], *args]))  # a password in a tracking.uri, say

    def _how_to_complete(self, parent: Any) -> str:
        """What completes the stopped sweep of parent (an mlflow Run): a search, its command again (its study
        re-runs the interrupted trials; tag optuna.study, harness.search.record); a grid, its command with the
        app's resume_sweep key (train.py's trainer.resume_sweep, a study app's resume_sweep); an app without
        one, its command again, every job computed again."""
        if self._search:
            study = parent.data.tags.get("optuna.study")
            return (f"run the same command again: {f'study {study}' if study else 'its study'} re-runs its "
                    "interrupted trials first")
        if self._resume_key:
            return f"the sweep's command with {self._resume_key}={self.parent_run_id} completes it"
        return "its command run again computes every job again (nothing is reused)"

    def _account(self, parent: Any, children: list[Any]
                 ) -> tuple[dict[str, list[tuple[str, str]]], str | None, str | None]:
        """(count_children, results_table, the study's description) of children (the child_runs of parent,
        an mlflow Run): a sweep of training runs gets their table (a search's too, after its study's account,
        said to be this invocation's: search_caption); a study's own account (its description, written
        already) says more, and has no table of training runs."""
        tags = parent.data.tags
        study_note = tags.get(NOTE_TAG)
        table = None if study_note and not self._search else results_table(
            children, tags.get(SWEPT_TAG, "").split())
        if table and self._search:
            table = f"{search_caption(tags)}\n\n{table}"
        return count_children(children), table, study_note

    def _job_name(self, num: int) -> str:
        """``job 2 (seed=2)``: the job's swept values when the grid is known, else ``job 2``."""
        return (self._planned or {}).get(num, f"job {num}")

    def _jobs_account(self, children: Sequence[Any], errors: dict[int, str]) -> tuple[int, str, list[str]]:
        """A stopped sweep's jobs, from the parent's children and the jobs' errors (job_errors): (how many,
        ``2 stopped, 2 not started`` (job_states), the line naming the jobs that never started ([] when all
        did)). Without a planned grid (another sweeper): the jobs that started, and no more."""
        if self._planned is None:
            return started_job_count(self._sweep_dir), "", []
        started = started_jobs(self._sweep_dir)
        states = job_states(started, children, errors)
        unstarted = [num for num in self._planned if num not in started]
        states["not started"] = unstarted
        detail = ", ".join(f"{len(jobs)} {state}" for state, jobs in states.items() if jobs)
        named = [f"not started: {', '.join(map(self._job_name, unstarted))}"] if unstarted else []
        return len(set(self._planned) | started), detail, named

    def _restore_process_state(self) -> None:
        atexit.unregister(self._end_abandoned_parent)
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigterm = self._previous_sigint = None
        if self._previous_env is None:
            os.environ.pop(PARENT_ENV, None)
        else:
            os.environ[PARENT_ENV] = self._previous_env

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.settings is None or self.parent_run_id is None:
            return
        raise_if_stop_requested()  # lost after the last job: the parent ends KILLED at exit, not FINISHED
        # Until the parent is ended a signal is recorded, not raised (the parent then ends KILLED); it
        # stops the program once the parent is closed.
        with self._signals_deferred():
            sweep_dir = self._sweep_dir
            jobs, offline = started_job_count(sweep_dir), offline_jobs(sweep_dir)
            parent_offline = False
            try:
                self._report_and_end(sweep_dir, jobs, offline)
            except Exception as exc:
                from harness.tracking.server import OfflineRecord, server_lost

                if not server_lost(exc):
                    raise
                # The parent's end goes offline too: the replay of its record ends it on the server.
                record = OfflineRecord(self.parent_run_id, self.settings.tracking_uri, exc,
                                       directory=sweep_dir)
                now = _now_ms()
                record.metrics([("jobs", float(jobs), now, 0), ("offline", float(len(offline)), now, 0)])
                record.write([{"kind": "sweep", "time": now}])  # the replay counts the children then
                if offline:
                    record.pairs("tag", offline_tags(offline, sweep_dir, self.settings.tracking_uri, ""))
                record.close(*_final_status())
                parent_offline = True
                print(f"sweep {self.parent_run_id}: {jobs} job{'' if jobs == 1 else 's'}; the tracking "
                      f"server did not answer at its end, which is saved in {record.path}")
            if offline or parent_offline:
                print(offline_report(offline, parent_offline, sweep_dir, self.settings.tracking_uri))
            self._restore_process_state()
            self.settings = self.parent_run_id = None

    def _report_and_end(self, sweep_dir: Path, jobs: int, offline: list[OfflineJob]) -> None:
        """Count the children, print the report, log the counts on the parent (with the jobs that went
        offline) and end it FINISHED (KILLED when a signal arrived meanwhile)."""
        client, experiment_id = ensure_store(self.settings)
        counts, table, study_note = self._account(client.get_run(self.parent_run_id),
                                                  child_runs(client, self.parent_run_id))
        continued = "" if self.continuation is None else self.continuation.summary()
        print(format_sweep_report(self.parent_run_id, counts, jobs, len(offline), detail=continued),
              *filter(None, [table]), sep="\n")
        if table:  # a sweep's table of training runs; a study's summary prints its own UI line
            print(ui_hint(self.settings.tracking_uri, (experiment_id, self.parent_run_id)))
        from mlflow.entities import Metric, RunTag

        now = _now_ms()
        metrics = count_metrics(counts, now)
        metrics.append(Metric("jobs", float(jobs), now, 0))
        metrics.append(Metric("offline", float(len(offline)), now, 0))
        if self.continuation is not None:
            metrics += [Metric(key, value, now, 0) for key, value in self.continuation.counts().items()]
        # The description: a study's table (when it wrote one), the sweep's report, a grid sweep's table of
        # runs, its offline jobs.
        note = "\n\n".join(filter(None, [study_note, sweep_note(counts, jobs, len(offline), detail=continued),
                                         table]))
        described = offline_tags(offline, sweep_dir, self.settings.tracking_uri, note) if offline else {
            NOTE_TAG: note}
        tags = [RunTag(key, value) for key, value in tag_values(described).items()]
        client.log_batch(self.parent_run_id, metrics=metrics, tags=tags)
        status, error = _final_status()
        if error is not None:
            client.set_tag(self.parent_run_id, "error", error)
        end_run(client, self.parent_run_id, status)


def search_caption(tags: dict[str, str]) -> str:
    """The line above a search's table of runs (tags: its parent's): which runs it shows, this invocation's,
    and where the study's earlier trials are (tag optuna.trials_before, harness.search.record)."""
    study, before = tags.get("optuna.study", "?"), int(tags.get("optuna.trials_before") or 0)
    earlier = (f" (the study held {_plural(before, 'earlier trial')}, their runs under earlier sweep "
               "parents; the best trial and the parent run's top trials rank them all)" if before else "")
    return f"Runs of this invocation's trials of study {study}{earlier}:"


def count_metrics(counts: dict[str, list[tuple[str, str]]], timestamp: int) -> list[Any]:
    """The sweep parent's metrics ``finished``, ``failed``, ``killed``, ``running`` and ``runs`` (mlflow
    Metric, step 0) from summarize_children's counts."""
    from mlflow.entities import Metric

    metrics = [Metric(key, float(len(counts[key.upper()])), timestamp, 0)
               for key in ("finished", "failed", "killed", "running", "rerun")]
    metrics.append(Metric("runs", float(sum(len(runs) for runs in counts.values())), timestamp, 0))
    return metrics


def _final_status() -> tuple[str, str | None]:
    """(status, error tag) of a sweep's parent that reached its end: KILLED if a signal arrived on the way."""
    signum = stop_requested()
    if signum is None:
        return "FINISHED", None
    return "KILLED", f"every job ended, then the sweep was stopped by {signal.Signals(signum).name}"


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun sweeps (``model=elman,lstm task.length=10,20`` -> ``["model", "task.length"]``),
    parsed from its command-line overrides with Hydra's own parser, then those of the sweeper's own
    ``params`` (a search preset's searched keys) not on the command line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=None) or [])
    parsed = OverridesParser.create().parse_overrides(overrides)
    params = list(OmegaConf.select(config, "hydra.sweeper.params", default=None) or {})
    return list(dict.fromkeys([*(override.get_key_element() for override in parsed
                                 if override.is_sweep_override()), *params]))


def sweep_app(config: DictConfig) -> str:
    """The app a multirun config sweeps (Hydra's job name: ``train``), which names its parent run."""
    return OmegaConf.select(config, "hydra.job.name", default=None) or "sweep"


def sweep_run_name(config: DictConfig, swept: Sequence[str]) -> str:
    """``<time> <app>-sweep <swept keys>``, e.g. ``00:12:03 train-sweep lr,hidden_size`` for ``-m
    optimizer.lr=... model.hidden_size=...`` (sweep_app; swept: swept_keys(config); the keys' last parts):
    the MLflow UI's runs list shows about 17 characters of a name, so the start time, which tells one
    sweep's parent from the next, comes first (``00:12:03 train-sw``); the run's start time holds the
    date."""
    import time

    keys = ",".join(dict.fromkeys(key.rpartition(".")[2] for key in swept))
    return " ".join(filter(None, [time.strftime("%H:%M:%S"), f"{sweep_app(config)}-sweep", keys]))


def names_a_sweep(run_name: str, app: str) -> bool:
    """Whether run_name is that of a sweep parent of app: sweep_run_name's, or as sweeps were named before
    (``<app>-sweep <swept keys> <time>``, ``<app>-sweep-<date>``)."""
    return (re.fullmatch(rf"\d\d:\d\d:\d\d {re.escape(app)}-sweep( .*)?", run_name) is not None
            or run_name.startswith((f"{app}-sweep ", f"{app}-sweep-")))


def redact_hydra_outputs(config: DictConfig) -> None:
    """Redact the credentials Hydra wrote into a job's output folder: its ``.hydra/*.yaml`` (written just
    before the job starts, from the command line), its log, and a sweep's ``multirun.yaml``. Hydra calls
    this callback for single runs and every sweep job alike."""
    redact_log_records()
    output_dir = OmegaConf.select(config, "hydra.runtime.output_dir", default=None)
    if output_dir is not None:
        redact_folder(Path(output_dir))
        subdir = OmegaConf.select(config, "hydra.output_subdir", default=None)
        if subdir is not None:
            redact_folder(Path(output_dir) / str(subdir))
    sweep_dir = OmegaConf.select(config, "hydra.sweep.dir", default=None)
    if OmegaConf.select(config, "hydra.mode", default=None) == RunMode.MULTIRUN and sweep_dir is not None:
        redact_folder(Path(sweep_dir).resolve(), ("multirun.yaml",))


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def child_runs(client: Any, parent_run_id: str, condition: str | None = None) -> list[Any]:
    """The runs (mlflow Run) nested under parent_run_id that meet condition (an MLflow search filter; None:
    all of them), all pages."""
    parent = client.get_run(parent_run_id)
    nested = f"tags.mlflow.parentRunId = '{parent_run_id}'"
    return all_pages(client.search_runs, [parent.info.experiment_id],
                     filter_string=f"{nested} and {condition}" if condition else nested)


def count_children(runs: list[Any]) -> dict[str, list[tuple[str, str]]]:
    """Status (or RERUN) -> [(run name, error tag or re-run reason)] of runs (a parent's child_runs)."""
    counts: dict[str, list[tuple[str, str]]] = {status: [] for status in (*CHILD_STATUSES, RERUN)}
    for run in runs:
        tags = run.data.tags
        counts.setdefault(RERUN if superseded(run) else run.info.status, []).append(
            (run.info.run_name, tags.get("error") or tags.get(RERUN_TAG, "")))
    return counts


def summarize_children(client: Any, parent_run_id: str) -> dict[str, list[tuple[str, str]]]:
    """count_children of every run nested under parent_run_id."""
    return count_children(child_runs(client, parent_run_id))


def _label(status: str) -> str:
    return "re-run" if status == RERUN else status.lower()


def _report_parts(counts: dict[str, list[tuple[str, str]]], jobs: int, offline: int,
                  detail: str = "") -> tuple[str, list[str]]:
    """("4 jobs, 5 runs (3 finished, 1 failed, 1 re-run)", ["failed: <name>  <error>", ...]): the summary
    (with detail on the jobs: what a continued sweep's jobs did, ``4 jobs (2 already finished, 2 run), ...``,
    or how far a stopped sweep's got, ``4 jobs (2 stopped, 2 not started)``; and how many jobs kept their
    runs offline), then one entry per failed, killed or re-run run with its error (a job may log several
    runs: a study's job logs one per cell)."""
    total = sum(len(runs) for runs in counts.values())
    summary = ", ".join(f"{len(runs)} {_label(status)}" for status, runs in counts.items() if runs)
    kept = f"; {_jobs(offline)} offline" if offline else ""
    done = f" ({detail})" if detail else ""
    entries = [f"{_label(status)}: {name}  {error}".rstrip()
               for status in ("FAILED", "KILLED", RERUN) for name, error in counts[status]]
    return f"{_jobs(jobs)}{done}, {_plural(total, 'run')} ({summary or 'none tracked'}){kept}", entries


def format_sweep_report(parent_run_id: str, counts: dict[str, list[tuple[str, str]]], jobs: int,
                        offline: int = 0, detail: str = "") -> str:
    """Multi-line summary: Hydra jobs, their runs per status, then one line per failed, killed or re-run
    run with its error (_report_parts)."""
    summary, entries = _report_parts(counts, jobs, offline, detail)
    return "\n".join([f"sweep {parent_run_id}: {summary}", *(f"  {entry}" for entry in entries)])


def sweep_note(counts: dict[str, list[tuple[str, str]]], jobs: int, offline: int = 0,
               detail: str = "", more: Sequence[str] = ()) -> str:
    """The report as the parent run's Markdown description; more: entries after the runs' (the jobs that
    never started)."""
    summary, entries = _report_parts(counts, jobs, offline, detail)
    bullets = [f"- {entry}" for entry in [*entries, *more]]
    return "\n".join([f"**Sweep: {summary}.**", *([""] if bullets else []), *bullets])


def planned_jobs(config: DictConfig) -> dict[int, str] | None:
    """Job number -> ``job 2 (seed=2)`` for every job of the basic sweeper's grid of the multirun config
    (harness.app.composed_jobs, none composed); None for another sweeper."""
    from harness.app import BASIC_SWEEPER, composed_jobs

    if OmegaConf.select(config, "hydra.sweeper._target_", default=None) != BASIC_SWEEPER:
        return None
    return {number: name for number, name, _ in composed_jobs(config)}


def _started_job_configs(sweep_dir: Path | None) -> list[Path]:
    """The ``.hydra/hydra.yaml`` of every job of the sweep that started: Hydra writes it as it starts one."""
    return [] if sweep_dir is None else list(sweep_dir.glob("*/.hydra/hydra.yaml"))


def started_job_count(sweep_dir: Path | None) -> int:
    """How many jobs started (their configs counted, not read: a sweep's end needs no job number)."""
    return len(_started_job_configs(sweep_dir))


def started_jobs(sweep_dir: Path | None) -> set[int]:
    """The numbers of the jobs that started (each read from its ``.hydra/hydra.yaml``)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return {int(yaml.load(path.read_text(), Loader=loader)["hydra"]["job"]["num"])
            for path in _started_job_configs(sweep_dir)}


JOB_ERROR_FILE = "job_error"  # in a job's folder: its number, then the exception it raised, one line


def record_job_error(config: DictConfig, error: BaseException) -> None:
    """Write the exception a sweep job raised (its one-line message) to the job's folder, where the
    launching process finds it (job_errors) whichever process ran the job."""
    output_dir = OmegaConf.select(config, "hydra.runtime.output_dir", default=None)
    num = OmegaConf.select(config, "hydra.job.num", default=None)
    if output_dir is None or num is None:
        return
    lines = redact(str(error)).strip().splitlines()
    message = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    (Path(output_dir) / JOB_ERROR_FILE).write_text(f"{num}\n{message}")


def job_errors(sweep_dir: Path | None) -> dict[int, str]:
    """Job number -> ``ValueError: <its message>`` of the sweep's jobs that raised (record_job_error)."""
    if sweep_dir is None:
        return {}
    found = {}
    for path in sweep_dir.glob(f"*/{JOB_ERROR_FILE}"):
        num, _, error = path.read_text().partition("\n")
        found[int(num)] = error
    return dict(sorted(found.items()))


def job_states(started: set[int], children: Sequence[Any], errors: dict[int, str]) -> dict[str, list[int]]:
    """finished / failed / stopped / started -> the started jobs in that state, from their runs (tag
    ``job_num``; a re-run attempt left out) and their errors (job_errors): a job that raised, or with a FAILED
    run, failed; one with a KILLED run stopped, as is a study job that logged fewer cells than its job tag
    (sweep_continuation.JOB_TAG) says it has; one whose runs all FINISHED finished; one with no run tagged (it
    stopped before its first, or its app does not tag them) started."""
    from harness.sweep_continuation import tagged_job

    statuses: dict[int, set[str]] = {}
    logged: dict[int, int] = {}  # a study job's cell runs
    planned: dict[int, int] = {}  # and how many its job tag says it has
    for run in children:
        job = run.data.tags.get("job_num")
        if job and job.isdigit() and not superseded(run):
            statuses.setdefault(int(job), set()).add(run.info.status)
            study_job = tagged_job(run.data.tags)
            if study_job is not None:
                logged[int(job)] = logged.get(int(job), 0) + 1
                planned[int(job)] = study_job[1]
    states: dict[str, list[int]] = {"finished": [], "failed": [], "stopped": [], "started": []}
    for num in sorted(started):
        seen = statuses.get(num, set())
        incomplete = logged.get(num, 0) < planned.get(num, 0)
        state = ("failed" if num in errors or "FAILED" in seen
                 else "stopped" if "KILLED" in seen or incomplete
                 else "finished" if seen == {"FINISHED"} else "started")
        states[state].append(num)
    return states


@dataclass(frozen=True)
class OfflineJob:
    """A sweep job whose run went to an offline record (harness.tracking.server.OfflineRecord)."""

    job: str  # the job's folder in the sweep dir: its Hydra job number
    run_id: str  # the record's run id: the server's, or a local one for a run that started offline
    record: Path
    started_offline: bool  # the server was gone when the job started: the replay creates its run

    def describe(self) -> str:
        how = ("started offline (local id; the replay creates it under a new one)" if self.started_offline
               else "lost the server while it ran")
        return f"job {self.job}: run {self.run_id}, {how}"


def offline_jobs(sweep_dir: Path) -> list[OfflineJob]:
    """The jobs of the sweep in sweep_dir that kept their runs in offline records, in job order."""
    from harness.tracking.replay import read_record, records_in

    found = []
    for path in records_in(sweep_dir):
        if path.parent == sweep_dir:
            continue  # the sweep parent's own end
        try:
            record = read_record(path)
        except ValueError:
            continue  # not a record the replay would send; it names itself when replayed
        started = any(line["kind"] == "run" for line in record.lines)
        found.append(OfflineJob(path.parent.name, record.lost["run_id"], path, started))
    return sorted(found, key=lambda job: (len(job.job), job.job))


def replay_command(sweep_dir: Path, uri: str) -> str:
    return f"python -m harness.tracking.replay {sweep_dir} --uri {redact(uri)}"


def offline_tags(offline: list[OfflineJob], sweep_dir: Path, uri: str, note: str) -> dict[str, str]:
    """The sweep parent's tags naming its offline jobs: ``harness.offline_jobs`` (job numbers) and its
    description (note, the existing one, with a section on them appended)."""
    lines = [f"**{_jobs(len(offline))} went offline** (the tracking server did not answer): each run is "
             f"complete in its offline record until it is sent.", ""]
    lines += [f"- {job.describe()}: `{job.record}`" for job in offline]
    lines += ["", f"Once the server answers: `{replay_command(sweep_dir, uri)}`"]
    section = "\n".join(lines)
    return {"harness.offline_jobs": " ".join(job.job for job in offline),
            NOTE_TAG: f"{note}\n\n{section}" if note else section}


def offline_report(offline: list[OfflineJob], parent_offline: bool, sweep_dir: Path, uri: str) -> str:
    """The sweep's last terminal lines when runs went offline: which jobs, and the one replay command."""
    theirs = "its run" if len(offline) == 1 else "their runs"
    lines = ([f"{_jobs(len(offline))} kept {theirs} offline (the tracking server did not answer):"]
             if offline else [])
    lines += [f"  {job.describe()}: {job.record}" for job in offline]
    what = "these records" if offline else "the record"
    if parent_offline:
        what += " and the sweep's own end" if offline else " of the sweep's own end"
    lines.append(f"send {what} once the server answers again: {replay_command(sweep_dir, uri)}")
    return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _jobs(count: int) -> str:
    return _plural(count, "job")
